//! The shared queue: with `--queue redis://…` every relay of a portal queues into, and
//! delivers from, one Redis stream with one consumer group.
//!
//! An item is a hash field (`items`, with `order` for the oldest first); its stream entry is
//! what hands it to exactly one relay (`XREADGROUP`), and it stays in that relay's pending
//! list until settled (`XACK`). Every change is one Lua script, so a crash between two
//! commands cannot leave an item half moved. Marks of `sending` go to a set before a batch is
//! written, as the SQLite queue marks its rows.
//!
//! Each relay keeps a heartbeat key alive (5 s). Every second a relay looks for consumers
//! without one: their pending entries are claimed (`XCLAIM`, so two relays never take the same
//! entry) and sorted by the restart rules of a crash — not `sending`: delivered by the
//! claimer; `sending`: sent again only when tagged over OAuth, else dead-lettered as
//! `outcome_unknown` — all in one script. A relay claims only once its own heartbeat has held
//! longer than a heartbeat lasts: after an outage every heartbeat has lapsed, and the live
//! relays must not take each other for dead. And a relay marks a batch `sending` only for
//! entries still its own, so that one taken for dead (cut off from Redis while the others
//! were not) does not send what another took over. Durability of an accepted item is Redis's
//! own (its AOF settings).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bitrix24::{RedisTarget, Request};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::{StreamId, StreamInfoConsumersReply, StreamReadReply};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use super::{NewItem, Refusal, Settlement, Stats, now_ms, request_from, shown_item};
use crate::commands::serve::Once;
use crate::output::{Failure, note};

/// The consumer group every relay of a portal reads in.
const GROUP: &str = "relays";
/// Items one relay holds (read, not yet settled) at most, so that a relay that dies leaves
/// little for the others to claim, and a fast one does not starve the rest.
const HELD: usize = 500;
/// A relay whose heartbeat is older than this is taken for dead.
const HEARTBEAT_TTL_MS: u64 = 5_000;
/// How often a relay renews its heartbeat and looks for dead ones.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// A heartbeat later than this after the one before is a gap: the process may have stalled
/// long enough for the others' to lapse.
const BEAT_GAP: Duration = Duration::from_millis(2_500);
/// How long one read blocks waiting for new entries.
const BLOCK_MS: usize = 1_000;
/// An entry is claimed only after it has been idle this long (never one just handed out).
const CLAIM_IDLE_MS: usize = 1_000;
/// Any one call to Redis, at most.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// A mark made from the dispatch hook, at most: it holds the runtime's thread, and the
/// heartbeat must still be renewed well within its 5 s.
const BLOCKING_TIMEOUT: Duration = Duration::from_secs(2);

/// Stores items: `KEYS` items, order, seq, stream; `ARGV[1]` the limit, then one JSON item
/// each. Answers `{0, held}` when full, else `{1, held, id…}`. Ids count on from the
/// server's clock in milliseconds when the counter is new, so that a Redis that came back
/// empty never gives out an id a relay may still hold.
const ENQUEUE: &str = r"
local held = redis.call('HLEN', KEYS[1])
local n = #ARGV - 1
if held + n > tonumber(ARGV[1]) then return {0, held} end
if redis.call('EXISTS', KEYS[3]) == 0 then
  local t = redis.call('TIME')
  redis.call('SET', KEYS[3], string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)))
end
local out = {1, held + n}
for i = 2, #ARGV do
  local id = redis.call('INCR', KEYS[3])
  redis.call('HSET', KEYS[1], id, ARGV[i])
  redis.call('ZADD', KEYS[2], id, id)
  redis.call('XADD', KEYS[4], '*', 'id', id)
  out[#out + 1] = id
end
return out
";

/// Settles items: `KEYS` items, order, sending, tries, errors, stream, dead, dead_items,
/// dead_info; `ARGV` groups of id, entry, `done`|`again`|`dead`, JSON (last error or dead
/// info). Answers how many left the queue.
const SETTLE: &str = r"
local gone = 0
for i = 1, #ARGV, 4 do
  local id, entry, kind, info = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  redis.call('SREM', KEYS[3], id)
  if kind == 'again' then
    if redis.call('HEXISTS', KEYS[1], id) == 1 then
      redis.call('HINCRBY', KEYS[4], id, 1)
      redis.call('HSET', KEYS[5], id, info)
    end
  else
    local raw = redis.call('HGET', KEYS[1], id)
    if raw then
      gone = gone + 1
      if kind == 'dead' then
        redis.call('HSET', KEYS[8], id, raw)
        redis.call('HSET', KEYS[9], id, info)
        redis.call('ZADD', KEYS[7], id, id)
      end
    end
    redis.call('HDEL', KEYS[1], id)
    redis.call('ZREM', KEYS[2], id)
    redis.call('HDEL', KEYS[4], id)
    redis.call('HDEL', KEYS[5], id)
    if entry ~= '' then
      redis.call('XACK', KEYS[6], 'relays', entry)
      redis.call('XDEL', KEYS[6], entry)
    end
  end
end
return gone
";

/// Takes over what a dead relay held, in one step so that a lost answer cannot leave entries
/// half taken: `KEYS` as [`SETTLE`], then the dead relay's heartbeat key; `ARGV` the dead
/// relay, this relay, the idle time an entry must have, how many at most, `1` when a tagged
/// item may be resent, and the dead info for one that may not. Nothing while the heartbeat is
/// there; a dead relay holding nothing is removed from the group. Answers
/// `{id, entry, queued|resumed|unknown, …}`.
const CLAIM: &str = r"
-- A damaged item is not resent: an error after the XCLAIM would leave entries unsorted.
local function tagged(raw)
  local ok, item = pcall(cjson.decode, raw)
  return ok and type(item) == 'table' and item.tagged == true
end
if redis.call('EXISTS', KEYS[10]) == 1 then return {} end
local pending = redis.call('XPENDING', KEYS[6], 'relays', '-', '+', tonumber(ARGV[4]), ARGV[1])
if #pending == 0 then
  redis.call('XGROUP', 'DELCONSUMER', KEYS[6], 'relays', ARGV[1])
  return {}
end
local entries = {}
for _, p in ipairs(pending) do entries[#entries + 1] = p[1] end
local claimed = redis.call('XCLAIM', KEYS[6], 'relays', ARGV[2], tonumber(ARGV[3]), unpack(entries))
local out = {}
for _, e in ipairs(claimed) do
  -- An entry deleted meanwhile comes back as no table: nothing to take over.
  if type(e) == 'table' then
    local entry, fields = e[1], e[2]
    local id = nil
    if type(fields) == 'table' then
      for i = 1, #fields, 2 do
        if fields[i] == 'id' then id = fields[i + 1] end
      end
    end
    local raw = id and redis.call('HGET', KEYS[1], id)
    local verdict
    if not raw then
      verdict = 'gone'
    elseif redis.call('SISMEMBER', KEYS[3], id) == 0 then
      verdict = 'queued'
    elseif ARGV[5] == '1' and tagged(raw) then
      redis.call('SREM', KEYS[3], id)
      verdict = 'resumed'
    else
      redis.call('HSET', KEYS[8], id, raw)
      redis.call('HSET', KEYS[9], id, ARGV[6])
      redis.call('ZADD', KEYS[7], id, id)
      redis.call('HDEL', KEYS[1], id)
      redis.call('ZREM', KEYS[2], id)
      redis.call('SREM', KEYS[3], id)
      redis.call('HDEL', KEYS[4], id)
      redis.call('HDEL', KEYS[5], id)
      verdict = 'unknown'
    end
    if verdict == 'gone' or verdict == 'unknown' then
      redis.call('XACK', KEYS[6], 'relays', entry)
      redis.call('XDEL', KEYS[6], entry)
    end
    if id and verdict ~= 'gone' then
      out[#out + 1] = id
      out[#out + 1] = entry
      out[#out + 1] = verdict
    end
  end
end
return out
";

/// Marks a batch's items `sending` when every entry is still this relay's (another relay may
/// have taken some over while this one could not reach Redis): `KEYS` stream, sending;
/// `ARGV` this relay, then id and entry pairs. Answers the ids no longer this relay's.
const MARK: &str = r"
local lost = {}
for i = 2, #ARGV, 2 do
  local id, entry = ARGV[i], ARGV[i + 1]
  if entry == '' or #redis.call('XPENDING', KEYS[1], 'relays', entry, entry, 1, ARGV[1]) == 0 then
    lost[#lost + 1] = id
  end
end
-- The batch is not sent when any of it is lost: then nothing of it is marked either.
if #lost == 0 then
  for i = 2, #ARGV, 2 do redis.call('SADD', KEYS[2], ARGV[i]) end
end
return lost
";

/// Dead letters back to the queue or deleted: `KEYS` as [`SETTLE`]; `ARGV[1]` `requeue` or
/// `purge`, `ARGV[2]` `all` or `ids`, then the ids. Answers the ids moved.
const DEAD: &str = r"
local chosen = {}
if ARGV[2] == 'all' then
  chosen = redis.call('ZRANGE', KEYS[7], 0, -1)
else
  for i = 3, #ARGV do
    if redis.call('ZSCORE', KEYS[7], ARGV[i]) then chosen[#chosen + 1] = ARGV[i] end
  end
end
for _, id in ipairs(chosen) do
  if ARGV[1] == 'requeue' then
    redis.call('HSET', KEYS[1], id, redis.call('HGET', KEYS[8], id))
    redis.call('ZADD', KEYS[2], id, id)
    redis.call('HDEL', KEYS[4], id)
    redis.call('HSET', KEYS[5], id, redis.call('HGET', KEYS[9], id))
    redis.call('XADD', KEYS[6], '*', 'id', id)
  end
  redis.call('HDEL', KEYS[8], id)
  redis.call('HDEL', KEYS[9], id)
  redis.call('ZREM', KEYS[7], id)
end
return chosen
";

/// Sizes and the oldest item: `KEYS` as [`SETTLE`]. Answers `{pending, dead, oldest raw}`.
const STATS: &str = r"
local first = redis.call('ZRANGE', KEYS[2], 0, 0)
local oldest = false
if first[1] then oldest = redis.call('HGET', KEYS[1], first[1]) end
return {redis.call('HLEN', KEYS[1]), redis.call('ZCARD', KEYS[7]), oldest}
";

/// The oldest pending and dead items: `KEYS` as [`SETTLE`], `ARGV[1]` how many of each.
/// Answers `{n, (id, raw, sending, tries, error)×n, (id, raw, info)…}`.
const LIST: &str = r"
local limit = tonumber(ARGV[1]) - 1
local out = {}
local pending = redis.call('ZRANGE', KEYS[2], 0, limit)
out[1] = #pending
for _, id in ipairs(pending) do
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', KEYS[1], id)
  out[#out + 1] = redis.call('SISMEMBER', KEYS[3], id)
  out[#out + 1] = redis.call('HGET', KEYS[4], id)
  out[#out + 1] = redis.call('HGET', KEYS[5], id)
end
for _, id in ipairs(redis.call('ZRANGE', KEYS[7], 0, limit)) do
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', KEYS[8], id)
  out[#out + 1] = redis.call('HGET', KEYS[9], id)
end
return out
";

/// The keys of one portal's queue, in the order the scripts take them.
struct Keys {
    items: String,
    order: String,
    seq: String,
    sending: String,
    tries: String,
    errors: String,
    stream: String,
    dead: String,
    dead_items: String,
    dead_info: String,
    prefix: String,
}

impl Keys {
    fn new(prefix: &str) -> Keys {
        let key = |name: &str| format!("{prefix}:{name}");
        Keys {
            items: key("items"),
            order: key("order"),
            seq: key("seq"),
            sending: key("sending"),
            tries: key("tries"),
            errors: key("errors"),
            stream: key("stream"),
            dead: key("dead"),
            dead_items: key("dead_items"),
            dead_info: key("dead_info"),
            prefix: prefix.to_string(),
        }
    }

    fn alive(&self, consumer: &str) -> String {
        format!("{}:alive:{consumer}", self.prefix)
    }

    /// The keys [`SETTLE`] and the scripts after it take.
    fn all<'a>(&'a self, call: &mut redis::ScriptInvocation<'a>) {
        for key in [
            &self.items,
            &self.order,
            &self.sending,
            &self.tries,
            &self.errors,
            &self.stream,
            &self.dead,
            &self.dead_items,
            &self.dead_info,
        ] {
            call.key(key);
        }
    }
}

/// What the background tasks and the calls share.
struct Shared {
    keys: Keys,
    consumer: String,
    resend_tagged: bool,
    /// Items this relay read and has not settled: id → stream entry.
    held: Mutex<HashMap<u64, String>>,
    /// Where the delivery loop takes ids from.
    ids: mpsc::UnboundedSender<u64>,
    /// Items taken over from a dead relay and dead-lettered (for the metrics).
    on_unknown: Box<dyn Fn(u64) + Send + Sync>,
    /// Set at a stop: nothing new is read or taken over.
    draining: AtomicBool,
    /// Set when the queue is closed: the tasks end.
    stopped: AtomicBool,
    /// Since when every heartbeat has been stored in time, and when the last one was.
    beating_since: Mutex<Option<(Instant, Instant)>>,
    lost: Once,
    claim: redis::Script,
}

impl Shared {
    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<u64, String>> {
        lock(&self.held)
    }

    /// Hands a read entry to the delivery loop, once.
    fn hand_over(&self, id: u64, entry: String) {
        if self.held().insert(id, entry).is_none() {
            let _ = self.ids.send(id);
        }
    }
}

pub struct RedisQueue {
    shared: Arc<Shared>,
    shown: String,
    connection: ConnectionManager,
    /// For the marks made from the bulk sender's synchronous hook.
    blocking: Mutex<Option<redis::Connection>>,
    client: redis::Client,
    pending: AtomicU64,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    enqueue: redis::Script,
    mark: redis::Script,
    settle: redis::Script,
    dead: redis::Script,
    stats: redis::Script,
    list: redis::Script,
}

impl RedisQueue {
    /// Connects to `target` and joins the portal's consumer group under `prefix`; items start
    /// arriving on `ids`. Unreachable or refused: an error (exit 1) in one line.
    pub async fn open(
        target: &RedisTarget,
        prefix: &str,
        resend_tagged: bool,
        ids: mpsc::UnboundedSender<u64>,
        on_unknown: Box<dyn Fn(u64) + Send + Sync>,
    ) -> Result<RedisQueue, Failure> {
        let shown = target.shown();
        let unreachable = |why: String| {
            Failure::Local(format!(
                "--queue: {shown} is unreachable: {why}; start it or fix the URL"
            ))
        };
        let client = target.client().map_err(|e| {
            Failure::Usage(format!(
                "--queue: {}",
                crate::settings::transport::message(e)
            ))
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(CALL_TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let connect = |config: ConnectionManagerConfig| {
            let client = client.clone();
            async move {
                tokio::time::timeout(
                    CALL_TIMEOUT * 2,
                    ConnectionManager::new_with_config(client, config),
                )
                .await
                .map_err(|_| "no answer in time".to_string())?
                .map_err(|e| bitrix24::redis_store::describe(&e))
            }
        };
        let mut connection = connect(config.clone()).await.map_err(unreachable)?;
        match create_group(&mut connection, &format!("{prefix}:stream")).await {
            Err(e) if e.code() != Some("BUSYGROUP") => {
                return Err(unreachable(bitrix24::redis_store::describe(&e)));
            }
            _ => {}
        }
        // The feed blocks in XREADGROUP: it gets a connection of its own.
        let feed_connection = connect(config).await.map_err(unreachable)?;
        let consumer = format!("{}-{:08x}", std::process::id(), fastrand::u32(..));
        let shared = Arc::new(Shared {
            keys: Keys::new(prefix),
            consumer,
            resend_tagged,
            held: Mutex::new(HashMap::new()),
            ids,
            on_unknown,
            draining: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            beating_since: Mutex::new(None),
            lost: Once::default(),
            claim: redis::Script::new(CLAIM),
        });
        // The heartbeat exists before the consumer does, so no other relay takes it for dead.
        beat(&shared, &mut connection)
            .await
            .map_err(|e| unreachable(bitrix24::redis_store::describe(&e)))?;
        *lock(&shared.beating_since) = Some((Instant::now(), Instant::now()));
        let pending: u64 = redis::cmd("HLEN")
            .arg(&shared.keys.items)
            .query_async(&mut connection)
            .await
            .map_err(|e| unreachable(bitrix24::redis_store::describe(&e)))?;
        let tasks = vec![
            tokio::spawn(feed(shared.clone(), feed_connection)),
            tokio::spawn(heartbeat(shared.clone(), connection.clone())),
            tokio::spawn(watch(shared.clone(), connection.clone())),
        ];
        Ok(RedisQueue {
            shown: format!("{shown} ({prefix})"),
            shared,
            connection,
            blocking: Mutex::new(None),
            client,
            pending: AtomicU64::new(pending),
            tasks,
            enqueue: redis::Script::new(ENQUEUE),
            mark: redis::Script::new(MARK),
            settle: redis::Script::new(SETTLE),
            dead: redis::Script::new(DEAD),
            stats: redis::Script::new(STATS),
            list: redis::Script::new(LIST),
        })
    }

    pub fn shown(&self) -> String {
        self.shown.clone()
    }

    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }

    pub async fn enqueue(&self, items: Vec<NewItem>, limit: u64) -> Result<Vec<u64>, Refusal> {
        let keys = &self.shared.keys;
        let mut call = self.enqueue.key(&keys.items);
        call.key(&keys.order).key(&keys.seq).key(&keys.stream);
        call.arg(limit);
        let accepted_ms = now_ms();
        for item in &items {
            call.arg(
                json!({
                    "accepted_ms": accepted_ms,
                    "source": item.source,
                    "method": item.request.method(),
                    "params": item.request.params(),
                    "tagged": item.tagged,
                })
                .to_string(),
            );
        }
        let answer: Vec<u64> = self
            .run(call)
            .await
            .map_err(|e| Refusal::Failed(format!("queue: {e}")))?;
        match answer[..] {
            [0, held] => {
                self.pending.store(held, Ordering::Relaxed);
                Err(Refusal::Full(held))
            }
            [1, held, ref ids @ ..] if ids.len() == items.len() => {
                self.pending.store(held, Ordering::Relaxed);
                Ok(ids.to_vec())
            }
            _ => Err(Refusal::Failed(
                "queue: Redis answered the enqueue script with something else".into(),
            )),
        }
    }

    pub fn mark_sending(&self, ids: &[u64]) -> Result<(), String> {
        let mut call = self.mark.prepare_invoke();
        call.key(&self.shared.keys.stream)
            .key(&self.shared.keys.sending)
            .arg(&self.shared.consumer);
        {
            let held = self.shared.held();
            for id in ids {
                call.arg(id).arg(held.get(id).map_or("", String::as_str));
            }
        }
        let lost: Vec<u64> = self.blocking(|connection| call.invoke(connection))?;
        if lost.is_empty() {
            return Ok(());
        }
        // Another relay has them now: this one lets go of them and sends none of this batch.
        let mut held = self.shared.held();
        for id in &lost {
            held.remove(id);
        }
        Err(format!(
            "queue: {} items of this batch were taken over by another relay; they are sent there",
            lost.len()
        ))
    }

    pub fn mark_not_run(&self, ids: &[u64]) -> Result<(), String> {
        let held: Vec<u64> = {
            let held = self.shared.held();
            ids.iter()
                .copied()
                .filter(|id| held.contains_key(id))
                .collect()
        };
        if held.is_empty() {
            return Ok(());
        }
        self.blocking(|connection| {
            redis::cmd("SREM")
                .arg(&self.shared.keys.sending)
                .arg(&held)
                .query::<()>(connection)
        })
    }

    pub async fn settle(&self, outcomes: Vec<(u64, Settlement)>) -> Result<(), String> {
        // Items this relay no longer holds are another relay's to settle.
        let (outcomes, entries): (Vec<_>, Vec<String>) = {
            let held = self.shared.held();
            outcomes
                .into_iter()
                .filter_map(|(id, s)| Some(((id, s), held.get(&id)?.clone())))
                .unzip()
        };
        if outcomes.is_empty() {
            return Ok(());
        }
        let mut call = self.settle.prepare_invoke();
        self.shared.keys.all(&mut call);
        for ((id, settlement), entry) in outcomes.iter().zip(&entries) {
            let (kind, info) = match settlement {
                Settlement::Delivered => ("done", String::new()),
                Settlement::Again { error, description } => (
                    "again",
                    json!({"error": error, "description": description}).to_string(),
                ),
                Settlement::Dead {
                    reason,
                    error,
                    description,
                } => ("dead", dead_info(reason, error, description)),
            };
            call.arg(id).arg(entry).arg(kind).arg(info);
        }
        let gone: u64 = self.run(call).await.map_err(|e| format!("queue: {e}"))?;
        let mut held = self.shared.held();
        for (id, settlement) in &outcomes {
            if !matches!(settlement, Settlement::Again { .. }) {
                held.remove(id);
            }
        }
        let _ = self
            .pending
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| {
                Some(p.saturating_sub(gone))
            });
        Ok(())
    }

    /// Dead letters back in the queue (`requeue`) or deleted.
    pub async fn dead(&self, ids: Option<Vec<u64>>, requeue: bool) -> Result<Vec<u64>, String> {
        let mut call = self.dead.prepare_invoke();
        self.shared.keys.all(&mut call);
        call.arg(if requeue { "requeue" } else { "purge" });
        match &ids {
            None => call.arg("all"),
            Some(ids) => call.arg("ids").arg(ids),
        };
        let moved: Vec<u64> = self.run(call).await.map_err(|e| format!("queue: {e}"))?;
        if requeue {
            self.pending
                .fetch_add(moved.len() as u64, Ordering::Relaxed);
        }
        Ok(moved)
    }

    pub async fn load(&self, id: u64) -> Result<Option<Request>, String> {
        if !self.shared.held().contains_key(&id) {
            return Ok(None);
        }
        let mut connection = self.connection.clone();
        let raw: Option<String> = tokio::time::timeout(
            CALL_TIMEOUT,
            redis::cmd("HGET")
                .arg(&self.shared.keys.items)
                .arg(id)
                .query_async(&mut connection),
        )
        .await
        .map_err(|_| format!("queue: cannot read item {id}: no answer in time"))?
        .map_err(|e| {
            format!(
                "queue: cannot read item {id}: {}",
                bitrix24::redis_store::describe(&e)
            )
        })?;
        let Some(raw) = raw else {
            return Ok(None);
        };
        let item = parse_item(&raw).ok_or_else(|| format!("queue: item {id} is damaged"))?;
        Ok(Some(request_from(item.method, item.params)))
    }

    pub async fn stats(&self) -> Result<Stats, String> {
        let mut call = self.stats.prepare_invoke();
        self.shared.keys.all(&mut call);
        let (pending, dead, oldest): (u64, u64, Option<String>) = self
            .run(call)
            .await
            .map_err(|e| format!("queue: cannot read its size: {e}"))?;
        self.pending.store(pending, Ordering::Relaxed);
        Ok(Stats {
            pending,
            dead,
            oldest_ms: oldest
                .as_deref()
                .and_then(parse_item)
                .map(|i| i.accepted_ms),
        })
    }

    pub async fn listing(&self, limit: usize) -> Result<Value, String> {
        let mut call = self.list.prepare_invoke();
        self.shared.keys.all(&mut call);
        call.arg(limit.max(1));
        let values: Vec<Option<String>> = self
            .run(call)
            .await
            .map_err(|e| format!("queue: cannot list it: {e}"))?;
        let mut values = values.into_iter().map(Option::unwrap_or_default);
        let mut next = || values.next();
        let count: usize = next().and_then(|n| n.parse().ok()).unwrap_or(0);
        let mut pending = Vec::new();
        for _ in 0..count {
            let (Some(id), Some(raw), Some(sending), Some(tries), Some(error)) =
                (next(), next(), next(), next(), next())
            else {
                break;
            };
            let Some(mut item) = shown(&id, &raw) else {
                continue;
            };
            item["state"] = json!(if sending == "1" { "sending" } else { "queued" });
            item["attempts"] = json!(tries.parse::<u64>().unwrap_or(0));
            if let Ok(error) = serde_json::from_str::<Value>(&error) {
                item["last_error"] = error;
            }
            pending.push(item);
        }
        let mut dead = Vec::new();
        while let (Some(id), Some(raw), Some(info)) = (next(), next(), next()) {
            let Some(mut item) = shown(&id, &raw) else {
                continue;
            };
            if let Ok(Value::Object(info)) = serde_json::from_str::<Value>(&info) {
                for (k, v) in info {
                    item[k] = v;
                }
            }
            dead.push(item);
        }
        Ok(json!({"pending": pending, "dead_letters": dead}))
    }

    /// Lets go of an item the delivery loop found settled already (read again after its
    /// outcome was recorded): its entry is acknowledged, its place among the held freed.
    pub async fn release(&self, id: u64) {
        let entry = self.shared.held().remove(&id);
        if let Some(entry) = entry {
            let mut connection = self.connection.clone();
            let _ = tokio::time::timeout(
                CALL_TIMEOUT,
                let_go(&mut connection, &self.shared.keys.stream, &[entry]),
            )
            .await;
        }
    }

    /// At a stop: nothing new is read or taken over; what is held is finished or let go of
    /// at [`RedisQueue::close`].
    pub fn stop_feeding(&self) {
        self.shared.draining.store(true, Ordering::Relaxed);
    }

    /// Stops reading and drops this relay's heartbeat, so that what it still holds is taken
    /// over by another relay (or by the next start) at once.
    pub fn close(&self) {
        if self.shared.stopped.swap(true, Ordering::Relaxed) {
            return;
        }
        for task in &self.tasks {
            task.abort();
        }
        let alive = self.shared.keys.alive(&self.shared.consumer);
        let _ = self.blocking(|connection| redis::cmd("DEL").arg(&alive).query::<()>(connection));
    }

    /// One script call, bounded in time.
    async fn run<T: redis::FromRedisValue>(
        &self,
        call: redis::ScriptInvocation<'_>,
    ) -> Result<T, String> {
        let mut connection = self.connection.clone();
        match tokio::time::timeout(CALL_TIMEOUT, call.invoke_async(&mut connection)).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => Err(bitrix24::redis_store::describe(&e)),
            Err(_) => Err("Redis gave no answer in time".into()),
        }
    }

    /// A call on the blocking connection, (re)connected as needed. It holds the runtime's
    /// thread for one round trip (at most [`BLOCKING_TIMEOUT`] when Redis is lost), as the
    /// dispatch hook must not return before the mark is stored.
    fn blocking<T>(
        &self,
        call: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, String> {
        let mut slot = lock(&self.blocking);
        let problem =
            |e: &redis::RedisError| format!("queue: {}", bitrix24::redis_store::describe(e));
        if slot.is_none() {
            let connection = self
                .client
                .get_connection_with_timeout(BLOCKING_TIMEOUT)
                .map_err(|e| problem(&e))?;
            connection
                .set_read_timeout(Some(BLOCKING_TIMEOUT))
                .and_then(|()| connection.set_write_timeout(Some(BLOCKING_TIMEOUT)))
                .map_err(|e| problem(&e))?;
            *slot = Some(connection);
        }
        let connection = slot.as_mut().expect("connected above");
        call(connection).map_err(|e| {
            // The next call starts on a fresh connection.
            *slot = None;
            problem(&e)
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Drop for RedisQueue {
    fn drop(&mut self) {
        self.close();
    }
}

struct StoredItem {
    accepted_ms: i64,
    method: String,
    params: Map<String, Value>,
}

fn parse_item(raw: &str) -> Option<StoredItem> {
    let Value::Object(mut item) = serde_json::from_str(raw).ok()? else {
        return None;
    };
    let Some(Value::Object(params)) = item.remove("params") else {
        return None;
    };
    Some(StoredItem {
        accepted_ms: item.get("accepted_ms")?.as_i64()?,
        method: item.get("method")?.as_str()?.to_string(),
        params,
    })
}

/// An item as `/queue` shows it.
fn shown(id: &str, raw: &str) -> Option<Value> {
    let item: Value = serde_json::from_str(raw).ok()?;
    Some(shown_item(
        id.parse().ok()?,
        item["accepted_ms"].as_i64()?,
        item["source"].as_str()?.to_string(),
        item["method"].as_str()?.to_string(),
        &item["params"].to_string(),
    ))
}

fn dead_info(reason: &str, error: &str, description: &str) -> String {
    json!({
        "dead_ms": now_ms(),
        "reason": reason,
        "error": error,
        "description": description,
    })
    .to_string()
}

/// Renews this relay's heartbeat.
async fn beat(shared: &Shared, connection: &mut ConnectionManager) -> redis::RedisResult<()> {
    redis::cmd("SET")
        .arg(shared.keys.alive(&shared.consumer))
        .arg(1)
        .arg("PX")
        .arg(HEARTBEAT_TTL_MS)
        .query_async(connection)
        .await
}

/// The consumer group, from the stream's start (entries queued before it existed count).
async fn create_group(connection: &mut ConnectionManager, stream: &str) -> redis::RedisResult<()> {
    redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg(GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(connection)
        .await
}

/// Acknowledges and deletes entries that are no item's: nobody is to hold them.
async fn let_go(
    connection: &mut ConnectionManager,
    stream: &str,
    entries: &[String],
) -> redis::RedisResult<()> {
    redis::pipe()
        .cmd("XACK")
        .arg(stream)
        .arg(GROUP)
        .arg(entries)
        .cmd("XDEL")
        .arg(stream)
        .arg(entries)
        .query_async(connection)
        .await
}

/// The item id of a stream entry.
fn entry_item(entry: &StreamId) -> Option<u64> {
    match entry.map.get("id")? {
        redis::Value::BulkString(bytes) => std::str::from_utf8(bytes).ok()?.parse().ok(),
        redis::Value::SimpleString(s) => s.parse().ok(),
        redis::Value::Int(n) => u64::try_from(*n).ok(),
        _ => None,
    }
}

/// Reads new entries for this relay and hands them to the delivery loop, up to [`HELD`]
/// at a time, until the relay stops.
async fn feed(shared: Arc<Shared>, mut connection: ConnectionManager) {
    while !shared.draining.load(Ordering::Relaxed) {
        let room = HELD.saturating_sub(shared.held().len()).min(100);
        if room == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let read: redis::RedisResult<Option<StreamReadReply>> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(&shared.consumer)
            .arg("COUNT")
            .arg(room)
            .arg("BLOCK")
            .arg(BLOCK_MS)
            .arg("STREAMS")
            .arg(&shared.keys.stream)
            .arg(">")
            .query_async(&mut connection)
            .await;
        match read {
            Ok(reply) => {
                shared
                    .lost
                    .clear("oint serve: the Redis queue answers again");
                hand_over_all(&shared, &mut connection, reply).await;
            }
            Err(e) => {
                if e.code() == Some("NOGROUP") {
                    // A Redis that came back empty: the group is made again, and what this
                    // relay held is gone with it (its ids will be given out again).
                    shared.held().clear();
                    let _ = create_group(&mut connection, &shared.keys.stream).await;
                }
                shared.lost.say(&format!(
                    "the Redis queue is unreachable ({}); delivery goes on with what this relay holds, accepts answer 503 until it is back",
                    bitrix24::redis_store::describe(&e)
                ));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Hands the entries of a read to the delivery loop (each once); entries that are no item's
/// are let go of.
async fn hand_over_all(
    shared: &Shared,
    connection: &mut ConnectionManager,
    reply: Option<StreamReadReply>,
) {
    let entries = reply
        .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
        .unwrap_or_default();
    hand_over_entries(shared, connection, entries).await;
}

async fn hand_over_entries(
    shared: &Shared,
    connection: &mut ConnectionManager,
    entries: Vec<StreamId>,
) {
    let mut foreign = Vec::new();
    for entry in entries {
        match entry_item(&entry) {
            Some(id) => shared.hand_over(id, entry.id),
            None => foreign.push(entry.id),
        }
    }
    if !foreign.is_empty() {
        let _ = let_go(connection, &shared.keys.stream, &foreign).await;
    }
}

/// Renews this relay's heartbeat every second, and remembers since when it has held.
async fn heartbeat(shared: Arc<Shared>, mut connection: ConnectionManager) {
    let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !shared.stopped.load(Ordering::Relaxed) {
        tick.tick().await;
        let stored = tokio::time::timeout(CALL_TIMEOUT, beat(&shared, &mut connection)).await;
        let now = Instant::now();
        let mut since = lock(&shared.beating_since);
        *since = match (stored, *since) {
            // A late beat (the process stalled, the network was slow) counts as a gap.
            (Ok(Ok(())), Some((from, last))) if now - last < BEAT_GAP => Some((from, now)),
            (Ok(Ok(())), _) => Some((now, now)),
            _ => None,
        };
    }
}

/// Every second: what this relay holds in Redis but has not been handed (a read whose
/// answer was lost) is handed over, and what dead relays held is taken over.
async fn watch(shared: Arc<Shared>, mut connection: ConnectionManager) {
    let claim_failed = Once::default();
    let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !shared.stopped.load(Ordering::Relaxed) {
        tick.tick().await;
        if shared.draining.load(Ordering::Relaxed) {
            continue;
        }
        if let Err(e) = adopt_own(&shared, &mut connection).await {
            tracing::debug!(target: "oint", error = %e, "re-reading held entries failed");
        }
        // After an outage every heartbeat has lapsed, the live relays' too: nobody is taken
        // for dead until this relay's own heartbeat has held longer than one lapses in.
        let settled = lock(&shared.beating_since).is_some_and(|(from, last)| {
            from.elapsed() > Duration::from_millis(HEARTBEAT_TTL_MS + 1_000)
                && last.elapsed() < BEAT_GAP
        });
        if settled {
            match claim_dead(&shared, &mut connection).await {
                Ok(()) => claim_failed.clear("oint serve: dead relays' items are taken over again"),
                Err(e) => claim_failed.say(&format!(
                    "cannot take over what stopped relays held ({}); tried again every second",
                    bitrix24::redis_store::describe(&e)
                )),
            }
        }
    }
}

/// This relay's own pending entries, read again from the start, page by page; those already
/// held are skipped by [`Shared::hand_over`].
async fn adopt_own(shared: &Shared, connection: &mut ConnectionManager) -> redis::RedisResult<()> {
    let mut from = "0".to_string();
    loop {
        let reply: Option<StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(&shared.consumer)
            .arg("COUNT")
            .arg(HELD)
            .arg("STREAMS")
            .arg(&shared.keys.stream)
            .arg(&from)
            .query_async(connection)
            .await?;
        let page: Vec<StreamId> = reply
            .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
            .unwrap_or_default();
        let full = page.len() == HELD;
        let Some(last) = page.last().map(|e| e.id.clone()) else {
            return Ok(());
        };
        hand_over_entries(shared, connection, page).await;
        if !full {
            return Ok(());
        }
        from = last;
    }
}

/// One pass over the group's consumers: what those without a heartbeat held is taken over
/// by [`CLAIM`] and handed to the delivery loop.
async fn claim_dead(shared: &Shared, connection: &mut ConnectionManager) -> redis::RedisResult<()> {
    let keys = &shared.keys;
    let consumers: StreamInfoConsumersReply = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(&keys.stream)
        .arg(GROUP)
        .query_async(connection)
        .await?;
    for consumer in consumers.consumers {
        if consumer.name == shared.consumer {
            continue;
        }
        let alive = keys.alive(&consumer.name);
        let mut call = shared.claim.prepare_invoke();
        keys.all(&mut call);
        call.key(&alive)
            .arg(&consumer.name)
            .arg(&shared.consumer)
            .arg(CLAIM_IDLE_MS)
            .arg(HELD)
            .arg(if shared.resend_tagged { "1" } else { "0" })
            .arg(dead_info(
                "outcome_unknown",
                "OUTCOME_UNKNOWN",
                "the relay holding it stopped while it was being sent; it may have reached the portal, and sending it again could duplicate it",
            ));
        let taken: Vec<String> = call.invoke_async(connection).await?;
        let (mut queued, mut resumed, mut unknown) = (0u64, 0u64, 0u64);
        for triple in taken.chunks_exact(3) {
            let [id, entry, verdict] = triple else {
                continue;
            };
            match verdict.as_str() {
                "unknown" => {
                    unknown += 1;
                    continue;
                }
                "resumed" => resumed += 1,
                _ => queued += 1,
            }
            if let Ok(id) = id.parse() {
                shared.hand_over(id, entry.clone());
            }
        }
        if queued + resumed + unknown > 0 {
            (shared.on_unknown)(unknown);
            note(&format!(
                "oint serve: took over {} items from relay {} that stopped ({queued} queued, {resumed} resumed after an interrupted send, {unknown} dead-lettered: they were being sent and may have arrived)",
                queued + resumed + unknown,
                consumer.name
            ));
        }
    }
    Ok(())
}
