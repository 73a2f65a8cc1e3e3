//! The bulk journal: what happened to each row, kept durably so a run can resume.
//!
//! Before a batch goes out, its rows are written as `sending`; after its answer, each row's
//! outcome. Both are flushed to disk before the run moves on. A run killed in between leaves
//! rows that were `sending` with no outcome: the portal may or may not have created them, so a
//! resume sends them again only when a resend cannot duplicate (a tag, from an OAuth
//! application) and reports them as outcome unknown otherwise. Rows that never went out (no
//! connection, the whole batch refused) are recorded as `not_sent` and sent by the next run.
//!
//! A journal belongs to one input: its first line holds a fingerprint of the input, and a
//! journal for other input is refused. It is locked while a run uses it, so two runs can never
//! send the same rows at once.
//!
//! `sending` is written when a batch is dispatched (its rate-limit slot taken, its request
//! about to be written), not when it is formed: rows of batches that were still waiting for
//! the limiter when the run stopped were never sent, and a resume sends them.
//!
//! The journal is never opened through a symbolic link (O_NOFOLLOW), and reading it is
//! bounded: a line longer than [`MAX_LINE_BYTES`] or one that is not an entry is reported
//! with its number. The one damage expected, a last line torn by kill -9 (it lacks its line
//! break), recorded nothing; it is cut off before the journal is written again.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, Write};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// What the journal knows about a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum State {
    /// Never sent, or sent nothing of it.
    #[default]
    Pending = 0,
    /// Sent; no outcome recorded (the run stopped, or the outcome was unknown).
    Unknown = 1,
    /// Created.
    Delivered = 2,
    /// The portal refused it, or answered `false`: final.
    Failed = 3,
}

/// An outcome to record.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    Delivered {
        id: u64,
    },
    /// The portal refused this row itself: final.
    Failed {
        error: String,
        description: String,
    },
    /// Nothing of it ran (no connection, the whole batch refused): a resume sends it.
    NotSent {
        error: String,
        description: String,
    },
    Unknown,
}

/// An open, locked journal and the states it recorded, by row (line) number.
pub struct Journal {
    file: File,
    path: PathBuf,
    states: Vec<State>,
}

impl Journal {
    /// Opens (or starts) the journal at `path` for the input with `fingerprint`, whose rows
    /// are numbered up to `last_row`.
    pub fn open(path: &Path, fingerprint: &str, last_row: u64) -> Result<Journal, String> {
        let what = |e: std::io::Error| format!("--journal: cannot use {}: {e}", path.display());
        let mut file = open_no_follow(
            OpenOptions::new().read(true).append(true).create(true),
            path,
        )
        .map_err(|e| no_follow_error("--journal", path, e))?;
        if !file.metadata().map_err(what)?.is_file() {
            return Err(format!(
                "--journal: {} is not a regular file; give the path of a file (it is created when missing)",
                path.display()
            ));
        }
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(format!(
                    "--journal: {} is in use by another oint process",
                    path.display()
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(what(e)),
        }
        file.rewind().map_err(what)?;
        let name = path.display().to_string();
        let read = parse(&file, &name, fingerprint, last_row)?;
        let len = file.metadata().map_err(what)?.len();
        if read.valid_len < len {
            // A torn last line (kill -9 mid-write) recorded nothing: cut it off, so that the
            // next entry starts on a line of its own.
            file.set_len(read.valid_len).map_err(what)?;
            file.sync_data().map_err(what)?;
        }
        if !read.header {
            writeln!(file, "{}", json!({"journal": 1, "input": fingerprint})).map_err(what)?;
            file.sync_data().map_err(what)?;
        }
        Ok(Journal {
            file,
            path: path.to_path_buf(),
            states: read.states,
        })
    }

    /// What is known about `row`.
    pub fn state(&self, row: u64) -> State {
        usize::try_from(row)
            .ok()
            .and_then(|i| self.states.get(i))
            .copied()
            .unwrap_or_default()
    }

    /// Records, durably, that these rows are about to be sent.
    pub fn sending(&mut self, rows: &[u64]) -> Result<(), String> {
        for row in rows {
            set(&mut self.states, *row, State::Unknown);
        }
        self.write(&[json!({"sending": rows})])
    }

    /// Records, durably, the outcomes of rows.
    pub fn record(&mut self, outcomes: &[(u64, Entry)]) -> Result<(), String> {
        let lines: Vec<Value> = outcomes
            .iter()
            .map(|(row, entry)| {
                let (state, line) = match entry {
                    Entry::Delivered { id } => {
                        (State::Delivered, json!({"row": row, "outcome": "delivered", "id": id}))
                    }
                    Entry::Failed { error, description } => (
                        State::Failed,
                        json!({"row": row, "outcome": "failed", "error": error, "description": description}),
                    ),
                    Entry::NotSent { error, description } => (
                        State::Pending,
                        json!({"row": row, "outcome": "not_sent", "error": error, "description": description}),
                    ),
                    Entry::Unknown => (State::Unknown, json!({"row": row, "outcome": "unknown"})),
                };
                set(&mut self.states, *row, state);
                line
            })
            .collect();
        self.write(&lines)
    }

    fn write(&mut self, lines: &[Value]) -> Result<(), String> {
        let mut text = String::new();
        for line in lines {
            text.push_str(&line.to_string());
            text.push('\n');
        }
        let what =
            |e: std::io::Error| format!("--journal: cannot write {}: {e}", self.path.display());
        self.file.write_all(text.as_bytes()).map_err(what)?;
        self.file.sync_data().map_err(what)
    }
}

/// The longest journal line read; the longest written is a few kilobytes.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// What a journal holds.
struct Journaled {
    states: Vec<State>,
    /// Whether it starts with its header line.
    header: bool,
    /// Bytes up to the end of the last whole line.
    valid_len: u64,
}

/// Reads a journal's states from `reader` (the journal's bytes) for the input with
/// `fingerprint` whose rows are numbered up to `last_row`: index `row` of the result is that
/// row's state (rows past its end are [`State::Pending`]). `name` names the journal in
/// errors, which are one line naming the line at fault. A torn last line is ignored.
pub fn parse_journal(
    reader: impl Read,
    name: &str,
    fingerprint: &str,
    last_row: u64,
) -> Result<Vec<State>, String> {
    parse(reader, name, fingerprint, last_row).map(|r| r.states)
}

fn parse(
    reader: impl Read,
    name: &str,
    fingerprint: &str,
    last_row: u64,
) -> Result<Journaled, String> {
    let mut reader = BufReader::new(reader);
    let mut states = Vec::new();
    let mut header = false;
    let mut valid_len = 0u64;
    let damaged = |n: u64, why: &str| {
        format!(
            "--journal: {name} line {n} {why}: the journal is damaged; restore it, or start a new journal (rows it recorded as delivered would then be sent again)"
        )
    };
    for n in 1u64.. {
        let Some((bytes, whole, size)) = journal_line(&mut reader)
            .map_err(|e| format!("--journal: cannot read {name} at line {n}: {e}"))?
        else {
            break;
        };
        if !whole {
            // Torn by a kill mid-write: it recorded nothing. Only a header could be the
            // first line; anything else there is some other file, to be left alone.
            let head = json!({"journal": 1, "input": fingerprint}).to_string();
            if n == 1 && !bytes.is_some_and(|b| head.as_bytes().starts_with(&b)) {
                return Err(format!(
                    "--journal: {name} is not an oint bulk journal; give a new file name"
                ));
            }
            break;
        }
        valid_len += size;
        let Some(bytes) = bytes else {
            return Err(damaged(
                n,
                &format!("is longer than {MAX_LINE_BYTES} bytes"),
            ));
        };
        let parsed = serde_json::from_slice::<Value>(&bytes).ok();
        if n == 1 {
            let Some(head) = parsed.filter(|h| h["journal"] == 1) else {
                return Err(format!(
                    "--journal: {name} is not an oint bulk journal; give a new file name"
                ));
            };
            if head["input"] != fingerprint {
                return Err(format!(
                    "--journal: {name} records a different input; use a new journal file, or the input it was made for"
                ));
            }
            header = true;
            continue;
        }
        let Some(entry) = parsed else {
            return Err(damaged(n, "is not JSON"));
        };
        // Rows beyond the input cannot be ours; ignoring them keeps memory bounded.
        let ours = |row: u64| row <= last_row;
        if let Some(rows) = entry.get("sending") {
            let Some(rows) = rows
                .as_array()
                .and_then(|r| r.iter().map(Value::as_u64).collect::<Option<Vec<u64>>>())
            else {
                return Err(damaged(
                    n,
                    "has a sending entry that is not a list of row numbers",
                ));
            };
            for row in rows.into_iter().filter(|r| ours(*r)) {
                set(&mut states, row, State::Unknown);
            }
            continue;
        }
        let state = match entry.get("outcome").and_then(Value::as_str) {
            Some("delivered") => State::Delivered,
            Some("failed") => State::Failed,
            Some("not_sent") => State::Pending,
            Some("unknown") => State::Unknown,
            _ => return Err(damaged(n, "is not a journal entry")),
        };
        let Some(row) = entry.get("row").and_then(Value::as_u64) else {
            return Err(damaged(n, "has no row number"));
        };
        if ours(row) {
            set(&mut states, row, state);
        }
    }
    Ok(Journaled {
        states,
        header,
        valid_len,
    })
}

/// One line: its bytes (`None` when over [`MAX_LINE_BYTES`]; the rest is skipped), whether
/// it ended with a line break, and its length on disk. `None` at the end.
#[allow(clippy::type_complexity)]
fn journal_line(
    reader: &mut impl BufRead,
) -> std::io::Result<Option<(Option<Vec<u8>>, bool, u64)>> {
    let mut line = Vec::new();
    let n = (&mut *reader)
        .take(MAX_LINE_BYTES as u64 + 1)
        .read_until(b'\n', &mut line)? as u64;
    if n == 0 {
        return Ok(None);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
        return Ok(Some((Some(line), true, n)));
    }
    if line.len() <= MAX_LINE_BYTES {
        // The end of the journal came first.
        return Ok(Some((Some(line), false, n)));
    }
    // Longer than any line written: damage, even as the last line (never cut off unseen).
    let rest = reader.skip_until(b'\n')? as u64;
    Ok(Some((None, true, n + rest)))
}

/// Opens `path` with `options`, never through a symbolic link (O_NOFOLLOW on unix; a check
/// just before opening elsewhere), so that a link planted where the journal or the report
/// goes cannot send the write to another file.
pub(crate) fn open_no_follow(options: &mut OpenOptions, path: &Path) -> std::io::Result<File> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32);
    }
    #[cfg(not(unix))]
    {
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(std::io::Error::other("is a symbolic link"));
        }
    }
    options.open(path)
}

/// The one-line error for a failed [`open_no_follow`] of `flag`'s `path`.
pub(crate) fn no_follow_error(flag: &str, path: &Path, e: std::io::Error) -> String {
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        format!(
            "{flag}: {} is a symbolic link; oint never writes a journal or report through one: give the path of a regular file",
            path.display()
        )
    } else {
        format!("{flag}: cannot use {}: {e}", path.display())
    }
}

/// Only rows of the input reach here (their numbers are bounded by its line count).
fn set(states: &mut Vec<State>, row: u64, state: State) {
    let Ok(i) = usize::try_from(row) else { return };
    if states.len() <= i {
        states.resize(i + 1, State::Pending);
    }
    states[i] = state;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_survive_reopening_and_torn_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let mut j = Journal::open(&path, "abc", 10).unwrap();
        let busy = Journal::open(&path, "abc", 10).err().unwrap();
        assert!(busy.contains("in use by another oint process"), "{busy}");
        j.sending(&[2, 3, 4, 5]).unwrap();
        j.record(&[
            (2, Entry::Delivered { id: 9 }),
            (
                3,
                Entry::Failed {
                    error: "E".into(),
                    description: "d".into(),
                },
            ),
            (
                5,
                Entry::NotSent {
                    error: "NOT_SENT".into(),
                    description: "d".into(),
                },
            ),
        ])
        .unwrap();
        drop(j);
        // A write torn by kill -9, and a row number far beyond the input.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(
            b"{\"row\": 1000000000000000, \"outcome\": \"delivered\"}\n{\"row\": 4, \"outc",
        )
        .unwrap();
        drop(f);
        let j = Journal::open(&path, "abc", 10).unwrap();
        assert_eq!(
            [
                j.state(1),
                j.state(2),
                j.state(3),
                j.state(4),
                j.state(5),
                j.state(99)
            ],
            [
                State::Pending,
                State::Delivered,
                State::Failed,
                State::Unknown,
                State::Pending,
                State::Pending
            ]
        );
        drop(j);
        let err = Journal::open(&path, "other", 10).err().unwrap();
        assert!(err.contains("different input"), "{err}");
        let other = dir.path().join("notes.txt");
        std::fs::write(&other, "shopping list\n").unwrap();
        let err = Journal::open(&other, "abc", 10).err().unwrap();
        assert!(err.contains("is not an oint bulk journal"), "{err}");
    }
}
