//! The emulator's request decoders (`bitrix24_emulator::decode`): the JSON body, PHP's
//! `parse_str` and the form/multipart bodies built on it, and `batch` commands.

use bitrix24_emulator::decode;
use serde_json::{Map, Value, json};

/// How deep a decoded parameter may nest: PHP's `max_input_nesting_level` (64) levels of
/// brackets under the top-level name.
const MAX_DEPTH: usize = 65;

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn leaves(v: &Value) -> usize {
    match v {
        Value::Array(a) => a.iter().map(leaves).sum(),
        Value::Object(m) => m.values().map(leaves).sum(),
        _ => 1,
    }
}

/// Every parameter map decoded from `pairs` name/value pairs: at most one value per pair, and
/// never deeper than PHP allows.
fn check_params(params: &Map<String, Value>, pairs: usize, what: &str) {
    let all = Value::Object(params.clone());
    let n = leaves(&all);
    assert!(n <= pairs, "{what}: {n} values from {pairs} pairs");
    let d = depth(&all);
    assert!(d <= MAX_DEPTH + 1, "{what}: nested {d} deep");
}

/// Fuzz input: a JSON request body (and the same text as a lenient JS-literal ATTACH).
pub fn run_json(data: &[u8]) {
    let params = decode::body("application/json; charset=utf-8", data);
    match serde_json::from_slice::<Value>(data) {
        Ok(Value::Object(map)) => assert_eq!(params, map, "a JSON object body decodes as itself"),
        _ => assert!(
            params.is_empty(),
            "a body that is no JSON object has no parameters"
        ),
    }
    // The lenient reader also takes a bare scalar (`'a'`, `5`): only no panic, no overflow.
    let _ = decode::js_object(&String::from_utf8_lossy(data));
}

/// Fuzz input: a form body; the first byte chooses urlencoded, multipart or decoded pairs.
pub fn run_form(data: &[u8]) {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            let text = String::from_utf8_lossy(body);
            let pairs = form_urlencoded::parse(text.as_bytes()).count();
            check_params(&decode::parse_str(&text), pairs, "parse_str");
            let params = decode::body("application/x-www-form-urlencoded", body);
            check_params(&params, pairs.max(1), "a form body");
        }
        1 => {
            // Text fields only: at most one value per part.
            let parts = body.windows(8).filter(|w| w == b"--XyZzy7").count();
            let params = decode::body("multipart/form-data; boundary=XyZzy7", body);
            check_params(&params, parts, "a multipart body");
        }
        _ => {
            // NAME=VALUE lines, already decoded, as multipart fields arrive.
            let text = String::from_utf8_lossy(body);
            let pairs: Vec<(String, String)> = text
                .lines()
                .map(|l| {
                    let (k, v) = l.split_once('=').unwrap_or((l, ""));
                    (k.to_string(), v.to_string())
                })
                .collect();
            let n = pairs.len();
            check_params(&decode::register_pairs(pairs), n, "register_pairs");
        }
    }
}

/// Fuzz input: `COMMAND`, or `RESULTS\0COMMAND` with the earlier results as a JSON object; a
/// command that is JSON (an array, a number) is passed as that value.
pub fn run_batch(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (results, command) = match text.split_once('\0') {
        Some((r, c)) => (
            serde_json::from_str::<Map<String, Value>>(r).unwrap_or_default(),
            c.to_string(),
        ),
        None => (
            json!({"a": {"ID": "7", "LIST": [10, 20], "NAME": "hello"}, "n": 42})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            text.to_string(),
        ),
    };
    let value = match serde_json::from_str::<Value>(&command) {
        Ok(v @ (Value::Array(_) | Value::Object(_) | Value::Number(_) | Value::Bool(_))) => v,
        _ => Value::String(command.clone()),
    };
    match decode::batch_command(&value, &results) {
        Ok((method, params)) => {
            assert_ne!(method, "batch", "a nested batch must be refused");
            assert_eq!(method, method.to_lowercase(), "the method is lower-cased");
            for key in params.keys() {
                assert_eq!(
                    *key,
                    key.to_ascii_uppercase(),
                    "parameter keys are upper-cased"
                );
            }
        }
        Err(code) => assert!(code.starts_with("ERROR_"), "unexpected refusal {code}"),
    }
}
