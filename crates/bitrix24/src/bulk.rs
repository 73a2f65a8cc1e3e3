//! Many notifications through `batch`, with one outcome per item and nothing lost.
//!
//! [`Client::bulk`] reads items lazily from a stream, packs up to `batch_size` of them into one
//! `batch` call and keeps up to `concurrency` batches in flight; the client's rate limiter
//! paces them (a batch is one request). Only the items of the batches in flight, one batch
//! being filled and one batch's outcomes are held at a time, so memory does not grow with the
//! input. A partly filled batch goes out when the input pauses for a moment or ends.
//!
//! Every item yields exactly one [`ItemOutcome`]:
//!
//! | what happened | outcome |
//! |---|---|
//! | the command answered an id | [`ItemOutcome::Delivered`] |
//! | the command answered `false` (missing or inactive recipient) | [`ItemOutcome::NotCreated`] |
//! | the command's own `result_error` | [`ItemOutcome::Failed`] with it |
//! | the command's `result_error` is `QUERY_LIMIT_EXCEEDED` or `OPERATION_TIME_LIMIT` (it did not run), or it is missing from the answer | sent again in a later batch, after a backoff, up to the retry policy's `max_attempts` batches; then `Failed` (or `Unknown` when missing) |
//! | the batch may have run but no answer was read ([`Error::OutcomeUnknown`], a timeout or dropped connection, a garbled 2xx or 5xx) | `Unknown`, except items that may run twice (a tagged notification from an OAuth app): those are sent again, bounded as above, then `Unknown` |
//! | the portal refused the whole batch ([`Error::Api`]: auth, scope, a limit past the deadline) | `Failed` with that error, for every item |
//! | the batch was certainly not sent (no connection, a limit wait past the deadline, the token store failed) | `Failed` with code `NOT_SENT`, HTTP status 0 and the client's message |
//! | a 3xx/4xx answer that is not a Bitrix24 answer | `Failed` with code `UNREADABLE_ANSWER` and that status |
//!
//! The codes with status 0 or an unreadable answer are made here, not by the portal; their
//! description is the client error's message, which never holds a secret.
//!
//! [`Bulk::on_dispatch`] tells the caller the moment a batch leaves: its rate-limit slot is
//! taken and its request is about to be written. Batches that are only waiting for the
//! limiter have not left, so a journal that records `sending` there knows, after a crash,
//! which rows may have reached the portal and which certainly did not.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, Stream, StreamExt};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::answer::lenient_u64;
use crate::batch::{CommandResult, MAX_BATCH};
use crate::client::{Client, Request, safety_of};
use crate::error::{ApiError, Error, ErrorCode};
use crate::retry::Safety;

/// Default number of batches in flight at once.
pub const DEFAULT_CONCURRENCY: usize = 4;

/// How long a partly filled batch waits for more input before it goes out anyway.
const LINGER: Duration = Duration::from_millis(20);

/// One notification to send: a caller's row number and its add request
/// (`im.notify.personal.add`, `im.notify.system.add` or `im.notify`).
#[derive(Debug, Clone)]
pub struct BulkItem {
    /// The caller's number for this item, given back with its outcome.
    pub row: u64,
    /// The notification add, e.g. from [`AddNotification::to_request`](crate::AddNotification::to_request).
    pub request: Request,
}

/// What became of one item.
#[derive(Debug, Clone)]
pub enum ItemOutcome {
    /// The portal created the notification.
    Delivered {
        /// Its id.
        id: u64,
    },
    /// The portal answered `false`: the recipient does not exist or is inactive.
    NotCreated,
    /// The portal refused this command (or the whole batch; see the module docs).
    Failed(ApiError),
    /// The batch may have run but could not be confirmed, and sending it again was unsafe.
    Unknown,
}

/// The caller's hook for a batch about to be written: its rows, in batch order.
type OnDispatch<'c> = Arc<dyn Fn(&[u64]) -> Result<(), String> + Send + Sync + 'c>;
/// The caller's hook for a dispatched batch that certainly did not run.
type OnNotRun<'c> = Arc<dyn Fn(&[u64]) + Send + Sync + 'c>;

/// Builder for a bulk send, from [`Client::bulk`].
#[must_use = "nothing is sent until the stream from .run() is polled"]
pub struct Bulk<'c, S> {
    client: &'c Client,
    items: S,
    concurrency: usize,
    batch_size: usize,
    on_dispatch: Option<OnDispatch<'c>>,
    on_not_run: Option<OnNotRun<'c>>,
}

impl Client {
    /// Sends every item of `items` through `batch` calls; see [`Bulk::run`].
    ///
    /// ```no_run
    /// # async fn run(client: bitrix24::Client) -> Result<(), bitrix24::Error> {
    /// use bitrix24::{BulkItem, ItemOutcome};
    /// use futures_util::StreamExt;
    /// let items = (1..=1000u64).map(|row| BulkItem {
    ///     row,
    ///     request: client.notify().personal(row % 10 + 1, "Quarterly review").to_request().unwrap(),
    /// });
    /// let mut outcomes = std::pin::pin!(client.bulk(futures_util::stream::iter(items)).run());
    /// while let Some((row, outcome)) = outcomes.next().await {
    ///     if !matches!(outcome, ItemOutcome::Delivered { .. }) {
    ///         println!("row {row}: {outcome:?}");
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn bulk<S>(&self, items: S) -> Bulk<'_, S>
    where
        S: Stream<Item = BulkItem> + Send + Unpin,
    {
        Bulk {
            client: self,
            items,
            concurrency: DEFAULT_CONCURRENCY,
            batch_size: MAX_BATCH,
            on_dispatch: None,
            on_not_run: None,
        }
    }
}

impl<'c, S> Bulk<'c, S>
where
    S: Stream<Item = BulkItem> + Send + Unpin + 'c,
{
    /// Batches in flight at once (default 4; at least 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Commands per batch, 1..=50 (default 50); values outside are clamped.
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.clamp(1, MAX_BATCH);
        self
    }

    /// Calls `f` with a batch's rows each time the batch is dispatched: it has taken its
    /// rate-limit slot and its request is about to be written (again for each resend, and
    /// for each retry of a batch request). Nothing is written until `f` returns, so a durable
    /// record made in `f` always precedes the request. When `f` returns an error, that
    /// request is not written: its items end [`ItemOutcome::Failed`] with code `NOT_SENT`,
    /// HTTP status 0 and `f`'s message, or [`ItemOutcome::Unknown`] when an earlier attempt
    /// of them may have run.
    pub fn on_dispatch(
        mut self,
        f: impl Fn(&[u64]) -> Result<(), String> + Send + Sync + 'c,
    ) -> Self {
        self.on_dispatch = Some(Arc::new(f));
        self
    }

    /// Calls `f` with a batch's rows when every attempt of it that was dispatched (see
    /// [`on_dispatch`](Bulk::on_dispatch)) certainly did not run: no connection could be made,
    /// or the portal refused it before running it (a limit, an expired token). A journal that
    /// recorded `sending` can record the rows as not sent again, so that a crash during the
    /// backoff that follows does not leave them looking as if they might have arrived. The
    /// next attempt calls `on_dispatch` again.
    pub fn on_not_run(mut self, f: impl Fn(&[u64]) + Send + Sync + 'c) -> Self {
        self.on_not_run = Some(Arc::new(f));
        self
    }

    /// Sends the items and yields `(row, outcome)` for every one of them, exactly once, in
    /// the order their batches finish. Items are read only as batches have room for them.
    pub fn run(self) -> impl Stream<Item = (u64, ItemOutcome)> + Send + 'c {
        let driver = Driver {
            client: self.client,
            oauth: self.client.portal().is_oauth(),
            input: self.items,
            input_done: false,
            concurrency: self.concurrency,
            batch_size: self.batch_size,
            on_dispatch: self.on_dispatch,
            on_not_run: self.on_not_run,
            pending: Vec::new(),
            flush: false,
            requeue: VecDeque::new(),
            in_flight: FuturesUnordered::new(),
            ready: VecDeque::new(),
        };
        futures_util::stream::unfold(driver, |mut driver| async move {
            let next = driver.next().await?;
            Some((next, driver))
        })
    }
}

/// An item on its way, with the number of batches it has been in.
struct Queued {
    row: u64,
    request: Request,
    attempts: u32,
    not_before: Instant,
}

/// What a batch did with one of its items.
enum Settled {
    Done(u64, ItemOutcome),
    Again(Queued),
}

struct Driver<'c, S> {
    client: &'c Client,
    oauth: bool,
    input: S,
    input_done: bool,
    concurrency: usize,
    batch_size: usize,
    on_dispatch: Option<OnDispatch<'c>>,
    on_not_run: Option<OnNotRun<'c>>,
    /// The batch being filled.
    pending: Vec<Queued>,
    /// The input paused with a partly filled batch: send it.
    flush: bool,
    /// Items to send again once their `not_before` has passed.
    requeue: VecDeque<Queued>,
    in_flight: FuturesUnordered<BoxFuture<'c, Vec<Settled>>>,
    /// Outcomes of a finished batch, handed out before anything else is read or sent.
    ready: VecDeque<(u64, ItemOutcome)>,
}

enum Event {
    Finished(Vec<Settled>),
    Item(Option<BulkItem>),
    Linger,
    Wake,
}

impl<'c, S> Driver<'c, S>
where
    S: Stream<Item = BulkItem> + Send + Unpin + 'c,
{
    async fn next(&mut self) -> Option<(u64, ItemOutcome)> {
        loop {
            if let Some(outcome) = self.ready.pop_front() {
                return Some(outcome);
            }
            self.launch();
            if self.input_done
                && self.pending.is_empty()
                && self.requeue.is_empty()
                && self.in_flight.is_empty()
            {
                return None;
            }
            let room = self.in_flight.len() < self.concurrency;
            let want_input = room && !self.input_done && self.pending.len() < self.batch_size;
            let linger = want_input && !self.pending.is_empty();
            let wake = if room {
                self.requeue.iter().map(|q| q.not_before).min()
            } else {
                None
            };
            let event = tokio::select! {
                Some(settled) = self.in_flight.next(), if !self.in_flight.is_empty() => Event::Finished(settled),
                item = self.input.next(), if want_input => Event::Item(item),
                _ = tokio::time::sleep(LINGER), if linger => Event::Linger,
                _ = tokio::time::sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => Event::Wake,
                else => Event::Wake,
            };
            match event {
                Event::Finished(settled) => {
                    // One wait for the whole batch's resends, so that they travel together.
                    let attempts = settled.iter().map(|s| match s {
                        Settled::Again(q) => q.attempts,
                        Settled::Done(..) => 0,
                    });
                    let attempt = attempts.max().unwrap_or(0);
                    let now = Instant::now();
                    let backoff = self.client.retry_policy().backoff(attempt, fastrand::f64());
                    // A huge max_delay must not overflow the clock: a year is "not soon".
                    let not_before = now
                        .checked_add(backoff)
                        .or_else(|| now.checked_add(Duration::from_secs(365 * 86_400)))
                        .unwrap_or(now);
                    for s in settled {
                        match s {
                            Settled::Done(row, outcome) => self.ready.push_back((row, outcome)),
                            Settled::Again(mut q) => {
                                q.not_before = not_before;
                                self.requeue.push_back(q);
                            }
                        }
                    }
                }
                Event::Item(Some(item)) => self.pending.push(Queued {
                    row: item.row,
                    request: item.request,
                    attempts: 0,
                    not_before: Instant::now(),
                }),
                Event::Item(None) => self.input_done = true,
                Event::Linger => self.flush = true,
                Event::Wake => {}
            }
        }
    }

    /// Starts batches while there is room: full ones, a partial one when the input paused or
    /// ended, with items due to be sent again first.
    fn launch(&mut self) {
        while self.in_flight.len() < self.concurrency {
            let now = Instant::now();
            let mut i = 0;
            while i < self.requeue.len() && self.pending.len() < self.batch_size {
                if self.requeue[i].not_before <= now {
                    let q = self.requeue.remove(i).expect("index checked");
                    self.pending.push(q);
                } else {
                    i += 1;
                }
            }
            let full = self.pending.len() >= self.batch_size;
            let partial_ok = self.flush || self.input_done;
            if self.pending.is_empty() || !(full || partial_ok) {
                break;
            }
            let take = self.pending.len().min(self.batch_size);
            let items: Vec<Queued> = self.pending.drain(..take).collect();
            self.flush = false;
            self.in_flight.push(Box::pin(run_batch(
                self.client,
                self.oauth,
                self.on_dispatch.clone(),
                self.on_not_run.clone(),
                items,
            )));
        }
    }
}

/// Sends one batch and settles each of its items.
async fn run_batch(
    client: &Client,
    oauth: bool,
    on_dispatch: Option<OnDispatch<'_>>,
    on_not_run: Option<OnNotRun<'_>>,
    mut items: Vec<Queued>,
) -> Vec<Settled> {
    let max_attempts = client.retry_policy().max_attempts.max(1);
    let mut batch = client.batch();
    for q in &mut items {
        q.attempts += 1;
        batch = batch.push(q.request.clone());
    }
    let attempt = items.iter().map(|q| q.attempts).max().unwrap_or(1);
    let (first_row, last_row, size) = (
        items.first().map_or(0, |q| q.row),
        items.last().map_or(0, |q| q.row),
        items.len(),
    );
    let again_or = |q: Queued, otherwise: ItemOutcome| {
        if q.attempts < max_attempts {
            Settled::Again(q)
        } else {
            Settled::Done(q.row, otherwise)
        }
    };
    let rows: Vec<u64> = items.iter().map(|q| q.row).collect();
    // How many attempts of this batch were written, and why the caller stopped one.
    let written = std::sync::atomic::AtomicU32::new(0);
    // Attempts written that may have run: an attempt that certainly did not is taken off.
    let may_have_run = std::sync::atomic::AtomicU32::new(0);
    let refused: Mutex<Option<(String, u32)>> = Mutex::new(None);
    let before_write = || {
        if let Some(f) = &on_dispatch
            && let Err(message) = f(&rows)
        {
            let earlier = written.load(std::sync::atomic::Ordering::SeqCst);
            let error = Error::invalid("on_dispatch", message.clone());
            *refused.lock().unwrap_or_else(|e| e.into_inner()) = Some((message, earlier));
            return Err(error);
        }
        written.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        may_have_run.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    };
    // When the last attempt that may have run turns out not to have: the rows are unsent.
    let not_run = || {
        let before = may_have_run.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        if before == 1
            && let Some(f) = &on_not_run
        {
            f(&rows);
        }
    };
    let sent = batch.send_observed(&before_write, &not_run).await;
    let refused = refused.into_inner().unwrap_or_else(|e| e.into_inner());
    let settled: Vec<Settled> = match (sent, refused) {
        // The caller stopped the request before it was written.
        (Err(_), Some((message, earlier))) => items
            .into_iter()
            .map(|q| {
                // Only items that never went out before are certainly not sent.
                let outcome = if earlier == 0 && q.attempts == 1 {
                    ItemOutcome::Failed(ApiError {
                        code: "NOT_SENT".into(),
                        body: json!({"error": "NOT_SENT", "error_description": message}),
                        description: message.clone(),
                        status: 0,
                    })
                } else {
                    ItemOutcome::Unknown
                };
                Settled::Done(q.row, outcome)
            })
            .collect(),
        (Ok(answer), _) => items
            .into_iter()
            .zip(answer.results)
            .map(|(q, (_, result))| match result {
                CommandResult::Ok(value) => Settled::Done(q.row, created(&value)),
                CommandResult::Err(e)
                    if matches!(
                        e.code,
                        ErrorCode::QueryLimitExceeded | ErrorCode::OperationTimeLimit
                    ) =>
                {
                    again_or(q, ItemOutcome::Failed(e))
                }
                CommandResult::Err(e) => Settled::Done(q.row, ItemOutcome::Failed(e)),
                CommandResult::NotRun => again_or(q, ItemOutcome::Unknown),
            })
            .collect(),
        (Err(error), None) => match whole_batch(&error) {
            WholeBatch::MayHaveRun => items
                .into_iter()
                .map(|q| {
                    if safety_of(&q.request, oauth) == Safety::Repeatable {
                        again_or(q, ItemOutcome::Unknown)
                    } else {
                        Settled::Done(q.row, ItemOutcome::Unknown)
                    }
                })
                .collect(),
            WholeBatch::Failed(e) => items
                .into_iter()
                .map(|q| Settled::Done(q.row, ItemOutcome::Failed(e.clone())))
                .collect(),
        },
    };
    let mut counts = [0usize; 5];
    for s in &settled {
        let slot = match s {
            Settled::Done(_, ItemOutcome::Delivered { .. }) => 0,
            Settled::Done(_, ItemOutcome::NotCreated) => 1,
            Settled::Done(_, ItemOutcome::Failed(_)) => 2,
            Settled::Done(_, ItemOutcome::Unknown) => 3,
            Settled::Again(_) => 4,
        };
        counts[slot] += 1;
    }
    tracing::debug!(
        target: "bitrix24",
        first_row,
        last_row,
        size,
        attempt,
        delivered = counts[0],
        not_created = counts[1],
        failed = counts[2],
        unknown = counts[3],
        resend = counts[4],
        "bulk batch"
    );
    settled
}

/// A command's `result`: an id, or `false` for a recipient that is missing or inactive.
fn created(value: &Value) -> ItemOutcome {
    match value {
        Value::Bool(false) | Value::Null => ItemOutcome::NotCreated,
        other => match lenient_u64(other) {
            Some(id) => ItemOutcome::Delivered { id },
            // It ran, but not as a notification add answers: nothing to confirm it by.
            None => ItemOutcome::Unknown,
        },
    }
}

enum WholeBatch {
    MayHaveRun,
    Failed(ApiError),
}

/// How a batch that ended in an error bears on its items (the table in the module docs).
fn whole_batch(error: &Error) -> WholeBatch {
    let made_here = |code: &str, status: u16| {
        let description = error.to_string();
        WholeBatch::Failed(ApiError {
            code: code.into(),
            body: json!({"error": code, "error_description": description}),
            description,
            status,
        })
    };
    match error {
        // A server error that outlasted the retries: the batch may have run.
        Error::Api(e)
            if e.status >= 500
                && !matches!(
                    e.code,
                    ErrorCode::QueryLimitExceeded | ErrorCode::OperationTimeLimit
                ) =>
        {
            WholeBatch::MayHaveRun
        }
        Error::Api(e) => WholeBatch::Failed((**e).clone()),
        Error::OutcomeUnknown { .. } => WholeBatch::MayHaveRun,
        Error::Transport { connect: true, .. } => made_here("NOT_SENT", 0),
        Error::Transport { .. } => WholeBatch::MayHaveRun,
        Error::Decode { status, .. } if *status >= 500 || *status < 300 => WholeBatch::MayHaveRun,
        Error::Decode { status, .. } => made_here("UNREADABLE_ANSWER", *status),
        Error::Limited { .. } | Error::TokenStore { .. } => made_here("NOT_SENT", 0),
        Error::InvalidArgument { .. } => made_here("INVALID_ARGUMENT", 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_results_map_to_outcomes() {
        assert!(matches!(
            created(&json!(5)),
            ItemOutcome::Delivered { id: 5 }
        ));
        assert!(matches!(
            created(&json!("77")),
            ItemOutcome::Delivered { id: 77 }
        ));
        assert!(matches!(created(&json!(false)), ItemOutcome::NotCreated));
        assert!(matches!(created(&json!(true)), ItemOutcome::Unknown));
    }

    #[test]
    fn whole_batch_errors_map_by_whether_the_batch_may_have_run() {
        let transport = |connect| Error::Transport {
            url: "u".into(),
            message: "m".into(),
            timeout: false,
            connect,
        };
        assert!(matches!(
            whole_batch(&transport(false)),
            WholeBatch::MayHaveRun
        ));
        match whole_batch(&transport(true)) {
            WholeBatch::Failed(e) => {
                assert_eq!(e.code.as_str(), "NOT_SENT");
                assert_eq!(e.status, 0);
            }
            WholeBatch::MayHaveRun => panic!("a connect failure sent nothing"),
        }
        let decode = |status| Error::Decode {
            status,
            reason: "r".into(),
            body: String::new(),
        };
        assert!(matches!(whole_batch(&decode(502)), WholeBatch::MayHaveRun));
        assert!(matches!(whole_batch(&decode(200)), WholeBatch::MayHaveRun));
        assert!(matches!(whole_batch(&decode(404)), WholeBatch::Failed(_)));
        let unknown = Error::OutcomeUnknown {
            method: "batch".into(),
            attempts: 1,
            cause: Box::new(transport(false)),
        };
        assert!(matches!(whole_batch(&unknown), WholeBatch::MayHaveRun));
    }
}
