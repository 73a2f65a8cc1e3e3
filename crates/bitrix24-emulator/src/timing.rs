//! The `time` object every successful answer carries.
//!
//! Clients read it for rate and operating-limit decisions, so its shape follows the portal's
//! `appendDebugInfo`: float unix times, a duration, PHP `date('c')` strings, and the cloud-only
//! `operating` / `operating_reset_at` pair. The request pipeline overwrites that pair with the
//! operating budget's figures (see `crate::operating`).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

/// Operating-time buckets cover ten minutes.
const OPERATING_WINDOW_SECS: u64 = 600;

/// When a request started.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    start_unix_micros: u64,
    start: Instant,
}

impl Timing {
    pub fn start() -> Self {
        Timing {
            start_unix_micros: unix_micros(),
            start: Instant::now(),
        }
    }

    /// Unix seconds at the start of the request (PHP `time()`).
    pub fn unix_secs(&self) -> u64 {
        self.start_unix_micros / 1_000_000
    }

    /// The `time` object, finished now.
    pub fn to_value(self) -> Value {
        let elapsed = self.start.elapsed().as_micros() as u64;
        let start = self.start_unix_micros as f64 / 1e6;
        let finish_micros = self.start_unix_micros + elapsed;
        let finish = finish_micros as f64 / 1e6;
        let duration = elapsed as f64 / 1e6;
        let mut m = Map::new();
        m.insert("start".into(), Value::from(start));
        m.insert("finish".into(), Value::from(finish));
        m.insert("duration".into(), Value::from(duration));
        m.insert("processing".into(), Value::from(duration));
        m.insert("date_start".into(), iso8601(self.unix_secs()).into());
        m.insert(
            "date_finish".into(),
            iso8601(finish_micros / 1_000_000).into(),
        );
        m.insert("operating".into(), Value::from(duration));
        m.insert(
            "operating_reset_at".into(),
            Value::from(self.unix_secs() + OPERATING_WINDOW_SECS),
        );
        Value::Object(m)
    }
}

fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// PHP `date('c')` in UTC, e.g. `2026-03-03T10:00:00+00:00`.
pub fn iso8601(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}+00:00",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_table() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00+00:00");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00+00:00");
        assert_eq!(iso8601(1_772_532_000), "2026-03-03T10:00:00+00:00");
    }

    #[test]
    fn time_object_has_portal_fields() {
        let v = Timing::start().to_value();
        for key in [
            "start",
            "finish",
            "duration",
            "processing",
            "date_start",
            "date_finish",
            "operating",
            "operating_reset_at",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert!(v["start"].is_f64());
        assert!(v["operating_reset_at"].is_u64());
    }
}
