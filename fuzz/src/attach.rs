//! The attach checker (`bitrix24::Attach`): properties that hold for every JSON value.

use bitrix24::{Attach, Verdict};
use serde_json::Value;

/// Fuzz input: a JSON value, checked as an `ATTACH` value.
pub fn run(data: &[u8]) {
    if let Ok(value) = serde_json::from_slice::<Value>(data) {
        check_value(&value);
    }
}

pub fn check_value(value: &Value) {
    let check = Attach::check_json(value);
    let report = check.report();
    assert_eq!(
        check.is_ok(),
        report.is_empty(),
        "is_ok and report disagree"
    );
    for issue in check.issues() {
        assert!(
            !issue.to_string().contains('\n'),
            "an issue is one line: {issue:?}"
        );
    }
    let verdict = check.verdict();
    assert_eq!(
        check.is_ok(),
        matches!(verdict, Verdict::Clean | Verdict::Nothing),
        "verdict {verdict:?} with is_ok {}",
        check.is_ok()
    );
    match Attach::from_json(value.clone()) {
        Ok(attach) => {
            assert!(check.is_ok(), "from_json accepted what check refused");
            // What was accepted is accepted again: building a notification re-checks it.
            let again = attach.check();
            assert!(
                attach.is_empty() || again.is_ok(),
                "an accepted attach fails its own check: {}",
                again.report()
            );
        }
        Err(e) => {
            assert!(!check.is_ok(), "from_json refused a clean attach: {e}");
        }
    }
}
