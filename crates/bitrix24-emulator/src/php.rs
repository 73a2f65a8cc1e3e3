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

/// `array_change_key_case($array, CASE_UPPER)` (ASCII, as PHP's): a later duplicate wins.
pub fn upper_case_keys(map: Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in map {
        out.insert(k.to_ascii_uppercase(), v);
    }
    out
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

/// PHP's input limits from `php.ini`, which the portal applies to the query string, to form
/// and multipart bodies and to every `parse_str()` call (batch commands included).
///
/// The defaults are PHP's: `max_input_vars = 1000`, `max_input_nesting_level = 64`,
/// `post_max_size = 8M`. The reference says nothing about the portal's own values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputLimits {
    /// Variables kept per source (query string, body, one `parse_str` call); the rest are
    /// dropped with PHP's warning "Input variables exceeded N".
    pub max_input_vars: usize,
    /// Bracket levels a name may have (`a[b][c]` has 2); a deeper name removes its whole
    /// top-level variable, as `php_register_variable_ex` does.
    pub max_input_nesting_level: usize,
    /// Largest body PHP reads, in bytes; a larger one is ignored as a whole (no parameters).
    pub post_max_size: usize,
}

/// PHP's `max_input_vars` default.
pub const MAX_INPUT_VARS: usize = 1000;
/// PHP's `max_input_nesting_level` default.
pub const MAX_INPUT_NESTING_LEVEL: usize = 64;
/// PHP's `post_max_size` default, `8M`.
pub const POST_MAX_SIZE: usize = 8 * 1024 * 1024;
/// PHP's `max_file_uploads` default: with it, `max_multipart_body_parts` (default -1) is
/// `max_input_vars + max_file_uploads`, after which PHP stops reading a multipart body.
pub const MAX_FILE_UPLOADS: usize = 20;

impl Default for InputLimits {
    fn default() -> Self {
        InputLimits {
            max_input_vars: MAX_INPUT_VARS,
            max_input_nesting_level: MAX_INPUT_NESTING_LEVEL,
            post_max_size: POST_MAX_SIZE,
        }
    }
}

fn warn_vars_exceeded(limits: &InputLimits) {
    tracing::warn!(
        "Input variables exceeded {}. To increase the limit change max_input_vars in php.ini.",
        limits.max_input_vars
    );
}

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

    /// `zend_symtable_str_del`. Rare (only over-nested names), so shifting is fine.
    fn remove(&mut self, key: &Key) {
        if let Some(idx) = self.index.remove(key) {
            self.entries.remove(idx);
            for (i, (k, _)) in self.entries.iter().enumerate().skip(idx) {
                self.index.insert(k.clone(), i);
            }
        }
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

/// PHP `parse_str`: `&`-separated pairs, URL-decoded, with bracket syntax for nesting, under
/// PHP's default [`InputLimits`].
pub fn parse_str(input: &str) -> Map<String, Value> {
    parse_str_limited(input, &InputLimits::default())
}

/// `parse_str` (and the query string, `php_default_treat_data`): empty pieces are skipped, every
/// other piece is counted before it is registered, so the first `max_input_vars` are kept.
/// Stops reading at the limit, so the work is linear in what is kept.
pub fn parse_str_limited(input: &str, limits: &InputLimits) -> Map<String, Value> {
    let mut root = PhpArray::default();
    let mut count = 0usize;
    for piece in input.split('&').filter(|p| !p.is_empty()) {
        count += 1;
        if count > limits.max_input_vars {
            warn_vars_exceeded(limits);
            break;
        }
        for (k, v) in form_urlencoded::parse(piece.as_bytes()) {
            register_variable(&mut root, &k, v.into_owned(), limits);
        }
    }
    root.into_map()
}

/// An `application/x-www-form-urlencoded` body as PHP fills `$_POST` (`add_post_vars`): every
/// piece counts, empty ones too, and the count is checked after the piece is registered, so
/// PHP keeps `max_input_vars + 1` variables (its own off-by-one, kept for fidelity).
pub fn parse_post_limited(body: &str, limits: &InputLimits) -> Map<String, Value> {
    let mut root = PhpArray::default();
    let mut pieces = body.split('&').peekable();
    let mut count = 0usize;
    while let Some(piece) = pieces.next() {
        // `add_post_var` stops when the pointer reaches the end: a trailing '&' adds nothing.
        if piece.is_empty() && pieces.peek().is_none() {
            break;
        }
        for (k, v) in form_urlencoded::parse(piece.as_bytes()) {
            register_variable(&mut root, &k, v.into_owned(), limits);
        }
        count += 1;
        if count > limits.max_input_vars {
            warn_vars_exceeded(limits);
            break;
        }
    }
    root.into_map()
}

/// Build parameters from already-decoded name/value pairs (multipart fields), with the same
/// bracket rules as `parse_str`. As `rfc1867.c` does, the first `max_input_vars` fields are
/// registered and the rest dropped; the iterator is not read past the limit.
pub fn register_pairs_limited(
    pairs: impl IntoIterator<Item = (String, String)>,
    limits: &InputLimits,
) -> Map<String, Value> {
    let mut root = PhpArray::default();
    for (count, (name, value)) in pairs.into_iter().enumerate() {
        if count >= limits.max_input_vars {
            warn_vars_exceeded(limits);
            break;
        }
        register_variable(&mut root, &name, value, limits);
    }
    root.into_map()
}

/// `php_register_variable_ex` from PHP's `main/php_variables.c`.
fn register_variable(root: &mut PhpArray, name: &str, value: String, limits: &InputLimits) {
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
            // Checked before each bracket, as PHP does: one level too many removes the whole
            // top-level variable, earlier values under it included.
            if indexes.len() >= limits.max_input_nesting_level {
                root.remove(&Key::from_str(&base));
                tracing::warn!(
                    "Input variable nesting level exceeded {}. To increase the limit change max_input_nesting_level in php.ini.",
                    limits.max_input_nesting_level
                );
                return;
            }
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
        // With PHP's limit only 1000 would be kept; lift it to see the parser's own cost.
        let unlimited = InputLimits {
            max_input_vars: usize::MAX,
            ..InputLimits::default()
        };
        let parsed = parse_str_limited(&input, &unlimited);
        assert_eq!(parsed["a"].as_array().map(Vec::len), Some(200_000));
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }

    /// `n` top-level variables `v1=1&v2=1…`, optionally with empty pieces between them.
    fn vars(n: usize, sep: &str) -> String {
        (1..=n)
            .map(|i| format!("v{i}=1"))
            .collect::<Vec<_>>()
            .join(sep)
    }

    fn nested(levels: usize) -> String {
        format!("A{}=1", "[a]".repeat(levels))
    }

    #[test]
    fn max_input_vars_boundary() {
        let php = InputLimits::default();
        // (input, kept by parse_str / query string, kept in $_POST)
        let cases: &[(String, usize, usize)] = &[
            (vars(999, "&"), 999, 999),
            (vars(1000, "&"), 1000, 1000),
            (vars(1001, "&"), 1000, 1001),
            (vars(1002, "&"), 1000, 1001),
            (vars(5000, "&"), 1000, 1001),
            // parse_str skips empty pieces; $_POST counts them.
            (vars(1000, "&&"), 1000, 501),
            (format!("&{}&", vars(1000, "&")), 1000, 1000),
        ];
        for (input, by_parse_str, by_post) in cases {
            let got = parse_str_limited(input, &php);
            assert_eq!(
                got.len(),
                *by_parse_str,
                "parse_str of {} bytes",
                input.len()
            );
            assert!(got.contains_key("v1"));
            assert!(!got.contains_key("v1001"), "v1001 is over the limit");
            let post = parse_post_limited(input, &php);
            assert_eq!(post.len(), *by_post, "$_POST of {} bytes", input.len());
        }
        // The kept ones are the first ones, and the default entry point uses PHP's limit.
        let got = parse_str(&vars(1001, "&"));
        assert!(got.contains_key("v1000") && !got.contains_key("v1001"));
        // Multipart fields: the first max_input_vars.
        let pairs = (1..=1001).map(|i| (format!("v{i}"), "1".to_owned()));
        let got = register_pairs_limited(pairs, &php);
        assert_eq!(got.len(), 1000);
        assert!(got.contains_key("v1000") && !got.contains_key("v1001"));
        // Nested names count once each, like flat ones.
        let got = parse_str(&"a[]=1&".repeat(1001));
        assert_eq!(got["a"].as_array().map(Vec::len), Some(1000));
        // A smaller configured limit.
        let two = InputLimits {
            max_input_vars: 2,
            ..php
        };
        assert_eq!(
            Value::Object(parse_str_limited("a=1&b=2&c=3", &two)),
            json!({"a": "1", "b": "2"})
        );
    }

    #[test]
    fn max_input_nesting_level_boundary() {
        let php = InputLimits::default();
        let depth = |v: &Value| {
            let mut d = 0;
            let mut v = v;
            while let Some(next) = v.get("a") {
                d += 1;
                v = next;
            }
            (d, v.clone())
        };
        for levels in [1, 63, 64] {
            let got = parse_str_limited(&nested(levels), &php);
            assert_eq!(
                depth(&got["A"]),
                (levels, json!("1")),
                "{levels} levels kept"
            );
        }
        for levels in [65, 66, 1000] {
            assert!(
                parse_str_limited(&nested(levels), &php).is_empty(),
                "{levels} levels dropped"
            );
        }
        // Too deep removes the whole top-level variable, earlier values included; later ones
        // build it again; other variables stay.
        let input = format!("A[x]=1&B=2&{}&C=3", nested(65));
        assert_eq!(
            Value::Object(parse_str(&input)),
            json!({"B": "2", "C": "3"})
        );
        let input = format!("{}&A[y]=2", nested(65));
        assert_eq!(Value::Object(parse_str(&input)), json!({"A": {"y": "2"}}));
        // `[]` levels count as levels; an unclosed bracket past the limit still counts.
        assert!(parse_str(&format!("L{}=1", "[]".repeat(65))).is_empty());
        assert_eq!(parse_str(&format!("L{}=1", "[]".repeat(64))).len(), 1);
        assert!(parse_str(&format!("{}[y=1", &nested(64)[..nested(64).len() - 2])).is_empty());
        // $_POST and multipart apply the same nesting rule.
        assert!(parse_post_limited(&nested(65), &php).is_empty());
        assert_eq!(parse_post_limited(&nested(64), &php).len(), 1);
        let one = InputLimits {
            max_input_nesting_level: 1,
            ..php
        };
        assert_eq!(
            Value::Object(parse_str_limited("a[b]=1&c[d][e]=2", &one)),
            json!({"a": {"b": "1"}})
        );
    }

    #[test]
    fn hostile_form_is_bounded() {
        // 160,000 names 60 levels deep (about 30 MB): only the first 1000 are built.
        let name = format!("{}=1", "[a]".repeat(60));
        let mut body = String::with_capacity(160_000 * (name.len() + 8));
        for i in 1..=160_000 {
            if i > 1 {
                body.push('&');
            }
            body.push_str(&format!("A{i}"));
            body.push_str(&name);
        }
        assert!(body.len() > 29_000_000);
        let got = parse_str(&body);
        assert_eq!(got.len(), 1000);
        assert!(got.contains_key("A1000") && !got.contains_key("A1001"));
        assert_eq!(
            parse_post_limited(&body, &InputLimits::default()).len(),
            1001
        );
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
