//! Raw-HTTP helpers shared by the emulator's integration tests.
//!
//! Every test starts its own emulator on 127.0.0.1 port 0 and talks to it with hand-built
//! reqwest requests (no client library), so what is tested is the wire behaviour a real
//! integration would see. Each test file uses a subset of these helpers, hence the
//! `dead_code` allowance.

#![allow(dead_code)]

use bitrix24_emulator::{Config, Emulator, Notification};
use serde_json::{Value, json};

/// User 1's webhook secret in the shared test configurations (user 2's is `"other"`).
pub const SECRET: &str = "s3cr3t";
/// User 1's OAuth access token in the shared test configurations.
pub const TOKEN: &str = "tok-user-1";

/// Content type of a form-encoded body.
pub const FORM: &str = "application/x-www-form-urlencoded";

/// Starts an emulator with `config` on 127.0.0.1 port 0.
pub async fn start_with(config: Config) -> Emulator {
    Emulator::start(config).await.expect("emulator starts")
}

/// A fresh client (with reqwest's default connection pool).
pub fn client() -> reqwest::Client {
    reqwest::Client::new()
}

/// A fresh client per call that keeps no idle connection: no pooled connection survives a
/// reset into the next request.
pub fn unpooled_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client")
}

/// Status and parsed JSON body; panics (showing the text) when the body is not JSON.
pub async fn decode(resp: reqwest::Response) -> (u16, Value) {
    let (status, _, body) = decode_with_text(resp).await;
    (status, body)
}

/// Status, raw body and parsed JSON body; panics when the body is not JSON.
pub async fn decode_with_text(resp: reqwest::Response) -> (u16, String, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, text, body)
}

/// POST a JSON body to a full URL.
pub async fn post_json(url: &str, body: Value) -> (u16, Value) {
    decode(
        client()
            .post(url)
            .json(&body)
            .send()
            .await
            .expect("request"),
    )
    .await
}

/// POST a raw body with a content type.
pub async fn post_raw(url: &str, content_type: &str, body: impl Into<String>) -> (u16, Value) {
    let resp = client()
        .post(url)
        .header("content-type", content_type)
        .body(body.into())
        .send()
        .await
        .expect("request");
    decode(resp).await
}

/// POST a form-encoded body.
pub async fn post_form(url: &str, body: &str) -> (u16, Value) {
    post_raw(url, FORM, body).await
}

/// GET a full URL.
pub async fn get(url: &str) -> (u16, Value) {
    decode(client().get(url).send().await.expect("request")).await
}

/// POST a JSON body with an [`unpooled_client`]; a transport failure is returned, not a panic.
pub async fn try_post_unpooled(url: &str, body: Value) -> Result<(u16, Value), reqwest::Error> {
    let resp = unpooled_client().post(url).json(&body).send().await?;
    Ok(decode(resp).await)
}

/// POST a JSON body with an [`unpooled_client`].
pub async fn post_unpooled(url: &str, body: Value) -> (u16, Value) {
    try_post_unpooled(url, body).await.expect("request")
}

/// GET a full URL with an [`unpooled_client`].
pub async fn get_unpooled(url: &str) -> (u16, Value) {
    decode(unpooled_client().get(url).send().await.expect("request")).await
}

/// Call a method through user 1's webhook.
pub async fn hook(emu: &Emulator, method: &str, body: Value) -> (u16, Value) {
    post_json(&format!("{}{method}", emu.webhook_url(1, SECRET)), body).await
}

/// Call a method through user 2's webhook.
pub async fn hook2(emu: &Emulator, method: &str, body: Value) -> (u16, Value) {
    post_json(&format!("{}{method}", emu.webhook_url(2, "other")), body).await
}

/// Call a method as the OAuth app with `token` in the JSON body, as OPI does.
pub async fn oauth_as(emu: &Emulator, token: &str, method: &str, mut body: Value) -> (u16, Value) {
    body["auth"] = json!(token);
    post_json(&format!("{}/rest/{method}", emu.url()), body).await
}

/// Call a method as the OAuth app with user 1's [`TOKEN`].
pub async fn oauth(emu: &Emulator, method: &str, body: Value) -> (u16, Value) {
    oauth_as(emu, TOKEN, method, body).await
}

/// The keys of a JSON object, in the order the answer gave them; panics on a non-object.
pub fn object_keys(v: &Value) -> Vec<&str> {
    v.as_object().unwrap().keys().map(String::as_str).collect()
}

/// Asserts a portal error answer: exactly this status and body.
pub fn assert_error(got: &(u16, Value), status: u16, code: &str, description: &str) {
    assert_eq!(got.0, status, "status of {}", got.1);
    assert_eq!(
        got.1,
        json!({"error": code, "error_description": description})
    );
}

/// The one stored notification; fails unless there is exactly one.
pub fn only(emu: &Emulator) -> Notification {
    let all = emu.notifications();
    assert_eq!(all.len(), 1, "expected one notification, got {all:?}");
    all.into_iter().next().unwrap_or_else(|| unreachable!())
}

/// A data file path in the temp directory, removed on drop.
pub struct TempFile(pub std::path::PathBuf);

impl TempFile {
    /// `b24-emulator-{name}-{pid}-{nanos}.sqlite` in the temp directory.
    pub fn new(name: &str) -> TempFile {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        TempFile(std::env::temp_dir().join(format!(
            "b24-emulator-{name}-{}-{nanos}.sqlite",
            std::process::id()
        )))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Kills the child process even when an assertion fails.
pub struct Child(pub std::process::Child);

impl Child {
    /// Reads the `b24-emulator` binary's first stdout line, `listening on <url>`, and returns
    /// the URL. The child's stdout must be piped.
    pub async fn listening_url(&mut self) -> String {
        use std::io::{BufRead, BufReader};

        let stdout = self.0.stdout.take().expect("stdout");
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).map(|_| line)
        })
        .await
        .unwrap()
        .unwrap();
        line.trim_end()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("first line: {line:?}"))
            .to_owned()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
