//! The operating-time limit: execution time per (caller, method) over a sliding 10 minutes.
//!
//! Cloud portals bill the time each call spends executing to its method, for each application
//! or webhook, in ten one-minute buckets (docs/portal-behaviour.md §8.4; batch: §8.5). When a method has used its budget
//! (480 s by default), the *next* call to that method is refused with HTTP 429
//! `OPERATION_TIME_LIMIT` and not executed; other methods keep working. Every answer's `time`
//! reports the running total as `operating` and, as `operating_reset_at`, when the oldest
//! bucket expires.
//!
//! Buckets: a call at `t` goes into the newest bucket if that bucket was opened less than 60 s
//! before `t`, otherwise it opens a new one at `t`. A bucket expires at `opened + 600`; the
//! reported `operating_reset_at` is that instant rounded up to a whole second, so a client that
//! waits until then finds it gone. A call is refused when the total at its start exceeds the
//! budget, so the call that crosses the budget still runs and the one after it is refused.
//!
//! **batch.** The docs say the outer `batch` is free and each sub-call is billed to its own
//! method; a 2026 measurement found the whole batch billed to the method `batch`, every
//! sub-result reporting the same batch-wide figure. [`Billing`] selects which; the measured
//! behaviour is the default. The batch implementation (`methods/batch.rs`, `run_command`)
//! runs each sub-command through [`Operating::sub_call`], which refuses it with
//! `OPERATION_TIME_LIMIT` when its method is blocked (the batch puts that in `result_error`)
//! and returns the `operating` / `operating_reset_at` for its `result_time`.
//!
//! In `Batch` billing the outer request is billed to `batch` by the request pipeline and
//! `sub_call` bills nothing; in `PerMethod` billing the pipeline leaves `batch` alone and
//! `sub_call` bills each sub-command to its method. Either way a sub-command whose method is
//! blocked is refused.
//!
//! Time is injected (`now`, unix seconds as a float) so the window logic is tested without a
//! clock.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Instant;

use serde_json::Value;

use crate::auth::Caller;
use crate::error::ApiError;

/// Length of the sliding window.
pub const WINDOW_SECS: f64 = 600.0;
/// Length of one bucket.
pub const BUCKET_SECS: f64 = 60.0;
/// The documented example budget, per method and window.
pub const DEFAULT_BUDGET_SECS: f64 = 480.0;

/// Where the time of a `batch` request is billed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Billing {
    /// The whole batch is billed to the method `batch` (measured behaviour).
    #[default]
    Batch,
    /// Each sub-command is billed to its own method, the batch itself is free (the docs).
    PerMethod,
}

/// The figures an answer's `time` reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// Seconds used in the window.
    pub operating: f64,
    /// When the oldest bucket expires (unix seconds), if any bucket is live.
    pub reset_at: Option<u64>,
}

impl Usage {
    /// Write `operating` and `operating_reset_at` into a `time` object. With no live bucket,
    /// `operating_reset_at` is when a bucket opened by this request would expire.
    pub fn stamp(self, time: &mut Value, start_unix: f64) {
        if let Value::Object(m) = time {
            m.insert("operating".into(), Value::from(self.operating));
            let reset_at = self
                .reset_at
                .unwrap_or_else(|| (start_unix + WINDOW_SECS).ceil() as u64);
            m.insert("operating_reset_at".into(), Value::from(reset_at));
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Bucket {
    opened: f64,
    secs: f64,
}

/// The buckets of one (caller, method). Pure.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Window {
    buckets: VecDeque<Bucket>,
}

impl Window {
    fn expire(&mut self, now: f64) {
        while self
            .buckets
            .front()
            .is_some_and(|b| b.opened + WINDOW_SECS <= now)
        {
            self.buckets.pop_front();
        }
    }

    /// Bill `secs` to a call that started at `now`.
    pub fn add(&mut self, now: f64, secs: f64) {
        self.expire(now);
        let secs = secs.max(0.0);
        match self.buckets.back_mut() {
            Some(b) if now < b.opened + BUCKET_SECS && now >= b.opened => b.secs += secs,
            _ => self.buckets.push_back(Bucket { opened: now, secs }),
        }
    }

    /// The running total and reset time at `now`.
    pub fn usage(&mut self, now: f64) -> Usage {
        self.expire(now);
        Usage {
            operating: self.buckets.iter().map(|b| b.secs).sum(),
            reset_at: self
                .buckets
                .front()
                .map(|b| (b.opened + WINDOW_SECS).ceil() as u64),
        }
    }

    fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

/// Who is billed: each webhook and each OAuth application has its own budget (`limits.md`:
/// "separately for an application or a webhook").
fn who(caller: &Caller) -> String {
    match caller {
        Caller::Webhook { hook, .. } => format!("webhook:{hook}"),
        Caller::OAuth { client_id, .. } => format!("app:{client_id}"),
    }
}

/// Operating-time accounting of one portal.
#[derive(Debug)]
pub struct Operating {
    budget: Option<f64>,
    billing: Billing,
    windows: Mutex<HashMap<(String, String), Window>>,
}

impl Operating {
    /// `budget`: seconds per method and window; `None` disables blocking (usage is still
    /// reported).
    pub fn new(budget: Option<f64>, billing: Billing) -> Self {
        Operating {
            budget,
            billing,
            windows: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Window>> {
        self.windows.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `Err(OPERATION_TIME_LIMIT)` if `method` has used its budget for this caller.
    pub fn check(&self, caller: &Caller, method: &str, now: f64) -> Result<(), ApiError> {
        let Some(budget) = self.budget else {
            return Ok(());
        };
        // Blocked once the total *exceeds* the budget (`limits.md`: "the value already exceeds
        // 480 seconds before its execution"); at exactly the budget a call still runs.
        let used = self.usage(caller, method, now).operating;
        if used > budget {
            Err(ApiError::operation_time_limit())
        } else {
            Ok(())
        }
    }

    /// Bill `secs` of a call that started at `now`; returns the usage after billing.
    pub fn bill(&self, caller: &Caller, method: &str, now: f64, secs: f64) -> Usage {
        let mut windows = self.lock();
        let window = windows.entry((who(caller), method.to_owned())).or_default();
        window.add(now, secs);
        let usage = window.usage(now);
        // Drop idle windows now and then so a long run does not grow without bound.
        if windows.len() > 4096 {
            windows.retain(|_, w| {
                w.expire(now);
                !w.is_empty()
            });
        }
        usage
    }

    /// The usage of `method` for this caller at `now`, billing nothing.
    pub fn usage(&self, caller: &Caller, method: &str, now: f64) -> Usage {
        let mut windows = self.lock();
        match windows.get_mut(&(who(caller), method.to_owned())) {
            Some(w) => w.usage(now),
            None => Usage {
                operating: 0.0,
                reset_at: None,
            },
        }
    }

    /// Whether the request pipeline bills a top-level call to `method` itself. Under
    /// per-method billing `batch` is free: its sub-commands are billed by [`Self::sub_call`].
    pub fn bills_request(&self, method: &str) -> bool {
        !(method == "batch" && self.billing == Billing::PerMethod)
    }

    /// Run one sub-command of a `batch` (see the module docs): refuse it if its method is
    /// blocked, bill it under per-method billing, and return the figures for its `result_time`
    /// (under batch billing, the batch-wide figure).
    pub fn sub_call<T>(
        &self,
        caller: &Caller,
        method: &str,
        now: f64,
        run: impl FnOnce() -> Result<T, ApiError>,
    ) -> (Result<T, ApiError>, Usage) {
        let billed_to = match self.billing {
            Billing::Batch => "batch",
            Billing::PerMethod => method,
        };
        if let Err(e) = self.check(caller, method, now) {
            return (Err(e), self.usage(caller, billed_to, now));
        }
        let started = Instant::now();
        let result = run();
        let usage = match self.billing {
            Billing::Batch => self.usage(caller, billed_to, now),
            Billing::PerMethod => self.bill(caller, method, now, started.elapsed().as_secs_f64()),
        };
        (result, usage)
    }

    /// Forget all usage (control-plane reset).
    pub fn reset(&self) {
        self.lock().clear();
    }
}

/// Unix time now, in seconds.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: f64 = 1_772_532_000.0;

    fn hook(user_id: u64) -> Caller {
        Caller::Webhook {
            user_id,
            hook: user_id as usize,
        }
    }

    #[test]
    fn window_buckets_and_expiry_table() {
        let mut w = Window::default();
        // (offset, billed secs, expected total, expected reset_at offset)
        let table = [
            (0.0, 1.0, 1.0, 600.0),
            (30.0, 2.0, 3.0, 600.0),    // same bucket
            (60.0, 4.0, 7.0, 600.0),    // new bucket opened at +60
            (599.0, 0.5, 7.5, 600.0),   // first bucket still live
            (600.0, 0.0, 4.5, 660.0),   // first bucket (1+2) expired
            (660.0, 0.0, 0.5, 1199.0),  // second expired; the +599 bucket is left
            (1199.0, 0.0, 0.0, 1260.0), // only empty buckets (+660, +1199) are left
        ];
        for (offset, secs, total, reset) in table {
            let now = T0 + offset;
            w.add(now, secs);
            let u = w.usage(now);
            assert!(
                (u.operating - total).abs() < 1e-9,
                "at +{offset}: {u:?} want {total}"
            );
            assert_eq!(u.reset_at, Some((T0 + reset) as u64), "at +{offset}");
        }
    }

    #[test]
    fn reset_at_is_rounded_up() {
        let mut w = Window::default();
        w.add(T0 + 0.25, 1.0);
        assert_eq!(w.usage(T0 + 1.0).reset_at, Some(T0 as u64 + 601));
    }

    #[test]
    fn budget_blocks_the_call_after_the_crossing_one_for_that_method_only() {
        let op = Operating::new(Some(1.0), Billing::Batch);
        let c = hook(1);
        assert!(op.check(&c, "im.notify", T0).is_ok());
        op.bill(&c, "im.notify", T0, 0.6);
        assert!(op.check(&c, "im.notify", T0 + 1.0).is_ok());
        op.bill(&c, "im.notify", T0 + 1.0, 0.6);
        let e = op.check(&c, "im.notify", T0 + 2.0);
        assert_eq!(e, Err(ApiError::operation_time_limit()));
        // Other methods and other callers are unaffected.
        assert!(op.check(&c, "im.notify.get", T0 + 2.0).is_ok());
        assert!(op.check(&hook(2), "im.notify", T0 + 2.0).is_ok());
        let app = Caller::OAuth {
            user_id: 1,
            client_id: "x".into(),
        };
        assert!(op.check(&app, "im.notify", T0 + 2.0).is_ok());
        // The window slides: ten minutes after the buckets opened, the method is free again.
        assert!(op.check(&c, "im.notify", T0 + 600.0).is_ok());
    }

    /// portal-behaviour §8.4: blocked only when the total exceeds the budget.
    #[test]
    fn at_exactly_the_budget_a_call_still_runs() {
        let op = Operating::new(Some(1.0), Billing::Batch);
        let c = hook(1);
        op.bill(&c, "m", T0, 0.5);
        op.bill(&c, "m", T0 + 1.0, 0.5);
        assert!(op.check(&c, "m", T0 + 2.0).is_ok());
        op.bill(&c, "m", T0 + 2.0, 0.001);
        assert!(op.check(&c, "m", T0 + 3.0).is_err());
    }

    #[test]
    fn no_budget_never_blocks_but_reports() {
        let op = Operating::new(None, Billing::Batch);
        let c = hook(1);
        let u = op.bill(&c, "m", T0, 10_000.0);
        assert_eq!(u.operating, 10_000.0);
        assert!(op.check(&c, "m", T0).is_ok());
    }

    #[test]
    fn batch_billing_hook() {
        let op = Operating::new(Some(1.0), Billing::Batch);
        let c = hook(1);
        assert!(op.bills_request("batch"));
        // The pipeline billed earlier batches to `batch`; sub-calls report that figure and
        // bill nothing themselves.
        op.bill(&c, "batch", T0, 0.25);
        let (r, u) = op.sub_call(&c, "im.notify", T0 + 1.0, || Ok::<_, ApiError>(1));
        assert_eq!(r, Ok(1));
        assert_eq!(u.operating, 0.25);
        assert_eq!(op.usage(&c, "im.notify", T0 + 1.0).operating, 0.0);
        // A method blocked by direct calls is refused inside a batch, and not run.
        op.bill(&c, "im.notify", T0, 5.0);
        let mut ran = false;
        let (r, _) = op.sub_call(&c, "im.notify", T0 + 1.0, || {
            ran = true;
            Ok::<_, ApiError>(1)
        });
        assert_eq!(r, Err(ApiError::operation_time_limit()));
        assert!(!ran);
    }

    #[test]
    fn per_method_billing_hook() {
        let op = Operating::new(Some(0.001), Billing::PerMethod);
        let c = hook(1);
        assert!(!op.bills_request("batch"));
        assert!(op.bills_request("im.notify"));
        let (r, u) = op.sub_call(&c, "im.notify", T0, || {
            std::thread::sleep(std::time::Duration::from_millis(5));
            Ok::<_, ApiError>(())
        });
        assert!(r.is_ok());
        assert!(u.operating >= 0.005, "{u:?}");
        assert_eq!(op.usage(&c, "im.notify", T0).operating, u.operating);
        let (r, _) = op.sub_call(&c, "im.notify", T0 + 1.0, || Ok::<_, ApiError>(()));
        assert_eq!(r, Err(ApiError::operation_time_limit()));
        let (r, _) = op.sub_call(&c, "im.notify.get", T0 + 1.0, || Ok::<_, ApiError>(()));
        assert!(r.is_ok());
    }

    #[test]
    fn stamp_writes_both_fields() {
        let mut time = serde_json::json!({"start": T0});
        Usage {
            operating: 1.5,
            reset_at: Some(42),
        }
        .stamp(&mut time, T0);
        assert_eq!(time["operating"], 1.5);
        assert_eq!(time["operating_reset_at"], 42);
        let mut time = serde_json::json!({});
        Usage {
            operating: 0.0,
            reset_at: None,
        }
        .stamp(&mut time, T0 + 0.5);
        assert_eq!(time["operating_reset_at"], T0 as u64 + 601);
    }
}
