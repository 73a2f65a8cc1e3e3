//! `batch`: up to 50 commands in one HTTP request (`CRestProvider::methodsBatch`).
//!
//! Clients lean on batch for throughput, so its quirks matter as much as the happy path: each
//! command is a `method?query` string decoded with PHP `parse_str` (nested parameters must be
//! bracket-encoded even inside a JSON body), later commands can reference earlier results with
//! `$result[cmd][FIELD]`-style expressions substituted textually (`CRestUtil::ParseBatchQuery`),
//! every failure stays in `result_error` while the HTTP answer is 200, and `halt` uses PHP
//! truthiness (the string `"false"` halts).
//!
//! Sub-commands go straight to [`super::call`] with the outer caller; they never pass through
//! the HTTP pipeline. So whatever the pipeline does per request (rate limiting, request log,
//! faults, operating-time billing) happens once, for the method [`METHOD`], which is the route
//! method of the outer request. That is the hook the limits code relies on: bill by route
//! method and a batch is billed to `batch`, as measured on the cloud.

use serde_json::{Map, Value, json};

use super::Call;
use crate::error::ApiError;
use crate::php;
use crate::timing::Timing;

/// The method name a batch request is routed, rate-limited and billed under.
pub const METHOD: &str = "batch";

/// `CRestUtil::BATCH_MAX_LENGTH`.
pub const MAX_LENGTH: usize = 50;

/// Parameters the outer auth overrides and the batch item removes (`setAuthKeys`).
const AUTH_KEYS: [&str; 4] = ["auth", "access_token", "aplogin", "ap"];

/// Reference kinds in `$arResult` order; the server builds its regex alternation from the
/// keys in this order, so `$resultx[a]` is `result` with the path `x[a]`.
const KINDS: [&str; 5] = ["result", "next", "total", "time", "error"];

pub fn length_exceeded() -> ApiError {
    ApiError::new(
        "ERROR_BATCH_LENGTH_EXCEEDED",
        "Max batch length exceeded",
        400,
    )
}

pub fn method_not_allowed() -> ApiError {
    ApiError::new(
        "ERROR_BATCH_METHOD_NOT_ALLOWED",
        "Method is not allowed for batch usage",
        405,
    )
}

/// The `$arResult` sections, each a PHP array keyed by command key.
#[derive(Debug, Default)]
struct Sections {
    result: Map<String, Value>,
    next: Map<String, Value>,
    total: Map<String, Value>,
    time: Map<String, Value>,
    error: Map<String, Value>,
}

impl Sections {
    /// `$arResult[$name]`, case-sensitive (the regex is not, the array lookup is).
    fn get(&self, name: &str) -> Option<&Map<String, Value>> {
        match name {
            "result" => Some(&self.result),
            "next" => Some(&self.next),
            "total" => Some(&self.total),
            "time" => Some(&self.time),
            "error" => Some(&self.error),
            _ => None,
        }
    }
}

/// A successful sub-call, split the way `CRestServer::processResponse` does.
struct Success {
    result: Value,
    next: Option<i64>,
    total: Option<i64>,
    time: Value,
}

/// `methodsBatch`.
pub fn run(call: &Call<'_>) -> Result<Value, ApiError> {
    let halt = call.params.get("HALT").is_some_and(php::truthy);
    let mut sections = Sections::default();
    // `foreach` over a scalar CMD warns and runs no command.
    let commands: Vec<(String, &Value)> = match call.param("CMD") {
        Some(Value::Array(list)) => list
            .iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), v))
            .collect(),
        Some(Value::Object(map)) => map.iter().map(|(k, v)| (k.clone(), v)).collect(),
        _ => Vec::new(),
    };
    for (n, (key, command)) in commands.into_iter().enumerate() {
        let outcome = if n < MAX_LENGTH {
            run_command(call, command, &sections)
        } else {
            Err(length_exceeded())
        };
        match outcome {
            Ok(done) => {
                sections.result.insert(key.clone(), done.result);
                if let Some(next) = done.next {
                    sections.next.insert(key.clone(), next.into());
                }
                if let Some(total) = done.total {
                    sections.total.insert(key.clone(), total.into());
                }
                sections.time.insert(key, done.time);
            }
            Err(e) => {
                sections.error.insert(
                    key,
                    json!({"error": e.code, "error_description": e.description}),
                );
                if halt {
                    break;
                }
            }
        }
    }
    // Empty sections are empty maps, which the encoder writes as PHP's `[]`; maps keyed
    // 0..n-1 (a list `cmd`) come out as JSON lists.
    Ok(json!({
        "result": sections.result,
        "result_error": sections.error,
        "result_total": sections.total,
        "result_next": sections.next,
        "result_time": sections.time,
    }))
}

fn run_command(call: &Call<'_>, command: &Value, sections: &Sections) -> Result<Success, ApiError> {
    // `parse_url` of an array fails (no path, no query), which ends as "method not found".
    let command = php::scalar_string(command).unwrap_or_default();
    let (path, query) = parse_url(&command);
    // `download`/`upload` are compared as written; a nested batch is refused whatever its
    // case, since the emulator must never recurse.
    let method = path.to_lowercase();
    if path == "download" || path == "upload" || method == METHOD {
        return Err(method_not_allowed());
    }
    let mut params = parse_batch_query_limited(query, sections, &call.store.input_limits);
    for key in AUTH_KEYS {
        params.remove(key);
    }
    // Each command is its own `CRestServerBatchItem`: its `start` is the offset of its own
    // list call, never the outer request's (portal-behaviour §7.2).
    let start = super::start_param(params.remove("start"));
    params.remove("state");
    let params = php::upper_case_keys(params);

    let timing = Timing::start();
    let sub = Call {
        params: &params,
        start,
        ..*call
    };
    // The operating budget decides whether the sub-method may run and what its
    // `result_time` reports (the batch-wide figure unless billed per method).
    let started_unix = crate::operating::unix_now();
    let (result, usage) = call
        .operating
        .sub_call(call.caller, &method, started_unix, || {
            super::call(&method, &sub)
        });
    let (result, next, total) = lift_paging(result?);
    let mut time = timing.to_value();
    usage.stamp(&mut time, started_unix);
    Ok(Success {
        result,
        next,
        total,
        time,
    })
}

/// The path and query of `parse_url($call)` for a relative `method?query#fragment`.
fn parse_url(command: &str) -> (&str, &str) {
    let command = command.split('#').next().unwrap_or("");
    command.split_once('?').unwrap_or((command, ""))
}

/// `next` and `total` are lifted out of an array result (`processResponse`): `next` when
/// set and not null, `total` whenever the key exists; both through `intval`.
fn lift_paging(result: Value) -> (Value, Option<i64>, Option<i64>) {
    let Value::Object(mut map) = result else {
        return (result, None, None);
    };
    let next = match map.get("next") {
        Some(v) if !v.is_null() => map.remove("next").map(|v| php::intval(&v)),
        _ => None,
    };
    let total = map.remove("total").map(|v| php::intval(&v));
    (Value::Object(map), next, total)
}

// ---------------------------------------------------------------------------------------------
// ParseBatchQuery
// ---------------------------------------------------------------------------------------------

/// A command string as the batch reads it, before any command has run: the method as written
/// and its parameters (references resolve against empty results).
pub fn parse_command(command: &str, limits: &php::InputLimits) -> (String, Map<String, Value>) {
    let (path, query) = parse_url(command);
    (
        path.to_owned(),
        parse_batch_query_limited(query, &Sections::default(), limits),
    )
}

/// `CRestUtil::ParseBatchQuery` under PHP's default input limits.
#[cfg(test)]
fn parse_batch_query(query: &str, sections: &Sections) -> Map<String, Value> {
    parse_batch_query_limited(query, sections, &php::InputLimits::default())
}

/// `CRestUtil::ParseBatchQuery`: `parse_str`, then references substituted in keys and values.
fn parse_batch_query_limited(
    query: &str,
    sections: &Sections,
    limits: &php::InputLimits,
) -> Map<String, Value> {
    // `if ($query)`: "" and "0" give no parameters.
    if query.is_empty() || query == "0" {
        return Map::new();
    }
    substitute_map(php::parse_str_limited(query, limits), sections)
}

fn substitute_map(map: Map<String, Value>, sections: &Sections) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in map {
        out.insert(substitute_key(&key), substitute_structure(value, sections));
    }
    out
}

/// `processBatchStructure` on one value.
fn substitute_structure(value: Value, sections: &Sections) -> Value {
    match value {
        Value::String(s) => substitute_value(&s, sections),
        // Integer keys contain no `$`, so a list keeps its keys.
        Value::Array(list) => Value::Array(
            list.into_iter()
                .map(|v| substitute_structure(v, sections))
                .collect(),
        ),
        Value::Object(map) => Value::Object(substitute_map(map, sections)),
        other => other,
    }
}

/// `processBatchElement` with the reference kinds: a reference that is the whole value is
/// replaced by the raw value (possibly an array); inside a longer string it is `str_replace`d
/// with the value as a PHP string (an array becomes `Array`, as PHP 7 converts it).
fn substitute_value(s: &str, sections: &Sections) -> Value {
    substitute(s, &KINDS, |kind| sections.get(kind))
}

/// `processBatchElement` on a key: the server calls it without the kinds, so the regex is
/// `\$()(\S*)` and the looked-up section `$arResult['']` does not exist. A key with a `[x]`
/// after a `$` therefore loses that part (or becomes `""`); others stay as they are.
fn substitute_key(key: &str) -> String {
    if !key.contains('$') {
        return key.to_owned();
    }
    php::strval(&substitute(key, &[""], |_| None))
}

/// One `\$(kinds)(\S*)` match.
struct Reference<'a> {
    whole: &'a str,
    kind: &'a str,
    path: &'a str,
}

fn substitute<'s>(
    s: &str,
    kinds: &[&str],
    section: impl Fn(&str) -> Option<&'s Map<String, Value>>,
) -> Value {
    let mut query = Value::String(s.to_owned());
    for reference in find_references(s, kinds) {
        let segments = path_segments(reference.path);
        // No `[key]` in the path: the server leaves the match alone.
        if segments.is_empty() {
            continue;
        }
        let mut resolved = match section(reference.kind) {
            Some(map) => Value::Object(map.clone()),
            None => Value::Null,
        };
        // Walk while `isset($r[$key])`; a missing key stops at the deepest existing value.
        for segment in segments {
            match isset_dim(&resolved, segment) {
                Some(inner) => resolved = inner,
                None => break,
            }
        }
        query = match query {
            Value::String(q) if q == reference.whole => resolved,
            Value::String(q) => Value::String(q.replace(reference.whole, &php::strval(&resolved))),
            // Already replaced as a whole value by an earlier match.
            other => other,
        };
    }
    query
}

/// PCRE `\s` without the `u` flag.
fn is_pcre_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0B' | b'\x0C' | b'\r')
}

/// `preg_match_all('/\$(kinds)([^\s]*)/i', $s)`: alternatives tried in order, matches do not
/// overlap, and the path runs to the next whitespace.
fn find_references<'a>(s: &'a str, kinds: &[&str]) -> Vec<Reference<'a>> {
    let bytes = s.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' {
            i += 1;
            continue;
        }
        let after = &bytes[i + 1..];
        let kind_len = kinds.iter().find_map(|kind| {
            let k = kind.as_bytes();
            (after.len() >= k.len() && after[..k.len()].eq_ignore_ascii_case(k)).then_some(k.len())
        });
        let Some(kind_len) = kind_len else {
            i += 1;
            continue;
        };
        let kind_end = i + 1 + kind_len;
        let mut end = kind_end;
        while end < bytes.len() && !is_pcre_space(bytes[end]) {
            end += 1;
        }
        // All boundaries are at ASCII bytes, so the slices are valid UTF-8.
        found.push(Reference {
            whole: &s[i..end],
            kind: &s[i + 1..kind_end],
            path: &s[kind_end..end],
        });
        i = end.max(i + 1);
    }
    found
}

/// `preg_match_all('/\[([^\]]+)\]/', $path)`: every non-empty bracketed segment, wherever it
/// is in the path (`[a]x[b]` gives `a`, `b`; a segment may contain `[`).
fn path_segments(path: &str) -> Vec<&str> {
    let bytes = path.as_bytes();
    let mut segments = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'[' {
            i += 1;
            continue;
        }
        match bytes[i + 1..].iter().position(|b| *b == b']') {
            None => break,
            Some(0) => i += 1,
            Some(off) => {
                segments.push(&path[i + 1..i + 1 + off]);
                i = i + 2 + off;
            }
        }
    }
    segments
}

/// `isset($r[$key])` and the value: arrays by key (integer-like keys are canonical), strings
/// by byte offset (negative from the end), anything else has no dimensions.
fn isset_dim(r: &Value, key: &str) -> Option<Value> {
    match r {
        Value::Object(map) => map.get(key).filter(|v| !v.is_null()).cloned(),
        Value::Array(list) => canonical_index(key)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| list.get(i))
            .filter(|v| !v.is_null())
            .cloned(),
        Value::String(s) => {
            let offset = numeric_offset(key)?;
            let len = i64::try_from(s.len()).ok()?;
            let at = if offset < 0 { len + offset } else { offset };
            let at = usize::try_from(at).ok().filter(|at| *at < s.len())?;
            Some(Value::String(
                String::from_utf8_lossy(&s.as_bytes()[at..=at]).into_owned(),
            ))
        }
        _ => None,
    }
}

/// A PHP array key that is a canonical decimal integer (`"0"`, `"12"`, `"-3"`; not `"01"`).
fn canonical_index(key: &str) -> Option<i64> {
    let digits = key.strip_prefix('-').unwrap_or(key);
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
        && key != "-0";
    if canonical { key.parse().ok() } else { None }
}

/// A string offset: an integer numeric string, surrounding whitespace allowed (PHP 8).
fn numeric_offset(key: &str) -> Option<i64> {
    let t = key.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0B' | '\x0C'));
    let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sections() -> Sections {
        let mut s = Sections::default();
        s.result.insert(
            "a".into(),
            json!({"ID": "7", "LIST": [10, 20], "NAME": "hello"}),
        );
        s.result.insert("n".into(), json!(42));
        s.next.insert("a".into(), json!(50));
        s.total.insert("a".into(), json!(120));
        s.time.insert("a".into(), json!({"start": 1.5}));
        s.error.insert(
            "b".into(),
            json!({"error": "USER_ID_EMPTY", "error_description": "User ID can't be empty"}),
        );
        s
    }

    fn sub(s: &str) -> Value {
        substitute_value(s, &sections())
    }

    #[test]
    fn whole_value_references_keep_the_raw_value() {
        assert_eq!(sub("$result[a][ID]"), json!("7"));
        assert_eq!(sub("$result[a][LIST]"), json!([10, 20]));
        assert_eq!(sub("$result[a][LIST][1]"), json!(20));
        assert_eq!(sub("$result[n]"), json!(42));
        assert_eq!(sub("$next[a]"), json!(50));
        assert_eq!(sub("$total[a]"), json!(120));
        assert_eq!(sub("$time[a][start]"), json!(1.5));
        assert_eq!(sub("$error[b][error]"), json!("USER_ID_EMPTY"));
    }

    #[test]
    fn references_inside_strings_are_replaced_as_php_strings() {
        assert_eq!(sub("id=$result[a][ID] and more"), json!("id=7 and more"));
        assert_eq!(sub("n:$next[a] t:$total[a]"), json!("n:50 t:120"));
        assert_eq!(sub("x $result[a][LIST]"), json!("x Array"));
        // The match runs to the next whitespace, trailing characters included.
        assert_eq!(sub("$result[a][ID], x"), json!("7 x"));
    }

    #[test]
    fn missing_paths_stop_at_the_deepest_existing_value() {
        assert_eq!(
            sub("$result[a][MISSING][0]"),
            json!({"ID": "7", "LIST": [10, 20], "NAME": "hello"})
        );
        assert_eq!(sub("$next[zzz]"), json!({"a": 50}));
        assert_eq!(sub("$result[a][LIST][9]"), json!([10, 20]));
        // Strings have byte offsets.
        assert_eq!(sub("$result[a][NAME][1]"), json!("e"));
        assert_eq!(sub("$result[a][NAME][-1]"), json!("o"));
        // Numbers have none.
        assert_eq!(sub("$result[n][0]"), json!(42));
    }

    #[test]
    fn references_without_a_key_or_kind_are_left_alone() {
        assert_eq!(sub("$result"), json!("$result"));
        assert_eq!(sub("$foo[a]"), json!("$foo[a]"));
        assert_eq!(sub("price $5"), json!("price $5"));
        // The regex is case-insensitive, the lookup is not.
        assert_eq!(sub("$RESULT[a]"), Value::Null);
        // The alternation takes the first kind that fits.
        assert_eq!(sub("$resultx[a][ID]"), json!("7"));
    }

    #[test]
    fn keys_with_references_lose_them() {
        assert_eq!(substitute_key("FIELDS"), "FIELDS");
        assert_eq!(substitute_key("$result[a]"), "");
        assert_eq!(substitute_key("x$result[a]"), "x");
        assert_eq!(substitute_key("x$y"), "x$y");
    }

    #[test]
    fn path_segments_table() {
        assert_eq!(path_segments("[a][b][0]"), vec!["a", "b", "0"]);
        assert_eq!(path_segments("x[a]y[b]"), vec!["a", "b"]);
        assert_eq!(path_segments("[][a]"), vec!["a"]);
        assert_eq!(path_segments("[[a]"), vec!["[a"]);
        assert_eq!(path_segments("[a"), Vec::<&str>::new());
        assert_eq!(path_segments(""), Vec::<&str>::new());
    }

    #[test]
    fn parse_batch_query_decodes_brackets_and_substitutes() {
        let got = parse_batch_query(
            "USER_ID=$result[a][ID]&ATTACH[0][MESSAGE]=from+$result[a][NAME]&IDS[]=$result[a][LIST][0]",
            &sections(),
        );
        assert_eq!(
            Value::Object(got),
            json!({"USER_ID": "7", "ATTACH": [{"MESSAGE": "from hello"}], "IDS": [10]})
        );
        assert!(parse_batch_query("0", &sections()).is_empty());
    }

    #[test]
    fn lift_paging_table() {
        assert_eq!(
            lift_paging(json!({"a": 1, "next": "50", "total": null})),
            (json!({"a": 1}), Some(50), Some(0))
        );
        assert_eq!(
            lift_paging(json!({"next": null})),
            (json!({"next": null}), None, None)
        );
        assert_eq!(lift_paging(json!([1])), (json!([1]), None, None));
    }

    #[test]
    fn parse_url_table() {
        assert_eq!(parse_url("im.notify?A=1&B=2"), ("im.notify", "A=1&B=2"));
        assert_eq!(parse_url("user.current"), ("user.current", ""));
        assert_eq!(parse_url("m?a=1#frag"), ("m", "a=1"));
        assert_eq!(parse_url("m?a=1?b"), ("m", "a=1?b"));
    }
}
