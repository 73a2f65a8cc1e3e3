//! `oint` processes sharing the portal's limit, retrying safely, and saying why they waited.

mod common;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn four_processes_with_the_portals_plan_never_trip_it() {
    // The emulator and every client: drain 20/s, burst 10. 4 processes × 75 sends = 300.
    let emu = bitrix24_emulator::Emulator::start(
        bitrix24_emulator::Config::default()
            .webhook(1, SECRET)
            .rate(20.0)
            .burst(10.0),
    )
    .await
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let url = emu.webhook_url(1, SECRET);
    let script = "for i in $(seq 75); do \"$OINT\" --rate 20 --burst 10 --attempts 1 notify send --url \"$URL\" \
         --user 2 --text \"p$P-$i\" --output plain >/dev/null || exit 1; done".to_string();
    let processes: Vec<_> = (0..4)
        .map(|p| {
            tokio::process::Command::new("sh")
                .arg("-c")
                .arg(&script)
                .env("OINT", env!("CARGO_BIN_EXE_oint"))
                .env("URL", &url)
                .env("P", p.to_string())
                .env("OINT_STATE_DIR", state.path())
                .env("OINT_CONFIG", "/nonexistent")
                .status()
        })
        .collect();
    for status in futures_util::future::join_all(processes).await {
        assert!(status.unwrap().success(), "a send failed");
    }
    let log = emu.requests();
    assert_eq!(log.len(), 300, "--attempts 1: no retries hid a refusal");
    let refused = log
        .iter()
        .filter(|r| r.error.as_deref() == Some("QUERY_LIMIT_EXCEEDED"))
        .count();
    assert_eq!(refused, 0);
    assert_eq!(emu.notifications().len(), 300);
}

#[tokio::test(flavor = "multi_thread")]
async fn debug_shows_each_attempt_its_wait_and_why() {
    let emu = emulator().await;
    let rules = json!([{"method": "*", "kind": "status", "status": 503, "error": "QUERY_LIMIT_EXCEEDED", "count": 1}]);
    emu.add_faults(&rules).expect("fault rules accepted");
    let url = emu.webhook_url(1, SECRET);
    let o = oint(
        &[
            "notify", "send", "--url", &url, "--user", "1", "--text", "x", "--debug",
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    for want in [
        "attempt=1",
        "attempt=2",
        "rate_wait_ms=",
        "backoff_ms=",
        "QUERY_LIMIT_EXCEEDED",
        "why=",
    ] {
        assert!(err.contains(want), "{want} missing from:\n{err}");
    }
    assert_no_secrets(&o);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_outcome_exits_5_and_says_what_to_do() {
    let emu = emulator().await;
    let rules = json!([{"method": "im.notify.personal.add", "kind": "reset_after"}]);
    emu.add_faults(&rules).expect("fault rules accepted");
    let url = emu.webhook_url(1, SECRET);
    let o = oint(
        &[
            "notify", "send", "--url", &url, "--user", "1", "--text", "x",
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("may or may not have taken effect") && err.contains("--tag"),
        "{err}"
    );
    assert_eq!(
        emu.notifications().len(),
        1,
        "it ran once; it was not sent again"
    );
    // The OPI command reports it the same way.
    let rules = json!([{"method": "im.notify.personal.add", "kind": "reset_after"}]);
    emu.add_faults(&rules).expect("fault rules accepted");
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
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread")]
async fn limit_flags_are_checked() {
    for (args, want) in [
        (vec!["--plan", "gold"], "--plan: \"gold\" is not a plan"),
        (vec!["--rate", "0"], "--rate: must be"),
        (vec!["--attempts", "0"], "--attempts: must be at least 1"),
    ] {
        let mut all = args.clone();
        all.extend([
            "notify", "send", "--url", "sandbox", "--user", "1", "--text", "x",
        ]);
        let o = oint(&all, &[]).await;
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(stderr(&o).contains(want), "{}", stderr(&o));
    }
}
