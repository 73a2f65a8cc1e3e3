//! `oint serve --queue redis://…` as processes: several relays on one Redis queue, against a
//! real `redis-server` on a loopback port chosen at run time and the emulator. A relay killed
//! with -9 leaves its items to the others; Redis stopped and restarted loses nothing that was
//! answered 202.
#![cfg(all(feature = "serve", feature = "redis"))]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use bitrix24_emulator::{Config, Emulator};
use common::redis::RedisServer;
use common::relay::{Relay, until};
use common::{SECRET, TOKEN};
use serde_json::{Value, json};

/// A portal that paces nothing away (the relays are told the same rate), so the tests are
/// about the queue.
async fn portal() -> Emulator {
    Emulator::start(
        Config::default()
            .webhook(1, SECRET)
            .access_token(1, TOKEN)
            .rate(1000.0)
            .burst(1000.0),
    )
    .await
    .expect("emulator starts")
}

fn slow_batches(emu: &Emulator, ms: u64) {
    emu.add_faults(&json!([{"method": "batch", "kind": "delay", "ms": ms, "count": 100000}]))
        .unwrap();
}

/// Relay arguments: the portal, the shared queue, a pace the portal allows, two batches in
/// flight.
fn args<'a>(url: &'a str, token: Option<&'a str>, queue: &'a str) -> Vec<&'a str> {
    with_concurrency(url, token, queue, "2")
}

fn with_concurrency<'a>(
    url: &'a str,
    token: Option<&'a str>,
    queue: &'a str,
    concurrency: &'a str,
) -> Vec<&'a str> {
    let mut args = vec!["--url", url];
    if let Some(token) = token {
        args.extend(["--token", token]);
    }
    args.extend([
        "--queue",
        queue,
        "--rate",
        "1000",
        "--burst",
        "1000",
        "--concurrency",
        concurrency,
    ]);
    args
}

/// A relay with a state directory of its own, as on a host of its own.
async fn relay(args: &[&str], dir: &Path, name: &str) -> Relay {
    let state = dir.join(name);
    std::fs::create_dir_all(&state).unwrap();
    let state = state.to_str().unwrap().to_string();
    Relay::start(args, &[("OINT_STATE_DIR", &state)], dir).await
}

/// Posts `texts` from 8 tasks at once; each is tagged with its text when `tagged`. Gives the
/// answers' statuses and bodies.
async fn post_all(relay: &Relay, texts: &[String], tagged: bool) -> Vec<(u16, Value)> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let answers = std::sync::Mutex::new(Vec::new());
    let worker = || async {
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(text) = texts.get(i) else {
                return;
            };
            let mut body = json!({"user": 1, "text": text});
            if tagged {
                body["tag"] = json!(text);
            }
            let answer = relay.post("/notify", &body.to_string()).await;
            answers.lock().unwrap().push(answer);
        }
    };
    futures_util::future::join_all((0..8).map(|_| worker())).await;
    answers.into_inner().unwrap()
}

fn texts(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}-{i}")).collect()
}

fn counts(emu: &Emulator) -> BTreeMap<String, usize> {
    let mut by_text = BTreeMap::new();
    for n in emu.notifications() {
        *by_text.entry(n.message).or_insert(0) += 1;
    }
    by_text
}

/// Every answer was 202.
fn all_accepted<'a>(answers: impl IntoIterator<Item = &'a (u16, Value)>) {
    for (status, body) in answers {
        assert_eq!(*status, 202, "{body}");
    }
}

fn assert_none_twice(by_text: &BTreeMap<String, usize>) {
    let twice: Vec<_> = by_text.iter().filter(|(_, c)| **c > 1).collect();
    assert!(twice.is_empty(), "none twice: {twice:?}");
}

/// The texts of a listing's dead letters, each dead as `outcome_unknown`.
fn unknown_dead_letters(list: &Value) -> Vec<String> {
    list["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            assert_eq!(d["reason"], "outcome_unknown", "{d}");
            d["text"].as_str().unwrap().to_string()
        })
        .collect()
}

async fn listing(relay: &Relay) -> Value {
    let (status, body) = relay.get("/queue?limit=10000").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Two OAuth relays share 5,000 tagged notifications; one is killed with -9 mid-run. The other
/// takes over what it held: every notification arrives, none twice, nothing is dead-lettered.
#[tokio::test]
async fn two_relays_deliver_5000_once_when_one_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let Some(redis) = RedisServer::start(dir.path(), &[]) else {
        return;
    };
    let emu = portal().await;
    slow_batches(&emu, 100);
    let url = emu.url();
    let queue = redis.url(0);
    let args = args(&url, Some(TOKEN), &queue);
    let a = relay(&args, dir.path(), "a").await;
    let b = relay(&args, dir.path(), "b").await;
    let all = texts("k9", 0..5000);
    let (to_a, to_b) = all.split_at(2500);
    let (answers_a, answers_b) = tokio::join!(post_all(&a, to_a, true), post_all(&b, to_b, true));
    all_accepted(answers_a.iter().chain(&answers_b));
    until(&emu, "a good part delivered", |n| n.len() >= 1000).await;
    let stderr = a.kill9().await;
    let delivered_at_kill = emu.notifications().len();
    assert!(
        delivered_at_kill < 5000,
        "killed mid-run ({delivered_at_kill})"
    );
    assert!(!stderr.contains(TOKEN), "{stderr}");

    until(&emu, "all 5,000", |n| n.len() >= 5000).await;
    b.wait_for_metric("oint_serve_queue_depth", |v| v == 0.0)
        .await;
    assert_eq!(b.metric("oint_serve_dead_letters").await, 0.0);
    let by_text = counts(&emu);
    assert_eq!(by_text.len(), 5000, "every notification arrived");
    assert_none_twice(&by_text);
    // A resend replaces its tagged notification: only what was in flight at the kill (two
    // batches of 50) may have been sent twice, never items in general.
    let sent = emu.notifications().iter().map(|n| n.id).max().unwrap();
    assert!(sent <= 5000 + 100, "{sent} adds for 5,000 notifications");
    let (code, stderr) = b.terminate().await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("took over"), "{stderr}");
    assert!(!stderr.contains(TOKEN), "{stderr}");
}

/// `--queue-limit` counts the shared queue, whichever relay accepts: two relays filling it
/// at once accept exactly the limit.
#[tokio::test]
async fn the_queue_limit_holds_across_relays() {
    let dir = tempfile::tempdir().unwrap();
    let Some(redis) = RedisServer::start(dir.path(), &[]) else {
        return;
    };
    let emu = portal().await;
    // Nothing is settled while the test fills the queue.
    slow_batches(&emu, 60_000);
    let url = emu.webhook_url(1, SECRET);
    let queue = redis.url(0);
    let mut args = args(&url, None, &queue);
    args.extend(["--queue-limit", "300"]);
    let a = relay(&args, dir.path(), "a").await;
    let b = relay(&args, dir.path(), "b").await;
    let (texts_a, texts_b) = (texts("a", 0..250), texts("b", 0..250));
    let (answers_a, answers_b) =
        tokio::join!(post_all(&a, &texts_a, false), post_all(&b, &texts_b, false));
    let answers: Vec<_> = answers_a.into_iter().chain(answers_b).collect();
    let accepted = answers.iter().filter(|(s, _)| *s == 202).count();
    assert_eq!(accepted, 300, "exactly the limit is accepted");
    for (status, body) in answers.iter().filter(|(s, _)| *s != 202) {
        assert_eq!(*status, 503, "{body}");
        assert_eq!(body["error"], "QUEUE_FULL", "{body}");
        assert!(
            body["description"]
                .as_str()
                .is_some_and(|d| d.contains("holds 300")),
            "{body}"
        );
    }
    assert_eq!(listing(&a).await["pending_total"], 300);
}

/// Over a webhook nothing may be sent twice: what a killed relay was sending is dead-lettered
/// by the relay that takes over (counted, shown, purgeable), and the rest is delivered.
#[tokio::test]
async fn a_killed_webhook_relays_batch_in_flight_is_dead_lettered_by_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let Some(redis) = RedisServer::start(dir.path(), &[]) else {
        return;
    };
    let emu = portal().await;
    slow_batches(&emu, 400);
    let url = emu.webhook_url(1, SECRET);
    let queue = redis.url(0);
    let args_a = with_concurrency(&url, None, &queue, "1");
    let a = relay(&args_a, dir.path(), "a").await;
    let all = texts("wh", 0..300);
    all_accepted(&post_all(&a, &all, false).await);
    until(&emu, "the first batch", |n| !n.is_empty()).await;
    a.kill9().await;
    emu.clear_faults();
    let b = relay(&args(&url, None, &queue), dir.path(), "b").await;
    b.wait_for_metric("oint_serve_queue_depth", |v| v == 0.0)
        .await;
    let list = listing(&b).await;
    let dead = unknown_dead_letters(&list);
    assert!(!dead.is_empty() && dead.len() <= 50, "{list}");
    assert_eq!(
        b.metric("oint_serve_outcome_unknown_total").await,
        dead.len() as f64
    );
    let by_text = counts(&emu);
    assert_none_twice(&by_text);
    for text in &all {
        // A dead letter of the batch in flight may also have arrived: that is why it is one.
        assert!(
            by_text.contains_key(text) || dead.contains(text),
            "{text} is neither delivered nor dead-lettered"
        );
    }
    let (status, body) = b.post("/queue/purge", r#"{"all": true}"#).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["purged"].as_array().unwrap().len(), dead.len());
    assert_eq!(listing(&b).await["dead_letters_total"], 0);
    b.terminate().await;
}

/// Redis killed (SIGKILL) and started again from its append-only file mid-run: accepts are
/// refused with 503 while it is away, and every notification answered 202 arrives once.
#[tokio::test]
async fn redis_stopped_and_restarted_mid_run_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let redis_dir = dir.path().join("redis");
    std::fs::create_dir_all(&redis_dir).unwrap();
    let Some(mut redis) = RedisServer::start(
        &redis_dir,
        &["--appendonly", "yes", "--appendfsync", "always"],
    ) else {
        return;
    };
    let emu = portal().await;
    slow_batches(&emu, 200);
    let url = emu.webhook_url(1, SECRET);
    let queue = redis.url(0);
    let relay = relay(&args(&url, None, &queue), dir.path(), "a").await;
    let mut accepted = Vec::new();
    let answers = post_all(&relay, &texts("r", 0..300), false).await;
    all_accepted(&answers);
    accepted.extend(texts("r", 0..300));
    until(&emu, "some delivered", |n| !n.is_empty()).await;
    redis.stop();
    let (status, body) = relay
        .post("/notify", r#"{"user": 1, "text": "while away"}"#)
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "QUEUE_ERROR", "{body}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    redis.restart();
    // Accepts work again once the relay has reconnected.
    let mut answered = false;
    for _ in 0..100 {
        let (status, _) = relay
            .post("/notify", r#"{"user": 1, "text": "r-back"}"#)
            .await;
        if status == 202 {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(answered, "accepts resume when Redis is back");
    accepted.push("r-back".into());
    let answers = post_all(&relay, &texts("r", 300..600), false).await;
    all_accepted(&answers);
    accepted.extend(texts("r", 300..600));
    until(&emu, "all accepted", |n| n.len() >= accepted.len()).await;
    relay
        .wait_for_metric("oint_serve_queue_depth", |v| v == 0.0)
        .await;
    let by_text = counts(&emu);
    for text in &accepted {
        assert_eq!(by_text.get(text), Some(&1), "{text} arrived once");
    }
    assert!(!by_text.contains_key("while away"));
    let (code, stderr) = relay.terminate().await;
    assert_eq!(code, 0, "{stderr}");
    // Said when it starts and when it ends, not once per request.
    assert!(stderr.lines().count() < 20, "{stderr}");
}

/// SIGTERM lets go at once: the next relay delivers what the stopped one had not sent, once.
#[tokio::test]
async fn after_sigterm_another_relay_sends_the_rest_once() {
    let dir = tempfile::tempdir().unwrap();
    let Some(redis) = RedisServer::start(dir.path(), &[]) else {
        return;
    };
    let emu = portal().await;
    slow_batches(&emu, 1000);
    let url = emu.webhook_url(1, SECRET);
    let queue = redis.url(0);
    let one_at_a_time = with_concurrency(&url, None, &queue, "1");
    let a = relay(&one_at_a_time, dir.path(), "a").await;
    let all = texts("t", 0..200);
    all_accepted(&post_all(&a, &all, false).await);
    until(&emu, "the first batch", |n| !n.is_empty()).await;
    let (code, stderr) = a.terminate().await;
    assert_eq!(code, 0, "{stderr}");
    emu.clear_faults();
    let b = relay(&args(&url, None, &queue), dir.path(), "b").await;
    until(&emu, "all 200", |n| n.len() >= 200).await;
    b.wait_for_metric("oint_serve_queue_depth", |v| v == 0.0)
        .await;
    let by_text = counts(&emu);
    assert_eq!(by_text.len(), 200);
    assert_none_twice(&by_text);
    assert_eq!(listing(&b).await["dead_letters_total"], 0);
    b.terminate().await;
}

/// The store's password: from the environment it works; wrong, in the URL or not, or a store
/// that is not there, the relay exits 1 with one line that shows no secret — and never makes
/// a file named after the URL.
#[tokio::test]
async fn a_redis_queue_that_cannot_be_used_is_one_line_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let password = "queue-pass-7f3c91";
    let Some(redis) = RedisServer::start(dir.path(), &["--requirepass", password]) else {
        return;
    };
    let emu = portal().await;
    let url = emu.webhook_url(1, SECRET);
    let queue = redis.url(0);
    let env = [("OINT_LIMIT_STORE_PASSWORD", password)];
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();
    let mut env_ok = env.to_vec();
    env_ok.push(("OINT_STATE_DIR", state));
    let ok = Relay::start(&args(&url, None, &queue), &env_ok, dir.path()).await;
    let (status, body) = ok.post("/notify", r#"{"user": 1, "text": "p"}"#).await;
    assert_eq!(status, 202, "{body}");
    until(&emu, "delivered", |n| n.len() == 1).await;
    let (code, stderr) = ok.terminate().await;
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains(password), "{stderr}");

    let in_url = format!("redis://:wrong-{password}@127.0.0.1:{}/0", redis.port());
    let closed = "redis://127.0.0.1:1/0".to_string();
    let cases: [(&str, &[(&str, &str)]); 3] = [
        (
            queue.as_str(),
            &[("OINT_LIMIT_STORE_PASSWORD", "wrong-password-1")],
        ),
        (in_url.as_str(), &[]),
        (closed.as_str(), &[]),
    ];
    for (queue, env) in cases {
        let mut cmd = common::oint_command(&["serve", "--listen", "127.0.0.1:0"], env);
        cmd.args(args(&url, None, queue)).current_dir(dir.path());
        let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
            .await
            .expect("oint serve gives up")
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{queue}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains("--queue"), "{stderr}");
        assert!(
            !stderr.contains(password) && !stderr.contains("wrong-") && !stderr.contains(SECRET),
            "{stderr}"
        );
    }
    let made: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|name| name.starts_with("redis"))
        .collect();
    assert!(made.is_empty(), "{made:?}");
}

/// `rediss://`: the queue's connections, the blocking one for the `sending` marks included,
/// speak TLS to a store whose private CA is named in SSL_CERT_FILE.
#[tokio::test]
async fn a_queue_over_tls_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let files = common::redis::TlsFiles::generate(dir.path(), "queue");
    let Some(redis) = RedisServer::start_tls(dir.path(), &files) else {
        return;
    };
    let emu = portal().await;
    let url = emu.webhook_url(1, SECRET);
    let queue = redis.url(0);
    assert!(queue.starts_with("rediss://"));
    let state = dir.path().join("state");
    let env = [
        ("SSL_CERT_FILE", files.ca.to_str().unwrap()),
        ("OINT_STATE_DIR", state.to_str().unwrap()),
    ];
    let relay = Relay::start(&args(&url, None, &queue), &env, dir.path()).await;
    all_accepted(&post_all(&relay, &texts("tls", 0..120), false).await);
    until(&emu, "all 120", |n| n.len() >= 120).await;
    relay
        .wait_for_metric("oint_serve_queue_depth", |v| v == 0.0)
        .await;
    assert_none_twice(&counts(&emu));
    let (code, stderr) = relay.terminate().await;
    assert_eq!(code, 0, "{stderr}");
}

/// An outage every relay sees lets every heartbeat lapse, the live relays' too: when Redis is
/// back none takes the others' items for a dead relay's. Two webhook relays, Redis away
/// longer than a heartbeat lasts: every notification arrives once, none is dead-lettered.
#[tokio::test]
async fn after_a_long_redis_outage_relays_do_not_take_each_others_items() {
    let dir = tempfile::tempdir().unwrap();
    let redis_dir = dir.path().join("redis");
    std::fs::create_dir_all(&redis_dir).unwrap();
    let Some(mut redis) = RedisServer::start(
        &redis_dir,
        &["--appendonly", "yes", "--appendfsync", "always"],
    ) else {
        return;
    };
    let emu = portal().await;
    slow_batches(&emu, 300);
    let url = emu.webhook_url(1, SECRET);
    let queue = redis.url(0);
    let one_at_a_time = with_concurrency(&url, None, &queue, "1");
    let a = relay(&one_at_a_time, dir.path(), "a").await;
    let b = relay(&one_at_a_time, dir.path(), "b").await;
    let all = texts("o", 0..1000);
    let (to_a, to_b) = all.split_at(500);
    let (answers_a, answers_b) = tokio::join!(post_all(&a, to_a, false), post_all(&b, to_b, false));
    all_accepted(answers_a.iter().chain(&answers_b));
    until(&emu, "some delivered", |n| n.len() >= 100).await;
    redis.stop();
    // Longer than a heartbeat lasts (5 s), with room for the relays' own waits.
    tokio::time::sleep(Duration::from_secs(7)).await;
    redis.restart();
    until(&emu, "all 1,000", |n| n.len() >= 1000).await;
    for relay in [&a, &b] {
        relay
            .wait_for_metric("oint_serve_queue_depth", |v| v == 0.0)
            .await;
    }
    let by_text = counts(&emu);
    assert_none_twice(&by_text);
    assert_eq!(by_text.len(), 1000);
    assert_eq!(listing(&a).await["dead_letters_total"], 0);
    for relay in [a, b] {
        let (code, stderr) = relay.terminate().await;
        assert_eq!(code, 0, "{stderr}");
        assert!(!stderr.contains("took over"), "{stderr}");
    }
}

/// A relay that stalls (SIGSTOP, as a frozen VM) longer than its heartbeat lasts is taken for
/// dead and its items taken over; woken again, it sends none of what was taken from it.
#[tokio::test]
async fn a_stalled_relay_sends_nothing_that_was_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let Some(redis) = RedisServer::start(dir.path(), &[]) else {
        return;
    };
    let emu = portal().await;
    slow_batches(&emu, 300);
    let url = emu.webhook_url(1, SECRET);
    let queue = redis.url(0);
    let one_at_a_time = with_concurrency(&url, None, &queue, "1");
    let a = relay(&one_at_a_time, dir.path(), "a").await;
    let b = relay(&one_at_a_time, dir.path(), "b").await;
    let all = texts("s", 0..1000);
    let (to_a, to_b) = all.split_at(500);
    let (answers_a, answers_b) = tokio::join!(post_all(&a, to_a, false), post_all(&b, to_b, false));
    all_accepted(answers_a.iter().chain(&answers_b));
    until(&emu, "some delivered", |n| n.len() >= 100).await;
    a.signal(libc::SIGSTOP);
    // B takes over once A's heartbeat has lapsed (5 s) and its own pass comes round.
    tokio::time::sleep(Duration::from_secs(8)).await;
    a.signal(libc::SIGCONT);
    for relay in [&a, &b] {
        relay
            .wait_for_metric("oint_serve_queue_depth", |v| v == 0.0)
            .await;
    }
    let by_text = counts(&emu);
    assert_none_twice(&by_text);
    let list = listing(&b).await;
    let dead = unknown_dead_letters(&list);
    for text in &all {
        assert!(
            by_text.contains_key(text) || dead.contains(text),
            "{text} is neither delivered nor dead-lettered"
        );
    }
    let (_, stderr_b) = b.terminate().await;
    assert!(stderr_b.contains("took over"), "{stderr_b}");
    a.terminate().await;
}
