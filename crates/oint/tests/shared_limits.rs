//! The rate-limit bucket shared between machines through a real `redis-server`
//! (`--limit-store`): "hosts" are `oint` processes with state directories of their own, so no
//! state file can be what they share.

mod common;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::redis::RedisServer;
use common::*;
use serde_json::json;

/// Liveness only: every run here ends in a fraction of this.
const LIVENESS: Duration = Duration::from_secs(120);
const PASSWORD: &str = "store-password-5c1e97";

/// A portal draining `rate` a second with a burst of `burst` (20 and 10 unless said).
async fn portal_at(rate: f64, burst: f64) -> bitrix24_emulator::Emulator {
    bitrix24_emulator::Emulator::start(
        bitrix24_emulator::Config::default()
            .webhook(1, SECRET)
            .rate(rate)
            .burst(burst),
    )
    .await
    .unwrap()
}

async fn portal() -> bitrix24_emulator::Emulator {
    bitrix24_emulator::Emulator::start(
        bitrix24_emulator::Config::default()
            .webhook(1, SECRET)
            .rate(20.0)
            .burst(10.0),
    )
    .await
    .unwrap()
}

fn refused(emu: &bitrix24_emulator::Emulator) -> usize {
    emu.requests()
        .iter()
        .filter(|r| r.error.as_deref() == Some("QUERY_LIMIT_EXCEEDED"))
        .count()
}

/// Three hosts, each sending `sends` notifications one `oint notify send` at a time, pacing
/// to `limit` (`--rate R --burst B`), with `store` as the limit store (none when empty); true
/// when every send succeeded.
async fn three_hosts(
    emu: &bitrix24_emulator::Emulator,
    (sends, limit): (u32, &str),
    store: &str,
    root: &Path,
) -> bool {
    let url = emu.webhook_url(1, SECRET);
    let script = "for i in $(seq $SENDS); do \"$OINT\" $LIMIT --attempts 1 notify send --url \"$URL\" \
         --user 2 --text \"h$P-$i\" --output plain >/dev/null 2>&1 || ok=1; done; exit ${ok:-0}";
    let hosts: Vec<_> = (0..3)
        .map(|host| {
            let state = root.join(format!("host{host}"));
            std::fs::create_dir_all(&state).unwrap();
            let mut cmd = tokio::process::Command::new("sh");
            cmd.arg("-c")
                .arg(script)
                .env("OINT", env!("CARGO_BIN_EXE_oint"))
                .env("URL", &url)
                .env("SENDS", sends.to_string())
                .env("LIMIT", limit)
                .env("P", host.to_string())
                .env("OINT_STATE_DIR", &state)
                .env("OINT_CONFIG", "/nonexistent")
                .env_remove("OINT_LIMIT_STORE")
                .kill_on_drop(true);
            if !store.is_empty() {
                cmd.env("OINT_LIMIT_STORE", store);
            }
            cmd.status()
        })
        .collect();
    let statuses = tokio::time::timeout(LIVENESS, futures_util::future::join_all(hosts))
        .await
        .expect("the hosts end in bounded time");
    statuses.into_iter().all(|s| s.unwrap().success())
}

#[tokio::test(flavor = "multi_thread")]
async fn three_hosts_sharing_the_store_never_trip_the_portal_and_without_it_they_do() {
    let dir = tempfile::tempdir().unwrap();
    let Some(redis) = RedisServer::start(dir.path(), &[]) else {
        return;
    };
    let emu = portal().await;
    assert!(
        three_hosts(
            &emu,
            (100, "--rate 20 --burst 10"),
            &redis.url(3),
            dir.path()
        )
        .await,
        "a send failed"
    );
    assert_eq!(
        emu.requests().len(),
        300,
        "--attempts 1: no retry hid a refusal"
    );
    assert_eq!(refused(&emu), 0);
    assert_eq!(emu.notifications().len(), 300);

    // Hosts each with a bucket of their own outrun the portal together. A portal of 1 a
    // second makes that certain however slowly this machine starts processes: three hosts
    // each sending at least one a second are three a second.
    let emu = portal_at(1.0, 3.0).await;
    let apart = tempfile::tempdir().unwrap();
    three_hosts(&emu, (8, "--rate 1 --burst 3"), "", apart.path()).await;
    assert!(refused(&emu) > 0, "three separate buckets trip the portal");
}

fn rows(n: usize) -> String {
    (0..n)
        .map(|i| format!("{}\n", json!({"user": 2, "text": format!("row {i}")})))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_lost_mid_run_loses_nothing_and_says_so_once() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut redis) = RedisServer::start(dir.path(), &["--requirepass", PASSWORD]) else {
        return;
    };
    let emu = portal().await;
    let input = dir.path().join("in.jsonl");
    // 50 rows a batch: 30 requests, paced at 4 a second.
    std::fs::write(&input, rows(1500)).unwrap();
    let url = emu.webhook_url(1, SECRET);
    let store = format!("redis://:{PASSWORD}@127.0.0.1:{}/0", redis.port());
    let state = dir.path().join("state");
    let run = tokio::spawn({
        let (input, url, store, state) = (
            input.display().to_string(),
            url.clone(),
            store.clone(),
            state.display().to_string(),
        );
        async move {
            oint(
                &[
                    "--rate",
                    "4",
                    "--burst",
                    "3",
                    "--limit-store",
                    &store,
                    "notify",
                    "bulk",
                    "--url",
                    &url,
                    "--input",
                    &input,
                ],
                &[("OINT_STATE_DIR", &state)],
            )
            .await
        }
    });
    // Lost once a part is sent, back before the rest is.
    let reach = async |n: usize| {
        while emu.notifications().len() < n {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(LIVENESS, reach(150)).await.unwrap();
    redis.stop();
    tokio::time::timeout(LIVENESS, reach(600)).await.unwrap();
    redis.restart();
    let o: Output = tokio::time::timeout(LIVENESS, run).await.unwrap().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert_eq!(emu.notifications().len(), 1500, "{err}");
    assert_eq!(err.matches(" is lost (").count(), 1, "{err}");
    assert_eq!(err.matches(" is back;").count(), 1, "{err}");
    assert!(!err.contains(PASSWORD), "{err}");
    assert!(!stdout(&o).contains(PASSWORD));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_store_at_start_is_one_line_and_exit_1_unless_told_to_fall_back() {
    let emu = portal().await;
    let url = emu.webhook_url(1, SECRET);
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let store = format!("redis://:{PASSWORD}@127.0.0.1:{port}/0");
    let state = tempfile::tempdir().unwrap();
    let state = state.path().to_str().unwrap();
    let send = |extra: &'static [&'static str]| {
        let (url, store) = (url.clone(), store.clone());
        async move {
            let mut args = vec!["--limit-store", &store];
            args.extend_from_slice(extra);
            args.extend([
                "notify", "send", "--url", &url, "--user", "1", "--text", "hi", "--output", "plain",
            ]);
            oint(&args, &[("OINT_STATE_DIR", state)]).await
        }
    };
    let o = send(&[]).await;
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("--limit-store") && err.contains("unreachable"),
        "{err}"
    );
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(!err.contains(PASSWORD), "{err}");
    assert_eq!(emu.notifications().len(), 0);

    let o = send(&["--limit-store-fallback", "local"]).await;
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.starts_with("oint: warning: --limit-store"), "{err}");
    assert!(!err.contains(PASSWORD), "{err}");
    assert_eq!(emu.notifications().len(), 1);

    // The password from the environment never shows either; a bad URL is one line.
    let o = oint(
        &[
            "--limit-store",
            "http://127.0.0.1/0",
            "notify",
            "send",
            "--url",
            &url,
            "--user",
            "1",
            "--text",
            "hi",
        ],
        &[
            ("OINT_STATE_DIR", state),
            ("OINT_LIMIT_STORE_PASSWORD", PASSWORD),
        ],
    )
    .await;
    let err = stderr(&o);
    assert_ne!(o.status.code(), Some(0), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("not redis or rediss"), "{err}");
}

/// Modern and OPI commands alike log in with the password from OINT_LIMIT_STORE_PASSWORD or
/// its private file, and a wrong one is one line that never repeats it.
#[tokio::test(flavor = "multi_thread")]
async fn the_password_comes_from_the_environment_or_its_file_and_a_wrong_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let Some(redis) = RedisServer::start(dir.path(), &["--requirepass", PASSWORD]) else {
        return;
    };
    let emu = portal().await;
    let url = emu.webhook_url(1, SECRET);
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();
    let password_file = dir.path().join("store-password");
    std::fs::write(&password_file, PASSWORD).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&password_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let password_file = password_file.to_str().unwrap();
    let store = redis.url(1);
    let modern = [
        "--limit-store",
        &store,
        "notify",
        "send",
        "--url",
        &url,
        "--user",
        "1",
        "--text",
        "hi",
    ];
    let opi = [
        "--limit-store",
        &store,
        "bitrix24",
        "CreatePersonalNotification",
        "--url",
        &url,
        "--user",
        "1",
        "--text",
        "hi",
    ];
    let mut sent = 0;
    for args in [&modern[..], &opi[..]] {
        for password in [
            ("OINT_LIMIT_STORE_PASSWORD", PASSWORD),
            ("OINT_LIMIT_STORE_PASSWORD_FILE", password_file),
        ] {
            let o = oint(args, &[("OINT_STATE_DIR", state), password]).await;
            assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
            sent += 1;
        }
        let wrong = ("OINT_LIMIT_STORE_PASSWORD", "wrong-password-1234");
        let o = oint(args, &[("OINT_STATE_DIR", state), wrong]).await;
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(!err.contains("wrong-password-1234"), "{err}");
    }
    assert_eq!(emu.notifications().len(), sent);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tls_store_paces_with_its_ca_trusted_and_an_untrusted_one_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let files = common::redis::TlsFiles::generate(dir.path(), "store");
    let Some(redis) = RedisServer::start_tls(dir.path(), &files) else {
        return;
    };
    let stranger = common::redis::TlsFiles::generate(dir.path(), "stranger");
    let emu = portal().await;
    let url = emu.webhook_url(1, SECRET);
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();
    let store = redis.url(0);
    assert!(store.starts_with("rediss://127.0.0.1:"), "{store}");
    let args = [
        "--limit-store",
        &store,
        "notify",
        "send",
        "--url",
        &url,
        "--user",
        "1",
        "--text",
        "hi",
        "--output",
        "plain",
    ];
    let o = oint(
        &args,
        &[
            ("OINT_STATE_DIR", state),
            ("SSL_CERT_FILE", files.ca.to_str().unwrap()),
        ],
    )
    .await;
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert_eq!(emu.notifications().len(), 1);
    let o = oint(
        &args,
        &[
            ("OINT_STATE_DIR", state),
            ("SSL_CERT_FILE", stranger.ca.to_str().unwrap()),
        ],
    )
    .await;
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("--limit-store"), "{err}");
    assert!(err.contains("not trusted"), "{err}");
    assert_eq!(emu.notifications().len(), 1);
}

/// The portal counts a method's operating time per webhook, whichever host sends: a host
/// that spent it shares the figures that pause it, and the others pause before they send.
#[tokio::test(flavor = "multi_thread")]
async fn an_operating_budget_one_host_spent_pauses_the_others_before_they_send() {
    let dir = tempfile::tempdir().unwrap();
    let Some(redis) = RedisServer::start(dir.path(), &[]) else {
        return;
    };
    // Each call takes 300 ms of server time; 0.5 s is blocked after the second.
    let emu = bitrix24_emulator::Emulator::start(
        bitrix24_emulator::Config::default()
            .webhook(1, SECRET)
            .rate(20.0)
            .burst(10.0)
            .operating_budget(0.5)
            .processing_ms(300),
    )
    .await
    .unwrap();
    let url = emu.webhook_url(1, SECRET);
    let store = redis.url(2);
    let send = async |host: &str, store: Option<&str>| {
        let state = dir.path().join(host);
        // Knowing no reset time, a refused host would retry a minute later: one attempt
        // shows a refusal at once.
        let mut args = vec!["--operating-budget", "0.5", "--attempts", "1"];
        if let Some(store) = store {
            args.extend(["--limit-store", store]);
        }
        args.extend([
            "notify", "send", "--url", &url, "--user", "2", "--text", host, "--output", "plain",
        ]);
        oint(&args, &[("OINT_STATE_DIR", state.to_str().unwrap())]).await
    };
    let spent = |emu: &bitrix24_emulator::Emulator| {
        emu.requests()
            .iter()
            .filter(|r| r.error.as_deref() == Some("OPERATION_TIME_LIMIT"))
            .count()
    };

    // Host A sends, one process a send, until its figures pause it: 0.3 s used does not,
    // 0.6 s (within 0.05 s of the budget) does, and its next run sends nothing.
    let mut sent = 0;
    for _ in 0..5 {
        let before = emu.requests().len();
        let o = send("a", Some(&store)).await;
        if emu.requests().len() == before {
            let err = stderr(&o);
            assert_eq!(o.status.code(), Some(1), "{err}");
            assert!(err.contains("operating-time budget"), "{err}");
            break;
        }
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        sent += 1;
    }
    assert_eq!(sent, 2, "A is paused by its own figures after two sends");
    assert_eq!(spent(&emu), 0);

    // Host B, with nothing of its own, takes A's figures from the store and sends nothing
    // until the reset (minutes away: past its deadline, so it ends with one line).
    let before = emu.requests().len();
    let o = send("b", Some(&store)).await;
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("operating-time budget"), "{err}");
    assert_eq!(emu.requests().len(), before, "B sent nothing to the portal");
    assert_eq!(spent(&emu), 0);

    // Host C, without the store, knows nothing and is refused once by the portal.
    let o = send("c", None).await;
    assert_ne!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(spent(&emu), 1, "C gets exactly one OPERATION_TIME_LIMIT");
    assert_eq!(emu.notifications().len(), 2);
}
