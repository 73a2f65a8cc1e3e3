//! The modern commands (`oint notify …`, `oint call …`) end to end against an emulator.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn send_with_images_files_and_colour() {
    let emu = emulator().await;
    let url = emu.webhook_url(1, SECRET);
    let o = oint(
        &[
            "notify",
            "send",
            "--url",
            &url,
            "--user",
            "2",
            "--text",
            "Deployed",
            "--system",
            "--image",
            "chart=https://ci.example.com/c.png",
            "--file",
            "log.txt=/upload/log.txt",
            "--color",
            "#29619b",
            "--json",
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let id = json(&o)["id"].as_u64().expect("id");
    let n = &emu.notifications()[0];
    assert_eq!(
        (n.id, n.user_id, n.author_id, n.r#type.as_str()),
        (id, 2, 0, "SYSTEM")
    );
    let attach = n.attach.as_ref().unwrap();
    assert_eq!(attach["COLOR"], "#29619b");
    let text = attach.to_string();
    assert!(text.contains("c.png") && text.contains("log.txt"), "{text}");
    assert_no_secrets(&o);
}

#[tokio::test(flavor = "multi_thread")]
async fn output_formats() {
    let emu = emulator().await;
    let url = emu.webhook_url(1, SECRET);
    let send = |format: &'static str| {
        let url = url.clone();
        async move {
            oint(
                &[
                    "notify", "send", "--url", &url, "--user", "1", "--text", "x", "--output",
                    format,
                ],
                &[],
            )
            .await
        }
    };
    let plain = send("plain").await;
    assert_eq!(plain.status.code(), Some(0));
    let id: u64 = stdout(&plain)
        .trim()
        .parse()
        .expect("plain output is the id");
    let as_json = send("json").await;
    assert_eq!(json(&as_json)["id"].as_u64(), Some(id + 1));
    // Not a terminal and no --output: JSON.
    let default = oint(
        &[
            "notify", "send", "--url", &url, "--user", "1", "--text", "x",
        ],
        &[],
    )
    .await;
    assert_eq!(json(&default)["id"].as_u64(), Some(id + 2));
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_by_id_and_by_tag() {
    let emu = emulator().await;
    let hook = emu.webhook_url(1, SECRET);
    let base = emu.url();
    let sent = oint(
        &[
            "notify", "send", "--url", &hook, "--user", "1", "--text", "mine",
        ],
        &[],
    )
    .await;
    let id = json(&sent)["id"].to_string();
    let deleted = oint(&["notify", "delete", "--url", &hook, "--id", &id], &[]).await;
    assert_eq!(json(&deleted), json!({"deleted": true}));
    let again = oint(&["notify", "delete", "--url", &hook, "--id", &id], &[]).await;
    assert_eq!(again.status.code(), Some(1), "false is a failure");
    assert!(stderr(&again).contains("did not delete"));

    // Tags belong to OAuth apps: send two tagged ones with the token, delete them by tag.
    for user in ["2", "3"] {
        let o = oint(
            &[
                "notify", "send", "--url", &base, "--token", TOKEN, "--user", user, "--text", "t",
                "--tag", "alert",
            ],
            &[],
        )
        .await;
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
    assert_eq!(emu.notifications().len(), 2);
    let o = oint(
        &[
            "notify", "delete", "--url", &base, "--token", TOKEN, "--tag", "alert",
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(emu.notifications().is_empty(), "deleted for every user");

    // Over a webhook, deleting by tag needs the application's client id.
    let o = oint(&["notify", "delete", "--url", &hook, "--tag", "alert"], &[]).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("--client-id: is required"),
        "{}",
        stderr(&o)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn webhook_tags_are_warned_about() {
    let emu = emulator().await;
    let hook = emu.webhook_url(1, SECRET);
    let o = oint(
        &[
            "notify", "send", "--url", &hook, "--user", "1", "--text", "x", "--tag", "t",
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(0));
    assert!(stderr(&o).starts_with("warning: --tag: is dropped on webhook calls"));
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_sends_nothing() {
    let emu = emulator().await;
    let base = emu.url();
    let o = oint(
        &[
            "notify",
            "send",
            "--url",
            &base,
            "--token",
            TOKEN,
            "--user",
            "1",
            "--text",
            "x",
            "--dry-run",
            "--json",
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let preview = json(&o);
    assert_eq!(
        preview["url"],
        format!("{base}/rest/im.notify.personal.add")
    );
    assert_eq!(preview["body"]["auth"], "***");
    assert!(emu.notifications().is_empty());
    assert_no_secrets(&o);
}

#[tokio::test(flavor = "multi_thread")]
async fn call_any_method_with_nested_params() {
    let emu = emulator().await;
    let hook = emu.webhook_url(1, SECRET);
    let o = oint(
        &[
            "call",
            "im.notify.system.add",
            "--url",
            &hook,
            "USER_ID=3",
            "MESSAGE=Disk full",
            "ATTACH[0][MESSAGE]=see /var/log",
            "ATTACH[1][IMAGE][LINK]=https://x/y.png",
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let answer = json(&o);
    assert!(
        answer["result"].is_u64() && answer["time"].is_object(),
        "{answer}"
    );
    let n = &emu.notifications()[0];
    assert_eq!((n.user_id, n.r#type.as_str()), (3, "SYSTEM"));
    assert!(n.attach.as_ref().unwrap().to_string().contains("y.png"));

    let dir = tempfile::tempdir().unwrap();
    let params = dir.path().join("p.json");
    std::fs::write(&params, r#"{"USER_ID": 4, "MESSAGE": "from a file"}"#).unwrap();
    let at = format!("@{}", params.display());
    let o = oint(
        &[
            "call",
            "im.notify.personal.add",
            "--url",
            &hook,
            "--params",
            &at,
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(emu.notifications()[1].message, "from a file");

    // Portal errors: JSON on stdout, one line on stderr, exit by kind.
    let o = oint(
        &[
            "call",
            "im.notify.personal.add",
            "--url",
            &hook,
            "MESSAGE=x",
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(json(&o)["error"], "USER_ID_EMPTY");
    let bad = emu.webhook_url(1, "wrong");
    let o = oint(&["call", "im.notify.personal.add", "--url", &bad], &[]).await;
    assert_eq!(o.status.code(), Some(4));
    let o = oint(&["call", "x", "--url", &hook, "novalue"], &[]).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("expected KEY=VALUE"));
}

fn private(path: &std::path::Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn portals_from_the_config_file_and_secrets_from_files_or_stdin() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let token_file = dir.path().join("app.token");
    private(&token_file, &format!("{TOKEN}\n"), 0o600);
    private(
        &config,
        &format!(
            "default_portal = \"hook\"\n[portals.hook]\nurl = \"{}\"\n[portals.app]\nurl = \"{}\"\ntoken_file = \"{}\"\n",
            emu.webhook_url(1, SECRET),
            emu.url(),
            token_file.display()
        ),
        0o600,
    );
    let env = [("OINT_CONFIG", config.to_str().unwrap())];

    // The default portal (a webhook): tags are dropped.
    let o = oint(
        &["notify", "send", "--user", "2", "--text", "a", "--tag", "t"],
        &env,
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // A named portal with a token file: tags are kept.
    let o = oint(
        &[
            "notify", "send", "--portal", "app", "--user", "2", "--text", "b", "--tag", "t",
        ],
        &env,
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let tags: Vec<Option<String>> = emu.notifications().into_iter().map(|n| n.tag).collect();
    assert!(tags[0].is_none() && tags[1].is_some(), "{tags:?}");

    // The token from standard input.
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_oint"));
    cmd.args([
        "notify",
        "send",
        "--url",
        &emu.url(),
        "--token-stdin",
        "--user",
        "2",
        "--text",
        "c",
        "--tag",
        "u",
    ])
    .env("OINT_CONFIG", "/nonexistent")
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    use tokio::io::AsyncWriteExt;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{TOKEN}\n").as_bytes())
        .await
        .unwrap();
    let o = child.wait_with_output().await.unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(emu.notifications()[2].tag.is_some());
    assert_no_secrets(&o);

    // A secret file others can read is refused before anything is sent.
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = oint(
        &[
            "notify", "send", "--portal", "app", "--user", "2", "--text", "d",
        ],
        &env,
    )
    .await;
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("chmod 600"), "{}", stderr(&o));
    let o = oint(
        &[
            "notify", "send", "--portal", "nope", "--user", "2", "--text", "d",
        ],
        &env,
    )
    .await;
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no portal \"nope\""), "{}", stderr(&o));
    assert_eq!(emu.notifications().len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_errors_are_one_line_and_exit_2() {
    // A real portal rather than the sandbox (which an oint may be built without): some
    // checks come once the client exists. It must receive nothing.
    let emu = emulator().await;
    let url = emu.webhook_url(1, SECRET);
    let table: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["notify", "send", "--user", "1", "--text", "x"],
            "--url: no portal given",
        ),
        (
            vec![
                "notify", "send", "--url", &url, "--user", "0", "--text", "x",
            ],
            "invalid value '0' for '--user <ID>'",
        ),
        (
            vec!["notify", "send", "--url", &url, "--user", "1"],
            "--text <TEXT>",
        ),
        (
            // The portal replaces an invalid colour with a random one: a warning, refused
            // only with --strict.
            vec![
                "notify", "send", "--url", &url, "--user", "1", "--text", "x", "--color", "red",
                "--image", "a=/b", "--strict",
            ],
            "--color: COLOR: \"red\" is not a colour",
        ),
        (
            vec!["notify", "delete", "--url", &url],
            "--id <ID>|--tag <TAG>|--sub-tag <TAG>",
        ),
        (
            vec!["notify", "delete", "--url", &url, "--id", "1", "--tag", "t"],
            "cannot be used with",
        ),
        (
            vec!["notify", "read", "--url", &url, "--all", "--unread"],
            "cannot be used with",
        ),
        (
            vec!["notify", "list", "--url", &url, "--limit", "51"],
            "51 is not in 1..=50",
        ),
        (
            vec!["notify", "search", "--url", &url, "ab"],
            "error: TEXT: needs at least 3 characters",
        ),
    ];
    for (args, want) in table {
        let o = oint(&args, &[]).await;
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(want), "{args:?}: want {want:?}, got {err}");
    }
    assert!(emu.requests().is_empty(), "nothing was sent");
}

#[tokio::test(flavor = "multi_thread")]
async fn completions_and_man_come_from_the_same_definitions() {
    for shell in ["bash", "zsh", "fish"] {
        let o = oint(&["completions", shell], &[]).await;
        assert_eq!(o.status.code(), Some(0));
        let script = stdout(&o);
        assert!(
            script.contains("notify") && script.contains("--sub-tag"),
            "{shell}"
        );
    }
    let man = oint(&["man"], &[]).await;
    assert!(stdout(&man).contains(".TH oint 1"));
    let help = oint(&["notify", "send", "--help"], &[]).await;
    assert!(stdout(&help).contains("--image <NAME=URL>"));
    let help = oint(&["notify", "--help"], &[]).await;
    assert!(stdout(&help).contains("Examples:"));
}

#[tokio::test(flavor = "multi_thread")]
async fn list_search_read_answer_and_confirm() {
    let emu = emulator().await;
    let hook = emu.webhook_url(1, SECRET);
    for text in [
        "Disk almost full on host-7",
        "Backup\tdone\nat night",
        "Deploy finished",
    ] {
        let o = oint(
            &[
                "notify", "send", "--url", &hook, "--user", "1", "--text", text, "--system",
            ],
            &[],
        )
        .await;
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
    let listed = oint(
        &[
            "notify", "list", "--url", &hook, "--all", "--limit", "2", "--json",
        ],
        &[],
    )
    .await;
    let items = json(&listed);
    let ids: Vec<u64> = items
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids.len(), 3, "--all follows the pages: {items}");
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first");

    let plain = oint(
        &["notify", "list", "--url", &hook, "--output", "plain"],
        &[],
    )
    .await;
    let rows: Vec<String> = stdout(&plain).lines().map(String::from).collect();
    assert_eq!(rows.len(), 3);
    assert!(
        rows[1].ends_with("Backup\\tdone\\nat night"),
        "tabs and newlines escaped: {}",
        rows[1]
    );
    assert!(rows[0].contains("\tunread\t"));
    let table = oint(
        &["notify", "list", "--url", &hook, "--output", "table"],
        &[],
    )
    .await;
    assert!(stdout(&table).contains("TEXT") && stdout(&table).contains("system"));

    let found = oint(
        &["notify", "search", "host-7", "--url", &hook, "--json"],
        &[],
    )
    .await;
    assert_eq!(json(&found).as_array().unwrap().len(), 1);

    let newest = ids[0].to_string();
    let o = oint(
        &[
            "notify",
            "read",
            "--url",
            &hook,
            "--id",
            &newest,
            "--only-current",
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let read: Vec<bool> = emu.notifications().iter().map(|n| n.read).collect();
    assert_eq!(read, vec![false, false, true]);
    let o = oint(&["notify", "read", "--url", &hook, "--all"], &[]).await;
    assert_eq!(o.status.code(), Some(0));
    assert!(emu.notifications().iter().all(|n| n.read));

    let answered = oint(
        &[
            "notify", "answer", "--url", &hook, "--id", &newest, "--text", "On it", "--json",
        ],
        &[],
    )
    .await;
    assert_eq!(answered.status.code(), Some(0), "{}", stderr(&answered));
    assert!(json(&answered)["messages"].is_array());

    let seeded = emu
        .seed_notifications(&json!({"user_id": 1, "message": "Join?", "buttons": [{"TITLE": "Yes", "VALUE": "Y", "TYPE": "accept"}]}))
        .expect("seeded");
    let confirm = seeded["id"].to_string();
    let o = oint(
        &[
            "notify", "confirm", "--url", &hook, "--id", &confirm, "--value", "Y",
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = oint(
        &[
            "notify", "confirm", "--url", &hook, "--id", &confirm, "--value", "Y",
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(1), "already confirmed: false");
    assert!(stderr(&o).contains("answered false"));
}

/// `--text -` reads the text from standard input; too much input is refused, not cut.
#[tokio::test(flavor = "multi_thread")]
async fn text_from_standard_input() {
    use tokio::io::AsyncWriteExt;
    let emu = emulator().await;
    let url = emu.webhook_url(1, SECRET);
    let run = |input: Vec<u8>, extra: &'static [&'static str]| {
        let url = url.clone();
        async move {
            let mut args = vec![
                "notify", "send", "--url", &url, "--user", "1", "--text", "-",
            ];
            args.extend_from_slice(extra);
            let mut child = oint_command(&args, &[])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdin = child.stdin.take().unwrap();
            // oint may stop reading (input too long): a broken pipe is its answer, not ours.
            let _ = stdin.write_all(&input).await;
            drop(stdin);
            child.wait_with_output().await.unwrap()
        }
    };
    let df = "Filesystem  Size  Used Avail Use%\n/dev/vda    252G  231G   21G  92% /\n";
    let o = run(df.as_bytes().to_vec(), &[]).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stderr(&o), "", "no hint when standard input is a pipe");
    let stored = emu.notifications();
    assert_eq!(stored.len(), 1);
    assert_eq!(
        stored[0].message,
        df.trim_end_matches('\n'),
        "sent as read, one trailing newline dropped"
    );

    let o = run(vec![b'x'; 1024 * 1024 + 1], &[]).await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with("error: --text -: standard input is longer than 1024 KiB"),
        "{}",
        stderr(&o)
    );
    let o = run(vec![0xff, 0xfe], &[]).await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("not UTF-8"), "{}", stderr(&o));
    let o = run(b"  \n".to_vec(), &[]).await;
    assert_eq!(
        o.status.code(),
        Some(2),
        "blank text is refused: {}",
        stderr(&o)
    );
    let o = run(b"hi".to_vec(), &["--token-stdin"]).await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--token-stdin"), "{}", stderr(&o));
    assert_eq!(emu.notifications().len(), 1, "nothing else was sent");
}

/// `--markdown` sends BB-codes; without it the text goes as typed.
#[tokio::test(flavor = "multi_thread")]
async fn markdown_becomes_bb_codes() {
    let emu = emulator().await;
    let url = emu.webhook_url(1, SECRET);
    let text = "**Deploy failed** on `web-1`:\n- see [the log](https://ci.example.com/42)\n- [x](javascript:alert(1))";
    let send = |extra: &'static [&'static str]| {
        let url = url.clone();
        async move {
            let mut args = vec![
                "notify", "send", "--url", &url, "--user", "1", "--text", text,
            ];
            args.extend_from_slice(extra);
            oint(&args, &[]).await
        }
    };
    let o = send(&["--markdown"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = send(&[]).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let messages: Vec<String> = emu.notifications().into_iter().map(|n| n.message).collect();
    assert_eq!(
        messages,
        [
            "[b]Deploy failed[/b] on [code]web-1[/code]:\n\n• see [url=https://ci.example.com/42]the log[/url]\n• x",
            text,
        ]
    );
}

/// `--user 1,5,9`: one notification each, in one batch request, one result per user in the
/// order given; exit 3 when only some were delivered.
#[tokio::test(flavor = "multi_thread")]
async fn several_users_one_batch_one_result_each() {
    let emu = emulator().await;
    let url = emu.webhook_url(1, SECRET);
    let o = oint(
        &[
            "notify",
            "send",
            "--url",
            &url,
            "--user",
            "3,1,2",
            "--text",
            "Release 2.4",
            "--json",
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let results = json(&o);
    let users: Vec<u64> = results
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["user"].as_u64().unwrap())
        .collect();
    assert_eq!(users, [3, 1, 2], "in the order given");
    let mut stored: Vec<(u64, u64)> = emu
        .notifications()
        .iter()
        .map(|n| (n.user_id, n.id))
        .collect();
    stored.sort_unstable();
    let mut answered: Vec<(u64, u64)> = results
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["user"].as_u64().unwrap(), r["id"].as_u64().unwrap()))
        .collect();
    answered.sort_unstable();
    assert_eq!(stored, answered, "each id printed is the stored one");
    assert_eq!(emu.requests().len(), 1, "one batch request");

    // A user who does not exist: the others are delivered, the run says so (exit 3).
    let o = oint(
        &[
            "notify", "send", "--url", &url, "--user", "1,99999", "--text", "partial", "--output",
            "plain",
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].starts_with("1\t"), "{lines:?}");
    assert!(
        lines[1].starts_with("99999\terror: not created"),
        "{lines:?}"
    );
    // None delivered: a failure (exit 1).
    let o = oint(
        &[
            "notify",
            "send",
            "--url",
            &url,
            "--user",
            "99998,99999",
            "--text",
            "none",
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    // Checks hold for every user before anything is sent.
    let before = emu.notifications().len();
    let o = oint(
        &[
            "notify", "send", "--url", &url, "--user", "1,0", "--text", "x",
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(emu.notifications().len(), before);
}

/// `--user` with more than 50 users and `--dry-run`: one request per batch of 50, as the
/// real send makes them, in a list; nothing is sent.
#[tokio::test(flavor = "multi_thread")]
async fn dry_run_to_many_users_shows_each_batch() {
    let emu = emulator().await;
    let url = emu.webhook_url(1, SECRET);
    let users: Vec<String> = (1..=120).map(|u| u.to_string()).collect();
    let users = users.join(",");
    let o = oint(
        &[
            "notify",
            "send",
            "--url",
            &url,
            "--user",
            &users,
            "--text",
            "x",
            "--dry-run",
            "--json",
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let previews = json(&o);
    let previews = previews.as_array().expect("a list of requests");
    let sizes: Vec<usize> = previews
        .iter()
        .map(|p| p["body"]["cmd"].as_object().unwrap().len())
        .collect();
    assert_eq!(sizes, [50, 50, 20]);
    assert!(previews[0]["url"].as_str().unwrap().ends_with("/batch"));
    assert_eq!(
        previews[2]["body"]["cmd"]["19"],
        "im.notify.personal.add?USER_ID=120&MESSAGE=x"
    );
    // Up to 50: one request, as before.
    let o = oint(
        &[
            "notify",
            "send",
            "--url",
            &url,
            "--user",
            "1,2",
            "--text",
            "x",
            "--dry-run",
            "--json",
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(json(&o)["body"]["cmd"].as_object().unwrap().len(), 2);
    assert!(emu.requests().is_empty() && emu.notifications().is_empty());
}

/// `--text -` on a terminal says what it waits for. `script` (util-linux) gives oint a
/// terminal and types into it: a line, then Ctrl-D.
#[tokio::test(flavor = "multi_thread")]
async fn text_from_a_terminal_gets_a_hint() {
    use tokio::io::AsyncWriteExt;
    // A portal rather than the sandbox, which an oint may be built without; a dry run sends
    // it nothing.
    let emu = emulator().await;
    let command = format!(
        "'{}' notify send --url '{}' --user 1 --text - --dry-run --json",
        env!("CARGO_BIN_EXE_oint"),
        emu.webhook_url(1, SECRET)
    );
    let spawned = tokio::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("OINT_CONFIG", "/nonexistent/oint-test-config.toml")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let Ok(mut child) = spawned else {
        eprintln!("skipped: no `script` to give oint a terminal");
        return;
    };
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"typed on a terminal\n\x04").await.unwrap();
    drop(stdin);
    let o = child.wait_with_output().await.unwrap();
    let screen = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{screen}");
    // The terminal echoes what is typed, perhaps before the hint: a line of its own.
    assert!(
        screen
            .lines()
            .any(|l| l.trim_end() == "reading --text from standard input; end with Ctrl-D"),
        "{screen}"
    );
    assert!(
        screen.contains(r#""MESSAGE": "typed on a terminal""#),
        "{screen}"
    );
    assert!(emu.requests().is_empty(), "a dry run sends nothing");
}
