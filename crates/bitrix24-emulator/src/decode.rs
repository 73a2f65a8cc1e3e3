//! The request decoders on their own, for fuzz targets and tests that drive them without an
//! HTTP round trip. Not a stable API: it follows the emulator's internals.

use serde_json::{Map, Value};

/// The parameters of a request body as the portal reads them (`CRestUtil::getRequestData`):
/// JSON for `application/json`, the text fields of `multipart/form-data`, PHP `parse_str` for
/// anything else. `content_type` is the whole header value (boundary included).
pub fn body(content_type: &str, body: &[u8]) -> Map<String, Value> {
    crate::handlers::parse_body_as(content_type, body)
}

/// PHP `parse_str`, as used for form bodies, query strings and batch commands.
pub fn parse_str(input: &str) -> Map<String, Value> {
    crate::php::parse_str(input)
}

/// Parameters from already-decoded name/value pairs, with `parse_str`'s bracket rules.
pub fn register_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Map<String, Value> {
    crate::php::register_pairs(pairs)
}

/// The lenient JavaScript-literal reading of an ATTACH string (`CUtil::JsObjectToPhp`).
pub fn js_object(text: &str) -> Option<Value> {
    crate::jsobject::parse(text)
}

/// One `batch` command (`method?query`): its lower-cased method and its parameters, with
/// `$result[KEY]…` references resolved against `results` (earlier results by command key).
/// `Err` is the error code of a command `batch` refuses.
pub fn batch_command(
    command: &Value,
    results: &Map<String, Value>,
) -> Result<(String, Map<String, Value>), String> {
    crate::methods::batch::decode_command_with(command, results)
}
