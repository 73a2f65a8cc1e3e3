//! Inputs the fuzzers (`fuzz/`) found, replayed through the same checks the fuzz targets run
//! (`fuzz/src/*.rs`, included here), so a plain `cargo test` keeps them fixed.

#[path = "../../../fuzz/src/attach.rs"]
mod attach;
#[path = "../../../fuzz/src/replay.rs"]
mod replay;

/// `blocks` inputs that are JSON, through the attach checker: an issue's path once carried
/// a key's raw newline into the one-line report.
#[test]
fn blocks_inputs_pass_the_attach_checks() {
    let n = replay::replay("blocks", attach::run);
    assert!(n > 0, "no kept inputs");
}

#[test]
fn an_issue_path_quotes_a_key_with_a_newline() {
    let check = bitrix24::Attach::check_json(
        &serde_json::json!([{"LINK": {"NA\nME": "x", "LINK": "https://x.test/"}}]),
    );
    let paths: Vec<&str> = check.issues().iter().map(|i| i.path.as_str()).collect();
    assert_eq!(paths, ["blocks[0].LINK[\"NA\\nME\"]"], "{}", check.report());
}
