//! `oint notify bulk` end to end: inputs, bad rows, faults, and a kill -9 then a resume,
//! all counted from the emulator's own state.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use bitrix24_emulator::{Config, Emulator};
use common::*;
use serde_json::{Value, json};

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn jsonl(rows: impl IntoIterator<Item = Value>) -> String {
    rows.into_iter().map(|r| format!("{r}\n")).collect()
}

fn report(path: &str) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// How many stored notifications carry each message.
fn copies(emu: &Emulator) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for n in emu.notifications() {
        *counts.entry(n.message).or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread")]
async fn jsonl_all_delivered_with_a_report() {
    let emu = unlimited().await;
    let dir = tempfile::tempdir().unwrap();
    let rows = (0..120).map(|i| {
        let mut row = json!({"user": 2 + i % 3, "text": format!("row {i}")});
        if i % 10 == 0 {
            row["attach"] = json!([{"MESSAGE": format!("attached to {i}")}]);
            row["system"] = json!(true);
        }
        row
    });
    let input = write(dir.path(), "in.jsonl", &jsonl(rows));
    let report_path = dir.path().join("report.jsonl").display().to_string();
    let url = emu.webhook_url(1, SECRET);
    let o = oint(
        &[
            "notify",
            "bulk",
            "--url",
            &url,
            "--input",
            &input,
            "--report",
            &report_path,
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("120 rows: 120 delivered"),
        "{}",
        stderr(&o)
    );
    let stored = emu.notifications();
    assert_eq!(stored.len(), 120);
    assert!(copies(&emu).values().all(|c| *c == 1));
    let with_attach = stored.iter().filter(|n| n.attach.is_some()).count();
    assert_eq!(with_attach, 12, "attachments survive the batch encoding");
    let lines = report(&report_path);
    assert_eq!(lines.len(), 120);
    let ids: Vec<u64> = lines
        .iter()
        .map(|l| l["id"].as_u64().expect("an id per row"))
        .collect();
    let mut stored_ids: Vec<u64> = stored.iter().map(|n| n.id).collect();
    let mut ids_sorted = ids.clone();
    ids_sorted.sort_unstable();
    stored_ids.sort_unstable();
    assert_eq!(ids_sorted, stored_ids);
    let batches = emu.requests();
    assert_eq!(batches.len(), 3, "120 rows in 3 batch calls");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_rows_stop_everything_unless_skipped() {
    let emu = unlimited().await;
    let dir = tempfile::tempdir().unwrap();
    let input = write(
        dir.path(),
        "in.jsonl",
        "{\"user\": 2, \"text\": \"ok 1\"}\n{\"user\": 0, \"text\": \"x\"}\n{\"user\": 2, \"text\": \"ok 2\"}\nnot json\n{\"user\": 2, \"text\": \"x\", \"attach\": [{\"IMAGE\": {\"LINK\": \"ftp://x\"}}]}\n",
    );
    let url = emu.webhook_url(1, SECRET);
    let o = oint(&["notify", "bulk", "--url", &url, "--input", &input], &[]).await;
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("line 2: user: expected a user ID"), "{err}");
    assert!(err.contains("line 4: is not valid JSON"), "{err}");
    assert!(err.contains("line 5: ") && err.contains("ftp://x"), "{err}");
    assert!(
        err.contains("3 of 5 rows are invalid; nothing was sent"),
        "{err}"
    );
    assert!(emu.notifications().is_empty());

    let report_path = dir.path().join("r.jsonl").display().to_string();
    let o = oint(
        &[
            "notify",
            "bulk",
            "--url",
            &url,
            "--input",
            &input,
            "--skip-invalid",
            "--report",
            &report_path,
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(3), "some delivered: {}", stderr(&o));
    assert_eq!(emu.notifications().len(), 2);
    let lines = report(&report_path);
    let invalid: Vec<u64> = lines
        .iter()
        .filter(|l| l["error"] == "INVALID_ROW")
        .map(|l| l["row"].as_u64().unwrap())
        .collect();
    assert_eq!(invalid.len(), 3);
    assert!(invalid.contains(&2) && invalid.contains(&4) && invalid.contains(&5));
}

#[tokio::test(flavor = "multi_thread")]
async fn csv_from_standard_input() {
    let emu = unlimited().await;
    let csv = "user,text,tag,system,attach\n2,Hello,,false,\n3,\"Line one\nline two\",,yes,\"[{\"\"MESSAGE\"\":\"\"x\"\"}]\"\n99,To nobody,,,\n0,bad,,,\n";
    let url = emu.webhook_url(1, SECRET);
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_oint"));
    cmd.args([
        "notify",
        "bulk",
        "--url",
        &url,
        "--input",
        "-",
        "--format",
        "csv",
        "--skip-invalid",
    ])
    .env("OINT_CONFIG", "/nonexistent")
    .env(
        "OINT_STATE_DIR",
        std::env::temp_dir().join("oint-test-state"),
    )
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    use tokio::io::AsyncWriteExt;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(csv.as_bytes())
        .await
        .unwrap();
    let o = child.wait_with_output().await.unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("line 6: user: expected a user ID"),
        "the line of a multi-line CSV file: {err}"
    );
    assert!(
        err.contains("4 rows: 2 delivered, 1 failed, 0 outcome unknown, 1 invalid"),
        "{err}"
    );
    let stored = emu.notifications();
    assert_eq!(stored.len(), 2);
    assert!(
        stored
            .iter()
            .any(|n| n.message == "Line one\nline two" && n.r#type == "SYSTEM")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_during_a_run_are_accounted_for() {
    let emu = unlimited().await;
    let rules = json!([
        {"method": "batch", "kind": "status", "status": 503, "error": "QUERY_LIMIT_EXCEEDED", "count": 2},
        {"method": "batch", "kind": "status", "status": 500, "error": "INTERNAL_SERVER_ERROR", "after": 3, "count": 1},
        {"method": "batch", "kind": "reset_after", "after": 5, "count": 1}
    ]);
    emu.add_faults(&rules).expect("fault rules accepted");
    let dir = tempfile::tempdir().unwrap();
    let input = write(
        dir.path(),
        "in.jsonl",
        &jsonl((0..400).map(|i| json!({"user": 2, "text": format!("row {i}")}))),
    );
    let report_path = dir.path().join("r.jsonl").display().to_string();
    let url = emu.webhook_url(1, SECRET);
    let o = oint(
        &[
            "notify",
            "bulk",
            "--url",
            &url,
            "--input",
            &input,
            "--report",
            &report_path,
            "--concurrency",
            "1",
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let lines = report(&report_path);
    assert_eq!(lines.len(), 400, "one line per row");
    let unknown = lines
        .iter()
        .filter(|l| l["outcome"] == "outcome_unknown")
        .count();
    let delivered = lines.iter().filter(|l| l["id"].is_u64()).count();
    assert_eq!(
        unknown, 100,
        "the 500 and the dropped answer each left a batch of 50 unknown"
    );
    assert_eq!(delivered, 300);
    let counts = copies(&emu);
    assert!(counts.values().all(|c| *c == 1), "nothing duplicated");
    assert_eq!(counts.len(), 350, "the dropped answer's batch did run");
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_dash_nine_then_resume_loses_and_duplicates_nothing() {
    // Slow enough to be killed partway: oint sends 8 batches a second (the portal allows 40).
    let emu = Emulator::start(
        Config::default()
            .access_token(1, TOKEN)
            .rate(40.0)
            .burst(2.0),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let n = 3000;
    let input = write(
        dir.path(),
        "in.jsonl",
        &jsonl((0..n).map(
            |i| json!({"user": 2 + i % 4, "text": format!("row {i}"), "tag": format!("row-{i}")}),
        )),
    );
    let journal = dir.path().join("run.journal");
    let args = |journal: &Path| {
        vec![
            "notify".to_string(),
            "bulk".into(),
            "--url".into(),
            emu.url(),
            "--token".into(),
            TOKEN.into(),
            "--input".into(),
            input.clone(),
            "--journal".into(),
            journal.display().to_string(),
            "--rate".into(),
            "8".into(),
            "--burst".into(),
            "2".into(),
        ]
    };
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_oint"))
        .args(args(&journal))
        .env("OINT_CONFIG", "/nonexistent")
        .env("OINT_STATE_DIR", dir.path().join("state"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until some batches are recorded, then kill it without warning.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(&journal).unwrap_or_default();
        if text.matches("\"outcome\"").count() >= 300 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the run made no progress"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let before = emu.notifications().len();
    assert!(before > 0 && before < n, "killed partway: {before} of {n}");

    let argv = args(&journal);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let o = oint(
        &argv,
        &[("OINT_STATE_DIR", dir.path().join("state").to_str().unwrap())],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("settled by an earlier run"),
        "{}",
        stderr(&o)
    );
    let counts = copies(&emu);
    assert_eq!(counts.len(), n, "zero lost");
    assert!(counts.values().all(|c| *c == 1), "zero duplicated");
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_credentials_exit_4_and_a_corrected_run_sends_every_row() {
    let emu = unlimited().await;
    let dir = tempfile::tempdir().unwrap();
    let input = write(
        dir.path(),
        "in.jsonl",
        &jsonl((0..600).map(|i| json!({"user": 2, "text": format!("row {i}")}))),
    );
    let journal = dir.path().join("j").display().to_string();
    let bad = emu.webhook_url(1, "not-the-secret");
    let o = oint(
        &[
            "notify",
            "bulk",
            "--url",
            &bad,
            "--input",
            &input,
            "--journal",
            &journal,
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(emu.notifications().is_empty());
    let calls = emu.requests();
    assert!(
        calls.len() <= 4,
        "it stops after the first refusal (4 in flight at most): {}",
        calls.len()
    );
    // Nothing of it ran, so nothing is final: the corrected run sends all 600.
    let good = emu.webhook_url(1, SECRET);
    let o = oint(
        &[
            "notify",
            "bulk",
            "--url",
            &good,
            "--input",
            &input,
            "--journal",
            &journal,
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(copies(&emu).len(), 600);
}

/// `markdown` per row, in JSON Lines and CSV; a bad value makes the row invalid.
#[tokio::test(flavor = "multi_thread")]
async fn markdown_per_row() {
    let emu = unlimited().await;
    let dir = tempfile::tempdir().unwrap();
    let url = emu.webhook_url(1, SECRET);
    let rows = jsonl([
        json!({"user": 2, "text": "**md** json", "markdown": true}),
        json!({"user": 2, "text": "**plain** json"}),
    ]);
    let input = write(dir.path(), "in.jsonl", &rows);
    let o = oint(&["notify", "bulk", "--url", &url, "--input", &input], &[]).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let csv = "user,text,markdown\n2,*md* csv,yes\n2,*plain* csv,\n";
    let input = write(dir.path(), "in.csv", csv);
    let o = oint(&["notify", "bulk", "--url", &url, "--input", &input], &[]).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let mut messages: Vec<String> = emu.notifications().into_iter().map(|n| n.message).collect();
    messages.sort();
    assert_eq!(
        messages,
        [
            "**plain** json",
            "*plain* csv",
            "[b]md[/b] json",
            "[i]md[/i] csv"
        ]
    );
    let bad = write(
        dir.path(),
        "bad.jsonl",
        &jsonl([json!({"user": 2, "text": "x", "markdown": "maybe"})]),
    );
    let o = oint(&["notify", "bulk", "--url", &url, "--input", &bad], &[]).await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("markdown: expected true or false"),
        "{}",
        stderr(&o)
    );
}
