//! The request log behind `GET /_emulator/requests`: every REST call received and its outcome.
//!
//! Tests of retry and rate-limit logic need to see what actually reached the server, including
//! calls that got no answer. Each entry is `{at, method, auth, status, error}`:
//!
//! - `at`: unix time (float seconds) when the request arrived;
//! - `method`: the lower-cased method name, or `null` when the path names none;
//! - `auth`: the kind of credentials presented (`"webhook"`, `"oauth"` or `"none"`), whether
//!   or not they were valid;
//! - `status`: the HTTP status answered, or `0` when the connection was closed without an
//!   answer;
//! - `error`: the `error` code answered, `null` on success, or `"reset_before"` /
//!   `"reset_after"` for a closed connection.
//!
//! Only the newest [`CAPACITY`] entries are kept, so a long benchmark cannot exhaust memory.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Serialize;

/// Entries kept.
pub const CAPACITY: usize = 100_000;

/// Status recorded for a connection closed without an answer.
pub const NO_ANSWER: u16 = 0;

/// The credentials a request presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthKind {
    Webhook,
    #[serde(rename = "oauth")]
    OAuth,
    None,
}

/// One logged call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    pub at: f64,
    pub method: Option<String>,
    pub auth: AuthKind,
    pub status: u16,
    pub error: Option<String>,
}

#[derive(Debug, Default)]
pub struct RequestLog {
    entries: Mutex<VecDeque<Entry>>,
}

impl RequestLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn push(&self, entry: Entry) {
        let mut entries = self.lock();
        if entries.len() >= CAPACITY {
            entries.pop_front();
        }
        entries.push_back(entry);
    }

    /// Oldest first.
    pub fn snapshot(&self) -> Vec<Entry> {
        self.lock().iter().cloned().collect()
    }

    pub fn clear(&self) {
        self.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_serialise_as_documented() {
        let log = RequestLog::default();
        log.push(Entry {
            at: 1.5,
            method: Some("im.notify".into()),
            auth: AuthKind::OAuth,
            status: NO_ANSWER,
            error: Some("reset_after".into()),
        });
        log.push(Entry {
            at: 2.0,
            method: None,
            auth: AuthKind::None,
            status: 404,
            error: Some("ERROR_METHOD_NOT_FOUND".into()),
        });
        assert_eq!(
            serde_json::to_value(log.snapshot()).ok(),
            Some(serde_json::json!([
                {"at": 1.5, "method": "im.notify", "auth": "oauth", "status": 0, "error": "reset_after"},
                {"at": 2.0, "method": null, "auth": "none", "status": 404, "error": "ERROR_METHOD_NOT_FOUND"}
            ]))
        );
        log.clear();
        assert!(log.snapshot().is_empty());
    }
}
