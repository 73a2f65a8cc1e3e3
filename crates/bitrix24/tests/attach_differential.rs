//! The library's ATTACH checks against the emulator's parser, over one corpus.
//!
//! Two independent readings of the same rules (docs/portal-behaviour.md §4): the library's
//! validator, which explains mistakes, and the emulator's normaliser, which stores what the
//! portal would store. Every ATTACH example from the official docs plus hand-made edge cases
//! (`tests/data/attach-corpus.json`) and generated size boundaries go through both; for each
//! case the library's verdict must match what the emulator does over HTTP:
//!
//! - clean / ignored ⇔ stored with every block and item kept; dropped ⇔ stored with fewer;
//! - rejected ⇔ `ATTACH_ERROR`; oversize ⇔ `ATTACH_OVERSIZE`; nothing ⇔ no attach, no error;
//! - where both store it, the library's stored form equals the emulator's (`ID` aside, and
//!   `COLOR` when it was invalid and so random), and so do their measured lengths.

use bitrix24::{Attach, Client, Error, MAX_ATTACH_CHARS, Verdict};
use bitrix24_emulator::{Config, Emulator, Plan, attach_measured_len};
use serde_json::{Value, json};

const SECRET: &str = "differential-secret";
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
    source: String,
    expect: String,
    attach: Value,
}

fn corpus() -> Vec<Case> {
    let text = include_str!("data/attach-corpus.json");
    let doc: Value = serde_json::from_str(text).expect("corpus is JSON");
    let mut cases: Vec<Case> = doc["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| Case {
            name: c["name"].as_str().expect("name").to_owned(),
            source: c["source"].as_str().expect("source").to_owned(),
            expect: c["expect"].as_str().expect("expect").to_owned(),
            attach: c["attach"].clone(),
        })
        .collect();
    cases.extend(size_cases());
    cases
}

fn case(name: String, expect: &str, attach: Value) -> Case {
    Case {
        name,
        source: "generated".into(),
        expect: expect.into(),
        attach,
    }
}

/// Builds an attach of "size" `n`.
type Template = Box<dyn Fn(usize) -> Value>;

/// One MESSAGE block is stored as `{"ID":<10 digits>,"BLOCKS":[{"MESSAGE":"…"}]}`: 43
/// characters around the text. The limit is "fewer than 60,000", so the text may measure
/// 59,956 at most. These anchors are computed by hand, not by either implementation.
fn size_cases() -> Vec<Case> {
    let room = MAX_ATTACH_CHARS - 1 - 43;
    let msg = |s: String| json!([{ "MESSAGE": s }]);
    let mut cases = vec![
        case(
            "size: ascii at the limit".into(),
            "clean",
            msg("a".repeat(room)),
        ),
        case(
            "size: ascii one over".into(),
            "oversize",
            msg("a".repeat(room + 1)),
        ),
        // `/` is measured as `\/`: half the raw length decides.
        case(
            "size: slashes at the limit".into(),
            "clean",
            msg("/".repeat(room / 2)),
        ),
        case(
            "size: slashes one over".into(),
            "oversize",
            msg("/".repeat(room / 2) + "a"),
        ),
        // `&` is stored as `&amp;`: five characters each.
        case(
            "size: ampersands at the limit".into(),
            "clean",
            msg("&".repeat(room / 5) + &"a".repeat(room % 5)),
        ),
        case(
            "size: ampersands one over".into(),
            "oversize",
            msg("&".repeat(room / 5) + &"a".repeat(room % 5 + 1)),
        ),
        // `"` is stored as `&quot;` (six), so it is not also backslash-escaped.
        case(
            "size: quotes at the limit".into(),
            "clean",
            msg("\"".repeat(room / 6) + &"a".repeat(room % 6)),
        ),
        case(
            "size: quotes one over".into(),
            "oversize",
            msg("\"".repeat(room / 6) + &"a".repeat(room % 6 + 1)),
        ),
        // Characters, not bytes: Cyrillic counts once.
        case(
            "size: cyrillic at the limit".into(),
            "clean",
            msg("я".repeat(room)),
        ),
        case(
            "size: cyrillic one over".into(),
            "oversize",
            msg("я".repeat(room + 1)),
        ),
        // Surrounding whitespace is trimmed before measuring.
        case(
            "size: trimmed spaces do not count".into(),
            "clean",
            msg(format!("  {}  ", "a".repeat(room))),
        ),
    ];
    // Other shapes: the boundary comes from the library's measurement and the emulator must
    // agree on both sides of it.
    let templates: Vec<(&str, Template)> = vec![
        (
            "image link with slashes",
            Box::new(
                |n| json!([{ "IMAGE": { "LINK": format!("https://x.test/{}", "a/".repeat(n)) } }]),
            ),
        ),
        (
            "full form description with <",
            Box::new(
                |n| json!({ "COLOR": "#ff0000", "DESCRIPTION": "<".repeat(n), "BLOCKS": [{ "DELIMITER": {} }] }),
            ),
        ),
        (
            "grid items",
            Box::new(|n| json!([{ "GRID": vec![json!({ "NAME": "k/", "VALUE": "v&" }); n] }])),
        ),
        (
            "user names with newlines and quotes",
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
        cases.push(case(
            format!("size: {label}, last fitting"),
            "clean",
            make(lo),
        ));
        cases.push(case(
            format!("size: {label}, first too long"),
            "oversize",
            make(hi),
        ));
    }
    cases
}

/// What the emulator did with one ATTACH.
#[derive(Debug)]
enum Outcome {
    Stored(Option<Value>),
    Refused(String),
}

async fn send(client: &Client, emu: &Emulator, attach: &Value) -> Outcome {
    let params = json!({"USER_ID": 1, "MESSAGE": "differential", "ATTACH": attach});
    match client.call("im.notify.personal.add", params).await {
        Ok(answer) => {
            let id = answer.result.as_u64().expect("a notification id");
            let stored = emu
                .notifications()
                .into_iter()
                .find(|n| n.id == id)
                .expect("the notification is stored")
                .attach;
            Outcome::Stored(stored)
        }
        Err(Error::Api(e)) => Outcome::Refused(e.code.to_string()),
        Err(other) => panic!("transport failure: {other}"),
    }
}

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

/// How many blocks and items the input names: what the portal should keep if nothing is
/// dropped. Counted here, independently of both implementations.
fn input_units(raw: &Value) -> usize {
    let decoded;
    let v = match raw {
        Value::String(s) => match serde_json::from_str(s) {
            Ok(v) => {
                decoded = v;
                &decoded
            }
            Err(_) => return 0,
        },
        other => other,
    };
    let blocks = match v.get("BLOCKS").filter(|b| !b.is_null()) {
        Some(b) if v.is_object() => b,
        _ => v,
    };
    entries(blocks)
        .into_iter()
        .map(|block| {
            let found = BLOCK_KEYS.iter().find_map(|k| {
                block
                    .as_object()?
                    .get(*k)
                    .filter(|v| !v.is_null())
                    .map(|v| (*k, v))
            });
            match found {
                None | Some(("MESSAGE" | "DELIMITER", _)) => 1,
                Some(("IMAGE" | "FILE", v)) if v.is_object() && !is_list(v) => 1,
                Some((_, v)) if is_list(v) => entries(v).len().max(1),
                Some(_) => 1,
            }
        })
        .sum()
}

fn stored_units(stored: &Value) -> usize {
    stored["BLOCKS"]
        .as_array()
        .expect("stored BLOCKS")
        .iter()
        .map(|b| match b.as_object().and_then(|m| m.iter().next()) {
            Some((k, v)) if matches!(k.as_str(), "GRID" | "IMAGE" | "FILE") => {
                v.as_array().map_or(1, Vec::len)
            }
            _ => 1,
        })
        .sum()
}

fn verdict_name(v: Verdict) -> &'static str {
    match v {
        Verdict::Clean => "clean",
        Verdict::Ignored => "ignored",
        Verdict::Dropped => "dropped",
        Verdict::Oversize => "oversize",
        Verdict::Rejected => "rejected",
        Verdict::Nothing => "nothing",
        _ => "unknown",
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn library_and_emulator_agree_on_every_corpus_case() {
    let emu = Emulator::start(Config::default().webhook(1, SECRET).plan(Plan::Unlimited))
        .await
        .expect("emulator starts");
    // Over a hundred cases against an unlimited emulator: no need to pace.
    let client = Client::builder(emu.webhook_url(1, SECRET))
        .pacer(bitrix24::Pacer::Off)
        .build()
        .unwrap();
    let cases = corpus();
    assert!(
        cases
            .iter()
            .filter(|c| c.source != "hand-made" && c.source != "generated")
            .count()
            >= 20
    );

    let mut rows = Vec::new();
    let mut failures = 0;
    for case in &cases {
        let check = Attach::check_json(&case.attach);
        let verdict = verdict_name(check.verdict());
        let outcome = send(&client, &emu, &case.attach).await;
        let mut problems = Vec::new();
        if verdict != case.expect {
            problems.push(format!("expected {}", case.expect));
        }
        let emulator = match &outcome {
            Outcome::Refused(code) => {
                let want = match check.verdict() {
                    Verdict::Rejected => Some("ATTACH_ERROR"),
                    Verdict::Oversize => Some("ATTACH_OVERSIZE"),
                    _ => None,
                };
                if want != Some(code.as_str()) {
                    problems.push(format!("library says {verdict}, emulator refused"));
                }
                code.clone()
            }
            Outcome::Stored(None) => {
                if check.verdict() != Verdict::Nothing {
                    problems.push(format!("library says {verdict}, emulator stored nothing"));
                }
                "no attach".into()
            }
            Outcome::Stored(Some(stored)) => {
                let size = attach_measured_len(stored);
                let dropped = stored_units(stored) < input_units(&case.attach);
                match check.verdict() {
                    Verdict::Clean | Verdict::Ignored if dropped => {
                        problems.push("emulator dropped a block or item".into())
                    }
                    Verdict::Dropped if !dropped => {
                        problems.push("emulator kept every block and item".into())
                    }
                    Verdict::Clean | Verdict::Ignored | Verdict::Dropped => {}
                    _ => problems.push(format!("library says {verdict}, emulator stored it")),
                }
                if check.measured_len() != Some(size) {
                    problems.push(format!(
                        "sizes differ: library {:?}, emulator {size}",
                        check.measured_len()
                    ));
                }
                if let Some(mine) = check.stored() {
                    let (mut mine, mut theirs) = (mine.clone(), stored.clone());
                    mine["ID"] = json!(0);
                    theirs["ID"] = json!(0);
                    if check.issues().iter().any(|i| i.path == "COLOR") {
                        mine["COLOR"] = json!("random");
                        theirs["COLOR"] = json!("random");
                    }
                    if mine != theirs {
                        problems.push(format!(
                            "stored forms differ: library {mine}, emulator {theirs}"
                        ));
                    }
                }
                format!("stored, {} units, {size} chars", stored_units(stored))
            }
        };
        if !problems.is_empty() {
            failures += 1;
        }
        rows.push(format!(
            "{:<4} {:<48} {:<9} {:<9} {:<34} {}{}",
            if problems.is_empty() { "ok" } else { "FAIL" },
            case.name,
            case.expect,
            verdict,
            emulator,
            problems.join("; "),
            if problems.is_empty() {
                String::new()
            } else {
                format!(
                    "\n     source: {}; library says:\n       {}",
                    case.source,
                    check.report().replace('\n', "\n       ")
                )
            },
        ));
    }
    let table = format!(
        "{:<4} {:<48} {:<9} {:<9} {:<34} problems\n{}",
        "",
        "case",
        "expected",
        "library",
        "emulator",
        rows.join("\n")
    );
    // Shown with --nocapture, and by the harness when the assertion fails.
    println!("{table}");
    assert_eq!(
        failures,
        0,
        "{failures} of {} cases disagree:\n{table}",
        cases.len()
    );
}
