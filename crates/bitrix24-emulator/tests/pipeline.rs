//! Conformance tests of the request pipeline: rate limit, operating-time budget, fault
//! injection, the request log and TLS.
//!
//! Each test starts its own emulator on 127.0.0.1 port 0. Time-dependent rules use parameters
//! with huge margins (a drain rate of 0.001/s cannot free a slot during a test), and the only
//! time assertions are lower bounds that a sleep guarantees.

use std::time::{Duration, Instant};

use bitrix24_emulator::{Config, Emulator, Plan};
use serde_json::{Value, json};

mod common;
// Every request here uses a fresh client that keeps no idle connection, so no pooled
// connection survives a reset into the next request.
use common::{
    get_unpooled as get, post_unpooled as post, start_with as start, try_post_unpooled as try_post,
    unpooled_client as client, *,
};

fn base() -> Config {
    Config::default()
        .webhook(1, SECRET)
        .webhook(2, "other")
        .access_token(1, TOKEN)
}

fn notify_body(message: &str) -> Value {
    json!({"USER_ID": 1, "MESSAGE": message})
}

/// `im.notify.personal.add` through user 1's webhook.
async fn notify(emu: &Emulator, message: &str) -> (u16, Value) {
    post(
        &format!("{}im.notify.personal.add", emu.webhook_url(1, SECRET)),
        notify_body(message),
    )
    .await
}

async fn try_notify(emu: &Emulator, message: &str) -> Result<(u16, Value), reqwest::Error> {
    try_post(
        &format!("{}im.notify.personal.add", emu.webhook_url(1, SECRET)),
        notify_body(message),
    )
    .await
}

fn assert_query_limit(got: &(u16, Value)) {
    assert_error(got, 503, "QUERY_LIMIT_EXCEEDED", "Too many requests");
}

// --- rate limit ---------------------------------------------------------------------------------

#[tokio::test]
async fn rate_limit_exactly_burst_requests_pass_then_503_not_executed() {
    // Draining 0.001/s frees no slot during the test: exactly 5 of 8 pass.
    let emu = start(base().rate(0.001).burst(5.0)).await;
    let mut statuses = Vec::new();
    for i in 0..8 {
        let got = notify(&emu, &format!("m{i}")).await;
        if got.0 != 200 {
            assert_query_limit(&got);
        }
        statuses.push(got.0);
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 503, 503, 503]);
    // The refused calls were not executed.
    let stored: Vec<String> = emu.notifications().into_iter().map(|n| n.message).collect();
    assert_eq!(stored, ["m0", "m1", "m2", "m3", "m4"]);
}

#[tokio::test]
async fn rate_limit_default_plan_is_standard_burst_50() {
    let emu = start(base()).await;
    let client = reqwest::Client::new();
    let url = format!("{}im.notify.personal.add", emu.webhook_url(1, SECRET));
    let started = Instant::now();
    let mut passed = 0u32;
    for i in 0..60 {
        let resp = client
            .post(&url)
            .json(&notify_body(&format!("m{i}")))
            .send();
        let got = decode(resp.await.expect("request")).await;
        if got.0 == 200 {
            passed += 1;
        } else {
            assert_query_limit(&got);
        }
    }
    // 50 from the full bucket, plus at most what 2/s drained meanwhile.
    let drained = (started.elapsed().as_secs_f64() * 2.0).floor() as u32;
    assert!(
        (50..=50 + drained).contains(&passed),
        "{passed} passed, {drained} drained"
    );
    assert_eq!(emu.notifications().len(), passed as usize);
}

#[tokio::test]
async fn rate_limit_unlimited_plan_never_refuses() {
    let emu = start(base().plan(Plan::Unlimited)).await;
    for i in 0..120 {
        assert_eq!(notify(&emu, &format!("m{i}")).await.0, 200);
    }
}

#[tokio::test]
async fn rate_limit_counts_every_rest_call_even_unauthenticated() {
    let emu = start(base().rate(0.001).burst(2.0)).await;
    let bad = format!("{}im.notify.personal.add", emu.webhook_url(1, "wrong"));
    assert_eq!(post(&bad, notify_body("x")).await.0, 401);
    assert_eq!(
        post(&format!("{}/rest/im.notify", emu.url()), json!({}))
            .await
            .0,
        401
    );
    assert_query_limit(&notify(&emu, "x").await);
    assert!(emu.notifications().is_empty());
}

#[tokio::test]
async fn rate_limit_does_not_apply_to_the_control_plane() {
    let emu = start(base().rate(0.001).burst(1.0)).await;
    assert_eq!(notify(&emu, "a").await.0, 200);
    assert_query_limit(&notify(&emu, "b").await);
    for _ in 0..5 {
        assert_eq!(
            get(&format!("{}/_emulator/notifications", emu.url()))
                .await
                .0,
            200
        );
        let (status, log) = get_unpooled(&format!("{}/_emulator/requests", emu.url())).await;
        assert_eq!(status, 200);
        assert_eq!(log.as_array().map(Vec::len), Some(2));
    }
}

#[tokio::test]
async fn rate_limit_reset_empties_the_bucket() {
    let emu = start(base().rate(0.001).burst(1.0)).await;
    assert_eq!(notify(&emu, "a").await.0, 200);
    assert_query_limit(&notify(&emu, "b").await);
    let (status, _) = post(&format!("{}/_emulator/reset", emu.url()), json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(notify(&emu, "c").await.0, 200);
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn rate_limit_is_per_client_ip() {
    let emu = start(base().rate(0.001).burst(2.0)).await;
    let url = format!("{}im.notify.personal.add", emu.webhook_url(1, SECRET));
    let from = |ip: [u8; 4]| {
        reqwest::Client::builder()
            .local_address(std::net::IpAddr::from(ip))
            .build()
            .expect("client")
    };
    let send = |c: reqwest::Client| {
        let url = url.clone();
        async move {
            c.post(&url)
                .json(&notify_body("x"))
                .send()
                .await
                .expect("request")
                .status()
                .as_u16()
        }
    };
    let one = from([127, 0, 0, 1]);
    assert_eq!(send(one.clone()).await, 200);
    assert_eq!(send(one.clone()).await, 200);
    assert_eq!(send(one.clone()).await, 503);
    // Another source address (all of 127/8 is loopback on Linux) has its own bucket.
    let two = from([127, 0, 0, 2]);
    assert_eq!(send(two.clone()).await, 200);
    assert_eq!(send(two.clone()).await, 200);
    assert_eq!(send(two).await, 503);
}

// --- operating time -----------------------------------------------------------------------------

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
}

#[tokio::test]
async fn operating_and_reset_at_are_in_every_answer() {
    let emu = start(base()).await;
    let before = unix_now();
    let (status, first) = notify(&emu, "a").await;
    assert_eq!(status, 200);
    let (_, second) = notify(&emu, "b").await;
    let after = unix_now();
    for body in [&first, &second] {
        let time = &body["time"];
        let operating = time["operating"].as_f64().expect("operating is a number");
        assert!((0.0..60.0).contains(&operating), "{time}");
        let reset_at = time["operating_reset_at"]
            .as_u64()
            .expect("operating_reset_at is an integer");
        // The oldest bucket was opened by the first call: reset = first call + 600 s.
        assert!(
            reset_at as f64 >= before + 600.0 && reset_at as f64 <= after + 601.0,
            "{time}"
        );
    }
    // A running total: the second answer includes the first call's time.
    assert!(second["time"]["operating"].as_f64() >= first["time"]["operating"].as_f64());
    assert_eq!(
        second["time"]["operating_reset_at"],
        first["time"]["operating_reset_at"]
    );
}

#[tokio::test]
async fn operating_processing_ms_is_slept_and_billed() {
    let emu = start(base().processing_ms(50)).await;
    let started = Instant::now();
    let (status, body) = notify(&emu, "a").await;
    assert_eq!(status, 200);
    assert!(started.elapsed() >= Duration::from_millis(50));
    let time = &body["time"];
    assert!(
        time["operating"].as_f64().expect("operating") >= 0.05,
        "{time}"
    );
    assert!(
        time["duration"].as_f64().expect("duration") >= 0.05,
        "{time}"
    );
}

#[tokio::test]
async fn operating_budget_exhausted_gives_429_for_that_method_only() {
    // Each call is billed at least 60 ms, so the first call uses up a 50 ms budget.
    let emu = start(
        base()
            .plan(Plan::Unlimited)
            .operating_budget(0.05)
            .processing_ms(60),
    )
    .await;
    assert_eq!(notify(&emu, "a").await.0, 200);
    let blocked = notify(&emu, "b").await;
    assert_error(
        &blocked,
        429,
        "OPERATION_TIME_LIMIT",
        "Method is blocked due to operation time limit.",
    );
    // Not executed.
    assert_eq!(emu.notifications().len(), 1);
    // Other methods of the same webhook still work…
    let (status, _) = post(
        &format!("{}im.notify.system.add", emu.webhook_url(1, SECRET)),
        notify_body("sys"),
    )
    .await;
    assert_eq!(status, 200);
    // …and so does the same method for another webhook or an OAuth app.
    let (status, _) = post(
        &format!("{}im.notify.personal.add", emu.webhook_url(2, "other")),
        notify_body("u2"),
    )
    .await;
    assert_eq!(status, 200);
    let mut body = notify_body("app");
    body["auth"] = json!(TOKEN);
    let (status, _) = post(&format!("{}/rest/im.notify.personal.add", emu.url()), body).await;
    assert_eq!(status, 200);
    // Still blocked for the first webhook.
    assert_eq!(notify(&emu, "c").await.0, 429);
    assert_eq!(emu.notifications().len(), 4);
}

/// portal-behaviour §8.4: the budget is per webhook, not per webhook user — a second webhook
/// of the same user still runs the method the first one has used up.
#[tokio::test]
async fn operating_budget_is_per_webhook_not_per_user() {
    let emu = start(
        base()
            .webhook(1, "second-hook")
            .plan(Plan::Unlimited)
            .operating_budget(0.05)
            .processing_ms(60),
    )
    .await;
    assert_eq!(notify(&emu, "a").await.0, 200);
    assert_eq!(notify(&emu, "b").await.0, 429);
    let (status, body) = post(
        &format!(
            "{}im.notify.personal.add",
            emu.webhook_url(1, "second-hook")
        ),
        notify_body("other hook"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(notify(&emu, "c").await.0, 429);
}

/// portal-behaviour §8.7: a request still running at the time limit (60 s on the cloud,
/// shortened here) is cut off without an answer; work done before the cut stays done.
#[tokio::test]
async fn request_time_limit_cuts_off_a_long_request() {
    let emu = start(
        base()
            .plan(Plan::Unlimited)
            .request_time_limit(Duration::from_millis(100))
            .processing_ms(2_000),
    )
    .await;
    assert!(try_notify(&emu, "slow").await.is_err(), "no answer");
    // Cut off while "processing": the method never ran.
    assert!(emu.notifications().is_empty());
    let log = emu.requests();
    assert_eq!(log[0].error.as_deref(), Some("request_timeout"));

    // A delay after the method: it ran, only the answer is lost.
    let emu = start(
        base()
            .plan(Plan::Unlimited)
            .request_time_limit(Duration::from_millis(100)),
    )
    .await;
    emu.add_faults(&json!([{"method": "*", "kind": "delay", "ms": 2000}]))
        .expect("fault rules accepted");
    assert!(try_notify(&emu, "ran").await.is_err(), "no answer");
    assert_eq!(emu.notifications().len(), 1);
    // Short requests are untouched.
    assert_eq!(notify(&emu, "quick").await.0, 200);
}

#[tokio::test]
async fn operating_budget_zero_disables_the_limit() {
    let emu = start(
        base()
            .plan(Plan::Unlimited)
            .operating_budget(0.0)
            .processing_ms(20),
    )
    .await;
    for i in 0..3 {
        let (status, body) = notify(&emu, &format!("m{i}")).await;
        assert_eq!(status, 200);
        assert!(body["time"]["operating"].as_f64() >= Some(0.02 * (i + 1) as f64));
    }
}

// --- faults -------------------------------------------------------------------------------------

#[tokio::test]
async fn fault_status_answers_the_error_and_executes_nothing() {
    let emu = start(base()).await;
    let rules = emu
        .add_faults(
            &json!([{"method": "im.notify.personal.add", "kind": "status", "status": 500,
                "error": "INTERNAL_SERVER_ERROR", "description": "boom"}]),
        )
        .expect("fault rules accepted");
    assert_eq!(rules.len(), 1);
    assert_error(
        &notify(&emu, "a").await,
        500,
        "INTERNAL_SERVER_ERROR",
        "boom",
    );
    assert!(emu.notifications().is_empty());
    // count defaults to 1: the next call goes through.
    assert_eq!(notify(&emu, "b").await.0, 200);
    assert_eq!(emu.notifications().len(), 1);
}

#[tokio::test]
async fn fault_status_comes_before_auth_and_uses_portal_headers() {
    let emu = start(base()).await;
    emu.add_faults(&json!([{"method": "*", "kind": "status", "status": 503, "error": "OVERLOAD_LIMIT", "count": 2}])).expect("fault rules accepted");
    let bad = format!("{}im.notify.personal.add", emu.webhook_url(1, "wrong"));
    assert_error(
        &post(&bad, notify_body("x")).await,
        503,
        "OVERLOAD_LIMIT",
        "Service Unavailable",
    );
    let resp = client()
        .post(format!(
            "{}im.notify.personal.add",
            emu.webhook_url(1, SECRET)
        ))
        .json(&notify_body("x"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json; charset=utf-8")
    );
    assert!(emu.notifications().is_empty());
}

#[tokio::test]
async fn fault_reset_before_closes_without_answer_and_executes_nothing() {
    let emu = start(base()).await;
    emu.add_faults(&json!([{"method": "*", "kind": "reset_before"}]))
        .expect("fault rules accepted");
    let err = try_notify(&emu, "a")
        .await
        .expect_err("no HTTP response may arrive");
    // A transport error, not an HTTP answer and not a timeout.
    assert!(
        err.is_request() && !err.is_status() && !err.is_timeout(),
        "{err:?}"
    );
    assert!(emu.notifications().is_empty());
    // The emulator itself is fine afterwards.
    assert_eq!(notify(&emu, "b").await.0, 200);
}

#[tokio::test]
async fn fault_reset_after_executes_then_closes_without_answer() {
    let emu = start(base()).await;
    emu.add_faults(&json!([{"method": "im.notify.personal.add", "kind": "reset_after"}]))
        .expect("fault rules accepted");
    let err = try_notify(&emu, "stored")
        .await
        .expect_err("no HTTP response may arrive");
    // A transport error, not an HTTP answer and not a timeout.
    assert!(
        err.is_request() && !err.is_status() && !err.is_timeout(),
        "{err:?}"
    );
    let stored: Vec<String> = emu.notifications().into_iter().map(|n| n.message).collect();
    assert_eq!(stored, ["stored"]);
}

#[tokio::test]
async fn fault_reset_after_on_a_kept_alive_connection() {
    // A pooled client: the first call opens the connection, the second is reset on it.
    let emu = start(base()).await;
    let pooled = reqwest::Client::new();
    let url = format!("{}im.notify.personal.add", emu.webhook_url(1, SECRET));
    let first = pooled
        .post(&url)
        .json(&notify_body("a"))
        .send()
        .await
        .expect("first");
    assert_eq!(first.status().as_u16(), 200);
    let _ = first.bytes().await;
    emu.add_faults(&json!([{"method": "*", "kind": "reset_after"}]))
        .expect("fault rules accepted");
    assert!(
        pooled
            .post(&url)
            .json(&notify_body("b"))
            .send()
            .await
            .is_err()
    );
    assert_eq!(emu.notifications().len(), 2);
    let third = pooled
        .post(&url)
        .json(&notify_body("c"))
        .send()
        .await
        .expect("third");
    assert_eq!(third.status().as_u16(), 200);
}

#[tokio::test]
async fn fault_delay_answers_late_and_executes() {
    let emu = start(base()).await;
    emu.add_faults(&json!([{"method": "*", "kind": "delay", "ms": 300}]))
        .expect("fault rules accepted");
    let started = Instant::now();
    let (status, body) = notify(&emu, "a").await;
    assert_eq!(status, 200);
    assert_eq!(body["result"], 1);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(emu.notifications().len(), 1);
}

#[tokio::test]
async fn fault_delay_past_a_client_timeout_still_executes() {
    let emu = start(base()).await;
    emu.add_faults(&json!([{"method": "*", "kind": "delay", "ms": 2000}]))
        .expect("fault rules accepted");
    let err = client()
        .post(format!(
            "{}im.notify.personal.add",
            emu.webhook_url(1, SECRET)
        ))
        .json(&notify_body("late"))
        .timeout(Duration::from_millis(300))
        .send()
        .await
        .expect_err("times out");
    assert!(err.is_timeout(), "{err:?}");
    // The call ran before the delay: it is stored while the answer is still being held back.
    let deadline = Instant::now() + Duration::from_millis(1500);
    while emu.notifications().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(emu.notifications().len(), 1);
}

#[tokio::test]
async fn fault_after_skips_and_count_limits_matching_calls() {
    let emu = start(base()).await;
    emu.add_faults(
        &json!([{"method": "im.notify.personal.add", "kind": "status", "status": 500,
                "error": "INTERNAL_SERVER_ERROR", "after": 2, "count": 2}]),
    )
    .expect("fault rules accepted");
    let mut statuses = Vec::new();
    for i in 0..3 {
        statuses.push(notify(&emu, &format!("m{i}")).await.0);
        // Calls to other methods are not counted.
        let (s, _) = post(
            &format!("{}im.notify.system.add", emu.webhook_url(1, SECRET)),
            notify_body("sys"),
        )
        .await;
        assert_eq!(s, 200);
    }
    statuses.push(notify(&emu, "m3").await.0);
    statuses.push(notify(&emu, "m4").await.0);
    assert_eq!(statuses, [200, 200, 500, 500, 200]);
    // Exhausted rules are gone.
    assert_eq!(
        get(&format!("{}/_emulator/faults", emu.url())).await.1,
        json!([])
    );
}

#[tokio::test]
async fn fault_rules_are_listed_and_deleted() {
    let emu = start(base()).await;
    // Over HTTP: this test is about the control plane's endpoints.
    let url = format!("{}/_emulator/faults", emu.url());
    let rule = json!([{"method": "IM.Notify.Personal.Add", "kind": "reset_before", "count": 3, "after": 1}]);
    assert_eq!(post_unpooled(&url, rule).await.0, 200);
    let rule = json!({"method": "*", "kind": "delay", "ms": 10});
    assert_eq!(post_unpooled(&url, rule).await.0, 200);
    let (status, listed) = get(&format!("{}/_emulator/faults", emu.url())).await;
    assert_eq!(status, 200);
    assert_eq!(
        listed,
        json!([
            {"method": "im.notify.personal.add", "kind": "reset_before", "count": 3, "after": 1},
            {"method": "*", "kind": "delay", "count": 1, "after": 0, "ms": 10}
        ])
    );
    let resp = client()
        .delete(format!("{}/_emulator/faults", emu.url()))
        .send()
        .await
        .expect("delete");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        get(&format!("{}/_emulator/faults", emu.url())).await.1,
        json!([])
    );
    assert_eq!(notify(&emu, "a").await.0, 200);
}

#[tokio::test]
async fn fault_rule_validation_gives_clear_400() {
    let emu = start(base()).await;
    let url = format!("{}/_emulator/faults", emu.url());
    let table = [
        (
            json!([{"method": "*", "kind": "explode"}]),
            "rule 0: unknown kind \"explode\"",
        ),
        (
            json!([{"kind": "reset_before"}]),
            "rule 0: \"method\" is required",
        ),
        (
            json!([{"method": "*", "kind": "reset_before"}, {"method": "*", "kind": "status", "error": "E"}]),
            "rule 1: \"status\" is required",
        ),
        (
            json!([{"method": "*", "kind": "delay"}]),
            "\"ms\" is required",
        ),
        (
            json!([{"method": "*", "kind": "reset_after", "count": 0}]),
            "\"count\" must be at least 1",
        ),
        (json!(42), "expected a JSON array"),
    ];
    for (rules, want) in table {
        let (status, body) = post(&url, rules.clone()).await;
        assert_eq!(status, 400, "{rules}");
        assert_eq!(body["error"], "INVALID_FAULT");
        let why = body["error_description"].as_str().unwrap_or_default();
        assert!(why.contains(want), "{rules}: {why}");
    }
    let resp = client()
        .post(&url)
        .header("content-type", "application/json")
        .body("[{")
        .send()
        .await
        .expect("request");
    let (status, body) = decode(resp).await;
    assert_eq!(status, 400);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap_or_default()
            .starts_with("invalid JSON")
    );
    // A rejected batch adds none of its rules.
    assert_eq!(get(&url).await.1, json!([]));
}

#[tokio::test]
async fn faulted_calls_count_against_the_rate_limit() {
    let emu = start(base().rate(0.001).burst(2.0)).await;
    emu.add_faults(&json!([{"method": "*", "kind": "status", "status": 500, "error": "INTERNAL_SERVER_ERROR"}])).expect("fault rules accepted");
    assert_eq!(notify(&emu, "a").await.0, 500);
    assert_eq!(notify(&emu, "b").await.0, 200);
    assert_query_limit(&notify(&emu, "c").await);
}

#[tokio::test]
async fn rate_limited_calls_do_not_consume_fault_rules() {
    let emu = start(base().rate(0.001).burst(1.0)).await;
    assert_eq!(notify(&emu, "a").await.0, 200);
    emu.add_faults(&json!([{"method": "*", "kind": "reset_before"}]))
        .expect("fault rules accepted");
    assert_query_limit(&notify(&emu, "b").await);
    assert_eq!(
        get(&format!("{}/_emulator/faults", emu.url()))
            .await
            .1
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

// --- request log --------------------------------------------------------------------------------

#[tokio::test]
async fn requests_log_records_every_rest_call() {
    let emu = start(base().rate(0.001).burst(5.0)).await;
    let before = unix_now();
    notify(&emu, "ok").await; // webhook, 200
    let mut body = json!({"USER_ID": 1});
    body["auth"] = json!(TOKEN);
    post(&format!("{}/rest/im.notify.personal.add", emu.url()), body).await; // oauth, 400
    get(&format!("{}/rest/im.notify", emu.url())).await; // none, 401
    get(&format!("{}/rest/1/{SECRET}/", emu.url())).await; // no method, 404
    emu.add_faults(&json!([{"method": "*", "kind": "reset_after"}]))
        .expect("fault rules accepted");
    let _ = try_notify(&emu, "reset").await; // 0, reset_after
    notify(&emu, "limited").await; // 503
    let after = unix_now();

    // Over HTTP: the endpoint's JSON shape is what this test pins down.
    let (status, log) = get_unpooled(&format!("{}/_emulator/requests", emu.url())).await;
    assert_eq!(status, 200);
    let log = log.as_array().cloned().expect("array");
    let summary: Vec<Value> = log
        .iter()
        .map(|e| json!([e["method"], e["auth"], e["status"], e["error"]]))
        .collect();
    assert_eq!(
        summary,
        [
            json!(["im.notify.personal.add", "webhook", 200, null]),
            json!(["im.notify.personal.add", "oauth", 400, "MESSAGE_EMPTY"]),
            json!(["im.notify", "none", 401, "NO_AUTH_FOUND"]),
            json!([null, "none", 404, "ERROR_METHOD_NOT_FOUND"]),
            json!(["im.notify.personal.add", "webhook", 0, "reset_after"]),
            json!([
                "im.notify.personal.add",
                "webhook",
                503,
                "QUERY_LIMIT_EXCEEDED"
            ]),
        ]
    );
    let ats: Vec<f64> = log.iter().filter_map(|e| e["at"].as_f64()).collect();
    assert_eq!(ats.len(), log.len());
    assert!(ats.windows(2).all(|w| w[0] <= w[1]));
    assert!(ats[0] >= before - 1.0 && ats[ats.len() - 1] <= after + 1.0);
    // The log never holds secrets or tokens.
    let text = serde_json::to_string(&log).unwrap_or_default();
    assert!(!text.contains(SECRET) && !text.contains(TOKEN));
    // reset clears it.
    post(&format!("{}/_emulator/reset", emu.url()), json!({})).await;
    assert!(emu.requests().is_empty());
}

#[tokio::test]
async fn requests_log_shows_reset_before() {
    let emu = start(base()).await;
    emu.add_faults(&json!([{"method": "*", "kind": "reset_before"}]))
        .expect("fault rules accepted");
    assert!(try_notify(&emu, "a").await.is_err());
    let log = emu.requests();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].status, 0);
    assert_eq!(log[0].error.as_deref(), Some("reset_before"));
}

// --- TLS ----------------------------------------------------------------------------------------

fn trusting(ca_pem: &str) -> reqwest::Client {
    let cert = reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA PEM parses");
    reqwest::Client::builder()
        .tls_certs_only([cert])
        .build()
        .expect("client")
}

#[tokio::test]
async fn tls_serves_https_with_the_written_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tls_dir = dir.path().join("nested").join("tls");
    let emu = start(base().tls(&tls_dir)).await;
    assert!(emu.url().starts_with("https://127.0.0.1:"), "{}", emu.url());
    assert!(emu.webhook_url(1, SECRET).starts_with("https://"));
    let ca = std::fs::read_to_string(tls_dir.join("ca.pem")).expect("ca.pem written");
    assert_eq!(Some(ca.as_str()), emu.ca_pem());

    let url = format!("{}im.notify.personal.add", emu.webhook_url(1, SECRET));
    let resp = trusting(&ca)
        .post(&url)
        .json(&notify_body("over tls"))
        .send()
        .await
        .expect("https request");
    let (status, body) = decode(resp).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], 1);
    assert_eq!(emu.notifications()[0].message, "over tls");

    // `localhost` is in the certificate too.
    let local = url.replace("127.0.0.1", "localhost");
    let resp = trusting(&ca)
        .post(&local)
        .json(&notify_body("via localhost"))
        .send()
        .await
        .expect("https via localhost");
    assert_eq!(resp.status().as_u16(), 200);
}

#[tokio::test]
async fn tls_client_without_the_ca_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = start(base().tls(dir.path())).await;
    let other_dir = tempfile::tempdir().expect("tempdir");
    let other = start(base().tls(other_dir.path())).await;
    let url = format!("{}im.notify.personal.add", emu.webhook_url(1, SECRET));
    // The system roots do not know it, and neither does another emulator's CA.
    assert!(
        reqwest::Client::new()
            .post(&url)
            .json(&notify_body("x"))
            .send()
            .await
            .is_err()
    );
    assert!(
        trusting(other.ca_pem().expect("ca"))
            .post(&url)
            .json(&notify_body("x"))
            .send()
            .await
            .is_err()
    );
    // Plain http to the TLS port gets no answer either.
    let plain = url.replacen("https://", "http://", 1);
    let got = reqwest::Client::new()
        .post(&plain)
        .json(&notify_body("x"))
        .timeout(Duration::from_secs(20))
        .send()
        .await;
    assert!(got.is_err() || got.is_ok_and(|r| r.status().as_u16() != 200));
    assert!(emu.notifications().is_empty());
}

#[tokio::test]
async fn tls_stalled_handshake_does_not_block_other_clients() {
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = start(base().tls(dir.path())).await;
    // Connections that never start a handshake.
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(
            tokio::net::TcpStream::connect(emu.addr())
                .await
                .expect("connect"),
        );
    }
    let client = trusting(emu.ca_pem().expect("ca"));
    let resp = client
        .post(format!(
            "{}im.notify.personal.add",
            emu.webhook_url(1, SECRET)
        ))
        .json(&notify_body("x"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("served despite idle connections");
    assert_eq!(resp.status().as_u16(), 200);
    drop(idle);
}

#[tokio::test]
async fn tls_faults_reset_the_connection_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = start(base().tls(dir.path())).await;
    let client = trusting(emu.ca_pem().expect("ca"));
    let resp = client
        .post(format!("{}/_emulator/faults", emu.url()))
        .json(&json!([{"method": "*", "kind": "reset_after"}]))
        .send()
        .await
        .expect("faults over https");
    assert_eq!(resp.status().as_u16(), 200);
    let got = client
        .post(format!(
            "{}im.notify.personal.add",
            emu.webhook_url(1, SECRET)
        ))
        .json(&notify_body("x"))
        .send()
        .await;
    assert!(got.is_err(), "{got:?}");
    assert_eq!(emu.notifications().len(), 1);
}

#[test]
fn binary_with_tls_prints_an_https_address_and_writes_the_ca() {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let tls_dir = dir.path().join("certs");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_b24-emulator"))
        .arg("--tls")
        .arg(&tls_dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("stdout");
    let read = std::io::BufReader::new(stdout).read_line(&mut line);
    let _ = child.kill();
    let _ = child.wait();
    read.expect("first line");
    assert!(
        line.starts_with("listening on https://127.0.0.1:"),
        "{line:?}"
    );
    let ca = std::fs::read_to_string(tls_dir.join("ca.pem")).expect("ca.pem");
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
}

#[test]
fn binary_rejects_bad_limit_flags() {
    for args in [
        &["--rate", "0"][..],
        &["--rate=-1"],
        &["--burst", "0.5"],
        &["--operating-budget=-3"],
        &["--plan", "gold"],
        &["--operating-billing", "sometimes"],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_b24-emulator"))
            .args(args)
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        let flag = args[0].split('=').next().unwrap_or_default();
        assert!(err.contains(flag), "{args:?}: {err}");
    }
}
