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

#[path = "../../../fuzz/src/portal.rs"]
#[allow(dead_code)]
mod portal;
#[path = "../../../fuzz/src/url.rs"]
mod url;

/// `--url` inputs whose secret (a password in `user:SECRET@host`, control characters in the
/// host) reached `Display` or an error message: now refused without echoing it.
#[test]
fn url_inputs() {
    let n = replay::replay("url", url::run);
    assert!(n > 0, "no kept inputs");
}

#[path = "../../../fuzz/src/config.rs"]
mod config;

/// Config files whose secret reached an error (`rate`, `token_env`, a webhook URL as
/// `default_portal` or as a `[portals]` key): the error names the setting instead.
#[test]
fn config_inputs() {
    let n = replay::replay("config", config::run);
    assert!(n > 0, "no kept inputs");
}

#[path = "../../../fuzz/src/alerts.rs"]
mod alerts;

/// A webhook body whose unknown `status` held a line break: serde quoted it into the 400
/// reason, which must be one line.
#[test]
fn alerts_inputs() {
    let n = replay::replay("alerts", alerts::run);
    assert!(n > 0, "no kept inputs");
}
