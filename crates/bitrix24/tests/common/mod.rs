//! Helpers shared by the library's integration tests against the emulator: client builders.
//! The emulator's state (faults, request log, tokens) is reached through the in-process
//! control API of [`Emulator`]. Each test file uses a subset of these, hence the `dead_code`
//! allowance.

#![allow(dead_code)]

use std::time::Duration;

use bitrix24::{Client, Pacer, Request, RetryPolicy};
use bitrix24_emulator::Emulator;

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
