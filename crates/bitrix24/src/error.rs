//! One error type for everything a call can run into.
//!
//! Callers mostly need to know *who* failed: the portal refused the call ([`Error::Api`], with
//! its code, description and HTTP status), the network or TLS failed ([`Error::Transport`]), the
//! portal answered something that is not a Bitrix24 answer ([`Error::Decode`], raw body kept),
//! or the caller's own input was wrong before anything was sent ([`Error::InvalidArgument`]).
//! No variant ever holds a webhook secret or token: URLs are masked and bodies scrubbed before
//! an error is built.

use std::fmt;

/// Everything that can go wrong when calling a portal.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The portal answered with `{"error": …, "error_description": …}`.
    #[error(transparent)]
    Api(Box<ApiError>),

    /// The request did not complete: DNS, connect, TLS, timeout or a dropped connection.
    #[error("could not reach {url}: {message}")]
    Transport {
        /// The endpoint with its secret masked.
        url: String,
        /// What failed, without the URL.
        message: String,
        /// True when the request timed out.
        timeout: bool,
        /// True when no connection was made, so the portal cannot have run the call.
        connect: bool,
    },

    /// The portal's answer is not a Bitrix24 answer (not JSON, or neither `result` nor `error`).
    #[error("the portal answered HTTP {status} with {reason}")]
    Decode {
        /// HTTP status of the answer.
        status: u16,
        /// Why it could not be read.
        reason: String,
        /// The raw body, scrubbed of secrets.
        body: String,
    },

    /// The request may or may not have taken effect (a server error, a timeout or a dropped
    /// connection after it was sent), and sending it again could duplicate it, so it was not.
    /// Check the portal before sending it again, or give it a tag so that a resend replaces it.
    #[error(
        "{method} may or may not have taken effect after {attempts} attempt(s) ({cause}); it was not sent again because a second copy could be a duplicate"
    )]
    OutcomeUnknown {
        /// The method.
        method: String,
        /// Attempts made.
        attempts: u32,
        /// The last attempt's error.
        cause: Box<Error>,
    },

    /// A limit would make the request wait past its deadline; it was not sent.
    #[error("{method} was not sent: {reason}; it could go in {} s", wait.as_secs())]
    Limited {
        /// The method.
        method: String,
        /// How long it would have had to wait.
        wait: std::time::Duration,
        /// Which limit.
        reason: String,
    },

    /// The caller's input is wrong; nothing was sent.
    #[error("{field}: {message}")]
    InvalidArgument {
        /// The parameter at fault, as the caller knows it.
        field: String,
        /// What is wrong and how to fix it.
        message: String,
    },

    /// The OAuth token store could not be read, locked or written.
    #[error("{message}")]
    TokenStore {
        /// What failed, naming the store (a path, never a token).
        message: String,
    },
}

impl From<ApiError> for Error {
    fn from(e: ApiError) -> Self {
        Error::Api(Box::new(e))
    }
}

impl Error {
    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Error {
        Error::InvalidArgument {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The portal's error, if the portal answered with one.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            Error::Api(e) => Some(e),
            _ => None,
        }
    }

    /// True for authentication and authorization failures: bad or expired credentials, missing
    /// scope, an auth type the method refuses.
    pub fn is_auth(&self) -> bool {
        self.api().is_some_and(|e| e.code.is_auth())
    }

    /// True when the OAuth server refused to refresh the access token (`invalid_grant`,
    /// `invalid_client`): retrying cannot help, the application must be authorized again or
    /// its client id and secret fixed.
    pub fn needs_reauthorization(&self) -> bool {
        self.api()
            .is_some_and(|e| matches!(e.code, ErrorCode::InvalidGrant | ErrorCode::InvalidClient))
    }
}

/// An error answer from the portal.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The `error` field.
    pub code: ErrorCode,
    /// The `error_description` field (may be empty).
    pub description: String,
    /// The HTTP status of the answer.
    pub status: u16,
    /// The whole answer as JSON, for callers that print it unchanged.
    pub body: serde_json::Value,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The OAuth server's refusals come from oauth.bitrix.info, not the portal.
        let server = match self.code {
            ErrorCode::InvalidGrant | ErrorCode::InvalidClient => "the OAuth server",
            _ => "the portal",
        };
        write!(f, "{server} answered {} (HTTP {})", self.code, self.status)?;
        if !self.description.is_empty() {
            write!(f, ": {}", self.description)?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

macro_rules! error_codes {
    ($( $(#[$doc:meta])* $variant:ident = $text:literal, )*) => {
        /// A Bitrix24 error code. Codes are compared exactly as the portal spells them
        /// (some are upper case, OAuth ones lower case); unknown codes are kept in [`ErrorCode::Other`].
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $( $(#[$doc])* $variant, )*
            /// Any code this crate does not name.
            Other(String),
        }

        impl ErrorCode {
            /// The code as the portal spells it.
            pub fn as_str(&self) -> &str {
                match self {
                    $( ErrorCode::$variant => $text, )*
                    ErrorCode::Other(code) => code,
                }
            }
        }

        impl From<&str> for ErrorCode {
            fn from(code: &str) -> Self {
                match code {
                    $( $text => ErrorCode::$variant, )*
                    other => ErrorCode::Other(other.to_string()),
                }
            }
        }
    };
}

error_codes! {
    /// No credentials in the request.
    NoAuthFound = "NO_AUTH_FOUND",
    /// Unknown webhook user or secret.
    InvalidCredentials = "INVALID_CREDENTIALS",
    /// The OAuth access token has expired; refresh it.
    ExpiredToken = "expired_token",
    /// The OAuth access token is not known.
    InvalidToken = "invalid_token",
    /// The webhook or token lacks the method's scope.
    InsufficientScope = "insufficient_scope",
    /// The method refuses this kind of authentication.
    WrongAuthType = "WRONG_AUTH_TYPE",
    /// The portal could not authorize the user.
    AuthorizationError = "authorization_error",
    /// The user may not use this application.
    UserAccessError = "user_access_error",
    /// The request is malformed (e.g. a webhook called over http).
    InvalidRequest = "INVALID_REQUEST",
    /// Access denied.
    AccessDenied = "ACCESS_DENIED",
    /// `USER_ID` is missing or not a positive number.
    UserIdEmpty = "USER_ID_EMPTY",
    /// `MESSAGE` is missing or blank.
    MessageEmpty = "MESSAGE_EMPTY",
    /// `ATTACH` could not be read as an attachment.
    AttachError = "ATTACH_ERROR",
    /// The normalised `ATTACH` is 60,000 characters or longer.
    AttachOversize = "ATTACH_OVERSIZE",
    /// Parameters are wrong.
    ParamsError = "PARAMS_ERROR",
    /// Over the request rate limit; the call was not executed.
    QueryLimitExceeded = "QUERY_LIMIT_EXCEEDED",
    /// The method's operating-time budget is spent.
    OperationTimeLimit = "OPERATION_TIME_LIMIT",
    /// REST is blocked for this portal by hand.
    OverloadLimit = "OVERLOAD_LIMIT",
    /// No such method.
    MethodNotFound = "ERROR_METHOD_NOT_FOUND",
    /// The portal failed internally.
    InternalServerError = "INTERNAL_SERVER_ERROR",
    /// The portal failed internally.
    ErrorCore = "ERROR_CORE",
    /// OAuth server: the refresh token is used, expired, revoked or another app's.
    InvalidGrant = "invalid_grant",
    /// OAuth server: the client id or secret is wrong.
    InvalidClient = "invalid_client",
}

impl ErrorCode {
    /// True for codes that mean the credentials are missing, wrong, expired or not enough.
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            ErrorCode::NoAuthFound
                | ErrorCode::InvalidCredentials
                | ErrorCode::ExpiredToken
                | ErrorCode::InvalidToken
                | ErrorCode::InsufficientScope
                | ErrorCode::WrongAuthType
                | ErrorCode::AuthorizationError
                | ErrorCode::UserAccessError
                | ErrorCode::AccessDenied
                | ErrorCode::InvalidGrant
                | ErrorCode::InvalidClient
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A JSON value's kind as messages name it: "a list", "an object", "null"….
pub(crate) fn json_kind(v: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_unknown_ones_are_kept() {
        for code in [
            "NO_AUTH_FOUND",
            "expired_token",
            "ATTACH_OVERSIZE",
            "QUERY_LIMIT_EXCEEDED",
            "SOMETHING_NEW",
        ] {
            assert_eq!(ErrorCode::from(code).as_str(), code);
        }
        assert_eq!(
            ErrorCode::from("SOMETHING_NEW"),
            ErrorCode::Other("SOMETHING_NEW".into())
        );
        // The portal's spelling is exact: "EXPIRED_TOKEN" is not the OAuth code.
        assert!(matches!(
            ErrorCode::from("EXPIRED_TOKEN"),
            ErrorCode::Other(_)
        ));
    }

    #[test]
    fn auth_codes_are_classified() {
        assert!(ErrorCode::ExpiredToken.is_auth());
        assert!(ErrorCode::InvalidCredentials.is_auth());
        assert!(!ErrorCode::UserIdEmpty.is_auth());
        assert!(!ErrorCode::QueryLimitExceeded.is_auth());
    }
}
