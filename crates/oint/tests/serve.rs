//! `oint serve` as a process, against the emulator over HTTP: what it accepts and refuses,
//! that it guards itself with a token, that SIGTERM drains, and that kill -9 loses nothing it
//! answered 202 for.
#![cfg(feature = "serve")]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::relay::{Relay, until};
use common::{SECRET, TOKEN, emulator};
use serde_json::{Value, json};

fn assert_no_secret(text: &str) {
    assert!(
        !text.contains(SECRET) && !text.contains(TOKEN),
        "a secret leaked: {text}"
    );
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[tokio::test]
async fn notify_is_answered_202_then_delivered_and_counted() {
    let emu = emulator().await;
    let dir = tmp();
    let url = emu.webhook_url(1, SECRET);
    let queue = dir.path().join("q.sqlite3");
    let relay = Relay::start(
        &[
            "--url",
            &url,
            "--queue",
            queue.to_str().unwrap(),
            "--route",
            "ops=1",
        ],
        &[],
        dir.path(),
    )
    .await;

    let (status, body) = relay
        .post("/notify", r#"{"user": 1, "text": "Backup done"}"#)
        .await;
    assert_eq!(status, 202, "{body}");
    assert!(body["id"].as_u64().is_some(), "{body}");
    let (status, body) = relay
        .post(
            "/notify",
            r#"{"users": [1, 2], "text": "**Deploy** failed", "markdown": true, "system": true}"#,
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["ids"].as_array().unwrap().len(), 2, "{body}");

    until(&emu, "three notifications", |n| n.len() == 3).await;
    let got = emu.notifications();
    assert_eq!(got[0].message, "Backup done");
    assert_eq!(got[1].message, "[b]Deploy[/b] failed");
    assert_eq!(got[1].r#type, "SYSTEM");
    assert_eq!(got.iter().map(|n| n.user_id).collect::<Vec<_>>(), [1, 1, 2]);

    assert_eq!(relay.metric("oint_serve_accepted_total").await, 3.0);
    // Delivered is counted once the batch's outcome is recorded, just after the portal has it.
    relay
        .wait_for_metric("oint_serve_delivered_total", |v| v == 3.0)
        .await;
    assert_eq!(relay.metric("oint_serve_queue_depth").await, 0.0);
    let (status, listing) = relay.get("/queue").await;
    assert_eq!(status, 200);
    let listing: Value = serde_json::from_str(&listing).unwrap();
    assert_eq!(listing["pending_total"], 0, "{listing}");
    assert_eq!(listing["dead_letters_total"], 0, "{listing}");
    let (status, health) = relay.get("/healthz").await;
    assert_eq!((status, health.contains("\"ok\"")), (200, true), "{health}");

    let (code, stderr) = relay.terminate().await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("over a webhook the portal drops tags"),
        "said once at start: {stderr}"
    );
    assert_no_secret(&stderr);
    assert!(!stderr.contains(&url), "{stderr}");
}

#[tokio::test]
async fn bad_notifications_get_400_with_the_reason_and_are_not_queued() {
    let emu = emulator().await;
    let dir = tmp();
    let url = emu.webhook_url(1, SECRET);
    let queue = dir.path().join("q.sqlite3");
    let relay = Relay::start(
        &["--url", &url, "--queue", queue.to_str().unwrap()],
        &[],
        dir.path(),
    )
    .await;
    let cases = [
        ("not json", "not JSON"),
        (r#"[{"user": 1, "text": "a"}]"#, "expected a JSON object"),
        (r#"{"user": 0, "text": "a"}"#, "user: expected a user ID"),
        (r#"{"user": 1}"#, "text: is missing or blank"),
        (r#"{"user": 1, "users": [2], "text": "a"}"#, "not both"),
        (r#"{"users": [], "text": "a"}"#, "users: expected a list"),
        (
            r#"{"user": 1, "text": "a", "colour": "red"}"#,
            "unknown field \"colour\"",
        ),
        (
            r#"{"user": 1, "text": "a", "attach": [{"IMAGE": {"NAME": "no link"}}]}"#,
            "attach",
        ),
    ];
    for (body, reason) in cases {
        let (status, answer) = relay.post("/notify", body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        let description = answer["description"].as_str().unwrap_or_default();
        assert!(description.contains(reason), "{body}: {answer}");
    }
    let too_big = format!(r#"{{"user": 1, "text": "{}"}}"#, "x".repeat(5 << 20));
    // Refused with 413 as soon as the length is known; the relay may close the connection
    // before the client has written it all, which the client sees as a reset instead.
    let sent = reqwest::Client::new()
        .post(format!("{}/notify", relay.base))
        .header("content-type", "application/json")
        .body(too_big)
        .send()
        .await;
    if let Ok(response) = sent {
        assert_eq!(response.status().as_u16(), 413);
    }
    let (status, answer) = relay.post("/notify", r#"{"user": 1}"#).await;
    assert_eq!(status, 400, "the relay still answers: {answer}");
    assert_eq!(
        relay
            .metric("oint_serve_rejected_total{reason=\"invalid\"}")
            .await,
        cases.len() as f64 + 1.0
    );
    assert_eq!(relay.metric("oint_serve_accepted_total").await, 0.0);
    assert_eq!(relay.metric("oint_serve_queue_depth").await, 0.0);
    let (code, stderr) = relay.terminate().await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        emu.requests().iter().all(|r| {
            let method = r.method.as_deref().unwrap_or_default();
            !method.contains("notify") && method != "batch"
        }),
        "nothing was sent"
    );
}

#[tokio::test]
async fn a_token_guards_every_endpoint_but_healthz() {
    let emu = emulator().await;
    let dir = tmp();
    let url = emu.webhook_url(1, SECRET);
    let queue = dir.path().join("q.sqlite3");
    let token_file = dir.path().join("relay.token");
    let relay_token = "relay-bearer-7f3a9c";
    std::fs::write(&token_file, format!("{relay_token}\n")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = common::oint(
            &[
                "serve",
                "--url",
                &url,
                "--auth-token-file",
                token_file.to_str().unwrap(),
            ],
            &[],
        )
        .await;
        assert_eq!(
            out.status.code(),
            Some(2),
            "a readable token file is refused"
        );
        assert!(
            common::stderr(&out).contains("chmod 600"),
            "{}",
            common::stderr(&out)
        );
        std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let relay = Relay::start(
        &[
            "--url",
            &url,
            "--queue",
            queue.to_str().unwrap(),
            "--auth-token-file",
            token_file.to_str().unwrap(),
        ],
        &[],
        dir.path(),
    )
    .await;
    let body = r#"{"user": 1, "text": "guarded"}"#;
    for token in [None, Some("wrong"), Some("relay-bearer-7f3a9")] {
        let (status, answer) = relay.post_as("/notify", body, token).await;
        assert_eq!(status, 401, "{token:?}: {answer}");
        assert!(!answer.to_string().contains(relay_token), "{answer}");
    }
    assert_eq!(relay.get("/metrics").await.0, 401);
    assert_eq!(relay.get("/queue").await.0, 401);
    assert_eq!(relay.get("/healthz").await.0, 200);
    let (status, answer) = relay.post_as("/notify", body, Some(relay_token)).await;
    assert_eq!(status, 202, "{answer}");
    until(&emu, "the guarded notification", |n| n.len() == 1).await;
    let (code, stderr) = relay.terminate().await;
    assert_eq!(code, 0);
    assert!(!stderr.contains(relay_token), "{stderr}");
}

#[tokio::test]
async fn a_relay_reachable_from_other_machines_needs_a_token() {
    let out = common::oint(&["serve", "--url", "sandbox", "--listen", "0.0.0.0:0"], &[]).await;
    assert_eq!(out.status.code(), Some(2));
    let err = common::stderr(&out);
    assert!(
        err.contains("--listen") && err.contains("--auth-token-file"),
        "{err}"
    );
    let out = common::oint(&["serve", "--url", "sandbox", "--listen", "nowhere"], &[]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(common::stderr(&out).contains("--listen: expected HOST:PORT"));
}

#[tokio::test]
async fn a_second_relay_on_the_same_queue_is_refused() {
    let emu = emulator().await;
    let dir = tmp();
    let url = emu.webhook_url(1, SECRET);
    let queue = dir.path().join("q.sqlite3");
    let relay = Relay::start(
        &["--url", &url, "--queue", queue.to_str().unwrap()],
        &[],
        dir.path(),
    )
    .await;
    let out = common::oint(
        &[
            "serve",
            "--url",
            &url,
            "--listen",
            "127.0.0.1:0",
            "--queue",
            queue.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", common::stderr(&out));
    assert!(common::stderr(&out).contains("in use by another oint serve"));
    relay.terminate().await;
}

#[tokio::test]
async fn a_full_queue_answers_503_with_retry_after() {
    let emu = emulator().await;
    // The first batch is held at the portal, so the queue stays full meanwhile.
    emu.add_faults(&json!([{"method": "batch", "kind": "delay", "ms": 3000}]))
        .unwrap();
    let dir = tmp();
    let url = emu.webhook_url(1, SECRET);
    let queue = dir.path().join("q.sqlite3");
    let relay = Relay::start(
        &[
            "--url",
            &url,
            "--queue",
            queue.to_str().unwrap(),
            "--queue-limit",
            "2",
        ],
        &[],
        dir.path(),
    )
    .await;
    let (status, _) = relay.post("/notify", r#"{"user": 1, "text": "one"}"#).await;
    assert_eq!(status, 202);
    let response = relay
        .http
        .post(format!("{}/notify", relay.base))
        .header("content-type", "application/json")
        .body(r#"{"users": [1, 1], "text": "two more"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1, "{retry_after}");
    let body: Value = response.json().await.unwrap();
    assert!(
        body["description"]
            .as_str()
            .unwrap()
            .contains("--queue-limit"),
        "{body}"
    );
    assert_eq!(
        relay
            .metric("oint_serve_rejected_total{reason=\"full\"}")
            .await,
        1.0
    );
    until(&emu, "the first", |n| n.len() == 1).await;
    relay.terminate().await;
}

/// Posts `n` notifications from 8 tasks at once; the texts are `prefix-i`.
async fn post_many(relay: &Relay, n: usize, prefix: &str, tagged: bool) -> Vec<u64> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let ids = std::sync::Mutex::new(Vec::new());
    let worker = || async {
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if i >= n {
                return;
            }
            let mut body = json!({"user": 1, "text": format!("{prefix}-{i}")});
            if tagged {
                body["tag"] = json!(format!("{prefix}-{i}"));
            }
            let (status, answer) = relay.post("/notify", &body.to_string()).await;
            assert_eq!(status, 202, "{answer}");
            ids.lock().unwrap().push(answer["id"].as_u64().unwrap());
        }
    };
    futures_util::future::join_all((0..8).map(|_| worker())).await;
    ids.into_inner().unwrap()
}

#[tokio::test]
async fn sigterm_finishes_the_batches_in_flight_and_keeps_the_rest_queued() {
    let emu = emulator().await;
    emu.add_faults(&json!([{"method": "batch", "kind": "delay", "ms": 1500, "count": 100}]))
        .unwrap();
    let dir = tmp();
    let url = emu.webhook_url(1, SECRET);
    let queue = dir.path().join("q.sqlite3");
    let q = queue.to_str().unwrap();
    // One batch in flight at a time.
    let args = ["--url", &url, "--queue", q, "--concurrency", "1"];
    let relay = Relay::start(&args, &[], dir.path()).await;
    post_many(&relay, 120, "drain", false).await;
    // The first batch has run at the portal and waits for its answer.
    until(&emu, "the first batch", |n| !n.is_empty()).await;
    let (code, stderr) = relay.terminate().await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("stopping"), "{stderr}");
    // The batch in flight was finished and recorded, no other started: the rest is queued.
    let delivered = emu.notifications().len();
    let pending: usize = stderr
        .split("stopped; ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!((1..=50).contains(&delivered), "{delivered}");
    assert_eq!(delivered + pending, 120, "{stderr}");

    // Restarted without the slow portal: the rest goes, nothing twice.
    emu.clear_faults();
    let relay = Relay::start(&["--url", &url, "--queue", q], &[], dir.path()).await;
    until(&emu, "all 120", |n| n.len() == 120).await;
    let texts: BTreeSet<String> = emu.notifications().into_iter().map(|n| n.message).collect();
    assert_eq!(texts.len(), 120, "no notification twice");
    relay.terminate().await;
}

/// kill -9 with batches in flight: after a restart every notification answered 202 is at the
/// portal exactly once. Tagged, from an OAuth application: a batch that may have run is sent
/// again and its tags replace what it left.
#[tokio::test]
async fn kill_9_loses_nothing_answered_202_and_duplicates_nothing_tagged() {
    let emu = emulator().await;
    // Each batch runs, then its answer waits: a kill lands while one is in flight.
    emu.add_faults(&json!([{"method": "batch", "kind": "delay", "ms": 400, "count": 1000}]))
        .unwrap();
    let dir = tmp();
    let queue = dir.path().join("q.sqlite3");
    let q = queue.to_str().unwrap();
    let url = emu.url();
    let args = [
        "--url",
        &url,
        "--token",
        TOKEN,
        "--queue",
        q,
        "--concurrency",
        "2",
    ];
    let relay = Relay::start(&args, &[], dir.path()).await;
    let ids = post_many(&relay, 400, "k9", true).await;
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 400);
    until(&emu, "some delivered", |n| n.len() >= 100).await;
    let before = emu.notifications().len();
    let stderr = relay.kill9().await;
    assert!(before < 400, "killed before the end ({before})");
    assert_no_secret(&stderr);

    emu.clear_faults();
    let relay = Relay::start(&args, &[], dir.path()).await;
    until(&emu, "all 400", |n| n.len() >= 400).await;
    // Settled: nothing pending, nothing dead.
    relay
        .wait_for_metric("oint_serve_queue_depth", |v| v == 0.0)
        .await;
    assert_eq!(relay.metric("oint_serve_dead_letters").await, 0.0);
    let mut by_text: BTreeMap<String, usize> = BTreeMap::new();
    for n in emu.notifications() {
        *by_text.entry(n.message).or_default() += 1;
    }
    assert_eq!(by_text.len(), 400, "every notification arrived");
    assert!(by_text.values().all(|&c| c == 1), "none twice: {by_text:?}");
    let (code, stderr) = relay.terminate().await;
    assert_eq!(code, 0, "{stderr}");
    assert_no_secret(&stderr);
}

/// Over a webhook nothing may be sent twice: a batch that was in flight at kill -9 is
/// dead-lettered as outcome unknown, shown in /queue, and never resent.
#[tokio::test]
async fn kill_9_over_a_webhook_dead_letters_what_may_have_arrived_and_sends_the_rest() {
    let emu = emulator().await;
    emu.add_faults(&json!([{"method": "batch", "kind": "delay", "ms": 400, "count": 1000}]))
        .unwrap();
    let dir = tmp();
    let queue = dir.path().join("q.sqlite3");
    let q = queue.to_str().unwrap();
    let url = emu.webhook_url(1, SECRET);
    let args = ["--url", &url, "--queue", q, "--concurrency", "1"];
    let relay = Relay::start(&args, &[], dir.path()).await;
    post_many(&relay, 300, "wh", false).await;
    until(&emu, "the first batch", |n| !n.is_empty()).await;
    relay.kill9().await;

    emu.clear_faults();
    let relay = Relay::start(&args, &[], dir.path()).await;
    let (status, listing) = relay.get("/queue?limit=1000").await;
    assert_eq!(status, 200);
    let listing: Value = serde_json::from_str(&listing).unwrap();
    let dead: BTreeSet<String> = listing["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            assert_eq!(d["reason"], "outcome_unknown", "{d}");
            d["text"].as_str().unwrap().to_string()
        })
        .collect();
    assert!(
        !dead.is_empty() && dead.len() <= 50,
        "the batch in flight: {listing}"
    );
    until(&emu, "the rest", |n| n.len() >= 300 - dead.len()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut seen = BTreeMap::new();
    for n in emu.notifications() {
        *seen.entry(n.message).or_insert(0) += 1;
    }
    assert!(seen.values().all(|&c| c == 1), "none twice");
    for i in 0..300 {
        let text = format!("wh-{i}");
        assert!(
            seen.contains_key(&text) || dead.contains(&text),
            "{text} is neither delivered nor dead-lettered"
        );
    }
    relay.terminate().await;
}

/// Grafana's documented webhook payload (tests/fixtures/grafana-v1.json), posted as Grafana
/// posts it: one notification per alert and route user, tagged by fingerprint over OAuth.
#[tokio::test]
async fn a_grafana_payload_becomes_one_notification_per_alert_and_user() {
    let emu = emulator().await;
    let dir = tmp();
    let queue = dir.path().join("q.sqlite3");
    let url = emu.url();
    let relay = Relay::start(
        &[
            "--url",
            &url,
            "--token",
            TOKEN,
            "--queue",
            queue.to_str().unwrap(),
            "--route",
            "ops=1,2",
        ],
        &[],
        dir.path(),
    )
    .await;
    let fixture = include_str!("fixtures/grafana-v1.json");
    let (status, answer) = relay.post("/grafana/ops", fixture).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["ids"].as_array().unwrap().len(), 4, "{answer}");
    until(&emu, "two alerts for two users", |n| n.len() == 4).await;
    let got = emu.notifications();
    for alert in ["High memory usage", "High CPU usage"] {
        let users: BTreeSet<u64> = got
            .iter()
            .filter(|n| n.message.contains(alert) && n.message.contains("FIRING"))
            .map(|n| n.user_id)
            .collect();
        assert_eq!(users, BTreeSet::from([1, 2]), "{alert}: {got:?}");
    }
    assert!(
        got.iter()
            .all(|n| n.tag.as_deref().is_some_and(|t| t.contains("|ops:"))),
        "tagged <route>:<fingerprint>: {got:?}"
    );
    // Posting it again replaces rather than adds: the same tags.
    let (status, _) = relay.post("/grafana/ops", fixture).await;
    assert_eq!(status, 202);
    tokio::time::sleep(Duration::from_millis(500)).await;
    until(&emu, "still four", |n| n.len() == 4).await;

    let (status, answer) = relay.post("/grafana/nope", fixture).await;
    assert_eq!(status, 404, "{answer}");
    assert!(
        answer["description"].as_str().unwrap().contains("ops"),
        "{answer}"
    );
    let (status, answer) = relay.post("/grafana/ops", r#"{"alerts": "no"}"#).await;
    assert_eq!(status, 400, "{answer}");
    let (status, answer) = relay.post("/alertmanager/ops", fixture).await;
    assert_eq!(
        status, 400,
        "a Grafana payload is not Alertmanager's: {answer}"
    );
    relay.terminate().await;
}

/// Routes from the config file: a template in Markdown, system notifications, one per group;
/// the command line's --route wins over a route of the same name; a bad route stops the start.
#[tokio::test]
async fn config_file_routes_render_their_templates() {
    let emu = emulator().await;
    let dir = tmp();
    let queue = dir.path().join("q.sqlite3");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        r#"
[serve.routes.infra]
users = [2]
system = true
markdown = true
template = "**{{ labels.alertname }}** on {{ labels.instance }} is {{ status }}"

[serve.routes.grouped]
users = [3]
group = true
"#,
    )
    .unwrap();
    let url = emu.webhook_url(1, SECRET);
    let env = [("OINT_CONFIG", config.to_str().unwrap())];
    let relay = Relay::start(
        &["--url", &url, "--queue", queue.to_str().unwrap()],
        &env,
        dir.path(),
    )
    .await;
    let fixture = include_str!("fixtures/alertmanager-v4.json");
    let (status, answer) = relay.post("/alertmanager/infra", fixture).await;
    assert_eq!(status, 202, "{answer}");
    let (status, answer) = relay.post("/alertmanager/grouped", fixture).await;
    assert_eq!(status, 202, "{answer}");
    until(&emu, "two per-alert and one per-group", |n| n.len() == 3).await;
    let got = emu.notifications();
    let infra: Vec<&str> = got
        .iter()
        .filter(|n| n.user_id == 2)
        .map(|n| n.message.as_str())
        .collect();
    assert_eq!(
        infra,
        [
            "[b]DiskFull[/b] on db1:9100 is firing",
            "[b]DiskFull[/b] on db2:9100 is resolved"
        ]
    );
    assert!(
        got.iter()
            .filter(|n| n.user_id == 2)
            .all(|n| n.r#type == "SYSTEM")
    );
    let grouped: Vec<&str> = got
        .iter()
        .filter(|n| n.user_id == 3)
        .map(|n| n.message.as_str())
        .collect();
    assert_eq!(grouped.len(), 1, "{got:?}");
    // The group's default: one line per alert, the firing one and the resolved one.
    assert!(
        grouped[0].starts_with("[b]FIRING:1[/b]") && grouped[0].contains("\n✓ [s]DiskFull[/s]"),
        "{grouped:?}"
    );
    relay.terminate().await;

    std::fs::write(
        &config,
        "[serve.routes.bad]\nusers = [1]\ntemplate = \"{{ unclosed\"\n",
    )
    .unwrap();
    let out = common::oint(&["serve", "--url", &url, "--listen", "127.0.0.1:0"], &env).await;
    assert_eq!(out.status.code(), Some(2));
    let err = common::stderr(&out);
    assert!(
        err.contains("serve.routes.bad") && err.contains("template"),
        "{err}"
    );
    std::fs::write(&config, "[serve.routes.x]\nusers = []\n").unwrap();
    let out = common::oint(&["serve", "--url", &url, "--listen", "127.0.0.1:0"], &env).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        common::stderr(&out).contains("users is empty"),
        "{}",
        common::stderr(&out)
    );
    std::fs::write(&config, "[serve]\nlisten = \"0.0.0.0:1\"\n").unwrap();
    let out = common::oint(&["serve", "--url", &url, "--listen", "127.0.0.1:0"], &env).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        common::stderr(&out).contains("[serve] takes only routes"),
        "{}",
        common::stderr(&out)
    );
    for bad in ["ops", "ops=", "ops=0", "ops=1,x", "../x=1", "=1"] {
        let out = common::oint(&["serve", "--url", &url, "--route", bad], &[]).await;
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(
            common::stderr(&out).contains("--route"),
            "{bad}: {}",
            common::stderr(&out)
        );
    }
    // A Redis URL is never taken for a file name: nothing listens there (exit 1), or this
    // build has no Redis support (exit 2).
    let out = common::oint(
        &["serve", "--url", &url, "--queue", "redis://127.0.0.1:1/0"],
        &[],
    )
    .await;
    let expected = if cfg!(feature = "redis") { 1 } else { 2 };
    assert_eq!(
        out.status.code(),
        Some(expected),
        "{}",
        common::stderr(&out)
    );
    let err = common::stderr(&out);
    assert!(err.contains("--queue") && err.lines().count() == 1, "{err}");
}

/// The relay and an `oint notify bulk` on the same machine draw from one bucket: together
/// past the portal's burst, the portal still never answers 503.
#[tokio::test]
async fn the_relay_and_other_oint_processes_share_the_portals_budget() {
    // The standard plan, enforced by the emulator: burst 50, 2 requests a second.
    let emu = emulator().await;
    let dir = tmp();
    let queue = dir.path().join("q.sqlite3");
    let url = emu.webhook_url(1, SECRET);
    let relay = Relay::start(
        &["--url", &url, "--queue", queue.to_str().unwrap()],
        &[],
        dir.path(),
    )
    .await;
    let rows = dir.path().join("rows.jsonl");
    let text: String = (0..1500)
        .map(|i| format!("{{\"user\": 1, \"text\": \"bulk-{i}\"}}\n"))
        .collect();
    std::fs::write(&rows, text).unwrap();
    let bulk_args = [
        "notify",
        "bulk",
        "--url",
        &url,
        "--input",
        rows.to_str().unwrap(),
    ];
    let bulk = common::oint(&bulk_args, &[]);
    let posts = async {
        for chunk in 0..30 {
            let users: Vec<u64> = vec![1; 50];
            let body = json!({"users": users, "text": format!("relay-{chunk}")});
            let (status, answer) = relay.post("/notify", &body.to_string()).await;
            assert_eq!(status, 202, "{answer}");
        }
    };
    let (out, ()) = tokio::join!(bulk, posts);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    until(&emu, "3000 notifications", |n| n.len() == 3000).await;
    let statuses: Vec<u16> = emu.requests().iter().map(|r| r.status).collect();
    assert!(
        statuses.len() > 50,
        "past the burst: {} requests",
        statuses.len()
    );
    assert!(statuses.iter().all(|s| *s != 503), "a 503: {statuses:?}");
    relay.terminate().await;
}

/// A second SIGTERM does not wait for a batch in flight: the relay exits 1 at once, and the
/// next start settles that batch by the restart rules (over a webhook: dead-lettered).
#[tokio::test]
async fn a_second_sigterm_stops_at_once() {
    let emu = emulator().await;
    // Far longer than the test would wait.
    emu.add_faults(&json!([{"method": "batch", "kind": "delay", "ms": 300_000}]))
        .unwrap();
    let dir = tmp();
    let queue = dir.path().join("q.sqlite3");
    let q = queue.to_str().unwrap();
    let url = emu.webhook_url(1, SECRET);
    let relay = Relay::start(&["--url", &url, "--queue", q], &[], dir.path()).await;
    let (status, _) = relay
        .post("/notify", r#"{"user": 1, "text": "held"}"#)
        .await;
    assert_eq!(status, 202);
    until(&emu, "the batch has run", |n| n.len() == 1).await;
    let (code, stderr) = relay.signalled(2).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("stopped at once"), "{stderr}");
    emu.clear_faults();
    let relay = Relay::start(&["--url", &url, "--queue", q], &[], dir.path()).await;
    assert_eq!(relay.metric("oint_serve_dead_letters").await, 1.0);
    relay.terminate().await;
}

/// A web page in the operator's browser can neither post to a relay without a token (only
/// application/json is taken) nor reach it under another name (DNS rebinding).
#[tokio::test]
async fn a_web_page_cannot_use_a_relay_without_a_token() {
    let emu = emulator().await;
    let dir = tmp();
    let queue = dir.path().join("q.sqlite3");
    let url = emu.webhook_url(1, SECRET);
    let relay = Relay::start(
        &["--url", &url, "--queue", queue.to_str().unwrap()],
        &[],
        dir.path(),
    )
    .await;
    let body = r#"{"user": 1, "text": "log in at http://phish.example"}"#;
    for content_type in [
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let response = relay
            .http
            .post(format!("{}/notify", relay.base))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 415, "{content_type}");
    }
    for host in [
        "attacker.example",
        "rebind.attacker.example:9380",
        "10.0.0.1",
    ] {
        let response = relay
            .http
            .get(format!("{}/queue", relay.base))
            .header("host", host)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 421, "{host}");
    }
    let (status, answer) = relay
        .post("/notify", r#"{"user": 1, "text": "from a script"}"#)
        .await;
    assert_eq!(status, 202, "{answer}");
    until(&emu, "only the script's", |n| n.len() == 1).await;
    relay.terminate().await;
}

/// What one request may make is bounded: its body times its recipients, and the queue's limit
/// is exact even when requests race for the last places.
#[tokio::test]
async fn one_request_cannot_blow_up_the_queue() {
    let emu = emulator().await;
    emu.add_faults(&json!([{"method": "batch", "kind": "delay", "ms": 5000}]))
        .unwrap();
    let dir = tmp();
    let queue = dir.path().join("q.sqlite3");
    let url = emu.webhook_url(1, SECRET);
    let relay = Relay::start(
        &[
            "--url",
            &url,
            "--queue",
            queue.to_str().unwrap(),
            "--queue-limit",
            "120",
        ],
        &[],
        dir.path(),
    )
    .await;
    let users: Vec<u64> = (1..=1000).collect();
    let big = json!({"users": users, "text": "y".repeat(20_000)}).to_string();
    let (status, answer) = relay.post("/notify", &big).await;
    assert_eq!(status, 413, "{answer}");
    let (status, answer) = relay
        .post(
            "/notify",
            &json!({"users": (1..=121).collect::<Vec<u64>>(), "text": "x"}).to_string(),
        )
        .await;
    assert_eq!(status, 413, "more than the queue holds: {answer}");
    let fifty = json!({"users": vec![1; 50], "text": "race"}).to_string();
    let answers =
        futures_util::future::join_all((0..16).map(|_| relay.post("/notify", &fifty))).await;
    let accepted = answers.iter().filter(|(s, _)| *s == 202).count();
    assert!(
        answers.iter().all(|(s, _)| *s == 202 || *s == 503),
        "{answers:?}"
    );
    assert_eq!(
        accepted, 2,
        "120 places take two requests of 50: {answers:?}"
    );
    assert!(relay.metric("oint_serve_queue_depth").await <= 120.0);
    relay.signalled(2).await;
}

/// kill -9 while the portal cannot be reached: the batches that could not connect never left,
/// so the restart sends them all instead of dead-lettering them.
#[tokio::test]
async fn kill_9_while_the_portal_is_unreachable_loses_nothing() {
    let dir = tmp();
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let down = format!("http://{closed}/rest/1/{SECRET}/");
    // Killed while the batches wait between their attempts: every batch dispatched, every
    // item `queued` (taken back after its failed connect), nothing dispatched for 100 ms.
    // Without the `not run` mark the items would stay `sending` there and this never holds.
    // A kill can still land inside the next attempt, between its mark and its failed
    // connect, where nothing can tell that it never left: the file, read after the kill,
    // tells, and such a round is run again on a fresh queue.
    let all_waiting = |listing: &str| {
        let listing: Value = serde_json::from_str(listing).unwrap();
        let pending = listing["pending"].as_array().unwrap().clone();
        pending.len() == 100
            && pending
                .iter()
                .all(|p| p["state"] == "queued" && p["attempts"] == 0)
    };
    let mut killed_between_attempts = None;
    for round in 0..5 {
        let queue = dir.path().join(format!("q{round}.sqlite3"));
        let q = queue.to_str().unwrap();
        let relay = Relay::start(&["--url", &down, "--queue", q], &[], dir.path()).await;
        post_many(&relay, 100, "down", false).await;
        let mut between_attempts = false;
        for _ in 0..600 {
            let before = relay.metric("oint_serve_batches_total").await;
            let (_, first) = relay.get("/queue?limit=1000").await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            let (_, second) = relay.get("/queue?limit=1000").await;
            let after = relay.metric("oint_serve_batches_total").await;
            if before >= 2.0 && before == after && all_waiting(&first) && all_waiting(&second) {
                between_attempts = true;
                break;
            }
        }
        assert!(between_attempts, "the batches were caught between attempts");
        relay.kill9().await;
        let sending: i64 = rusqlite::Connection::open(&queue)
            .unwrap()
            .query_row(
                "SELECT count(*) FROM items WHERE state = 'sending'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        if sending == 0 {
            killed_between_attempts = Some(queue);
            break;
        }
    }
    let queue = killed_between_attempts.expect("a kill between attempts in 5 rounds");
    let q = queue.to_str().unwrap();

    let emu = emulator().await;
    let url = emu.webhook_url(1, SECRET);
    let relay = Relay::start(&["--url", &url, "--queue", q], &[], dir.path()).await;
    until(&emu, "all 100", |n| n.len() == 100).await;
    assert_eq!(relay.metric("oint_serve_dead_letters").await, 0.0);
    relay.terminate().await;
}

/// A client that never finishes its request does not keep the relay from stopping.
#[tokio::test]
async fn a_stalled_client_does_not_hold_the_stop() {
    use tokio::io::AsyncWriteExt;
    let emu = emulator().await;
    let dir = tmp();
    let queue = dir.path().join("q.sqlite3");
    let url = emu.webhook_url(1, SECRET);
    let relay = Relay::start(
        &["--url", &url, "--queue", queue.to_str().unwrap()],
        &[],
        dir.path(),
    )
    .await;
    let addr = relay.base.trim_start_matches("http://").to_string();
    let mut headers_only = tokio::net::TcpStream::connect(&addr).await.unwrap();
    headers_only
        .write_all(b"POST /notify HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let mut half_body = tokio::net::TcpStream::connect(&addr).await.unwrap();
    half_body
        .write_all(b"POST /notify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"user\"")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (code, stderr) = relay.terminate().await;
    assert_eq!(code, 0, "{stderr}");
    drop((headers_only, half_body));
}

/// A 5xx from the portal may mean the batch ran: its items are dead-lettered, never resent by
/// the relay; a person can requeue them (accepting a possible duplicate) or purge them.
#[tokio::test]
async fn dead_letters_can_be_requeued_or_purged_by_a_person() {
    let emu = emulator().await;
    emu.add_faults(
        &json!([{"method": "batch", "kind": "status", "status": 502, "error": "BAD_GATEWAY"}]),
    )
    .unwrap();
    let dir = tmp();
    let queue = dir.path().join("q.sqlite3");
    let url = emu.webhook_url(1, SECRET);
    let relay = Relay::start(
        &["--url", &url, "--queue", queue.to_str().unwrap()],
        &[],
        dir.path(),
    )
    .await;
    let (status, first) = relay
        .post("/notify", r#"{"user": 1, "text": "after the 502"}"#)
        .await;
    assert_eq!(status, 202);
    relay
        .wait_for_metric("oint_serve_dead_letters", |v| v == 1.0)
        .await;
    assert!(emu.notifications().is_empty());
    let (status, answer) = relay.post("/queue/requeue", r#"{"ids": []}"#).await;
    assert_eq!(status, 400, "{answer}");
    let (status, answer) = relay.post("/queue/requeue", r#"{"all": true}"#).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["requeued"], json!([first["id"]]));
    until(&emu, "the requeued one", |n| n.len() == 1).await;

    // The emulator answers false for a user it does not have: dead, then purged.
    let (status, second) = relay
        .post("/notify", r#"{"user": 999999, "text": "nobody"}"#)
        .await;
    assert_eq!(status, 202);
    relay
        .wait_for_metric("oint_serve_dead_letters", |v| v == 1.0)
        .await;
    let body = json!({"ids": [second["id"], 12345]}).to_string();
    let (status, answer) = relay.post("/queue/purge", &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["purged"],
        json!([second["id"]]),
        "unknown ids are skipped"
    );
    assert_eq!(relay.metric("oint_serve_dead_letters").await, 0.0);
    relay.terminate().await;
}
