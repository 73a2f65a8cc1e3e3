//! The few PHP rules that decide what the portal keeps of a request and how long it measures.
//!
//! The portal is PHP: `isset`, `empty`, `intval`, `trim`, `htmlspecialchars` and `json_encode`
//! decide which parameters and attach fields survive and how many characters the stored attach
//! has. These are written from
//! the PHP manual, independently of the emulator's copy, so the two can check each other.

use serde_json::Value;

/// `trim()` with PHP's default character set.
pub(crate) fn trim(s: &str) -> &str {
    s.trim_matches([' ', '\t', '\n', '\r', '\0', '\x0B'])
}

/// `isset($a[$key])`: present and not null. Lists are indexed by number only.
pub(crate) fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    match v {
        Value::Object(map) => map.get(key).filter(|v| !v.is_null()),
        _ => None,
    }
}

/// PHP truthiness of a request value: `empty()` is false for it.
pub(crate) fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => truthy_str(s),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// PHP truthiness of a string, such as a query-string value: all but `""` and `"0"`.
pub(crate) fn truthy_str(s: &str) -> bool {
    !(s.is_empty() || s == "0")
}

/// `array_change_key_case($params, CASE_UPPER)[$key]`, as the portal reads its parameters:
/// any spelling of `key` (ASCII case) counts, and the last of them wins.
pub(crate) fn upper_get<K: AsRef<str>, V>(
    pairs: impl IntoIterator<Item = (K, V)>,
    key: &str,
) -> Option<V> {
    pairs
        .into_iter()
        .filter(|(k, _)| k.as_ref().eq_ignore_ascii_case(key))
        .last()
        .map(|(_, v)| v)
}

/// A scalar as PHP's string conversion writes it; `None` for arrays.
pub(crate) fn text(v: &Value) -> Option<String> {
    Some(match v {
        Value::Null | Value::Bool(false) => String::new(),
        Value::Bool(true) => "1".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (_, Some(u), _) => u.to_string(),
            // PHP prints integral floats without ".0".
            (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
            (_, _, Some(f)) => f.to_string(),
            _ => String::new(),
        },
        Value::Array(_) | Value::Object(_) => return None,
    })
}

/// `intval()`: numbers truncate; strings take their leading numeric part (`"12px"` is 12).
pub(crate) fn intval(v: &Value) -> i64 {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_u64().map(|_| i64::MAX))
            .unwrap_or_else(|| saturate(n.as_f64().unwrap_or(0.0))),
        Value::String(s) => intval_str(s),
        Value::Bool(b) => i64::from(*b),
        Value::Array(a) => i64::from(!a.is_empty()),
        Value::Object(o) => i64::from(!o.is_empty()),
        Value::Null => 0,
    }
}

fn saturate(f: f64) -> i64 {
    if f.is_finite() { f.trunc() as i64 } else { 0 }
}

/// `intval` of a string: leading whitespace, then the longest numeric prefix (PHP 7.1+ reads
/// exponents and fractions too, then truncates).
pub(crate) fn intval_str(s: &str) -> i64 {
    let s = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0B', '\x0C']);
    let end = numeric_prefix(s);
    let prefix = &s[..end];
    if prefix.contains(['.', 'e', 'E']) {
        return prefix.parse::<f64>().map(saturate).unwrap_or(0);
    }
    match prefix.parse::<i64>() {
        Ok(n) => n,
        Err(_) if prefix.trim_start_matches(['+', '-']).is_empty() => 0,
        Err(_) if prefix.starts_with('-') => i64::MIN,
        Err(_) => i64::MAX,
    }
}

fn numeric_prefix(s: &str) -> usize {
    let b = s.as_bytes();
    let digits = |mut i: usize| {
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        i
    };
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let int_end = digits(i);
    let mut end = int_end;
    if b.get(end) == Some(&b'.') {
        let frac_end = digits(end + 1);
        if frac_end > end + 1 || int_end > i {
            end = frac_end;
        }
    }
    if end > i && matches!(b.get(end), Some(b'e' | b'E')) {
        let mut j = end + 1;
        if matches!(b.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        let exp_end = digits(j);
        if exp_end > j {
            end = exp_end;
        }
    }
    i = end;
    // A lone "." or sign is no number.
    if s[..i].trim_start_matches(['+', '-']) == "." {
        return 0;
    }
    i
}

/// `!Collection::isAssociative($v)`: a list, or an object whose keys are exactly "0".."n-1".
pub(crate) fn is_list(v: &Value) -> bool {
    match v {
        Value::Array(_) => true,
        Value::Object(map) => map.keys().enumerate().all(|(i, k)| *k == i.to_string()),
        _ => false,
    }
}

/// What `foreach` visits, with each value's key; nothing for scalars.
pub(crate) fn entries(v: &Value) -> Vec<(String, &Value)> {
    match v {
        Value::Array(list) => list
            .iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), v))
            .collect(),
        Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), v)).collect(),
        _ => Vec::new(),
    }
}

/// `htmlspecialcharsbx`: `htmlspecialchars` with ENT_COMPAT, so `'` stays as it is.
pub(crate) fn htmlspecialchars(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// `json_encode($v, JSON_UNESCAPED_UNICODE)`: `/` is written `\/`, non-ASCII stays as it is,
/// U+2028/U+2029 stay escaped, and an empty object is PHP's empty array `[]`.
pub(crate) fn json_encode(v: &Value) -> String {
    let mut out = String::new();
    encode(v, &mut out);
    out
}

fn encode(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => encode_str(s, out),
        Value::Array(list) => encode_list(list.iter(), out),
        Value::Object(map) if is_list(v) => encode_list(map.values(), out),
        Value::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                encode_str(k, out);
                out.push(':');
                encode(v, out);
            }
            out.push('}');
        }
    }
}

fn encode_list<'a>(items: impl Iterator<Item = &'a Value>, out: &mut String) {
    out.push('[');
    for (i, v) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        encode(v, out);
    }
    out.push(']');
}

fn encode_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' => out.push_str("\\/"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn intval_table() {
        for (input, want) in [
            ("12", 12),
            ("  12px", 12),
            ("-3", -3),
            ("1e3", 1000),
            ("1.9", 1),
            (".5", 0),
            ("abc", 0),
            ("", 0),
            ("+", 0),
            ("99999999999999999999", i64::MAX),
        ] {
            assert_eq!(intval_str(input), want, "{input:?}");
        }
        assert_eq!(intval(&json!(2.7)), 2);
    }

    #[test]
    fn json_encode_is_php_flavoured() {
        assert_eq!(
            json_encode(&json!({"a": "x/y \"q\" я\n\u{2028}", "b": {}, "c": [1]})),
            r#"{"a":"x\/y \"q\" я\n\u2028","b":[],"c":[1]}"#
        );
    }

    #[test]
    fn htmlspecialchars_is_ent_compat() {
        assert_eq!(
            htmlspecialchars(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;'"
        );
    }
}
