//! Telling values that may be secrets from values that can be shown.
//!
//! People paste a webhook URL or a token into the wrong flag or setting. Every message that
//! would quote a value the user gave asks here first, so that such a value is named, never
//! echoed. A leaf module: it knows nothing of flags or settings.

use std::path::Path;

/// Whether a value the user gave may be a secret: a URL (a webhook's carries its secret), or
/// one long word (a token). Such values are named, never shown, in error messages.
pub fn may_be_secret(value: &str) -> bool {
    let v = value.trim();
    v.contains("://")
        || v.contains("/rest/")
        || v.contains('@')
        || v.chars().any(char::is_control)
        || (v.chars().count() >= 20 && !v.contains(['/', '.', ' ', '~']))
}

/// `"name"` for a plain portal name, or a description when it may be a secret.
pub fn shown_name(name: &str) -> String {
    if may_be_secret(name) || name.contains('/') {
        "(a value that looks like a URL or a token, not shown)".into()
    } else {
        format!("{name:?}")
    }
}

/// A path for an error message, unless it may be a secret typed in the wrong place.
pub fn shown_path(path: &Path) -> String {
    let text = path.display().to_string();
    if may_be_secret(&text) {
        "the file it names (the value looks like a URL or a token, not a path)".into()
    } else {
        text
    }
}

/// Serde's messages quote the offending value (`invalid type: string "…"`) and key; both
/// may be secrets.
pub fn scrub_serde_message(message: &str) -> String {
    let mut out = String::new();
    let mut rest = message;
    while let Some(i) = rest.find(['"', '`']) {
        let quote = rest.as_bytes()[i] as char;
        let after = &rest[i + 1..];
        let Some(end) = after.find(quote) else { break };
        let inner = &after[..end];
        out.push_str(&rest[..i]);
        let value_of_wrong_type = rest[..i].ends_with("string ");
        if value_of_wrong_type || may_be_secret(inner) {
            out.push_str("(not shown)");
        } else {
            out.push(quote);
            out.push_str(inner);
            out.push(quote);
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out.replace('\n', " ")
}

/// A token or secret without a byte-order mark and surrounding blanks; one with a space, line
/// break or control character inside is refused (the portal would refuse it anyway).
pub fn clean_secret(raw: &str, what: &str) -> Result<String, String> {
    let text = raw.trim().trim_start_matches('\u{feff}').trim();
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{what}: the value holds a space, line break or control character inside; a token or secret is one word: give it alone, on one line"
        ));
    }
    Ok(text.to_string())
}

/// `Some` secrets show as `***`.
pub fn masked(value: &Option<String>) -> Option<&'static str> {
    value.as_ref().map(|_| bitrix24::MASK)
}
