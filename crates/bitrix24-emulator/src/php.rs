//! PHP semantics that leak through the Bitrix24 REST API.
//!
//! The portal is a PHP application, so what a client may send and what it gets back are decided
//! by PHP's own rules: `parse_str` builds nested parameters from `a[b][0]=x`, `intval` and PHP
//! truthiness decide which values count, `trim` uses PHP's character set, and answers are written
//! by `json_encode` with the portal's flags. Emulating those rules here, in one place, keeps the
//! method code close to the server source it follows.
//!
//! Parameters are held as `serde_json::Value`: a PHP array whose keys are exactly `0..n-1` is a
//! JSON array, any other PHP array is an object. Objects with keys `"0".."n-1"` (as a JSON body
//! may send) are still treated as lists, as PHP would after `json_decode(…, true)`.

use std::collections::HashMap;

use serde_json::{Map, Value};

/// PHP `trim()` with its default character set.
pub fn trim(s: &str) -> &str {
    s.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r' | '\0' | '\x0B'))
}

/// PHP `isset($array[$key])`: present and not null.
pub fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    let found = match v {
        Value::Object(map) => map.get(key),
        Value::Array(list) => key.parse::<usize>().ok().and_then(|i| list.get(i)),
        _ => None,
    };
    found.filter(|v| !v.is_null())
}

/// PHP truthiness: `""`, `"0"`, `0`, `0.0`, `[]`, `null` and `false` are falsy.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !(s.is_empty() || s == "0"),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// A scalar as the string PHP would see; `None` for arrays, which PHP 7's string functions turn
/// into `null` (with a warning) instead of a string.
pub fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::Null => Some(String::new()),
        Value::Bool(true) => Some("1".to_owned()),
        Value::Bool(false) => Some(String::new()),
        Value::Number(n) => Some(number_string(n)),
        Value::String(s) => Some(s.clone()),
        Value::Array(_) | Value::Object(_) => None,
    }
}

/// PHP string conversion (`"…" . $v`): arrays become the literal `Array`.
pub fn strval(v: &Value) -> String {
    scalar_string(v).unwrap_or_else(|| "Array".to_owned())
}

fn number_string(n: &serde_json::Number) -> String {
    if n.is_f64() {
        let f = n.as_f64().unwrap_or(0.0);
        // PHP prints integral floats without a fraction ("3", not "3.0").
        if f.fract() == 0.0 && f.abs() < 1e15 {
            return format!("{}", f as i64);
        }
        return format!("{f}");
    }
    n.to_string()
}

/// PHP `intval()` (PHP 7.1+ rules: leading whitespace, a numeric prefix, exponents allowed).
pub fn intval(v: &Value) -> i64 {
    match v {
        Value::Null => 0,
        Value::Bool(b) => i64::from(*b),
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_u64().map(|_| i64::MAX))
            .unwrap_or_else(|| float_to_int(n.as_f64().unwrap_or(0.0))),
        Value::String(s) => intval_str(s),
        Value::Array(a) => i64::from(!a.is_empty()),
        Value::Object(o) => i64::from(!o.is_empty()),
    }
}

fn float_to_int(f: f64) -> i64 {
    if f.is_finite() {
        // `as` saturates, which is PHP's behaviour for in-range-ish values and never panics.
        f.trunc() as i64
    } else {
        0
    }
}

/// `intval` on a string: the longest numeric prefix after leading whitespace.
pub fn intval_str(s: &str) -> i64 {
    let s = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0B', '\x0C']);
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let int_end = i;
    let mut is_float = false;
    if i < b.len() && b[i] == b'.' {
        let mut j = i + 1;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        if j > i + 1 || i > int_start {
            is_float = j > i + 1;
            i = j;
        }
    }
    if i > int_start && i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        let mut j = i + 1;
        if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
            j += 1;
        }
        let exp_start = j;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        if j > exp_start {
            is_float = true;
            i = j;
        }
    }
    if is_float {
        return s[..i].parse::<f64>().map(float_to_int).unwrap_or(0);
    }
    if int_end == int_start {
        return 0;
    }
    let digits = &s[..int_end];
    digits.parse::<i64>().unwrap_or_else(|_| {
        if digits.starts_with('-') {
            i64::MIN
        } else {
            i64::MAX
        }
    })
}

/// `!Collection::isAssociative($v)`: an array whose keys are exactly `0..n-1`, in order.
pub fn is_list(v: &Value) -> bool {
    match v {
        Value::Array(_) => true,
        Value::Object(map) => map.keys().enumerate().all(|(i, k)| *k == i.to_string()),
        _ => false,
    }
}

/// The values `foreach` would visit; `None` for scalars (PHP warns and skips the loop).
pub fn values(v: &Value) -> Option<Vec<&Value>> {
    match v {
        Value::Array(list) => Some(list.iter().collect()),
        Value::Object(map) => Some(map.values().collect()),
        _ => None,
    }
}

/// PHP's `htmlspecialchars($s, ENT_COMPAT)` as Bitrix's `htmlspecialcharsbx` calls it.
pub fn htmlspecialchars(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            _ => out.push(c),
        }
    }
    out
}

/// PHP `rawurldecode`: `%XX` only (`+` stays), invalid UTF-8 replaced.
pub fn rawurldecode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------------------------
// parse_str
// ---------------------------------------------------------------------------------------------

/// PHP limits nesting (`max_input_nesting_level`); deeper variables are dropped.
const MAX_NESTING: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Int(i64),
    Str(String),
}

impl Key {
    /// PHP's symbol-table rule: canonical decimal integers become integer keys.
    fn from_str(s: &str) -> Key {
        let canonical = match s.as_bytes() {
            [b'0'] => true,
            [b'-', b'1'..=b'9', rest @ ..] | [b'1'..=b'9', rest @ ..] => {
                rest.iter().all(u8::is_ascii_digit)
            }
            _ => false,
        };
        match s.parse::<i64>() {
            Ok(i) if canonical => Key::Int(i),
            _ => Key::Str(s.to_owned()),
        }
    }

    fn into_string(self) -> String {
        match self {
            Key::Int(i) => i.to_string(),
            Key::Str(s) => s,
        }
    }
}

#[derive(Debug, Clone)]
enum Node {
    Str(String),
    Arr(PhpArray),
}

#[derive(Debug, Clone, Default)]
struct PhpArray {
    entries: Vec<(Key, Node)>,
    /// Key → position in `entries`, so large bodies parse in linear time.
    index: HashMap<Key, usize>,
    next_index: i64,
}

impl PhpArray {
    fn position(&self, key: &Key) -> Option<usize> {
        self.index.get(key).copied()
    }

    fn bump(&mut self, key: &Key) {
        if let Key::Int(i) = key
            && *i >= self.next_index
        {
            self.next_index = i.saturating_add(1);
        }
    }

    /// `zend_symtable_update`: overwrite in place, or append.
    fn set(&mut self, key: Key, node: Node) -> &mut Node {
        let idx = match self.position(&key) {
            Some(idx) => {
                self.entries[idx].1 = node;
                idx
            }
            None => {
                self.bump(&key);
                self.index.insert(key.clone(), self.entries.len());
                self.entries.push((key, node));
                self.entries.len() - 1
            }
        };
        &mut self.entries[idx].1
    }

    fn push(&mut self, node: Node) -> &mut Node {
        let key = Key::Int(self.next_index);
        self.set(key, node)
    }

    /// The sub-array under `key` (or a new appended one when `key` is `None`), replacing a
    /// scalar that was there, as PHP does.
    fn child(&mut self, key: Option<Key>) -> &mut PhpArray {
        let node = match key {
            None => self.push(Node::Arr(PhpArray::default())),
            Some(key) => match self.position(&key) {
                Some(idx) => {
                    if !matches!(self.entries[idx].1, Node::Arr(_)) {
                        self.entries[idx].1 = Node::Arr(PhpArray::default());
                    }
                    &mut self.entries[idx].1
                }
                None => self.set(key, Node::Arr(PhpArray::default())),
            },
        };
        match node {
            Node::Arr(arr) => arr,
            // Just made sure it is an array above.
            Node::Str(_) => unreachable!("child() always yields an array node"),
        }
    }

    fn into_value(self) -> Value {
        let is_list = self
            .entries
            .iter()
            .enumerate()
            .all(|(i, (k, _))| *k == Key::Int(i as i64));
        if is_list {
            Value::Array(
                self.entries
                    .into_iter()
                    .map(|(_, n)| n.into_value())
                    .collect(),
            )
        } else {
            Value::Object(self.into_map())
        }
    }

    fn into_map(self) -> Map<String, Value> {
        self.entries
            .into_iter()
            .map(|(k, n)| (k.into_string(), n.into_value()))
            .collect()
    }
}

impl Node {
    fn into_value(self) -> Value {
        match self {
            Node::Str(s) => Value::String(s),
            Node::Arr(a) => a.into_value(),
        }
    }
}

/// PHP `parse_str`: `&`-separated pairs, URL-decoded, with bracket syntax for nesting.
pub fn parse_str(input: &str) -> Map<String, Value> {
    register_pairs(
        form_urlencoded::parse(input.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())),
    )
}

/// Build parameters from already-decoded name/value pairs (multipart fields), with the same
/// bracket rules as `parse_str`.
pub fn register_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Map<String, Value> {
    let mut root = PhpArray::default();
    for (name, value) in pairs {
        register_variable(&mut root, &name, value);
    }
    root.into_map()
}

/// `php_register_variable_ex` from PHP's `main/php_variables.c`.
fn register_variable(root: &mut PhpArray, name: &str, value: String) {
    let name = name.trim_start_matches(' ');
    let chars: Vec<char> = name.chars().collect();

    // Top-level name: ' ' and '.' become '_', up to the first '['.
    let mut base = String::new();
    let mut pos = 0;
    let mut has_bracket = false;
    while pos < chars.len() {
        match chars[pos] {
            ' ' | '.' => base.push('_'),
            '[' => {
                has_bracket = true;
                break;
            }
            c => base.push(c),
        }
        pos += 1;
    }
    if base.is_empty() {
        return;
    }

    let mut indexes: Vec<Option<String>> = Vec::new();
    if has_bracket {
        // `pos` is at a '['.
        loop {
            let start = pos + 1;
            let mut probe = start;
            if probe < chars.len() && chars[probe] == ' ' {
                probe += 1;
            }
            if probe < chars.len() && chars[probe] == ']' {
                indexes.push(None);
                pos = probe;
            } else {
                match chars[probe.min(chars.len())..]
                    .iter()
                    .position(|c| *c == ']')
                {
                    Some(off) => {
                        let end = probe + off;
                        indexes.push(Some(chars[start..end].iter().collect()));
                        pos = end;
                    }
                    None => {
                        // No closing bracket: the '[' and the rest join the name, sanitised.
                        if indexes.is_empty() {
                            base.push('_');
                            for c in &chars[start..] {
                                base.push(if matches!(c, ' ' | '.' | '[') {
                                    '_'
                                } else {
                                    *c
                                });
                            }
                        }
                        break;
                    }
                }
            }
            // Anything after ']' other than another '[' is ignored.
            pos += 1;
            if pos >= chars.len() || chars[pos] != '[' {
                break;
            }
        }
    }
    if indexes.len() >= MAX_NESTING {
        return;
    }

    let mut target = root;
    let mut key = Some(Key::from_str(&base));
    for index in indexes {
        target = target.child(key);
        key = index.map(|s| Key::from_str(&s));
    }
    match key {
        Some(key) => {
            target.set(key, Node::Str(value));
        }
        None => {
            target.push(Node::Str(value));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// json_encode
// ---------------------------------------------------------------------------------------------

/// Which `json_encode` flags apply.
#[derive(Debug, Clone, Copy)]
pub struct JsonFlags {
    /// JSON_HEX_TAG | JSON_HEX_AMP | JSON_HEX_APOS | JSON_HEX_QUOT.
    pub hex: bool,
    /// Without JSON_UNESCAPED_UNICODE, non-ASCII is written as `\uXXXX`.
    pub escape_unicode: bool,
}

/// `Bitrix\Main\Web\Json::encode` defaults, used for every REST answer.
pub const RESPONSE_FLAGS: JsonFlags = JsonFlags {
    hex: true,
    escape_unicode: true,
};
/// JSON_UNESCAPED_UNICODE only, as used when measuring an attach.
pub const UNESCAPED_UNICODE: JsonFlags = JsonFlags {
    hex: false,
    escape_unicode: false,
};

/// PHP `json_encode`: `/` as `\/`, PHP empty arrays (`{}` here) as `[]`, list-like maps as lists.
pub fn json_encode(v: &Value, flags: JsonFlags) -> String {
    let mut out = String::new();
    encode_value(v, flags, &mut out);
    out
}

fn encode_value(v: &Value, flags: JsonFlags, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => encode_string(s, flags, out),
        Value::Array(list) => {
            out.push('[');
            for (i, item) in list.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                encode_value(item, flags, out);
            }
            out.push(']');
        }
        Value::Object(map) if is_list(v) => {
            out.push('[');
            for (i, item) in map.values().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                encode_value(item, flags, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                encode_string(k, flags, out);
                out.push(':');
                encode_value(item, flags, out);
            }
            out.push('}');
        }
    }
}

fn encode_string(s: &str, flags: JsonFlags, out: &mut String) {
    use std::fmt::Write as _;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' if flags.hex => out.push_str("\\u0022"),
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' => out.push_str("\\/"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' if flags.hex => out.push_str("\\u003C"),
            '>' if flags.hex => out.push_str("\\u003E"),
            '&' if flags.hex => out.push_str("\\u0026"),
            '\'' if flags.hex => out.push_str("\\u0027"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            // Line terminators stay escaped even with JSON_UNESCAPED_UNICODE.
            '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) >= 0x80 && flags.escape_unicode => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{:04x}", unit);
                }
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
    fn parse_str_table() {
        let cases: &[(&str, Value)] = &[
            ("a=1&b=2", json!({"a": "1", "b": "2"})),
            ("a[b][0]=x", json!({"a": {"b": ["x"]}})),
            ("a[]=x&a[]=y", json!({"a": ["x", "y"]})),
            ("a[5]=x&a[]=y", json!({"a": {"5": "x", "6": "y"}})),
            ("a.b=1&c d=2", json!({"a_b": "1", "c_d": "2"})),
            ("a[b.c]=1", json!({"a": {"b.c": "1"}})),
            ("a=1&a=2", json!({"a": "2"})),
            ("a=1&a[x]=2", json!({"a": {"x": "2"}})),
            ("a[x]=1&a=2", json!({"a": "2"})),
            ("a[b=1", json!({"a_b": "1"})),
            ("a[b]c=1", json!({"a": {"b": "1"}})),
            ("flag", json!({"flag": ""})),
            ("=x&[a]=1", json!({})),
            (" x=1", json!({"x": "1"})),
            ("m=a+b%26c", json!({"m": "a b&c"})),
            ("a[01]=x", json!({"a": {"01": "x"}})),
            ("a[0]=x&a[1]=y", json!({"a": ["x", "y"]})),
            ("a[1]=x&a[0]=y", json!({"a": {"1": "x", "0": "y"}})),
            (
                "ATTACH[0][IMAGE][NAME]=n&ATTACH[0][IMAGE][LINK]=https%3A%2F%2Fx%2Fa.png",
                json!({"ATTACH": [{"IMAGE": {"NAME": "n", "LINK": "https://x/a.png"}}]}),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                Value::Object(parse_str(input)),
                *want,
                "parse_str({input:?})"
            );
        }
    }

    #[test]
    fn parse_str_is_linear_on_large_lists() {
        let input = "a[]=1&".repeat(200_000) + "b[x]=1&".repeat(100_000).as_str();
        let started = std::time::Instant::now();
        let parsed = parse_str(&input);
        assert_eq!(parsed["a"].as_array().map(Vec::len), Some(200_000));
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }

    #[test]
    fn intval_table() {
        let cases: &[(Value, i64)] = &[
            (json!("12"), 12),
            (json!(" 12abc"), 12),
            (json!("abc"), 0),
            (json!("-7"), -7),
            (json!("+3"), 3),
            (json!("1e3"), 1000),
            (json!("1.9"), 1),
            (json!(".5"), 0),
            (json!(""), 0),
            (json!("99999999999999999999"), i64::MAX),
            (json!(12.7), 12),
            (json!(true), 1),
            (json!(null), 0),
            (json!([]), 0),
            (json!([1]), 1),
        ];
        for (input, want) in cases {
            assert_eq!(intval(input), *want, "intval({input})");
        }
    }

    #[test]
    fn truthiness_table() {
        let falsy = [
            json!(""),
            json!("0"),
            json!(0),
            json!(0.0),
            json!([]),
            json!({}),
            json!(null),
            json!(false),
        ];
        for v in falsy {
            assert!(!truthy(&v), "{v} should be falsy");
        }
        let truthy_values = [
            json!("false"),
            json!("00"),
            json!(" "),
            json!(1),
            json!([0]),
            json!(true),
        ];
        for v in truthy_values {
            assert!(truthy(&v), "{v} should be truthy");
        }
    }

    #[test]
    fn trim_uses_php_set() {
        assert_eq!(trim(" \t\n\r\0\x0Bx \x0B"), "x");
        // PHP's trim leaves other whitespace, such as a non-breaking space, alone.
        assert_eq!(trim("\u{a0}x"), "\u{a0}x");
    }

    #[test]
    fn list_detection() {
        assert!(is_list(&json!([])));
        assert!(is_list(&json!({})));
        assert!(is_list(&json!({"0": "a", "1": "b"})));
        assert!(!is_list(&json!({"1": "a", "0": "b"})));
        assert!(!is_list(&json!({"NAME": "a"})));
        assert!(!is_list(&json!("x")));
    }

    #[test]
    fn json_encode_table() {
        let cases: &[(Value, &str, &str)] = &[
            (json!("a/b"), r#""a\/b""#, r#""a\/b""#),
            (
                json!("<a href='x'>&\"</a>"),
                r#""\u003Ca href=\u0027x\u0027\u003E\u0026\u0022\u003C\/a\u003E""#,
                r#""<a href='x'>&\"<\/a>""#,
            ),
            (json!("é"), r#""\u00e9""#, "\"é\""),
            (json!("😀"), r#""\ud83d\ude00""#, "\"😀\""),
            (json!("\u{1}\n"), r#""\u0001\n""#, r#""\u0001\n""#),
            (json!("\u{2028}"), r#""\u2028""#, r#""\u2028""#),
            (json!({}), "[]", "[]"),
            (json!({"0": 1, "1": 2}), "[1,2]", "[1,2]"),
            (
                json!({"a": [1, 2.5, true, null]}),
                r#"{"a":[1,2.5,true,null]}"#,
                r#"{"a":[1,2.5,true,null]}"#,
            ),
        ];
        for (input, response, unescaped) in cases {
            assert_eq!(
                json_encode(input, RESPONSE_FLAGS),
                *response,
                "response encoding of {input}"
            );
            assert_eq!(
                json_encode(input, UNESCAPED_UNICODE),
                *unescaped,
                "unescaped encoding of {input}"
            );
        }
    }

    #[test]
    fn rawurldecode_keeps_plus() {
        assert_eq!(rawurldecode("a%2Fb+c%zz%4"), "a/b+c%zz%4");
    }

    #[test]
    fn htmlspecialchars_compat() {
        assert_eq!(
            htmlspecialchars(r#"<a href="x">'&amp;"#),
            "&lt;a href=&quot;x&quot;&gt;'&amp;amp;"
        );
    }
}
