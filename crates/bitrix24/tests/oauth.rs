//! OAuth refresh against the emulator's OAuth server: refresh on `expired_token` and ahead of
//! expiry, single flight in a process and across clients sharing a token store, typed errors
//! when the refresh is refused, atomic 0600 persistence, and no secret in any output.
//!
//! Expiry is deterministic: tokens issued with `ttl: 0` are expired the second they exist, and
//! "expires soon" is an `expires_at` given to the client well inside its margin. The
//! `timeout` around calls is a guard against a hang, not a speed assertion.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use bitrix24::{Client, Error, ErrorCode, FileTokenStore, OAuthConfig, TokenStore, Tokens};
use bitrix24_emulator::{BUILTIN_CLIENT_ID, BUILTIN_CLIENT_SECRET, Config, Emulator};
use serde_json::json;

/// Far beyond any honest run; only a hang reaches it.
const GUARD: Duration = Duration::from_secs(60);

/// Limits have tests of their own; here fifty callers at once must not wait on them.
async fn start() -> Emulator {
    Emulator::start(Config::default().plan(bitrix24_emulator::Plan::Unlimited))
        .await
        .expect("emulator starts")
}

/// A fresh token pair for user 1 from the control plane.
async fn issue(emu: &Emulator, ttl: u64) -> (String, String) {
    let body = emu
        .issue_tokens(&json!({"user_id": 1, "ttl": ttl}))
        .expect("tokens issued");
    let s = |k: &str| body[k].as_str().unwrap().to_string();
    (s("access_token"), s("refresh_token"))
}

/// `(succeeded, failed)` refreshes seen by the OAuth server.
async fn refreshes(emu: &Emulator) -> (u64, u64) {
    let body = emu.refreshes();
    (body.succeeded, body.failed)
}

fn token_url(emu: &Emulator) -> String {
    format!("{}/oauth/token/", emu.url())
}

fn app(emu: &Emulator) -> OAuthConfig {
    OAuthConfig::new(BUILTIN_CLIENT_ID, BUILTIN_CLIENT_SECRET).token_url(token_url(emu))
}

fn client(emu: &Emulator, oauth: OAuthConfig) -> Client {
    Client::builder(emu.url())
        .oauth(oauth)
        .pacer(bitrix24::Pacer::Off)
        .build()
        .unwrap()
}

async fn send(client: &Client, text: &str) -> Result<u64, Error> {
    let created = tokio::time::timeout(GUARD, client.notify().personal(2, text).send())
        .await
        .expect("the call does not hang")?;
    Ok(created.expect("a notification id"))
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_token_is_refreshed_and_the_call_resent_once() {
    let emu = start().await;
    let (access, refresh) = issue(&emu, 0).await;
    // Expiry unknown to the client, so it learns from the portal's expired_token.
    let c = client(
        &emu,
        app(&emu)
            .access_token(&access, None)
            .refresh_token(&refresh),
    );
    send(&c, "after expiry").await.unwrap();
    assert_eq!(refreshes(&emu).await, (1, 0));
    assert_eq!(emu.notifications().len(), 1, "delivered exactly once");
    // The new token serves later calls without another refresh.
    send(&c, "again").await.unwrap();
    assert_eq!(refreshes(&emu).await, (1, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn refreshes_ahead_of_expiry_and_not_before_every_call() {
    let emu = start().await;
    let (access, refresh) = issue(&emu, 3600).await;
    // Still valid at the portal, but within the client's 60 s margin.
    let soon = SystemTime::now() + Duration::from_secs(20);
    let c = client(
        &emu,
        app(&emu)
            .access_token(&access, Some(soon))
            .refresh_token(&refresh),
    );
    for i in 0..3 {
        send(&c, &format!("call {i}")).await.unwrap();
    }
    assert_eq!(refreshes(&emu).await, (1, 0));

    // With a smaller margin the same token is simply used.
    let emu = start().await;
    let (access, refresh) = issue(&emu, 3600).await;
    let c = client(
        &emu,
        app(&emu)
            .access_token(&access, Some(soon))
            .refresh_token(&refresh)
            .refresh_margin(Duration::from_secs(1)),
    );
    send(&c, "no refresh").await.unwrap();
    assert_eq!(refreshes(&emu).await, (0, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_concurrent_calls_with_an_expired_token_make_one_refresh() {
    for known_expiry in [false, true] {
        let emu = start().await;
        let (access, refresh) = issue(&emu, 0).await;
        let expires = known_expiry.then(|| SystemTime::now() - Duration::from_secs(1));
        let c = client(
            &emu,
            app(&emu)
                .access_token(&access, expires)
                .refresh_token(&refresh),
        );
        let calls = (0..50).map(|i| {
            let c = c.clone();
            tokio::spawn(async move { send(&c, &format!("n{i}")).await })
        });
        for call in futures_util::future::join_all(calls).await {
            call.unwrap().unwrap();
        }
        assert_eq!(
            refreshes(&emu).await,
            (1, 0),
            "known expiry: {known_expiry}"
        );
        assert_eq!(emu.notifications().len(), 50);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_client_secret_is_invalid_client_for_every_waiter() {
    let emu = start().await;
    let (_, refresh) = issue(&emu, 0).await;
    let c = client(
        &emu,
        OAuthConfig::new(BUILTIN_CLIENT_ID, "not-the-secret-31f")
            .token_url(token_url(&emu))
            .refresh_token(&refresh),
    );
    let calls = (0..10).map(|i| {
        let c = c.clone();
        tokio::spawn(async move { send(&c, &format!("n{i}")).await })
    });
    for call in futures_util::future::join_all(calls).await {
        let err = call.unwrap().unwrap_err();
        assert!(err.needs_reauthorization() && err.is_auth(), "{err:?}");
        assert_eq!(err.api().unwrap().code, ErrorCode::InvalidClient);
        let shown = format!("{err} {err:?}");
        assert!(shown.contains("client secret"), "{shown}");
        assert!(
            !shown.contains("not-the-secret-31f") && !shown.contains(&refresh),
            "{shown}"
        );
    }
    // Waiters share the first attempt's error, and later callers do not ask again.
    assert_eq!(refreshes(&emu).await, (0, 1));
    assert!(emu.notifications().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn spent_refresh_token_is_invalid_grant_saying_to_authorize_again() {
    let emu = start().await;
    let (access, refresh) = issue(&emu, 0).await;
    // Someone else spends the refresh token first.
    let c = client(&emu, app(&emu).refresh_token(&refresh));
    send(&c, "spends it").await.unwrap();
    let c = client(
        &emu,
        app(&emu)
            .access_token(&access, None)
            .refresh_token(&refresh),
    );
    let err = send(&c, "too late").await.unwrap_err();
    assert_eq!(err.api().unwrap().code, ErrorCode::InvalidGrant);
    assert!(err.needs_reauthorization());
    assert!(
        err.to_string().contains("authorize the application again"),
        "{err}"
    );
    assert!(!format!("{err} {err:?}").contains(&refresh));
    // A later call fails the same way without spending the refused token again.
    let err = send(&c, "still too late").await.unwrap_err();
    assert!(err.needs_reauthorization());
    assert_eq!(refreshes(&emu).await, (1, 1));
    assert_eq!(emu.notifications().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_are_saved_atomically_with_mode_0600_and_the_hook_is_called() {
    let emu = start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested").join("tokens.json");
    let (access, refresh) = issue(&emu, 0).await;
    let renewed = Arc::new(AtomicUsize::new(0));
    let seen = renewed.clone();
    let hooked = Arc::new(std::sync::Mutex::new(None::<Tokens>));
    let hook_slot = hooked.clone();
    let c = client(
        &emu,
        app(&emu)
            .access_token(&access, None)
            .refresh_token(&refresh)
            .file_store(&path)
            .on_renewed(move |t| {
                seen.fetch_add(1, Ordering::SeqCst);
                *hook_slot.lock().unwrap() = Some(t.clone());
            }),
    );
    send(&c, "x").await.unwrap();
    assert_eq!(renewed.load(Ordering::SeqCst), 1);

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let store = FileTokenStore::new(&path);
    let stored = store.load().unwrap().expect("tokens saved");
    use secrecy::ExposeSecret;
    let hooked = hooked.lock().unwrap().clone().unwrap();
    assert_eq!(
        stored.refresh_token().expose_secret(),
        hooked.refresh_token().expose_secret()
    );
    assert_ne!(stored.refresh_token().expose_secret(), refresh);
    assert!(stored.expires_at().unwrap() > SystemTime::now());
    // Only the token file and its lock file: no temporary file left behind.
    let mut names: Vec<String> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["tokens.json", "tokens.json.lock"]);

    // A second client needs nothing but the store, and does not refresh.
    let c2 = client(&emu, app(&emu).file_store(&path));
    send(&c2, "from the store").await.unwrap();
    assert_eq!(refreshes(&emu).await, (1, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_sharing_a_store_spend_each_refresh_token_once() {
    // Eight clients stand in for eight processes: each has its own in-process lock, so only
    // the store's file lock keeps them from refreshing with the same token.
    let emu = start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.json");
    let (access, refresh) = issue(&emu, 0).await;
    FileTokenStore::new(&path)
        .save(&Tokens::new(
            &access,
            &refresh,
            Some(SystemTime::now() - Duration::from_secs(1)),
        ))
        .unwrap();
    let calls = (0..8).map(|i| {
        let c = client(&emu, app(&emu).refresh_token(&refresh).file_store(&path));
        tokio::spawn(async move { send(&c, &format!("p{i}")).await })
    });
    for call in futures_util::future::join_all(calls).await {
        call.unwrap().unwrap();
    }
    assert_eq!(refreshes(&emu).await, (1, 0));
    assert_eq!(emu.notifications().len(), 8);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_configured_refresh_token_replaces_a_dead_stored_one() {
    let emu = start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.json");
    let (old_access, old_refresh) = issue(&emu, 0).await;
    FileTokenStore::new(&path)
        .save(&Tokens::new(&old_access, &old_refresh, None))
        .unwrap();
    // The stored refresh token gets spent elsewhere; the app is authorized again.
    send(&client(&emu, app(&emu).refresh_token(&old_refresh)), "x")
        .await
        .unwrap();
    let (_, new_refresh) = issue(&emu, 0).await;
    let c = client(
        &emu,
        app(&emu).refresh_token(&new_refresh).file_store(&path),
    );
    send(&c, "after re-authorization").await.unwrap();
    assert_eq!(refreshes(&emu).await, (2, 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn store_failures_are_typed_and_secret_free() {
    let emu = start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.json");
    std::fs::write(&path, "{\"access_token\": \"leaky-1\", \"refresh_token\": ").unwrap();
    let c = client(&emu, app(&emu).file_store(&path));
    let err = send(&c, "x").await.unwrap_err();
    assert!(matches!(err, Error::TokenStore { .. }), "{err:?}");
    let shown = err.to_string();
    assert!(
        shown.contains("tokens.json") && !shown.contains("leaky-1"),
        "{shown}"
    );
    assert_eq!(refreshes(&emu).await, (0, 0));

    // Without a refresh token or a store, building fails before anything is sent.
    let err = Client::builder(emu.url())
        .oauth(OAuthConfig::new(BUILTIN_CLIENT_ID, BUILTIN_CLIENT_SECRET))
        .build()
        .unwrap_err();
    assert!(err.to_string().starts_with("refresh_token:"), "{err}");
    // A token endpoint in clear text on the network is refused.
    let err = Client::builder(emu.url())
        .oauth(
            app(&emu)
                .refresh_token("r")
                .token_url("http://oauth.example.com/oauth/token/"),
        )
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("plain http://"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_are_absent_from_debug() {
    let emu = start().await;
    let (access, refresh) = issue(&emu, 0).await;
    let config = app(&emu)
        .access_token(&access, None)
        .refresh_token(&refresh);
    let c = client(&emu, config.clone());
    send(&c, "x").await.unwrap();
    let shown = format!(
        "{config:?} {c:?} {:?}",
        c.preview(&bitrix24::Request::new("m"))
    );
    for secret in [BUILTIN_CLIENT_SECRET, access.as_str(), refresh.as_str()] {
        assert!(!shown.contains(secret), "{shown}");
    }
}
