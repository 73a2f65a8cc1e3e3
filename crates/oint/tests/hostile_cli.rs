//! The command line under careless and hostile input: out-of-range numbers, endless and
//! special files, failing output, secrets in the wrong place. Each test runs the built `oint`
//! against an emulator and checks the exit code, the one line on stderr, and what the portal
//! stored (usually: nothing).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use common::*;

/// Secrets of these tests that must never be printed.
const HOOK_SECRET_IN_CONFIG: &str = "cfg-hook-secret-77ab";
const TOKEN_LIKE: &str = "4e8e0c5e0061ab5d006b8b1d00000001000003a9c11c";

/// Runs `oint` like [`oint`], with a chosen stdin and stdout, and a bound on how long it may
/// take: a read that blocks (a FIFO) or never ends (/dev/zero) fails the test instead of
/// hanging it.
async fn oint_io(args: &[&str], env: &[(&str, &str)], stdin: Stdio, stdout: Stdio) -> Output {
    let mut cmd = oint_command(args, env);
    cmd.stdin(stdin)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().expect("oint starts");
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("oint {args:?} did not finish in 60 s"))
        .expect("oint runs");
    no_secret_in(&output);
    output
}

/// Runs `oint` with the suite's usual runner (which also checks the known secrets).
async fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let o = tokio::time::timeout(Duration::from_secs(60), oint(args, env))
        .await
        .unwrap_or_else(|_| panic!("oint {args:?} did not finish in 60 s"));
    no_secret_in(&o);
    o
}

fn no_secret_in(o: &Output) {
    for text in [stdout(o), stderr(o)] {
        for secret in [SECRET, TOKEN, HOOK_SECRET_IN_CONFIG, TOKEN_LIKE] {
            assert!(!text.contains(secret), "a secret leaked: {text}");
        }
    }
}

/// Exit 2, and stderr is one `error:` line that contains every one of `want`.
fn assert_usage(o: &Output, want: &[&str], args: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "{args:?}: one line: {err}");
    assert!(err.starts_with("error: "), "{args:?}: {err}");
    for w in want {
        assert!(err.contains(w), "{args:?}: want {w:?} in {err}");
    }
}

async fn nothing_reached(emu: &bitrix24_emulator::Emulator) {
    assert!(emu.notifications().is_empty(), "nothing may be stored");
    assert!(emu.requests().is_empty(), "nothing may be sent");
}

fn file(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

fn fifo(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let status = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .expect("mkfifo runs");
    assert!(status.success());
    path
}

// 1. Numbers out of range.

#[tokio::test(flavor = "multi_thread")]
async fn every_numeric_flag_out_of_range_exits_2_naming_the_flag_and_its_range() {
    let emu = emulator().await;
    let hook = emu.webhook_url(1, SECRET);
    let send = [
        "notify", "send", "--url", &hook, "--user", "1", "--text", "x",
    ];
    let table: &[(&str, &[&str], &str)] = &[
        (
            "--timeout",
            &["1e300", "1e20", "NaN", "inf", "-1", "0", "abc"],
            "at most 86400",
        ),
        (
            "--connect-timeout",
            &["1e20", "1e300", "nan", "-inf", "-0.5", "0"],
            "at most 3600",
        ),
        (
            "--rate",
            &["0", "-1", "1e300", "NaN", "inf", "1e-300"],
            "at most 10000",
        ),
        (
            "--burst",
            &["0", "0.5", "-3", "1e300", "nan"],
            "at most 100000",
        ),
        (
            "--attempts",
            &["0", "-1", "101", "4294967296", "x", "1.5"],
            "at most 100",
        ),
        (
            "--operating-budget",
            &["0", "-1", "1e6", "NaN", "inf", "abc"],
            "at most 100000",
        ),
    ];
    for (flag, values, range) in table {
        for value in *values {
            let flag_value = format!("{flag}={value}");
            // Before the command and after it: the limits are global flags.
            for args in [
                [&[flag_value.as_str()][..], &send[..]].concat(),
                [&send[..], &[flag_value.as_str()][..]].concat(),
            ] {
                let o = run(&args, &[]).await;
                assert_usage(&o, &[flag, range], &args);
            }
        }
    }
    // OPI's commands take them too.
    let args = [
        "bitrix24",
        "CreatePersonalNotification",
        "--url",
        &hook,
        "--user",
        "1",
        "--text",
        "x",
        "--timeout",
        "1e300",
    ];
    assert_usage(&run(&args, &[]).await, &["--timeout"], &args);
    // Bulk's batches in flight.
    for value in ["0", "65", "1e9"] {
        let args = [
            "notify",
            "bulk",
            "--url",
            &hook,
            "--input",
            "/nonexistent.jsonl",
            "--concurrency",
            value,
        ];
        assert_usage(&run(&args, &[]).await, &["--concurrency"], &args);
    }
    nothing_reached(&emu).await;

    // In range, at the edges, it works.
    let args = [
        &send[..],
        &[
            "--timeout=86400",
            "--connect-timeout=0.5",
            "--rate=10000",
            "--burst=1",
            "--attempts=100",
            "--operating-budget=100000",
        ],
    ]
    .concat();
    let o = run(&args, &[]).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(emu.notifications().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn numeric_config_settings_out_of_range_name_the_setting_and_the_file() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let hook = emu.webhook_url(1, SECRET);
    let table = [
        ("rate = 1e300", "rate of portal \"p\""),
        ("rate = 0", "rate of portal \"p\""),
        ("rate = -2", "rate of portal \"p\""),
        ("burst = 1e20", "burst of portal \"p\""),
        ("burst = 0", "burst of portal \"p\""),
        ("rate = nan", "rate of portal \"p\""),
        ("burst = inf", "burst of portal \"p\""),
        // A token pasted into a number setting: named, not echoed.
        (
            &*format!("rate = \"{TOKEN_LIKE}\""),
            "rate: expects a number of requests per second",
        ),
        ("burst = true", "burst: expects a number of requests"),
    ];
    for (i, (setting, want)) in table.iter().enumerate() {
        let config = file(
            dir.path(),
            &format!("c{i}.toml"),
            &format!("[portals.p]\nurl = \"x.bitrix24.com\"\n{setting}\n"),
            0o600,
        );
        let config_s = config.display().to_string();
        let args = [
            "notify", "send", "--portal", "p", "--url", &hook, "--user", "1", "--text", "x",
        ];
        let o = run(&args, &[("OINT_CONFIG", &config_s)]).await;
        assert_usage(&o, &[want, &config_s], &args);
        if setting.starts_with("rate = 1") || setting.starts_with("burst = 1") {
            assert!(stderr(&o).contains("at most"), "{}", stderr(&o));
        }
    }
    nothing_reached(&emu).await;
}

// 2. Bounded reads of everything that can be endless.

#[tokio::test(flavor = "multi_thread")]
async fn token_stdin_from_dev_zero_is_refused_after_64_kib() {
    let emu = emulator().await;
    let url = emu.url();
    let args = [
        "notify",
        "send",
        "--url",
        &url,
        "--token-stdin",
        "--user",
        "1",
        "--text",
        "x",
    ];
    let zero = std::fs::File::open("/dev/zero").unwrap();
    let o = oint_io(&args, &[], zero.into(), Stdio::piped()).await;
    assert_usage(&o, &["--token-stdin:", "64 KiB"], &args);
    nothing_reached(&emu).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fifos_devices_and_directories_are_refused_as_not_regular_files() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let pipe = fifo(dir.path(), "pipe");
    let pipe_s = pipe.display().to_string();
    let url = emu.url();
    let hook = emu.webhook_url(1, SECRET);
    for special in [pipe_s.as_str(), "/dev/zero", "/tmp"] {
        // --token-file: never "chmod 600 /tmp".
        let args = [
            "notify",
            "send",
            "--url",
            &url,
            "--token-file",
            special,
            "--user",
            "1",
            "--text",
            "x",
        ];
        let o = run(&args, &[]).await;
        assert_usage(&o, &["--token-file:", "not a regular file"], &args);
        assert!(!stderr(&o).contains("chmod"), "{}", stderr(&o));

        // The config file itself.
        let args = [
            "notify", "send", "--url", &hook, "--user", "1", "--text", "x",
        ];
        let o = run(&args, &[("OINT_CONFIG", special)]).await;
        assert_usage(&o, &["config file", "not a regular file"], &args);

        // Files a config file names.
        for setting in ["token_file", "client_secret_file"] {
            let config = file(
                dir.path(),
                "c.toml",
                &format!(
                    "[portals.p]\nurl = \"{url}\"\nclient_id = \"app\"\n{setting} = \"{special}\"\n"
                ),
                0o600,
            );
            let config_s = config.display().to_string();
            let args = [
                "notify", "send", "--portal", "p", "--user", "1", "--text", "x",
            ];
            let o = run(&args, &[("OINT_CONFIG", &config_s)]).await;
            assert_usage(&o, &[setting, "not a regular file"], &args);
        }

        // OPI's --blocks FILE, and --attach / --params @FILE of the modern commands.
        let args = [
            "bitrix24",
            "CreatePersonalNotification",
            "--url",
            &hook,
            "--user",
            "1",
            "--text",
            "x",
            "--blocks",
            special,
        ];
        assert_usage(
            &run(&args, &[]).await,
            &["--blocks:", "not a regular file"],
            &args,
        );
        let args = [
            "notify", "send", "--url", &hook, "--user", "1", "--text", "x", "--attach", special,
        ];
        assert_usage(
            &run(&args, &[]).await,
            &["--attach:", "not a regular file"],
            &args,
        );
        let at = format!("@{special}");
        let args = ["call", "im.notify.get", "--url", &hook, "--params", &at];
        assert_usage(
            &run(&args, &[]).await,
            &["--params:", "not a regular file"],
            &args,
        );
    }
    nothing_reached(&emu).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_token_and_config_files_are_refused() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let url = emu.url();
    let big = file(dir.path(), "big.token", &"a".repeat(70 * 1024), 0o600);
    let args = [
        "notify",
        "send",
        "--url",
        &url,
        "--token-file",
        big.to_str().unwrap(),
        "--user",
        "1",
        "--text",
        "x",
    ];
    assert_usage(
        &run(&args, &[]).await,
        &["--token-file:", "larger than 64 KiB"],
        &args,
    );
    let mut text = String::from("[portals.p]\nurl = \"x.bitrix24.com\"\n");
    text.push_str(&"# padding\n".repeat(120_000));
    let config = file(dir.path(), "big.toml", &text, 0o600);
    let args = [
        "notify", "send", "--url", &url, "--user", "1", "--text", "x",
    ];
    assert_usage(
        &run(&args, &[("OINT_CONFIG", config.to_str().unwrap())]).await,
        &["config file", "larger than 1024 KiB"],
        &args,
    );
    nothing_reached(&emu).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_are_cleaned_of_bom_and_blanks_and_refused_with_inner_blanks() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let url = emu.url();
    let send = [
        "notify", "send", "--url", &url, "--user", "1", "--text", "x",
    ];

    // Cleaned: BOM, CRLF, blank lines and spaces around it, from each source.
    let messy = format!("\u{feff}  \r\n{TOKEN} \r\n\n");
    let token_file = file(dir.path(), "t.token", &messy, 0o600);
    let config = file(
        dir.path(),
        "c.toml",
        &format!("[portals.p]\nurl = \"{url}\"\ntoken = \"\u{feff} {TOKEN}\\n\"\n"),
        0o600,
    );
    let flag_token = format!(" {TOKEN}\n");
    // Standard input: its first line.
    let stdin_file = file(
        dir.path(),
        "stdin",
        &format!("\u{feff} {TOKEN}\r\nmore\n"),
        0o600,
    );
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, Option<&'a Path>);
    let cases: Vec<Case> = vec![
        (
            [&send[..], &["--token-file", token_file.to_str().unwrap()]].concat(),
            vec![],
            None,
        ),
        (
            [&send[..], &["--token", &flag_token]].concat(),
            vec![],
            None,
        ),
        (send.to_vec(), vec![("BITRIX24_TOKEN", &messy)], None),
        (
            vec![
                "notify", "send", "--portal", "p", "--user", "1", "--text", "x",
            ],
            vec![("OINT_CONFIG", config.to_str().unwrap())],
            None,
        ),
        (
            [&send[..], &["--token-stdin"]].concat(),
            vec![],
            Some(&stdin_file),
        ),
    ];
    let count = cases.len();
    for (args, env, stdin) in cases {
        let stdin = match stdin {
            Some(p) => std::fs::File::open(p).unwrap().into(),
            None => Stdio::null(),
        };
        let o = oint_io(&args, &env, stdin, Stdio::piped()).await;
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
    }
    assert_eq!(emu.notifications().len(), count);

    // Refused: a space, tab or control character inside, with a hint; never echoed.
    let before = emu.requests().len();
    for bad in [
        format!("{TOKEN} {TOKEN_LIKE}"),
        format!("{TOKEN}\t{TOKEN_LIKE}"),
        format!("{TOKEN}\u{7}{TOKEN_LIKE}"),
        format!("{TOKEN}\n{TOKEN_LIKE}\n"),
    ] {
        let bad_file = file(dir.path(), "bad.token", &bad, 0o600);
        let args = [&send[..], &["--token-file", bad_file.to_str().unwrap()]].concat();
        assert_usage(
            &run(&args, &[]).await,
            &["--token-file:", "one word"],
            &args,
        );
        let args = [&send[..], &["--token", &bad]].concat();
        assert_usage(&run(&args, &[]).await, &["--token:", "one word"], &args);
        // OPI's commands too.
        let args = [
            "bitrix24",
            "CreatePersonalNotification",
            "--url",
            &url,
            "--token",
            &bad,
            "--user",
            "1",
            "--text",
            "x",
        ];
        assert_usage(&run(&args, &[]).await, &["--token:", "one word"], &args);
    }
    assert_eq!(emu.requests().len(), before, "nothing more was sent");
}

// 3. Standard output that cannot be written.

#[tokio::test(flavor = "multi_thread")]
async fn a_full_stdout_is_an_error_and_a_closed_pipe_is_not() {
    let emu = emulator().await;
    let hook = emu.webhook_url(1, SECRET);
    let send = [
        "notify", "send", "--url", &hook, "--user", "1", "--text", "x", "--json",
    ];
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let o = oint_io(&send, &[], Stdio::null(), full.into()).await;
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: cannot write the result to standard output:"),
        "{err}"
    );
    // It was sent: the exit code says the answer was lost, not that nothing happened.
    assert_eq!(emu.notifications().len(), 1);

    // The same for OPI's commands, help and the manual.
    for args in [
        &[
            "bitrix24",
            "GetPictureBlock",
            "--title",
            "a",
            "--url",
            "https://x/p.png",
        ][..],
        &["--help"][..],
        &["man"][..],
        &["completions", "bash"][..],
    ] {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let o = oint_io(args, &[], Stdio::null(), full.into()).await;
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("cannot write the result to standard output"),
            "{}",
            stderr(&o)
        );
    }

    // A reader that went away (oint … | head) is not an error.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let o = oint_io(&["man"], &[], Stdio::null(), writer.into()).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
}

// 4. --out that cannot take the answer: refused before sending.

#[tokio::test(flavor = "multi_thread")]
async fn out_that_cannot_be_written_is_refused_before_sending() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let hook = emu.webhook_url(1, SECRET);
    let dir_s = dir.path().display().to_string();
    let missing = dir.path().join("no-such-dir").join("a.json");
    let missing_s = missing.display().to_string();
    let under_file = file(dir.path(), "plain", "x", 0o600).join("a.json");
    let under_file_s = under_file.display().to_string();
    let pipe = fifo(dir.path(), "pipe");
    let pipe_s = pipe.display().to_string();
    let table = [
        (dir_s.as_str(), "a directory"),
        ("/dev/full", "a character device"),
        (pipe_s.as_str(), "a FIFO"),
        (missing_s.as_str(), "does not exist"),
        (under_file_s.as_str(), "not a directory"),
        // Not creatable even for root (sysfs).
        (
            "/sys/oint-test-out.json",
            "cannot write to /sys/oint-test-out.json",
        ),
    ];
    for (out, want) in table {
        for method in ["CreatePersonalNotification", "CreateSystemNotification"] {
            let args = [
                "bitrix24", method, "--url", &hook, "--user", "1", "--text", "x", "--out", out,
            ];
            assert_usage(&run(&args, &[]).await, &["--out:", want], &args);
        }
    }
    nothing_reached(&emu).await;
    assert!(!missing.parent().unwrap().exists());

    // When the portal cannot be reached, a new --out file is not left behind, and an existing
    // one keeps its content.
    let fresh = dir.path().join("fresh.json");
    let kept = file(dir.path(), "kept.json", "old answer", 0o644);
    for path in [&fresh, &kept] {
        let args = [
            "bitrix24",
            "CreatePersonalNotification",
            "--url",
            "http://127.0.0.1:9/rest/1/x/",
            "--user",
            "1",
            "--text",
            "x",
            "--out",
            path.to_str().unwrap(),
            "--attempts",
            "1",
        ];
        let o = run(&args, &[]).await;
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    }
    assert!(!fresh.exists());
    assert_eq!(std::fs::read_to_string(&kept).unwrap(), "old answer");

    // A good path still gets the answer and OPI's line.
    let good = dir.path().join("good.json");
    let args = [
        "bitrix24",
        "CreatePersonalNotification",
        "--url",
        &hook,
        "--user",
        "1",
        "--text",
        "x",
        "--out",
        good.to_str().unwrap(),
    ];
    let o = run(&args, &[]).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("File with size "), "{}", stdout(&o));
    assert_eq!(emu.notifications().len(), 1);
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&good).unwrap()).unwrap();
    assert_eq!(written["result"].as_u64(), Some(emu.notifications()[0].id));
}

// 5. Error messages never echo a value that may be a secret.

#[tokio::test(flavor = "multi_thread")]
async fn errors_name_misplaced_secrets_without_echoing_them() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let leaked_hook = format!("https://x.bitrix24.com/rest/1/{HOOK_SECRET_IN_CONFIG}/");
    let send = ["notify", "send", "--user", "1", "--text", "x"];
    let cases: Vec<(String, Vec<&str>, Vec<&str>)> = vec![
        (
            format!(
                "default_portal = \"{leaked_hook}\"\n[portals.work]\nurl = \"x.bitrix24.com\"\n"
            ),
            vec![],
            vec!["default_portal in", "looks like a URL", "known: work"],
        ),
        (
            "[portals.work]\nurl = \"x.bitrix24.com\"\n".into(),
            vec!["--portal", leaked_hook.as_str()],
            vec![
                "--portal: no portal named like that",
                "looks like a URL",
                "--url",
            ],
        ),
        (
            format!(
                "[portals.\"{leaked_hook}\"]\nurl = \"x.bitrix24.com\"\n[portals.work]\nurl = \"y.bitrix24.com\"\n"
            ),
            vec!["--portal", "wrok"],
            vec![
                "--portal: no portal \"wrok\"",
                "known: work",
                "1 more not shown",
            ],
        ),
        (
            format!("[portals]\nwork = \"{leaked_hook}\"\n"),
            vec![],
            vec!["config file", "(not shown)"],
        ),
        (
            format!("[portals.work]\nurl = \"x.bitrix24.com\"\ntoken_env = \"{TOKEN_LIKE}\"\n"),
            vec!["--portal", "work"],
            vec![
                "token_env in",
                "expects the name of an environment variable",
            ],
        ),
        (
            format!("[portals.work]\nurl = \"x.bitrix24.com\"\ntoken_file = \"{TOKEN_LIKE}\"\n"),
            vec!["--portal", "work"],
            vec!["token_file in", "does not exist"],
        ),
        (
            format!("[portals.work]\nurl = \"x.bitrix24.com\"\ntoken_file = \"{leaked_hook}\"\n"),
            vec!["--portal", "work"],
            vec!["token_file in", "does not exist"],
        ),
        (
            format!(
                "[portals.work]\nurl = \"x.bitrix24.com\"\nclient_id = \"app\"\nclient_secret_file = \"{TOKEN_LIKE}\"\n"
            ),
            vec!["--portal", "work"],
            vec!["client_secret_file", "does not exist"],
        ),
        (
            format!("[portals.work]\nurl = \"x.bitrix24.com\"\nrate = \"{TOKEN_LIKE}\"\n"),
            vec!["--portal", "work"],
            vec!["rate: expects a number"],
        ),
        (
            format!("[portals.work]\nurl = \"x.bitrix24.com\"\n\"{leaked_hook}\" = 1\n"),
            vec!["--portal", "work"],
            vec!["config file", "unknown field"],
        ),
    ];
    for (i, (text, extra, want)) in cases.into_iter().enumerate() {
        let config = file(dir.path(), &format!("c{i}.toml"), &text, 0o600);
        let args = [&send[..], &extra[..]].concat();
        let o = run(&args, &[("OINT_CONFIG", config.to_str().unwrap())]).await;
        assert_usage(&o, &want, &args);
    }
    // A misplaced secret on the command line: a numeric flag never echoes it either (checked
    // for every run by `no_secret_in`).
    let args = [&send[..], &["--rate", leaked_hook.as_str()]].concat();
    assert_usage(&run(&args, &[]).await, &["--rate: must be"], &args);
    nothing_reached(&emu).await;
}

// 6. A config file readable by others is refused when any portal in it holds a secret.

#[tokio::test(flavor = "multi_thread")]
async fn an_open_config_is_refused_when_any_portal_holds_a_secret() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let host = emu.url();
    let hook = emu.webhook_url(1, SECRET);
    let plain = format!("[portals.used]\nurl = \"{host}\"\n");
    // The portal used holds no secret; another one does.
    let secrets = [
        format!("[portals.other]\nurl = \"{host}/rest/1/{HOOK_SECRET_IN_CONFIG}/\"\n"),
        format!("[portals.other]\nurl = \"{host}\"\ntoken = \"{TOKEN_LIKE}\"\n"),
        format!(
            "[portals.other]\nurl = \"{host}\"\nclient_id = \"a\"\nclient_secret = \"{TOKEN_LIKE}\"\n"
        ),
        format!("[portals.other]\nurl = \"{host}\"\nrefresh_token = \"{TOKEN_LIKE}\"\n"),
    ];
    for (i, other) in secrets.iter().enumerate() {
        let config = file(
            dir.path(),
            &format!("open{i}.toml"),
            &format!("{plain}{other}"),
            0o644,
        );
        let args = [
            "notify", "send", "--portal", "used", "--url", &hook, "--user", "1", "--text", "x",
        ];
        let o = run(&args, &[("OINT_CONFIG", config.to_str().unwrap())]).await;
        assert_usage(
            &o,
            &["the config file", "readable by others", "chmod 600"],
            &args,
        );
    }
    nothing_reached(&emu).await;

    // No secret anywhere (a token from the environment, by name): an open file is fine.
    let config = file(
        dir.path(),
        "open-ok.toml",
        &format!(
            "default_portal = \"app\"\n[portals.app]\nurl = \"{host}\"\ntoken_env = \"APP_TOKEN\"\nrate = 5\n[portals.domain]\nurl = \"example.bitrix24.com\"\n"
        ),
        0o644,
    );
    let args = ["notify", "send", "--user", "1", "--text", "open config"];
    let o = run(
        &args,
        &[
            ("OINT_CONFIG", config.to_str().unwrap()),
            ("APP_TOKEN", TOKEN),
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(emu.notifications().len(), 1);
    assert_eq!(emu.notifications()[0].message, "open config");
}

// 7. Credentials given as parameters to `oint call` are masked.

#[tokio::test(flavor = "multi_thread")]
async fn call_masks_credential_parameters_in_dry_run_and_debug() {
    let emu = emulator().await;
    let hook = emu.webhook_url(1, SECRET);
    let secrets = [
        "call-auth-secret-1a",
        "call-access-secret-2b",
        "call-refresh-secret-3c",
        "call-client-secret-4d",
        "call-nested-secret-5e",
        "call-json-secret-6f",
    ];
    let pairs = [
        format!("auth={}", secrets[0]),
        format!("access_token={}", secrets[1]),
        format!("REFRESH_TOKEN={}", secrets[2]),
        format!("client_secret={}", secrets[3]),
        format!("OPTIONS[auth][x]={}", secrets[4]),
    ];
    let params_json = format!("{{\"DATA\": [{{\"access_token\": \"{}\"}}]}}", secrets[5]);
    for mode in ["--dry-run", "--debug"] {
        for url in [hook.clone(), emu.url()] {
            let mut args = vec!["call", "im.notify.get", "--url", &url, mode, "--json"];
            if !url.contains("/rest/") {
                args.extend(["--token", TOKEN]);
            }
            args.extend(pairs.iter().map(String::as_str));
            args.extend(["--params", &params_json]);
            let o = run(&args, &[]).await;
            assert!(matches!(o.status.code(), Some(0 | 1 | 4)), "{}", stderr(&o));
            for text in [stdout(&o), stderr(&o)] {
                for s in secrets {
                    assert!(!text.contains(s), "{mode}: {s} shown: {text}");
                }
            }
            let shown = if mode == "--dry-run" {
                stdout(&o)
            } else {
                stderr(&o)
            };
            assert!(
                shown.contains("im.notify.get") && shown.contains("***"),
                "{shown}"
            );
            if mode == "--dry-run" {
                let body = &json(&o)["body"];
                assert_eq!(body["auth"], "***");
                assert_eq!(body["access_token"], "***");
                assert_eq!(body["OPTIONS"]["auth"], "***");
                assert_eq!(body["DATA"][0]["access_token"], "***");
            }
        }
    }
    // --dry-run sent nothing; --debug sent the two calls.
    assert_eq!(emu.requests().len(), 2);
}
