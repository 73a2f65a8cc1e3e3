//! `oint notify bulk` under careless and hostile use: kill -9 at random points while batches
//! wait for the rate limiter, output paths that are the input, endless input, symbolic
//! links and damaged journals. Everything is counted at the emulator and in the files.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use bitrix24_emulator::Emulator;
use common::*;
use serde_json::{Value, json};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn rows(n: usize, tagged: bool) -> String {
    (0..n)
        .map(|i| {
            let mut row = json!({"user": 2 + i % 4, "text": format!("row {i}")});
            if tagged {
                row["tag"] = json!(format!("row-{i}"));
            }
            format!("{row}\n")
        })
        .collect()
}

fn report_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Input line numbers of the stored notifications ("row {i}" is on line i + 1), with copies.
fn stored_lines(emu: &Emulator) -> HashMap<u64, usize> {
    let mut counts = HashMap::new();
    for n in emu.notifications() {
        let i: u64 = n.message.strip_prefix("row ").unwrap().parse().unwrap();
        *counts.entry(i + 1).or_default() += 1;
    }
    counts
}

/// The whole `sending` lines of a journal (a torn last line recorded nothing).
fn sending_lines(journal: &Path) -> Vec<Vec<u64>> {
    let text = std::fs::read_to_string(journal).unwrap_or_default();
    let whole = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    whole
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| {
            v.get("sending").map(|rows| {
                rows.as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r.as_u64().unwrap())
                    .collect()
            })
        })
        .collect()
}

fn one_line(o: &std::process::Output) -> String {
    let err = stderr(o);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    err
}

fn seed() -> u64 {
    let seed = std::env::var("BULK_HOSTILE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("seed {seed} (set BULK_HOSTILE_SEED={seed} to repeat)");
    seed
}

#[derive(Clone, Copy, Debug)]
enum Auth {
    Webhook,
    OAuth,
}

/// Kills `oint notify bulk` with SIGKILL at random points of a run paced by its own rate
/// limiter (8 batches a second, 4 in flight: most of them are waiting for a slot at any
/// moment), resumes with the same journal, and counts at the emulator.
async fn kill_at_random_points(auth: Auth, tagged: bool) {
    const ROWS: usize = 400;
    const TRIALS: usize = 5;
    let mut rng = fastrand::Rng::with_seed(seed());
    let emu = unlimited().await;
    let (mut partway, mut waiting_at_kill) = (0, 0);
    for trial in 0..TRIALS {
        emu.reset().expect("the emulator resets");
        let dir = tempfile::tempdir().unwrap();
        let input = write(dir.path(), "in.jsonl", &rows(ROWS, tagged));
        let journal = dir.path().join("run.journal");
        let report = dir.path().join("report.jsonl");
        let state = dir.path().join("state");
        let mut args: Vec<String> = vec!["notify".into(), "bulk".into(), "--url".into()];
        match auth {
            Auth::Webhook => args.push(emu.webhook_url(1, SECRET)),
            Auth::OAuth => args.extend([emu.url(), "--token".into(), TOKEN.into()]),
        }
        args.extend(
            [
                "--input",
                input.to_str().unwrap(),
                "--journal",
                journal.to_str().unwrap(),
                "--rate",
                "8",
                "--burst",
                "1",
            ]
            .map(String::from),
        );
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_oint"))
            .args(&args)
            .env("OINT_CONFIG", "/nonexistent")
            .env("OINT_STATE_DIR", &state)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // A random point: after a random number of dispatches (of 8), a random part of a
        // limiter period later, while later batches wait for their slots.
        let dispatches = rng.usize(0..=6);
        let after = rng.u64(0..125);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while sending_lines(&journal).len() < dispatches {
            assert!(std::time::Instant::now() < deadline, "no progress");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(after)).await;
        child.start_kill().unwrap();
        child.wait().await.unwrap();
        // Let the emulator finish a request that arrived just before the kill.
        tokio::time::sleep(Duration::from_millis(100)).await;

        let first = stored_lines(&emu);
        let logged = emu
            .requests()
            .iter()
            .filter(|r| r.method.as_deref() == Some("batch"))
            .count();
        let sending = sending_lines(&journal);
        let what = format!(
            "{auth:?} tagged={tagged} trial {trial}, killed {after} ms after dispatch {dispatches}: {} stored, {logged} batch requests, {} sending records",
            first.len(),
            sending.len()
        );
        println!("{what}");
        // Each request is preceded by its durable `sending` record; a record without its
        // request is at most the one batch dispatched in the instant before the kill. Rows
        // only waiting for the limiter were not recorded.
        assert!(logged <= sending.len(), "{what}");
        let in_transit = sending.len() - logged;
        assert!(in_transit <= 1, "batches recorded before they left: {what}");
        let recorded: HashSet<u64> = sending.iter().flatten().copied().collect();
        if first.len() < ROWS {
            partway += 1;
            // Rows neither stored nor recorded: they were waiting (for the limiter, or to
            // be read) when the process died.
            if recorded.len() < ROWS {
                waiting_at_kill += 1;
            }
        }
        let maybe_sent: HashSet<u64> = if in_transit == 1 {
            sending.last().unwrap().iter().copied().collect()
        } else {
            HashSet::new()
        };

        let mut resume = args.clone();
        resume.extend(["--report".into(), report.display().to_string()]);
        let resume: Vec<&str> = resume.iter().map(String::as_str).collect();
        let o = oint(&resume, &[("OINT_STATE_DIR", state.to_str().unwrap())]).await;
        let unknown: HashSet<u64> = report_lines(&report)
            .iter()
            .filter(|l| l["outcome"] == "outcome_unknown")
            .map(|l| l["row"].as_u64().unwrap())
            .collect();
        let last = stored_lines(&emu);
        for line in 1..=ROWS as u64 {
            let copies = last.get(&line).copied().unwrap_or(0);
            assert!(copies <= 1, "line {line} duplicated: {what}");
            if unknown.contains(&line) {
                // Only a row whose batch reached the portal (or left in the instant before
                // the kill) may be unknown.
                assert!(
                    first.contains_key(&line) || maybe_sent.contains(&line),
                    "line {line} reported unknown but never sent: {what}"
                );
            } else {
                assert_eq!(copies, 1, "line {line} not delivered: {what}");
            }
        }
        if matches!(auth, Auth::OAuth) && tagged {
            assert!(unknown.is_empty(), "tagged rows are resent: {what}");
        }
        let want = if unknown.is_empty() { 0 } else { 3 };
        assert_eq!(o.status.code(), Some(want), "{what}: {}", stderr(&o));
    }
    assert!(
        partway == TRIALS && waiting_at_kill == TRIALS,
        "too few kills landed mid-run ({partway}) with rows waiting ({waiting_at_kill})"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_over_a_webhook_untagged_loses_nothing() {
    kill_at_random_points(Auth::Webhook, false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_over_a_webhook_tagged_loses_nothing() {
    kill_at_random_points(Auth::Webhook, true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_over_oauth_untagged_loses_nothing() {
    kill_at_random_points(Auth::OAuth, false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_over_oauth_tagged_loses_nothing() {
    kill_at_random_points(Auth::OAuth, true).await;
}

/// Runs bulk against a fresh emulator with `extra` arguments; asserts nothing reached it.
async fn refused(extra: &[&str]) -> std::process::Output {
    let emu = unlimited().await;
    let url = emu.webhook_url(1, SECRET);
    let mut args = vec!["notify", "bulk", "--url", &url];
    args.extend_from_slice(extra);
    let o = oint(&args, &[]).await;
    assert!(emu.requests().is_empty(), "nothing sent: {args:?}");
    o
}

#[tokio::test(flavor = "multi_thread")]
async fn report_or_journal_that_is_the_input_or_each_other_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = rows(3, false);
    let input = write(dir.path(), "in.jsonl", &text);
    let inp = input.to_str().unwrap();
    let other = dir.path().join("other").display().to_string();
    std::fs::hard_link(&input, dir.path().join("hard.jsonl")).unwrap();
    std::os::unix::fs::symlink(&input, dir.path().join("link.jsonl")).unwrap();
    let hard = dir.path().join("hard.jsonl").display().to_string();
    let link = dir.path().join("link.jsonl").display().to_string();
    let dotted = format!("{}/./in.jsonl", dir.path().display());
    // A file that does not exist yet is the same by its canonical parent and name.
    let new = dir.path().join("new").display().to_string();
    let new_dotted = format!("{}/sub/../new", dir.path().display());
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let cases: Vec<(Vec<&str>, &str, &str)> = vec![
        (vec!["--input", inp, "--report", inp], "--report", "--input"),
        (
            vec!["--input", inp, "--journal", inp],
            "--journal",
            "--input",
        ),
        (
            vec!["--input", inp, "--report", &hard],
            "--report",
            "--input",
        ),
        (
            vec!["--input", inp, "--journal", &link],
            "--journal",
            "--input",
        ),
        (
            vec!["--input", &link, "--report", &dotted],
            "--report",
            "--input",
        ),
        (
            vec!["--input", inp, "--report", &other, "--journal", &other],
            "--report",
            "--journal",
        ),
        (
            vec!["--input", inp, "--report", &new, "--journal", &new_dotted],
            "--report",
            "--journal",
        ),
    ];
    for (extra, flag, other_flag) in cases {
        let o = refused(&extra).await;
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {}", stderr(&o));
        let err = one_line(&o);
        assert!(
            err.contains(flag) && err.contains(other_flag) && err.contains("same file"),
            "{extra:?}: {err}"
        );
        assert_eq!(
            std::fs::read_to_string(&input).unwrap(),
            text,
            "input intact"
        );
        assert!(!Path::new(&other).exists() && !Path::new(&new).exists());
    }
    // Standard input redirected from the file named by --report.
    let emu = unlimited().await;
    let o = tokio::process::Command::new(env!("CARGO_BIN_EXE_oint"))
        .args([
            "notify",
            "bulk",
            "--url",
            &emu.webhook_url(1, SECRET),
            "--input",
            "-",
            "--report",
            inp,
        ])
        .env("OINT_CONFIG", "/nonexistent")
        .env("OINT_STATE_DIR", dir.path().join("state"))
        .stdin(std::fs::File::open(&input).unwrap())
        .output()
        .await
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(one_line(&o).contains("--report and --input are the same file"));
    assert_eq!(std::fs::read_to_string(&input).unwrap(), text);
    assert!(emu.requests().is_empty());
    // Distinct files still work.
    let report = dir.path().join("report.jsonl");
    let url = emu.webhook_url(1, SECRET);
    let o = oint(
        &[
            "notify",
            "bulk",
            "--url",
            &url,
            "--input",
            &link,
            "--report",
            report.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(report_lines(&report).len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn journal_and_report_are_never_written_through_a_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "in.jsonl", &rows(3, false));
    let precious = write(dir.path(), "precious", "keep me\n");
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&precious, &link).unwrap();
    let dangling = dir.path().join("dangling");
    std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
    for flag in ["--journal", "--report"] {
        for target in [&link, &dangling] {
            let o = refused(&[
                "--input",
                input.to_str().unwrap(),
                flag,
                target.to_str().unwrap(),
            ])
            .await;
            assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
            let err = one_line(&o);
            assert!(
                err.contains(flag) && err.contains("is a symbolic link"),
                "{err}"
            );
            assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep me\n");
            assert!(!dir.path().join("nowhere").exists());
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn damaged_and_hostile_journals_get_one_line_naming_the_line() {
    let emu = unlimited().await;
    let url = emu.webhook_url(1, SECRET);
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "in.jsonl", &rows(120, false));
    let journal = dir.path().join("j");
    let run = |extra: Vec<String>| {
        let mut args: Vec<String> = [
            "notify",
            "bulk",
            "--url",
            &url,
            "--input",
            input.to_str().unwrap(),
            "--journal",
            journal.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec();
        args.extend(extra);
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            oint(&args, &[]).await
        }
    };
    let o = run(vec![]).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let good = std::fs::read_to_string(&journal).unwrap();
    let lines = good.lines().count();

    // A torn last line (kill -9 mid-write) is expected: it is cut off and the run goes on.
    std::fs::write(&journal, format!("{good}{{\"row\": 7, \"outc")).unwrap();
    let o = run(vec![]).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("120 settled by an earlier run"));
    assert_eq!(std::fs::read_to_string(&journal).unwrap(), good);
    assert_eq!(emu.notifications().len(), 120, "nothing sent twice");

    // Damage inside the journal: refused, naming the journal and the line.
    let mut damaged: Vec<&str> = good.lines().collect();
    damaged[3] = "{\"row\": \"seven\", \"outcome\": \"delivered\"}";
    let hostile = [
        (damaged.join("\n") + "\n", "line 4"),
        (
            format!(
                "{}\n{}\n",
                good.lines().next().unwrap(),
                "\u{0}garbage\u{7f}"
            ),
            "line 2 is not JSON",
        ),
        (
            format!(
                "{}\n{{\"sending\": [{}]}}\n",
                good.lines().next().unwrap(),
                "1,".repeat(600_000) + "1"
            ),
            "line 2 is longer than",
        ),
        (
            format!(
                "{}\n{{\"sending\": [1, -5]}}\n",
                good.lines().next().unwrap()
            ),
            "line 2 has a sending entry",
        ),
    ];
    for (text, want) in hostile {
        std::fs::write(&journal, &text).unwrap();
        let o = run(vec![]).await;
        assert_eq!(o.status.code(), Some(2), "{want}: {}", stderr(&o));
        let err = one_line(&o);
        assert!(
            err.contains(journal.to_str().unwrap()) && err.contains(want),
            "{want}: {err}"
        );
        assert_eq!(
            std::fs::read_to_string(&journal).unwrap(),
            text,
            "untouched"
        );
    }
    assert!(lines > 3);
    assert_eq!(emu.notifications().len(), 120);

    // Not a journal at all, even without a final line break: refused and left alone.
    std::fs::write(&journal, "shopping list").unwrap();
    let o = run(vec![]).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(one_line(&o).contains("is not an oint bulk journal"));
    assert_eq!(std::fs::read_to_string(&journal).unwrap(), "shopping list");

    // Devices are not journals (reading /dev/zero would never end).
    let o = refused(&["--input", input.to_str().unwrap(), "--journal", "/dev/zero"]).await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(one_line(&o).contains("is not a regular file"));
}

/// Runs `oint` with `args` and returns its exit code, stderr and peak resident memory (KiB),
/// from wait4 for exactly that child.
fn run_measured(args: &[&str], env: &[(&str, &Path)]) -> (Option<i32>, String, i64) {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let err_path = dir.path().join("stderr");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_oint"));
    cmd.args(args)
        .env("OINT_CONFIG", "/nonexistent")
        .env("OINT_STATE_DIR", dir.path().join("state"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_path).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    // Reaped by wait4 below, which also gives its peak memory.
    #[allow(clippy::zombie_processes)]
    let child = cmd.spawn().unwrap();
    let mut status = 0;
    // SAFETY: plain out-parameters for wait4 on our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32);
    let status = std::process::ExitStatus::from_raw(status);
    (
        status.code(),
        std::fs::read_to_string(err_path).unwrap(),
        usage.ru_maxrss,
    )
}

/// Writes `head`, `len` bytes of `fill`, then `tail` to `path`, a megabyte at a time.
fn write_huge(path: &Path, head: &str, fill: u8, len: usize, tail: &str) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    f.write_all(head.as_bytes()).unwrap();
    let chunk = vec![fill; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len());
        f.write_all(&chunk[..n]).unwrap();
        left -= n;
    }
    f.write_all(tail.as_bytes()).unwrap();
    f.flush().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_300_mb_row_is_an_invalid_row_read_in_bounded_memory() {
    const HUGE: usize = 300 << 20;
    // Far below the 300 MB that reading the row whole would take.
    const MAX_RSS_KIB: i64 = 64 << 10;
    let emu = unlimited().await;
    let url = emu.webhook_url(1, SECRET);
    let dir = tempfile::tempdir().unwrap();

    // JSON Lines, with --skip-invalid: the rows around it are sent.
    let input = dir.path().join("in.jsonl");
    write_huge(
        &input,
        "{\"user\": 2, \"text\": \"row 0\"}\n{\"user\": 2, \"text\": \"",
        b'a',
        HUGE,
        "\"}\n{\"user\": 3, \"text\": \"row 2\"}\n",
    );
    let report = dir.path().join("report.jsonl");
    let (code, err, rss) = tokio::task::block_in_place(|| {
        run_measured(
            &[
                "notify",
                "bulk",
                "--url",
                &url,
                "--input",
                input.to_str().unwrap(),
                "--skip-invalid",
                "--report",
                report.to_str().unwrap(),
            ],
            &[],
        )
    });
    println!("jsonl: peak RSS {rss} KiB");
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains("line 2: is longer than 1048576 bytes"),
        "{err}"
    );
    assert!(rss < MAX_RSS_KIB, "peak RSS {rss} KiB");
    let lines = report_lines(&report);
    let invalid: Vec<&Value> = lines
        .iter()
        .filter(|l| l["error"] == "INVALID_ROW")
        .collect();
    assert_eq!(invalid.len(), 1);
    assert_eq!(invalid[0]["row"], 2);
    let mut stored: Vec<String> = emu.notifications().into_iter().map(|n| n.message).collect();
    stored.sort();
    assert_eq!(stored, ["row 0", "row 2"]);
    std::fs::remove_file(&input).unwrap();

    // CSV, a huge quoted field with line breaks, without --skip-invalid: nothing is sent.
    // 100 MB: the CSV parser is slow in debug builds, and 100 times the limit shows as much.
    let input = dir.path().join("in.csv");
    write_huge(
        &input,
        "user,text\n2,first\n3,\"",
        b'\n',
        100 << 20,
        "\"\n4,last\n",
    );
    let (code, err, rss) = tokio::task::block_in_place(|| {
        run_measured(
            &[
                "notify",
                "bulk",
                "--url",
                &url,
                "--input",
                input.to_str().unwrap(),
            ],
            &[],
        )
    });
    println!("csv: peak RSS {rss} KiB");
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("line 3: is longer than 1048576 bytes"),
        "{err}"
    );
    assert!(
        err.contains("1 of 3 rows are invalid; nothing was sent"),
        "{err}"
    );
    assert!(rss < MAX_RSS_KIB, "peak RSS {rss} KiB");
    assert_eq!(emu.notifications().len(), 2, "only the JSON Lines run sent");
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn endless_standard_input_stops_at_the_spool_limit_and_leaves_no_file() {
    let emu = unlimited().await;
    let url = emu.webhook_url(1, SECRET);
    let tmp = tempfile::tempdir().unwrap();
    let (code, err, _) = tokio::task::block_in_place(|| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_oint"));
        cmd.args([
            "notify",
            "bulk",
            "--url",
            &url,
            "--input",
            "-",
            "--stdin-limit",
            "8",
        ])
        .env("OINT_CONFIG", "/nonexistent")
        .env("OINT_STATE_DIR", tmp.path().join("state"))
        .env("TMPDIR", tmp.path())
        .stdin(std::fs::File::open("/dev/zero").unwrap());
        let o = cmd.output().unwrap();
        (o.status.code(), stderr(&o), 0)
    });
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("--input -") && err.contains("--stdin-limit (8 MiB)"),
        "{err}"
    );
    assert!(entries(tmp.path()).is_empty(), "no spool file left");
    assert!(emu.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signal_mid_spool_leaves_no_file() {
    let emu = unlimited().await;
    let url = emu.webhook_url(1, SECRET);
    for signal in ["TERM", "INT"] {
        let tmp = tempfile::tempdir().unwrap();
        let spool_dir = tmp.path().join("spool");
        std::fs::create_dir(&spool_dir).unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_oint"))
            .args(["notify", "bulk", "--url", &url, "--input", "-"])
            .env("OINT_CONFIG", "/nonexistent")
            .env("OINT_STATE_DIR", tmp.path().join("state"))
            .env("TMPDIR", &spool_dir)
            .stdin(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(rows(20_000, false).as_bytes()).unwrap();
        stdin.flush().unwrap();
        // Spooling: the open file is in TMPDIR, but it has no name there.
        let fds = format!("/proc/{}/fd", child.id());
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let spool = loop {
            let found = std::fs::read_dir(&fds).ok().and_then(|fds| {
                fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
                    .find(|target| target.starts_with(&spool_dir))
            });
            if let Some(found) = found {
                break found;
            }
            assert!(std::time::Instant::now() < deadline, "no spool file seen");
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(
            spool.to_string_lossy().ends_with("(deleted)"),
            "the spool is unnamed: {}",
            spool.display()
        );
        assert!(entries(&spool_dir).is_empty(), "nothing named in TMPDIR");
        let killed = std::process::Command::new("kill")
            .args([format!("-{signal}"), child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let status = child.wait().unwrap();
        drop(stdin);
        assert!(!status.success(), "{signal}: {status}");
        assert!(entries(&spool_dir).is_empty(), "{signal}: no file left");
    }
    assert!(emu.requests().is_empty());
}

#[test]
fn readers_never_panic_on_arbitrary_bytes() {
    use oint::commands::bulk::input::{Format, RowError, read_from};
    use oint::commands::bulk::journal::parse_journal;
    use proptest::prelude::*;
    let header = "{\"journal\":1,\"input\":\"f\"}\n";
    proptest!(ProptestConfig::with_cases(2000), |(bytes in proptest::collection::vec(any::<u8>(), 0..400), pick in 0usize..3)| {
        let mut journal = header.as_bytes().to_vec();
        journal.extend_from_slice(&bytes);
        match parse_journal(&journal[..], "j", "f", 100) {
            Ok(states) => prop_assert!(states.len() <= 101),
            Err(e) => prop_assert!(!e.contains('\n') && e.contains("j")),
        }
        let _ = parse_journal(&bytes[..], "j", "f", 100);
        let format = if pick == 0 { Format::Csv } else { Format::Jsonl };
        let mut text = if pick == 0 { b"user,text\n".to_vec() } else { Vec::new() };
        text.extend_from_slice(&bytes);
        if let Ok(rows) = read_from(std::io::Cursor::new(text), format) {
            let mut last = 0;
            for row in rows {
                let line = match row {
                    Ok(raw) => raw.line,
                    Err(RowError { line, message, .. }) => {
                        prop_assert!(!message.contains('\n'), "{}", message);
                        line
                    }
                };
                prop_assert!(line >= last && line >= 1, "line {} after {}", line, last);
                last = line;
            }
        }
    });
}
