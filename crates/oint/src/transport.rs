//! How `oint` talks to a portal: its rate limit, timeouts and attempts.
//!
//! The portal counts every request from this machine against one bucket, so by default every
//! `oint` process that talks to the same portal shares one client-side bucket through a small
//! state file (under the data directory, or `OINT_STATE_DIR`): cron jobs and CI steps started
//! at once still never trip the limit together. Settings come from the global flags, then the
//! config file's portal (`plan`, `rate`, `burst`), then the defaults (the standard plan).

use std::path::PathBuf;
use std::time::Duration;

use bitrix24::{
    ClientBuilder, HttpPolicy, Notice, Pacer, Portal, RateLimit, RetryPolicy, WaitReason,
};

use crate::cli::LimitFlags;

/// A number the user gives (flag or config setting) and the range where it means something.
/// Every such number passes [`Range::check`] before it becomes a `Duration` or a limit:
/// `Duration::from_secs_f64(1e300)` panics, and NaN or 0 mean nothing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range {
    pub min: f64,
    pub max: f64,
    pub unit: &'static str,
}

/// `--timeout`: seconds to wait for each answer.
pub const TIMEOUT: Range = Range {
    min: 0.001,
    max: 86_400.0,
    unit: "seconds",
};
/// `--connect-timeout`: seconds to wait for a connection.
pub const CONNECT_TIMEOUT: Range = Range {
    min: 0.001,
    max: 3_600.0,
    unit: "seconds",
};
/// `--rate` and the config file's `rate`.
pub const RATE: Range = Range {
    min: 0.0001,
    max: 10_000.0,
    unit: "requests per second",
};
/// `--burst` and the config file's `burst`.
pub const BURST: Range = Range {
    min: 1.0,
    max: 100_000.0,
    unit: "requests",
};
/// `--attempts`.
pub const ATTEMPTS: std::ops::RangeInclusive<u32> = 1..=100;

impl Range {
    /// `value` if it is in range; else what is expected (never the value: it may be a secret
    /// typed in the wrong place).
    pub fn check(&self, value: f64) -> Result<f64, String> {
        if value.is_finite() && value >= self.min && value <= self.max {
            Ok(value)
        } else {
            Err(self.expected())
        }
    }

    /// Parses a flag's text, for clap's `value_parser`.
    pub fn parse(&self, text: &str) -> Result<f64, String> {
        text.trim()
            .parse::<f64>()
            .map_err(|_| self.expected())
            .and_then(|v| self.check(v))
    }

    fn expected(&self) -> String {
        format!(
            "must be at least {} and at most {} ({})",
            self.min, self.max, self.unit
        )
    }
}

pub fn parse_timeout(text: &str) -> Result<f64, String> {
    TIMEOUT.parse(text)
}
pub fn parse_connect_timeout(text: &str) -> Result<f64, String> {
    CONNECT_TIMEOUT.parse(text)
}
pub fn parse_rate(text: &str) -> Result<f64, String> {
    RATE.parse(text)
}
pub fn parse_burst(text: &str) -> Result<f64, String> {
    BURST.parse(text)
}
pub fn parse_attempts(text: &str) -> Result<u32, String> {
    text.trim()
        .parse::<u32>()
        .ok()
        .filter(|n| ATTEMPTS.contains(n))
        .ok_or_else(|| {
            format!(
                "must be at least {} and at most {} (a whole number; the first attempt counts)",
                ATTEMPTS.start(),
                ATTEMPTS.end()
            )
        })
}

/// Rate-limit settings of a config-file portal.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EntryLimits {
    pub plan: Option<String>,
    pub rate: Option<f64>,
    pub burst: Option<f64>,
}

/// Resolved transport settings.
#[derive(Debug, Clone)]
pub struct Transport {
    flags: LimitFlags,
    limit: RateLimit,
    connect_timeout: Duration,
    timeout: Duration,
    attempts: Option<u32>,
}

impl Transport {
    /// From the global flags alone.
    pub fn from_flags(flags: &LimitFlags) -> Result<Transport, String> {
        Transport::resolve(flags, &EntryLimits::default())
    }

    /// Flags first, then the config file's portal, then the standard plan.
    pub fn resolve(flags: &LimitFlags, entry: &EntryLimits) -> Result<Transport, String> {
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
        Ok(Transport {
            flags: flags.clone(),
            limit,
            connect_timeout,
            timeout,
            attempts: flags.attempts,
        })
    }

    /// The same flags over a config-file portal's settings.
    pub fn with_entry(&self, entry: &EntryLimits) -> Result<Transport, String> {
        Transport::resolve(&self.flags, entry)
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
        builder
            .pacer(pacer)
            .retry(retry)
            .connect_timeout(self.connect_timeout)
            .timeout(self.timeout)
            .on_notice(print_notice)
    }

    /// For the sandbox, a fresh portal every run: a bucket of its own.
    pub fn configure_local(&self, builder: ClientBuilder) -> ClientBuilder {
        builder
            .pacer(Pacer::local(self.limit))
            .connect_timeout(self.connect_timeout)
            .timeout(self.timeout)
            .on_notice(print_notice)
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

/// The shared bucket of a portal: one file per host and port.
fn bucket_path(url: &str, token: Option<&str>) -> Option<PathBuf> {
    let portal = Portal::parse(url, token, HttpPolicy::LoopbackOnly).ok()?;
    let dir = match std::env::var_os("OINT_STATE_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => dirs::data_local_dir()?.join("oint"),
    };
    let name: String = portal
        .authority()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Some(dir.join("ratelimit").join(format!("{name}.bucket")))
}

fn message(e: bitrix24::Error) -> String {
    match e {
        bitrix24::Error::InvalidArgument { message, .. } => message,
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_over_config_over_plan() {
        let entry = EntryLimits {
            plan: Some("enterprise".into()),
            rate: None,
            burst: Some(100.0),
        };
        let t = Transport::resolve(&LimitFlags::default(), &entry).unwrap();
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
        let t = Transport::resolve(&flags, &entry).unwrap();
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
    fn ranges_refuse_what_cannot_be_a_duration_or_a_limit() {
        for range in [TIMEOUT, CONNECT_TIMEOUT, RATE, BURST] {
            for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e300, -1.0, 0.0] {
                let err = range.check(bad).unwrap_err();
                assert!(err.starts_with("must be at least"), "{err}");
                assert!(!err.contains("NaN") && !err.contains("inf"), "{err}");
            }
            assert_eq!(range.check(range.min), Ok(range.min));
            assert_eq!(range.check(range.max), Ok(range.max));
            // The largest value still makes a Duration.
            let _ = Duration::from_secs_f64(range.max);
            assert!(range.parse("abc").is_err() && range.parse(" 1e300 ").is_err());
        }
        assert_eq!(parse_attempts("100"), Ok(100));
        for bad in ["0", "101", "-1", "1.5", "x", "4294967296"] {
            assert!(parse_attempts(bad).is_err(), "{bad}");
        }
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
