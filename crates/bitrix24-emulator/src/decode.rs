//! The emulator's request decoders as public functions, for fuzz targets and for tools that
//! want to see what the emulated portal would make of a request. Each is the function the
//! handlers use, not a copy; none panics or recurses without bound on any input.

use serde_json::{Map, Value};

pub use crate::php::{
    InputLimits, MAX_FILE_UPLOADS, MAX_INPUT_NESTING_LEVEL, MAX_INPUT_VARS, POST_MAX_SIZE,
};

/// `json_decode`'s default depth, which `Bitrix\Main\Web\Json::decode` keeps: a body nested
/// deeper is a decode error, and the portal then sees no parameters at all.
pub const JSON_MAX_DEPTH: usize = 512;

/// A query string or a `parse_str()` argument: PHP's `parse_str` under `limits` (the first
/// `max_input_vars` non-empty pieces are kept).
pub fn query_string(input: &str, limits: &InputLimits) -> Map<String, Value> {
    crate::php::parse_str_limited(input, limits)
}

/// An `application/x-www-form-urlencoded` body as PHP fills `$_POST` (keeps
/// `max_input_vars + 1` pieces, PHP's own off-by-one).
pub fn form_body(body: &[u8], limits: &InputLimits) -> Map<String, Value> {
    crate::php::parse_post_limited(&String::from_utf8_lossy(body), limits)
}

/// A `multipart/form-data` body's text fields as PHP puts them in `$_POST` (file parts are not
/// parameters); `content_type` is the whole header value, with the boundary.
pub fn multipart_body(content_type: &str, body: &[u8], limits: &InputLimits) -> Map<String, Value> {
    crate::php::register_pairs_limited(multipart_fields(content_type, body, limits), limits)
}

/// An `application/json` body as `CRestUtil::getRequestData` sees it: an object's members, or
/// nothing for invalid JSON, a non-object, or nesting deeper than [`JSON_MAX_DEPTH`].
pub fn json_body(body: &[u8]) -> Map<String, Value> {
    if json_depth(body) > JSON_MAX_DEPTH {
        return Map::new();
    }
    // The depth is checked above, so serde_json's own limit (128) can go: PHP accepts 512.
    let mut de = serde_json::Deserializer::from_slice(body);
    de.disable_recursion_limit();
    match serde::Deserialize::deserialize(&mut de).and_then(|v: Value| de.end().map(|()| v)) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

/// The deepest array/object nesting in `body`, strings skipped; linear, no recursion. Bytes
/// that are not JSON do not matter: such a body fails to parse anyway.
pub fn json_depth(body: &[u8]) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in body {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// A POST body by its `Content-Type`, as the portal decodes it: JSON, multipart, a form
/// (`$_POST`), or `parse_str` of the raw body for any other type. A body over
/// `post_max_size` is ignored whole, as PHP ignores it.
pub fn request_body(content_type: &str, body: &[u8], limits: &InputLimits) -> Map<String, Value> {
    if body.is_empty() || body.len() > limits.post_max_size {
        return Map::new();
    }
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "application/json" => json_body(body),
        "multipart/form-data" => multipart_body(content_type, body, limits),
        "application/x-www-form-urlencoded" => form_body(body, limits),
        // PHP leaves `$_POST` empty, so the portal runs `parse_str` on the raw body.
        _ => query_string(&String::from_utf8_lossy(body), limits),
    }
}

/// A batch command (`cmd[...]` value) such as `im.notify.personal.add?USER_ID=1&MESSAGE=x`:
/// the method as written and its parameters, decoded as `CRestUtil::ParseBatchQuery` does
/// when no earlier command has a result yet.
pub fn batch_command(command: &str, limits: &InputLimits) -> (String, Map<String, Value>) {
    crate::methods::batch::parse_command(command, limits)
}

/// The text fields of a `multipart/form-data` body, as PHP puts them in `$_POST`, parsed with
/// multer. File parts (with a `filename`, even an empty one) go to `$_FILES` on a portal, so
/// they are not parameters. A malformed body keeps the fields before the damage. Like PHP
/// (`max_multipart_body_parts`), reading stops after `max_input_vars + max_file_uploads` parts.
pub(crate) fn multipart_fields(
    content_type: &str,
    body: &[u8],
    limits: &InputLimits,
) -> Vec<(String, String)> {
    let Ok(boundary) = multer::parse_boundary(content_type) else {
        return Vec::new();
    };
    let max_parts = limits.max_input_vars.saturating_add(MAX_FILE_UPLOADS);
    let chunk = body.to_vec();
    let stream =
        futures_util::stream::once(async move { Ok::<_, std::convert::Infallible>(chunk) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    let collect = async move {
        let mut fields = Vec::new();
        let mut parts = 0usize;
        while let Ok(Some(field)) = multipart.next_field().await {
            parts += 1;
            if parts > max_parts {
                tracing::warn!(
                    "Multipart body parts limit exceeded {max_parts}. To increase the limit change max_multipart_body_parts in php.ini."
                );
                break;
            }
            if field.file_name().is_some() {
                continue;
            }
            let Some(name) = field.name().map(str::to_owned) else {
                continue;
            };
            match field.bytes().await {
                Ok(value) => fields.push((name, String::from_utf8_lossy(&value).into_owned())),
                Err(_) => break,
            }
        }
        fields
    };
    // The whole body is already in memory, so the parser never has to wait.
    futures_util::FutureExt::now_or_never(collect).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested_json(depth: usize) -> String {
        format!(
            "{{\"A\":{}1{}}}",
            "[".repeat(depth - 1),
            "]".repeat(depth - 1)
        )
    }

    #[test]
    fn json_depth_boundary_is_php_512() {
        assert_eq!(json_depth(nested_json(512).as_bytes()), 512);
        let kept = json_body(nested_json(512).as_bytes());
        assert!(
            kept.contains_key("A"),
            "512 levels decode, as json_decode does"
        );
        assert!(json_body(nested_json(513).as_bytes()).is_empty());
        // Brackets inside strings do not count.
        let quoted = format!("{{\"A\":\"{}\\\"{}\"}}", "[".repeat(600), "{".repeat(600));
        assert_eq!(
            json_body(quoted.as_bytes())["A"].as_str().map(str::len),
            Some(1201)
        );
    }

    #[test]
    fn json_body_table() {
        assert_eq!(Value::Object(json_body(br#"{"a":1}"#)), json!({"a": 1}));
        assert!(json_body(b"[1]").is_empty());
        assert!(json_body(br#"{"a":1} x"#).is_empty());
        assert!(json_body(b"{").is_empty());
        // An unbalanced flood of openers is refused by depth before any parsing.
        assert!(json_body("[".repeat(1_000_000).as_bytes()).is_empty());
    }

    #[test]
    fn request_body_over_post_max_size_is_ignored() {
        let limits = InputLimits {
            post_max_size: 10,
            ..InputLimits::default()
        };
        assert!(request_body("", b"USER_ID=22", &limits).contains_key("USER_ID"));
        assert!(request_body("", b"USER_ID=222", &limits).is_empty());
    }

    #[test]
    fn batch_command_splits_method_and_params() {
        let (method, params) = batch_command(
            "im.notify.personal.add?USER_ID=1&MESSAGE=x#frag",
            &InputLimits::default(),
        );
        assert_eq!(method, "im.notify.personal.add");
        assert_eq!(
            Value::Object(params),
            json!({"USER_ID": "1", "MESSAGE": "x"})
        );
    }
}
