//! When to send a request again, as a small pure function.
//!
//! The rule that matters is about duplicates. A request the portal provably did not run
//! (`QUERY_LIMIT_EXCEEDED`, a connection that was never made, `OPERATION_TIME_LIMIT`) can always
//! be sent again. A request that may have run (a 5xx, a timeout, a connection dropped after
//! sending) can be sent again only when a second copy does no harm: reads, idempotent writes,
//! and notifications whose TAG makes the portal replace the first copy. Anything else ends as
//! [`Decision::OutcomeUnknown`]: the caller is told, and nothing is silently duplicated.

use std::time::Duration;

/// Whether sending a request twice can do harm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Safety {
    /// A read, or a write whose repetition changes nothing (mark read, delete).
    Repeatable,
    /// A write that a resend could duplicate (a notification without an effective tag, an
    /// answer, a confirmation, or a method this crate does not know).
    Once,
}

/// How an attempt ended, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// HTTP 503 `QUERY_LIMIT_EXCEEDED`: refused before it ran.
    QueryLimit,
    /// HTTP 429 `OPERATION_TIME_LIMIT`: the method is blocked; refused before it ran.
    OperationTimeLimit,
    /// No connection could be made: nothing was sent.
    NotConnected,
    /// A 5xx other than the limits above: it may have run.
    ServerError,
    /// No answer in time, or the connection dropped after sending: it may have run.
    NoAnswer,
    /// Any other error answer: retrying would give the same answer.
    Refused,
}

/// What to do after an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Send again after the backoff for this attempt.
    Retry,
    /// Give up and report the error: the request certainly did not take effect, or retrying
    /// cannot help.
    Fail,
    /// Give up: the request may or may not have taken effect, and sending it again could
    /// duplicate it.
    OutcomeUnknown,
}

/// Longest single wait (rate limit, operating-time pause, backoff) when the deadline is longer
/// or [`Duration::MAX`] ("no deadline"): a request that would wait longer ends in
/// [`Error::Limited`](crate::Error::Limited) instead, and a backoff is shortened to it.
pub const MAX_WAIT: Duration = Duration::from_secs(3600);

/// Attempts, backoff and deadline.
///
/// `QUERY_LIMIT_EXCEEDED` is retried until the deadline, beyond `max_attempts`, unless
/// `query_limit_attempts` bounds it: the portal did not run the call and will once its bucket
/// drains. Every wait (for the rate limit, an operating-time pause, a backoff) ends before the
/// deadline, or the request ends without it; no wait is longer than [`MAX_WAIT`]. Any value is
/// safe: huge durations saturate, they never overflow.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Attempts in all for a request the portal refuses with `QUERY_LIMIT_EXCEEDED`; `None`
    /// (the default): until the deadline.
    pub query_limit_attempts: Option<u32>,
    /// Backoff before the second attempt; doubles each time (before jitter).
    pub base_delay: Duration,
    /// Largest backoff.
    pub max_delay: Duration,
    /// Time after which no new attempt starts, counted from the first.
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            query_limit_attempts: None,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            deadline: Duration::from_secs(180),
        }
    }
}

impl RetryPolicy {
    /// No retries at all, not even after `QUERY_LIMIT_EXCEEDED`.
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            query_limit_attempts: Some(1),
            ..RetryPolicy::default()
        }
    }

    /// `attempts` in all for every failure that may be retried, `QUERY_LIMIT_EXCEEDED`
    /// included; the deadline still applies.
    pub fn attempts(attempts: u32) -> Self {
        RetryPolicy {
            max_attempts: attempts,
            query_limit_attempts: Some(attempts),
            ..RetryPolicy::default()
        }
    }

    /// The backoff cap for `attempt` (1-based, the attempt that just failed):
    /// `min(max_delay, base_delay * 2^(attempt-1))`. The actual wait is drawn uniformly from
    /// `0..=cap` ("full jitter"), so that many clients do not retry in lockstep.
    pub fn backoff_cap(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }

    /// A full-jitter wait for `attempt`, given a uniform random number in `0.0..1.0`.
    pub fn backoff(&self, attempt: u32, unit_random: f64) -> Duration {
        let cap = self.backoff_cap(attempt);
        let unit = if unit_random.is_nan() {
            0.0
        } else {
            unit_random.clamp(0.0, 1.0)
        };
        // Not `mul_f64`: it panics when the product rounds past `Duration::MAX`.
        Duration::try_from_secs_f64(cap.as_secs_f64() * unit)
            .unwrap_or(cap)
            .min(cap)
    }
}

/// The retry decision for an attempt that ended with `outcome`.
pub fn decide(safety: Safety, outcome: Outcome, attempt: u32, policy: &RetryPolicy) -> Decision {
    let may_have_run = matches!(outcome, Outcome::ServerError | Outcome::NoAnswer);
    if outcome == Outcome::Refused {
        return Decision::Fail;
    }
    if may_have_run && safety == Safety::Once {
        return Decision::OutcomeUnknown;
    }
    // The portal refused it for the rate and will take it once the bucket drains: retried
    // until the deadline (which the caller enforces), or as many times as the policy says.
    if outcome == Outcome::QueryLimit {
        return match policy.query_limit_attempts {
            Some(limit) if attempt >= limit => Decision::Fail,
            _ => Decision::Retry,
        };
    }
    if attempt >= policy.max_attempts {
        // Out of attempts: a request that never ran failed; one that may have run is unknown
        // only when repeating was unsafe, which was handled above.
        return Decision::Fail;
    }
    Decision::Retry
}

/// Why an attempt is retried, for logs and notices.
pub(crate) fn describe(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::QueryLimit => {
            "the portal refused the last attempt for the request rate (QUERY_LIMIT_EXCEEDED)"
        }
        Outcome::OperationTimeLimit => {
            "the method's operating-time budget was spent (OPERATION_TIME_LIMIT)"
        }
        Outcome::NotConnected => "the last attempt could not connect",
        Outcome::ServerError => "the last attempt got a server error",
        Outcome::NoAnswer => "the last attempt got no answer",
        Outcome::Refused => "the last attempt was refused",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Decision::*;
    use Outcome::*;
    use Safety::*;

    #[test]
    fn decision_table() {
        let p = RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        };
        let table = [
            // Never ran: always retried, whatever the safety, until attempts run out.
            (Once, QueryLimit, 1, Retry),
            (Once, QueryLimit, 2, Retry),
            (Once, QueryLimit, 3, Retry),
            (Once, QueryLimit, 30, Retry),
            (Repeatable, QueryLimit, 1, Retry),
            (Once, OperationTimeLimit, 1, Retry),
            (Once, NotConnected, 1, Retry),
            (Once, NotConnected, 3, Fail),
            // May have run: retried only when repeating is harmless.
            (Repeatable, ServerError, 1, Retry),
            (Repeatable, NoAnswer, 2, Retry),
            (Repeatable, NoAnswer, 3, Fail),
            (Once, ServerError, 1, OutcomeUnknown),
            (Once, NoAnswer, 1, OutcomeUnknown),
            (Once, NoAnswer, 3, OutcomeUnknown),
            // A plain refusal repeats itself.
            (Repeatable, Refused, 1, Fail),
            (Once, Refused, 1, Fail),
            (Once, Refused, u32::MAX, Fail),
            (Once, QueryLimit, u32::MAX, Retry),
        ];
        for (safety, outcome, attempt, want) in table {
            assert_eq!(
                decide(safety, outcome, attempt, &p),
                want,
                "{safety:?} {outcome:?} attempt {attempt}"
            );
        }
    }

    #[test]
    fn bounded_query_limit_table() {
        // `--attempts N`: QUERY_LIMIT_EXCEEDED gets N attempts like everything else.
        let p = RetryPolicy::attempts(3);
        let table = [
            (Once, QueryLimit, 1, Retry),
            (Once, QueryLimit, 2, Retry),
            (Once, QueryLimit, 3, Fail),
            (Repeatable, QueryLimit, 3, Fail),
            (Once, QueryLimit, u32::MAX, Fail),
            (Once, NotConnected, 2, Retry),
            (Once, NotConnected, 3, Fail),
            (Once, OperationTimeLimit, 3, Fail),
            (Once, ServerError, 1, OutcomeUnknown),
            (Repeatable, ServerError, 3, Fail),
        ];
        for (safety, outcome, attempt, want) in table {
            assert_eq!(
                decide(safety, outcome, attempt, &p),
                want,
                "{safety:?} {outcome:?} attempt {attempt}"
            );
        }
        // One attempt means one, whatever the portal answers.
        let one = RetryPolicy::attempts(1);
        for outcome in [
            QueryLimit,
            OperationTimeLimit,
            NotConnected,
            ServerError,
            NoAnswer,
        ] {
            assert_ne!(decide(Repeatable, outcome, 1, &one), Retry, "{outcome:?}");
        }
        assert_eq!(decide(Once, QueryLimit, 1, &RetryPolicy::none()), Fail);
        // A zero bound is read as "the first attempt only".
        let zero = RetryPolicy {
            query_limit_attempts: Some(0),
            max_attempts: 0,
            ..RetryPolicy::default()
        };
        assert_eq!(decide(Once, QueryLimit, 1, &zero), Fail);
        assert_eq!(decide(Repeatable, NoAnswer, 1, &zero), Fail);
    }

    #[test]
    fn huge_durations_never_overflow() {
        let p = RetryPolicy {
            base_delay: Duration::MAX,
            max_delay: Duration::MAX,
            deadline: Duration::MAX,
            ..RetryPolicy::default()
        };
        assert_eq!(p.backoff_cap(u32::MAX), Duration::MAX);
        assert!(p.backoff(1, 1.0) <= Duration::MAX);
        assert_eq!(p.backoff(40, 0.0), Duration::ZERO);
        assert_eq!(p.backoff(3, f64::NAN), Duration::ZERO);
        assert_eq!(p.backoff(3, f64::INFINITY), Duration::MAX);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_full_jitter() {
        let p = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            ..RetryPolicy::default()
        };
        let caps: Vec<u128> = (1..=6).map(|a| p.backoff_cap(a).as_millis()).collect();
        assert_eq!(caps, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(p.backoff_cap(200), Duration::from_secs(1), "no overflow");
        assert_eq!(p.backoff(3, 0.0), Duration::ZERO);
        assert_eq!(p.backoff(3, 0.5), Duration::from_millis(200));
        assert_eq!(p.backoff(3, 7.0), Duration::from_millis(400), "clamped");
    }
}
