//! The numbers a user may give for timeouts, rates and attempts, and the ranges where they
//! mean something.
//!
//! A leaf module: the flag parser (`--rate`…) and the config file (`rate = …`) check against
//! the same ranges, and every message says what is expected without echoing the value, which
//! may be a secret typed in the wrong place.

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
/// `--operating-budget`: seconds of server time a method may use per 10 minutes.
pub const OPERATING_BUDGET: Range = Range {
    min: 0.001,
    max: 100_000.0,
    unit: "seconds of server time per 10 minutes",
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
pub fn parse_operating_budget(text: &str) -> Result<f64, String> {
    OPERATING_BUDGET.parse(text)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ranges_refuse_what_cannot_be_a_duration_or_a_limit() {
        for range in [TIMEOUT, CONNECT_TIMEOUT, RATE, BURST, OPERATING_BUDGET] {
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
    }
}
