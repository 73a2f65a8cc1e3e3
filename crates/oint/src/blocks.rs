//! The `--blocks` (and `--attach`) value: attachment blocks as JSON, as OPI's single-quoted
//! JSON, as a file, or as an http(s) URL to download them from.
//!
//! OPI's own generated examples pass `"[{'IMAGE':{'NAME':'Image1','LINK':'https://…'}}]"`,
//! which is not JSON. Real JSON is tried first and always wins, so a valid JSON value is never
//! reinterpreted; only text that fails as JSON is read again with single quotes as string
//! delimiters.

use std::path::Path;

use bitrix24::Attach;
use serde_json::Value;

/// Reads `--blocks`, downloading it first when it is an http(s) URL ([`crate::download`]);
/// what was downloaded passes the same checks as the text itself would.
pub async fn read(input: &str) -> Result<Option<Attach>, String> {
    let trimmed = input.trim();
    if !crate::download::is_url(trimmed) {
        return parse(trimmed);
    }
    let url = crate::download::parse(trimmed)?;
    let shown = crate::download::shown(&url);
    let body = crate::download::get(&url, &crate::download::BLOCKS).await?;
    let text = String::from_utf8(body)
        .map_err(|_| format!("what {shown} sent is not UTF-8 text; check the URL"))?;
    let value = parse_json_text(text.trim()).map_err(|e| format!("what {shown} sent {e}"))?;
    checked(value)
}

/// Reads `--blocks` given as text or a file name (URLs are [`read`]'s). `Ok(None)` means
/// "nothing to attach"; `Err` lists what the portal would refuse, one line each.
pub fn parse(input: &str) -> Result<Option<Attach>, String> {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    let value = if trimmed.starts_with('[') || trimmed.starts_with('{') {
        parse_json_text(trimmed)?
    } else if std::fs::metadata(trimmed).is_ok() {
        let text = read_file(Path::new(trimmed))?;
        parse_json_text(text.trim()).map_err(|e| format!("file {trimmed:?}: {e}"))?
    } else if trimmed.to_ascii_lowercase().ends_with(".json") {
        return Err(format!("file {trimmed:?} does not exist"));
    } else {
        return Err(
            "expected a JSON array such as [{\"IMAGE\":{\"NAME\":\"a\",\"LINK\":\"https://…\"}}], OPI's single-quoted form, or a path to a .json file".into(),
        );
    };
    checked(value)
}

fn checked(value: Value) -> Result<Option<Attach>, String> {
    // Only what the portal refuses stops here; warnings are the caller's to show (or, with
    // --strict, to refuse) through the notification's own check.
    let attach = Attach::from_value(value);
    let report = attach.review();
    if report.has_errors() {
        let lines: Vec<String> = report.errors.iter().map(|f| f.to_string()).collect();
        return Err(lines.join("\n"));
    }
    Ok(if attach.is_empty() {
        None
    } else {
        Some(attach)
    })
}

/// Largest attachment file: far above what a portal takes in one request.
pub const FILE_CAP: u64 = 16 * 1024 * 1024;

/// A JSON file named on the command line: a regular file (never a FIFO or device, which could
/// block or never end), read up to [`FILE_CAP`].
pub fn read_file(path: &Path) -> Result<String, String> {
    let (bytes, _) = crate::files::read_regular(path, FILE_CAP)
        .map_err(|e| format!("file {:?} {e}", path.display().to_string()))?;
    String::from_utf8(bytes)
        .map_err(|_| format!("file {:?} is not UTF-8 text", path.display().to_string()))
}

fn parse_json_text(text: &str) -> Result<Value, String> {
    match serde_json::from_str(text) {
        Ok(value) => Ok(value),
        Err(json_error) => serde_json::from_str(&single_quoted_to_json(text)).map_err(|_| {
            format!(
                "is not valid JSON ({json_error}); pass a JSON array like [{{\"IMAGE\":{{\"NAME\":\"a\",\"LINK\":\"https://…\"}}}}]"
            )
        }),
    }
}

/// Rewrites single-quoted strings as double-quoted ones; double-quoted strings pass unchanged.
/// Inside single quotes `\'` is a quote and a bare `"` is escaped.
pub fn single_quoted_to_json(text: &str) -> String {
    #[derive(PartialEq)]
    enum State {
        Outside,
        Double,
        Single,
    }
    let mut out = String::with_capacity(text.len() + 8);
    let mut state = State::Outside;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match state {
            State::Outside => match c {
                '"' => {
                    out.push('"');
                    state = State::Double;
                }
                '\'' => {
                    out.push('"');
                    state = State::Single;
                }
                _ => out.push(c),
            },
            State::Double => {
                out.push(c);
                match c {
                    '\\' => out.extend(chars.next()),
                    '"' => state = State::Outside,
                    _ => {}
                }
            }
            State::Single => match c {
                '\\' => match chars.next() {
                    Some('\'') => out.push('\''),
                    Some(next) => {
                        out.push('\\');
                        out.push(next);
                    }
                    None => out.push('\\'),
                },
                '"' => out.push_str("\\\""),
                '\'' => {
                    out.push('"');
                    state = State::Outside;
                }
                _ => out.push(c),
            },
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn accepts_opi_forms() {
        let opi = "[{'IMAGE':{'NAME':'Image1','LINK':'https://example.com/picture.jpg'}},{'FILE':{'NAME':'File1.docx','LINK':'https://example.com/document.docx'}}]";
        let want = json!([
            {"IMAGE": {"NAME": "Image1", "LINK": "https://example.com/picture.jpg"}},
            {"FILE": {"NAME": "File1.docx", "LINK": "https://example.com/document.docx"}}
        ]);
        assert_eq!(parse(opi).unwrap().unwrap().as_json(), &want);
        assert_eq!(parse(&want.to_string()).unwrap().unwrap().as_json(), &want);
        // Mixed quoting and escapes.
        assert_eq!(
            parse(r#"[{'MESSAGE':'it\'s "fine"'},{"MESSAGE":"it's"}]"#)
                .unwrap()
                .unwrap()
                .as_json(),
            &json!([{"MESSAGE": "it's \"fine\""}, {"MESSAGE": "it's"}])
        );
        // Full form passes as it is.
        let full = json!({"COLOR": "#ff0000", "BLOCKS": [{"DELIMITER": {}}]});
        assert_eq!(parse(&full.to_string()).unwrap().unwrap().as_json(), &full);
        // Nothing to attach.
        assert!(parse("").unwrap().is_none());
        assert!(parse("  []  ").unwrap().is_none());
    }

    #[test]
    fn reads_files() {
        let dir = std::env::temp_dir().join(format!("oint-blocks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("blocks.json");
        std::fs::write(&path, "[{'MESSAGE':'from a file'}]\n").unwrap();
        assert_eq!(
            parse(path.to_str().unwrap()).unwrap().unwrap().as_json(),
            &json!([{"MESSAGE": "from a file"}])
        );
        let missing = dir.join("missing.json");
        assert!(
            parse(missing.to_str().unwrap())
                .unwrap_err()
                .contains("does not exist")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn explains_what_is_wrong() {
        let table = [
            ("[{'IMAGE':", "is not valid JSON"),
            (
                "{'IMAGE':{'NAME':'a','LINK':'https://x'}}",
                "wrap it in [ ]",
            ),
            ("IMAGE", "expected a JSON array"),
            ("[1]", "blocks[0]: is a number"),
        ];
        for (input, needle) in table {
            let e = parse(input).unwrap_err();
            assert!(e.contains(needle), "{input}: {e}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i32>().prop_map(|n| json!(n)),
            ".*".prop_map(Value::String),
            "[a-z'\"\\\\ ]{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec(("[A-Z_'\"]{1,6}", inner), 0..4)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    /// Writes `v` the way OPI's examples do: every string in single quotes.
    fn single_quoted(v: &Value) -> String {
        match v {
            Value::String(s) => {
                let json = serde_json::to_string(s).unwrap();
                format!(
                    "'{}'",
                    json[1..json.len() - 1]
                        .replace("\\\"", "\"")
                        .replace('\'', "\\'")
                )
            }
            Value::Array(items) => format!(
                "[{}]",
                items
                    .iter()
                    .map(single_quoted)
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            Value::Object(map) => format!(
                "{{{}}}",
                map.iter()
                    .map(|(k, v)| format!(
                        "{}:{}",
                        single_quoted(&Value::String(k.clone())),
                        single_quoted(v)
                    ))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            other => other.to_string(),
        }
    }

    proptest! {
        #[test]
        fn single_quoted_form_reads_back_exactly(v in json_value()) {
            let text = single_quoted(&v);
            let back: Value = serde_json::from_str(&single_quoted_to_json(&text)).unwrap();
            prop_assert_eq!(back, v);
        }

        #[test]
        fn valid_json_is_never_rewritten(v in json_value()) {
            prop_assert_eq!(parse_json_text(&v.to_string()).unwrap(), v);
        }
    }
}
