//! The control plane: what tests and tools use to see and steer the emulated portal. Not part
//! of the Bitrix24 API.
//!
//! Each operation is a method of [`AppState`] (and, delegating, of [`Emulator`]) taking and
//! returning what the HTTP endpoints under `/_emulator/` take and return; the endpoints only
//! add JSON decoding and status codes. In-process tests call the methods; other processes (the
//! `b24-emulator` binary, tests of other languages) use HTTP, and both read the same state.
//!
//! | HTTP | method |
//! |---|---|
//! | `GET /_emulator/notifications` | [`AppState::notifications`] |
//! | `POST /_emulator/notifications` | [`AppState::seed_notifications`] |
//! | `POST /_emulator/reset` | [`AppState::reset`] |
//! | `GET`, `POST`, `DELETE /_emulator/faults` | [`AppState::faults`], [`AppState::add_faults`], [`AppState::clear_faults`] |
//! | `GET /_emulator/requests` | [`AppState::requests`] |
//! | `POST /_emulator/oauth/issue` | [`AppState::issue_tokens`] |
//! | `GET /_emulator/oauth/refreshes` | [`AppState::refreshes`] |

use std::fmt;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::requests::Entry;
use crate::{AppState, Emulator, faults, oauth, seed};

/// A refused control request: the `error` code and description the HTTP endpoint answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlError {
    /// HTTP status of the endpoint's answer: 400 for bad input, 500 for a store failure.
    pub status: u16,
    /// `INVALID_FAULT`, `INVALID_SEED`, `invalid_request` or `ERROR_CORE`.
    pub code: &'static str,
    pub description: String,
}

impl ControlError {
    pub(crate) fn bad(code: &'static str, description: impl Into<String>) -> ControlError {
        ControlError {
            status: 400,
            code,
            description: description.into(),
        }
    }

    pub(crate) fn core(e: impl fmt::Display) -> ControlError {
        ControlError {
            status: 500,
            code: "ERROR_CORE",
            description: e.to_string(),
        }
    }
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.description)
    }
}

impl std::error::Error for ControlError {}

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let body = json!({"error": self.code, "error_description": self.description});
        (status, axum::Json(body)).into_response()
    }
}

/// The OAuth server's token-endpoint counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Refreshes {
    /// Refreshes that issued a new pair.
    pub succeeded: u64,
    /// Token requests that were refused.
    pub failed: u64,
}

/// One REST call the emulator received, from the request log (see [`AppState::requests`]).
pub type RequestRecord = Entry;

impl AppState {
    /// Append fault rules (one rule object or an array, as `POST /_emulator/faults` takes
    /// them); answers the active rules. Nothing is added when a rule is invalid.
    pub fn add_faults(&self, rules: &Value) -> Result<Vec<Value>, ControlError> {
        let rules =
            faults::parse_rules(rules).map_err(|e| ControlError::bad("INVALID_FAULT", e))?;
        self.pipeline.faults.add(rules);
        Ok(self.faults())
    }

    /// Replace every fault rule with these (same input as [`add_faults`](Self::add_faults)).
    pub fn set_faults(&self, rules: &Value) -> Result<Vec<Value>, ControlError> {
        let rules =
            faults::parse_rules(rules).map_err(|e| ControlError::bad("INVALID_FAULT", e))?;
        self.pipeline.faults.replace(rules);
        Ok(self.faults())
    }

    /// The rules that have hits left, with their counters as they are now.
    pub fn faults(&self) -> Vec<Value> {
        self.pipeline.faults.list()
    }

    pub fn clear_faults(&self) {
        self.pipeline.faults.clear();
    }

    /// Every REST call received (the newest 100,000), oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.pipeline.log.snapshot()
    }

    /// Forget every notification, fault rule, logged request, rate-limit and operating-time
    /// state. Users, webhooks, apps and tokens stay.
    pub fn reset(&self) -> Result<(), ControlError> {
        self.pipeline.reset();
        self.store.reset().map_err(|e| {
            tracing::error!(error = %e, "reset failed");
            ControlError::core(e)
        })
    }

    /// Store notifications as given (see `POST /_emulator/notifications` in the README): one
    /// object answers the stored notification, an array (all or nothing) the list.
    pub fn seed_notifications(&self, body: &Value) -> Result<Value, ControlError> {
        seed::seed(self, body)
    }

    /// A fresh token pair, as `POST /_emulator/oauth/issue` answers it (`{"user_id": N,
    /// "client_id"?, "ttl"?, "refresh_ttl"?}`); the endpoints in the answer name `origin`
    /// (`scheme`, `host:port`).
    pub fn issue_tokens(&self, body: &Value, origin: (&str, &str)) -> Result<Value, ControlError> {
        oauth::issue(self, body, origin)
    }

    pub fn refreshes(&self) -> Refreshes {
        let (succeeded, failed) = self.oauth.refreshes();
        Refreshes { succeeded, failed }
    }
}

/// The same operations on a running emulator.
impl Emulator {
    /// See [`AppState::add_faults`].
    pub fn add_faults(&self, rules: &Value) -> Result<Vec<Value>, ControlError> {
        self.state.add_faults(rules)
    }

    /// See [`AppState::set_faults`].
    pub fn set_faults(&self, rules: &Value) -> Result<Vec<Value>, ControlError> {
        self.state.set_faults(rules)
    }

    /// See [`AppState::faults`].
    pub fn faults(&self) -> Vec<Value> {
        self.state.faults()
    }

    pub fn clear_faults(&self) {
        self.state.clear_faults();
    }

    /// See [`AppState::requests`].
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.state.requests()
    }

    /// See [`AppState::reset`].
    pub fn reset(&self) -> Result<(), ControlError> {
        self.state.reset()
    }

    /// See [`AppState::seed_notifications`].
    pub fn seed_notifications(&self, body: &Value) -> Result<Value, ControlError> {
        self.state.seed_notifications(body)
    }

    /// See [`AppState::issue_tokens`]; the endpoints name this emulator's address.
    pub fn issue_tokens(&self, body: &Value) -> Result<Value, ControlError> {
        let url = self.url();
        let (scheme, host) = url.split_once("://").unwrap_or(("http", &url));
        self.state.issue_tokens(body, (scheme, host))
    }

    pub fn refreshes(&self) -> Refreshes {
        self.state.refreshes()
    }
}

/// The `/_emulator/*` routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/_emulator/notifications",
            get(list_notifications).post(seed_notifications),
        )
        .route("/_emulator/reset", post(reset))
        .route(
            "/_emulator/faults",
            get(list_faults).post(add_faults).delete(clear_faults),
        )
        .route("/_emulator/requests", get(list_requests))
        .route("/_emulator/oauth/issue", post(issue_tokens))
        .route("/_emulator/oauth/refreshes", get(refreshes))
}

fn answer(result: Result<Value, ControlError>) -> Response {
    match result {
        Ok(body) => axum::Json(body).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn list_notifications(State(state): State<AppState>) -> Response {
    axum::Json(state.notifications()).into_response()
}

async fn seed_notifications(State(state): State<AppState>, body: Bytes) -> Response {
    let parsed = serde_json::from_slice::<Value>(&body)
        .map_err(|_| ControlError::bad("INVALID_SEED", "the body must be JSON"));
    answer(parsed.and_then(|v| state.seed_notifications(&v)))
}

async fn reset(State(state): State<AppState>) -> Response {
    answer(state.reset().map(|()| json!({"result": true})))
}

/// `POST /_emulator/faults`: append rules (an array, or one object); answers the active rules.
async fn add_faults(State(state): State<AppState>, body: Bytes) -> Response {
    let parsed = serde_json::from_slice::<Value>(&body)
        .map_err(|e| ControlError::bad("INVALID_FAULT", format!("invalid JSON: {e}")));
    answer(parsed.and_then(|v| state.add_faults(&v).map(Value::from)))
}

async fn list_faults(State(state): State<AppState>) -> Response {
    axum::Json(state.faults()).into_response()
}

async fn clear_faults(State(state): State<AppState>) -> Response {
    state.clear_faults();
    axum::Json(json!({"result": true})).into_response()
}

async fn list_requests(State(state): State<AppState>) -> Response {
    axum::Json(state.requests()).into_response()
}

async fn issue_tokens(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    extensions: axum::http::Extensions,
    body: Bytes,
) -> Response {
    let (scheme, host) = oauth::origin(&headers, &uri, &extensions);
    let parsed = serde_json::from_slice::<Value>(&body)
        .map_err(|_| ControlError::bad("invalid_request", oauth::ISSUE_USAGE));
    answer(parsed.and_then(|v| state.issue_tokens(&v, (&scheme, &host))))
}

async fn refreshes(State(state): State<AppState>) -> Response {
    axum::Json(state.refreshes()).into_response()
}
