//! Inputs the fuzzers (`fuzz/`) found, replayed through the same code the fuzz targets run
//! (`fuzz/src/*.rs`, included here), so a plain `cargo test` keeps them fixed.

#[path = "../../../fuzz/src/attach.rs"]
#[allow(dead_code)]
mod attach;
#[path = "../../../fuzz/src/blocks.rs"]
mod blocks;
#[path = "../../../fuzz/src/replay.rs"]
mod replay;

/// `--blocks` with an unknown key holding a newline: the error stays one line.
#[test]
fn blocks_inputs() {
    let n = replay::replay("blocks", blocks::run);
    assert!(n > 0, "no kept inputs");
}

#[path = "../../../fuzz/src/bulk.rs"]
#[allow(dead_code)]
mod bulk;

/// CSV inputs: a file with `\r` line ends (every record was "line 1", so the journal, keyed
/// by row number, mixed rows up), and header fields with line breaks in the one-line error.
#[test]
fn bulk_csv_inputs() {
    let n = replay::replay("bulk_csv", bulk::run_csv);
    assert!(n > 0, "no kept inputs");
}

#[path = "../../../fuzz/src/journal.rs"]
mod journal;

/// A journal whose last line was torn by kill -9: the next `sending` record joined it and was
/// lost, so a resume took rows that had gone out for never sent, and sent them twice.
#[test]
fn journal_inputs() {
    let n = replay::replay("journal", journal::run);
    assert!(n > 0, "no kept inputs");
}
