//! The relay's queue: a SQLite file on this machine (the default), or with
//! `--queue redis://…` a Redis stream that several relays share.
//!
//! Both keep the same promise: an item answered 202 is stored before the answer leaves, and
//! an item is marked `sending` before its batch is written, so that whoever picks it up after
//! a crash can tell "certainly not sent" (sent now) from "may have been sent" (sent again only
//! when a tag over OAuth makes that safe, else dead-lettered) — the journal rules of
//! `notify bulk`. The delivery loop and the HTTP handlers see only [`Queue`].

#[cfg(feature = "redis")]
mod redis;
mod sqlite;

use std::time::{SystemTime, UNIX_EPOCH};

use bitrix24::Request;
use serde_json::{Map, Value, json};

#[cfg(feature = "redis")]
pub use self::redis::RedisQueue;
pub use self::sqlite::SqliteQueue;

/// A notification to queue.
pub struct NewItem {
    pub request: Request,
    /// It has a tag: resending it replaces rather than duplicates (over OAuth).
    pub tagged: bool,
    /// Where it came from: `notify`, `alertmanager/ROUTE`, `grafana/ROUTE`.
    pub source: String,
}

/// What became of an item after a batch.
#[derive(Clone)]
pub enum Settlement {
    Delivered,
    /// Not sent (the portal unreachable, the credentials refused): queued again.
    Again {
        error: String,
        description: String,
    },
    /// Refused by the portal, not created, or outcome unknown: kept for a person to look at.
    Dead {
        reason: &'static str,
        error: String,
        description: String,
    },
}

/// What the queue held when it was opened.
#[derive(Default)]
pub struct Recovery {
    /// Items to deliver, oldest first.
    pub queued: Vec<u64>,
    /// Items that were being sent when the relay stopped, queued again (safe to resend).
    pub resumed: u64,
    /// Items that were being sent and could not be resent safely: dead-lettered now.
    pub unknown: u64,
}

/// Why items were not queued.
#[derive(Debug)]
pub enum Refusal {
    /// The queue holds this many; the items would take it past its limit.
    Full(u64),
    /// It could not store them.
    Failed(String),
}

/// How full the queue is.
pub struct Stats {
    pub pending: u64,
    pub dead: u64,
    /// When the oldest pending item was accepted, in Unix milliseconds.
    pub oldest_ms: Option<i64>,
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A queued item as `/queue` shows it: who, what, from where.
fn shown_item(id: i64, accepted_ms: i64, source: String, method: String, params: &str) -> Value {
    let params: Map<String, Value> = serde_json::from_str(params).unwrap_or_default();
    let mut item = json!({
        "id": id,
        "accepted_ms": accepted_ms,
        "source": source,
        "method": method,
    });
    for (key, name) in [
        ("USER_ID", "user"),
        ("MESSAGE", "text"),
        ("TAG", "tag"),
        ("SUB_TAG", "sub_tag"),
        ("ATTACH", "attach"),
    ] {
        if let Some(v) = params.get(key) {
            item[name] = v.clone();
        }
    }
    item
}

/// The queue a relay runs on (there is one per relay, so its size does not matter).
#[allow(clippy::large_enum_variant)]
pub enum Queue {
    Sqlite(SqliteQueue),
    #[cfg(feature = "redis")]
    Redis(RedisQueue),
}

impl Queue {
    /// Where it is, for the log: a file path, or the store's URL (password masked).
    pub fn shown(&self) -> String {
        match self {
            Queue::Sqlite(q) => q.path().display().to_string(),
            #[cfg(feature = "redis")]
            Queue::Redis(q) => q.shown(),
        }
    }

    /// Whether it hands its items to the delivery loop itself (a shared stream does: any
    /// relay may have queued them), so accepts must not push their ids too.
    pub fn feeds_itself(&self) -> bool {
        match self {
            Queue::Sqlite(_) => false,
            #[cfg(feature = "redis")]
            Queue::Redis(_) => true,
        }
    }

    /// Pending items, as last known.
    pub fn pending(&self) -> u64 {
        match self {
            Queue::Sqlite(q) => q.pending(),
            #[cfg(feature = "redis")]
            Queue::Redis(q) => q.pending(),
        }
    }

    /// Stores `items` and gives their ids, in order; `Full(pending)` when they would take the
    /// queue past `limit`.
    pub async fn enqueue(&self, items: Vec<NewItem>, limit: u64) -> Result<Vec<u64>, Refusal> {
        match self {
            Queue::Sqlite(q) => q.enqueue(items, limit).await,
            #[cfg(feature = "redis")]
            Queue::Redis(q) => q.enqueue(items, limit).await,
        }
    }

    /// Marks items `sending` before their batch is written; blocks until stored, as it runs
    /// in the bulk sender's (synchronous) dispatch hook.
    pub fn mark_sending(&self, ids: &[u64]) -> Result<(), String> {
        match self {
            Queue::Sqlite(q) => q.mark_sending(ids),
            #[cfg(feature = "redis")]
            Queue::Redis(q) => q.mark_sending(ids),
        }
    }

    /// Takes `sending` back after a batch that certainly did not run.
    pub fn mark_not_run(&self, ids: &[u64]) -> Result<(), String> {
        match self {
            Queue::Sqlite(q) => q.mark_not_run(ids),
            #[cfg(feature = "redis")]
            Queue::Redis(q) => q.mark_not_run(ids),
        }
    }

    /// Records a batch's outcomes.
    pub async fn settle(&self, outcomes: Vec<(u64, Settlement)>) -> Result<(), String> {
        match self {
            Queue::Sqlite(q) => q.settle(outcomes).await,
            #[cfg(feature = "redis")]
            Queue::Redis(q) => q.settle(outcomes).await,
        }
    }

    /// Dead letters (the given ones, or all) back in the queue; gives the ids queued.
    pub async fn requeue_dead(&self, ids: Option<Vec<u64>>) -> Result<Vec<u64>, String> {
        match self {
            Queue::Sqlite(q) => q.requeue_dead(ids).await,
            #[cfg(feature = "redis")]
            Queue::Redis(q) => q.dead(ids, true).await,
        }
    }

    /// Dead letters (the given ones, or all) deleted; gives the ids deleted.
    pub async fn purge_dead(&self, ids: Option<Vec<u64>>) -> Result<Vec<u64>, String> {
        match self {
            Queue::Sqlite(q) => q.purge_dead(ids).await,
            #[cfg(feature = "redis")]
            Queue::Redis(q) => q.dead(ids, false).await,
        }
    }

    /// The request of a pending item; `None` once it is settled.
    pub async fn load(&self, id: u64) -> Result<Option<Request>, String> {
        match self {
            Queue::Sqlite(q) => q.load(id),
            #[cfg(feature = "redis")]
            Queue::Redis(q) => q.load(id).await,
        }
    }

    pub async fn stats(&self) -> Result<Stats, String> {
        match self {
            Queue::Sqlite(q) => q.stats(),
            #[cfg(feature = "redis")]
            Queue::Redis(q) => q.stats().await,
        }
    }

    /// Up to `limit` pending and `limit` dead-lettered items, oldest first, for `GET /queue`.
    pub async fn listing(&self, limit: usize) -> Result<Value, String> {
        match self {
            Queue::Sqlite(q) => q.listing(limit),
            #[cfg(feature = "redis")]
            Queue::Redis(q) => q.listing(limit).await,
        }
    }

    /// Lets go of an id the delivery loop found settled already.
    pub async fn release(&self, id: u64) {
        match self {
            // A row's settlement is in the table: nothing is held for it.
            Queue::Sqlite(_) => {
                let _ = id;
            }
            #[cfg(feature = "redis")]
            Queue::Redis(q) => q.release(id).await,
        }
    }

    /// At a stop: a shared queue hands out nothing new (it stays there for the other relays).
    pub fn stop_feeding(&self) {
        match self {
            Queue::Sqlite(_) => {}
            #[cfg(feature = "redis")]
            Queue::Redis(q) => q.stop_feeding(),
        }
    }

    /// Stores what is left and lets go of the queue (for a shared one: other relays may take
    /// over what this one held at once).
    pub fn close(&self) {
        match self {
            Queue::Sqlite(q) => q.close(),
            #[cfg(feature = "redis")]
            Queue::Redis(q) => q.close(),
        }
    }
}

/// A stored item's request.
fn request_from(method: String, params: Map<String, Value>) -> Request {
    params
        .into_iter()
        .fold(Request::new(method), |r, (k, v)| r.param(k, v))
}
