//! The request-rate limit: a leaky bucket per (portal, client IP).
//!
//! A portal limits how fast one source address may call it (docs/portal-behaviour.md §8.1, §8.2): every request pours
//! one unit into a bucket that drains continuously at `R` units per second, and a request that
//! would make the bucket overflow its block threshold `B` is refused with HTTP 503
//! `QUERY_LIMIT_EXCEEDED` and not executed. Clients are meant to model this exactly, so the rule
//! is spelled out here and in [`LeakyBucket::admit`]:
//!
//! - level at time `t`: `L(t) = max(0, L(t0) - R * (t - t0))`, where `t0` is the last admission;
//! - a request at `t` is admitted iff `L(t) + 1 <= B`; the level then becomes `L(t) + 1`;
//! - a refused request leaves the level unchanged (it was never executed), so a client that
//!   keeps hammering still gets through at `R` per second.
//!
//! Consequences: from an empty bucket exactly `floor(B)` instant requests pass and request
//! `floor(B) + 1` is the first 503 (burst 50: 50 pass, the 51st is refused); after that one more
//! request passes every `1 / R` seconds. A comparison tolerance of 1e-9 absorbs float rounding
//! in the drain, so "exactly one unit drained" counts as drained.
//!
//! The clock is injected: [`LeakyBucket`] takes `now` in seconds and never reads a clock itself,
//! which is what the table tests drive. [`RateLimiter`] feeds it the monotonic time since
//! start-up.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Float slack when comparing the level with the threshold.
const EPSILON: f64 = 1e-9;

/// Buckets kept before idle (fully drained) ones are dropped.
const PRUNE_ABOVE: usize = 4096;

/// A portal plan, which decides the limit (docs/portal-behaviour.md §8.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Plan {
    /// Drains 2 requests per second, blocks above 50 (every plan but Enterprise).
    #[default]
    Standard,
    /// Drains 5 requests per second, blocks above 250.
    Enterprise,
    /// No rate limit.
    Unlimited,
}

impl Plan {
    /// `(drain rate per second, block threshold)`, or `None` for no limit.
    pub fn limit(self) -> Option<(f64, f64)> {
        match self {
            Plan::Standard => Some((2.0, 50.0)),
            Plan::Enterprise => Some((5.0, 250.0)),
            Plan::Unlimited => None,
        }
    }
}

/// Drain rate and block threshold of a bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RatePolicy {
    /// Units drained per second (> 0; may be fractional).
    pub rate: f64,
    /// Block threshold (>= 1): the most units the bucket may hold.
    pub burst: f64,
}

impl RatePolicy {
    /// The effective policy: `rate` / `burst` override the plan's values; when the plan has no
    /// limit, a missing value is taken from [`Plan::Standard`].
    pub fn resolve(plan: Plan, rate: Option<f64>, burst: Option<f64>) -> Option<RatePolicy> {
        if rate.is_none() && burst.is_none() {
            return plan.limit().map(|(rate, burst)| RatePolicy { rate, burst });
        }
        let (plan_rate, plan_burst) = plan
            .limit()
            .or_else(|| Plan::Standard.limit())
            .unwrap_or((2.0, 50.0));
        Some(RatePolicy {
            rate: rate.unwrap_or(plan_rate),
            burst: burst.unwrap_or(plan_burst),
        })
    }

    /// Why the policy is unusable, if it is.
    pub fn invalid(&self) -> Option<String> {
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return Some(format!("rate must be a positive number, got {}", self.rate));
        }
        if !(self.burst.is_finite() && self.burst >= 1.0) {
            return Some(format!("burst must be at least 1, got {}", self.burst));
        }
        None
    }
}

/// One leaky bucket. Pure: time comes in as `now` (seconds on any monotonic scale).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LeakyBucket {
    level: f64,
    at: f64,
}

impl LeakyBucket {
    /// The level at `now` after draining. Time running backwards drains nothing.
    pub fn level(&self, policy: RatePolicy, now: f64) -> f64 {
        let elapsed = (now - self.at).max(0.0);
        (self.level - policy.rate * elapsed).max(0.0)
    }

    /// Admit one request at `now` if the level after adding it stays within the threshold.
    pub fn admit(&mut self, policy: RatePolicy, now: f64) -> bool {
        let level = self.level(policy, now);
        if level + 1.0 > policy.burst + EPSILON {
            return false;
        }
        self.level = level + 1.0;
        self.at = now.max(self.at);
        true
    }
}

/// The buckets of one portal, one per client IP.
#[derive(Debug)]
pub struct RateLimiter {
    policy: Option<RatePolicy>,
    origin: Instant,
    buckets: Mutex<HashMap<IpAddr, LeakyBucket>>,
}

impl RateLimiter {
    pub fn new(policy: Option<RatePolicy>) -> Self {
        RateLimiter {
            policy,
            origin: Instant::now(),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Admit one request from `ip` now.
    pub fn admit(&self, ip: IpAddr) -> bool {
        self.admit_at(ip, self.origin.elapsed().as_secs_f64())
    }

    /// Admit one request from `ip` at `now` (seconds since start-up).
    pub fn admit_at(&self, ip: IpAddr, now: f64) -> bool {
        let Some(policy) = self.policy else {
            return true;
        };
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > PRUNE_ABOVE {
            buckets.retain(|_, b| b.level(policy, now) > 0.0);
        }
        buckets
            .entry(ip.to_canonical())
            .or_default()
            .admit(policy, now)
    }

    /// Forget every bucket (control-plane reset).
    pub fn reset(&self) {
        self.buckets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(rate: f64, burst: f64) -> RatePolicy {
        RatePolicy { rate, burst }
    }

    /// How many of `n` requests at the same instant `now` pass.
    fn passed(bucket: &mut LeakyBucket, p: RatePolicy, n: usize, now: f64) -> usize {
        (0..n).filter(|_| bucket.admit(p, now)).count()
    }

    #[test]
    fn instant_burst_passes_exactly_floor_of_threshold() {
        // (rate, burst, requests, expected passes)
        let table = [
            (2.0, 50.0, 60, 50),
            (5.0, 250.0, 300, 250),
            (0.001, 5.0, 9, 5),
            (2.0, 1.0, 3, 1),
            (2.0, 2.5, 5, 2),
            (2.0, 50.0, 50, 50),
        ];
        for (rate, burst, n, want) in table {
            let mut b = LeakyBucket::default();
            assert_eq!(
                passed(&mut b, policy(rate, burst), n, 10.0),
                want,
                "rate {rate} burst {burst} n {n}"
            );
        }
    }

    #[test]
    fn one_more_passes_per_drained_unit() {
        let p = policy(2.0, 50.0);
        let mut b = LeakyBucket::default();
        assert_eq!(passed(&mut b, p, 60, 0.0), 50);
        // (time, requests at that instant, expected passes)
        let table = [
            (0.25, 3, 0), // half a unit drained: still full
            (0.5, 3, 1),  // exactly one unit drained
            (0.5, 1, 0),
            (1.5, 5, 2), // two more units
            (100.0, 60, 50),
        ];
        for (t, n, want) in table {
            assert_eq!(passed(&mut b, p, n, t), want, "at {t}");
        }
    }

    #[test]
    fn fractional_rate_drains_exactly() {
        let p = policy(0.1, 3.0);
        let mut b = LeakyBucket::default();
        assert_eq!(passed(&mut b, p, 5, 0.0), 3);
        assert_eq!(passed(&mut b, p, 2, 9.999), 0);
        assert_eq!(passed(&mut b, p, 2, 10.0), 1);
        assert_eq!(passed(&mut b, p, 2, 30.0), 2);
    }

    #[test]
    fn refused_requests_do_not_fill_the_bucket() {
        let p = policy(1.0, 2.0);
        let mut b = LeakyBucket::default();
        assert_eq!(passed(&mut b, p, 2, 0.0), 2);
        assert_eq!(passed(&mut b, p, 100, 0.5), 0);
        assert_eq!(passed(&mut b, p, 1, 1.0), 1);
        assert!((b.level(p, 1.0) - 2.0).abs() < 1e-9);
    }

    #[test]
    fn time_running_backwards_drains_nothing() {
        let p = policy(1.0, 2.0);
        let mut b = LeakyBucket::default();
        assert_eq!(passed(&mut b, p, 2, 5.0), 2);
        assert_eq!(passed(&mut b, p, 1, 1.0), 0);
        assert_eq!(passed(&mut b, p, 1, 6.0), 1);
    }

    #[test]
    fn buckets_are_per_ip_and_reset_clears_them() {
        let limiter = RateLimiter::new(Some(policy(0.001, 2.0)));
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        assert!(limiter.admit_at(a, 0.0));
        assert!(limiter.admit_at(a, 0.0));
        assert!(!limiter.admit_at(a, 0.0));
        assert!(limiter.admit_at(b, 0.0));
        // An IPv4-mapped IPv6 address is the same client.
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap_or(a);
        assert!(!limiter.admit_at(mapped, 0.0));
        limiter.reset();
        assert!(limiter.admit_at(a, 0.0));
    }

    #[test]
    fn no_policy_admits_everything() {
        let limiter = RateLimiter::new(None);
        let ip: IpAddr = [127, 0, 0, 1].into();
        assert!((0..10_000).all(|_| limiter.admit_at(ip, 0.0)));
    }

    #[test]
    fn policy_resolution_table() {
        let r = RatePolicy::resolve;
        assert_eq!(r(Plan::Standard, None, None), Some(policy(2.0, 50.0)));
        assert_eq!(r(Plan::Enterprise, None, None), Some(policy(5.0, 250.0)));
        assert_eq!(r(Plan::Unlimited, None, None), None);
        assert_eq!(
            r(Plan::Enterprise, Some(0.5), None),
            Some(policy(0.5, 250.0))
        );
        assert_eq!(r(Plan::Standard, None, Some(7.0)), Some(policy(2.0, 7.0)));
        assert_eq!(r(Plan::Unlimited, Some(1.0), None), Some(policy(1.0, 50.0)));
        assert!(policy(0.0, 5.0).invalid().is_some());
        assert!(policy(f64::NAN, 5.0).invalid().is_some());
        assert!(policy(1.0, 0.5).invalid().is_some());
        assert!(policy(0.001, 1.0).invalid().is_none());
    }
}
