//! `notify bulk --input`: the JSON Lines and CSV readers, then the row check. No panic, and no
//! lost row: every line (JSON Lines) or record (CSV) of the input comes out as a row or as an
//! error that names its line.

use std::io::Write;

use oint::commands::bulk::input::{self, Format, RawRow, RowError};

/// Reads `data` as a file in `format`, the way `notify bulk` does.
fn read(data: &[u8], format: Format) -> Result<Vec<Result<RawRow, RowError>>, String> {
    let mut file = tempfile::NamedTempFile::new().expect("a temporary file");
    file.write_all(data).expect("write the input");
    file.flush().expect("flush the input");
    Ok(input::read(file.path(), format)?.collect())
}

fn check_rows(rows: &[Result<RawRow, RowError>]) {
    for row in rows {
        match row {
            Ok(raw) => {
                // Lenient and strict alike: an error stays on its row's line.
                for strict in [false, true] {
                    if let Err(e) = input::check(raw, strict) {
                        assert_eq!(e.line, raw.line, "a check error moved to another line");
                        assert!(!e.message.contains('\n'), "a row error is one line: {e:?}");
                    }
                }
            }
            Err(e) => assert!(!e.message.contains('\n'), "a row error is one line: {e:?}"),
        }
    }
}

fn line_of(row: &Result<RawRow, RowError>) -> u64 {
    match row {
        Ok(raw) => raw.line,
        Err(e) => e.line,
    }
}

/// Fuzz input: a JSON Lines file.
pub fn run_jsonl(data: &[u8]) {
    let rows = read(data, Format::Jsonl).expect("a JSON Lines file always opens");
    // The lines that are not blank, by number: each must give exactly one row or error.
    let mut pieces: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
    if data.ends_with(b"\n") || data.is_empty() {
        pieces.pop();
    }
    let expected: Vec<u64> = pieces
        .iter()
        .enumerate()
        .filter(|(_, line)| std::str::from_utf8(line).map_or(true, |s| !s.trim().is_empty()))
        .map(|(i, _)| i as u64 + 1)
        .collect();
    let got: Vec<u64> = rows.iter().map(line_of).collect();
    assert_eq!(got, expected, "rows lost, doubled or misnumbered");
    check_rows(&rows);
}

/// Fuzz input: a CSV file.
pub fn run_csv(data: &[u8]) {
    let rows = match read(data, Format::Csv) {
        Ok(rows) => rows,
        Err(message) => {
            assert!(
                message.starts_with("--input"),
                "names the flag: {message:?}"
            );
            assert!(!message.contains('\n'), "one line: {message:?}");
            return;
        }
    };
    // The csv crate's own count of records after the header: each gives a row or an error.
    let records = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(data)
        .byte_records()
        .count();
    assert_eq!(rows.len(), records, "rows lost or doubled");
    let mut last = 1;
    for row in &rows {
        let line = line_of(row);
        assert!(
            line > last || (line == last && line > 1),
            "line {line} after line {last}: {row:?}"
        );
        last = line;
    }
    check_rows(&rows);
}
