//! Fault injection: rules that make chosen REST calls fail the way networks and servers do.
//!
//! Reliability code (retries, idempotency, timeouts) can only be tested if failures happen on
//! demand. A rule names a method (or `*`), a kind of failure, how many matching calls it hits
//! (`count`, default 1) and how many matching calls it lets through first (`after`, default 0):
//!
//! - `status`: answer `{"error": E, "error_description": D}` with that HTTP status; nothing runs;
//! - `reset_before`: close the connection without an answer; nothing runs;
//! - `reset_after`: run the call, then close the connection without an answer;
//! - `delay`: run the call, then wait `ms` before answering.
//!
//! Matching: rules are checked in the order they were added. Every rule whose method matches
//! counts the call; the first one whose `after` calls have passed and which still has hits left
//! applies, and only that one uses up a hit. A rule with no hits left is removed. Method names
//! compare case-insensitively, without a `.json` suffix.

use std::sync::Mutex;

use serde_json::{Map, Value, json};

/// Longest delay a rule may ask for.
const MAX_DELAY_MS: u64 = 600_000;

/// What happens to a call a rule hits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    Status {
        status: u16,
        error: String,
        description: String,
    },
    ResetBefore,
    ResetAfter,
    Delay {
        ms: u64,
    },
}

impl FaultKind {
    fn name(&self) -> &'static str {
        match self {
            FaultKind::Status { .. } => "status",
            FaultKind::ResetBefore => "reset_before",
            FaultKind::ResetAfter => "reset_after",
            FaultKind::Delay { .. } => "delay",
        }
    }
}

/// One rule with its remaining counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultRule {
    /// Lower-cased method name, or `*`.
    method: String,
    kind: FaultKind,
    /// Hits left.
    count: u64,
    /// Matching calls still to let through.
    after: u64,
}

impl FaultRule {
    /// The rule as JSON, with the counters as they are now (posting it back recreates it).
    fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("method".into(), json!(self.method));
        m.insert("kind".into(), json!(self.kind.name()));
        m.insert("count".into(), json!(self.count));
        m.insert("after".into(), json!(self.after));
        match &self.kind {
            FaultKind::Status {
                status,
                error,
                description,
            } => {
                m.insert("status".into(), json!(status));
                m.insert("error".into(), json!(error));
                m.insert("description".into(), json!(description));
            }
            FaultKind::Delay { ms } => {
                m.insert("ms".into(), json!(ms));
            }
            FaultKind::ResetBefore | FaultKind::ResetAfter => {}
        }
        Value::Object(m)
    }

    fn matches(&self, method: &str) -> bool {
        self.method == "*" || self.method == method
    }
}

/// Normalise a method name the way routing does.
fn normalise(method: &str) -> String {
    let m = method.trim().to_lowercase();
    m.strip_suffix(".json").map(str::to_owned).unwrap_or(m)
}

/// Parse a request body: one rule object or an array of them. The error says which rule and
/// which field is wrong.
pub fn parse_rules(body: &Value) -> Result<Vec<FaultRule>, String> {
    let items: Vec<&Value> = match body {
        Value::Array(items) => items.iter().collect(),
        Value::Object(_) => vec![body],
        _ => return Err("expected a JSON array of fault rules".into()),
    };
    items
        .iter()
        .enumerate()
        .map(|(i, v)| parse_rule(v).map_err(|e| format!("rule {i}: {e}")))
        .collect()
}

fn parse_rule(v: &Value) -> Result<FaultRule, String> {
    let Value::Object(m) = v else {
        return Err("expected an object".into());
    };
    let method = match m.get("method") {
        Some(Value::String(s)) if !s.trim().is_empty() => normalise(s),
        Some(_) => {
            return Err("\"method\" must be a non-empty string (a method name or \"*\")".into());
        }
        None => return Err("\"method\" is required (a method name or \"*\")".into()),
    };
    let kind_name = match m.get("kind") {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err("\"kind\" must be a string".into()),
        None => return Err("\"kind\" is required".into()),
    };
    let count = uint(m, "count")?.unwrap_or(1);
    if count == 0 {
        return Err("\"count\" must be at least 1".into());
    }
    let after = uint(m, "after")?.unwrap_or(0);
    let (kind, extra): (FaultKind, &[&str]) = match kind_name {
        "status" => {
            let status = uint(m, "status")?.ok_or("\"status\" is required for kind \"status\"")?;
            if !(400..=599).contains(&status) {
                return Err(format!(
                    "\"status\" must be an HTTP error status (400..=599), got {status}"
                ));
            }
            let error = match m.get("error") {
                Some(Value::String(s)) if !s.is_empty() => s.clone(),
                Some(_) => return Err("\"error\" must be a non-empty string".into()),
                None => return Err("\"error\" is required for kind \"status\"".into()),
            };
            let description = match m.get("description") {
                Some(Value::String(s)) => s.clone(),
                Some(_) => return Err("\"description\" must be a string".into()),
                None => default_description(status as u16),
            };
            (
                FaultKind::Status {
                    status: status as u16,
                    error,
                    description,
                },
                &["status", "error", "description"],
            )
        }
        "reset_before" => (FaultKind::ResetBefore, &[]),
        "reset_after" => (FaultKind::ResetAfter, &[]),
        "delay" => {
            let ms = uint(m, "ms")?.ok_or("\"ms\" is required for kind \"delay\"")?;
            if ms > MAX_DELAY_MS {
                return Err(format!("\"ms\" must be at most {MAX_DELAY_MS}"));
            }
            (FaultKind::Delay { ms }, &["ms"])
        }
        other => {
            return Err(format!(
                "unknown kind {other:?}; expected \"status\", \"reset_before\", \"reset_after\" or \"delay\""
            ));
        }
    };
    for key in m.keys() {
        let common = ["method", "kind", "count", "after"];
        if !common.contains(&key.as_str()) && !extra.contains(&key.as_str()) {
            return Err(format!("unknown field {key:?} for kind {kind_name:?}"));
        }
    }
    Ok(FaultRule {
        method,
        kind,
        count,
        after,
    })
}

/// A non-negative integer field, if present.
fn uint(m: &Map<String, Value>, key: &str) -> Result<Option<u64>, String> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("{key:?} must be a non-negative integer")),
    }
}

/// The HTTP reason phrase, as the description of a `status` fault that gives none.
fn default_description(status: u16) -> String {
    axum::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Injected fault")
        .to_owned()
}

/// The active rules of one portal.
#[derive(Debug, Default)]
pub struct Faults {
    rules: Mutex<Vec<FaultRule>>,
}

impl Faults {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<FaultRule>> {
        self.rules.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Append rules.
    pub fn add(&self, rules: Vec<FaultRule>) {
        self.lock().extend(rules);
    }

    /// Replace every rule at once, so no call sees the old and new rules mixed.
    pub fn replace(&self, rules: Vec<FaultRule>) {
        *self.lock() = rules;
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    /// The remaining rules, as JSON.
    pub fn list(&self) -> Vec<Value> {
        self.lock().iter().map(FaultRule::to_value).collect()
    }

    /// Count a call to `method` against the rules and return the fault to apply, if any.
    pub fn take(&self, method: &str) -> Option<FaultKind> {
        let mut rules = self.lock();
        if rules.is_empty() {
            return None;
        }
        let mut hit = None;
        for rule in rules.iter_mut().filter(|r| r.matches(method)) {
            if rule.after > 0 {
                rule.after -= 1;
            } else if hit.is_none() && rule.count > 0 {
                rule.count -= 1;
                hit = Some(rule.kind.clone());
            }
        }
        rules.retain(|r| r.count > 0);
        hit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn faults(rules: Value) -> Faults {
        let f = Faults::default();
        f.add(parse_rules(&rules).unwrap_or_else(|e| panic!("{e}")));
        f
    }

    fn kinds(f: &Faults, methods: &[&str]) -> Vec<Option<&'static str>> {
        methods
            .iter()
            .map(|m| f.take(m).map(|k| k.name()))
            .collect()
    }

    #[test]
    fn after_and_count_select_the_calls_hit() {
        let f = faults(
            json!([{"method": "im.notify", "kind": "reset_before", "after": 2, "count": 2}]),
        );
        assert_eq!(
            kinds(
                &f,
                &[
                    "im.notify",
                    "im.notify",
                    "im.notify",
                    "im.notify",
                    "im.notify"
                ]
            ),
            [None, None, Some("reset_before"), Some("reset_before"), None]
        );
        assert_eq!(Value::from(f.list()), json!([]));
    }

    #[test]
    fn other_methods_are_not_counted() {
        let f = faults(json!([{"method": "IM.Notify.JSON", "kind": "reset_after", "after": 1}]));
        assert_eq!(
            kinds(
                &f,
                &["im.notify.get", "im.notify", "im.notify.get", "im.notify"]
            ),
            [None, None, None, Some("reset_after")]
        );
    }

    #[test]
    fn wildcard_and_first_rule_wins() {
        let f = faults(json!([
            {"method": "*", "kind": "delay", "ms": 5},
            {"method": "im.notify", "kind": "status", "status": 500, "error": "INTERNAL_SERVER_ERROR"}
        ]));
        // Call 1 is hit by the wildcard; the second rule saw it but keeps its hit for call 2.
        assert_eq!(
            kinds(&f, &["im.notify", "im.notify", "im.notify"]),
            [Some("delay"), Some("status"), None]
        );
    }

    #[test]
    fn list_shows_remaining_counters() {
        let f = faults(
            json!({"method": "x", "kind": "status", "status": 503, "error": "E", "count": 3, "after": 1}),
        );
        f.take("x");
        f.take("x");
        assert_eq!(
            Value::from(f.list()),
            json!([{"method": "x", "kind": "status", "count": 2, "after": 0, "status": 503,
                    "error": "E", "description": "Service Unavailable"}])
        );
        f.clear();
        assert_eq!(Value::from(f.list()), json!([]));
    }

    #[test]
    fn validation_errors_name_rule_and_field() {
        let table = [
            (json!("x"), "expected a JSON array"),
            (json!([1]), "rule 0: expected an object"),
            (
                json!([{"kind": "reset_before"}]),
                "rule 0: \"method\" is required",
            ),
            (
                json!([{"method": "", "kind": "reset_before"}]),
                "\"method\" must be",
            ),
            (json!([{"method": "*"}]), "\"kind\" is required"),
            (
                json!([{"method": "*", "kind": "boom"}]),
                "unknown kind \"boom\"",
            ),
            (
                json!([{"method": "*", "kind": "status", "error": "E"}]),
                "\"status\" is required",
            ),
            (
                json!([{"method": "*", "kind": "status", "status": 200, "error": "E"}]),
                "400..=599",
            ),
            (
                json!([{"method": "*", "kind": "status", "status": 500}]),
                "\"error\" is required",
            ),
            (
                json!([{"method": "*", "kind": "delay"}]),
                "\"ms\" is required",
            ),
            (
                json!([{"method": "*", "kind": "delay", "ms": -1}]),
                "\"ms\" must be a non-negative",
            ),
            (
                json!([{"method": "*", "kind": "delay", "ms": 600_001}]),
                "at most",
            ),
            (
                json!([{"method": "*", "kind": "reset_after", "count": 0}]),
                "\"count\" must be at least 1",
            ),
            (
                json!([{"method": "*", "kind": "reset_after", "after": "2"}]),
                "\"after\" must be",
            ),
            (
                json!([{"method": "*", "kind": "reset_after", "ms": 5}]),
                "unknown field \"ms\"",
            ),
            (
                json!([{"method": "*", "kind": "reset_after"}, {"method": "*", "kind": "x"}]),
                "rule 1: unknown kind",
            ),
        ];
        for (body, want) in table {
            let err = parse_rules(&body).expect_err(&body.to_string());
            assert!(err.contains(want), "{body}: {err}");
        }
    }
}
