//! The delivery loop: queued ids in, batches of 50 out through the library's bulk sender, at
//! the pace of the client's (shared) rate limiter and operating-time budget.
//!
//! Ids arrive on a channel (from accepts, from the queue at start, and from items put back
//! after a batch that was not sent); each is read from the queue only when the sender has room
//! for it, so memory holds ids, not notifications. The sender's dispatch hook marks a batch's
//! items `sending` on disk before the request is written, which is what lets a restart after
//! `kill -9` tell "may have been sent" from "certainly not".

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bitrix24::{BulkItem, Client, ItemOutcome};
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};

use super::metrics::Metrics;
use super::queue::{Queue, Settlement};
use crate::output::note;

/// Batch-level refusals (other than credentials and "not sent") before an item is given up.
const MAX_REFUSALS: u32 = 3;
/// How long an item that could not be read waits before it is read again.
const LOAD_RETRY: Duration = Duration::from_secs(1);
/// The longest pause after batches that were not sent.
const MAX_PAUSE: Duration = Duration::from_secs(60);

pub struct Delivery {
    pub queue: Arc<Queue>,
    pub metrics: Arc<Metrics>,
    pub ids: mpsc::UnboundedReceiver<u64>,
    /// For items put back after a pause.
    pub again: mpsc::UnboundedSender<u64>,
    pub stop: watch::Receiver<bool>,
    pub concurrency: usize,
}

/// Delivers until `stop` turns true, then finishes the batches in flight and returns.
pub async fn run(client: &Client, delivery: Delivery) {
    let Delivery {
        queue,
        metrics,
        ids,
        again,
        stop,
        concurrency,
    } = delivery;
    let stop_dispatch = stop.clone();
    let items = {
        let queue = queue.clone();
        let again = again.clone();
        let unreadable = Arc::new(super::Once::default());
        futures_util::stream::unfold((ids, stop), move |(mut ids, mut stop)| {
            let queue = queue.clone();
            let again = again.clone();
            let unreadable = unreadable.clone();
            async move {
                loop {
                    if *stop.borrow() {
                        return None;
                    }
                    let id = tokio::select! {
                        id = ids.recv() => id?,
                        _ = stop.changed() => continue,
                    };
                    match queue.load(id).await {
                        Ok(Some(request)) => {
                            unreadable.clear("oint serve: queued items are readable again");
                            return Some((BulkItem { row: id, request }, (ids, stop)));
                        }
                        // Settled meanwhile (a duplicate id on the channel), or another
                        // relay's now: nothing to send.
                        Ok(None) => {
                            queue.release(id).await;
                            continue;
                        }
                        // Unreadable for now (a lost Redis): tried again, never dropped.
                        Err(e) => {
                            unreadable.say(&format!(
                                "{e}; the item stays queued and is read again every second"
                            ));
                            let again = again.clone();
                            tokio::spawn(async move {
                                tokio::time::sleep(LOAD_RETRY).await;
                                let _ = again.send(id);
                            });
                            continue;
                        }
                    }
                }
            }
        })
    };
    // After a stop, batches that have not left stay queued: only those written are waited for.
    let on_dispatch = {
        let queue = queue.clone();
        let metrics = metrics.clone();
        let stop = stop_dispatch;
        move |rows: &[u64]| {
            if *stop.borrow() {
                return Err(STOPPING.to_string());
            }
            metrics.batches.inc();
            queue.mark_sending(rows)
        }
    };
    let on_not_run = {
        let queue = queue.clone();
        move |rows: &[u64]| {
            // Best effort: if it fails the rows stay `sending`, which only errs on the safe side.
            if let Err(e) = queue.mark_not_run(rows) {
                note(&format!("oint serve: {e}"));
            }
        }
    };
    let outcomes = client
        .bulk(Box::pin(items))
        .concurrency(concurrency)
        .on_dispatch(on_dispatch)
        .on_not_run(on_not_run)
        .run()
        .ready_chunks(64);
    let mut outcomes = std::pin::pin!(outcomes);
    let mut refusals: HashMap<u64, u32> = HashMap::new();
    let mut pause = Pauses::default();
    while let Some(chunk) = outcomes.next().await {
        let mut put_back = Vec::new();
        let mut not_sent: Option<(String, String)> = None;
        let mut settled = Vec::with_capacity(chunk.len());
        for (id, outcome) in chunk {
            let settlement = match outcome {
                ItemOutcome::Delivered { .. } => {
                    metrics.delivered.inc();
                    pause.success();
                    refusals.remove(&id);
                    Settlement::Delivered
                }
                ItemOutcome::NotCreated => {
                    metrics.failed.inc();
                    Settlement::Dead {
                        reason: "not_created",
                        error: "NOT_CREATED".into(),
                        description:
                            "the portal answered false: the recipient does not exist or is inactive"
                                .into(),
                    }
                }
                // Refused inside the batch before it ran (a limit, past the retries): again.
                ItemOutcome::Failed(api)
                    if api.status == 200
                        && matches!(
                            api.code,
                            bitrix24::ErrorCode::QueryLimitExceeded
                                | bitrix24::ErrorCode::OperationTimeLimit
                        ) =>
                {
                    not_sent.get_or_insert_with(|| (api.code.to_string(), api.description.clone()));
                    put_back.push(id);
                    Settlement::Again {
                        error: api.code.to_string(),
                        description: api.description,
                    }
                }
                // The portal judged this item itself, inside the batch's answer: final.
                ItemOutcome::Failed(api) if api.status == 200 => {
                    metrics.failed.inc();
                    Settlement::Dead {
                        reason: "failed",
                        error: api.code.to_string(),
                        description: api.description,
                    }
                }
                // The whole batch was refused or never left: sent again after a pause, except
                // after repeated refusals that waiting does not cure.
                ItemOutcome::Failed(api) => {
                    let curable = api.status == 0 || api.code.is_auth() || api.status >= 500;
                    let count = refusals.entry(id).or_default();
                    *count += 1;
                    if curable || *count < MAX_REFUSALS {
                        not_sent
                            .get_or_insert_with(|| (api.code.to_string(), api.description.clone()));
                        put_back.push(id);
                        Settlement::Again {
                            error: api.code.to_string(),
                            description: api.description,
                        }
                    } else {
                        refusals.remove(&id);
                        metrics.failed.inc();
                        Settlement::Dead {
                            reason: "failed",
                            error: api.code.to_string(),
                            description: api.description,
                        }
                    }
                }
                ItemOutcome::Unknown => {
                    metrics.unknown.inc();
                    Settlement::Dead {
                        reason: "outcome_unknown",
                        error: "OUTCOME_UNKNOWN".into(),
                        description: "the batch may have reached the portal but its answer was lost; not resent, as that could duplicate it".into(),
                    }
                }
            };
            settled.push((id, settlement));
        }
        if let Some((code, description)) = &not_sent
            && description != STOPPING
        {
            pause.failure(code, description);
        }
        settle(&queue, settled).await;
        if !put_back.is_empty() {
            let wait = pause.current();
            let again = again.clone();
            tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                for id in put_back {
                    // Closed at shutdown: the item stays queued on disk for the next start.
                    let _ = again.send(id);
                }
            });
        }
    }
}

/// Why a batch was held back at a stop.
const STOPPING: &str = "the relay is stopping; it stays queued";

/// Records outcomes, however long the queue takes to accept them again (a full disk): until
/// then the items are neither resent nor forgotten.
async fn settle(queue: &Queue, settled: Vec<(u64, Settlement)>) {
    let mut wait = Duration::from_millis(500);
    let mut said = false;
    let mut settled = Some(settled);
    while let Some(outcomes) = settled.take() {
        let retry = clone_settlements(&outcomes);
        match queue.settle(outcomes).await {
            Ok(()) => {
                if said {
                    note("oint serve: the queue records outcomes again");
                }
            }
            Err(e) => {
                if !said {
                    note(&format!(
                        "oint serve: {e}; delivery waits until the outcomes can be recorded"
                    ));
                    said = true;
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(MAX_PAUSE);
                settled = Some(retry);
            }
        }
    }
}

fn clone_settlements(settled: &[(u64, Settlement)]) -> Vec<(u64, Settlement)> {
    settled.iter().map(|(id, s)| (*id, s.clone())).collect()
}

/// How long items that were not sent wait before they go again: doubling from one second up
/// to a minute while batches keep failing, said once per stretch of failures.
#[derive(Default)]
struct Pauses {
    failures: u32,
}

impl Pauses {
    fn failure(&mut self, code: &str, description: &str) {
        if self.failures == 0 {
            note(&format!(
                "oint serve: delivery paused: {code}: {description}; the items stay queued and are sent again"
            ));
        }
        self.failures = self.failures.saturating_add(1);
    }

    fn success(&mut self) {
        if self.failures > 0 {
            note("oint serve: delivery resumed");
        }
        self.failures = 0;
    }

    fn current(&self) -> Duration {
        let doubled = 1u64 << self.failures.saturating_sub(1).min(6);
        Duration::from_secs(doubled).min(MAX_PAUSE)
    }
}
