//! Reading bulk rows from JSON Lines or CSV, one at a time.
//!
//! Rows are read lazily so that memory does not grow with the input. Each row carries the line
//! it came from, because that is how people find a bad row in their file. Checking a row is
//! separate from reading it: [`check`] turns the raw fields into a request, or says in one line
//! what is wrong and how to fix it.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use bitrix24::{Attach, Client, Request};
use serde_json::{Map, Value};

/// The input formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object a line: {"user": 10, "text": "…", "tag": "…", "system": false, "attach": […]}
    Jsonl,
    /// A header line with the column names (user,text,tag,sub_tag,system,attach), then one row a line
    Csv,
}

impl Format {
    /// From the file name when not given: `.csv` is CSV, anything else JSON Lines.
    pub fn guess(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("csv") => Format::Csv,
            _ => Format::Jsonl,
        }
    }
}

/// One row as read, before checking.
#[derive(Debug, Clone, PartialEq)]
pub struct RawRow {
    /// The line the row starts on, 1-based.
    pub line: u64,
    pub fields: Map<String, Value>,
}

/// A row that failed to read or check.
#[derive(Debug, Clone, PartialEq)]
pub struct RowError {
    pub line: u64,
    pub message: String,
}

/// A checked row: what to send, and whether a resend of it is harmless.
#[derive(Debug, Clone)]
pub struct Row {
    pub line: u64,
    pub request: Request,
    pub tagged: bool,
}

/// Reads rows from `path` lazily.
pub fn read(
    path: &Path,
    format: Format,
) -> Result<Box<dyn Iterator<Item = Result<RawRow, RowError>>>, String> {
    let file =
        File::open(path).map_err(|e| format!("--input: cannot open {}: {e}", path.display()))?;
    Ok(match format {
        Format::Jsonl => Box::new(jsonl(BufReader::new(file))),
        Format::Csv => Box::new(csv_rows(file)?),
    })
}

fn jsonl(reader: impl BufRead) -> impl Iterator<Item = Result<RawRow, RowError>> {
    reader.lines().enumerate().filter_map(|(i, line)| {
        let line_no = i as u64 + 1;
        let text = match line {
            Ok(text) => text,
            Err(e) => {
                return Some(Err(RowError {
                    line: line_no,
                    message: format!("cannot read: {e}"),
                }));
            }
        };
        if text.trim().is_empty() {
            return None;
        }
        Some(match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(fields)) => Ok(RawRow {
                line: line_no,
                fields,
            }),
            Ok(_) => Err(RowError {
                line: line_no,
                message: "is not a JSON object such as {\"user\": 10, \"text\": \"Hello\"}".into(),
            }),
            Err(e) => Err(RowError {
                line: line_no,
                message: format!("is not valid JSON ({e})"),
            }),
        })
    })
}

fn csv_rows(file: File) -> Result<impl Iterator<Item = Result<RawRow, RowError>>, String> {
    let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(file);
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| format!("--input: cannot read the CSV header line: {e}"))?
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    for required in ["user", "text"] {
        if !headers.iter().any(|h| h == required) {
            return Err(format!(
                "--input: the CSV header line has no {required:?} column (it has: {}); the columns are user,text,tag,sub_tag,system,attach",
                // Quoted: a header field may hold line breaks, and the message is one line.
                headers
                    .iter()
                    .map(|h| format!("{h:?}"))
                    .collect::<Vec<_>>()
                    .join(",")
            ));
        }
    }
    // Row numbers key the journal, so they must be unique and increasing; the csv crate counts
    // only `\n`, which would number every row of a file with `\r` line ends "line 1".
    let mut last = 1u64;
    let mut number = move |line: Option<u64>| {
        last = line.unwrap_or(0).max(last + 1);
        last
    };
    Ok(reader.into_records().map(move |record| {
        let record = match record {
            Ok(record) => record,
            Err(e) => {
                return Err(RowError {
                    line: number(e.position().map(|p| p.line())),
                    message: format!("cannot read the CSV row: {e}"),
                });
            }
        };
        let line = number(record.position().map(|p| p.line()));
        let fields = headers
            .iter()
            .zip(record.iter())
            .filter(|(_, v)| !v.is_empty())
            .map(|(h, v)| (h.clone(), Value::String(v.to_string())))
            .collect();
        Ok(RawRow { line, fields })
    }))
}

const KNOWN: &[&str] = &["user", "text", "tag", "sub_tag", "system", "attach"];

/// Checks a row and builds its request with `client`'s typed builders.
pub fn check(client: &Client, raw: &RawRow) -> Result<Row, RowError> {
    let err = |message: String| RowError {
        line: raw.line,
        message,
    };
    if let Some(unknown) = raw.fields.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(err(format!(
            "unknown field {unknown:?}; the fields are {}",
            KNOWN.join(", ")
        )));
    }
    let user = match raw.fields.get("user") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|u| *u > 0)
    .ok_or_else(|| err("user: expected a user ID (a whole number of 1 or more)".into()))?;
    let text = match raw.fields.get("text") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        _ => {
            return Err(err(
                "text: is missing or blank; every notification needs text".into(),
            ));
        }
    };
    let string = |key: &str| -> Result<Option<String>, RowError> {
        match raw.fields.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(err(format!("{key}: expected text, got {other}"))),
        }
    };
    let system = match raw.fields.get("system") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "" | "0" | "false" | "no" | "n" => false,
            "1" | "true" | "yes" | "y" => true,
            other => {
                return Err(err(format!(
                    "system: expected true or false, got {other:?}"
                )));
            }
        },
        Some(other) => return Err(err(format!("system: expected true or false, got {other}"))),
    };
    let n = client.notify();
    let mut add = if system {
        n.system(user, text)
    } else {
        n.personal(user, text)
    };
    if let Some(tag) = string("tag")? {
        add = add.tag(tag);
    }
    if let Some(sub) = string("sub_tag")? {
        add = add.sub_tag(sub);
    }
    let attach = match raw.fields.get("attach") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => Some(
            serde_json::from_str::<Value>(s)
                .map_err(|e| err(format!("attach: is not valid JSON ({e})")))?,
        ),
        Some(v) => Some(v.clone()),
    };
    if let Some(value) = attach {
        let attach = Attach::from_json(value).map_err(|e| err(one_line(&e.to_string())))?;
        if !attach.is_empty() {
            add = add.attach(attach);
        }
    }
    let request = add
        .to_request()
        .map_err(|e| err(one_line(&e.to_string())))?;
    // The library's rule, so that "0" and other PHP-empty tags count as no tag here too.
    let tagged = bitrix24::safety_of(&request, true) == bitrix24::Safety::Repeatable;
    Ok(Row {
        line: raw.line,
        request,
        tagged,
    })
}

/// Several findings on one line, for `line N: …` reports.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Client {
        Client::builder("https://x.bitrix24.com/rest/1/s/")
            .build()
            .unwrap()
    }

    fn rows(format: Format, text: &str) -> Vec<Result<RawRow, RowError>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in");
        std::fs::write(&path, text).unwrap();
        read(&path, format).unwrap().collect()
    }

    #[test]
    fn jsonl_rows_keep_their_line_numbers() {
        let got = rows(
            Format::Jsonl,
            "{\"user\": 1, \"text\": \"a\"}\n\n[1]\n{\"user\": \"2\", \"text\": \"b\"}\n{bad\n",
        );
        assert_eq!(got.len(), 4, "the blank line is skipped");
        assert_eq!(got[0].as_ref().unwrap().line, 1);
        assert!(
            got[1]
                .as_ref()
                .unwrap_err()
                .message
                .contains("not a JSON object")
        );
        assert_eq!(got[1].as_ref().unwrap_err().line, 3);
        assert_eq!(got[2].as_ref().unwrap().line, 4);
        assert_eq!(got[3].as_ref().unwrap_err().line, 5);
    }

    #[test]
    fn csv_rows_with_quoted_attachments() {
        let got = rows(
            Format::Csv,
            "user,text,tag,system,attach\n10,Hello,t1,false,\n11,\"Multi\nline\",,yes,\"[{\"\"MESSAGE\"\":\"\"x\"\"}]\"\n",
        );
        let second = got[1].as_ref().unwrap();
        assert_eq!(second.line, 3);
        assert_eq!(second.fields["text"], "Multi\nline");
        let row = check(&client(), second).unwrap();
        assert_eq!(row.request.method(), "im.notify.system.add");
        assert_eq!(
            row.request.params()["ATTACH"],
            serde_json::json!([{"MESSAGE": "x"}])
        );
        assert!(!row.tagged);
        assert!(check(&client(), got[0].as_ref().unwrap()).unwrap().tagged);
    }

    #[test]
    fn csv_without_the_required_columns_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.csv");
        std::fs::write(&path, "id,message\n1,x\n").unwrap();
        let err = read(&path, Format::Csv).err().unwrap();
        assert!(err.contains("no \"user\" column"), "{err}");
    }

    #[test]
    fn checks_name_the_field_and_the_fix() {
        let table = [
            (r#"{"user": 0, "text": "x"}"#, "user: expected a user ID"),
            (
                r#"{"user": "ten", "text": "x"}"#,
                "user: expected a user ID",
            ),
            (r#"{"user": 1, "text": "  "}"#, "text: is missing or blank"),
            (
                r#"{"user": 1, "text": "x", "system": "maybe"}"#,
                "system: expected true or false",
            ),
            (
                r#"{"user": 1, "text": "x", "tags": "t"}"#,
                "unknown field \"tags\"",
            ),
            (
                r#"{"user": 1, "text": "x", "attach": "[{"}"#,
                "attach: is not valid JSON",
            ),
            (
                r#"{"user": 1, "text": "x", "attach": [{"IMAGE": {"LINK": "ftp://x"}}]}"#,
                "ftp://x",
            ),
        ];
        for (json, want) in table {
            let raw = RawRow {
                line: 7,
                fields: serde_json::from_str(json).unwrap(),
            };
            let e = check(&client(), &raw).unwrap_err();
            assert_eq!(e.line, 7);
            assert!(e.message.contains(want), "{json}: {}", e.message);
            assert!(!e.message.contains('\n'));
        }
    }
}
