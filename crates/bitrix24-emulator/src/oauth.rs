//! The OAuth server (the role `oauth.bitrix.info` plays for a real portal): token refresh,
//! plus a control-plane endpoint that hands out fresh token pairs to tests.
//!
//! Refresh is where OAuth clients break: two workers refresh with the same refresh token, a
//! rotated token is not saved, an expired access token is retried forever. So the emulator
//! rotates refresh tokens strictly: each one works once, under one lock, and a second use gets
//! `invalid_grant`, which is exactly what a racing client sees on a real portal. The old access
//! token keeps working until its own expiry (refresh does not revoke it; nothing in the docs
//! says otherwise). Issued access tokens live in the [`Store`] next to the configured ones, so
//! `auth.rs` checks them the same way.
//!
//! With a data file, issued tokens are written through to SQLite (own connection, same file)
//! and survive restarts.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use md5::{Digest, Md5};
use rusqlite::{Connection, params};
use serde::Deserialize as _;
use serde_json::{Map, Value, json};

use crate::control::ControlError;
use crate::store::{AccessToken, Store};
use crate::{AppState, Error, php};

/// Refresh tokens live 180 days (`settings/oauth/auto-renewal.md`).
pub const REFRESH_TOKEN_TTL: u64 = 180 * 86_400;

/// The scope every issued token reports.
pub const SCOPE: &str = "im,user";

/// Application status on the portal: `L`, a local application.
const APP_STATUS: &str = "L";

/// The grant types oauth2-php (which the Bitrix OAuth server derives from) accepts as
/// well-formed; anything else is an `invalid_request`, these but `refresh_token` are
/// `unsupported_grant_type` here.
const WELL_FORMED_GRANTS: [&str; 5] = [
    "authorization_code",
    "token",
    "password",
    "client_credentials",
    "refresh_token",
];

/// What a refresh token grants.
#[derive(Clone)]
struct Grant {
    user_id: u64,
    client_id: String,
    expires_at: u64,
}

/// A freshly issued token pair. Tokens are kept out of `Debug`.
#[derive(Clone)]
pub struct Issued {
    pub access_token: String,
    pub refresh_token: String,
    pub user_id: u64,
    pub client_id: String,
    pub expires_in: u64,
    /// Unix time the access token expires.
    pub expires: u64,
}

impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issued")
            .field("access_token", &"***")
            .field("refresh_token", &"***")
            .field("user_id", &self.user_id)
            .field("client_id", &self.client_id)
            .field("expires", &self.expires)
            .finish()
    }
}

/// An OAuth-server error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenError {
    pub code: &'static str,
    pub description: &'static str,
    pub status: u16,
}

impl TokenError {
    fn invalid_request(description: &'static str) -> Self {
        TokenError {
            code: "invalid_request",
            description,
            status: 400,
        }
    }

    /// 401, as b24phpsdk's `handleOAuthError` expects for `invalid_client`.
    fn invalid_client() -> Self {
        TokenError {
            code: "invalid_client",
            description: "Invalid client credentials",
            status: 401,
        }
    }

    /// 400, as b24phpsdk's `handleOAuthError` expects for `invalid_grant`.
    fn invalid_grant(description: &'static str) -> Self {
        TokenError {
            code: "invalid_grant",
            description,
            status: 400,
        }
    }

    fn unsupported_grant_type() -> Self {
        TokenError {
            code: "unsupported_grant_type",
            description: "The authorization grant type is not supported by the authorization server",
            status: 400,
        }
    }

    fn server_error() -> Self {
        TokenError {
            code: "server_error",
            description: "The token could not be issued",
            status: 500,
        }
    }
}

pub struct OAuthServer {
    inner: Mutex<Inner>,
    /// Lifetime of issued access tokens.
    token_ttl: u64,
    succeeded: AtomicU64,
    failed: AtomicU64,
}

struct Inner {
    /// client id → secret.
    apps: HashMap<String, String>,
    refresh: HashMap<String, Grant>,
    db: Option<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS oauth_access_tokens (
    token      TEXT PRIMARY KEY,
    user_id    INTEGER NOT NULL,
    client_id  TEXT    NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS oauth_refresh_tokens (
    token      TEXT PRIMARY KEY,
    user_id    INTEGER NOT NULL,
    client_id  TEXT    NOT NULL,
    expires_at INTEGER NOT NULL
);
";

impl OAuthServer {
    /// `apps` are `(client id, secret)`; with `data`, earlier issued tokens are loaded back
    /// (access tokens into `store`).
    pub fn open(
        apps: &[(String, String)],
        token_ttl: u64,
        data: Option<&Path>,
        store: &Store,
        now: u64,
    ) -> Result<OAuthServer, Error> {
        let mut inner = Inner {
            apps: apps.iter().cloned().collect(),
            refresh: HashMap::new(),
            db: None,
        };
        if let Some(path) = data {
            let db = Connection::open(path)?;
            db.busy_timeout(std::time::Duration::from_secs(5))?;
            db.execute_batch(SCHEMA)?;
            // Expired refresh tokens are useless; expired access tokens are kept a day so they
            // still answer `expired_token` rather than `invalid_token`.
            db.execute(
                "DELETE FROM oauth_refresh_tokens WHERE expires_at <= ?1",
                params![now as i64],
            )?;
            db.execute(
                "DELETE FROM oauth_access_tokens WHERE expires_at <= ?1",
                params![now.saturating_sub(86_400) as i64],
            )?;
            for (token, grant) in load(&db, "oauth_access_tokens")? {
                store.insert_access_token(
                    token,
                    AccessToken {
                        user_id: grant.user_id,
                        client_id: grant.client_id,
                        expires_at: grant.expires_at,
                    },
                );
            }
            inner.refresh = load(&db, "oauth_refresh_tokens")?.into_iter().collect();
            inner.db = Some(db);
        }
        Ok(OAuthServer {
            inner: Mutex::new(inner),
            token_ttl,
            succeeded: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn has_app(&self, client_id: &str) -> bool {
        self.lock().apps.contains_key(client_id)
    }

    /// `(succeeded, failed)` token-endpoint requests.
    pub fn refreshes(&self) -> (u64, u64) {
        (
            self.succeeded.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }

    /// A new token pair for `user_id` and `client_id` (control plane). `ttl` overrides the
    /// access-token lifetime, `refresh_ttl` the refresh token's 180 days.
    pub fn issue(
        &self,
        store: &Store,
        user_id: u64,
        client_id: &str,
        ttl: Option<u64>,
        refresh_ttl: Option<u64>,
        now: u64,
    ) -> Result<Issued, TokenError> {
        let mut inner = self.lock();
        self.issue_locked(
            &mut inner,
            store,
            user_id,
            client_id,
            ttl.unwrap_or(self.token_ttl),
            refresh_ttl.unwrap_or(REFRESH_TOKEN_TTL),
            None,
            now,
        )
    }

    /// `grant_type=refresh_token`, checked in oauth2-php's order: grant type, client
    /// credentials, then the refresh token, which is consumed atomically.
    pub fn token(
        &self,
        store: &Store,
        p: &Map<String, Value>,
        now: u64,
    ) -> Result<Issued, TokenError> {
        let result = self.token_inner(store, p, now);
        let counter = if result.is_ok() {
            &self.succeeded
        } else {
            &self.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }

    fn token_inner(
        &self,
        store: &Store,
        p: &Map<String, Value>,
        now: u64,
    ) -> Result<Issued, TokenError> {
        let get = |key: &str| {
            p.get(key)
                .and_then(php::scalar_string)
                .filter(|s| !s.is_empty())
        };
        let grant_type = get("grant_type")
            .filter(|g| WELL_FORMED_GRANTS.contains(&g.as_str()) || g.starts_with("http://"))
            .ok_or(TokenError::invalid_request(
                "Invalid grant_type parameter or parameter missing",
            ))?;
        let (Some(client_id), Some(client_secret)) = (get("client_id"), get("client_secret"))
        else {
            return Err(TokenError::invalid_request(
                "client_id and client_secret are required",
            ));
        };
        let mut inner = self.lock();
        if inner.apps.get(&client_id) != Some(&client_secret) {
            return Err(TokenError::invalid_client());
        }
        match grant_type.as_str() {
            "refresh_token" => {}
            // No authorization codes are ever handed out, so none can be valid.
            "authorization_code" => {
                return Err(match get("code") {
                    None => TokenError::invalid_request("No \"code\" parameter found"),
                    Some(_) => TokenError::invalid_grant("Invalid authorization code"),
                });
            }
            _ => return Err(TokenError::unsupported_grant_type()),
        }
        let refresh_token = get("refresh_token").ok_or(TokenError::invalid_request(
            "No \"refresh_token\" parameter found",
        ))?;
        let grant = match inner.refresh.get(&refresh_token) {
            Some(g) if g.client_id == client_id => g.clone(),
            _ => return Err(TokenError::invalid_grant("Invalid refresh token")),
        };
        if grant.expires_at <= now {
            return Err(TokenError::invalid_grant("Refresh token has expired"));
        }
        self.issue_locked(
            &mut inner,
            store,
            grant.user_id,
            &client_id,
            self.token_ttl,
            REFRESH_TOKEN_TTL,
            Some(&refresh_token),
            now,
        )
    }

    /// Mint a pair, consuming `replaces` (a refresh token) in the same step. Written to the
    /// data file first, so memory never holds what the file lost.
    #[allow(clippy::too_many_arguments)]
    fn issue_locked(
        &self,
        inner: &mut Inner,
        store: &Store,
        user_id: u64,
        client_id: &str,
        ttl: u64,
        refresh_ttl: u64,
        replaces: Option<&str>,
        now: u64,
    ) -> Result<Issued, TokenError> {
        let (Some(access_token), Some(refresh_token)) = (random_token(), random_token()) else {
            return Err(TokenError::server_error());
        };
        let expires = now.saturating_add(ttl);
        let refresh = Grant {
            user_id,
            client_id: client_id.to_owned(),
            expires_at: now.saturating_add(refresh_ttl),
        };
        if let Some(db) = inner.db.as_mut() {
            let written = (|| {
                let tx = db.transaction()?;
                if let Some(old) = replaces {
                    tx.execute(
                        "DELETE FROM oauth_refresh_tokens WHERE token = ?1",
                        params![old],
                    )?;
                }
                tx.execute(
                    "INSERT INTO oauth_refresh_tokens (token, user_id, client_id, expires_at) VALUES (?1, ?2, ?3, ?4)",
                    params![refresh_token, user_id as i64, client_id, refresh.expires_at as i64],
                )?;
                tx.execute(
                    "INSERT INTO oauth_access_tokens (token, user_id, client_id, expires_at) VALUES (?1, ?2, ?3, ?4)",
                    params![access_token, user_id as i64, client_id, expires as i64],
                )?;
                tx.commit()
            })();
            if let Err(e) = written {
                tracing::error!(error = %e, "cannot store issued tokens");
                return Err(TokenError::server_error());
            }
        }
        if let Some(old) = replaces {
            inner.refresh.remove(old);
        }
        inner.refresh.insert(refresh_token.clone(), refresh);
        store.insert_access_token(
            access_token.clone(),
            AccessToken {
                user_id,
                client_id: client_id.to_owned(),
                expires_at: expires,
            },
        );
        Ok(Issued {
            access_token,
            refresh_token,
            user_id,
            client_id: client_id.to_owned(),
            expires_in: ttl,
            expires,
        })
    }
}

impl fmt::Debug for OAuthServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthServer").finish_non_exhaustive()
    }
}

fn load(db: &Connection, table: &str) -> Result<Vec<(String, Grant)>, rusqlite::Error> {
    let mut stmt = db.prepare(&format!(
        "SELECT token, user_id, client_id, expires_at FROM {table}"
    ))?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            Grant {
                user_id: r.get::<_, i64>(1)? as u64,
                client_id: r.get(2)?,
                expires_at: r.get::<_, i64>(3)? as u64,
            },
        ))
    })?;
    rows.collect()
}

/// 32 characters of `[a-z0-9]`, the shape of the portal's documented tokens, from the OS's
/// secure random source.
fn random_token() -> Option<String> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(32);
    let mut buf = [0u8; 64];
    while out.len() < 32 {
        getrandom::fill(&mut buf).ok()?;
        // Rejection sampling keeps the distribution uniform (252 = 7 * 36).
        for b in buf.iter().filter(|b| **b < 252) {
            if out.len() == 32 {
                break;
            }
            out.push(ALPHABET[usize::from(*b) % ALPHABET.len()] as char);
        }
    }
    Some(out)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The portal's member id: fixed, 32 hex characters like the real ones.
fn member_id() -> String {
    Md5::digest(b"b24-emulator")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `SCHEME://HOST` of the request. The emulator is both the portal and the OAuth server, so
/// `client_endpoint`, `server_endpoint` and `domain` all name it; the scheme is the one the
/// connection was served with (`https` under `--tls`, portal-behaviour §3.6).
pub fn origin(
    headers: &HeaderMap,
    uri: &axum::http::Uri,
    extensions: &axum::http::Extensions,
) -> (String, String) {
    let host = uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "localhost".to_owned());
    let tls = extensions
        .get::<axum::extract::ConnectInfo<crate::serve::Conn>>()
        .is_some_and(|c| c.0.tls);
    let scheme = match uri.scheme_str() {
        Some(s) => s,
        None if tls => "https",
        None => "http",
    }
    .to_owned();
    (scheme, host)
}

/// The real server's answer fields, in its order.
fn token_body(issued: &Issued, scheme: &str, host: &str) -> Value {
    json!({
        "access_token": issued.access_token,
        "client_endpoint": format!("{scheme}://{host}/rest/"),
        "domain": host,
        "expires": issued.expires,
        "expires_in": issued.expires_in,
        "member_id": member_id(),
        "refresh_token": issued.refresh_token,
        "scope": SCOPE,
        "server_endpoint": format!("{scheme}://{host}/rest/"),
        "status": APP_STATUS,
        "user_id": issued.user_id,
    })
}

fn json_answer(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, php::json_encode(body, php::RESPONSE_FLAGS)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

/// Token requests are small; this bounds what is read.
const MAX_TOKEN_BODY: usize = 64 * 1024;

/// `GET|POST /oauth/token/`: parameters from the query and a form body (the body wins).
pub async fn token_endpoint(State(state): State<AppState>, req: Request<Body>) -> Response {
    let (parts, body) = req.into_parts();
    let mut params = parts.uri.query().map(php::parse_str).unwrap_or_default();
    if parts.method == Method::POST {
        let Ok(bytes) = to_bytes(body, MAX_TOKEN_BODY).await else {
            return (StatusCode::PAYLOAD_TOO_LARGE, "Request body too large").into_response();
        };
        params.extend(php::parse_str(&String::from_utf8_lossy(&bytes)));
    }
    let (scheme, host) = origin(&parts.headers, &parts.uri, &parts.extensions);
    match state.oauth.token(&state.store, &params, now()) {
        Ok(issued) => json_answer(StatusCode::OK, &token_body(&issued, &scheme, &host)),
        Err(e) => json_answer(
            StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
            &json!({"error": e.code, "error_description": e.description}),
        ),
    }
}

#[derive(serde::Deserialize)]
pub struct IssueRequest {
    user_id: u64,
    client_id: Option<String>,
    ttl: Option<u64>,
    refresh_ttl: Option<u64>,
}

/// What `POST /_emulator/oauth/issue` expects, for the error answer.
pub const ISSUE_USAGE: &str =
    "expected JSON {\"user_id\": N, \"client_id\"?: str, \"ttl\"?: N, \"refresh_ttl\"?: N}";

fn control_error(description: &str) -> ControlError {
    ControlError::bad("invalid_request", description)
}

/// `POST /_emulator/oauth/issue` `{"user_id": 10, "client_id"?: "…", "ttl"?: s, "refresh_ttl"?: s}`:
/// the token endpoint's answer plus `client_id`; its endpoints name `origin` (scheme, host).
pub fn issue(state: &AppState, body: &Value, origin: (&str, &str)) -> Result<Value, ControlError> {
    let Ok(req) = IssueRequest::deserialize(body) else {
        return Err(control_error(ISSUE_USAGE));
    };
    if !state.store.is_active_user(req.user_id) {
        return Err(control_error("user_id must be an existing, active user"));
    }
    let client_id = req
        .client_id
        .unwrap_or_else(|| crate::BUILTIN_CLIENT_ID.to_owned());
    if !state.oauth.has_app(&client_id) {
        return Err(control_error(
            "unknown client_id: register it with --oauth-app",
        ));
    }
    let issued = state
        .oauth
        .issue(
            &state.store,
            req.user_id,
            &client_id,
            req.ttl,
            req.refresh_ttl,
            now(),
        )
        .map_err(|e| ControlError {
            status: 500,
            code: e.code,
            description: e.description.to_string(),
        })?;
    let (scheme, host) = origin;
    let mut body = token_body(&issued, scheme, host);
    body["client_id"] = json!(issued.client_id);
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_tokens_have_the_portal_shape_and_differ() {
        let a = random_token().expect("random");
        let b = random_token().expect("random");
        assert_eq!(a.len(), 32);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
        assert_ne!(a, b);
    }

    #[test]
    fn issued_debug_hides_tokens() {
        let issued = Issued {
            access_token: "secret-access".into(),
            refresh_token: "secret-refresh".into(),
            user_id: 1,
            client_id: "app".into(),
            expires_in: 3600,
            expires: 1,
        };
        let shown = format!("{issued:?}");
        assert!(!shown.contains("secret"), "{shown}");
    }
}
