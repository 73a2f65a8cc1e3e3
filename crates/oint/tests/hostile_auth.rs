//! `oint` under hostile or careless input around credentials: a method name that tries to
//! leave `/rest/`, a mistyped `--url` scheme, a token store others can read or that is a
//! FIFO, an OAuth server answering an absurd `expires_in`, and a portal answer that never
//! ends. Each run is checked for its exit code, its one line on stderr, and what the
//! emulator or the files hold afterwards.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Output;
use std::time::Duration;

use bitrix24::{FileTokenStore, TokenStore};
use bitrix24_emulator::{Config, Emulator};
use common::*;
use secrecy::ExposeSecret;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const GUARD: Duration = Duration::from_secs(120);

async fn guarded(args: &[&str], env: &[(&str, &str)]) -> Output {
    tokio::time::timeout(GUARD, oint(args, env))
        .await
        .expect("oint ends by itself")
}

/// The single `error:` line on stderr.
fn error_line(o: &Output) -> String {
    let err = stderr(o);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "one error line: {err}");
    lines[0].to_string()
}

fn borrow<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_method_name_that_leaves_rest_exits_2_and_reaches_nothing() {
    let emu = emulator().await;
    let hook = emu.webhook_url(1, SECRET);
    let o = guarded(
        &[
            "notify", "send", "--url", &hook, "--user", "2", "--text", "keep me",
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let before = emu.requests().len();
    let portal = emu.url();
    for method in [
        "../../../_emulator/reset",
        "_emulator/reset",
        "server..time",
        "im.notify/../../x",
    ] {
        for auth in [
            vec!["--url", hook.as_str()],
            vec!["--url", portal.as_str(), "--token", TOKEN],
        ] {
            for test in [false, true] {
                let mut args = vec!["call", method];
                args.extend(&auth);
                if test {
                    args.push("--dry-run");
                }
                let o = guarded(&args, &[]).await;
                assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
                let line = error_line(&o);
                assert!(line.starts_with("error: METHOD: "), "{line}");
                assert!(line.contains("a method name is"), "{line}");
                assert!(stdout(&o).trim().is_empty(), "{}", stdout(&o));
            }
        }
    }
    assert_eq!(emu.requests().len(), before, "nothing was sent");
    assert_eq!(emu.notifications().len(), 1, "the emulator was not reset");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mistyped_url_scheme_or_userinfo_exits_2_naming_url_without_the_secret() {
    let emu = emulator().await;
    let addr = emu.addr();
    for (url, needle) in [
        (
            format!("htp://{addr}/rest/1/{SECRET}/"),
            "has the scheme htp:",
        ),
        (
            format!("http:/{addr}/rest/1/{SECRET}/"),
            "http:/ (one slash)",
        ),
        (
            format!("https:/{addr}/rest/1/{SECRET}/"),
            "https:/ (one slash)",
        ),
        (
            format!("ftp://{addr}/rest/1/{SECRET}/"),
            "has the scheme ftp:",
        ),
        (
            format!("ws://{addr}/rest/1/{SECRET}/"),
            "has the scheme ws:",
        ),
        (format!("file:///rest/1/{SECRET}/"), "has the scheme file:"),
        (format!("javascript:{SECRET}"), "has the scheme javascript:"),
        (
            format!("http://user:pass@{addr}/rest/1/{SECRET}/"),
            "user name or password",
        ),
        (
            format!("http://bad host/rest/1/{SECRET}/"),
            "space or control",
        ),
    ] {
        let o = guarded(
            &[
                "notify", "send", "--url", &url, "--user", "2", "--text", "x",
            ],
            &[],
        )
        .await;
        assert_eq!(o.status.code(), Some(2), "{url}: {}", stderr(&o));
        let line = error_line(&o);
        assert!(line.starts_with("error: --url: "), "{line}");
        assert!(line.contains(needle), "{url}: {line}");
    }
    assert!(emu.requests().is_empty());
    assert!(emu.notifications().is_empty());
    // The forms OPI takes still work.
    for url in [
        format!("  http://{addr}/rest/1/{SECRET}  "),
        format!("HTTP://{addr}/rest/1/{SECRET}/"),
    ] {
        let o = guarded(
            &[
                "notify", "send", "--url", &url, "--user", "2", "--text", "ok",
            ],
            &[],
        )
        .await;
        assert_eq!(o.status.code(), Some(0), "{url}: {}", stderr(&o));
    }
    assert_eq!(emu.notifications().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_store_others_can_read_is_refused_with_chmod_and_a_fifo_never_blocks() {
    let emu = Emulator::start(Config::default()).await.unwrap();
    let (access, refresh) = issue(&emu, 0).await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("tokens.json");
    let text = format!(r#"{{"access_token": "{access}", "refresh_token": "{refresh}"}}"#);
    std::fs::write(&store, &text).unwrap();
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o644)).unwrap();
    let env = oauth_env(&emu, &refresh, &store);
    let o = guarded(
        &["notify", "send", "--user", "2", "--text", "x"],
        &borrow(&env),
    )
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let line = error_line(&o);
    assert!(
        line.contains(&format!("chmod 600 {}", store.display())),
        "{line}"
    );
    assert_eq!(std::fs::read_to_string(&store).unwrap(), text);
    assert_eq!(refreshes(&emu).await, (0, 0), "no refresh token was spent");

    let fifo = dir.path().join("fifo.json");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let env = oauth_env(&emu, &refresh, &fifo);
    let o = guarded(
        &["notify", "send", "--user", "2", "--text", "x"],
        &borrow(&env),
    )
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let line = error_line(&o);
    assert!(line.contains("not a regular file"), "{line}");
    assert!(!line.contains("chmod"), "{line}");
    assert!(emu.notifications().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_huge_expires_in_keeps_the_new_pair_for_the_next_run() {
    let emu = Emulator::start(Config::default().token_ttl(9_223_372_036_854_775_807))
        .await
        .unwrap();
    let (_, refresh) = issue(&emu, 0).await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("tokens.json");
    let env = oauth_env(&emu, &refresh, &store);
    let o = guarded(
        &["notify", "send", "--user", "2", "--text", "first"],
        &borrow(&env),
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "no panic: {}", stderr(&o));
    let first = FileTokenStore::new(&store).load().unwrap().unwrap();
    assert_ne!(first.refresh_token().expose_secret(), refresh);
    let clamp = std::time::SystemTime::now() + bitrix24::MAX_TOKEN_LIFETIME;
    assert!(first.expires_at().unwrap() <= clamp);

    // The next run, its access token gone, refreshes with the stored refresh token.
    FileTokenStore::new(&store)
        .save(&bitrix24::Tokens::new(
            "",
            first.refresh_token().expose_secret(),
            None,
        ))
        .unwrap();
    let o = guarded(
        &["notify", "send", "--user", "2", "--text", "second"],
        &borrow(&env),
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(refreshes(&emu).await, (2, 0), "no invalid_grant");
    assert_eq!(emu.notifications().len(), 2);
}

/// A portal that answers every request with a chunked body that never ends; counts the body
/// bytes it managed to write.
async fn endless_portal() -> (String, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use std::sync::atomic::Ordering;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let written = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = written.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                // Enough of the request: its headers.
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let block = vec![b' '; 64 << 10];
                let mut framed = format!("{:x}\r\n", block.len()).into_bytes();
                framed.extend_from_slice(&block);
                framed.extend_from_slice(b"\r\n");
                while socket.write_all(&framed).await.is_ok() {
                    counter.fetch_add(block.len() as u64, Ordering::SeqCst);
                }
            });
        }
    });
    (url, written)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endless_answer_stops_at_64_mib_read_exits_1_write_exits_5() {
    let (url, written) = endless_portal().await;
    let hook = format!("{url}/rest/1/{SECRET}/");
    let o = guarded(
        &["call", "server.time", "--url", &hook, "--attempts", "1"],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let line = error_line(&o);
    assert!(
        line.contains("larger than 64 MiB; stopped reading"),
        "{line}"
    );
    let o = guarded(
        &[
            "notify", "send", "--url", &hook, "--user", "2", "--text", "x",
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    let line = error_line(&o);
    assert!(line.contains("may or may not have taken effect"), "{line}");
    assert!(
        line.contains("larger than 64 MiB; stopped reading"),
        "{line}"
    );
    // Two answers abandoned near the cap (plus what socket buffers hold).
    let total = written.load(std::sync::atomic::Ordering::SeqCst);
    assert!(total < 2 * ((64 << 20) + (16 << 20)), "{total}");
}
