//! Helpers shared by the CLI test files: run the built `oint`, read its output.
#![allow(dead_code)]

use std::process::Output;

use bitrix24_emulator::{Config, Emulator};
use serde_json::Value;

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
    let output = oint_command(args, env).output().await.expect("oint runs");
    // Every run in the suite, whatever it tests, must keep the known secrets out of its
    // output: the webhook secret, the access token, the OAuth client secret, and any
    // secret handed over in the environment.
    let mut secrets = vec![SECRET, TOKEN, bitrix24_emulator::BUILTIN_CLIENT_SECRET];
    const SECRET_VARS: &[&str] = &[
        "BITRIX24_TOKEN",
        "BITRIX24_CLIENT_SECRET",
        "BITRIX24_REFRESH_TOKEN",
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
