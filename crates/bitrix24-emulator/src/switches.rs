//! Choices between what the portal's source does and what its documentation says.
//!
//! Where the two disagree the emulator follows the source by default, because that is what a
//! portal running that code answers; the documented behaviour stays one switch away so a client
//! can be tested against both.

use std::fmt;
use std::str::FromStr;

/// HTTP status of authentication errors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AuthErrorStatus {
    /// Every auth error is 401: `OAuthException` without `error_status` (the server source).
    #[default]
    Source,
    /// `_includes/system-errors.md`: `NO_AUTH_FOUND` and `expired_token` 401;
    /// `INVALID_CREDENTIALS`, `insufficient_scope` and `user_access_error` 403;
    /// `INVALID_REQUEST` 400.
    Docs,
}

impl AuthErrorStatus {
    /// The status to answer an error `code` with, given the status the emulator chose.
    pub fn status(self, code: &str, status: u16) -> u16 {
        match self {
            AuthErrorStatus::Source => status,
            AuthErrorStatus::Docs => match code {
                "NO_AUTH_FOUND" | "expired_token" => 401,
                "INVALID_CREDENTIALS" | "insufficient_scope" | "user_access_error" => 403,
                "INVALID_REQUEST" => 400,
                _ => status,
            },
        }
    }
}

/// Shape of the `im.notify.read.all` result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReadAllResult {
    /// `{"result": true, "newCounter": N}`, as documented (newer portals).
    #[default]
    Docs,
    /// `true`, as in the older server source.
    Source,
}

/// Whether a webhook's TAG/SUB_TAG survive `im.notify.*add` (portal-behaviour §6.2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WebhookTags {
    /// Dropped, `CLIENT_ID` or not: `notifyAdd` reads no `CLIENT_ID` (the server source).
    #[default]
    Source,
    /// Kept when the call names a `CLIENT_ID`, stored under `custom<CLIENT_ID>` as
    /// `im.notify.delete` keys a webhook's tags (the method pages).
    Docs,
}

/// All switches together, as the store keeps them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Switches {
    pub auth_error_status: AuthErrorStatus,
    pub read_all_result: ReadAllResult,
    pub webhook_tags: WebhookTags,
}

impl Switches {
    /// An error answer with its status chosen by [`AuthErrorStatus`].
    pub fn adjust(&self, mut e: crate::error::ApiError) -> crate::error::ApiError {
        e.status = self.auth_error_status.status(e.code, e.status);
        e
    }
}

/// A switch value that is neither `source` nor `docs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownChoice(pub String);

impl fmt::Display for UnknownChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "expected 'source' or 'docs', got '{}'", self.0)
    }
}

impl std::error::Error for UnknownChoice {}

impl FromStr for AuthErrorStatus {
    type Err = UnknownChoice;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "source" => Ok(AuthErrorStatus::Source),
            "docs" => Ok(AuthErrorStatus::Docs),
            other => Err(UnknownChoice(other.to_owned())),
        }
    }
}

impl FromStr for ReadAllResult {
    type Err = UnknownChoice;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "source" => Ok(ReadAllResult::Source),
            "docs" => Ok(ReadAllResult::Docs),
            other => Err(UnknownChoice(other.to_owned())),
        }
    }
}

impl FromStr for WebhookTags {
    type Err = UnknownChoice;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "source" => Ok(WebhookTags::Source),
            "docs" => Ok(WebhookTags::Docs),
            other => Err(UnknownChoice(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_statuses() {
        let docs = AuthErrorStatus::Docs;
        assert_eq!(docs.status("INVALID_CREDENTIALS", 401), 403);
        assert_eq!(docs.status("insufficient_scope", 401), 403);
        assert_eq!(docs.status("expired_token", 401), 401);
        assert_eq!(docs.status("NO_AUTH_FOUND", 401), 401);
        assert_eq!(docs.status("USER_ID_EMPTY", 400), 400);
        assert_eq!(
            AuthErrorStatus::Source.status("INVALID_CREDENTIALS", 401),
            401
        );
        assert_eq!("docs".parse::<ReadAllResult>(), Ok(ReadAllResult::Docs));
        assert!("x".parse::<AuthErrorStatus>().is_err());
        assert_eq!("docs".parse::<WebhookTags>(), Ok(WebhookTags::Docs));
        assert!("both".parse::<WebhookTags>().is_err());
    }
}
