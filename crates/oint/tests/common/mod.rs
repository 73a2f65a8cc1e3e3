//! Helpers shared by the CLI test files: run the built `oint`, read its output.
#![allow(dead_code)]

pub mod redis;
pub mod relay;

use std::path::Path;
use std::process::Output;

use bitrix24_emulator::{BUILTIN_CLIENT_ID, BUILTIN_CLIENT_SECRET, Config, Emulator, Plan};
use serde_json::{Value, json};

pub const SECRET: &str = "cli-webhook-secret-93d2";
pub const TOKEN: &str = "cli-oauth-token-5e07";

pub async fn emulator() -> Emulator {
    Emulator::start(
        Config::default()
            .webhook(1, SECRET)
            .access_token(1, TOKEN)
            .expired_access_token(1, "stale-token"),
    )
    .await
    .expect("emulator starts")
}

/// The `oint` command with `args` and a clean environment: no BITRIX24_* or OINT_* settings
/// and no config file from the caller, unless `env` gives them.
pub fn oint_command(args: &[&str], env: &[(&str, &str)]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_oint"));
    cmd.args(args)
        .env_remove("BITRIX24_URL")
        .env_remove("BITRIX24_TOKEN")
        .env_remove("OINT_PORTAL")
        .env_remove("BITRIX24_CLIENT_ID")
        .env_remove("BITRIX24_CLIENT_SECRET")
        .env_remove("BITRIX24_REFRESH_TOKEN")
        .env_remove("BITRIX24_OAUTH_URL")
        .env_remove("BITRIX24_TOKEN_STORE")
        .env_remove("OINT_LIMIT_STORE")
        .env_remove("OINT_LIMIT_STORE_PASSWORD")
        .env_remove("OINT_LIMIT_STORE_PASSWORD_FILE")
        .env("OINT_CONFIG", "/nonexistent/oint-test-config.toml")
        .env(
            "OINT_STATE_DIR",
            std::env::temp_dir().join("oint-test-state"),
        );
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Runs [`oint_command`] to its end.
pub async fn oint(args: &[&str], env: &[(&str, &str)]) -> Output {
    // Liveness only: a run that hangs fails the test instead of holding the suite (the
    // child is killed when the timed-out future is dropped).
    let mut command = oint_command(args, env);
    command.kill_on_drop(true);
    let output = tokio::time::timeout(std::time::Duration::from_secs(300), command.output())
        .await
        .unwrap_or_else(|_| panic!("oint {args:?} did not finish in 300 s"))
        .expect("oint runs");
    // Every run in the suite, whatever it tests, must keep the known secrets out of its
    // output: the webhook secret, the access token, the OAuth client secret, and any
    // secret handed over in the environment.
    let mut secrets = vec![SECRET, TOKEN, bitrix24_emulator::BUILTIN_CLIENT_SECRET];
    const SECRET_VARS: &[&str] = &[
        "BITRIX24_TOKEN",
        "BITRIX24_CLIENT_SECRET",
        "BITRIX24_REFRESH_TOKEN",
        "OINT_LIMIT_STORE_PASSWORD",
    ];
    for (k, v) in env {
        if SECRET_VARS.contains(k) {
            secrets.push(v);
        }
    }
    for text in [stdout(&output), stderr(&output)] {
        for secret in secrets.iter().filter(|s| s.len() >= 6) {
            assert!(
                !text.contains(secret),
                "a secret leaked in {args:?}: {text}"
            );
        }
    }
    output
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", stdout(o)))
}

pub fn assert_no_secrets(o: &Output) {
    for text in [stdout(o), stderr(o)] {
        assert!(
            !text.contains(SECRET) && !text.contains(TOKEN),
            "secret leaked: {text}"
        );
    }
}

/// An emulator without a rate limit, for runs that send many notifications.
pub async fn unlimited() -> Emulator {
    Emulator::start(
        Config::default()
            .webhook(1, SECRET)
            .access_token(1, TOKEN)
            .plan(Plan::Unlimited),
    )
    .await
    .unwrap()
}

/// A fresh token pair for user 1.
pub async fn issue(emu: &Emulator, ttl: u64) -> (String, String) {
    let body = emu
        .issue_tokens(&json!({"user_id": 1, "ttl": ttl}))
        .expect("tokens issued");
    let s = |k: &str| body[k].as_str().unwrap().to_string();
    (s("access_token"), s("refresh_token"))
}

/// `(succeeded, failed)` refreshes at the OAuth server.
pub async fn refreshes(emu: &Emulator) -> (u64, u64) {
    let counters = emu.refreshes();
    (counters.succeeded, counters.failed)
}

/// The OAuth environment for `emu`, with `store` as the token store.
pub fn oauth_env(emu: &Emulator, refresh: &str, store: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("BITRIX24_URL", emu.url()),
        ("BITRIX24_CLIENT_ID", BUILTIN_CLIENT_ID.into()),
        ("BITRIX24_CLIENT_SECRET", BUILTIN_CLIENT_SECRET.into()),
        ("BITRIX24_REFRESH_TOKEN", refresh.into()),
        ("BITRIX24_OAUTH_URL", format!("{}/oauth/token/", emu.url())),
        ("BITRIX24_TOKEN_STORE", store.display().to_string()),
    ]
}

pub mod alertmanager;
