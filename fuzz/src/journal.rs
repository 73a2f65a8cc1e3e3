//! The bulk journal (`oint::commands::bulk::journal`): any file content as an existing journal. No panic,
//! and what a run records is what the next run reads back, whatever the file held before
//! (a torn last line from `kill -9` included).

use std::io::Write;

use oint::commands::bulk::journal::{Entry, Journal, State};

const FINGERPRINT: &str = "fuzz-input";
const LAST_ROW: u64 = 64;

/// Fuzz input: the journal file's content. Header lines are kept as given, so the fuzzer
/// explores both valid and refused journals; `@` at the start stands for a valid header.
pub fn run(data: &[u8]) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("journal");
    let content: Vec<u8> = match data.strip_prefix(b"@") {
        Some(rest) => {
            let mut c = format!("{{\"journal\":1,\"input\":\"{FINGERPRINT}\"}}\n").into_bytes();
            c.extend_from_slice(rest);
            c
        }
        None => data.to_vec(),
    };
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(&content))
        .expect("write the journal");

    let Ok(mut journal) = Journal::open(&path, FINGERPRINT, LAST_ROW) else {
        return;
    };
    let before: Vec<State> = (0..=LAST_ROW + 1).map(|r| journal.state(r)).collect();
    assert_eq!(
        before[LAST_ROW as usize + 1],
        State::Pending,
        "a row beyond the input has a state"
    );
    // A run: rows 1..=3 go out, and it is killed: the next run must know they went out.
    journal.sending(&[1, 2, 3]).expect("record sending");
    drop(journal);
    let mut journal = Journal::open(&path, FINGERPRINT, LAST_ROW).expect("a journal reopens");
    assert_eq!(
        [journal.state(1), journal.state(2), journal.state(3)],
        [State::Unknown; 3],
        "rows recorded as sending are read back as sent"
    );
    // The next run: 1 is delivered, 2 fails, 3 is not sent.
    journal
        .record(&[
            (1, Entry::Delivered { id: 7 }),
            (
                2,
                Entry::Failed {
                    error: "E".into(),
                    description: "d".into(),
                },
            ),
            (
                3,
                Entry::NotSent {
                    error: "N".into(),
                    description: "d".into(),
                },
            ),
        ])
        .expect("record outcomes");
    let live: Vec<State> = (0..=LAST_ROW).map(|r| journal.state(r)).collect();
    drop(journal);

    let again = Journal::open(&path, FINGERPRINT, LAST_ROW).expect("a journal reopens");
    let reread: Vec<State> = (0..=LAST_ROW).map(|r| again.state(r)).collect();
    assert_eq!(
        [reread[1], reread[2], reread[3]],
        [State::Delivered, State::Failed, State::Pending],
        "what this run recorded is read back"
    );
    assert_eq!(
        reread, live,
        "the reopened journal disagrees with the one that wrote it"
    );
}
