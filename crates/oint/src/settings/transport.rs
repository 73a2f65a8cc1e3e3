//! How `oint` talks to a portal: its rate limit, timeouts and attempts.
//!
//! The portal counts every request from this machine against one bucket, so by default every
//! `oint` process that talks to the same portal shares one client-side bucket through a small
//! state file (under the data directory, or `OINT_STATE_DIR`): cron jobs and CI steps started
//! at once still never trip the limit together. Settings come from the global flags, then the
//! config file's portal (`plan`, `rate`, `burst`), then the defaults (the standard plan).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bitrix24::{
    ClientBuilder, HttpPolicy, Notice, OAuthConfig, Pacer, Portal, RateLimit, RetryPolicy,
    WaitReason,
};

use crate::flags::LimitFlags;
use crate::ranges::{ATTEMPTS, BURST, CONNECT_TIMEOUT, OPERATING_BUDGET, RATE, Range, TIMEOUT};

/// Rate-limit settings of a config-file portal, and the limit store's from the file and the
/// environment. Its `Debug` masks the store's URL and password.
#[derive(Clone, Default, PartialEq)]
pub struct EntryLimits {
    pub plan: Option<String>,
    pub rate: Option<f64>,
    pub burst: Option<f64>,
    /// `limit_store` of the portal, else of the file's top level.
    pub limit_store: Option<String>,
    /// OINT_LIMIT_STORE_PASSWORD(_FILE).
    pub store_password: Option<String>,
}

impl std::fmt::Debug for EntryLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntryLimits")
            .field("plan", &self.plan)
            .field("rate", &self.rate)
            .field("burst", &self.burst)
            .field("limit_store", &crate::secrets::masked(&self.limit_store))
            .field(
                "store_password",
                &crate::secrets::masked(&self.store_password),
            )
            .finish()
    }
}

/// Where the rate-limit bucket is shared between machines (`--limit-store`).
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub struct LimitStore {
    #[cfg(feature = "redis")]
    target: bitrix24::RedisTarget,
    /// `--limit-store-fallback local`: pace locally when the store is unreachable at start.
    fallback_local: bool,
}

/// Resolved transport settings.
#[derive(Debug, Clone)]
pub struct Transport {
    flags: LimitFlags,
    limit: RateLimit,
    connect_timeout: Duration,
    timeout: Duration,
    attempts: Option<u32>,
    /// `--operating-budget`: seconds per method per 10 minutes.
    operating_budget: f64,
    /// Where the library's notices go instead of stderr (`oint serve` counts them).
    notices: Option<NoticeSink>,
    /// `--limit-store` (always `None` in a build without Redis, which refuses it).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    store: Option<LimitStore>,
}

/// A caller's handler for every wait and state reset of the client, however short.
#[derive(Clone)]
pub struct NoticeSink(pub Arc<dyn Fn(&Notice) + Send + Sync>);

impl std::fmt::Debug for NoticeSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NoticeSink")
    }
}

impl Transport {
    /// From the global flags alone.
    pub fn from_flags(flags: &LimitFlags) -> Result<Transport, String> {
        Transport::over_entry(flags, &EntryLimits::default())
    }

    /// Flags first, then the config file's portal, then the standard plan.
    pub fn over_entry(flags: &LimitFlags, entry: &EntryLimits) -> Result<Transport, String> {
        let plan = flags
            .plan
            .as_deref()
            .or(entry.plan.as_deref())
            .unwrap_or("standard");
        let base = RateLimit::plan(plan).map_err(|e| format!("--plan: {}", message(e)))?;
        let rate = flags.rate.or(entry.rate).unwrap_or(base.rate);
        let burst = flags.burst.or(entry.burst).unwrap_or(base.burst);
        let rate = RATE.check(rate).map_err(|e| format!("--rate: {e}"))?;
        let burst = BURST.check(burst).map_err(|e| format!("--burst: {e}"))?;
        let limit = RateLimit::new(rate, burst).map_err(|e| match e {
            bitrix24::Error::InvalidArgument { field, message } => format!("--{field}: {message}"),
            other => other.to_string(),
        })?;
        let seconds = |flag: &str, range: Range, value: Option<f64>, default: Duration| match value
        {
            None => Ok(default),
            Some(s) => range
                .check(s)
                .map(Duration::from_secs_f64)
                .map_err(|e| format!("{flag}: {e}")),
        };
        let connect_timeout = seconds(
            "--connect-timeout",
            CONNECT_TIMEOUT,
            flags.connect_timeout,
            bitrix24::DEFAULT_CONNECT_TIMEOUT,
        )?;
        let timeout = seconds(
            "--timeout",
            TIMEOUT,
            flags.timeout,
            bitrix24::DEFAULT_TIMEOUT,
        )?;
        if let Some(n) = flags.attempts
            && !ATTEMPTS.contains(&n)
        {
            return Err(format!(
                "--attempts: must be at least {} and at most {} (the first attempt counts)",
                ATTEMPTS.start(),
                ATTEMPTS.end()
            ));
        }
        let operating_budget = OPERATING_BUDGET
            .check(
                flags
                    .operating_budget
                    .unwrap_or(bitrix24::OperatingBudget::CLOUD),
            )
            .map_err(|e| format!("--operating-budget: {e}"))?;
        let store = limit_store(flags, entry)?;
        Ok(Transport {
            flags: flags.clone(),
            limit,
            connect_timeout,
            timeout,
            attempts: flags.attempts,
            operating_budget,
            notices: None,
            store,
        })
    }

    /// The same flags over a config-file portal's settings.
    pub fn with_entry(&self, entry: &EntryLimits) -> Result<Transport, String> {
        Transport::over_entry(&self.flags, entry)
    }

    /// Every notice (each wait, however short) goes to `sink` instead of a line on stderr.
    pub fn with_notices(mut self, sink: NoticeSink) -> Transport {
        self.notices = Some(sink);
        self
    }

    /// The rate limit the client paces itself by.
    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    fn notices(&self, builder: ClientBuilder) -> ClientBuilder {
        match &self.notices {
            Some(sink) => {
                let sink = sink.0.clone();
                builder
                    .notice_threshold(Duration::ZERO)
                    .on_notice(move |n| sink(n))
            }
            None => builder.on_notice(print_notice),
        }
    }

    /// Applies the settings to a client for `url`.
    pub fn configure(
        &self,
        builder: ClientBuilder,
        url: &str,
        token: Option<&str>,
    ) -> ClientBuilder {
        // --attempts bounds every retry, QUERY_LIMIT_EXCEEDED included; the deadline too.
        let retry =
            RetryPolicy::attempts(self.attempts.unwrap_or(RetryPolicy::default().max_attempts));
        let pacer = match bucket_path(url, token) {
            Some(path) => Pacer::shared(self.limit, path),
            None => Pacer::local(self.limit),
        };
        self.notices(
            builder
                .pacer(pacer)
                .retry(retry)
                .operating_budget(self.operating_budget)
                .connect_timeout(self.connect_timeout)
                .timeout(self.timeout),
        )
    }

    /// A bucket shared through the limit store for the portal at `url`, when one is set. An
    /// unreachable store is an error, or with `--limit-store-fallback local` a warning and
    /// `None` (the file or local bucket of [`Transport::configure`] stays).
    #[cfg(feature = "redis")]
    pub async fn store_pacer(
        &self,
        url: &str,
        token: Option<&str>,
    ) -> Result<Option<Pacer>, String> {
        let Some(store) = &self.store else {
            return Ok(None);
        };
        let key = format!("oint:{{{}}}:bucket", store_authority(url, token)?);
        match bitrix24::RedisBucket::connect(&store.target, self.limit, key).await {
            Ok(bucket) => Ok(Some(Pacer::Redis(bucket))),
            Err(e) if store.fallback_local => {
                let _ = std::io::Write::write_all(
                    &mut std::io::stderr(),
                    format!(
                        "oint: warning: --limit-store: {}; pacing with this machine's bucket (--limit-store-fallback local)\n",
                        message(e)
                    )
                    .as_bytes(),
                );
                Ok(None)
            }
            Err(e) => Err(format!(
                "--limit-store: {}; start it, fix the URL, or give --limit-store-fallback local",
                message(e)
            )),
        }
    }

    /// `config` with its tokens kept in the limit store, when one is set: hosts of one OAuth
    /// application share one pair and one refresh lock, seeded from this host's token file
    /// while the store holds none. Called once the store answered ([`Transport::store_pacer`]
    /// returned its bucket), so an unreachable store has already been reported or fallen back.
    #[cfg(feature = "redis")]
    pub fn share_tokens(
        &self,
        config: OAuthConfig,
        url: &str,
        oauth: &super::OAuthCreds,
    ) -> Result<OAuthConfig, String> {
        let Some(store) = &self.store else {
            return Ok(config);
        };
        let key = format!(
            "oint:{{{}}}:oauth:{}",
            store_authority(url, Some("oauth"))?,
            oauth.client_id
        );
        let shared = bitrix24::RedisTokenStore::new(&store.target, key)
            .map_err(|e| format!("--limit-store: {}", message(e)))?
            .seeded_from(bitrix24::FileTokenStore::new(&oauth.store));
        Ok(config.store(shared))
    }

    /// Without Redis support tokens stay in the local file.
    #[cfg(not(feature = "redis"))]
    pub fn share_tokens(
        &self,
        config: OAuthConfig,
        _url: &str,
        _oauth: &super::OAuthCreds,
    ) -> Result<OAuthConfig, String> {
        Ok(config)
    }

    /// Without Redis support there is never a store (a setting is refused earlier).
    #[cfg(not(feature = "redis"))]
    pub async fn store_pacer(
        &self,
        _url: &str,
        _token: Option<&str>,
    ) -> Result<Option<Pacer>, String> {
        Ok(None)
    }

    /// For the sandbox, a fresh portal every run: a bucket of its own.
    pub fn configure_local(&self, builder: ClientBuilder) -> ClientBuilder {
        self.notices(
            builder
                .pacer(Pacer::local(self.limit))
                .operating_budget(self.operating_budget)
                .connect_timeout(self.connect_timeout)
                .timeout(self.timeout),
        )
    }
}

/// One line on stderr per long wait or reset state, with or without --debug. The library's
/// lines hold no secret (method names, the host's state file, seconds).
///
/// Waits for the rate limit and operating-time pauses are always said: nothing else explains
/// them. A backoff before a retry is said only on a terminal: it follows a failure, is bounded
/// by --attempts and the deadline, and a script's stderr keeps the one line of the final error
/// (--debug shows every attempt and its backoff).
fn print_notice(notice: &Notice) {
    use std::io::{IsTerminal, Write};
    if let Notice::Wait(w) = notice
        && matches!(w.reason, WaitReason::QueryLimit | WaitReason::Retry { .. })
        && !std::io::stderr().is_terminal()
    {
        return;
    }
    let line = match notice {
        Notice::Wait(w) if matches!(w.reason, WaitReason::RateLimit { shared: true }) => format!(
            "waiting {:.1} s for the portal's rate limit (shared with other oint processes for this portal)",
            w.wait.as_secs_f64()
        ),
        other => other.to_string(),
    };
    // A closed stderr must not end the run.
    let _ = writeln!(std::io::stderr(), "oint: {line}");
}

/// The portal's authority, which names its keys in the limit store (whether http is allowed
/// is checked where the client is built); never the URL itself, whose path holds a webhook's
/// secret.
#[cfg(feature = "redis")]
fn store_authority(url: &str, token: Option<&str>) -> Result<String, String> {
    Portal::parse(url, token, HttpPolicy::AllowInsecure)
        .map(|p| p.authority().to_string())
        .map_err(|_| "--limit-store: the portal URL has no host to name its keys by".to_string())
}

/// `--limit-store`, else OINT_LIMIT_STORE (clap reads both), else the config file's.
fn limit_store(flags: &LimitFlags, entry: &EntryLimits) -> Result<Option<LimitStore>, String> {
    let fallback_local = flags.limit_store_fallback.as_deref() == Some("local");
    let Some(url) = flags.limit_store.clone().or(entry.limit_store.clone()) else {
        return Ok(None);
    };
    if url.trim().is_empty() {
        return Ok(None);
    }
    #[cfg(feature = "redis")]
    {
        let password = entry
            .store_password
            .clone()
            .map(secrecy::SecretString::from);
        let target = bitrix24::RedisTarget::parse(&url, password)
            .map_err(|e| format!("--limit-store: {}", message(e)))?;
        Ok(Some(LimitStore {
            target,
            fallback_local,
        }))
    }
    #[cfg(not(feature = "redis"))]
    {
        let _ = fallback_local;
        Err("--limit-store: this oint was built without Redis support (the `redis` feature); rebuild with it, or leave the limit store unset".into())
    }
}

/// The shared bucket of a portal: one file per host and port.
fn bucket_path(url: &str, token: Option<&str>) -> Option<PathBuf> {
    let portal = Portal::parse(url, token, HttpPolicy::LoopbackOnly).ok()?;
    let dir = match std::env::var_os("OINT_STATE_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => dirs::data_local_dir()?.join("oint"),
    };
    let name = crate::files::file_name_for(portal.authority());
    Some(dir.join("ratelimit").join(format!("{name}.bucket")))
}

/// A store error without the library's field name (the flag names it instead).
pub(crate) fn message(e: bitrix24::Error) -> String {
    match e {
        bitrix24::Error::InvalidArgument { message, .. } => message,
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "redis")]
    #[test]
    fn the_limit_store_flag_wins_and_its_password_never_shows() {
        let entry = EntryLimits {
            limit_store: Some("redis://:file-secret-1@filehost:6379/0".into()),
            store_password: Some("env-secret-2".into()),
            ..EntryLimits::default()
        };
        let t = Transport::over_entry(&LimitFlags::default(), &entry).unwrap();
        let shown = format!("{t:?} {entry:?}");
        assert!(shown.contains("filehost"), "{shown}");
        assert!(
            !shown.contains("file-secret-1") && !shown.contains("env-secret-2"),
            "{shown}"
        );
        let flags = LimitFlags {
            limit_store: Some("rediss://flaghost:6380/1".into()),
            ..LimitFlags::default()
        };
        let t = Transport::over_entry(&flags, &entry).unwrap();
        assert!(format!("{t:?}").contains("flaghost"));
        let flags = LimitFlags {
            limit_store: Some("redis://:flag-secret-3@h:1/zz".into()),
            ..LimitFlags::default()
        };
        let err = Transport::over_entry(&flags, &entry).unwrap_err();
        assert!(err.starts_with("--limit-store: "), "{err}");
        assert!(!err.contains("flag-secret-3"), "{err}");
    }

    #[test]
    fn flags_over_config_over_plan() {
        let entry = EntryLimits {
            plan: Some("enterprise".into()),
            rate: None,
            burst: Some(100.0),
            ..EntryLimits::default()
        };
        let t = Transport::over_entry(&LimitFlags::default(), &entry).unwrap();
        assert_eq!(
            t.limit,
            RateLimit {
                rate: 5.0,
                burst: 100.0
            }
        );
        let flags = LimitFlags {
            rate: Some(1.5),
            ..LimitFlags::default()
        };
        let t = Transport::over_entry(&flags, &entry).unwrap();
        assert_eq!(
            t.limit,
            RateLimit {
                rate: 1.5,
                burst: 100.0
            }
        );
        let t = Transport::from_flags(&LimitFlags::default()).unwrap();
        assert_eq!(t.limit, RateLimit::STANDARD);
        let table = [
            (
                LimitFlags {
                    plan: Some("gold".into()),
                    ..LimitFlags::default()
                },
                "--plan: \"gold\" is not a plan",
            ),
            (
                LimitFlags {
                    rate: Some(0.0),
                    ..LimitFlags::default()
                },
                "--rate: must be",
            ),
            (
                LimitFlags {
                    burst: Some(0.5),
                    ..LimitFlags::default()
                },
                "--burst: must be at least 1",
            ),
            (
                LimitFlags {
                    timeout: Some(-1.0),
                    ..LimitFlags::default()
                },
                "--timeout: must be",
            ),
            (
                LimitFlags {
                    attempts: Some(0),
                    ..LimitFlags::default()
                },
                "--attempts: must be at least 1",
            ),
        ];
        for (flags, want) in table {
            let err = Transport::from_flags(&flags).unwrap_err();
            assert!(err.starts_with(want), "{err}");
        }
    }

    #[test]
    fn a_connect_timeout_that_cannot_be_a_duration_is_refused() {
        let flags = LimitFlags {
            connect_timeout: Some(1e20),
            ..LimitFlags::default()
        };
        let err = Transport::from_flags(&flags).unwrap_err();
        assert!(err.starts_with("--connect-timeout: must be"), "{err}");
    }

    #[test]
    fn one_bucket_file_per_portal() {
        let a = bucket_path("https://a.bitrix24.com/rest/1/x/", None).unwrap();
        let b = bucket_path("a.bitrix24.com", Some("t")).unwrap();
        let c = bucket_path("http://127.0.0.1:8080/rest/1/x/", None).unwrap();
        assert_eq!(a, b, "webhook and app share the portal's bucket");
        assert!(
            c.ends_with("ratelimit/127.0.0.1_8080.bucket"),
            "{}",
            c.display()
        );
    }
}
