//! Hostile and careless input around authentication and the transport: OAuth servers and
//! token stores with absurd expiry times, token stores that are readable by others, symlinks,
//! FIFOs or devices, answers that never end, mistyped URL schemes and method names that try
//! to leave `/rest/`.
//!
//! The portal is always the emulator. Where the emulator cannot misbehave in the way needed
//! (an endless body, a negative `expires_in`), a small server in this file plays the server:
//! raw HTTP/1.1 on 127.0.0.1:0, either streaming garbage or forwarding to the emulator's OAuth
//! server and rewriting its answer. `GUARD` timeouts only catch hangs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use bitrix24::{
    Client, Error, FileTokenStore, MAX_ANSWER_BYTES, MAX_TOKEN_LIFETIME, OAuthConfig, Pacer,
    RetryPolicy, TokenStore, Tokens,
};
use bitrix24_emulator::{BUILTIN_CLIENT_ID, BUILTIN_CLIENT_SECRET, Config, Emulator, Plan};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

mod common;
use common::*;

const GUARD: Duration = Duration::from_secs(60);
/// Kernel socket buffers on loopback: what a server can write that nobody reads.
const SOCKET_SLACK: u64 = 16 << 20;
const HUGE: u64 = 9_223_372_036_854_775_807;

async fn start(config: Config) -> Emulator {
    Emulator::start(config.plan(Plan::Unlimited))
        .await
        .expect("emulator starts")
}

async fn issue(emu: &Emulator, ttl: u64) -> (String, String) {
    let body = emu
        .issue_tokens(&json!({"user_id": 1, "ttl": ttl}))
        .expect("tokens issued");
    let s = |k: &str| body[k].as_str().unwrap().to_string();
    (s("access_token"), s("refresh_token"))
}

async fn refreshes(emu: &Emulator) -> (u64, u64) {
    let body = emu.refreshes();
    (body.succeeded, body.failed)
}

fn oauth_client(emu: &Emulator, oauth: OAuthConfig) -> Client {
    Client::builder(emu.url())
        .oauth(oauth)
        .pacer(Pacer::Off)
        .retry(fast_retries())
        .build()
        .unwrap()
}

fn app(token_url: &str) -> OAuthConfig {
    OAuthConfig::new(BUILTIN_CLIENT_ID, BUILTIN_CLIENT_SECRET).token_url(token_url)
}

async fn guarded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(GUARD, f)
        .await
        .expect("finishes without hanging")
}

fn write_private(path: &std::path::Path, text: &str) {
    std::fs::write(path, text).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

fn stored(path: &std::path::Path) -> Tokens {
    FileTokenStore::new(path)
        .load()
        .unwrap()
        .expect("tokens stored")
}

/// Proof that the next process can go on: a client on the same store that must refresh
/// gets a new pair from the emulator with the stored refresh token.
async fn next_run_refreshes(emu: &Emulator, store: &std::path::Path) {
    let before = stored(store);
    // Only the refresh token, as if the access token had run out.
    FileTokenStore::new(store)
        .save(&Tokens::new(
            "",
            before.refresh_token().expose_secret(),
            None,
        ))
        .unwrap();
    let (_, failed_before) = refreshes(emu).await;
    let c = oauth_client(
        emu,
        app(&format!("{}/oauth/token/", emu.url())).file_store(store),
    );
    guarded(c.call("user.current", json!({})))
        .await
        .expect("the stored refresh token works");
    assert_eq!(refreshes(emu).await.1, failed_before, "no invalid_grant");
    assert_ne!(
        stored(store).refresh_token().expose_secret(),
        before.refresh_token().expose_secret(),
        "the stored refresh token was the one spent"
    );
}

fn assert_believable(at: Option<SystemTime>, what: &str) {
    if let Some(at) = at {
        assert!(
            at <= SystemTime::now() + MAX_TOKEN_LIFETIME + Duration::from_secs(5),
            "{what}: expiry beyond the clamp"
        );
    }
}

// ---------------------------------------------------------------------------------------
// A raw HTTP server that plays a hostile portal or OAuth server.

#[derive(Clone)]
enum Play {
    /// 200 with a body that never ends: announced as 1 TiB, chunked, or until close.
    Endless(Framing),
    /// 200 announcing 1 MB, then one byte every 50 ms.
    Trickle,
    /// Forwards the request to the emulator's OAuth server and rewrites its JSON answer:
    /// each key of `patch` is set, or removed when its value is null.
    Rewrite { upstream: String, patch: Value },
}

#[derive(Clone, Copy, Debug)]
enum Framing {
    ContentLength,
    Chunked,
    UntilClose,
}

struct Hostile {
    url: String,
    /// Body bytes written, over all connections.
    written: Arc<AtomicU64>,
    /// Connections whose answer ended (the client closed it, or the answer was complete).
    finished: Arc<AtomicUsize>,
}

impl Hostile {
    async fn start(play: Play) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let written = Arc::new(AtomicU64::new(0));
        let finished = Arc::new(AtomicUsize::new(0));
        let (w, f) = (written.clone(), finished.clone());
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (play, w, f) = (play.clone(), w.clone(), f.clone());
                tokio::spawn(async move {
                    serve(socket, play, &w).await;
                    f.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        Hostile {
            url,
            written,
            finished,
        }
    }

    /// Waits until `n` answers ended, then says how many body bytes were written.
    async fn written_after(&self, n: usize) -> u64 {
        guarded(async {
            while self.finished.load(Ordering::SeqCst) < n {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        self.written.load(Ordering::SeqCst)
    }
}

/// Reads one request: headers, then a Content-Length body.
async fn read_request(socket: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(buf[head_end..head_end + length].to_vec())
}

async fn serve(mut socket: TcpStream, play: Play, written: &AtomicU64) {
    let Some(request) = read_request(&mut socket).await else {
        return;
    };
    let block = vec![b'a'; 64 << 10];
    match play {
        Play::Endless(framing) => {
            let head = match framing {
                Framing::ContentLength => {
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1099511627776\r\n\r\n"
                }
                Framing::Chunked => {
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                }
                Framing::UntilClose => {
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
                }
            };
            let prefix: &[u8] = match framing {
                Framing::Chunked => b"b\r\n{\"result\":\"\r\n",
                _ => b"{\"result\":\"",
            };
            if socket.write_all(head.as_bytes()).await.is_err()
                || socket.write_all(prefix).await.is_err()
            {
                return;
            }
            loop {
                let sent = match framing {
                    Framing::Chunked => {
                        let mut framed = format!("{:x}\r\n", block.len()).into_bytes();
                        framed.extend_from_slice(&block);
                        framed.extend_from_slice(b"\r\n");
                        socket.write_all(&framed).await
                    }
                    _ => socket.write_all(&block).await,
                };
                if sent.is_err() {
                    return;
                }
                written.fetch_add(block.len() as u64, Ordering::SeqCst);
            }
        }
        Play::Trickle => {
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{";
            if socket.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                if socket.write_all(b" ").await.is_err() || socket.flush().await.is_err() {
                    return;
                }
                written.fetch_add(1, Ordering::SeqCst);
            }
        }
        Play::Rewrite { upstream, patch } => {
            let answer = reqwest::Client::new()
                .post(&upstream)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(request)
                .send()
                .await
                .unwrap();
            let status = answer.status().as_u16();
            let mut body: Value = answer.json().await.unwrap();
            if body.get("access_token").is_some() {
                for (k, v) in patch.as_object().unwrap() {
                    if v.is_null() {
                        body.as_object_mut().unwrap().remove(k);
                    } else {
                        body[k] = v.clone();
                    }
                }
            }
            // Written by hand: serde_json would print 1e300 as 1e300 anyway, but a raw
            // literal keeps the test honest about what went on the wire.
            let text = body.to_string();
            let head = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                text.len()
            );
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(text.as_bytes()).await;
            written.fetch_add(text.len() as u64, Ordering::SeqCst);
        }
    }
}

// ---------------------------------------------------------------------------------------
// 1. Absurd expiry times.

#[tokio::test(flavor = "multi_thread")]
async fn a_huge_expires_in_from_the_oauth_server_is_clamped_and_the_new_pair_kept() {
    // The emulator's own OAuth server, told to hand out tokens "valid" for i64::MAX seconds:
    // it answers expires_in 9223372036854775807 and an `expires` past year 292 billion.
    let emu = start(Config::default().token_ttl(HUGE)).await;
    let (access, refresh) = issue(&emu, 0).await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("tokens.json");
    let hooked = Arc::new(std::sync::Mutex::new(None::<Tokens>));
    let slot = hooked.clone();
    let c = oauth_client(
        &emu,
        app(&format!("{}/oauth/token/", emu.url()))
            .access_token(&access, None)
            .refresh_token(&refresh)
            .file_store(&store)
            .on_renewed(move |t| *slot.lock().unwrap() = Some(t.clone())),
    );
    guarded(c.notify().personal(2, "after a huge expires_in").send())
        .await
        .expect("no panic, and the call goes through with the new token");
    assert_eq!(refreshes(&emu).await, (1, 0));

    let saved = stored(&store);
    let hooked = hooked
        .lock()
        .unwrap()
        .clone()
        .expect("the hook saw the pair");
    assert_ne!(saved.refresh_token().expose_secret(), refresh);
    assert_eq!(
        saved.refresh_token().expose_secret(),
        hooked.refresh_token().expose_secret()
    );
    let at = saved.expires_at().expect("an expiry, clamped");
    assert!(at > SystemTime::now() + MAX_TOKEN_LIFETIME - Duration::from_secs(60));
    assert_believable(Some(at), "stored");
    assert_eq!(emu.notifications().len(), 1);

    next_run_refreshes(&emu, &store).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_unreasonable_expiry_from_the_oauth_server_keeps_the_pair() {
    let emu = start(Config::default()).await;
    let upstream = format!("{}/oauth/token/", emu.url());
    let values = [
        json!(HUGE),
        json!(u64::MAX),
        json!(-3600),
        json!(i64::MIN),
        json!(3599.5),
        json!(1e300),
        json!(-1e300),
        json!("3600"),
        json!("9223372036854775807"),
        json!("soon"),
        json!(true),
        json!([]),
    ];
    for value in values {
        for key in ["expires_in", "expires"] {
            let patch = if key == "expires_in" {
                json!({"expires_in": value, "expires": null})
            } else {
                json!({"expires_in": null, "expires": value})
            };
            let hostile = Hostile::start(Play::Rewrite {
                upstream: upstream.clone(),
                patch,
            })
            .await;
            let (access, refresh) = issue(&emu, 0).await;
            let dir = tempfile::tempdir().unwrap();
            let store = dir.path().join("tokens.json");
            let c = oauth_client(
                &emu,
                app(&format!("{}/oauth/token/", hostile.url))
                    .access_token(&access, None)
                    .refresh_token(&refresh)
                    .file_store(&store),
            );
            let what = format!("{key} = {value}");
            guarded(c.call("user.current", json!({})))
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            let saved = stored(&store);
            assert_ne!(saved.refresh_token().expose_secret(), refresh, "{what}");
            assert_believable(saved.expires_at(), &what);
            if key == "expires_in" && value == json!("3600") {
                let left = saved
                    .expires_at()
                    .unwrap()
                    .duration_since(SystemTime::now())
                    .unwrap();
                assert!(
                    left > Duration::from_secs(3500),
                    "{what}: a numeric string is read"
                );
            }
            if value.as_f64().is_some_and(|v| v < 0.0) || value == json!("soon") {
                assert_eq!(saved.expires_at(), None, "{what}: unreadable means unknown");
            }
            next_run_refreshes(&emu, &store).await;
        }
    }
    assert_eq!(refreshes(&emu).await.1, 0, "no refresh was ever refused");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_store_with_an_unreasonable_expiry_still_gives_its_refresh_token() {
    let emu = start(Config::default()).await;
    for raw in [
        "9223372036854775807",
        "18446744073709551615",
        "-1",
        "1.5",
        "1e300",
        "\"tomorrow\"",
        "null",
    ] {
        let (access, refresh) = issue(&emu, 3600).await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        write_private(
            &path,
            &format!(
                r#"{{"access_token": "{access}", "refresh_token": "{refresh}", "expires": {raw}}}"#
            ),
        );
        let loaded = FileTokenStore::new(&path)
            .load()
            .unwrap_or_else(|e| panic!("expires {raw}: {e}"))
            .unwrap();
        assert_eq!(loaded.refresh_token().expose_secret(), refresh, "{raw}");
        assert_believable(loaded.expires_at(), raw);
        // The store is usable: a call goes out (with the stored token, or after a refresh
        // with the stored refresh token).
        let c = oauth_client(
            &emu,
            app(&format!("{}/oauth/token/", emu.url())).file_store(&path),
        );
        guarded(c.call("user.current", json!({})))
            .await
            .unwrap_or_else(|e| panic!("expires {raw}: {e}"));
    }
    assert_eq!(refreshes(&emu).await.1, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_huge_refresh_margin_refreshes_instead_of_panicking() {
    let emu = start(Config::default()).await;
    let (access, refresh) = issue(&emu, 3600).await;
    let c = oauth_client(
        &emu,
        app(&format!("{}/oauth/token/", emu.url()))
            .access_token(&access, Some(SystemTime::now() + Duration::from_secs(3600)))
            .refresh_token(&refresh)
            .refresh_margin(Duration::MAX),
    );
    guarded(c.call("user.current", json!({})))
        .await
        .expect("no overflow");
    assert_eq!(refreshes(&emu).await, (1, 0));
}

// ---------------------------------------------------------------------------------------
// 2. The token store's file.

// Mode bits are unix's; Windows has ACLs.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn a_token_store_others_can_read_or_write_is_refused_with_the_chmod_hint() {
    use std::os::unix::fs::PermissionsExt;
    let emu = start(Config::default()).await;
    for mode in [0o644, 0o640, 0o602, 0o660, 0o666] {
        let (access, refresh) = issue(&emu, 0).await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        let text = format!(
            r#"{{"access_token": "{access}", "refresh_token": "{refresh}", "expires": 1}}"#
        );
        std::fs::write(&path, &text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let c = oauth_client(
            &emu,
            app(&format!("{}/oauth/token/", emu.url())).file_store(&path),
        );
        let err = guarded(c.call("user.current", json!({})))
            .await
            .expect_err("refused");
        let Error::TokenStore { message } = &err else {
            panic!("{mode:o}: {err:?}");
        };
        assert!(
            message.contains(&format!("chmod 600 {}", path.display())),
            "{mode:o}: {message}"
        );
        assert!(message.contains(&format!("mode {mode:03o}")), "{message}");
        assert!(!message.contains(&refresh) && !message.contains(&access));
        assert!(!message.contains('\n'));
        // Untouched, and nothing was spent.
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    }
    assert_eq!(refreshes(&emu).await, (0, 0));
    assert!(emu.requests().is_empty());
}

// unix symlinks (Windows needs a privilege to make one).
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn a_token_store_is_never_read_or_written_through_a_symlink() {
    use std::os::unix::fs::PermissionsExt;
    let emu = start(Config::default()).await;
    let (access, refresh) = issue(&emu, 0).await;
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim.json");
    let text =
        format!(r#"{{"access_token": "{access}", "refresh_token": "{refresh}", "expires": 1}}"#);
    write_private(&victim, &text);

    // The store itself a symlink: refused on read.
    let link = dir.path().join("tokens.json");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let c = oauth_client(
        &emu,
        app(&format!("{}/oauth/token/", emu.url())).file_store(&link),
    );
    let err = guarded(c.call("user.current", json!({})))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("is a symbolic link"), "{err}");
    assert_eq!(refreshes(&emu).await, (0, 0));

    // Saving over a symlink replaces the link (rename), never writes the file it points to.
    FileTokenStore::new(&link)
        .save(&Tokens::new("new-a", "new-r", None))
        .unwrap();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), text);
    let meta = std::fs::symlink_metadata(&link).unwrap();
    assert!(meta.file_type().is_file());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    // The lock file a symlink: refused before any refresh.
    let store = dir.path().join("second.json");
    write_private(&store, &text);
    let lock_victim = dir.path().join("lock-victim");
    std::fs::write(&lock_victim, "keep").unwrap();
    std::os::unix::fs::symlink(&lock_victim, FileTokenStore::new(&store).lock_path()).unwrap();
    let c = oauth_client(
        &emu,
        app(&format!("{}/oauth/token/", emu.url())).file_store(&store),
    );
    let err = guarded(c.call("user.current", json!({})))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("is a symbolic link"), "{err}");
    assert_eq!(std::fs::read_to_string(&lock_victim).unwrap(), "keep");
    assert_eq!(refreshes(&emu).await, (0, 0), "no refresh token was spent");
    assert_eq!(std::fs::read_to_string(&store).unwrap(), text);
}

// FIFOs and /dev are unix's.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn a_token_store_that_is_not_a_regular_file_is_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.json");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let directory = dir.path().join("a-dir");
    std::fs::create_dir(&directory).unwrap();
    for path in [fifo, directory, "/dev/zero".into(), "/dev/null".into()] {
        let shown = path.display().to_string();
        let loaded = guarded(tokio::task::spawn_blocking(move || {
            FileTokenStore::new(path).load()
        }))
        .await
        .unwrap();
        let err = loaded.expect_err(&shown);
        assert!(
            err.to_string().contains("not a regular file"),
            "{shown}: {err}"
        );
        assert!(!err.to_string().contains("chmod"), "{shown}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reading_a_token_store_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.json");
    write_private(&path, &" ".repeat(3 << 20));
    let err = FileTokenStore::new(&path).load().unwrap_err();
    assert!(err.to_string().contains("larger than 1 MiB"), "{err}");
}

// ---------------------------------------------------------------------------------------
// 3. Answers that never end.

fn hostile_client(url: &str, timeout: Duration) -> Client {
    Client::builder(format!("{url}/rest/1/hostile-secret/"))
        .pacer(Pacer::Off)
        .timeout(timeout)
        .retry(RetryPolicy {
            max_attempts: 1,
            ..fast_retries()
        })
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endless_portal_answer_is_abandoned_at_the_cap() {
    let cap = MAX_ANSWER_BYTES as u64;
    for framing in [
        Framing::ContentLength,
        Framing::Chunked,
        Framing::UntilClose,
    ] {
        // A read fails (exit 1 in the CLI); a write may have run: outcome unknown (exit 5).
        let hostile = Hostile::start(Play::Endless(framing)).await;
        let c = hostile_client(&hostile.url, GUARD);
        let err = guarded(c.call("server.time", json!({}))).await.unwrap_err();
        let Error::Decode { status, reason, .. } = &err else {
            panic!("{framing:?}: {err:?}");
        };
        assert_eq!(*status, 200);
        assert_eq!(reason, "an answer larger than 64 MiB; stopped reading");
        assert_eq!(
            err.to_string(),
            "the portal answered HTTP 200 with an answer larger than 64 MiB; stopped reading"
        );
        let written = hostile.written_after(1).await;
        eprintln!("{framing:?}: the server wrote {written} body bytes before the client hung up");
        match framing {
            // Refused on the header: the body was never read.
            Framing::ContentLength => assert!(written < SOCKET_SLACK, "{written}"),
            _ => assert!(
                (cap - (64 << 10)..cap + SOCKET_SLACK).contains(&written),
                "{framing:?}: the server wrote {written} bytes"
            ),
        }

        let err = guarded(c.notify().personal(2, "x").send())
            .await
            .unwrap_err();
        let Error::OutcomeUnknown { cause, .. } = &err else {
            panic!("{framing:?}: {err:?}");
        };
        assert!(
            cause
                .to_string()
                .contains("larger than 64 MiB; stopped reading"),
            "{cause}"
        );
        let total = hostile.written_after(2).await;
        assert!(total - written < cap + SOCKET_SLACK, "{framing:?}: {total}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trickling_portal_answer_is_bounded_by_the_timeout() {
    let hostile = Hostile::start(Play::Trickle).await;
    let c = hostile_client(&hostile.url, Duration::from_secs(1));
    let err = guarded(c.call("server.time", json!({}))).await.unwrap_err();
    assert!(
        matches!(err, Error::Transport { timeout: true, .. }),
        "{err:?}"
    );
    assert!(!err.to_string().contains("hostile-secret"), "{err}");
    let err = guarded(c.notify().personal(2, "x").send())
        .await
        .unwrap_err();
    let Error::OutcomeUnknown { cause, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(
        matches!(**cause, Error::Transport { timeout: true, .. }),
        "{cause:?}"
    );
    // Both connections were dropped by the client, so the server's writes failed.
    let written = hostile.written_after(2).await;
    assert!(written < 200, "the server trickled {written} bytes");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endless_oauth_answer_is_abandoned_far_below_the_portal_cap() {
    let emu = start(Config::default()).await;
    let (access, refresh) = issue(&emu, 0).await;
    let hostile = Hostile::start(Play::Endless(Framing::Chunked)).await;
    let c = oauth_client(
        &emu,
        app(&format!("{}/oauth/token/", hostile.url))
            .access_token(&access, None)
            .refresh_token(&refresh),
    );
    let err = guarded(c.call("user.current", json!({})))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("larger than 64 KiB; stopped reading"),
        "{err}"
    );
    assert!(!err.to_string().contains(&refresh));
    let written = hostile.written_after(1).await;
    assert!(
        written < SOCKET_SLACK,
        "the OAuth server wrote {written} bytes"
    );
}

// ---------------------------------------------------------------------------------------
// 4. URLs.

#[tokio::test(flavor = "multi_thread")]
async fn mistyped_schemes_userinfo_and_bad_hosts_are_refused_without_echoing_the_secret() {
    const S: &str = "url-secret-3f9a";
    let table: &[(&str, &str)] = &[
        (
            "htp://portal.bitrix24.com/rest/1/{S}/",
            "has the scheme htp:",
        ),
        (
            "HTP://portal.bitrix24.com/rest/1/{S}/",
            "has the scheme htp:",
        ),
        (
            "http:/portal.bitrix24.com/rest/1/{S}/",
            "http:/ (one slash)",
        ),
        (
            "https:/portal.bitrix24.com/rest/1/{S}/",
            "https:/ (one slash)",
        ),
        (
            "ftp://portal.bitrix24.com/rest/1/{S}/",
            "has the scheme ftp:",
        ),
        ("ws://portal.bitrix24.com/rest/1/{S}/", "has the scheme ws:"),
        (
            "wss://portal.bitrix24.com/rest/1/{S}/",
            "has the scheme wss:",
        ),
        ("file:///rest/1/{S}/", "has the scheme file:"),
        ("javascript:alert('{S}')", "has the scheme javascript:"),
        (
            "https://user:pass@portal.bitrix24.com/rest/1/{S}/",
            "user name or password",
        ),
        ("portal@evil.example/rest/1/{S}/", "user name or password"),
        (
            "https://portal.bitrix24.com:x{S}/rest/1/{S}/",
            "port that is not a number",
        ),
        (
            "https://portal.bitrix24.com?{S}/rest/1/{S}/",
            "cannot be in a host name",
        ),
        (
            "https://portal.bitrix24.com#/rest/1/{S}/",
            "cannot be in a host name",
        ),
        (
            "https://portal.bitrix24.com\\/rest/1/{S}/",
            "cannot be in a host name",
        ),
        ("https:///rest/1/{S}/", "has no host"),
        ("https://bad host/rest/1/{S}/", "space or control character"),
        (
            "https://por\ttal.bitrix24.com/rest/1/{S}/",
            "space or control character",
        ),
        (
            "https://portal.bitrix24.com/rest/1/{S}\n/",
            "space or control character",
        ),
        ("https://a\u{0378}b.com/rest/1/{S}/", "is not valid"),
    ];
    for (input, needle) in table {
        let url = input.replace("{S}", S);
        let err = Client::builder(&url)
            .build()
            .expect_err(&url.escape_debug().to_string());
        let Error::InvalidArgument { field, message } = &err else {
            panic!("{url}: {err:?}");
        };
        assert_eq!(field, "url");
        assert!(message.contains(needle), "{url:?}: {message}");
        assert!(!message.contains(S), "{url:?} echoed the secret: {message}");
        assert!(!message.contains('\n'), "{url:?}: one line: {message}");
        // With a token too.
        let err = Client::builder(&url).token("t0ken").build().unwrap_err();
        assert!(!err.to_string().contains(S), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_url_form_that_worked_still_reaches_the_portal() {
    let emu = start(
        Config::default()
            .webhook(1, "form-secret")
            .access_token(1, "form-token"),
    )
    .await;
    let port = emu.addr().port();
    let webhooks = [
        format!("http://127.0.0.1:{port}/rest/1/form-secret/"),
        format!("  http://127.0.0.1:{port}/rest/1/form-secret  "),
        format!("HTTP://127.0.0.1:{port}/rest/1/form-secret"),
        format!("http://localhost:{port}/rest/1/form-secret/"),
        format!("http://www.localhost:{port}/rest/1/form-secret/"),
    ];
    for url in &webhooks {
        let c = Client::builder(url).pacer(Pacer::Off).build().unwrap();
        guarded(c.call("server.time", json!({})))
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
    }
    let portals = [
        format!("http://127.0.0.1:{port}"),
        format!("http://127.0.0.1:{port}/"),
        format!("http://127.0.0.1:{port}/rest/"),
        format!(" http://[::1]:{port} "),
    ];
    let mut reached = webhooks.len();
    for url in &portals {
        let c = Client::builder(url)
            .token("form-token")
            .pacer(Pacer::Off)
            .build()
            .unwrap();
        // The emulator listens on 127.0.0.1 only; [::1] is checked for parsing alone.
        if url.contains("[::1]") {
            assert_eq!(c.portal().authority(), format!("[::1]:{port}"));
            continue;
        }
        guarded(c.call("server.time", json!({})))
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        reached += 1;
    }
    // Bare domains and no scheme stay https, as in OPI.
    for url in [
        "portal.bitrix24.com/rest/1/s/",
        "www.portal.bitrix24.com/rest/1/s",
        "portal.bitrix24.com:8443/rest/1/s/",
    ] {
        let c = Client::builder(url).build().unwrap();
        assert!(
            c.portal()
                .to_string()
                .starts_with("https://portal.bitrix24.com"),
            "{url}"
        );
    }
    assert_eq!(emu.requests().len(), reached);
}

// ---------------------------------------------------------------------------------------
// 5. Method names.

#[tokio::test(flavor = "multi_thread")]
async fn method_names_that_could_leave_rest_are_refused_before_sending() {
    let emu = start(
        Config::default()
            .webhook(1, "m-secret")
            .access_token(1, "m-token"),
    )
    .await;
    let hook = fast_webhook(&emu, "m-secret");
    let oauth = fast_oauth(&emu, "m-token");
    hook.notify().personal(2, "keep me").send().await.unwrap();
    let before = emu.requests().len();
    for method in [
        "../../../_emulator/reset",
        "../_emulator/reset",
        "_emulator/reset",
        "_emulator.reset",
        ".server.time",
        "server..time",
        "server.time.",
        "server/time",
        "server.time?x=1",
        "server.time#",
        "server%2Ftime",
        "server time",
        " server.time",
        "server.time\n",
        "im.notify.персонал",
        "",
    ] {
        for c in [&hook, &oauth] {
            let err = guarded(c.call(method, json!({}))).await.unwrap_err();
            let Error::InvalidArgument { field, message } = &err else {
                panic!("{method:?}: {err:?}");
            };
            assert_eq!(field, "method", "{method:?}");
            assert!(!message.contains('\n'), "{message}");
        }
        assert!(bitrix24::check_method(method).is_err(), "{method:?}");
    }
    assert_eq!(emu.requests().len(), before, "nothing was sent");
    assert_eq!(emu.notifications().len(), 1, "the emulator was not reset");

    for method in [
        "im.notify.personal.add",
        "IM.NOTIFY.SYSTEM.ADD",
        "batch",
        "user.current",
        "server.time",
        "methods",
        "scope",
        "profile",
        "sonet_group.create",
        "user.current.json",
        "crm.item.productrow.list",
    ] {
        bitrix24::check_method(method).unwrap_or_else(|e| panic!("{method}: {e}"));
    }
    guarded(oauth.call("user.current", json!({})))
        .await
        .unwrap();
}

/// A store whose disk is full: loads fine, never saves.
struct FullDisk(FileTokenStore);

impl TokenStore for FullDisk {
    fn load(&self) -> std::io::Result<Option<Tokens>> {
        self.0.load()
    }
    fn save(&self, _: &Tokens) -> std::io::Result<()> {
        Err(std::io::Error::other("No space left on device"))
    }
    fn lock(&self) -> std::io::Result<bitrix24::StoreLock> {
        self.0.lock()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pair_the_store_cannot_save_still_reaches_the_hook_and_this_process() {
    let emu = start(Config::default()).await;
    let (access, refresh) = issue(&emu, 0).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.json");
    write_private(
        &path,
        &format!(r#"{{"access_token": "{access}", "refresh_token": "{refresh}", "expires": 1}}"#),
    );
    let hooked = Arc::new(std::sync::Mutex::new(None::<Tokens>));
    let slot = hooked.clone();
    let c = oauth_client(
        &emu,
        app(&format!("{}/oauth/token/", emu.url()))
            .store(FullDisk(FileTokenStore::new(&path)))
            .on_renewed(move |t| *slot.lock().unwrap() = Some(t.clone())),
    );
    let err = guarded(c.call("user.current", json!({})))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("refreshed but could not be saved"),
        "{err}"
    );
    let hooked = hooked
        .lock()
        .unwrap()
        .clone()
        .expect("the hook has the pair");
    assert_ne!(hooked.refresh_token().expose_secret(), refresh);
    // This process goes on with the new access token: no second refresh, no invalid_grant.
    guarded(c.call("user.current", json!({})))
        .await
        .expect("the new pair is kept in memory");
    assert_eq!(refreshes(&emu).await, (1, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_store_the_hook_gets_every_new_pair() {
    let emu = start(Config::default()).await;
    let (access, refresh) = issue(&emu, 0).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let c = oauth_client(
        &emu,
        app(&format!("{}/oauth/token/", emu.url()))
            .access_token(&access, None)
            .refresh_token(&refresh)
            .on_renewed(move |_| {
                seen.fetch_add(1, Ordering::SeqCst);
            }),
    );
    guarded(c.call("user.current", json!({}))).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(refreshes(&emu).await, (1, 0));
}
