//! OAuth tokens shared through Redis: one token pair and one refresh lock for every host of
//! an application.
//!
//! A refresh token works once, so hosts that each keep their own pair spend each other's
//! tokens: the second host to refresh gets `invalid_grant`. [`RedisTokenStore`] keeps the pair
//! under one key (replaced by one `SET`, so a reader sees the old pair or the new one) and
//! implements the [`TokenStore`] lock as a Redis lock: `SET NX PX` with a value only its
//! holder knows, extended while held, and released by compare-and-delete so that a holder
//! whose lock expired can never delete its successor's. A holder that dies stops extending
//! it, and the lock expires after [`LOCK_TTL`].
//!
//! While Redis holds no pair yet, [`RedisTokenStore::seeded_from`] reads a local token file
//! instead, so that moving a host onto a shared store keeps the pair it last refreshed. The
//! local file is never preferred once Redis has a pair: its refresh token may be spent.
//!
//! The [`TokenStore`] trait is synchronous (the client calls it off the async runtime), so
//! this uses the Redis client's blocking connections, each call bounded by a few seconds.

use std::io;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::oauth::{
    MAX_STORE_BYTES, StoreLock, TokenStore, Tokens, tokens_from_json, tokens_to_json,
};
use crate::redis_store::{RedisTarget, describe};
use crate::{Error, FileTokenStore};

/// How long a lock outlives its holder's last sign of life.
pub const LOCK_TTL: Duration = Duration::from_secs(10);
/// Each Redis call's bound: a stalled Redis is an error, not a hang.
const STORE_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest wait for another process's refresh (it holds the lock while it talks to the
/// OAuth server, a few seconds at most).
const LOCK_WAIT: Duration = Duration::from_secs(60);
const LOCK_POLL: Duration = Duration::from_millis(50);

/// Extends the lock only while it is still this holder's.
const EXTEND: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0";

/// Deletes the lock only while it is still this holder's.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

/// An OAuth token pair and its refresh lock in Redis.
///
/// ```no_run
/// # async fn run() -> Result<(), bitrix24::Error> {
/// use bitrix24::{Client, OAuthConfig, RedisTarget, RedisTokenStore};
///
/// let redis = RedisTarget::parse("redis://10.0.0.5:6379/0", None)?;
/// let store = RedisTokenStore::new(&redis, "myapp:{portal.bitrix24.com}:oauth")?;
/// let oauth = OAuthConfig::new("app.5f1c2a.12345678", "CLIENT_SECRET")
///     .refresh_token("REFRESH_TOKEN")
///     .store(store);
/// let client = Client::builder("portal.bitrix24.com").oauth(oauth).build()?;
/// client.notify().personal(10, "Backup finished").send().await?;
/// # Ok(()) }
/// ```
pub struct RedisTokenStore {
    client: redis::Client,
    shown: String,
    key: String,
    lock_key: String,
    seed: Option<FileTokenStore>,
}

impl std::fmt::Debug for RedisTokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTokenStore")
            .field("store", &self.shown)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl RedisTokenStore {
    /// The pair at `key` (and its lock at `key:lock`) in the Redis at `target`. Nothing is
    /// contacted until the client first needs its tokens.
    pub fn new(target: &RedisTarget, key: impl Into<String>) -> Result<RedisTokenStore, Error> {
        let key = key.into();
        Ok(RedisTokenStore {
            client: target.client()?,
            shown: target.shown(),
            lock_key: format!("{key}:lock"),
            key,
            seed: None,
        })
    }

    /// Reads `file` while Redis holds no pair yet (the pair this host refreshed last).
    pub fn seeded_from(mut self, file: FileTokenStore) -> RedisTokenStore {
        self.seed = Some(file);
        self
    }

    fn connection(&self) -> io::Result<redis::Connection> {
        let connection = self
            .client
            .get_connection_with_timeout(STORE_TIMEOUT)
            .map_err(|e| self.failed(&e))?;
        connection
            .set_read_timeout(Some(STORE_TIMEOUT))
            .and_then(|()| connection.set_write_timeout(Some(STORE_TIMEOUT)))
            .map_err(|e| self.failed(&e))?;
        Ok(connection)
    }

    /// Errors reach the user behind [`TokenStore::describe`], which names the store.
    fn failed(&self, e: &redis::RedisError) -> io::Error {
        io::Error::other(describe(e))
    }
}

impl TokenStore for RedisTokenStore {
    fn load(&self) -> io::Result<Option<Tokens>> {
        let mut connection = self.connection()?;
        // A pair is under a kilobyte: whatever else is under the key is not read whole.
        let (len, head): (u64, Vec<u8>) = redis::pipe()
            .cmd("STRLEN")
            .arg(&self.key)
            .cmd("GETRANGE")
            .arg(&self.key)
            .arg(0)
            .arg(MAX_STORE_BYTES)
            .query(&mut connection)
            .map_err(|e| self.failed(&e))?;
        let damaged = |why: String| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{why}; delete the key to start again from the configured refresh token"),
            )
        };
        if len > MAX_STORE_BYTES {
            return Err(damaged(format!("not a token pair ({len} bytes)")));
        }
        match (len > 0).then_some(head) {
            Some(bytes) => {
                let text = String::from_utf8(bytes)
                    .map_err(|_| damaged("not a token pair (not UTF-8)".into()))?;
                tokens_from_json(&text).map(Some)
            }
            None => match &self.seed {
                Some(file) => file.load(),
                None => Ok(None),
            },
        }
    }

    fn save(&self, tokens: &Tokens) -> io::Result<()> {
        let json = tokens_to_json(tokens)?;
        let mut connection = self.connection()?;
        redis::cmd("SET")
            .arg(&self.key)
            .arg(json)
            .query::<()>(&mut connection)
            .map_err(|e| self.failed(&e))
    }

    fn lock(&self) -> io::Result<StoreLock> {
        let mut connection = self.connection()?;
        let holder = format!("{}-{:016x}", std::process::id(), fastrand::u64(..));
        let ttl_ms = LOCK_TTL.as_millis() as u64;
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            let taken: Option<String> = redis::cmd("SET")
                .arg(&self.lock_key)
                .arg(&holder)
                .arg("NX")
                .arg("PX")
                .arg(ttl_ms)
                .query(&mut connection)
                .map_err(|e| self.failed(&e))?;
            if taken.is_some() {
                break;
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "another process has held the refresh lock {} for {} s; if none runs, delete that key",
                        self.lock_key,
                        LOCK_WAIT.as_secs()
                    ),
                ));
            }
            std::thread::sleep(LOCK_POLL);
        }
        Ok(StoreLock::new(HeldLock::start(
            connection,
            self.lock_key.clone(),
            holder,
        )))
    }

    fn describe(&self) -> String {
        format!("token store {} (key {})", self.shown, self.key)
    }
}

/// A held Redis lock: a thread extends it until the guard is dropped, then releases it.
struct HeldLock {
    stop: Option<mpsc::Sender<()>>,
    keeper: Option<JoinHandle<()>>,
}

impl HeldLock {
    fn start(mut connection: redis::Connection, key: String, holder: String) -> HeldLock {
        let (stop, stopped) = mpsc::channel::<()>();
        let keeper = std::thread::spawn(move || {
            let extend = redis::Script::new(EXTEND);
            let ttl_ms = LOCK_TTL.as_millis() as u64;
            // Until the guard is dropped (or gone with a panicking holder).
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(LOCK_TTL / 3) {
                // A missed extension only shortens the lock; the next one may still land.
                let _ = extend
                    .key(&key)
                    .arg(&holder)
                    .arg(ttl_ms)
                    .invoke::<i64>(&mut connection);
            }
            // If this fails the lock expires by itself after LOCK_TTL.
            let _ = redis::Script::new(RELEASE)
                .key(&key)
                .arg(&holder)
                .invoke::<i64>(&mut connection);
        });
        HeldLock {
            stop: Some(stop),
            keeper: Some(keeper),
        }
    }
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(keeper) = self.keeper.take() {
            let _ = keeper.join();
        }
    }
}
