//! Helpers shared by the library's integration tests against the emulator: client builders
//! and the emulator's `/_emulator/*` control plane. Each test file uses a subset of these,
//! hence the `dead_code` allowance.

#![allow(dead_code)]

use std::time::Duration;

use bitrix24::{Client, Pacer, Request, RetryPolicy};
use bitrix24_emulator::Emulator;
use serde_json::Value;

/// The default retry policy with millisecond delays, so retry tests stay fast.
pub fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(50),
        ..RetryPolicy::default()
    }
}

/// A client on user 1's webhook with [`fast_retries`] and no pacing.
pub fn fast_webhook(emu: &Emulator, secret: &str) -> Client {
    Client::builder(emu.webhook_url(1, secret))
        .retry(fast_retries())
        .pacer(Pacer::Off)
        .build()
        .unwrap()
}

/// A client with an OAuth access token, [`fast_retries`] and no pacing.
pub fn fast_oauth(emu: &Emulator, token: &str) -> Client {
    Client::builder(emu.url())
        .token(token)
        .retry(fast_retries())
        .pacer(Pacer::Off)
        .build()
        .unwrap()
}

/// `im.notify.personal.add` of `text` to `user`.
pub fn add(user: u64, text: &str) -> Request {
    Request::new("im.notify.personal.add")
        .param("USER_ID", user.to_string())
        .param("MESSAGE", text)
}

/// `GET` a control-plane path (such as `/_emulator/requests`) and parse its JSON answer.
pub async fn control_get<T: serde::de::DeserializeOwned>(emu: &Emulator, path: &str) -> T {
    reqwest::get(format!("{}{path}", emu.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// `POST` a JSON body to a control-plane path and parse its JSON answer.
pub async fn control_post(emu: &Emulator, path: &str, body: &Value) -> Value {
    reqwest::Client::new()
        .post(format!("{}{path}", emu.url()))
        .json(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Installs fault rules (`POST /_emulator/faults`); asserts they were accepted.
pub async fn faults(emu: &Emulator, rules: Value) {
    let status = reqwest::Client::new()
        .post(format!("{}/_emulator/faults", emu.url()))
        .json(&rules)
        .send()
        .await
        .unwrap()
        .status();
    assert!(status.is_success(), "fault rules refused: {status}");
}

/// Every REST call the emulator received (`GET /_emulator/requests`), oldest first.
pub async fn request_log(emu: &Emulator) -> Vec<Value> {
    control_get(emu, "/_emulator/requests").await
}

/// The fault rules that have not fired yet (`GET /_emulator/faults`).
pub async fn remaining_faults(emu: &Emulator) -> Vec<Value> {
    control_get(emu, "/_emulator/faults").await
}

/// A fresh token pair from the control plane (`POST /_emulator/oauth/issue`), as JSON.
pub async fn issue_tokens(emu: &Emulator, body: &Value) -> Value {
    control_post(emu, "/_emulator/oauth/issue", body).await
}

/// The OAuth server's refresh counters (`GET /_emulator/oauth/refreshes`).
pub async fn refresh_counters(emu: &Emulator) -> Value {
    control_get(emu, "/_emulator/oauth/refreshes").await
}
