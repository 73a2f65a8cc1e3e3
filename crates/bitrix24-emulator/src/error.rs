//! Errors: the portal's API errors, and the emulator's own start-up errors.
//!
//! `ApiError` is what the portal answers with (`{"error": CODE, "error_description": MSG}` and an
//! HTTP status). Every code the emulator can produce has a constructor here, so codes, texts and
//! statuses are written once and match docs/portal-behaviour.md §2.12, §3.3, and later work (switchable statuses, fault
//! injection) has a single place to hook into.

use std::net::SocketAddr;

/// Errors from starting or running the emulator (not API answers).
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// Other I/O failure.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The SQLite data file could not be opened, read or written.
    #[error("data file error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Another emulator is using the same `--data` file.
    #[error(
        "data file {} is in use by another emulator; stop it or use another --data file",
        path.display()
    )]
    DataInUse { path: std::path::PathBuf },
    /// A configuration value is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The TLS certificate or server configuration could not be made.
    #[error("TLS setup failed: {0}")]
    Tls(String),
}

/// HTTP status of every authentication error.
///
/// The server source raises them all as `OAuthException` without `error_status`, which means 401;
/// the docs say 403 for some codes. Kept in one place so it can become switchable.
pub const AUTH_ERROR_STATUS: u16 = 401;

/// An error answer of the REST API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: &'static str,
    pub description: String,
    pub status: u16,
}

impl ApiError {
    pub fn new(code: &'static str, description: impl Into<String>, status: u16) -> Self {
        ApiError {
            code,
            description: description.into(),
            status,
        }
    }

    // --- routing / core -------------------------------------------------------------------

    pub fn method_not_found() -> Self {
        Self::new("ERROR_METHOD_NOT_FOUND", "Method not found!", 404)
    }

    /// An uncaught database error (`ERROR_CORE`, 500).
    pub fn core(description: impl Into<String>) -> Self {
        Self::new("ERROR_CORE", description, 500)
    }

    // --- authentication -------------------------------------------------------------------

    pub fn no_auth_found() -> Self {
        Self::new(
            "NO_AUTH_FOUND",
            "Wrong authorization data",
            AUTH_ERROR_STATUS,
        )
    }

    pub fn invalid_credentials() -> Self {
        Self::new(
            "INVALID_CREDENTIALS",
            "Invalid request credentials",
            AUTH_ERROR_STATUS,
        )
    }

    pub fn expired_token() -> Self {
        Self::new(
            "expired_token",
            "The access token provided has expired",
            AUTH_ERROR_STATUS,
        )
    }

    pub fn invalid_token() -> Self {
        Self::new(
            "invalid_token",
            "The access token provided is invalid.",
            AUTH_ERROR_STATUS,
        )
    }

    // --- im.notify ------------------------------------------------------------------------

    pub fn user_id_empty() -> Self {
        Self::new("USER_ID_EMPTY", "User ID can't be empty", 400)
    }

    pub fn message_empty() -> Self {
        Self::new("MESSAGE_EMPTY", "Message can't be empty", 400)
    }

    pub fn attach_oversize() -> Self {
        Self::new(
            "ATTACH_OVERSIZE",
            "You have exceeded the maximum allowable size of attach",
            400,
        )
    }

    pub fn attach_error() -> Self {
        Self::new("ATTACH_ERROR", "Incorrect attach params", 400)
    }

    pub fn params_error() -> Self {
        Self::new("PARAMS_ERROR", "Incorrect params", 400)
    }

    // --- im.notify read / confirm / answer / get / search ----------------------------------

    pub fn ids_not_array() -> Self {
        Self::new("PARAMS_ERROR", "No IDS param or it is not an array", 400)
    }

    pub fn id_error() -> Self {
        Self::new("ID_ERROR", "Notification ID can't be empty", 400)
    }

    /// Two spaces, as in the server source.
    pub fn notify_value_error() -> Self {
        Self::new(
            "NOTIFY_VALUE_ERROR",
            "Notification Value  can't be empty",
            400,
        )
    }

    pub fn answer_text_error() -> Self {
        Self::new("ANSWER_TEXT_ERROR", "ANSWER_TEXT can't be empty", 400)
    }

    pub fn last_id_and_last_type() -> Self {
        Self::new(
            "LAST_ID_AND_LAST_TYPE",
            "Parameters LAST_ID and LAST_TYPE should be used together.",
            400,
        )
    }

    pub fn last_id_string() -> Self {
        Self::new(
            "LAST_ID_STRING",
            "Last notification ID can't be string",
            400,
        )
    }

    /// "then", as in the server source (the docs say "than").
    pub fn search_text_error() -> Self {
        Self::new(
            "SEARCH_TEXT_ERROR",
            "SEARCH_TEXT can't be less then 3 symbols",
            400,
        )
    }

    /// `AccessException`: "Access denied!" plus a detail, 403.
    pub fn access_denied(detail: &str) -> Self {
        let description = if detail.is_empty() {
            "Access denied!".to_owned()
        } else {
            format!("Access denied! {detail}")
        };
        Self::new("ACCESS_DENIED", description, 403)
    }
}

// --- limits -----------------------------------------------------------------------------

impl ApiError {
    /// The request-rate limit (leaky bucket) is exceeded: 503, nothing executed.
    pub fn query_limit_exceeded() -> Self {
        Self::new("QUERY_LIMIT_EXCEEDED", "Too many requests", 503)
    }

    /// The method has used its operating-time budget: 429, nothing executed.
    pub fn operation_time_limit() -> Self {
        Self::new(
            "OPERATION_TIME_LIMIT",
            "Method is blocked due to operation time limit.",
            429,
        )
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.status, self.description)
    }
}

impl std::error::Error for ApiError {}
