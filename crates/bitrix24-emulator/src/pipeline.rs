//! What happens to a REST request around the method itself, in this order:
//!
//! 1. **Rate limit** (per client IP): over the limit → 503 `QUERY_LIMIT_EXCEEDED`, nothing
//!    else happens. It comes first because it is the portal's front door: it is decided before
//!    anything is parsed or authenticated, so bad credentials are limited too.
//! 2. **Fault rules** (`/_emulator/faults`): `status` and `reset_before` end the request here,
//!    before authentication, so a client sees an injected 500 whatever its credentials (the
//!    failures being modelled — a proxy, a crashed worker, a dropped connection — do not look
//!    at credentials). A faulted call has already been counted by the rate limiter, since it
//!    reached the server; a call refused by the limiter is not counted by fault rules.
//! 3. **Authentication**.
//! 4. **Operating-time check** for (caller, method): blocked → 429 `OPERATION_TIME_LIMIT`.
//! 5. **Execution**, after the simulated processing time (`--processing-ms`); the elapsed
//!    time is billed to the method (see [`crate::operating`]).
//! 6. **After-faults**: `reset_after` closes the connection instead of answering; `delay`
//!    waits before answering. The call's effects are already stored.
//!
//! Steps 2–6 run under the request time limit (60 s, as on the cloud): a request still running
//! then is cut off without an answer (logged as `request_timeout`).
//!
//! Every request under `/rest` that reaches step 1 is recorded in the request log.
//! The control plane and `/oauth/*` do not pass through here, so they are never limited.

use std::time::Duration;

use crate::faults::Faults;
use crate::limits::RateLimiter;
use crate::operating::Operating;
use crate::requests::RequestLog;

/// The per-portal state of the request pipeline.
#[derive(Debug)]
pub struct Pipeline {
    pub rate: RateLimiter,
    pub operating: Operating,
    pub faults: Faults,
    pub log: RequestLog,
    /// Simulated server time per call.
    pub processing: Duration,
    /// Longest wait for the next piece of a request body.
    pub body_timeout: Duration,
    /// The cap on steps 2–6 of one request; `None`: no cap.
    pub request_time_limit: Option<Duration>,
}

impl Pipeline {
    /// Forget limiter and operating state, fault rules and the request log.
    pub fn reset(&self) {
        self.rate.reset();
        self.operating.reset();
        self.faults.clear();
        self.log.clear();
    }
}
