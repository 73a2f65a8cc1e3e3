//! The rate-limit bucket shared through Redis, for processes on several machines.
//!
//! A state file shares a bucket between the processes of one machine; a fleet behind one
//! egress IP (several hosts sending through one NAT) is still one bucket to the portal.
//! [`RedisBucket`] keeps the same state as the file (a level in requests and when it was
//! measured) in a Redis hash, changed by one Lua script per reservation, so a reservation is
//! atomic without a lock round trip. The script reads the clock with Redis `TIME`: hosts whose
//! clocks disagree still drain one bucket at one pace.
//!
//! When Redis goes away mid-run, pacing goes on locally from the last level Redis reported
//! (drained by this machine's clock), with one [`Notice::StoreLost`]; Redis is asked again at
//! most once a second, and when it answers the local level is merged in (the bucket is never
//! emptier than this process knows it to be) with a [`Notice::StoreBack`].
//!
//! The same script call reads the operating-time figures hosts shared for the method about to
//! be sent (a hash beside the bucket, one field per application or webhook and method), so
//! that a host pauses a method another host has spent before sending it. A host shares its
//! figures only when they pause the method, or after a 429 `OPERATION_TIME_LIMIT`: one round
//! trip then, none on ordinary answers. While Redis is lost each host goes by its own figures.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::error::Error;
use crate::limits::{Level, Notice, RateLimit, Reservation, StoreNotice, Usage, secs, unix_now};

/// Longest wait for one answer from Redis before pacing goes local.
const STORE_TIMEOUT: Duration = Duration::from_millis(800);
/// How often Redis is asked again while it is lost.
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// The script: `KEYS[1]` the bucket, `KEYS[2]` the operating-time figures hosts shared (a
/// hash, one field per method billed); `ARGV` rate, burst, operation (`reserve`, `release`,
/// `saturate`), a floor for the level (the local level after an outage, else 0) and the
/// field of the method billed (empty for none). Returns whether a slot was taken, the wait,
/// the level after, as strings (Redis would truncate numbers to integers), and that method's
/// shared figures (empty when none): reading them costs no round trip of its own.
const SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local op = ARGV[3]
local floor = tonumber(ARGV[4]) or 0
local state = redis.call('HMGET', KEYS[1], 'level', 'at')
local level = tonumber(state[1])
local at = tonumber(state[2])
-- A state that cannot be right (not a number, beyond any bucket) is an empty bucket.
if level == nil or level ~= level or level < 0 or level > math.max(1e6, burst) then level = 0 end
if at == nil or at ~= at or at > now then at = now end
level = level - (now - at) * rate
if level < 0 then level = 0 end
if level > burst then level = burst end
if floor == floor and floor > level then level = math.min(floor, burst) end
local booked = 0
local wait = 0
if op == 'reserve' then
  local paced = math.max(burst - 1, 1)
  local after = level + 1
  if after <= burst + 1e-9 then
    level = after
    booked = 1
    wait = (after - paced) / rate
  else
    wait = (after - burst) / rate
  end
elseif op == 'release' then
  level = math.max(level - 1, 0)
elseif op == 'saturate' then
  level = math.max(level, burst)
end
redis.call('HSET', KEYS[1], 'level', string.format('%.9f', level), 'at', string.format('%.6f', now))
redis.call('EXPIRE', KEYS[1], math.ceil(math.min(burst / rate, 86400) + 60))
local shared = ''
if ARGV[5] ~= nil and ARGV[5] ~= '' then
  shared = redis.call('HGET', KEYS[2], ARGV[5]) or ''
end
return {booked, string.format('%.9f', wait), string.format('%.9f', level), shared}
"#;

/// What [`SCRIPT`] answers: booked (1 or 0), the wait, the level and the shared figures.
type ScriptAnswer = (i64, String, String, String);

/// Shares one method's operating-time figures: `KEYS[1]` the hash of [`SCRIPT`]'s `KEYS[2]`,
/// `ARGV` the field and the figures ([`Usage::to_wire`]). Figures seen before the ones
/// already there (the 4th number) do not replace them; a block holds until the later of the
/// two (the 3rd). The hash outlives one window a little, as nothing in it matters longer.
const SHARE_SCRIPT: &str = r#"
local function numbers(text)
  local n = {}
  for x in string.gmatch(text or '', '%S+') do n[#n + 1] = tonumber(x) end
  return n
end
local new = numbers(ARGV[2])
local old = numbers(redis.call('HGET', KEYS[1], ARGV[1]))
local value = ARGV[2]
if #old == 4 and #new == 4 then
  local newest = new
  if old[4] > new[4] then newest = old end
  value = string.format('%.6f %.3f %.3f %.6f', newest[1], newest[2], math.max(old[3], new[3]), newest[4])
end
redis.call('HSET', KEYS[1], ARGV[1], value)
redis.call('EXPIRE', KEYS[1], 660)
return 1
"#;

/// Where a Redis bucket is and how to log in: a `redis://` or `rediss://` URL, and a
/// password that overrides the URL's.
#[derive(Clone)]
pub struct RedisTarget {
    url: url::Url,
    password: Option<secrecy::SecretString>,
}

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTarget")
            .field("url", &self.shown())
            .field("password", &self.has_password().then_some(crate::MASK))
            .finish()
    }
}

impl RedisTarget {
    /// Parses `url` (`redis://[:PASSWORD@]HOST[:PORT][/DB]`, or `rediss://` for TLS). Errors
    /// never repeat the URL's password.
    pub fn parse(url: &str, password: Option<secrecy::SecretString>) -> Result<Self, Error> {
        let bad = |why: &str| Error::invalid("limit store", why.to_string());
        let parsed = url::Url::parse(url.trim()).map_err(|e| {
            bad(&format!(
                "is not a URL ({e}); give redis://HOST:PORT/DB or rediss://HOST:PORT/DB"
            ))
        })?;
        if !matches!(parsed.scheme(), "redis" | "rediss") {
            return Err(bad(&format!(
                "the scheme {:?} is not redis or rediss; give redis://HOST:PORT/DB",
                parsed.scheme()
            )));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(bad("names no host; give redis://HOST:PORT/DB"));
        }
        let db = parsed.path().trim_start_matches('/');
        if !db.is_empty() && db.parse::<u16>().is_err() {
            return Err(bad(&format!(
                "the database {db:?} is not a number; give redis://HOST:PORT/DB, DB from 0"
            )));
        }
        Ok(RedisTarget {
            url: parsed,
            password,
        })
    }

    fn has_password(&self) -> bool {
        self.password.is_some() || self.url.password().is_some()
    }

    /// The URL with any password masked, for messages.
    pub fn shown(&self) -> String {
        let mut shown = self.url.clone();
        if shown.password().is_some() {
            let _ = shown.set_password(Some(crate::MASK));
        }
        shown.to_string()
    }

    /// A redis-rs client for this target, password applied, for callers that keep data of
    /// their own in the same store (the relay's queue). Installs rustls' ring provider
    /// first, as `rediss://` needs one.
    pub fn client(&self) -> Result<redis::Client, Error> {
        use redis::IntoConnectionInfo;
        let _ = rustls::crypto::ring::default_provider().install_default();
        use secrecy::ExposeSecret;
        let mut info = self.url.clone().into_connection_info().map_err(|e| {
            Error::invalid("limit store", format!("{}: {}", self.shown(), e.category()))
        })?;
        if let Some(password) = &self.password {
            let settings = info
                .redis_settings()
                .clone()
                .set_password(password.expose_secret());
            info = info.set_redis_settings(settings);
        }
        redis::Client::open(info).map_err(|e| {
            Error::invalid("limit store", format!("{}: {}", self.shown(), e.category()))
        })
    }
}

/// The last level Redis reported, and whether Redis is lost.
#[derive(Debug)]
struct Fallback {
    level: f64,
    /// When `level` was measured, on this machine's clock.
    at: f64,
    lost: bool,
    retry_at: Option<Instant>,
}

/// A rate-limit bucket in Redis, shared by every process that uses the same key.
pub struct RedisBucket {
    limit: RateLimit,
    key: String,
    /// `<key>:operating`: the operating-time figures hosts shared.
    operating_key: String,
    shown: String,
    connection: ConnectionManager,
    script: redis::Script,
    share_script: redis::Script,
    fallback: Mutex<Fallback>,
}

impl std::fmt::Debug for RedisBucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBucket")
            .field("limit", &self.limit)
            .field("key", &self.key)
            .field("store", &self.shown)
            .finish_non_exhaustive()
    }
}

/// The one-line reason a Redis call failed, with no address or password in it.
pub fn describe(e: &redis::RedisError) -> String {
    if e.is_timeout() {
        "no answer in time".into()
    } else if e.to_string().contains("certificate") {
        // Only a fixed phrase: the message itself may name the address.
        "its TLS certificate is not trusted (trust its CA with SSL_CERT_FILE)".into()
    } else if e.is_connection_refusal() {
        "connection refused".into()
    } else if e.is_io_error() || e.is_connection_dropped() {
        "connection lost".into()
    } else {
        match e.code() {
            Some(code) => format!("Redis refused: {code}"),
            None => e.category().to_string(),
        }
    }
}

impl RedisBucket {
    /// Connects to `target` and checks it answers, within a few seconds; the bucket is the
    /// hash at `key`. An error is one line naming the store (password masked).
    pub async fn connect(
        target: &RedisTarget,
        limit: RateLimit,
        key: impl Into<String>,
    ) -> Result<RedisBucket, Error> {
        let shown = target.shown();
        let unreachable =
            |why: String| Error::invalid("limit store", format!("{shown} is unreachable: {why}"));
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(STORE_TIMEOUT))
            .set_response_timeout(Some(STORE_TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        // rediss:// needs a rustls provider, and the store may be connected before any client
        // installs one; one the application installed first is kept.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = target.client()?;
        let connecting = ConnectionManager::new_with_config(client, config);
        let mut connection = tokio::time::timeout(STORE_TIMEOUT * 4, connecting)
            .await
            .map_err(|_| unreachable("no answer in time".into()))?
            .map_err(|e| unreachable(describe(&e)))?;
        let pong: Result<String, _> = redis::cmd("PING").query_async(&mut connection).await;
        pong.map_err(|e| unreachable(describe(&e)))?;
        let key = key.into();
        Ok(RedisBucket {
            limit,
            operating_key: format!("{key}:operating"),
            key,
            shown,
            connection,
            script: redis::Script::new(SCRIPT),
            share_script: redis::Script::new(SHARE_SCRIPT),
            fallback: Mutex::new(Fallback {
                level: 0.0,
                at: unix_now(),
                lost: false,
                retry_at: None,
            }),
        })
    }

    /// The rate and burst paced to.
    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    fn fallback(&self) -> std::sync::MutexGuard<'_, Fallback> {
        self.fallback.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The local level now: the last known one drained by this machine's clock.
    fn local_level(&self, fallback: &Fallback, now: f64) -> f64 {
        (fallback.level - (now - fallback.at).max(0.0) * self.limit.rate)
            .clamp(0.0, self.limit.burst)
    }

    /// Runs `op` in Redis, or locally while Redis is lost. Never fails: a lost store is a
    /// notice, not an error.
    async fn run(
        &self,
        op: &str,
        field: &str,
        notice: &(dyn Fn(&Notice) + Sync),
    ) -> (Reservation, Option<Usage>) {
        let (ask, floor) = {
            let f = self.fallback();
            let ask = !f.lost || f.retry_at.is_none_or(|at| Instant::now() >= at);
            let floor = if f.lost {
                self.local_level(&f, unix_now())
            } else {
                0.0
            };
            (ask, floor)
        };
        if ask {
            let mut connection = self.connection.clone();
            let mut call = self.script.key(&self.key);
            call.key(&self.operating_key)
                .arg(self.limit.rate.to_string())
                .arg(self.limit.burst.to_string())
                .arg(op)
                .arg(format!("{floor:.9}"))
                .arg(field);
            let answer: Result<Result<ScriptAnswer, redis::RedisError>, _> =
                tokio::time::timeout(STORE_TIMEOUT, call.invoke_async(&mut connection)).await;
            let answer = match answer {
                Ok(Ok(answer)) => parse_answer(answer),
                Ok(Err(e)) => Err(describe(&e)),
                Err(_) => Err("no answer in time".into()),
            };
            match answer {
                Ok((booked, wait, level, shared)) => {
                    let back = {
                        let mut f = self.fallback();
                        let back = std::mem::replace(&mut f.lost, false);
                        f.level = level;
                        f.at = unix_now();
                        f.retry_at = None;
                        back
                    };
                    if back {
                        notice(&Notice::StoreBack(StoreNotice {
                            store: self.shown.clone(),
                            problem: String::new(),
                        }));
                    }
                    let reservation = if booked {
                        Reservation::Go(secs(wait))
                    } else {
                        Reservation::Later(secs(wait))
                    };
                    // Figures that cannot be right are none: local figures only.
                    return (reservation, Usage::from_wire(&shared, unix_now()));
                }
                Err(problem) => self.lost(problem, notice),
            }
        }
        // Locally, with the same arithmetic as the shared state file.
        let now = unix_now();
        let mut f = self.fallback();
        let mut level = Level {
            requests: self.local_level(&f, now),
        };
        let result = match op {
            "reserve" => level.reserve(self.limit),
            "release" => {
                level.requests = (level.requests - 1.0).max(0.0);
                Reservation::Go(Duration::ZERO)
            }
            _ => {
                level.requests = level.requests.max(self.limit.burst);
                Reservation::Go(Duration::ZERO)
            }
        };
        f.level = level.requests;
        f.at = now;
        (result, None)
    }

    /// Reserves a slot, as [`Pacer::reserve`](crate::Pacer::reserve) does for a state file.
    pub async fn reserve(&self, notice: &(dyn Fn(&Notice) + Sync)) -> Reservation {
        self.run("reserve", "", notice).await.0
    }

    /// [`RedisBucket::reserve`], with the operating-time figures other hosts shared under
    /// `field` read in the same script call.
    pub(crate) async fn reserve_reading(
        &self,
        field: &str,
        notice: &(dyn Fn(&Notice) + Sync),
    ) -> (Reservation, Option<Usage>) {
        self.run("reserve", field, notice).await
    }

    /// Gives back a slot taken by [`RedisBucket::reserve`] for a request not sent.
    pub async fn release(&self, notice: &(dyn Fn(&Notice) + Sync)) {
        self.run("release", "", notice).await;
    }

    /// Records a `QUERY_LIMIT_EXCEEDED` from the portal: the bucket is full from now.
    pub async fn saturate(&self, notice: &(dyn Fn(&Notice) + Sync)) {
        self.run("saturate", "", notice).await;
    }

    /// Shares this process's operating-time figures under `field` with the other hosts.
    /// While the store is lost nothing is shared (each host has its own figures, as without
    /// a store); a failure here is the same lost store the next reservation would find.
    pub(crate) async fn share(&self, field: &str, usage: Usage, notice: &(dyn Fn(&Notice) + Sync)) {
        if self.fallback().lost {
            return;
        }
        let mut connection = self.connection.clone();
        let mut call = self.share_script.key(&self.operating_key);
        call.arg(field).arg(usage.to_wire());
        let answer: Result<Result<i64, redis::RedisError>, _> =
            tokio::time::timeout(STORE_TIMEOUT, call.invoke_async(&mut connection)).await;
        let problem = match answer {
            Ok(Ok(_)) => return,
            Ok(Err(e)) => describe(&e),
            Err(_) => "no answer in time".into(),
        };
        self.lost(problem, notice);
    }

    /// Goes local until Redis is asked again in [`RETRY_EVERY`]; said once per outage.
    fn lost(&self, problem: String, notice: &(dyn Fn(&Notice) + Sync)) {
        let first = {
            let mut f = self.fallback();
            f.retry_at = Some(Instant::now() + RETRY_EVERY);
            !std::mem::replace(&mut f.lost, true)
        };
        if first {
            notice(&Notice::StoreLost(StoreNotice {
                store: self.shown.clone(),
                problem,
            }));
        }
    }
}

fn parse_answer(
    (booked, wait, level, shared): ScriptAnswer,
) -> Result<(bool, f64, f64, String), String> {
    // A wait may be infinite (a tiny rate); a level never is.
    let wait = wait.parse::<f64>().ok().filter(|x| !x.is_nan());
    let level = level.parse::<f64>().ok().filter(|x| x.is_finite());
    match (wait, level) {
        (Some(wait), Some(level)) => Ok((booked == 1, wait, level, shared)),
        _ => Err("the script answered something that is not a bucket".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_checked_and_never_show_a_password() {
        let t = RedisTarget::parse("redis://:hunter2-secret@10.0.0.5:6380/2", None).unwrap();
        assert_eq!(t.shown(), "redis://:***@10.0.0.5:6380/2");
        assert!(!format!("{t:?}").contains("hunter2"));
        let t = RedisTarget::parse(
            "rediss://cache.example:6379/0",
            Some("env-secret-77".to_string().into()),
        )
        .unwrap();
        assert!(!format!("{t:?}").contains("env-secret-77"));
        for (url, want) in [
            ("http://:hunter2-secret@h/0", "not redis or rediss"),
            ("redis://:hunter2-secret@h/x", "is not a number"),
            ("redis://:hunter2-secret@h/99999999", "is not a number"),
            ("not a url hunter2-secret", "is not a URL"),
        ] {
            let err = RedisTarget::parse(url, None).unwrap_err().to_string();
            assert!(err.contains(want), "{url}: {err}");
            assert!(!err.contains("hunter2"), "{err}");
            assert_eq!(err.lines().count(), 1);
        }
    }

    #[test]
    fn the_scripts_answer_is_checked() {
        assert_eq!(
            parse_answer((1, "0.5".into(), "9".into(), "".into())),
            Ok((true, 0.5, 9.0, "".into()))
        );
        assert_eq!(
            parse_answer((0, "inf".into(), "3".into(), "1 2 3 4".into())),
            Ok((false, f64::INFINITY, 3.0, "1 2 3 4".into()))
        );
        assert!(parse_answer((1, "nan".into(), "1".into(), "".into())).is_err());
        assert!(parse_answer((1, "1".into(), "inf".into(), "".into())).is_err());
    }
}
