//! Severities over the whole ATTACH corpus: every entry is an error, a warning or clean, and
//! the emulator (the portal's behaviour) agrees over HTTP:
//!
//! - error ⇔ the emulator refuses the call (`ATTACH_ERROR`, `ATTACH_OVERSIZE`);
//! - warning ⇔ it accepts the call but its stored attach lost or changed something the entry
//!   said (a block, an item, a key, a value);
//! - clean ⇔ it stores every value as given (escaped, trimmed and with defaults filled in,
//!   which change nothing the user wrote), or the entry is PHP-falsy and nothing is attached.
//!
//! "Lost or changed" is judged here by comparing the entry with the emulator's stored form,
//! independently of the library's checker. Then strict mode must refuse exactly the warned
//! entries, and the non-strict builder must send them (the notification is created).
//!
//! Run with `cargo test -p bitrix24 --test attach_severity -- --nocapture` to see the table.

mod common;

use bitrix24::notify::Personal;
use bitrix24::{Attach, Client, Error, MAX_ATTACH_CHARS, Pacer, Severity};
use bitrix24_emulator::{Config, Emulator, Plan};
use serde_json::{Value, json};

const SECRET: &str = "severity-secret";
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

struct Case {
    name: String,
    attach: Value,
}

/// The corpus file plus the size boundaries of `attach_differential.rs` (the same anchors:
/// one MESSAGE block is stored as 43 characters around its text, the limit is "fewer than
/// 60,000").
fn corpus() -> Vec<Case> {
    let doc: Value =
        serde_json::from_str(include_str!("data/attach-corpus.json")).expect("corpus is JSON");
    let mut cases: Vec<Case> = doc["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| Case {
            name: c["name"].as_str().expect("name").to_owned(),
            attach: c["attach"].clone(),
        })
        .collect();
    let room = MAX_ATTACH_CHARS - 1 - 43;
    let msg = |s: String| json!([{ "MESSAGE": s }]);
    let sized = [
        ("size: ascii at the limit", msg("a".repeat(room))),
        ("size: ascii one over", msg("a".repeat(room + 1))),
        ("size: slashes at the limit", msg("/".repeat(room / 2))),
        ("size: slashes one over", msg("/".repeat(room / 2) + "a")),
        (
            "size: ampersands at the limit",
            msg("&".repeat(room / 5) + &"a".repeat(room % 5)),
        ),
        (
            "size: ampersands one over",
            msg("&".repeat(room / 5) + &"a".repeat(room % 5 + 1)),
        ),
        (
            "size: quotes at the limit",
            msg("\"".repeat(room / 6) + &"a".repeat(room % 6)),
        ),
        (
            "size: quotes one over",
            msg("\"".repeat(room / 6) + &"a".repeat(room % 6 + 1)),
        ),
        ("size: cyrillic at the limit", msg("я".repeat(room))),
        ("size: cyrillic one over", msg("я".repeat(room + 1))),
        (
            "size: trimmed spaces do not count",
            msg(format!("  {}  ", "a".repeat(room))),
        ),
    ];
    cases.extend(sized.into_iter().map(|(name, attach)| Case {
        name: name.into(),
        attach,
    }));
    // Other shapes: the boundary is found with the library's measurement; the emulator must
    // refuse the first too long and store the last fitting.
    type Template = Box<dyn Fn(usize) -> Value>;
    let templates: Vec<(&str, Template)> = vec![
        (
            "image link with slashes",
            Box::new(
                |n| json!([{ "IMAGE": { "LINK": format!("https://x.test/{}", "a/".repeat(n)) } }]),
            ),
        ),
        (
            "description with <",
            Box::new(
                |n| json!({ "COLOR": "#ff0000", "DESCRIPTION": "<".repeat(n), "BLOCKS": [{ "DELIMITER": {} }] }),
            ),
        ),
        (
            "grid items",
            Box::new(|n| json!([{ "GRID": vec![json!({ "NAME": "k/", "VALUE": "v&" }); n] }])),
        ),
        (
            "user names with newlines",
            Box::new(
                |n| json!([{ "USER": { "NAME": format!("a\n\"{}", "b".repeat(n)), "USER_ID": 3 } }]),
            ),
        ),
    ];
    for (label, make) in templates {
        let len = |n: usize| {
            Attach::check_json(&make(n))
                .measured_len()
                .expect("measured")
        };
        let (mut lo, mut hi) = (0usize, 1usize);
        while len(hi) < MAX_ATTACH_CHARS {
            hi *= 2;
        }
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            if len(mid) < MAX_ATTACH_CHARS {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        for (which, n) in [("last fitting", lo), ("first too long", hi)] {
            cases.push(Case {
                name: format!("size: {label}, {which}"),
                attach: make(n),
            });
        }
    }
    // Issue 10: the docs' own DELIMITER example, alone and after a message.
    for (name, attach) in [
        ("docs: {\"DELIMITER\": true}", json!([{"DELIMITER": true}])),
        (
            "docs: {\"DELIMITER\": true} after a message",
            json!([{"MESSAGE": "Build 42"}, {"DELIMITER": true}]),
        ),
    ] {
        cases.push(Case {
            name: name.into(),
            attach,
        });
    }
    cases
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Error,
    Warning,
    Clean,
}

impl Verdict {
    fn name(self) -> &'static str {
        match self {
            Verdict::Error => "error",
            Verdict::Warning => "warning",
            Verdict::Clean => "clean",
        }
    }
}

// ---- the emulator's side, judged without the library ----------------------------------

fn is_list(v: &Value) -> bool {
    match v {
        Value::Array(_) => true,
        Value::Object(m) => m.keys().enumerate().all(|(i, k)| *k == i.to_string()),
        _ => false,
    }
}

fn entries(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(a) => a.iter().collect(),
        Value::Object(m) => m.values().collect(),
        _ => Vec::new(),
    }
}

fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_object()?.get(key).filter(|v| !v.is_null())
}

/// A value as text, whitespace runs (and the portal's line-break spellings) as one space:
/// escaping, trimming and line-break markers are the portal's encoding, not a change.
fn canon(v: &Value, stored: bool) -> Option<String> {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(true) => "1".into(),
        Value::Bool(false) => String::new(),
        _ => return None,
    };
    let s = if stored {
        s.replace("&quot;", "\"")
            .replace("&#039;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&")
    } else {
        s
    };
    // `#BR#` is the portal's own line-break marker.
    let s = ["<br />", "<br/>", "<br>", "[br]", "[BR]", "#BR#"]
        .iter()
        .fold(s, |s, br| s.replace(br, " "));
    Some(s.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// Keys the emulator's portal version does not store whatever their value, so their absence
/// says nothing: the attach `ID` (always the current time) and `AS_DESCRIPTION` (read for
/// display by newer portals; not part of the stored form). `COLOR_TOKEN` is not stored
/// either; one of the docs' tokens is what newer portals read, anything else is lost.
const NOT_STORED: [&str; 2] = ["ID", "AS_DESCRIPTION"];
const COLOR_TOKENS: [&str; 4] = ["primary", "secondary", "alert", "base"];

/// A value whose absence from the stored form loses nothing.
fn unstored_is_same(key: &str, value: &Value) -> bool {
    let text = canon(value, false);
    NOT_STORED.contains(&key)
        || (key == "COLOR_TOKEN" && value.as_str().is_some_and(|t| COLOR_TOKENS.contains(&t)))
        // An empty text, or a FILE SIZE of 0 (the docs: "no size shown").
        || text.as_deref() == Some("")
        || (key == "SIZE" && text.as_deref() == Some("0"))
}

/// The first way `stored` differs from what `input` (an item object) said, if any.
fn item_change(input: &Value, stored: &Value, path: &str) -> Option<String> {
    let Some(map) = input.as_object() else {
        return Some(format!("{path} is not an object"));
    };
    for (k, x) in map {
        if x.is_null() {
            continue;
        }
        let Some(y) = get(stored, k) else {
            if unstored_is_same(k, x) {
                continue;
            }
            return Some(format!("{path}.{k} not stored"));
        };
        let (a, b) = (canon(x, false), canon(y, true));
        let same = match (k.as_str(), a.as_deref(), b.as_deref()) {
            // The portal's aliases for display modes.
            ("DISPLAY", Some("COLUMN"), Some("ROW")) | ("DISPLAY", Some("CARD"), Some("LINE")) => {
                true
            }
            _ => a.is_some() && a == b,
        };
        if !same {
            return Some(format!("{path}.{k}: {x} stored as {y}"));
        }
    }
    None
}

fn block_change(input: &Value, stored: &Value, path: &str) -> Option<String> {
    let Some(map) = input.as_object() else {
        return Some(format!("{path} is not an object"));
    };
    let Some(kind) = BLOCK_KEYS.iter().find(|k| get(input, k).is_some()) else {
        return Some(format!("{path} has no block key"));
    };
    if let Some(other) = map.keys().find(|k| *k != kind) {
        return Some(format!("{path}.{other} not stored"));
    }
    let v = &map[*kind];
    let Some(sv) = get(stored, kind) else {
        return Some(format!("{path} stored as another block"));
    };
    let path = format!("{path}.{kind}");
    match *kind {
        "MESSAGE" => {
            let text = match v {
                Value::Object(m) => {
                    if let Some(k) = m.keys().find(|k| *k != "TEXT" && *k != "AS_DESCRIPTION") {
                        return Some(format!("{path}.{k} not stored"));
                    }
                    m.get("TEXT").cloned().unwrap_or(Value::Null)
                }
                other => other.clone(),
            };
            (canon(&text, false) != canon(sv, true))
                .then(|| format!("{path}: {text} stored as {sv}"))
        }
        "DELIMITER" => match v {
            Value::Object(_) => item_change(v, sv, &path),
            Value::Array(a) if a.is_empty() => None,
            other => Some(format!("{path}: {other} read as default options")),
        },
        _ => {
            let items: Vec<&Value> = match v {
                Value::Object(_) if !is_list(v) && *kind != "GRID" => vec![v],
                Value::Array(_) | Value::Object(_) if is_list(v) => entries(v),
                other => return Some(format!("{path}: {other} is not a list of items")),
            };
            let stored_items = sv.as_array().map(Vec::as_slice).unwrap_or_default();
            if items.len() != stored_items.len() {
                return Some(format!(
                    "{path}: {} items stored of {}",
                    stored_items.len(),
                    items.len()
                ));
            }
            items
                .iter()
                .zip(stored_items)
                .enumerate()
                .find_map(|(i, (a, b))| item_change(a, b, &format!("{path}[{i}]")))
        }
    }
}

/// How the stored attach differs from the entry, or `None` when every value survived.
fn change(raw: &Value, stored: &Value) -> Option<String> {
    let decoded;
    let v = match raw {
        Value::String(s) => {
            decoded = serde_json::from_str::<Value>(s).ok()?;
            &decoded
        }
        other => other,
    };
    let blocks = match get(v, "BLOCKS") {
        Some(blocks) => {
            for (k, x) in v.as_object().into_iter().flatten() {
                match k.as_str() {
                    // The portal always sets ID to the current time.
                    "BLOCKS" | "ID" => {}
                    _ if stored.get(k).is_none() && unstored_is_same(k, x) => {}
                    "COLOR" if x == "CHAT" => {}
                    "COLOR" | "DESCRIPTION" => {
                        let same =
                            match (canon(x, false), stored.get(k).and_then(|y| canon(y, true))) {
                                (Some(a), Some(b)) => a.eq_ignore_ascii_case(&b),
                                _ => false,
                            };
                        if !same {
                            return Some(format!("{k}: {x} stored as {:?}", stored.get(k)));
                        }
                    }
                    other => return Some(format!("{other} not stored")),
                }
            }
            blocks
        }
        None => v,
    };
    if !is_list(blocks) {
        return Some("the keys of the block object are not stored".into());
    }
    let stored_blocks = stored["BLOCKS"].as_array().expect("stored BLOCKS");
    // The portal stores each item of a USER, LINK or RICH_LINK list as a block of its own.
    let mut expanded = Vec::new();
    for block in entries(blocks) {
        let kind = BLOCK_KEYS.iter().copied().find(|k| get(block, k).is_some());
        match (kind, block.as_object()) {
            (Some(k @ ("USER" | "LINK" | "RICH_LINK")), Some(map)) if map.len() == 1 => {
                let v = &map[k];
                if matches!(v, Value::Array(_) | Value::Object(_)) && is_list(v) {
                    expanded.extend(entries(v).into_iter().map(|item| json!({ k: item })));
                    continue;
                }
                expanded.push(block.clone());
            }
            _ => expanded.push(block.clone()),
        }
    }
    let input: Vec<&Value> = expanded.iter().collect();
    if input.len() != stored_blocks.len() {
        return Some(format!(
            "{} blocks stored of {}",
            stored_blocks.len(),
            input.len()
        ));
    }
    input
        .iter()
        .zip(stored_blocks)
        .enumerate()
        .find_map(|(i, (a, b))| block_change(a, b, &format!("blocks[{i}]")))
}

enum Observed {
    Refused(String),
    Stored(Option<Value>),
}

/// The raw value sent as is, by hand, so the observation does not depend on the library.
async fn observe(client: &Client, emu: &Emulator, attach: &Value) -> Observed {
    let params = json!({"USER_ID": 1, "MESSAGE": "severity", "ATTACH": attach});
    match client.call("im.notify.personal.add", params).await {
        Ok(answer) => {
            let id = answer.result.as_u64().expect("a notification id");
            let n = emu.notifications().into_iter().find(|n| n.id == id);
            Observed::Stored(n.expect("stored").attach)
        }
        Err(Error::Api(e)) => Observed::Refused(e.code.to_string()),
        Err(other) => panic!("transport failure: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_corpus_entry_is_an_error_a_warning_or_clean_as_the_portal_treats_it() {
    let emu = Emulator::start(Config::default().webhook(1, SECRET).plan(Plan::Unlimited))
        .await
        .expect("emulator starts");
    let client = Client::builder(emu.webhook_url(1, SECRET))
        .pacer(Pacer::Off)
        .build()
        .unwrap();
    let cases = corpus();
    let mut rows = Vec::new();
    let mut failures = 0;
    let mut counts = [0usize; 3];
    for case in &cases {
        let report = Attach::review_json(&case.attach);
        let library = if report.has_errors() {
            Verdict::Error
        } else if !report.warnings.is_empty() {
            Verdict::Warning
        } else {
            Verdict::Clean
        };
        counts[library as usize] += 1;
        let mut problems = Vec::new();
        // Severities come from the findings themselves.
        assert!(report.errors.iter().all(|f| f.severity == Severity::Error));
        assert!(
            report
                .warnings
                .iter()
                .all(|f| f.severity == Severity::Warning)
        );
        let (portal, seen) = match observe(&client, &emu, &case.attach).await {
            Observed::Refused(code) => (Verdict::Error, code),
            Observed::Stored(None) => (Verdict::Clean, "nothing attached".into()),
            Observed::Stored(Some(stored)) => match change(&case.attach, &stored) {
                Some(what) => (Verdict::Warning, format!("stored, {what}")),
                None => (Verdict::Clean, "stored as given".into()),
            },
        };
        if library != portal {
            problems.push(format!("the portal makes it {}", portal.name()));
        }

        // Strict refuses exactly the warned (and the erroneous); non-strict only errors.
        let builder = Personal::new(1, "severity").attach(Attach::from_value(case.attach.clone()));
        let lenient = builder.to_request();
        let strict = builder.clone().strict(true).to_request();
        if lenient.is_ok() != (library != Verdict::Error) {
            problems.push(format!("non-strict builder: {:?}", lenient.err()));
        }
        if strict.is_ok() != (library == Verdict::Clean) {
            problems.push(format!("strict builder: {:?}", strict.err()));
        }
        // The legacy check (which the CLI calls until it migrates) is the strict one.
        if Attach::from_json(case.attach.clone()).is_ok() != (library == Verdict::Clean) {
            problems.push("Attach::from_json differs from strict mode".into());
        }
        // A warned notification is sent, and created.
        if library == Verdict::Warning {
            match builder.send(&client).await {
                Ok(Some(_)) => {}
                other => problems.push(format!("warned entry not sent: {other:?}")),
            }
        }

        let rules: Vec<String> = report
            .errors
            .iter()
            .map(|f| format!("E:{}", f.rule.id()))
            .chain(report.warnings.iter().map(|f| format!("W:{}", f.rule.id())))
            .collect();
        if !problems.is_empty() {
            failures += 1;
        }
        let name: String = case.name.chars().take(52).collect();
        rows.push(format!(
            "{:<4} {:<52} {:<7} {:<44} {}{}",
            if problems.is_empty() { "ok" } else { "FAIL" },
            name,
            library.name(),
            rules.join(" "),
            seen.chars().take(70).collect::<String>(),
            if problems.is_empty() {
                String::new()
            } else {
                format!("\n     {}", problems.join("; "))
            }
        ));
    }
    let table = format!(
        "{:<4} {:<52} {:<7} {:<44} emulator\n{}\n\n{} entries: {} errors, {} warnings, {} clean",
        "",
        "entry",
        "verdict",
        "rules (E: error, W: warning)",
        rows.join("\n"),
        cases.len(),
        counts[Verdict::Error as usize],
        counts[Verdict::Warning as usize],
        counts[Verdict::Clean as usize],
    );
    println!("{table}");
    assert_eq!(failures, 0, "{failures} entries disagree:\n{table}");
    // The docs' own example draws a default line: a warning, never an error, and sent.
    let docs = Attach::review_json(&json!([{"DELIMITER": true}]));
    assert!(docs.errors.is_empty());
    let rules: Vec<_> = docs.warnings.iter().map(|f| f.rule.id()).collect();
    assert_eq!(rules, ["attach.delimiter.shape"]);
    assert_eq!(docs.warnings[0].path, "blocks[0].DELIMITER");
    assert_eq!(docs.warnings[0].effect(), "uses its default");
    // Errors and warnings over the whole table: none of either kind is missing.
    assert!(counts.iter().all(|n| *n > 0), "{counts:?}");
}
