//! Where requests go and how they authenticate.
//!
//! Bitrix24 has two ways in: an inbound webhook, whose URL carries the user id and a secret
//! (`https://portal/rest/1/s3cr3t/`), and an OAuth application, which calls
//! `https://portal/rest/<method>` with an access token. OPI's `oint` accepts both through one
//! `--url` flag, normalising whatever the user typed; [`Portal::parse`] does the same so that
//! every URL that works there works here.
//!
//! The secret parts never leave this module unmasked except in [`Portal::endpoint`], which the
//! transport needs to build the request.

use std::fmt;
use std::net::IpAddr;

use secrecy::{ExposeSecret, SecretString};

use crate::error::Error;

/// Text shown in place of a secret.
pub const MASK: &str = "***";

/// A normalised portal address with its credentials.
#[derive(Clone)]
pub struct Portal {
    scheme: &'static str,
    /// `host` or `host:port`, lower-cased.
    authority: String,
    /// Path before `rest/`, always ending in `/` (usually just `/`).
    prefix: String,
    auth: Auth,
}

#[derive(Clone)]
enum Auth {
    Webhook { user: String, secret: SecretString },
    Token { token: SecretString },
}

/// Whether plain `http://` may be used for a host that is not loopback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HttpPolicy {
    /// `http://` only for 127.0.0.0/8, ::1 and `localhost`; everything else is https.
    #[default]
    LoopbackOnly,
    /// `http://` anywhere the caller asks for it. Secrets then travel in clear text.
    AllowInsecure,
}

impl Portal {
    /// Normalises a portal address the way OPI's `oint` does.
    ///
    /// - Surrounding spaces, `https://`, `http://` and `www.` are stripped, and a trailing `/`
    ///   is added.
    /// - Without a token, `url` must be a webhook URL: `portal/rest/<user>/<secret>/`.
    /// - With a token, `url` is the portal (`rest/` is appended when missing) and the token is
    ///   sent as `auth`.
    /// - Requests use https unless `url` says `http://` and the host is loopback (or `policy`
    ///   allows any host).
    ///
    /// ```
    /// use bitrix24::{HttpPolicy, Portal};
    /// let p = Portal::parse("https://www.b24-ar17wx.bitrix24.by/rest/1/abc123", None, HttpPolicy::default()).unwrap();
    /// assert_eq!(p.to_string(), "https://b24-ar17wx.bitrix24.by/rest/1/***/");
    /// ```
    pub fn parse(url: &str, token: Option<&str>, policy: HttpPolicy) -> Result<Portal, Error> {
        let invalid = |message: String| Error::invalid("url", message);
        let token = token.map(str::trim).filter(|t| !t.is_empty());

        let mut rest = url.trim();
        if rest.is_empty() {
            return Err(invalid(
                "is empty; give a webhook URL (https://PORTAL/rest/USER_ID/SECRET/) or a portal domain with a token".into(),
            ));
        }
        // A URL never holds these, and the url crate would silently drop tabs and newlines
        // inside a host. Not echoed: the text may hold the secret.
        if rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid(
                "is not valid: it contains a space or control character; give the webhook URL as Bitrix24 shows it (https://PORTAL/rest/USER_ID/SECRET/)".into(),
            ));
        }
        let mut scheme = "https";
        for (prefix, s) in [("https://", "https"), ("http://", "http")] {
            // `get` rather than slicing: the input may have multi-byte characters anywhere.
            if rest
                .get(..prefix.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
            {
                rest = &rest[prefix.len()..];
                scheme = s;
                break;
            }
        }
        if rest
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("www."))
        {
            rest = &rest[4..];
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let authority = authority.to_ascii_lowercase();
        check_scheme_and_userinfo(&authority).map_err(invalid)?;
        let host = validate_authority(&authority).map_err(invalid)?;

        if scheme == "http" && policy == HttpPolicy::LoopbackOnly && !is_loopback(&host) {
            return Err(invalid(format!(
                "plain http:// is refused for {host} because it would send secrets in clear text; use https:// (http:// is accepted only for loopback test portals)"
            )));
        }

        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let rest_at = segments.iter().position(|s| *s == "rest");
        let prefix_of = |end: usize| {
            let mut p = String::from("/");
            for s in &segments[..end] {
                p.push_str(s);
                p.push('/');
            }
            p
        };

        let (prefix, auth) = match (token, rest_at) {
            (Some(_), Some(i)) if segments.len() > i + 1 => {
                return Err(invalid(
                    "is a webhook URL, which carries its own secret, but a token was given too; pass the portal domain with the token, or drop the token".into(),
                ));
            }
            (Some(token), Some(i)) => (
                prefix_of(i),
                Auth::Token {
                    token: token.into(),
                },
            ),
            (Some(token), None) => (
                prefix_of(segments.len()),
                Auth::Token {
                    token: token.into(),
                },
            ),
            (None, Some(i)) if segments.len() == i + 3 => (
                prefix_of(i),
                Auth::Webhook {
                    user: segments[i + 1].to_string(),
                    secret: segments[i + 2].into(),
                },
            ),
            (None, Some(i)) if segments.len() > i + 3 => {
                return Err(invalid(format!(
                    "has {} path segment(s) after the webhook secret; use the webhook URL as Bitrix24 shows it: {scheme}://{authority}/rest/USER_ID/SECRET/",
                    segments.len() - i - 3
                )));
            }
            (None, _) => {
                return Err(invalid(format!(
                    "{scheme}://{authority}/ is not a webhook URL ({scheme}://{authority}/rest/USER_ID/SECRET/) and no token was given; add the webhook path, or pass --token (or BITRIX24_TOKEN)"
                )));
            }
        };
        Ok(Portal {
            scheme,
            authority,
            prefix,
            auth,
        })
    }

    /// An OAuth portal whose tokens live in `crate::oauth`, not here: no token of its own.
    pub(crate) fn parse_oauth(url: &str, policy: HttpPolicy) -> Result<Portal, Error> {
        let mut portal = Portal::parse(url, Some("oauth"), policy)?;
        portal.auth = Auth::Token {
            token: String::new().into(),
        };
        Ok(portal)
    }

    /// True when requests authenticate with an OAuth access token (sent as `auth`).
    pub fn is_oauth(&self) -> bool {
        matches!(self.auth, Auth::Token { .. })
    }

    /// The webhook's user id, if this is a webhook.
    pub fn webhook_user(&self) -> Option<&str> {
        match &self.auth {
            Auth::Webhook { user, .. } => Some(user),
            Auth::Token { .. } => None,
        }
    }

    /// `host` or `host:port`.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The full URL of `method`, secret included. Only the transport should call this.
    pub(crate) fn endpoint(&self, method: &str) -> String {
        match &self.auth {
            Auth::Webhook { user, secret } => format!(
                "{}://{}{}rest/{}/{}/{}",
                self.scheme,
                self.authority,
                self.prefix,
                user,
                secret.expose_secret(),
                method
            ),
            Auth::Token { .. } => {
                format!(
                    "{}://{}{}rest/{}",
                    self.scheme, self.authority, self.prefix, method
                )
            }
        }
    }

    /// The URL of `method` as it may be shown: the webhook secret is masked.
    pub fn masked_endpoint(&self, method: &str) -> String {
        format!("{self}{method}")
    }

    /// The access token, for the `auth` body field.
    pub(crate) fn token(&self) -> Option<&str> {
        match &self.auth {
            Auth::Token { token } => Some(token.expose_secret()),
            Auth::Webhook { .. } => None,
        }
    }

    /// Every secret this portal carries, so that text can be scrubbed of them.
    pub(crate) fn secrets(&self) -> Vec<&str> {
        match &self.auth {
            Auth::Webhook { secret, .. } => vec![secret.expose_secret()],
            Auth::Token { token } => vec![token.expose_secret()],
        }
    }

    /// Replaces every occurrence of this portal's secrets in `text` with [`MASK`].
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in self.secrets() {
            if !secret.is_empty() {
                out = out.replace(secret, MASK);
            }
        }
        out
    }
}

/// Shows the base URL with the secret masked: `https://host/rest/1/***/` or `https://host/rest/`.
impl fmt::Display for Portal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}{}rest/",
            self.scheme, self.authority, self.prefix
        )?;
        if let Auth::Webhook { user, .. } = &self.auth {
            write!(f, "{user}/{MASK}/")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Portal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = match &self.auth {
            Auth::Webhook { .. } => "webhook",
            Auth::Token { .. } => "oauth",
        };
        f.debug_struct("Portal")
            .field("url", &self.to_string())
            .field("auth", &auth)
            .field("secret", &MASK)
            .finish()
    }
}

/// What is left before the first `/` once `https://` or `http://` is stripped must be
/// `host[:port]`. Refuses a mistyped or foreign scheme (`htp://`, `http:/`, `ftp://`, `file:`,
/// `javascript:`), which would otherwise become a host named after it that receives the
/// secret, and userinfo (`user:pass@`). Messages never quote more than a scheme's name.
fn check_scheme_and_userinfo(authority: &str) -> Result<(), String> {
    const FORM: &str = "https://PORTAL/rest/USER_ID/SECRET/, or the portal's domain with a token";
    if authority.contains('@') {
        return Err(format!(
            "must not carry a user name or password (USER:PASSWORD@ before the host); a webhook's secret goes in its path: {FORM}"
        ));
    }
    // After an IPv6 literal's `]`, or from the first `:` of anything else.
    let port = match authority.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map(|(_, after)| after),
        None => authority.find(':').map(|i| &authority[i..]),
    };
    let Some(port) = port.filter(|p| !p.is_empty()) else {
        return Ok(());
    };
    if let Some(digits) = port.strip_prefix(':')
        && !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
    {
        return Ok(());
    }
    let word = &authority[..authority.len() - port.len()];
    let scheme_like = word.starts_with(|c: char| c.is_ascii_alphabetic())
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-');
    if !scheme_like || !port.starts_with(':') {
        return Err(format!(
            "has a host with a port that is not a number; expected {FORM}"
        ));
    }
    if word == "http" || word == "https" {
        return Err(format!(
            "starts with {word}:/ (one slash); write {word}:// as in {FORM}"
        ));
    }
    Err(format!(
        "has the scheme {word}:, but only https:// (or http:// for a loopback test portal) is accepted; expected {FORM}"
    ))
}

/// Checks `host[:port]` and returns the host part.
fn validate_authority(authority: &str) -> Result<String, String> {
    if authority.is_empty() {
        return Err("has no host; expected e.g. https://portal.bitrix24.com/rest/1/SECRET/".into());
    }
    // Let the url crate judge hosts and ports: it knows IDNs, IPv6 brackets and port ranges.
    // Only host characters: `\`, `?`, `#` or `%` would let the url crate read a different
    // host, path or query than the one used to build requests.
    if authority
        .chars()
        .any(|c| c.is_ascii() && !(c.is_ascii_alphanumeric() || "-._:[]".contains(c)))
    {
        return Err(
            "is not valid: its host has a character that cannot be in a host name; expected e.g. https://portal.bitrix24.com/rest/1/SECRET/".into(),
        );
    }
    let parsed = url::Url::parse(&format!("https://{authority}/"))
        .map_err(|e| format!("host {authority:?} is not valid ({e})"))?;
    let host = parsed.host_str().unwrap_or_default();
    Ok(host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string())
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str, token: Option<&str>) -> Result<(String, String, bool), String> {
        Portal::parse(url, token, HttpPolicy::LoopbackOnly)
            .map(|p| {
                (
                    p.to_string(),
                    p.endpoint("im.notify.personal.add"),
                    p.is_oauth(),
                )
            })
            .map_err(|e| e.to_string())
    }

    #[test]
    fn normalises_like_opi() {
        let m = "im.notify.personal.add";
        let table: &[(&str, Option<&str>, &str, &str, bool)] = &[
            // (input, token, display, endpoint, oauth)
            (
                "https://b24-ar17wx.bitrix24.by/rest/1/abc",
                None,
                "https://b24-ar17wx.bitrix24.by/rest/1/***/",
                "https://b24-ar17wx.bitrix24.by/rest/1/abc/",
                false,
            ),
            (
                "  https://www.b24-ar17wx.bitrix24.by/rest/1/abc/  ",
                None,
                "https://b24-ar17wx.bitrix24.by/rest/1/***/",
                "https://b24-ar17wx.bitrix24.by/rest/1/abc/",
                false,
            ),
            (
                "b24-ar17wx.bitrix24.by/rest/1/abc/",
                None,
                "https://b24-ar17wx.bitrix24.by/rest/1/***/",
                "https://b24-ar17wx.bitrix24.by/rest/1/abc/",
                false,
            ),
            (
                "HTTPS://WWW.Portal.Bitrix24.com/rest/7/Ab",
                None,
                "https://portal.bitrix24.com/rest/7/***/",
                "https://portal.bitrix24.com/rest/7/Ab/",
                false,
            ),
            (
                "b24-ar17wx.bitrix24.by",
                Some("tok"),
                "https://b24-ar17wx.bitrix24.by/rest/",
                "https://b24-ar17wx.bitrix24.by/rest/",
                true,
            ),
            (
                "https://b24-ar17wx.bitrix24.by/",
                Some("tok"),
                "https://b24-ar17wx.bitrix24.by/rest/",
                "https://b24-ar17wx.bitrix24.by/rest/",
                true,
            ),
            (
                "www.b24-ar17wx.bitrix24.by/rest",
                Some("tok"),
                "https://b24-ar17wx.bitrix24.by/rest/",
                "https://b24-ar17wx.bitrix24.by/rest/",
                true,
            ),
            (
                "portal.example.com:8443/crm/rest/3/xyz",
                None,
                "https://portal.example.com:8443/crm/rest/3/***/",
                "https://portal.example.com:8443/crm/rest/3/xyz/",
                false,
            ),
            // http:// stays http only on loopback; without a scheme it is https, as in OPI.
            (
                "http://127.0.0.1:8080/rest/1/s",
                None,
                "http://127.0.0.1:8080/rest/1/***/",
                "http://127.0.0.1:8080/rest/1/s/",
                false,
            ),
            (
                "http://localhost:9/",
                Some("t"),
                "http://localhost:9/rest/",
                "http://localhost:9/rest/",
                true,
            ),
            (
                "http://[::1]:9/rest/1/s",
                None,
                "http://[::1]:9/rest/1/***/",
                "http://[::1]:9/rest/1/s/",
                false,
            ),
            (
                "127.0.0.1:8080/rest/1/s",
                None,
                "https://127.0.0.1:8080/rest/1/***/",
                "https://127.0.0.1:8080/rest/1/s/",
                false,
            ),
        ];
        for (input, token, display, base, oauth) in table {
            let got = parse(input, *token).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(
                got,
                (display.to_string(), format!("{base}{m}"), *oauth),
                "{input}"
            );
        }
    }

    #[test]
    fn rejects_what_cannot_work() {
        let table: &[(&str, Option<&str>, &str)] = &[
            ("", None, "url: is empty"),
            ("   ", Some("t"), "url: is empty"),
            ("portal.bitrix24.com", None, "is not a webhook URL"),
            (
                "https://portal.bitrix24.com/rest/1/",
                None,
                "is not a webhook URL",
            ),
            (
                "https://portal.bitrix24.com/rest/1/abc/",
                Some("t"),
                "a token was given too",
            ),
            (
                "https://portal.bitrix24.com/rest/1/abc/profile.json",
                None,
                "after the webhook secret",
            ),
            (
                "http://portal.bitrix24.com/rest/1/abc",
                None,
                "plain http:// is refused",
            ),
            (
                "http://10.0.0.1/rest/1/abc",
                None,
                "plain http:// is refused",
            ),
            ("https://bad host/rest/1/abc", None, "is not valid"),
            ("https:///rest/1/abc", None, "has no host"),
            ("aéééé", None, "is not a webhook URL"),
        ];
        for (input, token, needle) in table {
            let err = parse(input, *token).expect_err(input);
            assert!(err.contains(needle), "{input}: {err}");
            assert!(!err.contains("abc"), "{input} leaked the secret: {err}");
        }
    }

    #[test]
    fn insecure_http_can_be_allowed() {
        let p = Portal::parse(
            "http://portal.lan/rest/1/s",
            None,
            HttpPolicy::AllowInsecure,
        )
        .unwrap();
        assert_eq!(p.to_string(), "http://portal.lan/rest/1/***/");
    }

    #[test]
    fn secrets_are_masked_in_debug_display_and_redact() {
        let p = Portal::parse(
            "https://x.bitrix24.com/rest/1/topsecret",
            None,
            HttpPolicy::default(),
        )
        .unwrap();
        for shown in [
            format!("{p}"),
            format!("{p:?}"),
            p.masked_endpoint("m"),
            p.redact("a topsecret b"),
        ] {
            assert!(!shown.contains("topsecret"), "{shown}");
        }
        let p = Portal::parse("x.bitrix24.com", Some("tok-123"), HttpPolicy::default()).unwrap();
        assert!(!format!("{p:?}{p}").contains("tok-123"));
        assert_eq!(p.token(), Some("tok-123"));
    }
}
