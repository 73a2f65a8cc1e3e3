//! One OAuth token pair shared between machines through a real `redis-server`
//! (`--limit-store`): "hosts" are `oint` processes with state directories and token files of
//! their own, so Redis is the only thing they share. Refresh tokens work once: two hosts
//! refreshing would cost one of them `invalid_grant`.
#![cfg(feature = "redis")]

mod common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, SystemTime};

use bitrix24::{FileTokenStore, TokenStore, Tokens};
use bitrix24_emulator::{BUILTIN_CLIENT_SECRET, Config, Emulator};
use common::redis::RedisServer;
use common::*;
use secrecy::ExposeSecret;

/// Hosts of one OAuth application: each its own state directory and token file under
/// `root`, all with the same Redis as their limit store.
struct Hosts<'a> {
    emu: &'a Emulator,
    refresh: String,
    root: &'a Path,
    store: String,
}

impl Hosts<'_> {
    async fn run(&self, n: usize, args: &[&str]) -> Output {
        let dir = self.root.join(format!("host-{n}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut env = oauth_env(self.emu, &self.refresh, &dir.join("tokens.json"));
        env.push(("OINT_STATE_DIR", dir.join("state").display().to_string()));
        env.push(("OINT_LIMIT_STORE", self.store.clone()));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        oint(args, &env).await
    }

    async fn send(&self, n: usize, text: &str) -> Output {
        self.run(n, &["notify", "send", "--user", "2", "--text", text])
            .await
    }
}

fn redis_connection(url: &str) -> ::redis::Connection {
    ::redis::Client::open(url)
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(5))
        .unwrap()
}

/// The one token key the hosts share, and its value.
fn shared_pair(url: &str) -> (String, String) {
    let mut redis = redis_connection(url);
    let keys: Vec<String> = ::redis::cmd("KEYS")
        .arg("oint:*:oauth:*")
        .query(&mut redis)
        .unwrap();
    let pairs: Vec<&String> = keys.iter().filter(|k| !k.ends_with(":lock")).collect();
    assert_eq!(pairs.len(), 1, "one shared pair: {keys:?}");
    let value: String = ::redis::cmd("GET").arg(pairs[0]).query(&mut redis).unwrap();
    (pairs[0].clone(), value)
}

#[tokio::test(flavor = "multi_thread")]
async fn eight_hosts_whose_token_expires_together_refresh_once() {
    let dir = tempfile::tempdir().unwrap();
    let Some(redis) = RedisServer::start(dir.path(), &[]) else {
        return;
    };
    let emu = Emulator::start(Config::default()).await.unwrap();
    let (access, refresh) = issue(&emu, 0).await;
    let expired = Tokens::new(
        &access,
        &refresh,
        Some(SystemTime::now() - Duration::from_secs(1)),
    );
    // Half the hosts have used this pair before (their token file holds it), half start from
    // the configured refresh token alone.
    for n in 0..4 {
        let host_dir = dir.path().join(format!("host-{n}"));
        FileTokenStore::new(host_dir.join("tokens.json"))
            .save(&expired)
            .unwrap();
    }
    let url = redis.url(2);
    let hosts = Hosts {
        emu: &emu,
        refresh: refresh.clone(),
        root: dir.path(),
        store: url.clone(),
    };
    let runs = (0..8).map(|n| {
        let hosts = &hosts;
        async move {
            let text = format!("host {n}");
            hosts
                .run(
                    n,
                    &["notify", "send", "--user", "2", "--text", &text, "--debug"],
                )
                .await
        }
    });
    let outputs = futures_util::future::join_all(runs).await;
    for o in &outputs {
        assert_eq!(o.status.code(), Some(0), "{}", stderr(o));
    }
    assert_eq!(
        refreshes(&emu).await,
        (1, 0),
        "exactly one refresh across the hosts, and no invalid_grant"
    );
    assert_eq!(emu.notifications().len(), 8);
    let debug: String = outputs.iter().map(stderr).collect();
    assert!(
        debug.contains("token store redis://127.0.0.1:"),
        "--debug names the shared store: {debug}"
    );
    let (key, value) = shared_pair(&url);
    assert!(
        !value.contains(&refresh),
        "the shared pair is the renewed one ({key})"
    );
    let shared: serde_json::Value = serde_json::from_str(&value).unwrap();
    let new_access = shared["access_token"].as_str().unwrap();
    let new_refresh = shared["refresh_token"].as_str().unwrap();
    for o in &outputs {
        for text in [stdout(o), stderr(o)] {
            for secret in [
                BUILTIN_CLIENT_SECRET,
                &access,
                &refresh,
                new_access,
                new_refresh,
            ] {
                assert!(!text.contains(secret), "secret leaked: {text}");
            }
        }
    }

    // The next run of any host uses the shared pair: no refresh, even for a host whose own
    // file still holds the spent one.
    let again = hosts.send(0, "later").await;
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert_eq!(refreshes(&emu).await, (1, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lock_left_by_a_dead_host_expires_and_is_never_deleted_by_another() {
    let dir = tempfile::tempdir().unwrap();
    let Some(redis) = RedisServer::start(dir.path(), &[]) else {
        return;
    };
    let emu = Emulator::start(Config::default()).await.unwrap();
    let (_, refresh) = issue(&emu, 0).await;
    let url = redis.url(0);
    let hosts = Hosts {
        emu: &emu,
        refresh,
        root: dir.path(),
        store: url.clone(),
    };
    // Run once to learn the key names, with the token expiring at once.
    let first = hosts.send(0, "first").await;
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let (key, value) = shared_pair(&url);
    let lock = format!("{key}:lock");
    let mut conn = redis_connection(&url);
    let _: () = ::redis::cmd("DEL").arg(&lock).query(&mut conn).unwrap();

    // A host died holding the lock (it expires in 2 s), and the access token is spent.
    let mut pair: serde_json::Value = serde_json::from_str(&value).unwrap();
    pair["expires"] = serde_json::json!(1);
    let _: () = ::redis::cmd("SET")
        .arg(&key)
        .arg(pair.to_string())
        .query(&mut conn)
        .unwrap();
    let _: () = ::redis::cmd("SET")
        .arg(&lock)
        .arg("dead-host")
        .arg("PX")
        .arg(2000)
        .query(&mut conn)
        .unwrap();
    let before = refreshes(&emu).await;
    let after_lock = hosts.send(1, "after the dead lock").await;
    assert_eq!(after_lock.status.code(), Some(0), "{}", stderr(&after_lock));
    assert_eq!(
        refreshes(&emu).await,
        (before.0 + 1, 0),
        "the lock expired and the host refreshed"
    );
    assert_eq!(emu.notifications().len(), 2);

    let left: Option<String> = ::redis::cmd("GET").arg(&lock).query(&mut conn).unwrap();
    assert_eq!(left, None, "the host released its lock");

    // A holder whose lock expired and was taken over never deletes its successor's.
    let target = bitrix24::RedisTarget::parse(&url, None).unwrap();
    let store = bitrix24::RedisTokenStore::new(&target, key.clone()).unwrap();
    let held = tokio::task::spawn_blocking(move || store.lock().unwrap())
        .await
        .unwrap();
    let _: () = ::redis::cmd("SET")
        .arg(&lock)
        .arg("successor")
        .query(&mut conn)
        .unwrap();
    drop(held);
    let now: Option<String> = ::redis::cmd("GET").arg(&lock).query(&mut conn).unwrap();
    assert_eq!(now.as_deref(), Some("successor"));
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_store_unreachable_and_a_local_fallback_tokens_stay_in_the_hosts_file() {
    let dir = tempfile::tempdir().unwrap();
    let emu = Emulator::start(Config::default()).await.unwrap();
    let (_, refresh) = issue(&emu, 0).await;
    // Nothing listens on port 1.
    let hosts = Hosts {
        emu: &emu,
        refresh: refresh.clone(),
        root: dir.path(),
        store: "redis://127.0.0.1:1/0".into(),
    };
    let refused = hosts.send(0, "no store").await;
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert_eq!(
        refreshes(&emu).await,
        (0, 0),
        "nothing spent the refresh token"
    );

    let fell_back = hosts
        .run(
            0,
            &[
                "--limit-store-fallback",
                "local",
                "notify",
                "send",
                "--user",
                "2",
                "--text",
                "local tokens",
            ],
        )
        .await;
    assert_eq!(fell_back.status.code(), Some(0), "{}", stderr(&fell_back));
    assert!(stderr(&fell_back).contains("warning: --limit-store"));
    assert_eq!(refreshes(&emu).await, (1, 0));
    let local = FileTokenStore::new(dir.path().join("host-0/tokens.json"))
        .load()
        .unwrap()
        .expect("the renewed pair is in the host's file");
    assert_ne!(local.refresh_token().expose_secret(), refresh);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_huge_or_damaged_shared_pair_is_one_line_and_spends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let Some(redis) = RedisServer::start(dir.path(), &[]) else {
        return;
    };
    let emu = Emulator::start(Config::default()).await.unwrap();
    let (_, refresh) = issue(&emu, 0).await;
    let url = redis.url(1);
    let hosts = Hosts {
        emu: &emu,
        refresh,
        root: dir.path(),
        store: url.clone(),
    };
    let first = hosts.send(0, "first").await;
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let (key, _) = shared_pair(&url);
    let mut conn = redis_connection(&url);
    let refreshed = refreshes(&emu).await;
    for value in ["x".repeat(3 << 20), "{\"access_token\": 1".to_string()] {
        let _: () = ::redis::cmd("SET")
            .arg(&key)
            .arg(&value)
            .query(&mut conn)
            .unwrap();
        let out = hosts.send(1, "damaged").await;
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(&key) && err.contains("delete"), "{err}");
        if value.len() > 1 << 20 {
            assert!(err.contains("(3145728 bytes)"), "refused unread: {err}");
        }
        assert_eq!(refreshes(&emu).await, refreshed, "nothing refreshed");
    }
    assert_eq!(emu.notifications().len(), 1);
}
