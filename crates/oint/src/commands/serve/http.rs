//! The relay's HTTP side: what it accepts, and what it shows.
//!
//! Every notification is checked exactly as `notify bulk` checks a row (the same builders, the
//! same rules, `--strict` included) before it is queued; a bad one is answered 400 with the
//! reason and never queued. An accepted one is answered 202 only after the queue has synced it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use super::metrics::Metrics;
use super::queue::{NewItem, Queue, Refusal};
use crate::alerts::{self, Route, Source};
use crate::commands::bulk::{checked, input::RawRow};

/// The largest request body: an Alertmanager group of many alerts fits, a runaway does not.
pub const BODY_LIMIT: usize = 4 << 20;
/// What one `/notify` request may queue, its body once per recipient.
const EXPANDED_LIMIT: usize = 16 << 20;
/// Recipients of one `/notify` request, at most.
const MAX_USERS: usize = 1000;

pub struct Relay {
    pub queue: Arc<Queue>,
    pub metrics: Arc<Metrics>,
    pub ids: mpsc::UnboundedSender<u64>,
    pub token: Option<SecretString>,
    /// Pending items the queue takes, at most.
    pub queue_limit: u64,
    pub strict: bool,
    pub portal: bitrix24::Portal,
    /// Tags are sent (an OAuth application); over a webhook the portal drops them.
    pub tags: bool,
    pub routes: BTreeMap<String, Route>,
    /// Items the portal takes per second at most (50 a batch at the rate limit), for Retry-After.
    pub drain_per_second: f64,
    pub draining: AtomicBool,
    /// The queue's write errors, said once per stretch.
    pub queue_errors: super::Once,
}

pub fn router(relay: Arc<Relay>) -> Router {
    let guarded = Router::new()
        .route("/notify", post(notify))
        .route("/alertmanager/{route}", post(alertmanager))
        .route("/grafana/{route}", post(grafana))
        .route("/metrics", get(metrics))
        .route("/queue", get(queue))
        .route("/queue/requeue", post(requeue))
        .route("/queue/purge", post(purge))
        .layer(middleware::from_fn_with_state(relay.clone(), authorize));
    Router::new()
        .route("/healthz", get(healthz))
        .merge(guarded)
        .layer(middleware::from_fn_with_state(relay.clone(), same_machine))
        .layer(middleware::from_fn(within_time))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(relay)
}

type Answer = (StatusCode, HeaderMap, axum::Json<Value>);

/// The longest a request may take, its body included: a client that sends slowly must not
/// hold a connection, or a stop, for ever.
const REQUEST_TIME: std::time::Duration = std::time::Duration::from_secs(30);

async fn within_time(request: axum::extract::Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIME, next.run(request)).await {
        Ok(response) => response,
        Err(_) => (
            StatusCode::REQUEST_TIMEOUT,
            axum::Json(json!({"error": "REQUEST_TIMEOUT", "description": "the request took longer than 30 s; send it again"})),
        )
            .into_response(),
    }
}

fn answer(status: StatusCode, body: Value) -> Answer {
    (status, HeaderMap::new(), axum::Json(body))
}

fn refused(
    relay: &Relay,
    status: StatusCode,
    reason: &str,
    error: &str,
    description: String,
) -> Answer {
    relay.metrics.reject(reason);
    answer(status, json!({"error": error, "description": description}))
}

/// What a web page in the operator's browser must not do: post to the relay as a "simple"
/// request (only `application/json` is taken, which a page cannot send to another origin
/// without a preflight this relay never answers), or, through DNS rebinding, reach it under
/// a name of its own (without a token, only loopback names are answered).
async fn same_machine(
    State(relay): State<Arc<Relay>>,
    request: axum::extract::Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    if relay.token.is_none() {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if !loopback_host(host) {
            return refused(
                &relay,
                StatusCode::MISDIRECTED_REQUEST,
                "host",
                "LOOPBACK_ONLY",
                "without a token this relay answers only requests addressed to a loopback name (localhost, 127.0.0.1, [::1]); give it a token (--auth-token-file) to reach it by other names".into(),
            )
            .into_response();
        }
    }
    if request.method() == axum::http::Method::POST {
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return refused(
                &relay,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid",
                "JSON_ONLY",
                "send the body as Content-Type: application/json".into(),
            )
            .into_response();
        }
    }
    next.run(request).await
}

/// `localhost`, `127.x.x.x` or `[::1]`, with or without a port.
fn loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// With a token set, every endpoint but `/healthz` wants `Authorization: Bearer TOKEN`.
async fn authorize(
    State(relay): State<Arc<Relay>>,
    request: axum::extract::Request,
    next: Next,
) -> Response {
    if let Some(token) = &relay.token {
        use subtle::ConstantTimeEq;
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map_or("", |(_, token)| token.trim());
        if !bool::from(given.as_bytes().ct_eq(token.expose_secret().as_bytes())) {
            let (status, mut headers, body) = refused(
                &relay,
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "UNAUTHORIZED",
                "this relay wants Authorization: Bearer <its token> (--auth-token-file or OINT_SERVE_TOKEN)".into(),
            );
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return (status, headers, body).into_response();
        }
    }
    next.run(request).await
}

/// One notification, checked and ready to queue.
struct Checked {
    item: NewItem,
    warnings: Vec<Value>,
}

/// Queues `items` durably and answers 202 with their ids, or 503 when the queue is full.
async fn accept(relay: &Relay, items: Vec<Checked>) -> Answer {
    let retry_after = |seconds: u64, answer: Answer| {
        let (status, mut headers, body) = answer;
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from(seconds.clamp(1, 3600)),
        );
        (status, headers, body)
    };
    if relay.draining.load(Ordering::Relaxed) {
        let answer = refused(
            relay,
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "SHUTTING_DOWN",
            "the relay is stopping; send it again in a moment".into(),
        );
        return retry_after(5, answer);
    }
    let n = items.len() as u64;
    if n > relay.queue_limit {
        return refused(
            relay,
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "TOO_MANY_NOTIFICATIONS",
            format!(
                "this request makes {n} notifications, more than the queue holds (--queue-limit {}); split it",
                relay.queue_limit
            ),
        );
    }
    let mut warnings = Vec::new();
    let mut new = Vec::with_capacity(items.len());
    for c in items {
        // One line per kind of warning, not one per recipient.
        for w in c.warnings {
            if !warnings.contains(&w) {
                warnings.push(w);
            }
        }
        new.push(c.item);
    }
    match relay.queue.enqueue(new, relay.queue_limit).await {
        Ok(ids) => {
            relay
                .queue_errors
                .clear("oint serve: the queue stores notifications again");
            relay.metrics.accepted.inc_by(n);
            // A shared queue hands its items out itself, to whichever relay is free.
            if !relay.queue.feeds_itself() {
                for id in &ids {
                    // The delivery loop is gone only at shutdown; the items wait on disk.
                    let _ = relay.ids.send(*id);
                }
            }
            let mut body = json!({"ids": ids});
            if let [id] = ids[..] {
                body["id"] = json!(id);
            }
            if !warnings.is_empty() {
                body["warnings"] = Value::Array(warnings);
            }
            answer(StatusCode::ACCEPTED, body)
        }
        Err(Refusal::Full(pending)) => {
            let over = pending.saturating_add(n).saturating_sub(relay.queue_limit);
            let seconds = (over as f64 / relay.drain_per_second).ceil() as u64;
            let answer = refused(
                relay,
                StatusCode::SERVICE_UNAVAILABLE,
                "full",
                "QUEUE_FULL",
                format!(
                    "the queue holds {pending} notifications, its limit is {} (--queue-limit); retry after {} s",
                    relay.queue_limit,
                    seconds.clamp(1, 3600)
                ),
            );
            retry_after(seconds, answer)
        }
        Err(Refusal::Failed(e)) => {
            relay.queue_errors.say(&e);
            refused(
                relay,
                StatusCode::SERVICE_UNAVAILABLE,
                "queue_error",
                "QUEUE_ERROR",
                "the queue could not store it (see the relay's log); nothing was queued".into(),
            )
        }
    }
}

/// Checks one notification given as bulk-row fields.
fn check(relay: &Relay, fields: Map<String, Value>, source: &str) -> Result<Checked, String> {
    let row =
        checked(&RawRow { line: 0, fields }, relay.strict, &relay.portal).map_err(|e| e.message)?;
    Ok(Checked {
        warnings: row
            .warnings
            .iter()
            .map(|w| json!({"rule": w.rule, "message": w.line}))
            .collect(),
        item: NewItem {
            request: row.request,
            tagged: row.tagged,
            source: source.to_string(),
        },
    })
}

async fn notify(State(relay): State<Arc<Relay>>, body: Bytes) -> Answer {
    let invalid = |description: String| {
        refused(
            &relay,
            StatusCode::BAD_REQUEST,
            "invalid",
            "INVALID_NOTIFICATION",
            description,
        )
    };
    let mut fields = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(fields)) => fields,
        Ok(_) => {
            return invalid("expected a JSON object such as {\"user\": 1, \"text\": \"…\"}".into());
        }
        Err(e) => return invalid(format!("the body is not JSON: {e}")),
    };
    let users = match (fields.remove("users"), fields.contains_key("user")) {
        (Some(_), true) => return invalid("give user or users, not both".into()),
        (None, _) => vec![None],
        (Some(Value::Array(users)), false) if !users.is_empty() && users.len() <= MAX_USERS => {
            users.into_iter().map(Some).collect()
        }
        (Some(_), false) => {
            return invalid(format!(
                "users: expected a list of 1 to {MAX_USERS} user IDs"
            ));
        }
    };
    // Each recipient is one stored copy: bound what one request may make.
    if body.len().saturating_mul(users.len()) > EXPANDED_LIMIT {
        return refused(
            &relay,
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "TOO_LARGE",
            format!(
                "{} recipients × {} bytes is more than {} MiB to queue; send fewer recipients per request, or a shorter text",
                users.len(),
                body.len(),
                EXPANDED_LIMIT >> 20
            ),
        );
    }
    let mut items = Vec::with_capacity(users.len());
    for user in users {
        let mut fields = fields.clone();
        if let Some(user) = user {
            fields.insert("user".into(), user);
        }
        match check(&relay, fields, "notify") {
            Ok(item) => items.push(item),
            Err(e) => return invalid(e),
        }
    }
    accept(&relay, items).await
}

async fn alertmanager(
    State(relay): State<Arc<Relay>>,
    Path(route): Path<String>,
    body: Bytes,
) -> Answer {
    alerts(&relay, Source::Alertmanager, &route, &body).await
}

async fn grafana(
    State(relay): State<Arc<Relay>>,
    Path(route): Path<String>,
    body: Bytes,
) -> Answer {
    alerts(&relay, Source::Grafana, &route, &body).await
}

/// An alert source's payload: rendered by the route's template, one notification per alert
/// (or group) and user.
async fn alerts(relay: &Relay, source: Source, name: &str, body: &[u8]) -> Answer {
    let Some(route) = relay.routes.get(name) else {
        let known: Vec<&str> = relay.routes.keys().map(String::as_str).collect();
        return refused(
            relay,
            StatusCode::NOT_FOUND,
            "no_route",
            "NO_SUCH_ROUTE",
            if known.is_empty() {
                "this relay has no routes; add --route NAME=USER[,USER…] or [serve.routes.NAME] in the config file".into()
            } else {
                format!(
                    "no route named {name:?}; the routes are {}",
                    known.join(", ")
                )
            },
        );
    };
    let rendered = match alerts::render(source, route, body) {
        Ok(rendered) => rendered,
        Err(e) => {
            return refused(
                relay,
                StatusCode::BAD_REQUEST,
                "invalid",
                "INVALID_PAYLOAD",
                e,
            );
        }
    };
    let origin = match source {
        Source::Alertmanager => format!("alertmanager/{name}"),
        Source::Grafana => format!("grafana/{name}"),
    };
    let mut items = Vec::new();
    for notification in &rendered {
        for user in &route.config.users {
            let mut fields = Map::new();
            fields.insert("user".into(), json!(user));
            fields.insert("text".into(), json!(notification.text));
            fields.insert("system".into(), json!(route.config.system));
            // Over a webhook the portal drops tags: said once at start, not per alert.
            if relay.tags
                && let Some(tag) = &notification.tag
            {
                fields.insert("tag".into(), json!(tag));
            }
            match check(relay, fields, &origin) {
                Ok(item) => items.push(item),
                Err(e) => {
                    return refused(
                        relay,
                        StatusCode::BAD_REQUEST,
                        "invalid",
                        "INVALID_PAYLOAD",
                        e,
                    );
                }
            }
        }
    }
    if items.is_empty() {
        return answer(StatusCode::ACCEPTED, json!({"ids": []}));
    }
    accept(relay, items).await
}

async fn healthz(State(relay): State<Arc<Relay>>) -> impl IntoResponse {
    let draining = relay.draining.load(Ordering::Relaxed);
    let status = if draining {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (
        status,
        axum::Json(json!({
            "status": if draining { "stopping" } else { "ok" },
            "pending": relay.queue.pending(),
        })),
    )
}

async fn metrics(State(relay): State<Arc<Relay>>) -> Response {
    match relay.queue.stats().await {
        Ok(stats) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            relay.metrics.render(&stats, super::queue::now_ms()),
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    }
}

#[derive(serde::Deserialize)]
struct Listing {
    limit: Option<usize>,
}

async fn queue(State(relay): State<Arc<Relay>>, Query(listing): Query<Listing>) -> Response {
    let limit = listing.limit.unwrap_or(100).clamp(1, 10_000);
    let stats = relay.queue.stats().await;
    match (relay.queue.listing(limit).await, stats) {
        (Ok(mut body), Ok(stats)) => {
            body["pending_total"] = json!(stats.pending);
            body["dead_letters_total"] = json!(stats.dead);
            axum::Json(body).into_response()
        }
        (Err(e), _) | (_, Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    }
}

/// Which dead letters: `{"ids": [..]}` or `{"all": true}`.
fn dead_letters(body: &[u8]) -> Result<Option<Vec<u64>>, String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Which {
        ids: Option<Vec<u64>>,
        #[serde(default)]
        all: bool,
    }
    let which: Which = serde_json::from_slice(body)
        .map_err(|e| format!("expected {{\"ids\": [1, 2]}} or {{\"all\": true}} ({e})"))?;
    match (which.ids, which.all) {
        (Some(ids), false) if !ids.is_empty() => Ok(Some(ids)),
        (None, true) => Ok(None),
        _ => Err("give either ids (a non-empty list) or all: true".into()),
    }
}

/// `POST /queue/requeue`: dead letters back in the queue, after a person decided that
/// sending them again is right (an outcome-unknown one may then arrive twice).
async fn requeue(State(relay): State<Arc<Relay>>, body: Bytes) -> Answer {
    dead(&relay, &body, true).await
}

/// `POST /queue/purge`: dead letters deleted.
async fn purge(State(relay): State<Arc<Relay>>, body: Bytes) -> Answer {
    dead(&relay, &body, false).await
}

async fn dead(relay: &Relay, body: &[u8], requeue: bool) -> Answer {
    let which = match dead_letters(body) {
        Ok(which) => which,
        Err(e) => {
            return refused(
                relay,
                StatusCode::BAD_REQUEST,
                "invalid",
                "INVALID_REQUEST",
                e,
            );
        }
    };
    let done = if requeue {
        relay.queue.requeue_dead(which).await
    } else {
        relay.queue.purge_dead(which).await
    };
    match done {
        Ok(ids) if requeue => {
            if !relay.queue.feeds_itself() {
                for id in &ids {
                    let _ = relay.ids.send(*id);
                }
            }
            answer(StatusCode::OK, json!({"requeued": ids}))
        }
        Ok(ids) => answer(StatusCode::OK, json!({"purged": ids})),
        Err(e) => answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": "QUEUE_ERROR", "description": e}),
        ),
    }
}
