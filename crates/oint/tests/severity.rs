//! A check never costs the user the notification: errors (what the portal refuses) exit 2 and
//! send nothing, warnings (what it drops or changes) are `warning: …` lines on stderr and the
//! notification is sent, and `--strict` refuses exactly the warned ones. The built `oint`
//! against the emulator, on every front end.

mod common;

use std::path::Path;

use common::*;
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Clean,
    Warning,
    Error,
}

/// The ATTACH corpus (checked against the portal's parser by the library's own tests) and the
/// official docs' `{"DELIMITER": true}`, each with the severity its verdict means.
fn corpus() -> Vec<(String, Value, Expect)> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../bitrix24/tests/data/attach-corpus.json");
    let data: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut cases: Vec<(String, Value, Expect)> = data["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let expect = match c["expect"].as_str().unwrap() {
                "clean" | "nothing" => Expect::Clean,
                "ignored" | "dropped" => Expect::Warning,
                "rejected" | "oversize" => Expect::Error,
                other => panic!("unknown verdict {other}"),
            };
            (
                c["name"].as_str().unwrap().to_string(),
                c["attach"].clone(),
                expect,
            )
        })
        .collect();
    cases.push((
        "docs: DELIMITER true".into(),
        json!([{"DELIMITER": true}]),
        Expect::Warning,
    ));
    cases
}

fn stored(emu: &bitrix24_emulator::Emulator, text: &str) -> usize {
    emu.notifications()
        .iter()
        .filter(|n| n.message == text)
        .count()
}

fn warning_lines(o: &std::process::Output) -> Vec<String> {
    stderr(o)
        .lines()
        .filter(|l| l.starts_with("warning: "))
        .map(String::from)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn corpus_table_through_opi_and_strict_refuses_exactly_the_warned() {
    let emu = emulator().await;
    let hook = emu.webhook_url(1, SECRET);
    let dir = tempfile::tempdir().unwrap();
    let mut counts = [0usize; 3];
    let mut refused_by_strict = Vec::new();
    let mut warned = Vec::new();
    for (i, (name, attach, expect)) in corpus().into_iter().enumerate() {
        let file = dir.path().join(format!("{i}.json"));
        std::fs::write(&file, attach.to_string()).unwrap();
        let file = file.display().to_string();
        for strict in [false, true] {
            let text = format!("corpus {i} strict={strict}");
            let mut args = vec![
                "bitrix24",
                "CreatePersonalNotification",
                "--url",
                &hook,
                "--user",
                "1",
                "--text",
                &text,
                "--blocks",
                &file,
            ];
            if strict {
                args.push("--strict");
            }
            let o = oint(&args, &[]).await;
            let code = o.status.code();
            let warnings = warning_lines(&o);
            let ctx = format!("{name} (strict {strict}): {}", stderr(&o));
            match (expect, strict) {
                (Expect::Clean, _) => {
                    assert_eq!(code, Some(0), "{ctx}");
                    assert!(warnings.is_empty(), "{ctx}");
                    assert_eq!(stored(&emu, &text), 1, "{ctx}");
                }
                (Expect::Warning, false) => {
                    assert_eq!(code, Some(0), "{ctx}");
                    assert!(!warnings.is_empty(), "{ctx}");
                    for w in &warnings {
                        assert!(w.starts_with("warning: --blocks: "), "{ctx}");
                    }
                    assert_eq!(stored(&emu, &text), 1, "sent despite warnings: {ctx}");
                    warned.push(name.clone());
                }
                (Expect::Warning, true) => {
                    assert_eq!(code, Some(2), "{ctx}");
                    assert!(warnings.is_empty(), "{ctx}");
                    assert!(
                        stderr(&o).starts_with("error: --blocks: ")
                            && stderr(&o).contains("(a warning, refused: --strict)"),
                        "{ctx}"
                    );
                    assert_eq!(stored(&emu, &text), 0, "{ctx}");
                    refused_by_strict.push(name.clone());
                }
                (Expect::Error, _) => {
                    assert_eq!(code, Some(2), "{ctx}");
                    assert!(stderr(&o).starts_with("error: --blocks: "), "{ctx}");
                    assert!(!stderr(&o).contains("refused: --strict"), "{ctx}");
                    assert_eq!(stored(&emu, &text), 0, "{ctx}");
                }
            }
        }
        counts[expect as usize] += 1;
    }
    eprintln!(
        "corpus: {} clean, {} warning, {} error",
        counts[0], counts[1], counts[2]
    );
    assert_eq!(
        refused_by_strict, warned,
        "--strict refuses exactly the warned"
    );
    assert!(counts.iter().all(|c| *c > 0), "{counts:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn notify_send_warns_and_sends_strict_refuses() {
    let emu = emulator().await;
    let hook = emu.webhook_url(1, SECRET);
    let send = |text: &'static str, extra: &'static [&'static str]| {
        let hook = hook.clone();
        async move {
            let mut args = vec![
                "notify", "send", "--url", &hook, "--user", "1", "--text", text, "--json",
            ];
            args.extend_from_slice(extra);
            oint(&args, &[]).await
        }
    };
    // A link and a colour the portal drops or replaces: two warnings, sent.
    let flags: &[&str] = &[
        "--image",
        "a=ftp://x",
        "--image",
        "b=https://x/b.png",
        "--color",
        "red",
    ];
    let o = send("s1", flags).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let w = warning_lines(&o);
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w.iter()
            .any(|l| l
                .starts_with("warning: --attach: BLOCKS[0].IMAGE.LINK: \"ftp://x\" is not a link")),
        "{w:?}"
    );
    assert!(
        w.iter()
            .any(|l| l.starts_with("warning: --color: COLOR: \"red\" is not a colour")),
        "{w:?}"
    );
    assert_eq!(stored(&emu, "s1"), 1);
    let json = json(&o);
    assert!(json["id"].as_u64().is_some(), "{json}");

    let strict: &[&str] = &[
        "--image",
        "a=ftp://x",
        "--image",
        "b=https://x/b.png",
        "--color",
        "red",
        "--strict",
    ];
    let o = send("s2", strict).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with("error: --color: COLOR: \"red\"")
            && stderr(&o).contains("\n--attach: BLOCKS[0].IMAGE.LINK: \"ftp://x\""),
        "{}",
        stderr(&o)
    );
    assert_eq!(stored(&emu, "s2"), 0);

    // What the portal refuses is still refused.
    let o = send("s3", &["--attach", "{\"MESSAGE\": \"bare\"}"]).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with("error: --attach: "),
        "{}",
        stderr(&o)
    );
    assert_eq!(stored(&emu, "s3"), 0);

    // OINT_STRICT=1 is --strict.
    let o = oint(
        &[
            "notify",
            "send",
            "--url",
            &hook,
            "--user",
            "1",
            "--text",
            "s4",
            "--attach",
            "[{\"DELIMITER\": true}]",
        ],
        &[("OINT_STRICT", "1")],
    )
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(stored(&emu, "s4"), 0);
    let o = oint(
        &[
            "notify",
            "send",
            "--url",
            &hook,
            "--user",
            "1",
            "--text",
            "s5",
            "--attach",
            "[{\"DELIMITER\": true}]",
        ],
        &[("OINT_STRICT", "maybe")],
    )
    .await;
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with("error: OINT_STRICT: expected 1 or 0"),
        "{}",
        stderr(&o)
    );
    assert_eq!(stored(&emu, "s5"), 0);
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn config_file_strict_top_level_and_per_portal() {
    use std::os::unix::fs::PermissionsExt;
    let emu = emulator().await;
    let hook = emu.webhook_url(1, SECRET);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "strict = true\ndefault_portal = \"strict\"\n[portals.strict]\nurl = \"{hook}\"\n[portals.lenient]\nurl = \"{hook}\"\nstrict = false\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let env = [("OINT_CONFIG", config.to_str().unwrap())];
    let attach = "[{\"DELIMITER\": true}]";
    let o = oint(
        &[
            "notify", "send", "--user", "1", "--text", "c1", "--attach", attach,
        ],
        &env,
    )
    .await;
    assert_eq!(o.status.code(), Some(2), "top-level strict: {}", stderr(&o));
    assert_eq!(stored(&emu, "c1"), 0);
    let o = oint(
        &[
            "notify", "send", "--portal", "lenient", "--user", "1", "--text", "c2", "--attach",
            attach,
        ],
        &env,
    )
    .await;
    assert_eq!(
        o.status.code(),
        Some(0),
        "the portal's own setting wins: {}",
        stderr(&o)
    );
    assert_eq!(warning_lines(&o).len(), 1, "{}", stderr(&o));
    assert_eq!(stored(&emu, "c2"), 1);
    // OPI's commands use no config portal; the file's top-level strict holds for them too.
    let opi = |text: &'static str| {
        [
            "bitrix24",
            "CreatePersonalNotification",
            "--url",
            hook.as_str(),
            "--user",
            "1",
            "--text",
            text,
            "--blocks",
            attach,
        ]
    };
    let o = oint(&opi("c3"), &env).await;
    assert_eq!(
        o.status.code(),
        Some(2),
        "OPI, top-level strict: {}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("(a warning, refused: --strict)"),
        "{}",
        stderr(&o)
    );
    assert_eq!(stored(&emu, "c3"), 0);
    let o = oint(&opi("c4"), &[]).await;
    assert_eq!(o.status.code(), Some(0), "without the file: {}", stderr(&o));
    assert_eq!(stored(&emu, "c4"), 1);
    // A file OPI's commands cannot use (readable by others while it holds a secret) costs a
    // warning, never the notification.
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = oint(&opi("c5"), &env).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("its strict setting is not applied"),
        "{}",
        stderr(&o)
    );
    assert_eq!(stored(&emu, "c5"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn bulk_counts_and_reports_warnings_strict_makes_them_invalid() {
    let emu = emulator().await;
    let hook = emu.webhook_url(1, SECRET);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        "{\"user\": 1, \"text\": \"b clean\", \"attach\": [{\"MESSAGE\": \"x\"}]}\n\
         {\"user\": 1, \"text\": \"b delimiter\", \"attach\": [{\"DELIMITER\": true}]}\n\
         {\"user\": 1, \"text\": \"b colour\", \"attach\": {\"COLOR\": \"red\", \"BLOCKS\": [{\"MESSAGE\": \"x\"}]}}\n\
         {\"user\": 1, \"text\": \"b bare\", \"attach\": {\"MESSAGE\": \"bare\"}}\n",
    )
    .unwrap();
    let input = input.display().to_string();
    let report = dir.path().join("r.jsonl");
    let report_arg = report.display().to_string();

    // An error row still stops everything without --skip-invalid.
    let o = oint(&["notify", "bulk", "--url", &hook, "--input", &input], &[]).await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("1 of 4 rows are invalid; nothing was sent"),
        "{}",
        stderr(&o)
    );
    assert!(emu.notifications().is_empty());

    let o = oint(
        &[
            "notify",
            "bulk",
            "--url",
            &hook,
            "--input",
            &input,
            "--skip-invalid",
            "--report",
            &report_arg,
        ],
        &[],
    )
    .await;
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(
        err.contains("warning: line 2: attach: blocks[0].DELIMITER: is a boolean"),
        "{err}"
    );
    assert!(
        err.contains("warning: line 3: attach: COLOR: \"red\" is not a colour"),
        "{err}"
    );
    assert!(
        err.contains(
            "bulk: 4 rows: 3 delivered, 0 failed, 0 outcome unknown, 1 invalid, 2 with warnings"
        ),
        "{err}"
    );
    for text in ["b clean", "b delimiter", "b colour"] {
        assert_eq!(stored(&emu, text), 1, "{text}");
    }
    assert_eq!(stored(&emu, "b bare"), 0);
    let lines = read_report(&report);
    assert!(lines[&1].get("warnings").is_none(), "{:?}", lines[&1]);
    assert_eq!(lines[&2]["warnings"][0]["rule"], "attach.delimiter.shape");
    assert!(lines[&2]["id"].as_u64().is_some());
    assert_eq!(lines[&3]["warnings"][0]["rule"], "attach.color.random");
    assert_eq!(lines[&4]["error"], "INVALID_ROW");
    assert_eq!(lines[&4]["rules"], json!(["attach.bare-block"]));

    let before = emu.notifications().len();
    let o = oint(
        &[
            "notify",
            "bulk",
            "--url",
            &hook,
            "--input",
            &input,
            "--skip-invalid",
            "--report",
            &report_arg,
            "--strict",
        ],
        &[],
    )
    .await;
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(
        err.contains(
            "bulk: 4 rows: 1 delivered, 0 failed, 0 outcome unknown, 3 invalid, 0 with warnings"
        ),
        "{err}"
    );
    assert!(err.contains("(a warning, refused: --strict)"), "{err}");
    assert_eq!(emu.notifications().len(), before + 1, "only the clean row");
    let lines = read_report(&report);
    assert_eq!(lines[&2]["error"], "INVALID_ROW");
    assert_eq!(lines[&2]["rules"], json!(["attach.delimiter.shape"]));
    assert_eq!(lines[&3]["rules"], json!(["attach.color.random"]));
    assert!(lines[&1]["id"].as_u64().is_some());
}

fn read_report(path: &Path) -> std::collections::BTreeMap<u64, Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["row"].as_u64().unwrap(), v)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn call_checks_an_attach_like_a_notification() {
    let emu = emulator().await;
    let hook = emu.webhook_url(1, SECRET);
    let call = |text: &str, attach: Value, strict: bool| {
        let params = json!({"USER_ID": 1, "MESSAGE": text, "ATTACH": attach}).to_string();
        let hook = hook.clone();
        async move {
            let mut args = vec![
                "call",
                "--url",
                hook.as_str(),
                "im.notify.personal.add",
                "--params",
                params.as_str(),
                "--json",
            ];
            if strict {
                args.push("--strict");
            }
            oint(&args, &[]).await
        }
    };
    let o = call("k1", json!([{"DELIMITER": true}]), false).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let w = warning_lines(&o);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("warning: ATTACH: blocks[0].DELIMITER: is a boolean"),
        "{w:?}"
    );
    assert_eq!(stored(&emu, "k1"), 1);

    let o = call("k2", json!([{"DELIMITER": true}]), true).await;
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stored(&emu, "k2"), 0);

    let o = call("k3", json!({"MESSAGE": "bare"}), false).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).starts_with("error: ATTACH: "), "{}", stderr(&o));
    assert_eq!(stored(&emu, "k3"), 0);

    // PHP bracket pairs build the same list.
    let o = oint(
        &[
            "call",
            "--url",
            &hook,
            "im.notify.personal.add",
            "USER_ID=1",
            "MESSAGE=k4",
            "ATTACH[0][MESSAGE]=hi",
            "--json",
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(warning_lines(&o).is_empty(), "{}", stderr(&o));
    assert_eq!(stored(&emu, "k4"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tag_over_a_webhook_is_a_warning_and_strict_refuses_it() {
    let emu = emulator().await;
    let hook = emu.webhook_url(1, SECRET);
    let base = |text: &'static str| {
        vec![
            "bitrix24",
            "CreatePersonalNotification",
            "--url",
            "",
            "--user",
            "1",
            "--text",
            text,
            "--tag",
            "t",
        ]
    };
    let mut args = base("t1");
    args[3] = &hook;
    let o = oint(&args, &[]).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(warning_lines(&o)[0].starts_with("warning: --tag: is dropped on webhook calls"));
    assert_eq!(stored(&emu, "t1"), 1);

    let mut args = base("t2");
    args[3] = &hook;
    let o = oint(&args, &[("OINT_STRICT", "1")]).await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).starts_with("error: --tag: is dropped on webhook calls"));
    assert_eq!(stored(&emu, "t2"), 0);

    let o = oint(
        &[
            "notify", "send", "--url", &hook, "--user", "1", "--text", "t3", "--tag", "t",
            "--strict",
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(stored(&emu, "t3"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn bulk_tags_over_a_webhook_warn_and_strict_makes_them_invalid() {
    let emu = emulator().await;
    let hook = emu.webhook_url(1, SECRET);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        "{\"user\": 1, \"text\": \"w plain\"}\n{\"user\": 1, \"text\": \"w tagged\", \"tag\": \"t\"}\n",
    )
    .unwrap();
    let input = input.display().to_string();
    let o = oint(&["notify", "bulk", "--url", &hook, "--input", &input], &[]).await;
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains("warning: line 2: tag: is dropped on webhook calls"),
        "{err}"
    );
    assert!(
        err.contains("2 delivered, 0 failed, 0 outcome unknown, 0 invalid, 1 with warnings"),
        "{err}"
    );
    assert_eq!(stored(&emu, "w tagged"), 1);

    let o = oint(
        &[
            "notify",
            "bulk",
            "--url",
            &hook,
            "--input",
            &input,
            "--skip-invalid",
            "--strict",
        ],
        &[],
    )
    .await;
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(
        err.contains("line 2: tag: is dropped on webhook calls"),
        "{err}"
    );
    assert!(
        err.contains("1 delivered, 0 failed, 0 outcome unknown, 1 invalid, 0 with warnings"),
        "{err}"
    );
    assert_eq!(stored(&emu, "w tagged"), 1, "not sent a second time");
    assert_eq!(stored(&emu, "w plain"), 2);
}
