//! The web inbox: `GET /` shows each user's notifications as the portal renders them.
//!
//! People testing an integration want to see what a notification looks like, not its JSON.
//! The page is rendered on the server ([`render`]), its script and styles are embedded in
//! the binary (nothing is fetched from elsewhere), and it updates through server-sent events
//! driven by the store's change counter. Actions (confirm, answer, mark read) go to a
//! same-origin endpoint that runs the real method as the viewed user, so the page never holds
//! a webhook secret or token; the endpoint only accepts JSON from this origin.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};

use crate::AppState;
use crate::auth::Caller;
use crate::methods::{self, Call};

mod bbcode;
mod render;

const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// No inline script or style; images only from here and loopback.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self' http://127.0.0.1:* https://127.0.0.1:* http://localhost:* https://localhost:*; \
connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The methods the page may run.
const ACTIONS: &[&str] = &["im.notify.confirm", "im.notify.answer", "im.notify.read"];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(page))
        .route("/inbox/app.js", get(app_js))
        .route("/inbox/style.css", get(style_css))
        .route("/inbox/{user}/list", get(list))
        .route("/inbox/{user}/events", get(events))
        .route("/inbox/api/{user}/{method}", post(action))
        .layer(middleware::from_fn(guard))
}

/// A Host a DNS-rebinding page cannot produce: a loopback name or an IP literal.
fn trusted_host(host: &str) -> bool {
    let name = if host.starts_with('[') {
        host.split(']')
            .next()
            .map(|h| format!("{h}]"))
            .unwrap_or_default()
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h).to_owned()
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok()
}

/// Refuses foreign Hosts, and adds the page's security headers to every answer.
async fn guard(req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut response = if trusted_host(&host) {
        next.run(req).await
    } else {
        (
            StatusCode::FORBIDDEN,
            "the inbox answers only to 127.0.0.1, localhost or an IP address in the Host header\n",
        )
            .into_response()
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn app_js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        APP_JS,
    )
        .into_response()
}

async fn style_css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        STYLE_CSS,
    )
        .into_response()
}

/// `Some(id)` for an existing user.
fn user_of(state: &AppState, raw: &str) -> Option<u64> {
    let id = raw.trim().parse::<u64>().ok()?;
    state.store.user_state(id).map(|_| id)
}

fn records(state: &AppState, user: u64) -> Vec<crate::store::Record> {
    state.store.records_where(|n| n.user_id == user)
}

async fn page(
    State(state): State<AppState>,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let raw = query.get("user").map_or("1", String::as_str);
    let users = state.store.user_count();
    let Some(user) = user_of(&state, raw) else {
        return (
            StatusCode::NOT_FOUND,
            Html(render::no_such_user(raw, users)),
        )
            .into_response();
    };
    let unread = |u: u64| {
        state
            .store
            .records_where(|n| n.user_id == u && !n.read)
            .len()
    };
    Html(render::page(user, users, &unread, &records(&state, user))).into_response()
}

async fn list(State(state): State<AppState>, Path(user): Path<String>) -> Response {
    match user_of(&state, &user) {
        Some(user) => Html(render::list(&records(&state, user))).into_response(),
        None => (StatusCode::NOT_FOUND, "no such user\n").into_response(),
    }
}

/// What the user's inbox shows, reduced to a number: changes when a card would change.
fn fingerprint(state: &AppState, user: u64) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for r in records(state, user) {
        (r.notification.id, r.notification.read).hash(&mut h);
    }
    h.finish()
}

/// `changed` events whenever the user's inbox changes; ends when the server stops.
async fn events(State(state): State<AppState>, Path(user): Path<String>) -> Response {
    let Some(user) = user_of(&state, &user) else {
        return (StatusCode::NOT_FOUND, "no such user\n").into_response();
    };
    let changes = state.store.subscribe();
    let closing = state.closing.subscribe();
    let last = fingerprint(&state, user);
    let stream = futures_util::stream::unfold(
        (state, changes, closing, last, true),
        move |(state, mut changes, mut closing, last, first)| async move {
            if first {
                let ev = Event::default().event("ready").data(user.to_string());
                return Some((
                    Ok::<_, std::convert::Infallible>(ev),
                    (state, changes, closing, last, false),
                ));
            }
            loop {
                if *closing.borrow() {
                    return None;
                }
                tokio::select! {
                    r = changes.changed() => if r.is_err() { return None; },
                    _ = closing.changed() => return None,
                }
                let now = fingerprint(&state, user);
                if now != last {
                    let ev = Event::default().event("changed").data(user.to_string());
                    return Some((Ok(ev), (state, changes, closing, now, false)));
                }
            }
        },
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn refuse(status: StatusCode, why: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": "INBOX_REQUEST_REFUSED", "error_description": why})),
    )
        .into_response()
}

/// Only JSON, only from this origin: a form or script on another site cannot send either.
fn same_origin_json(headers: &HeaderMap) -> Result<(), &'static str> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !ct
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .eq_ignore_ascii_case("application/json")
    {
        return Err("Content-Type must be application/json");
    }
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return Err("requests from other sites are refused");
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let origin = origin.to_str().unwrap_or_default();
        if origin != format!("http://{host}") && origin != format!("https://{host}") {
            return Err("Origin must be this inbox");
        }
    }
    Ok(())
}

/// Runs one of [`ACTIONS`] as `user`, through the same method code REST calls use.
async fn action(
    State(state): State<AppState>,
    Path((user, method)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(why) = same_origin_json(&headers) {
        return refuse(StatusCode::FORBIDDEN, why);
    }
    let Some(user) = user_of(&state, &user) else {
        return refuse(StatusCode::NOT_FOUND, "no such user");
    };
    let method = method.to_ascii_lowercase();
    if !ACTIONS.contains(&method.as_str()) {
        return refuse(
            StatusCode::NOT_FOUND,
            "the inbox runs im.notify.confirm, im.notify.answer and im.notify.read only",
        );
    }
    let params: Map<String, Value> = match serde_json::from_slice(&body) {
        Ok(Value::Object(map)) => crate::php::upper_case_keys(map),
        _ => return refuse(StatusCode::BAD_REQUEST, "the body must be a JSON object"),
    };
    // The inbox acts as the user itself; no configured webhook has this number.
    let caller = Caller::Webhook {
        user_id: user,
        hook: usize::MAX,
    };
    let now = crate::operating::unix_now() as u64;
    let call = Call {
        store: &state.store,
        caller: &caller,
        params: &params,
        now,
        start: 0,
        operating: &state.pipeline.operating,
    };
    match methods::call(&method, &call) {
        Ok(result) => axum::Json(json!({"result": result})).into_response(),
        Err(e) => {
            let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
            (
                status,
                axum::Json(json!({"error": e.code, "error_description": e.description})),
            )
                .into_response()
        }
    }
}
