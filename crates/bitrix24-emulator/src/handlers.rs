//! The HTTP surface: routing, decoding requests the way the portal does, and encoding answers.
//!
//! Nothing here knows the API rules. A REST request is taken apart into a method name,
//! credentials and PHP-style parameters (query and body merged, body winning), authenticated,
//! and handed to [`crate::methods::call`]; the answer is encoded with PHP's `json_encode` flags
//! and the portal's headers. The `/_emulator/*` control plane is in [`crate::control`].
//! Around the method call sit the rate limit, fault rules, the operating-time budget and the
//! request log, in the order [`crate::pipeline`] describes.

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};

use crate::AppState;
use crate::auth::{self, Credentials};
use crate::error::ApiError;
use crate::faults::FaultKind;
use crate::methods::{self, Call};
use crate::oauth;
use crate::operating;
use crate::php;
use crate::requests::{AuthKind, Entry, NO_ANSWER};
use crate::serve::Conn;
use crate::timing::Timing;

/// At most this long (and never longer than the body timeout) an over-long body is read and
/// thrown away after the limit, so the client can finish sending and read the answer
/// (nginx's `lingering_time`).
const LINGER: std::time::Duration = std::time::Duration::from_secs(30);

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(crate::control::router())
        .merge(crate::inbox::router())
        .route(
            "/oauth/token/",
            get(oauth::token_endpoint).post(oauth::token_endpoint),
        )
        .route(
            "/oauth/token",
            get(oauth::token_endpoint).post(oauth::token_endpoint),
        )
        .fallback(rest)
        .layer(middleware::from_fn(crate::wire_headers::rest_headers))
        .layer(middleware::from_fn(log_requests))
        .with_state(state)
}

// ---------------------------------------------------------------------------------------------
// REST
// ---------------------------------------------------------------------------------------------

/// The parts of a `/rest/...` path.
#[derive(Debug, PartialEq, Eq)]
struct Route {
    webhook: Option<(String, String)>,
    method: String,
}

/// `/rest/<method>` or `/rest/<user>/<secret>/<method>`, an optional trailing `/`, an optional
/// `.json` suffix. `None` means the path is not under `/rest` at all.
fn parse_route(path: &str) -> Option<Result<Route, ApiError>> {
    // The portal's nginx merges slashes (`merge_slashes on`) before PHP sees the path, so
    // `/rest//im.notify` is `/rest/im.notify` (portal-behaviour §2.1).
    let mut merged = String::with_capacity(path.len());
    for c in path.chars() {
        if !(c == '/' && merged.ends_with('/')) {
            merged.push(c);
        }
    }
    let rest = merged.strip_prefix("/rest")?;
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let segments: Vec<String> = rest.split('/').map(php::rawurldecode).collect();
    let (webhook, method) = match segments.as_slice() {
        [method] => (None, method),
        [user, secret, method] => (Some((user.clone(), secret.clone())), method),
        // The rest.server URL template does not match: no method can be found.
        _ => return Some(Err(ApiError::method_not_found())),
    };
    let method = method.to_lowercase();
    let method = method.strip_suffix(".json").unwrap_or(&method).to_owned();
    if method.is_empty() {
        return Some(Err(ApiError::method_not_found()));
    }
    Some(Ok(Route { webhook, method }))
}

/// How a REST request ends.
enum Outcome {
    /// The method's result, wrapped with `time`; `app` is the calling OAuth app, if any.
    Ok {
        body: Value,
        app: Option<String>,
    },
    Err(ApiError),
    /// A `status` fault: an error answer with a code of the test's choosing.
    Injected {
        status: u16,
        error: String,
        description: String,
    },
    /// Close the connection without an answer; the label goes into the request log.
    Reset(&'static str),
}

async fn rest(State(state): State<AppState>, req: Request) -> Response {
    let mut close_on_answer = false;
    let timing = Timing::start();
    let at = operating::unix_now();
    let conn = req
        .extensions()
        .get::<ConnectInfo<Conn>>()
        .map(|c| c.0.clone());
    let route = match parse_route(req.uri().path()) {
        None => return (StatusCode::NOT_FOUND, "Not Found").into_response(),
        Some(route) => route,
    };
    // Outside the emulator's own listener (`app()` served elsewhere) all clients share a bucket.
    let ip = conn
        .as_ref()
        .map_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |c| {
            c.peer.ip()
        });
    let admitted = state.pipeline.rate.admit(ip);
    let mut entry = Entry {
        at,
        method: route.as_ref().ok().map(|r| r.method.clone()),
        auth: AuthKind::None,
        status: NO_ANSWER,
        error: None,
    };
    let (parts, body) = req.into_parts();

    let limits = state.store.input_limits;
    let mut params = parts
        .uri
        .query()
        .map(|q| php::parse_str_limited(q, &limits))
        .unwrap_or_default();
    if parts.method == Method::POST {
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let read = read_body(
            body,
            declared,
            limits.post_max_size,
            state.pipeline.body_timeout,
        )
        .await;
        let bytes = match read {
            BodyRead::Complete(bytes) => bytes,
            BodyRead::TooLarge { drained } => {
                // The rest of the body may still be coming: answer, then close.
                close_on_answer = !drained;
                // PHP: "POST Content-Length of N bytes exceeds the limit of M bytes"; the
                // script runs without the body's parameters.
                tracing::warn!(
                    "POST Content-Length exceeds the limit of {} bytes (post_max_size)",
                    limits.post_max_size
                );
                Vec::new()
            }
            BodyRead::Stalled(status) => {
                entry.status = status.as_u16();
                state.pipeline.log.push(entry);
                return close_after(status.into_response());
            }
        };
        // `array_replace`: body values win over the query at the top level.
        params.extend(parse_body_limited(&parts.headers, &bytes, &limits));
    }
    let credentials = match &route {
        Ok(route) => take_credentials(route, &mut params, &parts.headers),
        Err(_) => Credentials::None,
    };
    entry.auth = match credentials {
        Credentials::Webhook { .. } => AuthKind::Webhook,
        Credentials::Token(_) => AuthKind::OAuth,
        Credentials::None => AuthKind::None,
    };

    let outcome = if admitted {
        match route {
            Ok(route) => {
                let run = execute(&state, &route, params, &credentials, timing, at);
                // `limits.md`: a request still running after 60 s is interrupted.
                match state.pipeline.request_time_limit {
                    Some(limit) => tokio::time::timeout(limit, run)
                        .await
                        .unwrap_or(Outcome::Reset("request_timeout")),
                    None => run.await,
                }
            }
            Err(e) => Outcome::Err(e),
        }
    } else {
        Outcome::Err(ApiError::query_limit_exceeded())
    };

    let response = match outcome {
        Outcome::Ok { body, app } => {
            entry.status = StatusCode::OK.as_u16();
            let mut response = answer(StatusCode::OK, &body);
            if let Some(client_id) = app {
                response
                    .extensions_mut()
                    .insert(crate::wire_headers::RestApplication(client_id));
            }
            response
        }
        Outcome::Err(e) => {
            let e = state.store.switches.adjust(e);
            entry.status = e.status;
            entry.error = Some(e.code.to_owned());
            error_answer(&e)
        }
        Outcome::Injected {
            status,
            error,
            description,
        } => {
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let response = answer(
                code,
                &json!({"error": error, "error_description": description}),
            );
            entry.status = code.as_u16();
            entry.error = Some(error);
            response
        }
        Outcome::Reset(label) => {
            entry.error = Some(label.to_owned());
            // The switch makes the connection drop this response unwritten. Without the
            // emulator's listener there is no switch, and the 502 is what the client gets.
            if let Some(conn) = &conn {
                conn.reset();
            }
            let mut response = StatusCode::BAD_GATEWAY.into_response();
            response.extensions_mut().insert(NoAnswer(label));
            response
        }
    };
    state.pipeline.log.push(entry);
    if close_on_answer {
        close_after(response)
    } else {
        response
    }
}

/// What reading a request body gave.
enum BodyRead {
    Complete(Vec<u8>),
    /// Over `post_max_size`; `drained` when the rest was read and thrown away to its end.
    TooLarge {
        drained: bool,
    },
    /// The client stopped sending (408) or the body broke off (400).
    Stalled(StatusCode),
}

/// Read a body of at most `limit` bytes, waiting at most `timeout` for each piece (nginx's
/// `client_body_timeout`). Past the limit nothing more is kept: the rest is drained for a
/// bounded time, so memory never exceeds the limit and an endless body cannot hold a task.
async fn read_body(
    body: Body,
    declared: Option<u64>,
    limit: usize,
    timeout: std::time::Duration,
) -> BodyRead {
    use futures_util::StreamExt as _;
    let mut stream = body.into_data_stream();
    let mut kept: Vec<u8> = Vec::new();
    let linger = |now: tokio::time::Instant| now + timeout.min(LINGER);
    let mut linger_until = declared
        .is_some_and(|n| n > limit as u64)
        .then(|| linger(tokio::time::Instant::now()));
    loop {
        let wait = match linger_until {
            Some(until) => until.min(tokio::time::Instant::now() + timeout),
            None => tokio::time::Instant::now() + timeout,
        };
        let next = match tokio::time::timeout_at(wait, stream.next()).await {
            Ok(next) => next,
            Err(_) if linger_until.is_some() => return BodyRead::TooLarge { drained: false },
            Err(_) => return BodyRead::Stalled(StatusCode::REQUEST_TIMEOUT),
        };
        match next {
            None if linger_until.is_some() => return BodyRead::TooLarge { drained: true },
            None => return BodyRead::Complete(kept),
            Some(Err(_)) if linger_until.is_some() => {
                return BodyRead::TooLarge { drained: false };
            }
            Some(Err(_)) => return BodyRead::Stalled(StatusCode::BAD_REQUEST),
            Some(Ok(chunk)) => {
                if linger_until.is_none() {
                    if kept.len() + chunk.len() > limit {
                        kept = Vec::new();
                        linger_until = Some(linger(tokio::time::Instant::now()));
                    } else {
                        kept.extend_from_slice(&chunk);
                    }
                }
            }
        }
    }
}

/// Mark an answer as the connection's last.
fn close_after(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Everything after the rate limit: fault rules, auth, the operating budget, the method.
async fn execute(
    state: &AppState,
    route: &Route,
    params: Map<String, Value>,
    credentials: &Credentials,
    timing: Timing,
    at: f64,
) -> Outcome {
    let pipeline = &state.pipeline;
    let fault = pipeline.faults.take(&route.method);
    match fault {
        Some(FaultKind::Status {
            status,
            error,
            description,
        }) => {
            return Outcome::Injected {
                status,
                error,
                description,
            };
        }
        Some(FaultKind::ResetBefore) => return Outcome::Reset("reset_before"),
        _ => {}
    }

    // The portal resolves the method (and so its scope) before it checks credentials against
    // that scope: an unknown method is 404 whatever the credentials (portal-behaviour §3.3).
    if methods::registry::find(&route.method).is_none() {
        return Outcome::Err(ApiError::method_not_found());
    }
    let caller = match auth::authenticate(&state.store, credentials, timing.unix_secs()) {
        Ok(caller) => caller,
        Err(e) => return Outcome::Err(e),
    };
    if let Err(e) = pipeline.operating.check(&caller, &route.method, at) {
        return Outcome::Err(e);
    }

    // `start` and `state` belong to the server, not to the method.
    let mut params = params;
    let start = methods::start_param(params.remove("start"));
    params.remove("state");
    let params = php::upper_case_keys(params);

    let started = std::time::Instant::now();
    if !pipeline.processing.is_zero() {
        tokio::time::sleep(pipeline.processing).await;
    }
    let call = Call {
        store: &state.store,
        caller: &caller,
        params: &params,
        now: timing.unix_secs(),
        operating: &pipeline.operating,
        start,
    };
    let result = methods::call(&route.method, &call);
    let usage = if pipeline.operating.bills_request(&route.method) {
        let secs = started.elapsed().as_secs_f64();
        pipeline.operating.bill(&caller, &route.method, at, secs)
    } else {
        pipeline.operating.usage(&caller, &route.method, at)
    };
    let outcome = match result {
        Ok(result) => {
            let mut time = timing.to_value();
            usage.stamp(&mut time, at);
            // `next` and `total` of a list result go next to `result`, as the portal puts them.
            let (result, next, total) = methods::lift_paging(result);
            let mut body = Map::new();
            body.insert("result".into(), result);
            if let Some(next) = next {
                body.insert("next".into(), next);
            }
            if let Some(total) = total {
                body.insert("total".into(), total);
            }
            body.insert("time".into(), time);
            Outcome::Ok {
                body: Value::Object(body),
                app: caller.client_id().map(str::to_owned),
            }
        }
        Err(e) => Outcome::Err(e),
    };

    match fault {
        Some(FaultKind::ResetAfter) => Outcome::Reset("reset_after"),
        Some(FaultKind::Delay { ms }) => {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            outcome
        }
        _ => outcome,
    }
}

/// JSON for `application/json` (invalid or non-object JSON is no parameters), `parse_str` for
/// anything else, as `CRestUtil::getRequestData` does; PHP's default limits.
#[cfg(test)]
fn parse_body(headers: &HeaderMap, body: &[u8]) -> Map<String, Value> {
    parse_body_limited(headers, body, &php::InputLimits::default())
}

/// [`crate::decode::request_body`] with the request's `Content-Type`.
fn parse_body_limited(
    headers: &HeaderMap,
    body: &[u8],
    limits: &php::InputLimits,
) -> Map<String, Value> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    crate::decode::request_body(content_type, body, limits)
}

/// Pull the credentials out and drop the auth parameters so methods never see them.
fn take_credentials(
    route: &Route,
    params: &mut Map<String, Value>,
    headers: &HeaderMap,
) -> Credentials {
    let auth = params.remove("auth");
    let access_token = params.remove("access_token");
    if let Some((user, secret)) = &route.webhook {
        return Credentials::Webhook {
            user: user.clone(),
            secret: secret.clone(),
        };
    }
    let from_params = auth
        .or(access_token)
        .map(|v| php::strval(&v))
        .filter(|t| !t.is_empty());
    let from_header = || {
        let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        let (scheme, token) = value.trim().split_once(char::is_whitespace)?;
        let token = token.trim();
        (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
    };
    match from_params.or_else(from_header) {
        Some(token) => Credentials::Token(token),
        None => Credentials::None,
    }
}

fn error_answer(e: &ApiError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    answer(
        status,
        &json!({"error": e.code, "error_description": e.description}),
    )
}

/// An answer encoded like the portal's, with its headers.
fn answer(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, php::json_encode(body, php::RESPONSE_FLAGS)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("origin, content-type, accept"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

// ---------------------------------------------------------------------------------------------
// Logging
// ---------------------------------------------------------------------------------------------

/// Log every request without its query (it may hold `auth`) and with webhook secrets masked.
async fn log_requests(req: Request<Body>, next: Next) -> Response {
    let method = req.method().clone();
    let path = masked_path(req.uri().path());
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    match response.extensions().get::<NoAnswer>() {
        Some(NoAnswer(fault)) => {
            tracing::info!(%method, %path, fault, elapsed_ms, "request closed without an answer");
        }
        None => tracing::info!(
            %method,
            %path,
            status = response.status().as_u16(),
            elapsed_ms,
            "request"
        ),
    }
    response
}

/// Marks a response that the connection will drop (a reset fault), for the log line.
#[derive(Debug, Clone, Copy)]
struct NoAnswer(&'static str);

/// `/rest/1/SECRET/im.notify` → `/rest/1/***/im.notify`: every segment after the user id and
/// before the method is masked, whatever the segment count.
fn masked_path(path: &str) -> String {
    let Some(rest) = path.strip_prefix("/rest/") else {
        return path.to_owned();
    };
    let segments: Vec<&str> = rest.split('/').collect();
    let non_empty = segments.iter().filter(|s| !s.is_empty()).count();
    if non_empty < 2 {
        return path.to_owned();
    }
    let last = segments.iter().rposition(|s| !s.is_empty()).unwrap_or(0);
    let masked: Vec<&str> = segments
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let keep = i == 0 || s.is_empty() || (i == last && non_empty >= 3);
            if keep { *s } else { auth::mask(s) }
        })
        .collect();
    format!("/rest/{}", masked.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_table() {
        let ok = |webhook: Option<(&str, &str)>, method: &str| {
            Some(Ok(Route {
                webhook: webhook.map(|(u, s)| (u.to_owned(), s.to_owned())),
                method: method.to_owned(),
            }))
        };
        assert_eq!(
            parse_route("/rest/im.notify.personal.add"),
            ok(None, "im.notify.personal.add")
        );
        assert_eq!(parse_route("/rest/IM.Notify.JSON/"), ok(None, "im.notify"));
        assert_eq!(
            parse_route("/rest/1/abc/im.notify.json"),
            ok(Some(("1", "abc")), "im.notify")
        );
        assert_eq!(
            parse_route("/rest/1/abc/im.notify/"),
            ok(Some(("1", "abc")), "im.notify")
        );
        assert_eq!(
            parse_route("/rest/1/abc/"),
            Some(Err(ApiError::method_not_found()))
        );
        assert_eq!(
            parse_route("/rest/1/abc/x/y"),
            Some(Err(ApiError::method_not_found()))
        );
        assert_eq!(
            parse_route("/rest"),
            Some(Err(ApiError::method_not_found()))
        );
        assert_eq!(parse_route("//rest//im.notify"), ok(None, "im.notify"));
        assert_eq!(
            parse_route("/rest//1//abc/im.notify"),
            ok(Some(("1", "abc")), "im.notify")
        );
        assert_eq!(parse_route("/restful/x"), None);
        assert_eq!(parse_route("/other"), None);
    }

    #[test]
    fn multipart_fields_are_parameters() {
        let body = "preamble\r\n--XB\r\nContent-Disposition: form-data; name=\"USER_ID\"\r\n\r\n2\r\n\
                    --XB\r\ncontent-disposition: form-data; name=\"ATTACH[0][MESSAGE]\"\r\n\r\nline1\r\nline2\r\n\
                    --XB\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.txt\"\r\n\r\nfile\r\n--XB--\r\n";
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("multipart/form-data; boundary=\"XB\""),
        );
        let params = parse_body(&headers, body.as_bytes());
        assert_eq!(
            Value::Object(params),
            json!({"USER_ID": "2", "ATTACH": [{"MESSAGE": "line1\r\nline2"}]})
        );
    }

    #[test]
    fn masked_path_hides_secrets() {
        assert_eq!(
            masked_path("/rest/1/s3cr3t/im.notify"),
            "/rest/1/***/im.notify"
        );
        assert_eq!(masked_path("/rest/1/s3cr3t/"), "/rest/1/***/");
        assert_eq!(masked_path("/rest/1/s3cr3t"), "/rest/1/***");
        assert_eq!(masked_path("/rest/1/a/b/c"), "/rest/1/***/***/c");
        assert_eq!(masked_path("/rest/im.notify"), "/rest/im.notify");
        assert_eq!(
            masked_path("/_emulator/notifications"),
            "/_emulator/notifications"
        );
    }

    #[test]
    fn multipart_edge_cases() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("multipart/form-data; boundary=XB"),
        );
        // An empty filename is still a file part; a part without a name is skipped.
        let body = "--XB\r\nContent-Disposition: form-data; name=\"f\"; filename=\"\"\r\n\r\nx\r\n\
                    --XB\r\nContent-Disposition: form-data\r\n\r\nnameless\r\n\
                    --XB\r\nContent-Disposition: form-data; name=\"A[]\"\r\n\r\n1\r\n--XB--\r\n";
        assert_eq!(
            Value::Object(parse_body(&headers, body.as_bytes())),
            json!({"A": ["1"]})
        );
        // A body cut short keeps the complete fields before the cut.
        let cut = "--XB\r\nContent-Disposition: form-data; name=\"A\"\r\n\r\n1\r\n\
                   --XB\r\nContent-Disposition: form-data; name=\"B\"\r\n\r\n2";
        assert_eq!(
            Value::Object(parse_body(&headers, cut.as_bytes())),
            json!({"A": "1"})
        );
        // No boundary: nothing to parse.
        let mut no_boundary = HeaderMap::new();
        no_boundary.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("multipart/form-data"),
        );
        assert!(parse_body(&no_boundary, body.as_bytes()).is_empty());
    }
}
