//! The headers a cloud portal adds to every REST answer besides the content headers:
//! `X-Bitrix-Rest-Application` (the calling OAuth application) and the timing trio
//! `X-Bitrix-Rest-Time`, `X-Bitrix-Rest-User-Time`, `X-Bitrix-Rest-System-Time`.
//!
//! A middleware adds them so every `/rest` answer gets them, errors included, without each
//! answer path having to remember.

use std::time::Instant;

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

/// Set by the REST handler on answers to an OAuth application: its client id.
#[derive(Debug, Clone)]
pub struct RestApplication(pub String);

pub async fn rest_headers(req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let is_rest = path == "/rest" || path.starts_with("/rest/");
    let started = Instant::now();
    let mut response = next.run(req).await;
    if !is_rest {
        return response;
    }
    let secs = started.elapsed().as_secs_f64();
    let application = response.extensions().get::<RestApplication>().cloned();
    let headers = response.headers_mut();
    if let Some(RestApplication(client_id)) = application
        && let Ok(value) = HeaderValue::from_str(&client_id)
    {
        headers.insert("x-bitrix-rest-application", value);
    }
    // The emulator does all its work in user space; the system share is reported as zero.
    for (name, value) in [
        ("x-bitrix-rest-time", secs),
        ("x-bitrix-rest-user-time", secs),
        ("x-bitrix-rest-system-time", 0.0),
    ] {
        if let Ok(value) = HeaderValue::from_str(&format!("{value:.10}")) {
            headers.insert(name, value);
        }
    }
    response
}
