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
//! time, instead of letting it fail.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::Error;

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

    /// A custom limit. `rate` must be above 0 and `burst` at least 1.
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
        limit: RateLimit,
        state: Mutex<Gcra>,
    },
    /// In a file, shared by every process on the machine that uses it.
    Shared { limit: RateLimit, path: PathBuf },
}

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
        }
    }

    /// Reserves a slot now; returns the wait before sending.
    pub fn reserve(&self) -> Result<Duration, Error> {
        self.update(|gcra, limit, now| gcra.reserve(limit, now))
            .map(secs)
    }

    /// Records a `QUERY_LIMIT_EXCEEDED` from the portal.
    pub fn saturate(&self) -> Result<(), Error> {
        self.update(|gcra, limit, now| {
            gcra.saturate(limit, now);
            0.0
        })
        .map(|_| ())
    }

    fn update(&self, f: impl FnOnce(&mut Gcra, RateLimit, f64) -> f64) -> Result<f64, Error> {
        let now = unix_now();
        match self {
            Pacer::Off => Ok(0.0),
            Pacer::Local { limit, state } => {
                let mut gcra = state.lock().unwrap_or_else(|e| e.into_inner());
                Ok(f(&mut gcra, limit.with_headroom(), now))
            }
            Pacer::Shared { limit, path } => with_locked_state(path, |gcra| {
                // Reservations queue up ahead of now, but not by an hour: that is a damaged file
                // or a clock that jumped back, and would make every caller wait for ever.
                gcra.tat = gcra.tat.min(now + 3600.0);
                f(gcra, limit.with_headroom(), now)
            }),
        }
    }
}

/// Reads, changes and writes the bucket in `path` under an exclusive lock.
fn with_locked_state(path: &Path, f: impl FnOnce(&mut Gcra) -> f64) -> Result<f64, Error> {
    let io = |what: &str, e: std::io::Error| {
        Error::invalid(
            "rate limit state",
            format!("cannot {what} {}: {e}", path.display()),
        )
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| io("create the directory of", e))?;
    }
    let mut file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| io("open", e))?;
    file.lock().map_err(|e| io("lock", e))?;
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(|e| io("read", e))?;
    // A missing or damaged state is an empty bucket; the portal corrects us if it was not.
    let tat: f64 = text.trim().parse().unwrap_or(0.0);
    let mut gcra = Gcra {
        tat: if tat.is_finite() && tat >= 0.0 {
            tat
        } else {
            0.0
        },
    };
    let result = f(&mut gcra);
    file.seek(SeekFrom::Start(0)).map_err(|e| io("rewind", e))?;
    file.set_len(0).map_err(|e| io("truncate", e))?;
    file.write_all(format!("{:.6}\n", gcra.tat).as_bytes())
        .map_err(|e| io("write", e))?;
    // Dropping the file releases the lock.
    Ok(result)
}

/// The latest operating-time figures per method.
#[derive(Debug)]
pub struct OperatingBudget {
    /// Seconds of server time a method may use per window.
    pub budget: f64,
    /// Pause a method this many seconds before its budget is spent.
    pub margin: f64,
    methods: Mutex<HashMap<String, Usage>>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Usage {
    operating: f64,
    reset_at: f64,
    blocked_until: f64,
}

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
        OperatingBudget::new(480.0)
    }
}

impl OperatingBudget {
    /// A budget of `budget` seconds per method per 10 minutes.
    pub fn new(budget: f64) -> Self {
        OperatingBudget {
            budget,
            margin: 5.0,
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
        // The window is ten minutes: a reset further away than that is not to be believed.
        let reset_at = reset_at.min(unix_now() + 600.0);
        let mut methods = self.methods.lock().unwrap_or_else(|e| e.into_inner());
        let usage = methods.entry(Self::key(method)).or_insert(Usage {
            operating,
            reset_at,
            blocked_until: 0.0,
        });
        // The portal reports a running total: keep the latest, never add them up.
        usage.operating = operating;
        usage.reset_at = reset_at;
    }

    /// Records a 429 `OPERATION_TIME_LIMIT`: the method stays blocked until its reset time
    /// (or a minute, when no reset time was ever reported).
    pub fn blocked(&self, method: &str, now: f64) {
        let mut methods = self.methods.lock().unwrap_or_else(|e| e.into_inner());
        let usage = methods.entry(Self::key(method)).or_insert(Usage {
            operating: 0.0,
            reset_at: 0.0,
            blocked_until: 0.0,
        });
        usage.blocked_until = if usage.reset_at > now {
            usage.reset_at
        } else {
            now + 60.0
        };
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

fn secs(s: f64) -> Duration {
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

    #[test]
    fn shared_state_is_one_bucket_for_every_user_of_the_file() {
        let dir = std::env::temp_dir().join(format!("bitrix24-pacer-{}", std::process::id()));
        let path = dir.join("bucket");
        let limit = RateLimit::new(0.001, 3.0).unwrap();
        let a = Pacer::shared(limit, &path);
        let b = Pacer::shared(limit, &path);
        // Burst 3 with one of headroom: two go at once, the third waits, whoever sends it.
        assert_eq!(a.reserve().unwrap(), Duration::ZERO);
        assert_eq!(b.reserve().unwrap(), Duration::ZERO);
        assert!(
            a.reserve().unwrap() > Duration::from_secs(100),
            "the third waits, whoever sends it"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_damaged_state_file_is_an_empty_bucket() {
        let dir = std::env::temp_dir().join(format!("bitrix24-damaged-{}", std::process::id()));
        let path = dir.join("bucket");
        std::fs::create_dir_all(&dir).unwrap();
        let limit = RateLimit::new(2.0, 3.0).unwrap();
        for text in ["inf", "NaN", "-5", "garbage"] {
            std::fs::write(&path, text).unwrap();
            let wait = Pacer::shared(limit, &path).reserve().unwrap();
            assert!(wait < Duration::from_secs(2), "{text}: waited {wait:?}");
        }
        // A time far in the future (a clock that jumped back) waits an hour at most.
        std::fs::write(&path, "1e300").unwrap();
        let wait = Pacer::shared(limit, &path).reserve().unwrap();
        assert!(wait <= Duration::from_secs(3601), "waited {wait:?}");
        std::fs::remove_dir_all(dir).unwrap();
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
}
