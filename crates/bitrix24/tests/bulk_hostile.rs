//! `Bulk::on_dispatch`: the caller hears of a batch when it takes its rate-limit slot, just
//! before its request is written, never while it waits; and a refusal keeps it unsent.

use std::sync::Mutex;

use bitrix24::{BulkItem, Client, ItemOutcome, Pacer, RateLimit};
use bitrix24_emulator::{Config, Emulator, Plan};
use futures_util::StreamExt;

mod common;
use common::*;

const SECRET: &str = "dispatch-secret";

fn items(n: u64) -> Vec<BulkItem> {
    (1..=n)
        .map(|row| BulkItem {
            row,
            request: add(2, &format!("row {row}")),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_is_reported_when_it_leaves_not_while_it_waits_for_the_limiter() {
    let emu = Emulator::start(Config::default().webhook(1, SECRET).plan(Plan::Unlimited))
        .await
        .unwrap();
    // 5 requests a second, no burst, 4 batches in flight: three always wait for a slot.
    let client = Client::builder(emu.webhook_url(1, SECRET))
        .retry(fast_retries())
        .pacer(Pacer::local(RateLimit::new(5.0, 1.0).unwrap()))
        .build()
        .unwrap();
    // At each dispatch: what the emulator had stored by then, and the batch's rows.
    let seen: Mutex<Vec<(usize, Vec<u64>)>> = Mutex::new(Vec::new());
    let outcomes: Vec<(u64, ItemOutcome)> = client
        .bulk(futures_util::stream::iter(items(300)))
        .concurrency(4)
        .batch_size(50)
        .on_dispatch(|rows| {
            seen.lock()
                .unwrap()
                .push((emu.notifications().len(), rows.to_vec()));
            Ok(())
        })
        .run()
        .collect()
        .await;
    assert_eq!(outcomes.len(), 300);
    assert!(
        outcomes
            .iter()
            .all(|(_, o)| matches!(o, ItemOutcome::Delivered { .. }))
    );
    let seen = seen.into_inner().unwrap();
    assert_eq!(seen.len(), 6, "one dispatch per batch request");
    assert_eq!(emu.requests().len(), 6);
    for (i, (stored, rows)) in seen.iter().enumerate() {
        // Every earlier batch had reached the portal, and this one not yet: it was reported
        // on leaving, a slot after the one before, not when it was formed.
        assert_eq!(*stored, 50 * i, "dispatch {i}");
        assert_eq!(rows.len(), 50);
    }
    let mut all: Vec<u64> = seen.into_iter().flat_map(|(_, rows)| rows).collect();
    all.sort_unstable();
    assert_eq!(all, (1..=300).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_refused_dispatch_sends_nothing_and_says_not_sent() {
    let emu = Emulator::start(Config::default().webhook(1, SECRET).plan(Plan::Unlimited))
        .await
        .unwrap();
    let client = fast_webhook(&emu, SECRET);
    let outcomes: Vec<(u64, ItemOutcome)> = client
        .bulk(futures_util::stream::iter(items(120)))
        .on_dispatch(|rows| {
            if rows.contains(&60) {
                Err("the journal cannot be written".into())
            } else {
                Ok(())
            }
        })
        .run()
        .collect()
        .await;
    assert_eq!(outcomes.len(), 120);
    let mut refused = 0;
    for (row, outcome) in &outcomes {
        match outcome {
            ItemOutcome::Failed(e) => {
                assert!((51..=100).contains(row), "row {row}");
                assert_eq!(e.code.as_str(), "NOT_SENT");
                assert_eq!(e.status, 0);
                assert_eq!(e.description, "the journal cannot be written");
                refused += 1;
            }
            ItemOutcome::Delivered { .. } => assert!(!(51..=100).contains(row)),
            other => panic!("row {row}: {other:?}"),
        }
    }
    assert_eq!(refused, 50);
    assert_eq!(
        emu.notifications().len(),
        70,
        "the refused batch never left"
    );
    assert_eq!(emu.requests().len(), 2);
}

/// `on_not_run`: after an attempt refused before it ran (QUERY_LIMIT_EXCEEDED), the caller
/// hears its rows are unsent; after one that may have run (a dropped connection), it does not.
#[tokio::test]
async fn a_dispatched_batch_that_certainly_did_not_run_is_reported() {
    for (fault, not_run_expected) in [
        (
            serde_json::json!({"method": "batch", "kind": "status", "status": 503, "error": "QUERY_LIMIT_EXCEEDED"}),
            true,
        ),
        (
            serde_json::json!({"method": "batch", "kind": "reset_after"}),
            false,
        ),
    ] {
        let emu = Emulator::start(Config::default().webhook(1, SECRET).plan(Plan::Unlimited))
            .await
            .unwrap();
        emu.add_faults(&serde_json::json!([fault])).unwrap();
        let client = fast_webhook(&emu, SECRET);
        let events: Mutex<Vec<(&str, Vec<u64>)>> = Mutex::new(Vec::new());
        let outcomes: Vec<(u64, ItemOutcome)> = client
            .bulk(futures_util::stream::iter(items(3)))
            .on_dispatch(|rows| {
                events.lock().unwrap().push(("dispatch", rows.to_vec()));
                Ok(())
            })
            .on_not_run(|rows| events.lock().unwrap().push(("not run", rows.to_vec())))
            .run()
            .collect()
            .await;
        let events = events.into_inner().unwrap();
        let names: Vec<&str> = events.iter().map(|(e, _)| *e).collect();
        if not_run_expected {
            assert_eq!(names, ["dispatch", "not run", "dispatch"], "{fault}");
            assert!(
                outcomes
                    .iter()
                    .all(|(_, o)| matches!(o, ItemOutcome::Delivered { .. }))
            );
        } else {
            assert!(!names.contains(&"not run"), "{fault}: {names:?}");
        }
        assert!(events.iter().all(|(_, rows)| rows == &[1, 2, 3]));
    }
}
