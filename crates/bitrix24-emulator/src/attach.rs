//! `CIMMessageParamAttach::GetAttachByJson`: turning a client's ATTACH into the stored attach.
//!
//! The portal never stores what the client sent. It walks the blocks, keeps the ones it
//! recognises, escapes text with `htmlspecialchars`, drops invalid links and empty blocks, and
//! fills in defaults. The size limit (60,000 characters) is measured on that normalised form, so
//! an attach can pass or fail depending on escaping the client never sees; the emulator has to
//! rebuild the same shape to give the same answer.
//!
//! Where the two server versions differ, this follows the newer one (source B, docs/portal-behaviour.md §1.1; see §4.7, §4.12):
//! the attach `ID` is the current time, `DESCRIPTION` is read from the full form and a MESSAGE
//! block may be `{TEXT, AS_DESCRIPTION}`.

use serde_json::{Map, Value};

use crate::php;

/// `IsAllowSize`: the normalised JSON must be shorter than this many characters.
pub const MAX_JSON_CHARS: usize = 60_000;

/// Outcome of parsing a raw ATTACH parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// A usable attach in its normalised stored shape.
    Ok(Value),
    /// Parsed to something, but its normalised JSON is too large (`ATTACH_OVERSIZE`).
    Oversize,
    /// Nothing usable (`null` in PHP): the caller decides between `ATTACH_ERROR` and ignoring it.
    Empty,
}

/// Parse and size-check an ATTACH value. `now` is the unix time used for the attach `ID`.
pub fn parse(raw: &Value, now: u64) -> Parsed {
    match get_attach_by_json(raw, now) {
        None => Parsed::Empty,
        Some(attach) if is_allowed_size(&attach) => Parsed::Ok(attach),
        Some(_) => Parsed::Oversize,
    }
}

/// The length the portal compares against the limit: JSON_UNESCAPED_UNICODE only, so `/` is
/// written `\/`, counted in characters.
pub fn measured_len(attach: &Value) -> usize {
    php::json_encode(attach, php::UNESCAPED_UNICODE)
        .chars()
        .count()
}

fn is_allowed_size(attach: &Value) -> bool {
    measured_len(attach) < MAX_JSON_CHARS
}

/// `GetAttachByJson`: the normalised attach, or `None` when no block survives.
pub fn get_attach_by_json(raw: &Value, now: u64) -> Option<Value> {
    let decoded;
    let array = match raw {
        Value::String(s) => {
            decoded = decode_js_object(s)?;
            &decoded
        }
        other => other,
    };
    if !matches!(array, Value::Array(_) | Value::Object(_)) {
        return None;
    }

    let mut attach = Attach::default();
    let blocks = match php::get(array, "BLOCKS") {
        Some(blocks) => {
            attach.color = php::get(array, "COLOR").map(php::strval);
            attach.description = php::get(array, "DESCRIPTION")
                .and_then(php::scalar_string)
                .map(|d| php::htmlspecialchars(php::trim(&d)));
            blocks
        }
        None => array,
    };

    for data in php::values(blocks).unwrap_or_default() {
        if !matches!(data, Value::Object(_) | Value::Array(_)) {
            continue;
        }
        // The first recognised key decides the block type; unknown keys (HTML too) are skipped.
        if let Some(v) = php::get(data, "USER") {
            for item in items_or_single(v) {
                attach.add_user(item);
            }
        } else if let Some(v) = php::get(data, "LINK") {
            for item in items_or_single(v) {
                attach.add_link(item, "LINK");
            }
        } else if let Some(v) = php::get(data, "RICH_LINK") {
            for item in items_or_single(v) {
                attach.add_link(item, "RICH_LINK");
            }
        } else if let Some(v) = php::get(data, "MESSAGE") {
            attach.add_message(v);
        } else if let Some(v) = php::get(data, "GRID") {
            attach.add_grid(v);
        } else if let Some(v) = php::get(data, "IMAGE") {
            attach.add_images(v);
        } else if let Some(v) = php::get(data, "FILE") {
            attach.add_files(v);
        } else if let Some(v) = php::get(data, "DELIMITER") {
            attach.add_delimiter(v);
        }
    }

    attach.finish(now)
}

/// `CUtil::JsObjectToPhp`: JSON first, then the lenient JS-literal reading.
fn decode_js_object(s: &str) -> Option<Value> {
    serde_json::from_str(s)
        .ok()
        .or_else(|| crate::jsobject::parse(s))
}

/// USER, LINK and RICH_LINK take either one object or a list of them.
fn items_or_single(v: &Value) -> Vec<&Value> {
    if matches!(v, Value::Array(_) | Value::Object(_)) && php::is_list(v) {
        php::values(v).unwrap_or_default()
    } else {
        vec![v]
    }
}

/// IMAGE and FILE: a single object is wrapped into a list; a scalar yields nothing.
fn wrapped_items(v: &Value) -> Vec<&Value> {
    match v {
        Value::Object(_) if !php::is_list(v) => vec![v],
        other => php::values(other).unwrap_or_default(),
    }
}

fn is_valid_url(s: &str) -> bool {
    s.starts_with('/') || s.starts_with("http://") || s.starts_with("https://")
}

/// `/^#([a-fA-F0-9]){3}(([a-fA-F0-9]){3})?\b$/D`
fn is_hex_color(s: &str) -> bool {
    s.strip_prefix('#')
        .is_some_and(|hex| matches!(hex.len(), 3 | 6) && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A string field as `isset($p[$key])` plus string conversion; arrays count as absent.
fn text(params: &Value, key: &str) -> Option<String> {
    php::get(params, key).and_then(php::scalar_string)
}

fn url(params: &Value, key: &str) -> Option<String> {
    text(params, key).filter(|u| is_valid_url(u))
}

fn positive_int(params: &Value, key: &str) -> Option<i64> {
    php::get(params, key).map(php::intval).filter(|n| *n > 0)
}

fn hex_color(params: &Value, key: &str) -> Option<String> {
    text(params, key).filter(|c| is_hex_color(c))
}

/// `substr(NETWORK_ID, 0, 1) . intval(substr(NETWORK_ID, 1))`
fn network_id(params: &Value) -> Option<String> {
    let raw = text(params, "NETWORK_ID")?;
    let mut chars = raw.chars();
    let first = chars.next().map(String::from).unwrap_or_default();
    Some(format!(
        "{}{}",
        php::htmlspecialchars(&first),
        php::intval_str(chars.as_str())
    ))
}

/// `<br>` variants turned into `#BR#`, as the portal does before escaping.
fn br_to_marker(s: &str) -> String {
    s.replace("<br>", "#BR#")
        .replace("<br/>", "#BR#")
        .replace("<br />", "#BR#")
}

/// The colours `Bitrix\Im\Color::getRandomColor` picks from when COLOR is invalid.
const PALETTE: &[&str] = &[
    "#df532d", "#64a513", "#4ba984", "#4ba5c3", "#3e99ce", "#8474c8", "#1eb4aa", "#f76187",
    "#58cc47", "#ab7761", "#29619b", "#728f7a", "#ba9c7b", "#e8a441", "#556574", "#909090",
];

fn random_color(now: u64) -> &'static str {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()))
        .unwrap_or(0);
    PALETTE[((now ^ nanos) % PALETTE.len() as u64) as usize]
}

#[derive(Default)]
struct Attach {
    /// `None` is the `CHAT` default: no COLOR key at all.
    color: Option<String>,
    description: Option<String>,
    blocks: Vec<Value>,
}

fn block(kind: &str, value: Value) -> Value {
    let mut m = Map::new();
    m.insert(kind.to_owned(), value);
    Value::Object(m)
}

impl Attach {
    fn finish(self, now: u64) -> Option<Value> {
        if self.blocks.is_empty() {
            return None;
        }
        let mut out = Map::new();
        out.insert("ID".into(), Value::from(now));
        out.insert("BLOCKS".into(), Value::Array(self.blocks));
        match self.color.as_deref() {
            None | Some("CHAT") => {}
            Some("TRANSPARENT") => {
                out.insert("COLOR".into(), "transparent".into());
            }
            Some(c) if is_hex_color(c) => {
                out.insert("COLOR".into(), c.into());
            }
            Some(_) => {
                out.insert("COLOR".into(), random_color(now).into());
            }
        }
        if let Some(d) = self.description {
            out.insert("DESCRIPTION".into(), d.into());
        }
        Some(Value::Object(out))
    }

    fn add_user(&mut self, p: &Value) {
        let Some(name) = text(p, "NAME").filter(|n| !php::trim(n).is_empty()) else {
            return;
        };
        let name = php::trim(&name).replace(['\r', '\n'], " ");
        let mut add = Map::new();
        add.insert("NAME".into(), php::htmlspecialchars(&name).into());
        add.insert("AVATAR_TYPE".into(), "USER".into());
        if let Some(id) = network_id(p) {
            add.insert("NETWORK_ID".into(), id.into());
        } else if let Some(id) = positive_int(p, "USER_ID") {
            add.insert("USER_ID".into(), id.into());
        } else if let Some(id) = positive_int(p, "CHAT_ID") {
            add.insert("CHAT_ID".into(), id.into());
            add.insert("AVATAR_TYPE".into(), "CHAT".into());
        } else if let Some(id) = positive_int(p, "BOT_ID") {
            add.insert("BOT_ID".into(), id.into());
            add.insert("AVATAR_TYPE".into(), "BOT".into());
        } else if let Some(link) = url(p, "LINK") {
            add.insert("LINK".into(), php::htmlspecialchars(&link).into());
        }
        if let Some(avatar) = url(p, "AVATAR") {
            add.insert("AVATAR".into(), php::htmlspecialchars(&avatar).into());
        }
        if let Some(t) =
            text(p, "AVATAR_TYPE").filter(|t| matches!(t.as_str(), "CHAT" | "USER" | "BOT"))
        {
            add.insert("AVATAR_TYPE".into(), t.into());
        }
        self.blocks
            .push(block("USER", Value::Array(vec![Value::Object(add)])));
    }

    /// LINK and RICH_LINK share their checks; RICH_LINK has no WIDTH/HEIGHT.
    fn add_link(&mut self, p: &Value, kind: &str) {
        let has_name = php::get(p, "NAME").is_some();
        let mut add = Map::new();
        if let (Some(id), true) = (network_id(p), has_name) {
            add.insert("NETWORK_ID".into(), id.into());
        } else if let (Some(id), true) = (positive_int(p, "USER_ID"), has_name) {
            add.insert("USER_ID".into(), id.into());
        } else if let (Some(id), true) = (positive_int(p, "CHAT_ID"), has_name) {
            add.insert("CHAT_ID".into(), id.into());
        } else if url(p, "LINK").is_none() {
            return;
        }
        if has_name {
            let name = text(p, "NAME").unwrap_or_default();
            add.insert(
                "NAME".into(),
                php::htmlspecialchars(php::trim(&name)).into(),
            );
        }
        if let Some(link) = text(p, "LINK") {
            add.insert("LINK".into(), php::htmlspecialchars(&link).into());
        }
        if php::get(p, "DESC").is_some() {
            let desc = text(p, "DESC").unwrap_or_default();
            let desc = php::htmlspecialchars(&br_to_marker(php::trim(&desc)));
            let desc = desc
                .replace("#BR#", "<br/>")
                .replace("[br]", "<br/>")
                .replace("[BR]", "<br/>");
            add.insert("DESC".into(), desc.into());
        }
        if php::get(p, "HTML").is_some() {
            // The portal runs CBXSanitizer here; the emulator keeps the text as sent.
            add.insert(
                "HTML".into(),
                php::strval(php::get(p, "HTML").unwrap_or(&Value::Null)).into(),
            );
        } else if let Some(preview) = url(p, "PREVIEW") {
            add.insert("PREVIEW".into(), php::htmlspecialchars(&preview).into());
            if kind == "LINK" {
                if let Some(w) = positive_int(p, "WIDTH") {
                    add.insert("WIDTH".into(), w.into());
                }
                if let Some(h) = positive_int(p, "HEIGHT") {
                    add.insert("HEIGHT".into(), h.into());
                }
            }
        }
        if kind == "RICH_LINK"
            && let Some(extra) = url(p, "EXTRA_IMAGE")
        {
            add.insert("EXTRA_IMAGE".into(), php::htmlspecialchars(&extra).into());
        }
        self.blocks
            .push(block(kind, Value::Array(vec![Value::Object(add)])));
    }

    fn add_message(&mut self, v: &Value) {
        // Source B also accepts `{TEXT, AS_DESCRIPTION}` (docs/portal-behaviour.md §4.7); the text is what gets stored.
        let raw = match v {
            Value::Object(_) | Value::Array(_) => text(v, "TEXT"),
            other => php::scalar_string(other),
        };
        let Some(raw) = raw else { return };
        let message = php::trim(&raw);
        if message.is_empty() {
            return;
        }
        let message = php::htmlspecialchars(&br_to_marker(message)).replace("#BR#", "[BR]");
        self.blocks.push(block("MESSAGE", message.into()));
    }

    fn add_grid(&mut self, v: &Value) {
        // GRID must be a list; a single object yields no items.
        if !php::is_list(v) {
            return;
        }
        let mut items = Vec::new();
        for grid in php::values(v).unwrap_or_default() {
            if !matches!(grid, Value::Object(_) | Value::Array(_)) {
                continue;
            }
            let display = text(grid, "DISPLAY");
            let name = text(grid, "NAME").unwrap_or_default();
            let value = text(grid, "VALUE").unwrap_or_default();
            // The LINE exemption is checked before CARD becomes LINE, as in the source.
            if display.as_deref() != Some("LINE")
                && php::trim(&name).is_empty()
                && php::trim(&value).is_empty()
            {
                continue;
            }
            let display = match display.as_deref() {
                Some("COLUMN") => "ROW",
                Some("CARD") => "LINE",
                Some(d @ ("BLOCK" | "LINE" | "ROW" | "TABLE")) => d,
                _ => "BLOCK",
            };
            let mut item = Map::new();
            item.insert("DISPLAY".into(), display.into());
            item.insert(
                "NAME".into(),
                php::htmlspecialchars(php::trim(&name)).into(),
            );
            item.insert(
                "VALUE".into(),
                php::htmlspecialchars(&br_to_marker(php::trim(&value))).into(),
            );
            if let Some(c) = hex_color(grid, "COLOR") {
                item.insert("COLOR".into(), c.into());
            }
            for key in ["WIDTH", "HEIGHT", "USER_ID", "CHAT_ID"] {
                if let Some(n) = positive_int(grid, key) {
                    item.insert(key.into(), n.into());
                }
            }
            if let Some(link) = url(grid, "LINK") {
                item.insert("LINK".into(), php::htmlspecialchars(&link).into());
            }
            items.push(Value::Object(item));
        }
        if !items.is_empty() {
            self.blocks.push(block("GRID", Value::Array(items)));
        }
    }

    fn add_images(&mut self, v: &Value) {
        let mut items = Vec::new();
        for image in wrapped_items(v) {
            let Some(link) = url(image, "LINK") else {
                continue;
            };
            let mut item = Map::new();
            if let Some(name) = text(image, "NAME").filter(|n| !php::trim(n).is_empty()) {
                item.insert(
                    "NAME".into(),
                    php::htmlspecialchars(php::trim(&name)).into(),
                );
            }
            item.insert("LINK".into(), php::htmlspecialchars(&link).into());
            for key in ["WIDTH", "HEIGHT"] {
                if let Some(n) = positive_int(image, key) {
                    item.insert(key.into(), n.into());
                }
            }
            if let Some(preview) = url(image, "PREVIEW") {
                item.insert("PREVIEW".into(), php::htmlspecialchars(&preview).into());
            }
            items.push(Value::Object(item));
        }
        if !items.is_empty() {
            self.blocks.push(block("IMAGE", Value::Array(items)));
        }
    }

    fn add_files(&mut self, v: &Value) {
        let mut items = Vec::new();
        for file in wrapped_items(v) {
            let Some(link) = url(file, "LINK") else {
                continue;
            };
            let mut item = Map::new();
            item.insert("LINK".into(), php::htmlspecialchars(&link).into());
            if let Some(name) = text(file, "NAME").filter(|n| !php::trim(n).is_empty()) {
                item.insert(
                    "NAME".into(),
                    php::htmlspecialchars(php::trim(&name)).into(),
                );
            }
            if let Some(size) = positive_int(file, "SIZE") {
                item.insert("SIZE".into(), size.into());
            }
            items.push(Value::Object(item));
        }
        if !items.is_empty() {
            self.blocks.push(block("FILE", Value::Array(items)));
        }
    }

    /// Always accepted, even empty: SIZE defaults to 200.
    fn add_delimiter(&mut self, p: &Value) {
        let mut add = Map::new();
        let size = positive_int(p, "SIZE").unwrap_or(200);
        add.insert("SIZE".into(), size.into());
        if let Some(c) = hex_color(p, "COLOR") {
            add.insert("COLOR".into(), c.into());
        }
        self.blocks.push(block("DELIMITER", Value::Object(add)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_700_000_000;

    fn blocks(raw: Value) -> Option<Value> {
        get_attach_by_json(&raw, NOW).map(|a| a["BLOCKS"].clone())
    }

    #[test]
    fn shapes_table() {
        let cases: Vec<(&str, Value, Option<Value>)> = vec![
            (
                "short form list",
                json!([{"MESSAGE": "hi"}]),
                Some(json!([{"MESSAGE": "hi"}])),
            ),
            (
                "full form",
                json!({"ID": 5, "BLOCKS": [{"MESSAGE": "hi"}]}),
                Some(json!([{"MESSAGE": "hi"}])),
            ),
            (
                "bare single block is not accepted",
                json!({"MESSAGE": "x"}),
                None,
            ),
            ("empty list", json!([]), None),
            ("scalar", json!("not json at all"), None),
            (
                "json string",
                json!("[{\"MESSAGE\":\"hi\"}]"),
                Some(json!([{"MESSAGE": "hi"}])),
            ),
            (
                "unknown keys skipped",
                json!([{"HTML": "<b>x</b>"}, {"FOO": 1}]),
                None,
            ),
            (
                "delimiter alone is valid",
                json!([{"DELIMITER": {}}]),
                Some(json!([{"DELIMITER": {"SIZE": 200}}])),
            ),
            (
                "delimiter size and colour",
                json!([{"DELIMITER": {"SIZE": "0", "COLOR": "#c6c6c6"}}, {"DELIMITER": {"SIZE": 30, "COLOR": "red"}}]),
                Some(
                    json!([{"DELIMITER": {"SIZE": 200, "COLOR": "#c6c6c6"}}, {"DELIMITER": {"SIZE": 30}}]),
                ),
            ),
            ("empty message dropped", json!([{"MESSAGE": "  "}]), None),
            (
                "message escaped and BR normalised",
                json!([{"MESSAGE": " a<br>b & #BR#c "}]),
                Some(json!([{"MESSAGE": "a[BR]b &amp; [BR]c"}])),
            ),
            (
                "message object form",
                json!([{"MESSAGE": {"TEXT": "t", "AS_DESCRIPTION": "Y"}}]),
                Some(json!([{"MESSAGE": "t"}])),
            ),
            (
                "first recognised key wins",
                json!([{"MESSAGE": "m", "USER": {"NAME": "u"}}]),
                Some(json!([{"USER": [{"NAME": "u", "AVATAR_TYPE": "USER"}]}])),
            ),
        ];
        for (name, raw, want) in cases {
            assert_eq!(blocks(raw), want, "{name}");
        }
    }

    #[test]
    fn user_block_rules() {
        let got = blocks(json!([
            {"USER": [{"NAME": "A\nB", "USER_ID": "7", "CHAT_ID": 3, "AVATAR": "ftp://x"}, {"NAME": " "}]},
            {"USER": {"NAME": "C", "CHAT_ID": 3, "LINK": "https://x", "AVATAR": "/a.png"}},
            {"USER": {"NAME": "D", "BOT_ID": 9, "AVATAR_TYPE": "USER"}},
            {"USER": {"NAME": "E", "NETWORK_ID": "n42x", "LINK": "javascript:x"}},
            {"USER": {"NAME": "F", "LINK": "javascript:x"}},
        ]));
        assert_eq!(
            got,
            Some(json!([
                {"USER": [{"NAME": "A B", "AVATAR_TYPE": "USER", "USER_ID": 7}]},
                {"USER": [{"NAME": "C", "AVATAR_TYPE": "CHAT", "CHAT_ID": 3, "AVATAR": "/a.png"}]},
                {"USER": [{"NAME": "D", "AVATAR_TYPE": "USER", "BOT_ID": 9}]},
                {"USER": [{"NAME": "E", "AVATAR_TYPE": "USER", "NETWORK_ID": "n42"}]},
                {"USER": [{"NAME": "F", "AVATAR_TYPE": "USER"}]},
            ]))
        );
    }

    #[test]
    fn link_block_rules() {
        let got = blocks(json!([
            {"LINK": {"LINK": "https://a/?x=1&y=2", "NAME": " n ", "DESC": "d<br>e", "PREVIEW": "/p.png", "WIDTH": "100", "HEIGHT": 0}},
            {"LINK": {"NAME": "by user", "USER_ID": 5}},
            {"LINK": {"USER_ID": 5}},
            {"LINK": {"LINK": "mailto:x"}},
            {"LINK": [{"LINK": "/one", "HTML": "<b>x</b>", "PREVIEW": "/p"}, {"LINK": "/two"}]},
            {"RICH_LINK": {"LINK": "/r", "PREVIEW": "/p", "WIDTH": 5, "EXTRA_IMAGE": "/e"}},
        ]));
        assert_eq!(
            got,
            Some(json!([
                {"LINK": [{"NAME": "n", "LINK": "https://a/?x=1&amp;y=2", "DESC": "d<br/>e", "PREVIEW": "/p.png", "WIDTH": 100}]},
                {"LINK": [{"USER_ID": 5, "NAME": "by user"}]},
                {"LINK": [{"LINK": "/one", "HTML": "<b>x</b>"}]},
                {"LINK": [{"LINK": "/two"}]},
                {"RICH_LINK": [{"LINK": "/r", "PREVIEW": "/p", "EXTRA_IMAGE": "/e"}]},
            ]))
        );
    }

    #[test]
    fn grid_block_rules() {
        let got = blocks(json!([
            {"GRID": [
                {"NAME": "k", "VALUE": "v", "DISPLAY": "COLUMN", "COLOR": "#abc", "WIDTH": "50", "LINK": "x"},
                {"NAME": "", "VALUE": " ", "DISPLAY": "LINE"},
                {"NAME": "", "VALUE": "", "DISPLAY": "CARD"},
                {"NAME": "c", "DISPLAY": "CARD"},
                {"NAME": "w", "DISPLAY": "weird"},
                "scalar item"
            ]},
            {"GRID": {"NAME": "single object", "VALUE": "v"}},
            {"GRID": [{"NAME": "", "VALUE": ""}]},
        ]));
        assert_eq!(
            got,
            Some(json!([
                {"GRID": [
                    {"DISPLAY": "ROW", "NAME": "k", "VALUE": "v", "COLOR": "#abc", "WIDTH": 50},
                    {"DISPLAY": "LINE", "NAME": "", "VALUE": ""},
                    {"DISPLAY": "LINE", "NAME": "c", "VALUE": ""},
                    {"DISPLAY": "BLOCK", "NAME": "w", "VALUE": ""},
                ]},
            ]))
        );
    }

    #[test]
    fn image_and_file_rules() {
        let got = blocks(json!([
            {"IMAGE": {"NAME": "one", "LINK": "https://x/a.png", "PREVIEW": "bad", "WIDTH": 10}},
            {"IMAGE": [{"LINK": "bad"}, {"LINK": "/b.png", "NAME": " "}]},
            {"IMAGE": [{"LINK": "bad"}]},
            {"FILE": {"NAME": "f", "LINK": "https://x/f.pdf", "SIZE": "1500"}},
            {"FILE": "https://x/f.pdf"},
        ]));
        assert_eq!(
            got,
            Some(json!([
                {"IMAGE": [{"NAME": "one", "LINK": "https://x/a.png", "WIDTH": 10}]},
                {"IMAGE": [{"LINK": "/b.png"}]},
                {"FILE": [{"LINK": "https://x/f.pdf", "NAME": "f", "SIZE": 1500}]},
            ]))
        );
    }

    #[test]
    fn full_form_colour_and_id() {
        let a = get_attach_by_json(
            &json!({"ID": 1, "COLOR": "#ff0000", "BLOCKS": [{"DELIMITER": {}}]}),
            NOW,
        );
        assert_eq!(
            a,
            Some(json!({"ID": NOW, "BLOCKS": [{"DELIMITER": {"SIZE": 200}}], "COLOR": "#ff0000"}))
        );
        let a = get_attach_by_json(
            &json!({"COLOR": "TRANSPARENT", "BLOCKS": [{"DELIMITER": {}}]}),
            NOW,
        )
        .unwrap();
        assert_eq!(a["COLOR"], "transparent");
        let a = get_attach_by_json(
            &json!({"COLOR": "CHAT", "BLOCKS": [{"DELIMITER": {}}]}),
            NOW,
        )
        .unwrap();
        assert!(a.get("COLOR").is_none());
        let a = get_attach_by_json(&json!({"COLOR": "red", "BLOCKS": [{"DELIMITER": {}}]}), NOW)
            .unwrap();
        assert!(PALETTE.contains(&a["COLOR"].as_str().unwrap()));
        let a = get_attach_by_json(
            &json!({"DESCRIPTION": " d ", "BLOCKS": [{"DELIMITER": {}}]}),
            NOW,
        )
        .unwrap();
        assert_eq!(a["DESCRIPTION"], "d");
        // Short form has no COLOR key (the CHAT default).
        let a = get_attach_by_json(&json!([{"DELIMITER": {}}]), NOW).unwrap();
        assert!(a.get("COLOR").is_none());
    }

    #[test]
    fn size_is_measured_on_normalised_json() {
        // {"ID":1700000000,"BLOCKS":[{"MESSAGE":"…"}]} is 43 characters plus the text.
        let ok = "a".repeat(MAX_JSON_CHARS - 44);
        assert!(matches!(
            parse(&json!([{"MESSAGE": ok}]), NOW),
            Parsed::Ok(_)
        ));
        let over = "a".repeat(MAX_JSON_CHARS - 43);
        assert_eq!(parse(&json!([{"MESSAGE": over}]), NOW), Parsed::Oversize);
        // '/' counts twice (`\/`); '&' five times (`&amp;`).
        let slashes = "/".repeat((MAX_JSON_CHARS - 43) / 2) + "a";
        assert_eq!(
            measured_len(&get_attach_by_json(&json!([{"MESSAGE": slashes}]), NOW).unwrap()),
            MAX_JSON_CHARS
        );
        let amps = "&".repeat(12_000);
        assert_eq!(parse(&json!([{"MESSAGE": amps}]), NOW), Parsed::Oversize);
        // Non-ASCII is not escaped, so it counts once.
        let cyr = "я".repeat(MAX_JSON_CHARS - 44);
        assert!(matches!(
            parse(&json!([{"MESSAGE": cyr}]), NOW),
            Parsed::Ok(_)
        ));
    }
}
