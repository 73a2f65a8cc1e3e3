//! Reading bulk rows from JSON Lines or CSV, one at a time.
//!
//! Rows are read lazily so that memory does not grow with the input. Each row carries the line
//! it came from, because that is how people find a bad row in their file. Checking a row is
//! separate from reading it: [`check`] turns the raw fields into a request, or says in one line
//! what is wrong and how to fix it.
//!
//! A row may be at most [`MAX_ROW_BYTES`] long; a longer one is reported as an invalid row and
//! skipped over without being held in memory, so one endless line cannot exhaust memory.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use bitrix24::{Attach, Request};
use serde_json::{Map, Value};

/// The input formats (`--format`).
pub use crate::flags::InputFormat as Format;

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
    /// The ids of the rules that refused it, when a check of the notification did.
    pub rules: Vec<&'static str>,
}

/// A warning on a row that is sent: the rule's id and its line (`attach: path: message`).
#[derive(Debug, Clone, PartialEq)]
pub struct Warning {
    pub rule: &'static str,
    pub line: String,
}

/// A checked row: what to send, and whether a resend of it is harmless.
#[derive(Debug, Clone)]
pub struct Row {
    pub line: u64,
    pub request: Request,
    pub tagged: bool,
    /// What the portal will drop or change; the row is sent.
    pub warnings: Vec<Warning>,
}

/// The longest row (a JSON line, or a CSV record with its quoted line breaks) that is read:
/// 1 MiB, far above any valid row (the portal keeps at most 20,000 characters of a message
/// and refuses an attach over 60,000), so that a runaway line costs bounded memory.
pub const MAX_ROW_BYTES: usize = 1 << 20;

/// The most fields a CSV record may have (the known columns are seven).
const MAX_CSV_FIELDS: usize = 256;

/// The message for a row over [`MAX_ROW_BYTES`].
fn too_long() -> String {
    format!(
        "is longer than {MAX_ROW_BYTES} bytes (1 MiB), the limit for one row; a valid row is far shorter (an attach is at most 60,000 characters): check the file's format and line breaks"
    )
}

/// Reads rows from `path` lazily.
pub fn read(
    path: &Path,
    format: Format,
) -> Result<Box<dyn Iterator<Item = Result<RawRow, RowError>>>, String> {
    let file =
        File::open(path).map_err(|e| format!("--input: cannot open {}: {e}", path.display()))?;
    read_from(file, format)
}

/// Reads rows lazily from any reader (a file, standard input, bytes in memory), each row
/// bounded by [`MAX_ROW_BYTES`]. Errs only when a CSV header line is missing or unusable.
pub fn read_from(
    reader: impl Read + 'static,
    format: Format,
) -> Result<Box<dyn Iterator<Item = Result<RawRow, RowError>>>, String> {
    let reader = BufReader::with_capacity(64 * 1024, reader);
    Ok(match format {
        Format::Jsonl => Box::new(jsonl(reader)),
        Format::Csv => Box::new(csv_rows(reader)?),
    })
}

/// What [`next_line`] found.
enum Line {
    /// The line, without its `\n` (nor a `\r` before it).
    Text(Vec<u8>),
    /// Over [`MAX_ROW_BYTES`]; the rest of it was skipped.
    TooLong,
}

/// Reads one line of at most [`MAX_ROW_BYTES`], skipping (never holding) the rest of a
/// longer one. `None` at the end of the input.
fn next_line(reader: &mut impl BufRead) -> std::io::Result<Option<Line>> {
    let mut line = Vec::new();
    let n = (&mut *reader)
        .take(MAX_ROW_BYTES as u64 + 1)
        .read_until(b'\n', &mut line)?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
    } else if line.len() > MAX_ROW_BYTES {
        reader.skip_until(b'\n')?;
        return Ok(Some(Line::TooLong));
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(Some(Line::Text(line)))
}

fn jsonl(mut reader: impl BufRead) -> impl Iterator<Item = Result<RawRow, RowError>> {
    let mut line_no = 0u64;
    let mut done = false;
    std::iter::from_fn(move || {
        loop {
            if done {
                return None;
            }
            line_no += 1;
            let err = |message: String| {
                Some(Err(RowError {
                    line: line_no,
                    message,
                    rules: Vec::new(),
                }))
            };
            let bytes = match next_line(&mut reader) {
                Ok(None) => return None,
                Ok(Some(Line::Text(bytes))) => bytes,
                Ok(Some(Line::TooLong)) => return err(too_long()),
                Err(e) => {
                    // A read error does not go away by reading on.
                    done = true;
                    return err(format!("cannot read: {e}"));
                }
            };
            let Ok(text) = String::from_utf8(bytes) else {
                return err("is not valid UTF-8; save the file as UTF-8".into());
            };
            if text.trim().is_empty() {
                continue;
            }
            return Some(parse_jsonl(line_no, &text));
        }
    })
}

fn parse_jsonl(line_no: u64, text: &str) -> Result<RawRow, RowError> {
    {
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(fields)) => Ok(RawRow {
                line: line_no,
                fields,
            }),
            Ok(_) => Err(RowError {
                line: line_no,
                message: "is not a JSON object such as {\"user\": 10, \"text\": \"Hello\"}".into(),
                rules: Vec::new(),
            }),
            Err(e) => Err(RowError {
                line: line_no,
                message: format!("is not valid JSON ({e})"),
                rules: Vec::new(),
            }),
        }
    }
}

/// A CSV reader over `csv_core` with a bounded record buffer: the `csv` crate would grow its
/// buffer to hold any field whole.
struct CsvRecords<R> {
    reader: R,
    core: csv_core::Reader,
    out: Vec<u8>,
    ends: Vec<usize>,
    done: bool,
    /// The line the previous record started on: csv_core counts only `\n`, so with `\r` line
    /// ends every record would be "line 1". Rows are the journal's key: they must differ.
    last_line: u64,
}

/// One CSV record: the line it starts on, and its fields, or why it was not read.
type CsvRecord = (u64, Result<Vec<String>, String>);

impl<R: BufRead> CsvRecords<R> {
    fn new(reader: R) -> Self {
        CsvRecords {
            reader,
            core: csv_core::ReaderBuilder::new().build(),
            out: vec![0; MAX_ROW_BYTES],
            ends: vec![0; MAX_CSV_FIELDS],
            done: false,
            last_line: 0,
        }
    }

    fn next_record(&mut self) -> Option<CsvRecord> {
        use csv_core::ReadRecordResult as R;
        if self.done {
            return None;
        }
        // Blank lines before the record are skipped here (the parser would skip them too),
        // so that the record starts on the parser's current line.
        loop {
            let input = match fill(&mut self.reader) {
                Ok(input) => input,
                Err(e) => {
                    self.done = true;
                    return Some((self.core.line(), Err(format!("cannot read: {e}"))));
                }
            };
            let blank = input
                .iter()
                .take_while(|b| **b == b'\n' || **b == b'\r')
                .count();
            let breaks = input[..blank].iter().filter(|b| **b == b'\n').count() as u64;
            self.core.set_line(self.core.line() + breaks);
            self.reader.consume(blank);
            if blank == 0 {
                break;
            }
        }
        let line = self.core.line().max(self.last_line + 1);
        self.last_line = line;
        let (mut nout, mut nends) = (0usize, 0usize);
        // Why the record is skipped: too long, or too many fields.
        let mut skip: Option<String> = None;
        let mut scratch = vec![0u8; 64 * 1024];
        let mut scratch_ends = [0usize; 64];
        loop {
            let input = match fill(&mut self.reader) {
                Ok(input) => input,
                Err(e) => {
                    self.done = true;
                    return Some((self.core.line(), Err(format!("cannot read: {e}"))));
                }
            };
            let (result, nin, _, _) = if skip.is_some() {
                self.core
                    .read_record(input, &mut scratch, &mut scratch_ends)
            } else {
                let r =
                    self.core
                        .read_record(input, &mut self.out[nout..], &mut self.ends[nends..]);
                nout += r.2;
                nends += r.3;
                r
            };
            self.reader.consume(nin);
            match result {
                R::InputEmpty => {}
                R::OutputFull => {
                    skip.get_or_insert_with(too_long);
                }
                R::OutputEndsFull => {
                    skip.get_or_insert_with(|| {
                        format!("has more than {MAX_CSV_FIELDS} fields; the columns are user,text,tag,sub_tag,system,attach,markdown")
                    });
                }
                R::Record => {
                    if let Some(why) = skip {
                        return Some((line, Err(why)));
                    }
                    let mut fields = Vec::with_capacity(nends);
                    let mut from = 0;
                    for &end in &self.ends[..nends] {
                        match std::str::from_utf8(&self.out[from..end]) {
                            Ok(text) => fields.push(text.to_string()),
                            Err(_) => {
                                return Some((
                                    line,
                                    Err("is not valid UTF-8; save the file as UTF-8".into()),
                                ));
                            }
                        }
                        from = end;
                    }
                    return Some((line, Ok(fields)));
                }
                R::End => {
                    self.done = true;
                    return None;
                }
            }
        }
    }
}

/// The next input bytes, empty at the end.
fn fill(reader: &mut impl BufRead) -> std::io::Result<&[u8]> {
    loop {
        match reader.fill_buf() {
            Ok(_) => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    reader.fill_buf()
}

fn csv_rows(
    reader: impl BufRead,
) -> Result<impl Iterator<Item = Result<RawRow, RowError>>, String> {
    let mut records = CsvRecords::new(reader);
    let headers: Vec<String> = match records.next_record() {
        None => return Err("--input: the CSV input is empty; it needs a header line with the columns user,text,tag,sub_tag,system,attach,markdown".into()),
        Some((_, Err(e))) => return Err(format!("--input: cannot read the CSV header line: it {e}")),
        Some((_, Ok(fields))) => fields
            .iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .collect(),
    };
    for required in ["user", "text"] {
        if !headers.iter().any(|h| h == required) {
            return Err(format!(
                "--input: the CSV header line has no {required:?} column (it has: {}); the columns are user,text,tag,sub_tag,system,attach,markdown",
                // Quoted, so that a header field with a line break keeps the error on one line.
                headers
                    .iter()
                    .map(|h| format!("{h:?}"))
                    .collect::<Vec<_>>()
                    .join(",")
            ));
        }
    }
    Ok(std::iter::from_fn(move || {
        let (line, record) = records.next_record()?;
        let err = |message: String| {
            Some(Err(RowError {
                line,
                message,
                rules: Vec::new(),
            }))
        };
        let record = match record {
            Ok(record) => record,
            Err(e) => return err(e),
        };
        if record.len() != headers.len() {
            return err(format!(
                "has {} fields, but the header line has {}",
                record.len(),
                headers.len()
            ));
        }
        let fields = headers
            .iter()
            .zip(record)
            .filter(|(_, v)| !v.is_empty())
            .map(|(h, v)| (h.clone(), Value::String(v)))
            .collect();
        Some(Ok(RawRow { line, fields }))
    }))
}

const KNOWN: &[&str] = &[
    "user", "text", "tag", "sub_tag", "system", "attach", "markdown",
];

/// Checks a row and builds its request with the library's client-free builders. What the
/// portal would refuse makes the row invalid; so do warnings when `strict`.
pub fn check(raw: &RawRow, strict: bool) -> Result<Row, RowError> {
    let err = |message: String| RowError {
        line: raw.line,
        message,
        rules: Vec::new(),
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
    let flag = |key: &str| -> Result<bool, RowError> {
        match raw.fields.get(key) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "" | "0" | "false" | "no" | "n" => Ok(false),
                "1" | "true" | "yes" | "y" => Ok(true),
                other => Err(err(format!("{key}: expected true or false, got {other:?}"))),
            },
            Some(other) => Err(err(format!("{key}: expected true or false, got {other}"))),
        }
    };
    let system = flag("system")?;
    let text = if flag("markdown")? {
        crate::markdown::to_bbcode(&text)
    } else {
        text
    };
    let attach = match raw.fields.get("attach") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => Some(
            serde_json::from_str::<Value>(s)
                .map_err(|e| err(format!("attach: is not valid JSON ({e})")))?,
        ),
        Some(v) => Some(v.clone()),
    };
    let (report, request) = crate::severity::Notification {
        system,
        user,
        text,
        tag: string("tag")?,
        sub_tag: string("sub_tag")?,
        attach: attach.map(Attach::from_value),
        ..Default::default()
    }
    .build(strict);
    let column = |f: &bitrix24::Finding| column_of(&f.field).to_string();
    if let Err(lines) = crate::severity::admit_quietly(&report, strict, &column) {
        return Err(RowError {
            rules: report.findings().map(|f| f.rule.id()).collect(),
            ..err(one_line(&lines))
        });
    }
    let request = request.map_err(|e| err(one_line(&e.to_string())))?;
    // The library's rule, so that "0" and other PHP-empty tags count as no tag here too.
    let tagged = bitrix24::safety_of(&request, true) == bitrix24::Safety::Repeatable;
    Ok(Row {
        line: raw.line,
        request,
        tagged,
        warnings: report
            .warnings
            .iter()
            .map(|f| Warning {
                rule: f.rule.id(),
                line: crate::severity::line(f, &column),
            })
            .collect(),
    })
}

/// The column that sets a request's field.
pub fn column_of(field: &str) -> &str {
    match field {
        "USER_ID" => "user",
        "MESSAGE" => "text",
        "ATTACH" => "attach",
        "TAG" => "tag",
        "SUB_TAG" => "sub_tag",
        other => other,
    }
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
        let row = check(second, false).unwrap();
        assert_eq!(row.request.method(), "im.notify.system.add");
        assert_eq!(
            row.request.params()["ATTACH"],
            serde_json::json!([{"MESSAGE": "x"}])
        );
        assert!(!row.tagged);
        assert!(check(got[0].as_ref().unwrap(), false).unwrap().tagged);
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
            let e = check(&raw, false).unwrap_err();
            assert_eq!(e.line, 7);
            assert!(e.message.contains(want), "{json}: {}", e.message);
            assert!(!e.message.contains('\n'));
        }
    }
}
