//! `oint --blocks`: JSON or OPI's single-quoted JSON, then the attach checker.

use serde_json::Value;

/// Fuzz input: the `--blocks` text.
pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    // Text that does not start like JSON names a file, and a fuzzer must not open files.
    let trimmed = text.trim();
    if !(trimmed.starts_with('[') || trimmed.starts_with('{')) {
        return;
    }
    match oint::blocks::parse(&text) {
        Ok(Some(attach)) => {
            assert!(!attach.is_empty(), "Some(empty attach)");
            let check = attach.check();
            assert!(
                check.is_ok(),
                "--blocks accepted a failing attach: {}",
                check.report()
            );
        }
        Ok(None) => {}
        Err(message) => assert!(!message.is_empty(), "an empty error message"),
    }
    // Real JSON always wins: the single-quote rewrite leaves valid JSON untouched.
    if let Ok(value) = serde_json::from_str::<Value>(&text) {
        assert_eq!(
            oint::blocks::single_quoted_to_json(&text),
            *text,
            "valid JSON was rewritten"
        );
        crate::attach::check_value(&value);
    } else if let Ok(value) =
        serde_json::from_str::<Value>(&oint::blocks::single_quoted_to_json(&text))
    {
        crate::attach::check_value(&value);
    }
}
