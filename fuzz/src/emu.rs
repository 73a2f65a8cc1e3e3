//! The emulator's request decoders (`bitrix24_emulator::decode`): the JSON body, PHP's
//! `parse_str` and the form/multipart bodies built on it, and `batch` commands.

use bitrix24_emulator::decode;
use bitrix24_emulator::decode::InputLimits;
use serde_json::{Map, Value};

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

/// Fuzz input: a JSON request body.
pub fn run_json(data: &[u8]) {
    let params = decode::json_body(data);
    match serde_json::from_slice::<Value>(data) {
        Ok(Value::Object(map)) if decode::json_depth(data) <= decode::JSON_MAX_DEPTH => {
            assert_eq!(params, map, "a JSON object body decodes as itself")
        }
        _ => assert!(
            params.is_empty(),
            "a body that is no JSON object (or too deep) has no parameters"
        ),
    }
    let by_type = decode::request_body("application/json; charset=utf-8", data, &limits());
    assert_eq!(by_type, params, "the content type picks the JSON decoder");
}

fn limits() -> InputLimits {
    InputLimits::default()
}

/// Every map decoded under the limits keeps at most `max_input_vars` (+1 for `$_POST`'s
/// off-by-one) top-level variables.
fn check_limits(params: &Map<String, Value>, what: &str) {
    assert!(
        params.len() <= limits().max_input_vars + 1,
        "{what}: {} variables kept over max_input_vars",
        params.len()
    );
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
            let params = decode::query_string(&text, &limits());
            check_params(&params, pairs, "parse_str");
            check_limits(&params, "parse_str");
            let params = decode::form_body(body, &limits());
            check_params(&params, pairs.max(1), "a form body");
            check_limits(&params, "a form body");
        }
        1 => {
            // Text fields only: at most one value per part.
            let parts = body.windows(8).filter(|w| w == b"--XyZzy7").count();
            let params = decode::multipart_body("multipart/form-data; boundary=XyZzy7", body, &limits());
            check_params(&params, parts, "a multipart body");
            check_limits(&params, "a multipart body");
        }
        _ => {
            // Any other content type: parse_str of the raw body.
            let text = String::from_utf8_lossy(body);
            let pairs = form_urlencoded::parse(text.as_bytes()).count();
            let params = decode::request_body("text/plain", body, &limits());
            check_params(&params, pairs.max(1), "a raw body");
            check_limits(&params, "a raw body");
        }
    }
}

/// Fuzz input: one `batch` command (`method?query`).
pub fn run_batch(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (method, params) = decode::batch_command(&text, &limits());
    assert!(text.starts_with(method.as_str()), "the method is the command's start");
    let pairs = text
        .split_once('?')
        .map_or(0, |(_, q)| form_urlencoded::parse(q.as_bytes()).count());
    check_params(&params, pairs, "a batch command");
    check_limits(&params, "a batch command");
}
