//! Staying inside the portal's limits instead of tripping them.
//!
//! **Request rate.** The portal keeps a leaky bucket per portal and client IP: each request
//! adds one, the level drains at `rate` per second, and a request that would lift the level
//! above `burst` is refused with 503 `QUERY_LIMIT_EXCEEDED`. [`Gcra`] is the same bucket seen
//! from the sending side (the generic cell rate algorithm: a request may go when the
//! theoretical arrival time is at most `(burst - 1) / rate` ahead), so a client that waits for
//! it never trips the portal's. A request counts when it is *sent*: the slot is reserved before
//! sending, not recorded after the answer, so requests in flight are counted too.
//!
//! The client keeps one request of headroom below the portal's burst. The portal sees arrival
//! times, not send times: two requests sent exactly `1/rate` apart can arrive closer together
//! when the first was slowed on its way (a new connection, a busy socket), and a bucket filled
//! to the brim would refuse the second. One spare slot absorbs that jitter at a cost of one
//! request of burst.
//!
//! Buckets are shared: [`Pacer::Local`] by every clone of a client, [`Pacer::Shared`] by every
//! process on the machine through a small state file under a file lock, because the portal
//! counts them all against one bucket.
//!
//! **Operating time.** The portal also budgets server time per method (480 s per 10 minutes by
//! default; a `batch` is billed to `batch`), reports the running total in `time.operating` and
//! blocks the method with 429 `OPERATION_TIME_LIMIT` when it is spent. [`OperatingBudget`] keeps
//! the latest figures per method and pauses a method that nears its budget until the reset
//! time, instead of letting it fail. The portal counts that time per method and application
//! (or webhook), whichever host sends: a bucket in Redis also shares the figures that pause a
//! method, and every host takes the newest before it sends.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::Error;
use crate::file;

/// A portal's rate limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Requests per second the bucket drains.
    pub rate: f64,
    /// Requests the bucket holds before the portal refuses.
    pub burst: f64,
}

impl RateLimit {
    /// Every plan but Enterprise: 2 per second, 50 at once.
    pub const STANDARD: RateLimit = RateLimit {
        rate: 2.0,
        burst: 50.0,
    };
    /// Enterprise: 5 per second, 250 at once.
    pub const ENTERPRISE: RateLimit = RateLimit {
        rate: 5.0,
        burst: 250.0,
    };

    /// A custom limit. `rate` must be above 0 and `burst` at least 1, both finite. Any such
    /// value is safe, however extreme: arithmetic saturates, and a request whose wait would
    /// pass its deadline (or [`MAX_WAIT`](crate::MAX_WAIT)) ends in
    /// [`Error::Limited`] without being sent.
    pub fn new(rate: f64, burst: f64) -> Result<RateLimit, Error> {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(Error::invalid(
                "rate",
                format!("must be a number of requests per second above 0, not {rate}"),
            ));
        }
        if !(burst.is_finite() && burst >= 1.0) {
            return Err(Error::invalid(
                "burst",
                format!("must be at least 1, not {burst}"),
            ));
        }
        Ok(RateLimit { rate, burst })
    }

    /// A plan by name: `standard` or `enterprise`.
    pub fn plan(name: &str) -> Result<RateLimit, Error> {
        match name.trim().to_ascii_lowercase().as_str() {
            "standard" => Ok(RateLimit::STANDARD),
            "enterprise" => Ok(RateLimit::ENTERPRISE),
            other => Err(Error::invalid(
                "plan",
                format!("{other:?} is not a plan; use standard or enterprise"),
            )),
        }
    }

    fn interval(&self) -> f64 {
        1.0 / self.rate
    }

    /// The limit the client paces itself to: one request of headroom below the burst.
    pub fn with_headroom(self) -> RateLimit {
        RateLimit {
            rate: self.rate,
            burst: (self.burst - 1.0).max(1.0),
        }
    }
}

/// The leaky bucket as virtual scheduling: `tat` is the theoretical arrival time, in seconds on
/// any clock, of the next request if the bucket were empty.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Gcra {
    tat: f64,
}

impl Gcra {
    /// Reserves a slot for a request that wants to go at `now`; returns how long to wait
    /// before sending it. The slot is taken at once, so concurrent callers queue up.
    pub fn reserve(&mut self, limit: RateLimit, now: f64) -> f64 {
        let tolerance = (limit.burst - 1.0) * limit.interval();
        let tat = self.tat.max(now);
        let send_at = (tat - tolerance).max(now);
        self.tat = tat + limit.interval();
        send_at - now
    }

    /// The portal refused a request for the rate: its bucket is fuller than ours thought, so
    /// treat ours as full from `now` (another client on the same IP, or an earlier run).
    pub fn saturate(&mut self, limit: RateLimit, now: f64) {
        let full = now + limit.burst * limit.interval();
        self.tat = self.tat.max(full);
    }

    /// The bucket's level at `now`, in requests (for logs and tests).
    pub fn level(&self, limit: RateLimit, now: f64) -> f64 {
        ((self.tat - now) / limit.interval()).max(0.0)
    }
}

/// Where the bucket lives.
#[derive(Debug)]
pub enum Pacer {
    /// No client-side limit.
    Off,
    /// In this process, shared by clones of the client.
    Local {
        /// The rate and burst paced to.
        limit: RateLimit,
        /// The bucket, behind a lock the clones share.
        state: Mutex<Gcra>,
    },
    /// In a file, shared by every process on the machine that uses it.
    ///
    /// The file holds the bucket's level in requests and when it was measured, not a time of
    /// the next slot: processes that disagree about the rate (one run with a very low `rate`,
    /// another with the plan's) then share one count of requests, each draining it at the rate
    /// it believes in, and no booking can make the others wait longer than their own bucket
    /// takes to drain. A booking ahead of time reaches at most the bucket's `burst`; a request
    /// beyond that waits unbooked and asks again ([`Reservation::Later`]).
    ///
    /// The file is opened without following a symbolic link (`O_NOFOLLOW` on unix,
    /// `FILE_FLAG_OPEN_REPARSE_POINT` on Windows) and without blocking; it is locked with
    /// [`File::try_lock`] (`flock` on unix, `LockFileEx` on Windows); a path that is a symbolic link, directory, FIFO or device is an error, never
    /// written to. A state that cannot be right (unparsable, not a number, measured in the
    /// future, a level beyond any bucket) is reset to an empty bucket, with a
    /// [`Notice::StateReset`].
    Shared {
        /// The rate and burst this process paces to.
        limit: RateLimit,
        /// The state file, locked for each reservation.
        path: PathBuf,
    },
    /// In Redis, shared by every process on every machine that uses the same key: see
    /// [`RedisBucket`](crate::RedisBucket).
    #[cfg(feature = "redis")]
    Redis(crate::RedisBucket),
}

/// What a reservation gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// A slot is taken: send after this wait.
    Go(Duration),
    /// The bucket is fuller than may be booked ahead; nothing was taken. Ask again after this
    /// wait.
    Later(Duration),
}

/// Longest time spent waiting for the lock of a shared state file: the lock is held only to
/// read and write a few bytes, so a longer hold is a stopped or stuck process.
pub const STATE_LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// A level no bucket reaches: beyond it a shared state is damaged, not just another
/// process's larger burst.
const MAX_LEVEL: f64 = 1e6;
/// How far ahead of this machine's clock a state may have been written (clock adjustments).
const CLOCK_SLACK: f64 = 60.0;
/// No state was written before this (2001-09-09): an earlier time is damage, not age.
const EARLIEST_STATE: f64 = 1e9;

impl Pacer {
    /// A bucket in this process.
    pub fn local(limit: RateLimit) -> Pacer {
        Pacer::Local {
            limit,
            state: Mutex::new(Gcra::default()),
        }
    }

    /// A bucket shared through `path` (created when missing).
    pub fn shared(limit: RateLimit, path: impl Into<PathBuf>) -> Pacer {
        Pacer::Shared {
            limit,
            path: path.into(),
        }
    }

    /// The limit, if any.
    pub fn limit(&self) -> Option<RateLimit> {
        match self {
            Pacer::Off => None,
            Pacer::Local { limit, .. } | Pacer::Shared { limit, .. } => Some(*limit),
            #[cfg(feature = "redis")]
            Pacer::Redis(bucket) => Some(bucket.limit()),
        }
    }

    /// Reserves a slot now, if one may be booked. A damaged shared state is reset and reported
    /// through `tracing`; a client reports it through its notice hook instead.
    pub fn reserve(&self) -> Result<Reservation, Error> {
        self.reserve_noting(&|notice| tracing::warn!(target: "bitrix24", "{notice}"))
    }

    pub(crate) fn reserve_noting(&self, notice: &dyn Fn(&Notice)) -> Result<Reservation, Error> {
        let now = unix_now();
        match self {
            Pacer::Off => Ok(Reservation::Go(Duration::ZERO)),
            Pacer::Local { limit, state } => {
                let mut gcra = state.lock().unwrap_or_else(|e| e.into_inner());
                Ok(Reservation::Go(secs(
                    gcra.reserve(limit.with_headroom(), now),
                )))
            }
            Pacer::Shared { limit, path } => {
                with_locked_state(path, *limit, now, notice, |level| level.reserve(*limit))
            }
            #[cfg(feature = "redis")]
            Pacer::Redis(_) => Err(needs_async()),
        }
    }

    /// Gives back a slot taken by [`Pacer::reserve`] for a request that will not be sent.
    pub fn release(&self) -> Result<(), Error> {
        let now = unix_now();
        match self {
            Pacer::Off => Ok(()),
            Pacer::Local { limit, state } => {
                let mut gcra = state.lock().unwrap_or_else(|e| e.into_inner());
                gcra.tat -= limit.interval();
                Ok(())
            }
            Pacer::Shared { limit, path } => {
                with_locked_state(path, *limit, now, &|_| {}, |level| {
                    level.requests = (level.requests - 1.0).max(0.0);
                })
            }
            #[cfg(feature = "redis")]
            Pacer::Redis(_) => Err(needs_async()),
        }
    }

    /// Records a `QUERY_LIMIT_EXCEEDED` from the portal.
    pub fn saturate(&self) -> Result<(), Error> {
        self.saturate_noting(&|notice| tracing::warn!(target: "bitrix24", "{notice}"))
    }

    pub(crate) fn saturate_noting(&self, notice: &dyn Fn(&Notice)) -> Result<(), Error> {
        let now = unix_now();
        match self {
            Pacer::Off => Ok(()),
            Pacer::Local { limit, state } => {
                let mut gcra = state.lock().unwrap_or_else(|e| e.into_inner());
                gcra.saturate(limit.with_headroom(), now);
                Ok(())
            }
            Pacer::Shared { limit, path } => {
                with_locked_state(path, *limit, now, notice, |level| {
                    // The portal's bucket is full: ours is too, from now.
                    level.requests = level.requests.max(limit.burst);
                })
            }
            #[cfg(feature = "redis")]
            Pacer::Redis(_) => Err(needs_async()),
        }
    }

    /// [`Pacer::reserve`] for every kind of bucket, Redis's too (which a client uses), with
    /// the operating-time figures other hosts shared under `field`: only a bucket in Redis
    /// shares them, in the same call.
    pub(crate) async fn reserve_async(
        &self,
        field: &str,
        notice: &(dyn Fn(&Notice) + Sync),
    ) -> Result<(Reservation, Option<Usage>), Error> {
        match self {
            #[cfg(feature = "redis")]
            Pacer::Redis(bucket) => Ok(bucket.reserve_reading(field, notice).await),
            other => {
                let _ = field;
                Ok((other.reserve_noting(notice)?, None))
            }
        }
    }

    /// Shares `usage`, this process's figures for `field`, where [`Pacer::reserve_async`]
    /// reads them; elsewhere nothing is shared.
    pub(crate) async fn share_async(
        &self,
        field: &str,
        usage: Usage,
        notice: &(dyn Fn(&Notice) + Sync),
    ) {
        match self {
            #[cfg(feature = "redis")]
            Pacer::Redis(bucket) => bucket.share(field, usage, notice).await,
            _ => {
                let _ = (field, usage, notice);
            }
        }
    }

    /// Whether operating-time figures are shared through this bucket.
    pub(crate) fn shares_operating(&self) -> bool {
        match self {
            #[cfg(feature = "redis")]
            Pacer::Redis(_) => true,
            _ => false,
        }
    }

    /// [`Pacer::release`] for every kind of bucket.
    pub(crate) async fn release_async(
        &self,
        notice: &(dyn Fn(&Notice) + Sync),
    ) -> Result<(), Error> {
        match self {
            #[cfg(feature = "redis")]
            Pacer::Redis(bucket) => {
                bucket.release(notice).await;
                Ok(())
            }
            other => {
                let _ = notice;
                other.release()
            }
        }
    }

    /// [`Pacer::saturate`] for every kind of bucket.
    pub(crate) async fn saturate_async(
        &self,
        notice: &(dyn Fn(&Notice) + Sync),
    ) -> Result<(), Error> {
        match self {
            #[cfg(feature = "redis")]
            Pacer::Redis(bucket) => {
                bucket.saturate(notice).await;
                Ok(())
            }
            other => other.saturate_noting(notice),
        }
    }

    pub(crate) fn is_shared(&self) -> bool {
        match self {
            Pacer::Shared { .. } => true,
            #[cfg(feature = "redis")]
            Pacer::Redis(_) => true,
            _ => false,
        }
    }
}

/// A bucket in Redis is reached only asynchronously, through a client.
#[cfg(feature = "redis")]
fn needs_async() -> Error {
    Error::invalid(
        "pacer",
        "a bucket in Redis is used through a client (its requests wait asynchronously), not Pacer::reserve",
    )
}

/// A shared bucket's level as one process sees it: requests in it at the time of reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Level {
    pub(crate) requests: f64,
}

impl Level {
    /// Takes a slot if the level allows one now or within the bucket; else says when to ask
    /// again. One request of headroom is kept below `limit.burst` (see the module docs).
    pub(crate) fn reserve(&mut self, limit: RateLimit) -> Reservation {
        const EPSILON: f64 = 1e-9;
        let paced = limit.with_headroom();
        let after = self.requests + 1.0;
        if after <= limit.burst + EPSILON {
            self.requests = after;
            Reservation::Go(secs((after - paced.burst) / limit.rate))
        } else {
            Reservation::Later(secs((after - limit.burst) / limit.rate))
        }
    }
}

/// Why a shared state was not believed.
fn judge_state(text: &str, limit: RateLimit, now: f64) -> Result<f64, String> {
    let fields: Vec<&str> = text.split_whitespace().collect();
    let number = |s: &str| s.parse::<f64>().ok().filter(|x| x.is_finite());
    let clock_ok = now >= EARLIEST_STATE;
    match fields.as_slice() {
        [] => Ok(0.0),
        [requests, at] => {
            let (Some(requests), Some(at)) = (number(requests), number(at)) else {
                return Err("not two numbers".into());
            };
            if !(0.0..=MAX_LEVEL.max(limit.burst)).contains(&requests) {
                return Err(format!("a level of {requests} requests"));
            }
            if at > now + CLOCK_SLACK {
                return Err(format!(
                    "written {:.0} s ahead of this machine's clock",
                    at - now
                ));
            }
            if clock_ok && at < EARLIEST_STATE {
                return Err(format!(
                    "written at unix time {at:.0}, before any oint existed"
                ));
            }
            // Drained since it was written, at the rate this process believes in; never more
            // than this process's bucket holds (a larger burst elsewhere is not ours to wait for).
            let drained = requests - (now - at).max(0.0) * limit.rate;
            Ok(drained.clamp(0.0, limit.burst))
        }
        // The earlier format: the time of the next slot, in seconds.
        [tat] => {
            let Some(tat) = number(tat) else {
                return Err("not a number".into());
            };
            if clock_ok && tat < EARLIEST_STATE {
                return Err(format!("a time of {tat}, before any oint existed"));
            }
            let backlog = tat - now;
            if backlog > limit.burst / limit.rate + CLOCK_SLACK {
                return Err(format!(
                    "a slot {backlog:.0} s ahead, more than the bucket holds"
                ));
            }
            Ok((backlog * limit.rate).clamp(0.0, limit.burst))
        }
        _ => Err("not a bucket state".into()),
    }
}

/// Reads, changes and writes the bucket in `path` under an exclusive lock.
fn with_locked_state<T>(
    path: &Path,
    limit: RateLimit,
    now: f64,
    notice: &dyn Fn(&Notice),
    f: impl FnOnce(&mut Level) -> T,
) -> Result<T, Error> {
    let io = |what: &str, e: std::io::Error| {
        Error::invalid(
            "rate limit state",
            format!("cannot {what} {}: {e}", path.display()),
        )
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| io("create the directory of", e))?;
    }
    let mut file = open_state(path)?;
    lock_state(&file, path)?;
    // A state is a line of two numbers; a file of more than this is not one.
    let mut bytes = Vec::new();
    (&mut file)
        .take(256)
        .read_to_end(&mut bytes)
        .map_err(|e| io("read", e))?;
    let text = String::from_utf8_lossy(&bytes);
    let requests = match judge_state(&text, limit, now) {
        Ok(requests) => requests,
        Err(problem) => {
            notice(&Notice::StateReset(StateReset {
                path: path.to_path_buf(),
                problem,
            }));
            0.0
        }
    };
    let mut level = Level { requests };
    let result = f(&mut level);
    // `now` was read before the lock was won; the process that held it may have written a
    // later time. Writing the earlier one would let the next reader drain the same interval
    // twice, and the processes together would outrun the portal's bucket.
    let written_at = text
        .split_whitespace()
        .nth(1)
        .and_then(|at| at.parse::<f64>().ok())
        .filter(|at| at.is_finite() && *at <= now + CLOCK_SLACK);
    let stamp = written_at.map_or(now, |at| at.max(now));
    file.seek(SeekFrom::Start(0)).map_err(|e| io("rewind", e))?;
    file.set_len(0).map_err(|e| io("truncate", e))?;
    file.write_all(format!("{:.6} {:.6}\n", level.requests, stamp).as_bytes())
        .map_err(|e| io("write", e))?;
    // Dropping the file releases the lock.
    Ok(result)
}

/// Opens a state file for reading and writing, never through a symbolic link and never
/// blocking (a FIFO would block a plain open), and only if it is a regular file.
fn open_state(path: &Path) -> Result<File, Error> {
    let refuse = |what: &str| {
        Error::invalid(
            "rate limit state",
            format!(
                "{} is {what}, not a regular file; rate-limit state is never written through it: remove it, or use another state directory",
                path.display()
            ),
        )
    };
    let kind = || match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Some("a symbolic link"),
        Ok(m) if m.is_dir() => Some("a directory"),
        Ok(m) if !m.is_file() => Some("a FIFO, socket or device"),
        _ => None,
    };
    let mut options = File::options();
    options.read(true).write(true).create(true).truncate(false);
    file::owner_only(file::no_follow(&mut options));
    // Without O_NOFOLLOW a link would be followed: refuse it first (a narrow race remains on
    // platforms other than unix and Windows).
    #[cfg(not(any(unix, windows)))]
    if let Some(what) = kind() {
        return Err(refuse(what));
    }
    let file = options.open(path).map_err(|e| match kind() {
        Some(what) => refuse(what),
        None => Error::invalid(
            "rate limit state",
            format!("cannot open {}: {e}", path.display()),
        ),
    })?;
    let meta = file.metadata().map_err(|e| {
        Error::invalid(
            "rate limit state",
            format!("cannot inspect {}: {e}", path.display()),
        )
    })?;
    if !meta.is_file() {
        // Windows opens a link itself (FILE_FLAG_OPEN_REPARSE_POINT); refused here.
        return Err(refuse(if meta.file_type().is_symlink() {
            "a symbolic link"
        } else if meta.is_dir() {
            "a directory"
        } else {
            "a FIFO, socket or device"
        }));
    }
    Ok(file)
}

/// Takes the file's exclusive lock, giving up after [`STATE_LOCK_TIMEOUT`].
fn lock_state(file: &File, path: &Path) -> Result<(), Error> {
    let started = std::time::Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::WouldBlock) if started.elapsed() < STATE_LOCK_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::invalid(
                    "rate limit state",
                    format!(
                        "{} stayed locked by another process for {} s; is one stopped?",
                        path.display(),
                        STATE_LOCK_TIMEOUT.as_secs()
                    ),
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::invalid(
                    "rate limit state",
                    format!("cannot lock {}: {e}", path.display()),
                ));
            }
        }
    }
}

/// Waits longer than this are announced through the client's notice hook.
pub const NOTICE_THRESHOLD: Duration = Duration::from_secs(2);

/// Something a client tells its user about while it works: a long wait, or a state it reset.
/// See [`ClientBuilder::on_notice`](crate::ClientBuilder::on_notice). Its `Display` is one
/// line for people, with no secret in it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Notice {
    /// A wait longer than [`NOTICE_THRESHOLD`] starts.
    Wait(WaitNotice),
    /// A shared rate-limit state could not be right and was reset to an empty bucket.
    StateReset(StateReset),
    /// The store that shares the bucket between machines stopped answering: pacing goes on
    /// locally from the last known level until it is back.
    StoreLost(StoreNotice),
    /// The store answers again: the bucket is shared again.
    StoreBack(StoreNotice),
}

/// A store that shares limits between machines, lost or back.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct StoreNotice {
    /// The store's address, any password masked.
    pub store: String,
    /// What went wrong (empty when it is back).
    pub problem: String,
}

/// A wait that starts, and why.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct WaitNotice {
    /// Why.
    pub reason: WaitReason,
    /// How long.
    pub wait: Duration,
    /// The method that waits.
    pub method: String,
    /// The attempt that comes after the wait (1 for the first).
    pub attempt: u32,
}

/// Why a request waits.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum WaitReason {
    /// The portal's rate limit; `shared` when the bucket is shared with other processes.
    RateLimit {
        /// The bucket is a [`Pacer::Shared`] file.
        shared: bool,
    },
    /// The method's operating-time budget is (nearly) spent until the portal resets it.
    OperatingTime {
        /// Seconds of server time used in the portal's 10-minute window, as last reported.
        used: f64,
    },
    /// Backoff after the portal refused the last attempt with `QUERY_LIMIT_EXCEEDED`.
    QueryLimit,
    /// Backoff after a failed attempt that may be retried.
    Retry {
        /// What the failed attempt got.
        after: crate::retry::Outcome,
    },
}

/// A shared state that was reset.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct StateReset {
    /// The state file.
    pub path: PathBuf,
    /// What was wrong with it.
    pub problem: String,
}

impl std::fmt::Display for Notice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Notice::Wait(w) => {
                let s = w.wait.as_secs_f64();
                match w.reason {
                    WaitReason::RateLimit { shared: true } => write!(
                        f,
                        "waiting {s:.1} s for the portal's rate limit (shared with other processes for this portal)"
                    ),
                    WaitReason::RateLimit { shared: false } => {
                        write!(f, "waiting {s:.1} s for the portal's rate limit")
                    }
                    WaitReason::OperatingTime { used } => write!(
                        f,
                        "waiting {s:.1} s: the portal pauses {} until its operating-time budget resets ({used:.0} s of server time used in 10 minutes)",
                        w.method
                    ),
                    WaitReason::QueryLimit => write!(
                        f,
                        "waiting {s:.1} s before attempt {} of {}: the portal refused the last one for the request rate (QUERY_LIMIT_EXCEEDED)",
                        w.attempt, w.method
                    ),
                    WaitReason::Retry { after } => write!(
                        f,
                        "waiting {s:.1} s before attempt {} of {}: {}",
                        w.attempt,
                        w.method,
                        crate::retry::describe(after)
                    ),
                }
            }
            Notice::StateReset(r) => write!(
                f,
                "the rate-limit state {} could not be right ({}); reset it to an empty bucket",
                r.path.display(),
                r.problem
            ),
            Notice::StoreLost(s) => write!(
                f,
                "the limit store {} is lost ({}); pacing locally from the last known level until it is back",
                s.store, s.problem
            ),
            Notice::StoreBack(s) => write!(
                f,
                "the limit store {} is back; the rate limit is shared again",
                s.store
            ),
        }
    }
}

/// The latest operating-time figures per method.
#[derive(Debug)]
pub struct OperatingBudget {
    /// Seconds of server time a method may use per window.
    pub budget: f64,
    /// Pause a method this many seconds before its budget is spent: a tenth of the budget,
    /// at most 5 s.
    pub margin: f64,
    methods: Mutex<HashMap<String, Usage>>,
}

/// One method's figures as this process knows them, shared with other hosts through a
/// limit store.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Usage {
    /// Seconds of server time used in the window, as the portal last reported.
    pub(crate) operating: f64,
    /// When the portal resets the window (unix seconds).
    pub(crate) reset_at: f64,
    /// Until when a 429 `OPERATION_TIME_LIMIT` blocks the method (unix seconds; 0 if not).
    pub(crate) blocked_until: f64,
    /// When these figures were seen (unix seconds): the newest figures win.
    pub(crate) observed_at: f64,
}

// Only a limit store (the `redis` feature) carries figures between hosts.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
impl Usage {
    /// Four numbers in one string, for a limit store.
    pub(crate) fn to_wire(self) -> String {
        format!(
            "{:.6} {:.3} {:.3} {:.6}",
            self.operating, self.reset_at, self.blocked_until, self.observed_at
        )
    }

    /// The figures another host shared, or `None` when `text` cannot be such figures. Times
    /// are clamped to what can be true at `now`: no reset or block beyond one window ahead,
    /// and nothing seen later than now (a host whose clock runs ahead cannot win for ever).
    pub(crate) fn from_wire(text: &str, now: f64) -> Option<Usage> {
        let numbers: Vec<f64> = text
            .split_whitespace()
            .map(|n| n.parse::<f64>().ok().filter(|n| n.is_finite() && *n >= 0.0))
            .collect::<Option<_>>()?;
        let [operating, reset_at, blocked_until, observed_at] = numbers[..] else {
            return None;
        };
        let window_end = now + WINDOW;
        Some(Usage {
            operating,
            reset_at: reset_at.min(window_end),
            blocked_until: blocked_until.min(window_end),
            observed_at: observed_at.min(now),
        })
    }
}

/// The portal's operating-time window: no reset is further away than this.
const WINDOW: f64 = 600.0;

/// Why a method must wait before it is sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OperatingPause {
    /// Seconds to wait.
    pub wait: f64,
    /// Seconds of the budget used, as last reported.
    pub operating: f64,
}

impl Default for OperatingBudget {
    fn default() -> Self {
        OperatingBudget::new(OperatingBudget::CLOUD)
    }
}

impl OperatingBudget {
    /// The cloud portals' budget: 480 s per method per 10 minutes.
    pub const CLOUD: f64 = 480.0;

    /// A budget of `budget` seconds per method per 10 minutes.
    pub fn new(budget: f64) -> Self {
        OperatingBudget {
            budget,
            // A tenth of the budget, at most 5 s: a small budget still leaves room to send.
            margin: (budget / 10.0).min(5.0),
            methods: Mutex::new(HashMap::new()),
        }
    }

    /// The key a request is billed under: `batch` for batches, the method otherwise.
    pub fn key(method: &str) -> String {
        method.trim().to_ascii_lowercase()
    }

    /// Records the `time` figures of an answer to `method`.
    pub fn observe(&self, method: &str, operating: Option<f64>, reset_at: Option<f64>) {
        let (Some(operating), Some(reset_at)) = (operating, reset_at) else {
            return;
        };
        let now = unix_now();
        // The window is ten minutes: a reset further away than that is not to be believed.
        let reset_at = reset_at.min(now + WINDOW);
        let mut methods = self.methods.lock().unwrap_or_else(|e| e.into_inner());
        let usage = methods.entry(Self::key(method)).or_insert(Usage {
            operating,
            reset_at,
            blocked_until: 0.0,
            observed_at: now,
        });
        // The portal reports a running total: keep the latest, never add them up.
        usage.operating = operating;
        usage.reset_at = reset_at;
        usage.observed_at = usage.observed_at.max(now);
    }

    /// This process's figures for `method`, to share with other hosts.
    pub(crate) fn usage(&self, method: &str) -> Option<Usage> {
        let methods = self.methods.lock().unwrap_or_else(|e| e.into_inner());
        methods.get(&Self::key(method)).copied()
    }

    /// Takes figures another host shared for `method` if they were seen after this process's
    /// own (the portal's total is a running one, so the newest is right); a block holds until
    /// the later of the two.
    pub(crate) fn adopt(&self, method: &str, shared: Usage) {
        let mut methods = self.methods.lock().unwrap_or_else(|e| e.into_inner());
        let usage = methods.entry(Self::key(method)).or_insert(shared);
        if shared.observed_at > usage.observed_at {
            usage.operating = shared.operating;
            usage.reset_at = shared.reset_at;
            usage.observed_at = shared.observed_at;
        }
        usage.blocked_until = usage.blocked_until.max(shared.blocked_until);
    }

    /// Records a 429 `OPERATION_TIME_LIMIT`: the method stays blocked until its reset time
    /// (or a minute, when no reset time was ever reported).
    pub fn blocked(&self, method: &str, now: f64) {
        let mut methods = self.methods.lock().unwrap_or_else(|e| e.into_inner());
        let usage = methods.entry(Self::key(method)).or_insert(Usage {
            operating: 0.0,
            reset_at: 0.0,
            blocked_until: 0.0,
            observed_at: 0.0,
        });
        usage.blocked_until = if usage.reset_at > now {
            usage.reset_at
        } else {
            now + 60.0
        };
        usage.observed_at = usage.observed_at.max(now);
    }

    /// How long `method` must wait at `now`, if at all.
    pub fn pause(&self, method: &str, now: f64) -> Option<OperatingPause> {
        let methods = self.methods.lock().unwrap_or_else(|e| e.into_inner());
        let usage = methods.get(&Self::key(method))?;
        let until = if usage.blocked_until > now {
            usage.blocked_until
        } else if usage.operating >= self.budget - self.margin && usage.reset_at > now {
            usage.reset_at
        } else {
            return None;
        };
        // One second past the reset, as the portal's clock may run behind ours.
        Some(OperatingPause {
            wait: until - now + 1.0,
            operating: usage.operating,
        })
    }
}

pub(crate) fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::MAX)
}

pub(crate) fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    const STD: RateLimit = RateLimit::STANDARD;

    #[test]
    fn a_burst_passes_then_the_drain_rate_paces() {
        let mut g = Gcra::default();
        let waits: Vec<f64> = (0..53).map(|_| g.reserve(STD, 1000.0)).collect();
        assert!(
            waits[..50].iter().all(|w| *w == 0.0),
            "the first 50 go at once"
        );
        assert_eq!(&waits[50..], &[0.5, 1.0, 1.5], "then one every 1/rate");
        assert!((g.level(STD, 1000.0) - 53.0).abs() < 1e-9);
        // Drained for 10 s: 20 requests' worth is free again.
        let later = 1000.0 + 1.5 + 10.0;
        let free = (0..30).take_while(|_| g.reserve(STD, later) == 0.0).count();
        assert_eq!(free, 20);
    }

    #[test]
    fn matches_the_portals_admission_rule() {
        // The portal admits a request when level + 1 <= burst. Walk random-ish arrival times
        // and check that every request we send is one the portal would admit.
        let limit = RateLimit::new(3.0, 7.0).unwrap();
        let mut g = Gcra::default();
        let mut portal_level = 0.0f64;
        let mut portal_clock = 0.0f64;
        let mut t = 0.0;
        for i in 0..500 {
            t += [0.0, 0.01, 0.2, 0.05, 1.3][i % 5];
            let send_at = t + g.reserve(limit, t);
            portal_level = (portal_level - (send_at - portal_clock) * limit.rate).max(0.0);
            portal_clock = send_at;
            assert!(
                portal_level + 1.0 <= limit.burst + 1e-9,
                "request {i} would be refused"
            );
            portal_level += 1.0;
            t = t.max(send_at);
        }
    }

    #[test]
    fn saturation_makes_the_next_request_wait_a_full_bucket() {
        let mut g = Gcra::default();
        g.saturate(STD, 10.0);
        assert_eq!(g.reserve(STD, 10.0), 0.5);
    }

    #[test]
    fn plans_and_custom_limits() {
        assert_eq!(
            RateLimit::plan("Enterprise").unwrap(),
            RateLimit::ENTERPRISE
        );
        assert!(
            RateLimit::plan("gold")
                .unwrap_err()
                .to_string()
                .contains("standard or enterprise")
        );
        assert!(RateLimit::new(0.0, 5.0).is_err());
        assert!(RateLimit::new(1.0, 0.5).is_err());
    }

    fn go(r: Reservation) -> Duration {
        match r {
            Reservation::Go(w) => w,
            Reservation::Later(w) => panic!("not booked; later {w:?}"),
        }
    }

    fn state_dir(name: &str) -> tempfile::TempDir {
        tempfile::Builder::new().prefix(name).tempdir().unwrap()
    }

    #[test]
    fn shared_state_is_one_bucket_for_every_user_of_the_file() {
        let dir = state_dir("bitrix24-pacer");
        let path = dir.path().join("sub").join("bucket");
        let limit = RateLimit::new(0.001, 3.0).unwrap();
        let a = Pacer::shared(limit, &path);
        let b = Pacer::shared(limit, &path);
        // Burst 3 with one of headroom: two go at once, the third is booked a slot ahead,
        // whoever sends it, and a fourth may not book beyond the bucket.
        assert_eq!(go(a.reserve().unwrap()), Duration::ZERO);
        assert_eq!(go(b.reserve().unwrap()), Duration::ZERO);
        assert!(
            go(a.reserve().unwrap()) > Duration::from_secs(100),
            "the third waits, whoever sends it"
        );
        assert!(
            matches!(b.reserve().unwrap(), Reservation::Later(w) if w > Duration::from_secs(100))
        );
        // A slot given back is free again.
        b.release().unwrap();
        assert!(matches!(a.reserve().unwrap(), Reservation::Go(_)));
    }

    #[test]
    fn a_slow_process_books_one_request_not_its_whole_interval() {
        let dir = state_dir("bitrix24-slow");
        let path = dir.path().join("bucket");
        // Both rates are slow enough that the wall-clock time the test takes drains a
        // negligible fraction of a request (a loaded machine must not change the answers).
        let slow = Pacer::shared(RateLimit::new(0.0001, 50.0).unwrap(), &path);
        let faster = Pacer::shared(RateLimit::new(0.01, 50.0).unwrap(), &path);
        assert_eq!(go(slow.reserve().unwrap()), Duration::ZERO);
        // The slow process's own view: it counts one request, drained at 0.0001/s.
        for _ in 0..48 {
            assert_eq!(go(faster.reserve().unwrap()), Duration::ZERO);
        }
        // The bucket as the faster process sees it is now at its headroom: one slot (100 s).
        assert!(go(faster.reserve().unwrap()) <= Duration::from_secs(100));
        // A process that believes in a tiny rate waits by its own view only.
        let (Reservation::Go(w) | Reservation::Later(w)) = slow.reserve().unwrap();
        assert!(w > Duration::from_secs(3600), "{w:?}");
        // And whatever it does, the faster process never waits more than two of its slots,
        // never the slow one's 10,000 s.
        slow.saturate().unwrap();
        let w = match faster.reserve().unwrap() {
            Reservation::Go(w) | Reservation::Later(w) => w,
        };
        assert!(w <= Duration::from_secs(200), "waited {w:?}");
    }

    #[test]
    fn a_damaged_state_file_is_reset_with_a_notice() {
        let dir = state_dir("bitrix24-damaged");
        let path = dir.path().join("bucket");
        let limit = RateLimit::new(2.0, 3.0).unwrap();
        let now = unix_now();
        let future = format!("0 {}", now + 7200.0);
        let old_future = format!("{}", now + 3600.0);
        let cases = [
            "inf",
            "NaN",
            "-5",
            "garbage",
            "1e300",
            "0",
            "1 2 3",
            "NaN 5",
            "5e9 1764628397",
            "-1 1764628397",
            "3 0",
            future.as_str(),
            old_future.as_str(),
        ];
        for text in cases {
            std::fs::write(&path, text).unwrap();
            let notices = Mutex::new(Vec::new());
            let got = Pacer::shared(limit, &path)
                .reserve_noting(&|n| notices.lock().unwrap().push(n.to_string()))
                .unwrap();
            assert_eq!(got, Reservation::Go(Duration::ZERO), "{text}");
            let notices = notices.into_inner().unwrap();
            assert_eq!(notices.len(), 1, "{text}: {notices:?}");
            assert!(
                notices[0].contains("reset it to an empty bucket"),
                "{notices:?}"
            );
            // Rewritten as a sane state: the next reader has nothing to report.
            let again = Mutex::new(0);
            Pacer::shared(limit, &path)
                .reserve_noting(&|_| *again.lock().unwrap() += 1)
                .unwrap();
            assert_eq!(again.into_inner().unwrap(), 0, "{text}");
        }
        // Plausible states are believed, silently: the earlier format and an old time.
        for (text, level) in [
            (format!("{}", now + 1.0), 2.0),
            (format!("{}", now - 100.0), 0.0),
            (format!("1.5 {now}"), 1.5),
            (format!("300 {now}"), 3.0),
            (format!("40 {}", now - 86400.0), 0.0),
        ] {
            assert!(
                (judge_state(&text, limit, now).unwrap() - level).abs() < 0.01,
                "{text}"
            );
        }
    }

    #[test]
    fn notices_read_as_one_line_each() {
        let wait = |reason| {
            Notice::Wait(WaitNotice {
                reason,
                wait: Duration::from_millis(12_400),
                method: "im.notify.personal.add".into(),
                attempt: 3,
            })
            .to_string()
        };
        let table = [
            (
                wait(WaitReason::RateLimit { shared: true }),
                "waiting 12.4 s for the portal's rate limit (shared with other processes for this portal)",
            ),
            (
                wait(WaitReason::RateLimit { shared: false }),
                "waiting 12.4 s for the portal's rate limit",
            ),
            (
                wait(WaitReason::OperatingTime { used: 476.0 }),
                "waiting 12.4 s: the portal pauses im.notify.personal.add until its operating-time budget resets (476 s of server time used in 10 minutes)",
            ),
            (
                wait(WaitReason::QueryLimit),
                "waiting 12.4 s before attempt 3 of im.notify.personal.add: the portal refused the last one for the request rate (QUERY_LIMIT_EXCEEDED)",
            ),
            (
                wait(WaitReason::Retry {
                    after: crate::retry::Outcome::ServerError,
                }),
                "waiting 12.4 s before attempt 3 of im.notify.personal.add: the last attempt got a server error",
            ),
        ];
        for (got, want) in table {
            assert_eq!(got, want);
        }
    }

    #[test]
    fn huge_limits_never_panic() {
        let dir = state_dir("bitrix24-huge");
        let path = dir.path().join("bucket");
        for (rate, burst) in [
            (1e300, 1e300),
            (1e-300, 1.0),
            (f64::MAX, 1.0),
            (1e-300, 1e300),
        ] {
            let limit = RateLimit::new(rate, burst).unwrap();
            for pacer in [Pacer::local(limit), Pacer::shared(limit, &path)] {
                for _ in 0..3 {
                    pacer.reserve().unwrap();
                }
                pacer.saturate().unwrap();
                pacer.reserve().unwrap();
                pacer.release().unwrap();
            }
        }
        let b = OperatingBudget::new(f64::NAN);
        b.observe("m", Some(f64::INFINITY), Some(f64::MAX));
        b.blocked("m", f64::MAX);
        let _ = b.pause("m", unix_now());
    }

    #[cfg(unix)]
    #[test]
    fn a_state_path_that_is_no_regular_file_is_refused_never_followed() {
        let dir = state_dir("bitrix24-links");
        let limit = RateLimit::STANDARD;
        let target = dir.path().join("target");
        std::fs::write(&target, "keep").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("nothing"), &dangling).unwrap();
        let fifo = dir.path().join("fifo");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
        let sub = dir.path().join("dir");
        std::fs::create_dir(&sub).unwrap();
        for (path, want) in [
            (&link, "is a symbolic link"),
            (&dangling, "is a symbolic link"),
            (&fifo, "is a FIFO, socket or device"),
            (&sub, "is a directory"),
        ] {
            let err = Pacer::shared(limit, path)
                .reserve()
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{err}");
            assert_eq!(err.lines().count(), 1);
        }
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        assert!(
            !dir.path().join("nothing").exists(),
            "no file made through the link"
        );
        let err = Pacer::shared(limit, "/dev/null")
            .reserve()
            .unwrap_err()
            .to_string();
        assert!(err.contains("a FIFO, socket or device"), "{err}");
    }

    #[test]
    fn operating_budget_pauses_near_the_limit_and_after_a_block() {
        let b = OperatingBudget::new(480.0);
        assert_eq!(b.pause("im.notify.personal.add", 100.0), None);
        b.observe("im.notify.personal.add", Some(300.0), Some(400.0));
        assert_eq!(b.pause("im.notify.personal.add", 100.0), None);
        b.observe("IM.NOTIFY.PERSONAL.ADD", Some(476.0), Some(400.0));
        assert_eq!(
            b.pause("im.notify.personal.add", 100.0),
            Some(OperatingPause {
                wait: 301.0,
                operating: 476.0
            })
        );
        assert_eq!(
            b.pause("im.notify.personal.add", 401.0),
            None,
            "after the reset"
        );
        assert_eq!(
            b.pause("batch", 100.0),
            None,
            "other methods are not affected"
        );
        b.blocked("batch", 100.0);
        assert_eq!(b.pause("batch", 100.0).unwrap().wait, 61.0);
    }

    #[test]
    fn the_margin_is_a_tenth_of_a_small_budget_and_5_s_of_a_large_one() {
        assert_eq!(OperatingBudget::new(480.0).margin, 5.0);
        assert_eq!(OperatingBudget::new(0.5).margin, 0.05);
        // Of a 0.5 s budget, 0.3 s used does not pause; 0.46 s, within 0.05 s of it, does.
        let b = OperatingBudget::new(0.5);
        let now = unix_now();
        b.observe("m", Some(0.3), Some(now + 300.0));
        assert_eq!(b.pause("m", now), None);
        b.observe("m", Some(0.46), Some(now + 300.0));
        assert!(b.pause("m", now).is_some());
    }

    #[test]
    fn figures_another_host_shared_are_taken_in_newest_first() {
        let now = unix_now();
        let spent = |observed_at| Usage {
            operating: 479.0,
            reset_at: now + 300.0,
            blocked_until: 0.0,
            observed_at,
        };
        // Nothing of its own: another host's figures are taken and pause the method.
        let b = OperatingBudget::new(480.0);
        b.adopt("im.notify.personal.add", spent(now - 10.0));
        let pause = b.pause("IM.NOTIFY.PERSONAL.ADD", now).unwrap();
        assert_eq!(pause.operating, 479.0);
        assert!((pause.wait - 301.0).abs() < 1e-6);
        // Figures seen before this process's own are older news: kept out.
        let b = OperatingBudget::new(480.0);
        b.observe("m", Some(10.0), Some(now + 300.0));
        b.adopt("m", spent(now - 60.0));
        assert_eq!(b.pause("m", now), None);
        assert_eq!(b.usage("m").unwrap().operating, 10.0);
        // Figures seen later are taken, and the own ones seen later again win back.
        b.adopt("m", spent(now + 0.5));
        assert!(b.pause("m", now).is_some());
        std::thread::sleep(Duration::from_millis(600));
        b.observe("m", Some(12.0), Some(now + 300.0));
        assert_eq!(b.pause("m", now), None);
        // A block holds until the later of the two, whoever saw it first.
        let b = OperatingBudget::new(480.0);
        b.blocked("m", now);
        let own = b.usage("m").unwrap().blocked_until;
        b.adopt(
            "m",
            Usage {
                operating: 0.0,
                reset_at: 0.0,
                blocked_until: now + 500.0,
                observed_at: now - 100.0,
            },
        );
        assert_eq!(b.usage("m").unwrap().blocked_until, now + 500.0);
        assert!(own < now + 500.0);
    }

    #[test]
    fn shared_figures_on_the_wire_are_checked_and_clamped() {
        let now = 1_800_000_000.0;
        let usage = Usage {
            operating: 478.25,
            reset_at: now + 120.0,
            blocked_until: 0.0,
            observed_at: now - 1.5,
        };
        assert_eq!(Usage::from_wire(&usage.to_wire(), now), Some(usage));
        for garbage in [
            "",
            "garbage",
            "1 2 3",
            "1 2 3 4 5",
            "NaN 1 2 3",
            "1 inf 2 3",
            "1 2 -3 4",
            "1e400 2 3 4",
            "1,5 2 3 4",
        ] {
            assert_eq!(Usage::from_wire(garbage, now), None, "{garbage}");
        }
        // Nothing resets or stays blocked beyond one window, nor was seen after now.
        let far =
            Usage::from_wire(&format!("1 {} {} {}", now + 1e6, now + 1e6, now + 1e6), now).unwrap();
        assert_eq!(far.reset_at, now + 600.0);
        assert_eq!(far.blocked_until, now + 600.0);
        assert_eq!(far.observed_at, now);
    }
}
