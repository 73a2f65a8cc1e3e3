//! URL normalisation (`bitrix24::Portal::parse`): no panic, normalised URLs normalise to
//! themselves, and a secret never shows in `Display`, `Debug` or an error message.

use bitrix24::{HttpPolicy, Portal};

/// Stands for a secret. Inputs write `SECRET` wherever they want one (seeds put it in the
/// webhook secret, the token and userinfo); it is replaced by this marker before parsing.
pub const MARKER: &str = "k3ysecr3tq";

/// The input split into the URL and, after a NUL byte, the token; `SECRET` becomes [`MARKER`].
pub fn url_and_token(data: &[u8]) -> (String, Option<String>) {
    let text = String::from_utf8_lossy(data).replace("SECRET", MARKER);
    match text.split_once('\0') {
        Some((url, token)) => (url.to_string(), Some(token.to_string())),
        None => (text, None),
    }
}

/// True when `url`'s authority (before the first `/`, after any scheme) holds the marker in
/// its userinfo (`user:SECRET@host`), which is a password.
pub fn marker_in_userinfo(url: &str) -> bool {
    let rest = url.trim();
    let rest = rest.split_once("://").map_or(rest, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.to_ascii_lowercase().contains(MARKER))
}

/// Panics when `shown` holds a secret: the marker, when the URL itself has none (so it came
/// from the token or a client secret), or when the URL has it as a userinfo password. A
/// marker elsewhere in the URL (host, path before `rest/`) is public and may be shown; one in
/// the webhook secret's place is masked by construction and checked by the unit tests.
pub fn assert_no_secret(url: &str, what: &str, shown: &str) {
    if !shown.to_ascii_lowercase().contains(MARKER) {
        return;
    }
    let from_url = url.to_ascii_lowercase().contains(MARKER);
    if !from_url || marker_in_userinfo(url) {
        panic!("a secret leaks into {what}: {shown:?} (url {url:?})");
    }
}

pub fn run(data: &[u8]) {
    let (url, token) = url_and_token(data);
    check(&url, token.as_deref());
}

pub fn check(url: &str, token: Option<&str>) {
    for policy in [HttpPolicy::LoopbackOnly, HttpPolicy::AllowInsecure] {
        match Portal::parse(url, token, policy) {
            Ok(portal) => {
                let shown = portal.to_string();
                assert_no_secret(url, "Display", &shown);
                assert_no_secret(url, "Debug", &format!("{portal:?}"));
                assert_no_secret(url, "masked_endpoint", &portal.masked_endpoint("im.notify"));
                // The normalised form (secret masked) is itself a URL that normalises to itself.
                let again = Portal::parse(&shown, token, policy).unwrap_or_else(|e| {
                    panic!("the normalised {shown:?} of {url:?} does not parse again: {e}")
                });
                assert_eq!(
                    again.to_string(),
                    shown,
                    "normalising twice changes {url:?}"
                );
                assert_eq!(again.is_oauth(), portal.is_oauth());
                assert_eq!(again.authority(), portal.authority());
            }
            Err(e) => {
                assert_no_secret(url, "an error message", &e.to_string());
                assert_no_secret(url, "an error's Debug", &format!("{e:?}"));
            }
        }
    }
}
