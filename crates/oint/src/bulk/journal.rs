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

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
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
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(what)?;
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
        let mut states = Vec::new();
        let exists = std::fs::metadata(path)
            .map(|m| m.len() > 0)
            .unwrap_or(false);
        if exists {
            let reader = BufReader::new(File::open(path).map_err(what)?);
            for (i, line) in reader.lines().enumerate() {
                let line = line.map_err(what)?;
                let parsed = serde_json::from_str::<Value>(&line);
                if i == 0 {
                    let Some(header) = parsed.ok().filter(|h| h["journal"] == 1) else {
                        return Err(format!(
                            "--journal: {} is not an oint bulk journal; give a new file name",
                            path.display()
                        ));
                    };
                    if header["input"] != fingerprint {
                        return Err(format!(
                            "--journal: {} records a different input; use a new journal file, or the input it was made for",
                            path.display()
                        ));
                    }
                    continue;
                }
                // A run killed mid-write leaves a torn last line; it recorded nothing.
                let Ok(entry) = parsed else { continue };
                // Rows beyond the input cannot be ours; ignoring them keeps memory bounded.
                let ours = |row: &u64| *row <= last_row;
                if let Some(rows) = entry["sending"].as_array() {
                    for row in rows.iter().filter_map(Value::as_u64).filter(ours) {
                        set(&mut states, row, State::Unknown);
                    }
                } else if let Some(row) = entry["row"].as_u64().filter(ours) {
                    let state = match entry["outcome"].as_str() {
                        Some("delivered") => State::Delivered,
                        Some("failed") => State::Failed,
                        Some("not_sent") => State::Pending,
                        _ => State::Unknown,
                    };
                    set(&mut states, row, state);
                }
            }
        }
        if exists && !ends_with_newline(path).map_err(what)? {
            // End a line torn by kill -9, or the next record would join it and be lost.
            file.write_all(b"\n").map_err(what)?;
            file.sync_data().map_err(what)?;
        }
        if !exists {
            writeln!(file, "{}", json!({"journal": 1, "input": fingerprint})).map_err(what)?;
            file.sync_data().map_err(what)?;
        }
        Ok(Journal {
            file,
            path: path.to_path_buf(),
            states,
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

fn ends_with_newline(path: &Path) -> std::io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = File::open(path)?;
    if file.seek(SeekFrom::End(0))? == 0 {
        return Ok(true);
    }
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8];
    file.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
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
