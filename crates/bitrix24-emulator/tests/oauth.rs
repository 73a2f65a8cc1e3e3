//! Conformance tests for the OAuth server (docs/portal-behaviour.md §3.5–§3.8): `/oauth/token/` refresh with
//! single-use refresh tokens, its errors, and the `/_emulator/oauth/*` control plane.
//!
//! Expiry is made deterministic with `ttl: 0` (a token that expires the second it is issued),
//! never by waiting.

use bitrix24_emulator::{BUILTIN_CLIENT_ID, BUILTIN_CLIENT_SECRET, Config, Emulator};
use serde_json::{Value, json};

mod common;
use common::*;

const APP: &str = "app.second";
const APP_SECRET: &str = "second-secret";

fn config() -> Config {
    Config::default().oauth_app(APP, APP_SECRET)
}

async fn start() -> Emulator {
    start_with(config()).await
}

/// `POST /_emulator/oauth/issue`; asserts success.
async fn issue(emu: &Emulator, body: Value) -> Value {
    let (status, body) = post_json(&format!("{}/_emulator/oauth/issue", emu.url()), body).await;
    assert_eq!(status, 200, "{body}");
    body
}

fn s(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .to_owned()
}

/// `GET /oauth/token/?grant_type=refresh_token&…`, as the docs show it.
async fn refresh(emu: &Emulator, client_id: &str, secret: &str, token: &str) -> (u16, Value) {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "refresh_token")
        .append_pair("client_id", client_id)
        .append_pair("client_secret", secret)
        .append_pair("refresh_token", token)
        .finish();
    get(&format!("{}/oauth/token/?{query}", emu.url())).await
}

async fn refresh_builtin(emu: &Emulator, token: &str) -> (u16, Value) {
    refresh(emu, BUILTIN_CLIENT_ID, BUILTIN_CLIENT_SECRET, token).await
}

/// Send a notification to user 2 with an access token; returns the answer.
async fn notify(emu: &Emulator, token: &str, method: &str, extra: Value) -> (u16, Value) {
    let mut body = json!({"USER_ID": 2, "MESSAGE": "hi", "auth": token});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    post_json(&format!("{}/rest/{method}", emu.url()), body).await
}

async fn counters(emu: &Emulator) -> Value {
    get(&format!("{}/_emulator/oauth/refreshes", emu.url()))
        .await
        .1
}

fn assert_oauth_error(got: &(u16, Value), status: u16, code: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["error"], code, "{}", got.1);
    assert!(got.1["error_description"].is_string(), "{}", got.1);
}

#[tokio::test]
async fn oauth_issue_expire_refresh_and_call_again() {
    let emu = start().await;
    let first = issue(&emu, json!({"user_id": 3, "ttl": 0})).await;
    assert_eq!(first["user_id"], 3);
    assert_eq!(first["client_id"], BUILTIN_CLIENT_ID);
    assert_eq!(first["expires_in"], 0);

    // ttl 0: expired the second it was issued.
    let got = notify(
        &emu,
        &s(&first["access_token"]),
        "im.notify.personal.add",
        json!({}),
    )
    .await;
    assert_eq!(got.0, 401, "{}", got.1);
    assert_eq!(got.1["error"], "expired_token");

    let (status, fresh) = refresh_builtin(&emu, &s(&first["refresh_token"])).await;
    assert_eq!(status, 200, "{fresh}");
    let keys = object_keys(&fresh);
    assert_eq!(
        keys,
        [
            "access_token",
            "client_endpoint",
            "domain",
            "expires",
            "expires_in",
            "member_id",
            "refresh_token",
            "scope",
            "server_endpoint",
            "status",
            "user_id"
        ]
    );
    assert_eq!(fresh["client_endpoint"], format!("{}/rest/", emu.url()));
    assert_eq!(fresh["expires_in"], 3600);
    assert_eq!(fresh["user_id"], 3);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expires = fresh["expires"].as_u64().expect("expires");
    assert!(expires > now + 3000 && expires <= now + 3700, "{expires}");
    assert_eq!(s(&fresh["member_id"]).len(), 32);
    assert_ne!(fresh["access_token"], first["access_token"]);
    assert_ne!(fresh["refresh_token"], first["refresh_token"]);

    let got = notify(
        &emu,
        &s(&fresh["access_token"]),
        "im.notify.personal.add",
        json!({}),
    )
    .await;
    assert_eq!(got.0, 200, "{}", got.1);
    // The new token acts as the same user.
    assert_eq!(emu.notifications()[0].author_id, 3);
}

#[tokio::test]
async fn oauth_refresh_accepts_a_post_form_body_and_no_trailing_slash() {
    let emu = start().await;
    let first = issue(&emu, json!({"user_id": 1})).await;
    let form = form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "refresh_token")
        .append_pair("client_id", BUILTIN_CLIENT_ID)
        .append_pair("client_secret", BUILTIN_CLIENT_SECRET)
        .append_pair("refresh_token", &s(&first["refresh_token"]))
        .finish();
    let (status, body) = decode(
        client()
            .post(format!("{}/oauth/token", emu.url()))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user_id"], 1);
}

#[tokio::test]
async fn oauth_refresh_token_can_be_used_once() {
    let emu = start().await;
    let first = issue(&emu, json!({"user_id": 1})).await;
    let old = s(&first["refresh_token"]);
    let (status, second) = refresh_builtin(&emu, &old).await;
    assert_eq!(status, 200);
    assert_oauth_error(&refresh_builtin(&emu, &old).await, 400, "invalid_grant");
    // The rotated one works, once.
    let new = s(&second["refresh_token"]);
    assert_eq!(refresh_builtin(&emu, &new).await.0, 200);
    assert_oauth_error(&refresh_builtin(&emu, &new).await, 400, "invalid_grant");
    assert_oauth_error(
        &refresh_builtin(&emu, "never-issued").await,
        400,
        "invalid_grant",
    );
}

#[tokio::test]
async fn oauth_old_access_token_keeps_working_until_it_expires() {
    let emu = start().await;
    let first = issue(&emu, json!({"user_id": 1})).await;
    assert_eq!(
        refresh_builtin(&emu, &s(&first["refresh_token"])).await.0,
        200
    );
    let got = notify(
        &emu,
        &s(&first["access_token"]),
        "im.notify.personal.add",
        json!({}),
    )
    .await;
    assert_eq!(got.0, 200, "{}", got.1);
}

#[tokio::test]
async fn oauth_wrong_client_is_invalid_client_and_keeps_the_refresh_token() {
    let emu = start().await;
    let first = issue(&emu, json!({"user_id": 1})).await;
    let token = s(&first["refresh_token"]);
    assert_oauth_error(
        &refresh(&emu, BUILTIN_CLIENT_ID, "wrong", &token).await,
        401,
        "invalid_client",
    );
    assert_oauth_error(
        &refresh(&emu, "no.such.app", BUILTIN_CLIENT_SECRET, &token).await,
        401,
        "invalid_client",
    );
    // Another app's valid credentials do not unlock this app's refresh token.
    assert_oauth_error(
        &refresh(&emu, APP, APP_SECRET, &token).await,
        400,
        "invalid_grant",
    );
    // None of that consumed it.
    assert_eq!(refresh_builtin(&emu, &token).await.0, 200);
}

#[tokio::test]
async fn oauth_missing_or_malformed_parameters_are_invalid_request() {
    let emu = start().await;
    let first = issue(&emu, json!({"user_id": 1})).await;
    let token = s(&first["refresh_token"]);
    let base = [
        ("grant_type", "refresh_token"),
        ("client_id", BUILTIN_CLIENT_ID),
        ("client_secret", BUILTIN_CLIENT_SECRET),
        ("refresh_token", token.as_str()),
    ];
    // (parameter to drop or replace, replacement, expected error)
    let table: [(&str, Option<&str>, &str); 7] = [
        ("grant_type", None, "invalid_request"),
        ("grant_type", Some("foo"), "invalid_request"),
        ("grant_type", Some("password"), "unsupported_grant_type"),
        ("grant_type", Some("authorization_code"), "invalid_request"),
        ("client_id", None, "invalid_request"),
        ("client_secret", None, "invalid_request"),
        ("refresh_token", None, "invalid_request"),
    ];
    for (name, replacement, code) in table {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (k, v) in base {
            if k == name {
                if let Some(r) = replacement {
                    query.append_pair(k, r);
                }
            } else {
                query.append_pair(k, v);
            }
        }
        let got = decode(
            client()
                .get(format!("{}/oauth/token/?{}", emu.url(), query.finish()))
                .send()
                .await
                .expect("request"),
        )
        .await;
        assert_oauth_error(&got, 400, code);
    }
    // An authorization code is never valid here: no codes are handed out.
    let got = decode(
        client()
            .get(format!(
                "{}/oauth/token/?grant_type=authorization_code&client_id={BUILTIN_CLIENT_ID}&client_secret={BUILTIN_CLIENT_SECRET}&code=abc",
                emu.url()
            ))
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_oauth_error(&got, 400, "invalid_grant");
    // The token survived all of it.
    assert_eq!(refresh_builtin(&emu, &token).await.0, 200);
}

#[tokio::test]
async fn oauth_expired_refresh_token_is_invalid_grant() {
    let emu = start().await;
    let first = issue(&emu, json!({"user_id": 1, "refresh_ttl": 0})).await;
    assert_oauth_error(
        &refresh_builtin(&emu, &s(&first["refresh_token"])).await,
        400,
        "invalid_grant",
    );
}

#[tokio::test]
async fn oauth_concurrent_refreshes_with_one_token_exactly_one_succeeds() {
    let emu = start().await;
    let first = issue(&emu, json!({"user_id": 1})).await;
    let token = s(&first["refresh_token"]);
    let url = emu.url();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let token = token.clone();
            let url = url.clone();
            tokio::spawn(async move {
                let resp = client()
                    .get(format!(
                        "{url}/oauth/token/?grant_type=refresh_token&client_id={BUILTIN_CLIENT_ID}&client_secret={BUILTIN_CLIENT_SECRET}&refresh_token={token}"
                    ))
                    .send()
                    .await
                    .expect("request");
                decode(resp).await
            })
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        let got = task.await.expect("task");
        if got.0 == 200 {
            ok += 1;
        } else {
            assert_oauth_error(&got, 400, "invalid_grant");
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(counters(&emu).await, json!({"succeeded": 1, "failed": 15}));
}

#[tokio::test]
async fn oauth_refresh_counters_count_successes_and_failures() {
    let emu = start().await;
    assert_eq!(counters(&emu).await, json!({"succeeded": 0, "failed": 0}));
    let first = issue(&emu, json!({"user_id": 1})).await;
    // Issuing is not a refresh.
    assert_eq!(counters(&emu).await, json!({"succeeded": 0, "failed": 0}));
    let token = s(&first["refresh_token"]);
    refresh(&emu, BUILTIN_CLIENT_ID, "wrong", &token).await;
    refresh_builtin(&emu, &token).await;
    refresh_builtin(&emu, &token).await;
    assert_eq!(counters(&emu).await, json!({"succeeded": 1, "failed": 2}));
}

#[tokio::test]
async fn oauth_refreshed_token_keeps_its_app() {
    let emu = start().await;
    let first = issue(&emu, json!({"user_id": 4, "client_id": APP})).await;
    assert_eq!(first["client_id"], APP);
    let (status, fresh) = refresh(&emu, APP, APP_SECRET, &s(&first["refresh_token"])).await;
    assert_eq!(status, 200, "{fresh}");
    let got = notify(
        &emu,
        &s(&fresh["access_token"]),
        "im.notify.system.add",
        json!({}),
    )
    .await;
    assert_eq!(got.0, 200, "{}", got.1);
    // A configured app's name is its client id; it prefixes the app's system notifications.
    assert_eq!(emu.notifications()[0].message, format!("{APP}#BR#hi"));
}

#[tokio::test]
async fn oauth_app_secret_of_the_builtin_app_can_be_replaced() {
    let emu = Emulator::start(Config::default().oauth_app(BUILTIN_CLIENT_ID, "mine"))
        .await
        .expect("emulator starts");
    let first = issue(&emu, json!({"user_id": 1})).await;
    let token = s(&first["refresh_token"]);
    assert_oauth_error(&refresh_builtin(&emu, &token).await, 401, "invalid_client");
    assert_eq!(
        refresh(&emu, BUILTIN_CLIENT_ID, "mine", &token).await.0,
        200
    );
}

#[tokio::test]
async fn oauth_issue_rejects_unknown_users_and_apps() {
    let emu = start().await;
    for body in [
        json!({"user_id": 999}),
        json!({"user_id": 0}),
        json!({"user_id": 1, "client_id": "no.such.app"}),
        json!({"nothing": true}),
    ] {
        let (status, answer) = decode(
            client()
                .post(format!("{}/_emulator/oauth/issue", emu.url()))
                .json(&body)
                .send()
                .await
                .expect("request"),
        )
        .await;
        assert_eq!(status, 400, "{body}: {answer}");
    }
}

#[tokio::test]
async fn oauth_tokens_survive_a_restart_with_a_data_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("portal.sqlite");
    let emu = Emulator::start(config().data(&data))
        .await
        .expect("emulator starts");
    let first = issue(&emu, json!({"user_id": 1})).await;
    let (_, second) = refresh_builtin(&emu, &s(&first["refresh_token"])).await;
    emu.shutdown().await;

    let emu = Emulator::start(config().data(&data))
        .await
        .expect("emulator restarts");
    let got = notify(
        &emu,
        &s(&second["access_token"]),
        "im.notify.personal.add",
        json!({}),
    )
    .await;
    assert_eq!(got.0, 200, "{}", got.1);
    // The consumed refresh token stays consumed; the rotated one works.
    assert_oauth_error(
        &refresh_builtin(&emu, &s(&first["refresh_token"])).await,
        400,
        "invalid_grant",
    );
    assert_eq!(
        refresh_builtin(&emu, &s(&second["refresh_token"])).await.0,
        200
    );
}

#[test]
fn oauth_app_secrets_stay_out_of_debug() {
    let shown = format!(
        "{:?}",
        Config::default().oauth_app("app.x", "very-secret-value")
    );
    assert!(shown.contains("app.x"), "{shown}");
    assert!(!shown.contains("very-secret-value"), "{shown}");
}

/// portal-behaviour §3.7: `client_endpoint` and `server_endpoint` carry the scheme the portal
/// is served with, so under `--tls` they are `https://` URLs a client can call as given.
#[tokio::test]
async fn oauth_endpoints_use_the_served_scheme() {
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = start_with(config().tls(dir.path())).await;
    let cert = reqwest::Certificate::from_pem(emu.ca_pem().expect("ca").as_bytes()).expect("pem");
    let client = reqwest::Client::builder()
        .tls_certs_only([cert])
        .build()
        .expect("client");
    let rest = format!("{}/rest/", emu.url());
    assert!(rest.starts_with("https://"), "{rest}");
    let issued: Value = client
        .post(format!("{}/_emulator/oauth/issue", emu.url()))
        .json(&json!({"user_id": 1}))
        .send()
        .await
        .expect("issue")
        .json()
        .await
        .expect("json");
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "refresh_token")
        .append_pair("client_id", BUILTIN_CLIENT_ID)
        .append_pair("client_secret", BUILTIN_CLIENT_SECRET)
        .append_pair("refresh_token", &s(&issued["refresh_token"]))
        .finish();
    let fresh: Value = client
        .get(format!("{}/oauth/token/?{query}", emu.url()))
        .send()
        .await
        .expect("refresh")
        .json()
        .await
        .expect("json");
    for body in [&issued, &fresh] {
        assert_eq!(body["client_endpoint"], json!(rest), "{body}");
        assert_eq!(body["server_endpoint"], json!(rest), "{body}");
    }
}
