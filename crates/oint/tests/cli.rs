//! The built `oint` binary end to end against an emulator on a random loopback port.

mod common;

use common::*;
use serde_json::Value;

const OPI_BLOCKS: &str = "[{'IMAGE':{'NAME':'Image1','LINK':'https://example.com/picture.jpg'}},{'FILE':{'NAME':'File1.docx','LINK':'https://example.com/document.docx'}}]";

#[tokio::test(flavor = "multi_thread")]
async fn opi_webhook_call_with_picture_and_file_blocks() {
    let emu = emulator().await;
    let url = emu.webhook_url(1, SECRET);
    let o = oint(
        &[
            "bitrix24",
            "CreatePersonalNotification",
            "--url",
            &url,
            "--user",
            "1",
            "--text",
            "Message text",
            "--blocks",
            OPI_BLOCKS,
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let answer = json(&o);
    let id = answer["result"].as_u64().expect("result is a number");
    assert!(answer["time"]["start"].is_number());
    let stored = emu.notifications();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].id, id);
    let attach = stored[0].attach.as_ref().unwrap().to_string();
    assert!(
        attach.contains("Image1") && attach.contains("File1.docx"),
        "{attach}"
    );
    assert_no_secrets(&o);
}

#[tokio::test(flavor = "multi_thread")]
async fn opi_token_call_with_tag_new() {
    let emu = emulator().await;
    let url = emu.url();
    let args = [
        "bitrix24",
        "CreatePersonalNotification",
        "--url",
        &url,
        "--user",
        "10",
        "--text",
        "Message text",
        "--tag",
        "New",
        "--token",
        TOKEN,
    ];
    let first = oint(&args, &[]).await;
    let second = oint(&args, &[]).await;
    for o in [&first, &second] {
        assert_eq!(o.status.code(), Some(0), "{}", stderr(o));
        assert!(
            stderr(o).is_empty(),
            "no warning for OAuth tags: {}",
            stderr(o)
        );
        assert_no_secrets(o);
    }
    let stored = emu.notifications();
    assert_eq!(stored.len(), 1, "the second replaced the first");
    assert_eq!(Some(stored[0].id), json(&second)["result"].as_u64());
    assert!(stored[0].tag.as_deref().unwrap().ends_with("|New"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tag_on_a_webhook_call_is_sent_but_warned_about() {
    let emu = emulator().await;
    let url = emu.webhook_url(1, SECRET);
    let o = oint(
        &[
            "bitrix24",
            "CreatePersonalNotification",
            "--url",
            &url,
            "--user",
            "1",
            "--text",
            "x",
            "--tag",
            "New",
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with("warning: --tag: is dropped on webhook calls"),
        "{}",
        stderr(&o)
    );
    assert_eq!(emu.notifications()[0].tag, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn method_names_are_case_insensitive_and_equals_form_works() {
    let emu = emulator().await;
    let url = format!("--url={}", emu.webhook_url(1, SECRET));
    let o = oint(
        &[
            "bitrix24",
            "createsystemnotification",
            &url,
            "--user=1",
            "--text=Hi",
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(emu.notifications()[0].r#type, "SYSTEM");
}

#[tokio::test(flavor = "multi_thread")]
async fn url_and_token_come_from_the_environment() {
    let emu = emulator().await;
    let url = emu.url();
    let o = oint(
        &[
            "bitrix24",
            "CreatePersonalNotification",
            "--user",
            "1",
            "--text",
            "from env",
            "--tag",
            "env",
        ],
        &[("BITRIX24_URL", &url), ("BITRIX24_TOKEN", TOKEN)],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(emu.notifications()[0].tag.is_some(), "token auth was used");
    // --help never shows the environment's values.
    let help = oint(
        &["bitrix24", "CreatePersonalNotification", "--help"],
        &[("BITRIX24_TOKEN", TOKEN)],
    )
    .await;
    assert_no_secrets(&help);
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_reports_true_and_false_honestly() {
    let emu = emulator().await;
    let url = emu.webhook_url(1, SECRET);
    let mine = oint(
        &[
            "bitrix24",
            "CreatePersonalNotification",
            "--url",
            &url,
            "--user",
            "1",
            "--text",
            "a",
        ],
        &[],
    )
    .await;
    let theirs = oint(
        &[
            "bitrix24",
            "CreatePersonalNotification",
            "--url",
            &url,
            "--user",
            "10",
            "--text",
            "b",
        ],
        &[],
    )
    .await;
    let (mine, theirs) = (
        json(&mine)["result"].to_string(),
        json(&theirs)["result"].to_string(),
    );

    let ok = oint(
        &[
            "bitrix24",
            "DeleteNotification",
            "--url",
            &url,
            "--notif",
            &mine,
        ],
        &[],
    )
    .await;
    assert_eq!(ok.status.code(), Some(0));
    assert_eq!(json(&ok)["result"], Value::Bool(true));

    let refused = oint(
        &[
            "bitrix24",
            "DeleteNotification",
            "--url",
            &url,
            "--notif",
            &theirs,
        ],
        &[],
    )
    .await;
    assert_eq!(refused.status.code(), Some(1), "false is not success");
    assert_eq!(
        json(&refused)["result"],
        Value::Bool(false),
        "the answer is still printed"
    );
    assert!(stderr(&refused).contains("did not delete"));
    assert_eq!(emu.notifications().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn portal_errors_print_the_answer_and_exit_by_kind() {
    let emu = emulator().await;
    let base = emu.url();
    let hook = emu.webhook_url(1, SECRET);
    let bad_hook = emu.webhook_url(1, "wrong-secret");
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec!["--url", &bad_hook], 4, "INVALID_CREDENTIALS"),
        (
            vec!["--url", &base, "--token", "stale-token"],
            4,
            "expired_token",
        ),
        (
            vec!["--url", &base, "--token", "unknown-token"],
            4,
            "invalid_token",
        ),
    ];
    for (extra, code, error) in cases {
        let mut args = vec![
            "bitrix24",
            "CreatePersonalNotification",
            "--user",
            "1",
            "--text",
            "x",
        ];
        args.extend(extra);
        let o = oint(&args, &[]).await;
        assert_eq!(o.status.code(), Some(code), "{error}: {}", stderr(&o));
        assert_eq!(json(&o)["error"], error);
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.starts_with("error: ") && err.contains(error), "{err}");
        assert_no_secrets(&o);
    }
    // A missing recipient is `false`, which is a failure too.
    let o = oint(
        &[
            "bitrix24",
            "CreatePersonalNotification",
            "--url",
            &hook,
            "--user",
            "99",
            "--text",
            "x",
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(json(&o)["result"], Value::Bool(false));
    assert!(stderr(&o).contains("user 99 does not exist"));
    assert!(emu.notifications().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_errors_exit_2_and_send_nothing() {
    let emu = emulator().await;
    let hook = emu.webhook_url(1, SECRET);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--user", "1", "--text", "x"], "--url: is required"),
        (vec!["--url", &hook, "--text", "x"], "--user: is required"),
        (
            vec!["--url", &hook, "--user", "ten", "--text", "x"],
            "--user: expected a user ID",
        ),
        (
            vec!["--url", &hook, "--user", "1", "--text", ""],
            "--text: is required",
        ),
        (
            vec![
                "--url",
                &hook,
                "--user",
                "1",
                "--text",
                "x",
                "--blocks",
                "[{'IMAGE'",
            ],
            "--blocks: is not valid JSON",
        ),
        (
            // The portal would answer ATTACH_ERROR; the check stops it before sending.
            vec![
                "--url",
                &hook,
                "--user",
                "1",
                "--text",
                "x",
                "--blocks",
                "[{'IMAGE':{'NAME':'x','LINK':'ftp://x'}}]",
            ],
            "--blocks: blocks[0].IMAGE.LINK: \"ftp://x\" is not a link the portal accepts (use http://, https:// or /)",
        ),
        (
            vec!["--url", &hook, "--user", "1", "--text", "x", "--bogus", "1"],
            "unexpected argument '--bogus'",
        ),
        (
            vec![
                "--url",
                "http://portal.example.com/rest/1/s/",
                "--user",
                "1",
                "--text",
                "x",
            ],
            "--url: plain http:// is refused",
        ),
        (
            vec!["--url", "portal.example.com", "--user", "1", "--text", "x"],
            "--url: https://portal.example.com/ is not a webhook URL",
        ),
    ];
    for (extra, want) in cases {
        let mut args = vec!["bitrix24", "CreatePersonalNotification"];
        args.extend(extra);
        let o = oint(&args, &[]).await;
        assert_eq!(o.status.code(), Some(2), "{want}: {}", stderr(&o));
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.contains(want), "want {want:?}, got {err}");
        assert!(o.stdout.is_empty());
    }
    let o = oint(&["bitrix24", "NoSuchMethod", "--url", &hook], &[]).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("oint bitrix24' to list"),
        "{}",
        stderr(&o)
    );
    assert!(emu.notifications().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn test_mode_prints_the_request_masked_and_sends_nothing() {
    let emu = emulator().await;
    let base = emu.url();
    let o = oint(
        &[
            "bitrix24",
            "CreatePersonalNotification",
            "--url",
            &base,
            "--token",
            TOKEN,
            "--user",
            "10",
            "--text",
            "x",
            "--tag",
            "New",
            "--test",
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
    assert_eq!(preview["body"]["USER_ID"], "10");
    assert_eq!(preview["body"]["TAG"], "New");
    assert_no_secrets(&o);

    let hook = emu.webhook_url(1, SECRET);
    let o = oint(
        &[
            "bitrix24",
            "DeleteNotification",
            "--url",
            &hook,
            "--notif",
            "5",
            "--test",
        ],
        &[],
    )
    .await;
    assert_eq!(
        json(&o)["url"],
        format!("{base}/rest/1/***/im.notify.delete")
    );
    assert_no_secrets(&o);
    assert!(emu.notifications().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn debug_shows_traffic_with_secrets_masked() {
    let emu = emulator().await;
    for url_args in [
        vec!["--url".to_string(), emu.webhook_url(1, SECRET)],
        vec!["--url".into(), emu.url(), "--token".into(), TOKEN.into()],
    ] {
        let mut args: Vec<&str> = vec![
            "bitrix24",
            "CreatePersonalNotification",
            "--user",
            "1",
            "--text",
            "dbg",
            "--debug",
        ];
        args.extend(url_args.iter().map(String::as_str));
        let o = oint(&args, &[]).await;
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains("im.notify.personal.add") && err.contains("dbg"),
            "{err}"
        );
        assert!(err.contains("***"), "{err}");
        assert_no_secrets(&o);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn out_writes_the_answer_to_a_file() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("answer.json");
    let hook = emu.webhook_url(1, SECRET);
    let o = oint(
        &[
            "bitrix24",
            "CreatePersonalNotification",
            "--url",
            &hook,
            "--user",
            "1",
            "--text",
            "x",
            "--out",
            path.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("File with size "), "{}", stdout(&o));
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(written["result"].is_u64());
}

#[tokio::test(flavor = "multi_thread")]
async fn blocks_from_a_json_file() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blocks.json");
    std::fs::write(&path, r#"[{"MESSAGE": "from a file"}]"#).unwrap();
    let hook = emu.webhook_url(1, SECRET);
    let o = oint(
        &[
            "bitrix24",
            "CreatePersonalNotification",
            "--url",
            &hook,
            "--user",
            "1",
            "--text",
            "x",
            "--blocks",
            path.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        emu.notifications()[0]
            .attach
            .as_ref()
            .unwrap()
            .to_string()
            .contains("from a file")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn network_failure_exits_1_with_one_line() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/rest/1/{SECRET}/");
    let o = oint(
        &[
            "bitrix24",
            "CreatePersonalNotification",
            "--url",
            &url,
            "--user",
            "1",
            "--text",
            "x",
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.starts_with("error: could not reach") && err.lines().count() == 1,
        "{err}"
    );
    assert_no_secrets(&o);
}

#[tokio::test(flavor = "multi_thread")]
async fn block_helpers_print_opi_blocks() {
    let o = oint(
        &[
            "bitrix24",
            "GetPictureBlock",
            "--title",
            "Image1",
            "--url",
            "https://example.com/p.jpg",
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        json(&o),
        serde_json::json!({"IMAGE": {"NAME": "Image1", "LINK": "https://example.com/p.jpg"}})
    );
    let o = oint(
        &[
            "bitrix24",
            "getfileblock",
            "--title",
            "File1.docx",
            "--url",
            "https://example.com/d.docx",
        ],
        &[],
    )
    .await;
    assert_eq!(
        json(&o),
        serde_json::json!({"FILE": {"NAME": "File1.docx", "LINK": "https://example.com/d.docx"}})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn help_lists_methods_options_examples_and_exit_codes() {
    let list = oint(&["bitrix24"], &[]).await;
    assert_eq!(list.status.code(), Some(0));
    for name in [
        "CreatePersonalNotification",
        "CreateSystemNotification",
        "DeleteNotification",
        "GetPictureBlock",
        "GetFileBlock",
        "Notifications:",
        "Exit codes",
    ] {
        assert!(stdout(&list).contains(name), "{name}");
    }
    for args in [
        vec!["bitrix24", "CreatePersonalNotification", "--help"],
        vec!["bitrix24", "CreatePersonalNotification"],
    ] {
        let help = oint(&args, &[]).await;
        assert_eq!(help.status.code(), Some(0));
        for flag in [
            "--url",
            "--user",
            "--text",
            "--tag",
            "--blocks",
            "--token",
            "--debug",
            "--test",
            "--out",
            "Examples:",
            "Exit codes:",
        ] {
            assert!(stdout(&help).contains(flag), "{flag} missing from {args:?}");
        }
    }
    let help = oint(&["bitrix24", "DeleteNotification", "--help"], &[]).await;
    assert!(stdout(&help).contains("--notif"));
}
