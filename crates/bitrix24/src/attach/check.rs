//! The portal's `ATTACH` rules, run before sending, with an explanation for every mistake.
//!
//! The portal (`CIMMessageParamAttach::GetAttachByJson`) never refuses a single bad field. It
//! drops blocks and items it cannot use, skips keys it does not know, replaces a bad colour
//! with a random one, and only answers `ATTACH_ERROR` when *nothing* is left. So a typo such as
//! `LNK` costs an image without any error. This module walks the attach exactly as the portal
//! does, builds the same stored shape (`{ID, BLOCKS, COLOR?, DESCRIPTION?}` with
//! `htmlspecialchars` applied and defaults filled in), measures it the way the portal measures
//! it, and records an [`Issue`] wherever the portal would silently lose or change something.

use serde_json::{Map, Value};

use super::report::{Finding, Report, Rule, Severity};
use crate::error::json_kind as kind;
use crate::php;

/// The stored attach must encode to fewer characters than this (`IsAllowSize`).
pub const MAX_ATTACH_CHARS: usize = 60_000;

const BLOCK_KEYS: [&str; 8] = [
    "USER",
    "LINK",
    "RICH_LINK",
    "MESSAGE",
    "GRID",
    "IMAGE",
    "FILE",
    "DELIMITER",
];
const FULL_FORM_KEYS: [&str; 5] = ["ID", "COLOR", "COLOR_TOKEN", "DESCRIPTION", "BLOCKS"];
const USER_KEYS: [&str; 8] = [
    "NAME",
    "AVATAR",
    "LINK",
    "USER_ID",
    "CHAT_ID",
    "BOT_ID",
    "NETWORK_ID",
    "AVATAR_TYPE",
];
const LINK_KEYS: [&str; 10] = [
    "LINK",
    "NAME",
    "DESC",
    "HTML",
    "PREVIEW",
    "WIDTH",
    "HEIGHT",
    "USER_ID",
    "CHAT_ID",
    "NETWORK_ID",
];
const RICH_LINK_KEYS: [&str; 9] = [
    "LINK",
    "NAME",
    "DESC",
    "HTML",
    "PREVIEW",
    "USER_ID",
    "CHAT_ID",
    "NETWORK_ID",
    "EXTRA_IMAGE",
];
const MESSAGE_KEYS: [&str; 2] = ["TEXT", "AS_DESCRIPTION"];
const GRID_KEYS: [&str; 10] = [
    "DISPLAY",
    "NAME",
    "VALUE",
    "WIDTH",
    "HEIGHT",
    "COLOR",
    "COLOR_TOKEN",
    "LINK",
    "USER_ID",
    "CHAT_ID",
];
const IMAGE_KEYS: [&str; 5] = ["LINK", "NAME", "PREVIEW", "WIDTH", "HEIGHT"];
const FILE_KEYS: [&str; 3] = ["LINK", "NAME", "SIZE"];
const DELIMITER_KEYS: [&str; 2] = ["SIZE", "COLOR"];
const COLOR_TOKENS: [&str; 4] = ["primary", "secondary", "alert", "base"];
const DISPLAYS: [&str; 4] = ["BLOCK", "LINE", "ROW", "TABLE"];

/// What the portal does about one mistake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum IssueKind {
    /// A field is skipped or replaced (unknown key, bad colour, bad optional link…); the
    /// block itself is kept.
    Ignored,
    /// A block or item is dropped.
    Dropped,
    /// The stored attach is 60,000 characters or more: the portal answers `ATTACH_OVERSIZE`.
    Oversize,
    /// Nothing usable is left: the portal answers `ATTACH_ERROR`.
    Rejected,
}

/// One mistake: where it is, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// Path to the field, e.g. `blocks[2].IMAGE.LINK` (`BLOCKS[2]…` in the full form).
    pub path: String,
    /// What the portal would do.
    pub kind: IssueKind,
    /// What is wrong and how to fix it, one line.
    pub message: String,
}

impl Issue {
    /// Error (the portal refuses the call) or warning (it drops or changes part of it).
    pub fn severity(&self) -> Severity {
        self.kind.severity()
    }
}

impl std::fmt::Display for Issue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// The portal's overall answer to an attach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// Stored exactly as meant.
    Clean,
    /// Stored, but some fields are skipped or replaced.
    Ignored,
    /// Stored, but some blocks or items are dropped.
    Dropped,
    /// Refused with `ATTACH_OVERSIZE`.
    Oversize,
    /// Refused with `ATTACH_ERROR`.
    Rejected,
    /// A PHP-falsy value (`[]`, `""`, `"0"`, `null`…): the portal ignores it, nothing is attached.
    Nothing,
}

/// The result of checking an attach against the portal's rules.
#[derive(Debug, Clone)]
pub struct Check {
    issues: Vec<Issue>,
    rules: Vec<Rule>,
    stored: Option<Value>,
    measured: Option<usize>,
    nothing: bool,
}

impl Check {
    /// Every mistake found, in document order.
    pub fn issues(&self) -> &[Issue] {
        &self.issues
    }

    /// True when the portal would store the attach exactly as given (or ignore an empty one).
    pub fn is_ok(&self) -> bool {
        self.issues.is_empty()
    }

    /// What the portal does with the attach as a whole.
    pub fn verdict(&self) -> Verdict {
        if self.nothing {
            return Verdict::Nothing;
        }
        match self.issues.iter().map(|i| i.kind).max() {
            None => Verdict::Clean,
            Some(IssueKind::Ignored) => Verdict::Ignored,
            Some(IssueKind::Dropped) => Verdict::Dropped,
            Some(IssueKind::Oversize) => Verdict::Oversize,
            Some(IssueKind::Rejected) => Verdict::Rejected,
        }
    }

    /// The attach as the portal would store it: `{ID, BLOCKS, COLOR?, DESCRIPTION?}`. `ID` is
    /// the current unix time, as the portal sets it; an invalid `COLOR` (which the portal
    /// replaces with a random colour) is shown as one colour of the portal's palette. `None`
    /// when no block survives.
    pub fn stored(&self) -> Option<&Value> {
        self.stored.as_ref()
    }

    /// Length of the stored attach as the portal measures it against the 60,000 limit:
    /// `json_encode` with `JSON_UNESCAPED_UNICODE` (so `/` counts as two), in characters.
    pub fn measured_len(&self) -> Option<usize> {
        self.measured
    }

    /// Every issue as a [`Finding`]: with its rule and severity, in document order.
    pub fn findings(&self) -> Vec<Finding> {
        self.issues
            .iter()
            .zip(&self.rules)
            .map(|(i, r)| Finding::attach(i.path.clone(), *r, i.kind, i.message.clone()))
            .collect()
    }

    /// The rule each issue breaks, in step with [`Check::issues`].
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The findings split into errors and warnings, with the stored form and its length.
    pub fn to_report(&self) -> Report {
        let mut report = Report::from_findings(self.findings());
        report.stored = self.stored.clone();
        report.measured = self.measured;
        report
    }

    /// The worst severity found, `None` when clean.
    pub fn severity(&self) -> Option<Severity> {
        self.issues.iter().map(|i| i.kind.severity()).max()
    }

    /// Every issue, one per line.
    pub fn report(&self) -> String {
        self.issues
            .iter()
            .map(Issue::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Checks a raw `ATTACH` value as the portal would read it.
pub fn check(raw: &Value) -> Check {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1_700_000_000, |d| d.as_secs());
    check_at(raw, now)
}

pub(crate) fn check_at(raw: &Value, now: u64) -> Check {
    let mut w = Walker::default();
    if !php::truthy(raw) {
        return Check {
            issues: Vec::new(),
            rules: Vec::new(),
            stored: None,
            measured: None,
            nothing: true,
        };
    }
    let decoded;
    let value = match raw {
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(v) => {
                decoded = v;
                &decoded
            }
            Err(_) => {
                w.push(
                    "ATTACH",
                    IssueKind::Rejected,
                    Rule::NotJson,
                    format!(
                        "{} is a string that is not JSON; pass a list of blocks such as [{{\"MESSAGE\": \"text\"}}]",
                        show(raw)
                    ),
                );
                return w.finish(None, None, None, now);
            }
        },
        other => other,
    };
    if !matches!(value, Value::Array(_) | Value::Object(_)) {
        w.push(
            "ATTACH",
            IssueKind::Rejected,
            Rule::NotAList,
            format!(
                "must be a list of blocks such as [{{\"MESSAGE\": \"text\"}}], not {}",
                kind(value)
            ),
        );
        return w.finish(None, None, None, now);
    }

    let mut color = None;
    let mut description = None;
    if let Some(blocks) = php::get(value, "BLOCKS") {
        w.full_form_fields(value, &mut color, &mut description);
        if !matches!(blocks, Value::Array(_) | Value::Object(_)) {
            w.push(
                "BLOCKS",
                IssueKind::Rejected,
                Rule::NotAList,
                format!("must be a list of blocks, not {}", kind(blocks)),
            );
            return w.finish(None, None, None, now);
        }
        if !php::is_list(blocks) {
            w.push(
                "BLOCKS",
                IssueKind::Ignored,
                Rule::ObjectKeys,
                "is an object; the portal reads its values as blocks and ignores its keys, so use a list [ … ]".into(),
            );
        }
        w.blocks(blocks, "BLOCKS");
    } else if !php::is_list(value) {
        let single = BLOCK_KEYS.iter().find(|k| php::get(value, k).is_some());
        if let Some(key) = single {
            // The portal reads a bare block's values as blocks; that almost never yields one.
            let mut silent = Walker::default();
            silent.blocks(value, "ATTACH");
            let kind = if silent.out.is_empty() {
                IssueKind::Rejected
            } else {
                IssueKind::Dropped
            };
            w.push(
                "ATTACH",
                kind,
                Rule::BareBlock,
                format!(
                    "is a single {key} block, but the portal wants a list of blocks: wrap it in [ ] (or use the full form with \"BLOCKS\")"
                ),
            );
            w.out = silent.out;
        } else if let Some(k) = value.as_object().and_then(|m| {
            m.keys()
                .find(|k| suggest(k, &FULL_FORM_KEYS) == Some("BLOCKS"))
        }) {
            let mut silent = Walker::default();
            silent.blocks(value, "ATTACH");
            let kind = if silent.out.is_empty() {
                IssueKind::Rejected
            } else {
                IssueKind::Dropped
            };
            w.push(
                k,
                kind,
                Rule::BlocksKey,
                "unknown key; did you mean BLOCKS? (keys are case-sensitive; without BLOCKS the portal reads this object's values as blocks)".into(),
            );
            w.out = silent.out;
        } else {
            w.push(
                "ATTACH",
                IssueKind::Ignored,
                Rule::ObjectKeys,
                "is an object without BLOCKS; the portal reads its values as blocks and ignores its keys, so use a list [ … ]".into(),
            );
            w.blocks(value, "ATTACH");
        }
    } else {
        w.blocks(value, "blocks");
    }
    let blocks = std::mem::take(&mut w.out);
    w.finish(Some(blocks), color, description, now)
}

#[derive(Default)]
struct Walker {
    issues: Vec<Issue>,
    /// The rule of each issue, in step with `issues`.
    rules: Vec<Rule>,
    out: Vec<Value>,
    /// How many blocks the input named, to tell "empty" from "everything dropped".
    seen: usize,
}

fn child(path: &str, key: &str) -> String {
    // A key with control characters (a newline…) is quoted, so that a path stays one line
    // whatever the input's keys hold.
    if key.chars().any(char::is_control) {
        format!("{path}[{}]", show(&Value::String(key.into())))
    } else if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn index(path: &str, key: &str) -> String {
    if key.bytes().all(|b| b.is_ascii_digit()) && !key.is_empty() {
        format!("{path}[{key}]")
    } else {
        format!("{path}[{}]", show(&Value::String(key.into())))
    }
}

/// A value as it appears in a message, shortened.
fn show(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 48 {
        format!("{}…", s.chars().take(45).collect::<String>())
    } else {
        s
    }
}

/// The known key `key` was probably meant to be: same letters in another case, or one or two
/// typos away.
fn suggest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    if let Some(k) = known.iter().find(|k| k.eq_ignore_ascii_case(key)) {
        return Some(k);
    }
    let upper = key.to_ascii_uppercase();
    known
        .iter()
        .map(|k| (strsim::levenshtein(&upper, k), *k))
        .filter(|(d, k)| *d <= 2 && *d < k.len() / 2 + 1)
        .min()
        .map(|(_, k)| k)
}

fn is_link(s: &str) -> bool {
    s.starts_with('/') || s.starts_with("http://") || s.starts_with("https://")
}

/// `/^#([a-fA-F0-9]){3}(([a-fA-F0-9]){3})?\b$/D`
fn is_hex_color(s: &str) -> bool {
    s.strip_prefix('#')
        .is_some_and(|h| matches!(h.len(), 3 | 6) && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

const LINK_FIX: &str = "use http://, https:// or /";

/// `<br>` variants become the portal's line-break marker before escaping.
fn br_marker(s: &str) -> String {
    s.replace("<br>", "#BR#")
        .replace("<br/>", "#BR#")
        .replace("<br />", "#BR#")
}

fn block(key: &str, v: Value) -> Value {
    let mut m = Map::new();
    m.insert(key.into(), v);
    Value::Object(m)
}

impl Walker {
    fn push(&mut self, path: &str, kind: IssueKind, rule: Rule, message: String) {
        self.issues.push(Issue {
            path: path.to_owned(),
            kind,
            message,
        });
        self.rules.push(rule);
    }

    fn finish(
        mut self,
        blocks: Option<Vec<Value>>,
        color: Option<String>,
        description: Option<String>,
        now: u64,
    ) -> Check {
        let blocks = blocks.unwrap_or_default();
        if blocks.is_empty() {
            if !self.issues.iter().any(|i| i.kind == IssueKind::Rejected) {
                if self.seen == 0 {
                    self.push(
                        "ATTACH",
                        IssueKind::Rejected,
                        Rule::Empty,
                        "has no blocks, so the portal answers ATTACH_ERROR; add at least one block such as {\"MESSAGE\": \"text\"}".into(),
                    );
                } else if !self.issues.iter().any(|i| i.kind == IssueKind::Dropped) {
                    self.push(
                        "ATTACH",
                        IssueKind::Rejected,
                        Rule::NothingLeft,
                        "no block is left, so the portal answers ATTACH_ERROR".into(),
                    );
                } else {
                    // Every block is dropped: the portal refuses the whole attach.
                    for issue in &mut self.issues {
                        if issue.kind == IssueKind::Dropped {
                            issue.kind = IssueKind::Rejected;
                        }
                    }
                }
            }
            return Check {
                issues: self.issues,
                rules: self.rules,
                stored: None,
                measured: None,
                nothing: false,
            };
        }
        let mut stored = Map::new();
        stored.insert("ID".into(), now.into());
        stored.insert("BLOCKS".into(), Value::Array(blocks));
        if let Some(c) = color {
            stored.insert("COLOR".into(), c.into());
        }
        if let Some(d) = description {
            stored.insert("DESCRIPTION".into(), d.into());
        }
        let stored = Value::Object(stored);
        let measured = php::json_encode(&stored).chars().count();
        if measured >= MAX_ATTACH_CHARS {
            self.push(
                "ATTACH",
                IssueKind::Oversize,
                Rule::Oversize,
                format!(
                    "is {measured} characters as the portal measures it (the limit is {}, counted after HTML escaping and with / as \\/); shorten the text or send several notifications",
                    MAX_ATTACH_CHARS - 1
                ),
            );
        }
        Check {
            issues: self.issues,
            rules: self.rules,
            stored: Some(stored),
            measured: Some(measured),
            nothing: false,
        }
    }

    /// Reports keys outside `known`.
    fn unknown_keys(&mut self, v: &Value, path: &str, known: &[&str], kind: IssueKind) {
        self.unknown_keys_for(v, path, known, kind, None);
    }

    /// Reports keys outside `known`. A key that looks like the missing required field
    /// `missing.0` is reported as the reason the item is dropped (`missing.1` says what is
    /// dropped); returns true when that happened.
    fn unknown_keys_for(
        &mut self,
        v: &Value,
        path: &str,
        known: &[&str],
        kind: IssueKind,
        missing: Option<(&str, &str)>,
    ) -> bool {
        let Some(map) = v.as_object() else {
            return false;
        };
        let mut covered = false;
        for key in map.keys() {
            if known.contains(&key.as_str()) {
                continue;
            }
            let hint = suggest(key, known);
            if let (Some((field, what)), Some(h)) = (missing, hint)
                && h == field
            {
                covered = true;
                let case = if h.eq_ignore_ascii_case(key) {
                    " (keys are case-sensitive)"
                } else {
                    ""
                };
                self.push(
                        &child(path, key),
                        IssueKind::Dropped,
                        Rule::UnknownKey,
                        format!("unknown key; did you mean {h}?{case} Without {h} the portal drops this {what}"),
                    );
                continue;
            }
            let fate = if kind == IssueKind::Dropped {
                "the portal drops this block"
            } else {
                "the portal ignores it"
            };
            let message = match hint {
                Some(k) if k.eq_ignore_ascii_case(key) => {
                    format!("unknown key; did you mean {k}? (keys are case-sensitive; {fate})")
                }
                Some(k) => format!("unknown key; did you mean {k}? ({fate})"),
                None => format!("unknown key ({fate}; known keys: {})", known.join(", ")),
            };
            self.push(&child(path, key), kind, Rule::UnknownKey, message);
        }
        covered
    }

    /// A string field; reports arrays, which PHP's string functions cannot use.
    fn text(&mut self, v: &Value, path: &str, key: &str) -> Option<String> {
        let field = php::get(v, key)?;
        let t = php::text(field);
        if t.is_none() {
            self.push(
                &child(path, key),
                IssueKind::Ignored,
                Rule::NotText,
                format!(
                    "is {}, but must be text; the portal ignores it",
                    kind(field)
                ),
            );
        }
        t
    }

    /// A positive integer field; reports present values the portal discards.
    fn positive(&mut self, v: &Value, path: &str, key: &str) -> Option<i64> {
        let field = php::get(v, key)?;
        let n = php::intval(field);
        if n > 0 {
            Some(n)
        } else {
            self.push(
                &child(path, key),
                IssueKind::Ignored,
                Rule::NotPositive,
                format!(
                    "{} is not a positive whole number; the portal ignores it",
                    show(field)
                ),
            );
            None
        }
    }

    /// An optional link field the portal validates; reports an invalid one.
    fn optional_link(&mut self, v: &Value, path: &str, key: &str) -> Option<String> {
        let link = self.text(v, path, key)?;
        if is_link(&link) {
            Some(link)
        } else {
            self.push(
                &child(path, key),
                IssueKind::Ignored,
                Rule::LinkInvalid,
                format!(
                    "{} is not a link the portal accepts ({LINK_FIX}); the portal ignores it",
                    show(&Value::String(link))
                ),
            );
            None
        }
    }

    fn hex_color(&mut self, v: &Value, path: &str, key: &str) -> Option<String> {
        let c = self.text(v, path, key)?;
        if is_hex_color(&c) {
            Some(c)
        } else {
            self.push(
                &child(path, key),
                IssueKind::Ignored,
                Rule::ColorInvalid,
                format!(
                    "{} is not a colour the portal accepts (use #RGB or #RRGGBB); the portal ignores it",
                    show(&Value::String(c))
                ),
            );
            None
        }
    }

    /// The portal keeps the first character and the integer after it.
    fn network_id(&mut self, raw: &str, path: &str) {
        let kept = network_id(raw);
        if kept != php::htmlspecialchars(raw) {
            self.push(
                &child(path, "NETWORK_ID"),
                IssueKind::Ignored,
                Rule::NetworkId,
                format!(
                    "{} is not a Bitrix24 Network id (a letter, then digits), so the portal keeps {}",
                    show(&Value::String(raw.into())),
                    show(&Value::String(kept))
                ),
            );
        }
    }

    fn color_token(&mut self, v: &Value, path: &str) {
        if let Some(t) = self.text(v, path, "COLOR_TOKEN")
            && !COLOR_TOKENS.contains(&t.as_str())
        {
            self.push(
                &child(path, "COLOR_TOKEN"),
                IssueKind::Ignored,
                Rule::ColorTokenInvalid,
                format!(
                    "{} is not a colour token (use primary, secondary, alert or base)",
                    show(&Value::String(t))
                ),
            );
        }
    }

    fn full_form_fields(
        &mut self,
        v: &Value,
        color: &mut Option<String>,
        description: &mut Option<String>,
    ) {
        // Full-form fields are named bare (`COLOR`), like `BLOCKS[0]…`.
        self.unknown_keys(v, "", &FULL_FORM_KEYS, IssueKind::Ignored);
        if let Some(raw) = php::get(v, "COLOR") {
            match php::text(raw).as_deref() {
                Some("CHAT") => {}
                Some("TRANSPARENT") => *color = Some("transparent".into()),
                Some(c) if is_hex_color(c) => *color = Some(c.into()),
                _ => {
                    let hint =
                        if php::text(raw).is_some_and(|c| c.eq_ignore_ascii_case("transparent")) {
                            "write TRANSPARENT in capitals"
                        } else {
                            "use #RGB, #RRGGBB or TRANSPARENT"
                        };
                    self.push(
                        "COLOR",
                        IssueKind::Ignored,
                        Rule::ColorRandom,
                        format!(
                            "{} is not a colour the portal accepts, so it picks a random one ({hint})",
                            show(raw)
                        ),
                    );
                    // Every colour of the portal's palette is seven characters long.
                    *color = Some("#df532d".into());
                }
            }
        }
        self.color_token(v, "");
        if let Some(d) = self.text(v, "", "DESCRIPTION") {
            *description = Some(php::htmlspecialchars(php::trim(&d)));
        }
    }

    fn blocks(&mut self, blocks: &Value, path: &str) {
        for (key, data) in php::entries(blocks) {
            self.seen += 1;
            self.block(data, &index(path, &key));
        }
    }

    fn block(&mut self, data: &Value, path: &str) {
        let Value::Object(map) = data else {
            self.push(
                path,
                IssueKind::Dropped,
                Rule::NotAnObject,
                format!(
                    "is {}, but a block is an object such as {{\"MESSAGE\": \"text\"}}; the portal drops it",
                    kind(data)
                ),
            );
            return;
        };
        // The first recognised key, in the portal's order, decides the block type.
        let found = BLOCK_KEYS
            .iter()
            .copied()
            .find(|k| php::get(data, k).is_some());
        let Some(found) = found else {
            if map.keys().all(|k| BLOCK_KEYS.contains(&k.as_str())) {
                self.push(
                    path,
                    IssueKind::Dropped,
                    Rule::NoBlockKey,
                    format!(
                        "has no block key with a value ({}); the portal drops it",
                        BLOCK_KEYS.join(", ")
                    ),
                );
            } else {
                self.unknown_keys(data, path, &BLOCK_KEYS, IssueKind::Dropped);
            }
            return;
        };
        for key in map
            .keys()
            .filter(|k| BLOCK_KEYS.contains(&k.as_str()) && *k != found)
        {
            self.push(
                &child(path, key),
                IssueKind::Ignored,
                Rule::ExtraBlockKey,
                format!(
                    "the portal reads only one block per object ({found} here) and ignores this one; put it in its own block"
                ),
            );
        }
        self.unknown_keys(data, path, &BLOCK_KEYS, IssueKind::Ignored);
        let v = &map[found];
        let path = child(path, found);
        match found {
            "USER" => {
                for (item, p) in self.one_or_many(v, &path) {
                    self.user(item, &p);
                }
            }
            "LINK" | "RICH_LINK" => {
                for (item, p) in self.one_or_many(v, &path) {
                    self.link(item, &p, found);
                }
            }
            "MESSAGE" => self.message(v, &path),
            "GRID" => self.grid(v, &path),
            "IMAGE" => self.media(v, &path, "IMAGE"),
            "FILE" => self.media(v, &path, "FILE"),
            _ => self.delimiter(v, &path),
        }
    }

    /// USER, LINK and RICH_LINK take one object or a list of them.
    fn one_or_many<'v>(&mut self, v: &'v Value, path: &str) -> Vec<(&'v Value, String)> {
        if matches!(v, Value::Array(_) | Value::Object(_)) && php::is_list(v) {
            let items: Vec<_> = php::entries(v)
                .into_iter()
                .map(|(k, item)| (item, index(path, &k)))
                .collect();
            if items.is_empty() {
                self.push(
                    path,
                    IssueKind::Dropped,
                    Rule::EmptyBlock,
                    "is empty; the portal drops it".into(),
                );
            }
            items
        } else {
            vec![(v, path.to_owned())]
        }
    }

    fn not_an_object(&mut self, v: &Value, path: &str, what: &str) -> bool {
        if v.is_object() {
            return false;
        }
        self.push(
            path,
            IssueKind::Dropped,
            Rule::NotAnObject,
            format!(
                "is {}, but must be an object such as {what}; the portal drops it",
                kind(v)
            ),
        );
        true
    }

    fn user(&mut self, p: &Value, path: &str) {
        if self.not_an_object(p, path, "{\"NAME\": \"John Smith\"}") {
            return;
        }
        let name = php::get(p, "NAME").and_then(php::text);
        let name = name.filter(|n| !php::trim(n).is_empty());
        let missing = name.is_none().then_some(("NAME", "user"));
        let covered = self.unknown_keys_for(p, path, &USER_KEYS, IssueKind::Ignored, missing);
        let Some(name) = name else {
            if !covered {
                self.push(
                    &child(path, "NAME"),
                    IssueKind::Dropped,
                    Rule::NameMissing,
                    "is missing or empty; the portal drops a USER without a name".into(),
                );
            }
            return;
        };
        let mut out = Map::new();
        let name = php::trim(&name).replace(['\r', '\n'], " ");
        out.insert("NAME".into(), php::htmlspecialchars(&name).into());
        out.insert("AVATAR_TYPE".into(), "USER".into());
        // One target is kept, in this order of priority.
        let network = self.text(p, path, "NETWORK_ID");
        let user_id = self.positive(p, path, "USER_ID");
        let chat_id = self.positive(p, path, "CHAT_ID");
        let bot_id = self.positive(p, path, "BOT_ID");
        let link = self.optional_link(p, path, "LINK");
        if let Some(n) = &network {
            self.network_id(n, path);
        }
        let targets = [
            ("NETWORK_ID", network.map(|n| network_id(&n).into())),
            ("USER_ID", user_id.map(Value::from)),
            ("CHAT_ID", chat_id.map(Value::from)),
            ("BOT_ID", bot_id.map(Value::from)),
            ("LINK", link.map(|l| php::htmlspecialchars(&l).into())),
        ];
        let mut winner = None;
        for (key, value) in targets {
            let Some(value) = value else { continue };
            match winner {
                None => {
                    winner = Some(key);
                    out.insert(key.into(), value);
                    match key {
                        "CHAT_ID" => {
                            out.insert("AVATAR_TYPE".into(), "CHAT".into());
                        }
                        "BOT_ID" => {
                            out.insert("AVATAR_TYPE".into(), "BOT".into());
                        }
                        _ => {}
                    }
                }
                Some(w) => self.push(
                    &child(path, key),
                    IssueKind::Ignored,
                    Rule::TargetIgnored,
                    format!(
                        "the portal keeps one target ({w} here: NETWORK_ID, then USER_ID, CHAT_ID, BOT_ID, LINK) and ignores this one"
                    ),
                ),
            }
        }
        if let Some(avatar) = self.optional_link(p, path, "AVATAR") {
            out.insert("AVATAR".into(), php::htmlspecialchars(&avatar).into());
        }
        if let Some(t) = self.text(p, path, "AVATAR_TYPE") {
            if matches!(t.as_str(), "USER" | "CHAT" | "BOT") {
                out.insert("AVATAR_TYPE".into(), t.into());
            } else {
                self.push(
                    &child(path, "AVATAR_TYPE"),
                    IssueKind::Ignored,
                    Rule::AvatarTypeInvalid,
                    format!(
                        "{} is not an avatar type (use USER, CHAT or BOT); the portal ignores it",
                        show(&Value::String(t))
                    ),
                );
            }
        }
        self.out
            .push(block("USER", Value::Array(vec![Value::Object(out)])));
    }

    fn link(&mut self, p: &Value, path: &str, kind_key: &str) {
        if self.not_an_object(p, path, "{\"LINK\": \"https://…\"}") {
            return;
        }
        let known: &[&str] = if kind_key == "LINK" {
            &LINK_KEYS
        } else {
            &RICH_LINK_KEYS
        };
        let has_name = php::get(p, "NAME").is_some();
        let network = php::get(p, "NETWORK_ID").and_then(php::text);
        let user_id = php::get(p, "USER_ID").map(php::intval).filter(|n| *n > 0);
        let chat_id = php::get(p, "CHAT_ID").map(php::intval).filter(|n| *n > 0);
        let link = php::get(p, "LINK").and_then(php::text);
        let valid = (has_name && (network.is_some() || user_id.is_some() || chat_id.is_some()))
            || link.as_deref().is_some_and(is_link);
        let missing = (!valid && link.is_none()).then_some(("LINK", "link"));
        if self.unknown_keys_for(p, path, known, IssueKind::Ignored, missing) {
            return;
        }
        let mut out = Map::new();
        if let (Some(n), true) = (&network, has_name) {
            self.network_id(n, path);
            out.insert("NETWORK_ID".into(), network_id(n).into());
        } else if let (Some(n), true) = (user_id, has_name) {
            out.insert("USER_ID".into(), n.into());
        } else if let (Some(n), true) = (chat_id, has_name) {
            out.insert("CHAT_ID".into(), n.into());
        } else if !link.as_deref().is_some_and(is_link) {
            let (at, rule, message) = match &link {
                Some(l) => (
                    child(path, "LINK"),
                    Rule::LinkInvalid,
                    format!(
                        "{} is not a link the portal accepts ({LINK_FIX}); the portal drops this link",
                        show(&Value::String(l.clone()))
                    ),
                ),
                None if network.is_some() || user_id.is_some() || chat_id.is_some() => (
                    child(path, "NAME"),
                    Rule::NameMissing,
                    "is missing; a link to a user or chat needs NAME too (or give a LINK), so the portal drops it".into(),
                ),
                None => (
                    child(path, "LINK"),
                    Rule::LinkMissing,
                    format!("is missing ({LINK_FIX}); the portal drops this link"),
                ),
            };
            self.push(&at, IssueKind::Dropped, rule, message);
            return;
        }
        if has_name {
            let name = self.text(p, path, "NAME").unwrap_or_default();
            out.insert(
                "NAME".into(),
                php::htmlspecialchars(php::trim(&name)).into(),
            );
        }
        if let Some(l) = self.text(p, path, "LINK") {
            out.insert("LINK".into(), php::htmlspecialchars(&l).into());
        }
        if php::get(p, "DESC").is_some() {
            let desc = self.text(p, path, "DESC").unwrap_or_default();
            let desc = php::htmlspecialchars(&br_marker(php::trim(&desc)))
                .replace("#BR#", "<br/>")
                .replace("[br]", "<br/>")
                .replace("[BR]", "<br/>");
            out.insert("DESC".into(), desc.into());
        }
        if php::get(p, "HTML").is_some() {
            // The portal runs HTML through its sanitizer; the text as sent is what we measure.
            let html = self.text(p, path, "HTML").unwrap_or_else(|| "Array".into());
            out.insert("HTML".into(), html.into());
            for key in ["PREVIEW", "WIDTH", "HEIGHT"] {
                if php::get(p, key).is_some() {
                    self.push(
                        &child(path, key),
                        IssueKind::Ignored,
                        Rule::HtmlOverrides,
                        "the portal ignores it when HTML is given".into(),
                    );
                }
            }
        } else if let Some(preview) = self.optional_link(p, path, "PREVIEW") {
            out.insert("PREVIEW".into(), php::htmlspecialchars(&preview).into());
            if kind_key == "LINK" {
                for key in ["WIDTH", "HEIGHT"] {
                    if let Some(n) = self.positive(p, path, key) {
                        out.insert(key.into(), n.into());
                    }
                }
            }
        } else if kind_key == "LINK" {
            for key in ["WIDTH", "HEIGHT"] {
                if php::get(p, key).is_some() {
                    self.push(
                        &child(path, key),
                        IssueKind::Ignored,
                        Rule::SizeWithoutPreview,
                        "sizes the PREVIEW image; without a valid PREVIEW the portal ignores it"
                            .into(),
                    );
                }
            }
        }
        if kind_key == "RICH_LINK"
            && let Some(extra) = self.optional_link(p, path, "EXTRA_IMAGE")
        {
            out.insert("EXTRA_IMAGE".into(), php::htmlspecialchars(&extra).into());
        }
        self.out
            .push(block(kind_key, Value::Array(vec![Value::Object(out)])));
    }

    fn message(&mut self, v: &Value, path: &str) {
        let raw = match v {
            Value::Object(_) => {
                self.unknown_keys(v, path, &MESSAGE_KEYS, IssueKind::Ignored);
                php::get(v, "TEXT").and_then(php::text)
            }
            Value::Array(_) => None,
            other => php::text(other),
        };
        let text = raw.as_deref().map(php::trim).unwrap_or_default();
        if text.is_empty() {
            self.push(
                path,
                IssueKind::Dropped,
                Rule::MessageEmpty,
                "is empty; the portal drops a MESSAGE without text".into(),
            );
            return;
        }
        let text = php::htmlspecialchars(&br_marker(text)).replace("#BR#", "[BR]");
        self.out.push(block("MESSAGE", text.into()));
    }

    fn grid(&mut self, v: &Value, path: &str) {
        if !php::is_list(v) {
            self.push(
                path,
                IssueKind::Dropped,
                Rule::BlockShape,
                format!(
                    "is {}, but GRID must be a list of items such as [{{\"NAME\": \"Status\", \"VALUE\": \"ok\"}}]; wrap it in [ ]",
                    kind(v)
                ),
            );
            return;
        }
        let mut items = Vec::new();
        let entries = php::entries(v);
        if entries.is_empty() {
            self.push(
                path,
                IssueKind::Dropped,
                Rule::EmptyBlock,
                "is empty; the portal drops it".into(),
            );
        }
        for (key, item) in entries {
            let path = index(path, &key);
            if self.not_an_object(item, &path, "{\"NAME\": \"Status\", \"VALUE\": \"ok\"}") {
                continue;
            }
            let display = php::get(item, "DISPLAY").and_then(php::text);
            let name = php::get(item, "NAME")
                .and_then(php::text)
                .unwrap_or_default();
            let value = php::get(item, "VALUE")
                .and_then(php::text)
                .unwrap_or_default();
            // The LINE exemption is tested before the CARD alias is resolved, as the portal does.
            if display.as_deref() != Some("LINE")
                && php::trim(&name).is_empty()
                && php::trim(&value).is_empty()
            {
                self.push(
                    &path,
                    IssueKind::Dropped,
                    Rule::EmptyItem,
                    "has neither NAME nor VALUE; the portal drops it (only DISPLAY \"LINE\" items may be empty)".into(),
                );
                continue;
            }
            self.unknown_keys(item, &path, &GRID_KEYS, IssueKind::Ignored);
            let shown = match self.text(item, &path, "DISPLAY").as_deref() {
                None => "BLOCK",
                Some("COLUMN") => "ROW",
                Some("CARD") => "LINE",
                Some("BLOCK") => "BLOCK",
                Some("LINE") => "LINE",
                Some("ROW") => "ROW",
                Some("TABLE") => "TABLE",
                Some(d) => {
                    let hint = suggest(d, &DISPLAYS)
                        .map(|s| format!("did you mean {s}? "))
                        .unwrap_or_default();
                    self.push(
                        &child(&path, "DISPLAY"),
                        IssueKind::Ignored,
                        Rule::DisplayInvalid,
                        format!(
                            "{} is not a display mode, so the portal shows BLOCK ({hint}use BLOCK, LINE, ROW or TABLE)",
                            show(&Value::String(d.into()))
                        ),
                    );
                    "BLOCK"
                }
            };
            let name = self.text(item, &path, "NAME").unwrap_or_default();
            let value = self.text(item, &path, "VALUE").unwrap_or_default();
            let mut out = Map::new();
            out.insert("DISPLAY".into(), shown.into());
            out.insert(
                "NAME".into(),
                php::htmlspecialchars(php::trim(&name)).into(),
            );
            out.insert(
                "VALUE".into(),
                php::htmlspecialchars(&br_marker(php::trim(&value))).into(),
            );
            if let Some(c) = self.hex_color(item, &path, "COLOR") {
                out.insert("COLOR".into(), c.into());
            }
            self.color_token(item, &path);
            for key in ["WIDTH", "HEIGHT", "USER_ID", "CHAT_ID"] {
                if let Some(n) = self.positive(item, &path, key) {
                    out.insert(key.into(), n.into());
                }
            }
            if let Some(link) = self.optional_link(item, &path, "LINK") {
                out.insert("LINK".into(), php::htmlspecialchars(&link).into());
            }
            items.push(Value::Object(out));
        }
        if !items.is_empty() {
            self.out.push(block("GRID", Value::Array(items)));
        }
    }

    /// IMAGE and FILE: one object or a list; every item needs a valid LINK.
    fn media(&mut self, v: &Value, path: &str, key: &str) {
        let entries: Vec<(&Value, String)> = match v {
            Value::Object(_) if !php::is_list(v) => vec![(v, path.to_owned())],
            Value::Array(_) | Value::Object(_) => php::entries(v)
                .into_iter()
                .map(|(k, item)| (item, index(path, &k)))
                .collect(),
            other => {
                self.push(
                    path,
                    IssueKind::Dropped,
                    Rule::BlockShape,
                    format!(
                        "is {}, but {key} must be an object such as {{\"LINK\": \"https://…\"}} or a list of them; the portal drops it",
                        kind(other)
                    ),
                );
                return;
            }
        };
        if entries.is_empty() {
            self.push(
                path,
                IssueKind::Dropped,
                Rule::EmptyBlock,
                "is empty; the portal drops it".into(),
            );
        }
        let mut items = Vec::new();
        for (item, path) in entries {
            if self.not_an_object(item, &path, "{\"LINK\": \"https://…\"}") {
                continue;
            }
            let known: &[&str] = if key == "IMAGE" {
                &IMAGE_KEYS
            } else {
                &FILE_KEYS
            };
            let what = key.to_ascii_lowercase();
            let missing = php::get(item, "LINK")
                .is_none()
                .then_some(("LINK", what.as_str()));
            if self.unknown_keys_for(item, &path, known, IssueKind::Ignored, missing) {
                continue;
            }
            let link = php::get(item, "LINK").and_then(php::text);
            let Some(link) = link.filter(|l| is_link(l)) else {
                let (rule, message) = match php::get(item, "LINK") {
                    Some(l) => (
                        Rule::LinkInvalid,
                        format!(
                            "{} is not a link the portal accepts ({LINK_FIX}); the portal drops this {}",
                            show(l),
                            key.to_ascii_lowercase()
                        ),
                    ),
                    None => (
                        Rule::LinkMissing,
                        format!(
                            "is missing ({LINK_FIX}); the portal drops this {}",
                            key.to_ascii_lowercase()
                        ),
                    ),
                };
                self.push(&child(&path, "LINK"), IssueKind::Dropped, rule, message);
                continue;
            };
            let name = self
                .text(item, &path, "NAME")
                .filter(|n| !php::trim(n).is_empty())
                .map(|n| php::htmlspecialchars(php::trim(&n)));
            let link = php::htmlspecialchars(&link);
            let mut out = Map::new();
            if key == "IMAGE" {
                if let Some(n) = name {
                    out.insert("NAME".into(), n.into());
                }
                out.insert("LINK".into(), link.into());
                for k in ["WIDTH", "HEIGHT"] {
                    if let Some(n) = self.positive(item, &path, k) {
                        out.insert(k.into(), n.into());
                    }
                }
                if let Some(preview) = self.optional_link(item, &path, "PREVIEW") {
                    out.insert("PREVIEW".into(), php::htmlspecialchars(&preview).into());
                }
            } else {
                out.insert("LINK".into(), link.into());
                if let Some(n) = name {
                    out.insert("NAME".into(), n.into());
                }
                // SIZE 0 is documented as "no size shown", so only negative sizes are mistakes.
                if let Some(size) = php::get(item, "SIZE") {
                    let n = php::intval(size);
                    if n > 0 {
                        out.insert("SIZE".into(), n.into());
                    } else if n < 0 || !matches!(php::text(size).as_deref(), Some("0" | "")) {
                        self.push(
                            &child(&path, "SIZE"),
                            IssueKind::Ignored,
                            Rule::NotPositive,
                            format!(
                                "{} is not a size in bytes; the portal ignores it",
                                show(size)
                            ),
                        );
                    }
                }
            }
            items.push(Value::Object(out));
        }
        if !items.is_empty() {
            self.out.push(block(key, Value::Array(items)));
        }
    }

    /// Always kept; SIZE defaults to 200.
    fn delimiter(&mut self, v: &Value, path: &str) {
        let mut out = Map::new();
        match v {
            Value::Object(_) => self.unknown_keys(v, path, &DELIMITER_KEYS, IssueKind::Ignored),
            Value::Array(a) if a.is_empty() => {}
            other => self.push(
                path,
                IssueKind::Ignored,
                Rule::DelimiterShape,
                format!(
                    "is {}; the portal ignores it and draws a default delimiter (use {{}} or {{\"SIZE\": 200, \"COLOR\": \"#c6c6c6\"}})",
                    kind(other)
                ),
            ),
        }
        let size = self.positive(v, path, "SIZE").unwrap_or(200);
        out.insert("SIZE".into(), size.into());
        if let Some(c) = self.hex_color(v, path, "COLOR") {
            out.insert("COLOR".into(), c.into());
        }
        self.out.push(block("DELIMITER", Value::Object(out)));
    }
}

/// `substr(NETWORK_ID, 0, 1) . intval(substr(NETWORK_ID, 1))`, escaped.
fn network_id(raw: &str) -> String {
    let mut chars = raw.chars();
    let first = chars.next().map(String::from).unwrap_or_default();
    format!(
        "{}{}",
        php::htmlspecialchars(&first),
        php::intval_str(chars.as_str())
    )
}

#[cfg(test)]
pub(crate) fn suggest_for_tests<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    suggest(key, known)
}
