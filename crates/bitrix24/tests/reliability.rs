//! Retries, pacing and outcome reporting against the emulator's limits and injected faults.
//! Every count comes from the emulator: what it stored and the requests it received.

use std::time::Duration;

use bitrix24::{Client, Error, Pacer, RateLimit, RetryPolicy};
use bitrix24_emulator::{Config, Emulator, Plan};
use serde_json::{Value, json};

mod common;
use common::*;

const SECRET: &str = "rel-secret";
const TOKEN: &str = "rel-token";

async fn emulator(config: Config) -> Emulator {
    Emulator::start(config.webhook(1, SECRET).access_token(1, TOKEN))
        .await
        .unwrap()
}

fn webhook(emu: &Emulator) -> Client {
    fast_webhook(emu, SECRET)
}

fn oauth(emu: &Emulator) -> Client {
    fast_oauth(emu, TOKEN)
}

/// `(method, status, error)` of every REST call the emulator received.
async fn requests(emu: &Emulator) -> Vec<(String, u64, Option<String>)> {
    emu.requests()
        .iter()
        .map(|e| {
            (
                e.method.clone().unwrap_or_default(),
                u64::from(e.status),
                e.error.clone(),
            )
        })
        .collect()
}

fn status_fault(method: &str, status: u16, error: &str, count: u32) -> Value {
    json!({"method": method, "kind": "status", "status": status, "error": error, "count": count})
}

#[tokio::test]
async fn query_limit_is_always_retried_and_delivers_once() {
    let emu = emulator(Config::default()).await;
    emu.add_faults(&json!([status_fault(
        "im.notify.personal.add",
        503,
        "QUERY_LIMIT_EXCEEDED",
        2
    )]))
    .expect("fault rules accepted");
    let id = webhook(&emu)
        .notify()
        .personal(1, "untagged write")
        .send()
        .await
        .unwrap();
    assert!(id.is_some());
    assert_eq!(emu.notifications().len(), 1);
    let statuses: Vec<u64> = requests(&emu).await.iter().map(|r| r.1).collect();
    assert_eq!(statuses, vec![503, 503, 200]);
}

#[tokio::test]
async fn a_server_error_on_an_untagged_write_is_reported_as_unknown_not_resent() {
    let emu = emulator(Config::default()).await;
    emu.add_faults(&json!([status_fault(
        "im.notify.personal.add",
        500,
        "INTERNAL_SERVER_ERROR",
        1
    )]))
    .expect("fault rules accepted");
    let err = webhook(&emu)
        .notify()
        .personal(1, "x")
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::OutcomeUnknown { attempts: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("may or may not have taken effect"));
    assert_eq!(requests(&emu).await.len(), 1, "sent once");
}

#[tokio::test]
async fn a_dropped_answer_after_the_write_ran_is_unknown_and_never_duplicated() {
    let emu = emulator(Config::default()).await;
    emu.add_faults(&json!([{"method": "im.notify.personal.add", "kind": "reset_after"}]))
        .expect("fault rules accepted");
    let err = webhook(&emu)
        .notify()
        .personal(1, "x")
        .send()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::OutcomeUnknown { .. }), "{err}");
    assert_eq!(
        emu.notifications().len(),
        1,
        "it ran once and was not sent again"
    );
}

#[tokio::test]
async fn a_tag_on_a_webhook_call_does_not_make_a_resend_safe() {
    let emu = emulator(Config::default()).await;
    emu.add_faults(&json!([status_fault(
        "im.notify.personal.add",
        502,
        "BAD_GATEWAY",
        1
    )]))
    .expect("fault rules accepted");
    let err = webhook(&emu)
        .notify()
        .personal(1, "x")
        .tag("t")
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::OutcomeUnknown { .. }),
        "webhooks drop tags: {err}"
    );
}

#[tokio::test]
async fn tagged_writes_from_an_app_are_retried_and_end_as_one_notification() {
    let emu = emulator(Config::default()).await;
    emu.add_faults(&json!([
        {"method": "im.notify.system.add", "kind": "reset_after"},
        status_fault("im.notify.system.add", 500, "INTERNAL_SERVER_ERROR", 1),
        {"method": "im.notify.system.add", "kind": "reset_before"}
    ]))
    .expect("fault rules accepted");
    let id = oauth(&emu)
        .notify()
        .system(3, "Disk full")
        .tag("disk")
        .send()
        .await
        .unwrap()
        .unwrap();
    let stored = emu.notifications();
    assert_eq!(stored.len(), 1, "the resends replaced the first copy");
    assert_eq!(stored[0].id, id);
    assert_eq!(requests(&emu).await.len(), 4);
}

#[tokio::test]
async fn reads_are_retried_after_server_errors_and_dropped_connections() {
    let emu = emulator(Config::default()).await;
    emu.add_faults(&json!([
        status_fault("im.notify.get", 500, "INTERNAL_SERVER_ERROR", 1),
        {"method": "im.notify.get", "kind": "reset_before"},
        {"method": "im.notify.get", "kind": "reset_after"}
    ]))
    .expect("fault rules accepted");
    let page = webhook(&emu).notify().get().send().await.unwrap();
    assert!(page.notifications.is_empty());
    assert_eq!(requests(&emu).await.len(), 4);
}

#[tokio::test]
async fn refusals_are_not_retried() {
    let emu = emulator(Config::default()).await;
    let err = webhook(&emu)
        .call("im.notify.personal.add", json!({"MESSAGE": "x"}))
        .await
        .unwrap_err();
    assert_eq!(err.api().map(|a| a.code.as_str()), Some("USER_ID_EMPTY"));
    assert_eq!(requests(&emu).await.len(), 1);
}

#[tokio::test]
async fn attempts_stop_at_the_limit() {
    let emu = emulator(Config::default()).await;
    emu.add_faults(&json!([status_fault(
        "*",
        500,
        "INTERNAL_SERVER_ERROR",
        100
    )]))
    .expect("fault rules accepted");
    let client = Client::builder(emu.webhook_url(1, SECRET))
        .retry(RetryPolicy {
            max_attempts: 3,
            ..fast_retries()
        })
        .pacer(Pacer::Off)
        .build()
        .unwrap();
    let err = client.notify().get().send().await.unwrap_err();
    assert_eq!(
        err.api().map(|a| a.code.as_str()),
        Some("INTERNAL_SERVER_ERROR")
    );
    assert_eq!(requests(&emu).await.len(), 3);
}

#[tokio::test]
async fn query_limit_retries_end_at_the_deadline() {
    let emu = emulator(Config::default()).await;
    emu.add_faults(&json!([status_fault(
        "*",
        503,
        "QUERY_LIMIT_EXCEEDED",
        1000
    )]))
    .expect("fault rules accepted");
    let client = Client::builder(emu.webhook_url(1, SECRET))
        .retry(RetryPolicy {
            max_attempts: 2,
            deadline: Duration::from_millis(300),
            ..fast_retries()
        })
        .pacer(Pacer::Off)
        .build()
        .unwrap();
    let err = client.notify().personal(1, "x").send().await.unwrap_err();
    assert_eq!(
        err.api().map(|a| a.code.as_str()),
        Some("QUERY_LIMIT_EXCEEDED")
    );
    assert!(
        requests(&emu).await.len() > 2,
        "not bound by the attempt limit"
    );
    assert!(emu.notifications().is_empty());
}

#[tokio::test]
async fn a_client_paced_like_the_portal_never_trips_it() {
    // Both sides: drain 10/s, burst 5. 30 concurrent sends must all be admitted.
    let emu = emulator(Config::default().rate(10.0).burst(5.0)).await;
    let client = Client::builder(emu.webhook_url(1, SECRET))
        .rate_limit(RateLimit::new(10.0, 5.0).unwrap())
        .retry(RetryPolicy::none())
        .build()
        .unwrap();
    let sends = (0..30).map(|i| {
        let client = client.clone();
        async move { client.notify().personal(1, format!("n{i}")).send().await }
    });
    for result in futures_util::future::join_all(sends).await {
        assert!(result.unwrap().is_some());
    }
    let refused = requests(&emu).await.iter().filter(|r| r.1 == 503).count();
    assert_eq!(refused, 0);
    assert_eq!(emu.notifications().len(), 30);
}

#[tokio::test]
async fn a_bucket_shared_through_a_file_paces_two_clients_as_one() {
    let emu = emulator(Config::default().rate(10.0).burst(5.0)).await;
    let dir = std::env::temp_dir().join(format!("bitrix24-shared-{}", std::process::id()));
    let state = dir.join("bucket");
    let make = || {
        Client::builder(emu.webhook_url(1, SECRET))
            .pacer(Pacer::shared(RateLimit::new(10.0, 5.0).unwrap(), &state))
            .retry(RetryPolicy::none())
            .build()
            .unwrap()
    };
    let (a, b) = (make(), make());
    let sends = (0..20).map(|i| {
        let client = if i % 2 == 0 { a.clone() } else { b.clone() };
        async move { client.notify().personal(1, "x").send().await }
    });
    for result in futures_util::future::join_all(sends).await {
        result.unwrap();
    }
    assert_eq!(
        requests(&emu).await.iter().filter(|r| r.1 == 503).count(),
        0
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_client_that_misjudges_the_limit_adapts_and_loses_nothing() {
    // The client believes in a burst of 20; the portal allows 3. Refused sends fill the
    // client's bucket, which then paces the retries.
    let emu = emulator(Config::default().rate(50.0).burst(3.0)).await;
    let client = Client::builder(emu.webhook_url(1, SECRET))
        .rate_limit(RateLimit::new(50.0, 20.0).unwrap())
        .retry(fast_retries())
        .build()
        .unwrap();
    let sends = (0..10).map(|i| {
        let client = client.clone();
        async move { client.notify().personal(1, format!("n{i}")).send().await }
    });
    for result in futures_util::future::join_all(sends).await {
        assert!(result.unwrap().is_some());
    }
    assert_eq!(
        emu.notifications().len(),
        10,
        "every refused send was retried, none duplicated"
    );
}

#[tokio::test]
async fn an_exhausted_operating_budget_stops_the_method_instead_of_overrunning() {
    // 500 ms of server time per call against a 1 s budget (paused a tenth before it): after
    // two answers the client sees the budget spent and refuses to wait ten minutes past its
    // deadline.
    let emu = emulator(
        Config::default()
            .plan(Plan::Unlimited)
            .operating_budget(1.0)
            .processing_ms(500),
    )
    .await;
    let client = Client::builder(emu.webhook_url(1, SECRET))
        .operating_budget(1.0)
        .retry(fast_retries())
        .build()
        .unwrap();
    client.notify().personal(1, "first").send().await.unwrap();
    client.notify().personal(1, "second").send().await.unwrap();
    let err = client
        .notify()
        .personal(1, "third")
        .send()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Limited { .. }), "{err}");
    assert!(err.to_string().contains("operating-time budget"));
    // Other methods are not held back.
    client.notify().get().send().await.unwrap();
    assert!(
        requests(&emu).await.iter().all(|r| r.1 != 429),
        "the portal never had to refuse"
    );
}
