//! `GET /metrics`: what the relay did since it started, in the OpenMetrics text format
//! Prometheus scrapes. Counters are this process's; the queue's gauges are read from the
//! queue at each scrape, so they survive restarts.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use std::sync::atomic::AtomicU64;

use super::queue::Stats;

pub struct Metrics {
    registry: Registry,
    pub accepted: Counter,
    pub delivered: Counter,
    pub failed: Counter,
    pub unknown: Counter,
    /// Requests answered 4xx or 503, by reason.
    pub rejected: Family<Vec<(String, String)>, Counter>,
    pub batches: Counter,
    pub rate_limit_waits: Counter,
    rate_limit_wait_seconds: Counter<f64, AtomicU64>,
    queue_depth: Gauge,
    dead_letters: Gauge,
    oldest_age: Gauge<f64, AtomicU64>,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("oint_serve");
        let m = Metrics {
            accepted: Counter::default(),
            delivered: Counter::default(),
            failed: Counter::default(),
            unknown: Counter::default(),
            rejected: Family::default(),
            batches: Counter::default(),
            rate_limit_waits: Counter::default(),
            rate_limit_wait_seconds: Counter::default(),
            queue_depth: Gauge::default(),
            dead_letters: Gauge::default(),
            oldest_age: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "accepted",
            "Notifications accepted into the queue (answered 202)",
            m.accepted.clone(),
        );
        registry.register(
            "delivered",
            "Notifications the portal created",
            m.delivered.clone(),
        );
        registry.register(
            "failed",
            "Notifications the portal refused or did not create (dead-lettered)",
            m.failed.clone(),
        );
        registry.register(
            "outcome_unknown",
            "Notifications that may or may not have reached the portal and were not resent (dead-lettered)",
            m.unknown.clone(),
        );
        registry.register(
            "rejected",
            "Requests refused before queueing, by reason (invalid, unauthorized, full, no_route, draining, queue_error); bodies over 4 MiB are refused with 413 before they are read",
            m.rejected.clone(),
        );
        registry.register("batches", "Batch requests dispatched", m.batches.clone());
        registry.register(
            "rate_limit_waits",
            "Times a request waited for the portal's rate limit or operating-time budget",
            m.rate_limit_waits.clone(),
        );
        registry.register(
            "rate_limit_wait_seconds",
            "Seconds spent waiting for the portal's rate limit or operating-time budget",
            m.rate_limit_wait_seconds.clone(),
        );
        registry.register(
            "queue_depth",
            "Notifications queued or being sent",
            m.queue_depth.clone(),
        );
        registry.register(
            "dead_letters",
            "Notifications in the dead-letter table",
            m.dead_letters.clone(),
        );
        registry.register(
            "oldest_queued_age_seconds",
            "Age of the oldest notification still queued (0 when none)",
            m.oldest_age.clone(),
        );
        Metrics { registry, ..m }
    }

    pub fn reject(&self, reason: &str) {
        self.rejected
            .get_or_create(&vec![("reason".to_string(), reason.to_string())])
            .inc();
    }

    pub fn waited(&self, wait: std::time::Duration) {
        self.rate_limit_waits.inc();
        self.rate_limit_wait_seconds.inc_by(wait.as_secs_f64());
    }

    /// The text of a scrape, with the queue's gauges as of now.
    pub fn render(&self, stats: &Stats, now_ms: i64) -> String {
        self.queue_depth.set(stats.pending as i64);
        self.dead_letters.set(stats.dead as i64);
        self.oldest_age.set(
            stats
                .oldest_ms
                .map_or(0.0, |t| (now_ms.saturating_sub(t)).max(0) as f64 / 1000.0),
        );
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("writing to a String does not fail");
        text
    }
}
