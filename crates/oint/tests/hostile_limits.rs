//! `oint` processes under a careless rate, a damaged or planted state file, bounded
//! QUERY_LIMIT_EXCEEDED retries, and the stderr lines that say why a run waits.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use common::*;
use serde_json::json;
use tokio::io::AsyncBufReadExt;

/// Liveness only: every run here ends in a fraction of this.
const LIVENESS: Duration = Duration::from_secs(60);

/// `oint notify send` to user 1 with `extra` flags first, sharing the state in `state`.
async fn send(
    emu: &bitrix24_emulator::Emulator,
    state: &Path,
    extra: &[&str],
    text: &str,
) -> Output {
    let url = emu.webhook_url(1, SECRET);
    let mut args: Vec<&str> = extra.to_vec();
    args.extend([
        "notify", "send", "--url", &url, "--user", "1", "--text", text, "--output", "plain",
    ]);
    let state = state.to_str().unwrap();
    tokio::time::timeout(LIVENESS, oint(&args, &[("OINT_STATE_DIR", state)]))
        .await
        .expect("oint ends in bounded time")
}

/// The shared bucket file oint uses for the emulator under `state`.
fn bucket(emu: &bitrix24_emulator::Emulator, state: &Path) -> PathBuf {
    state
        .join("ratelimit")
        .join(format!("127.0.0.1_{}.bucket", emu.addr().port()))
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_with_a_tiny_rate_does_not_make_the_next_one_wait() {
    let emu = emulator().await;
    let state = tempfile::tempdir().unwrap();
    let slow = send(&emu, state.path(), &["--rate", "0.0001"], "slow").await;
    assert_eq!(slow.status.code(), Some(0), "{}", stderr(&slow));
    // The next runs use the standard plan: the slow one's booking is one request, not
    // 10 000 s of the bucket.
    for i in 0..3 {
        let o = send(&emu, state.path(), &[], &format!("next {i}")).await;
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(stderr(&o), "", "no wait, nothing to say");
    }
    assert_eq!(emu.notifications().len(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_state_file_with_a_future_time_is_reset_with_one_line() {
    let emu = emulator().await;
    let state = tempfile::tempdir().unwrap();
    let path = bucket(&emu, state.path());
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let in_a_day = unix_now() + 86400.0;
    for damaged in [
        format!("49 {in_a_day}"),
        format!("{in_a_day}"),
        "garbage".into(),
    ] {
        std::fs::write(&path, &damaged).unwrap();
        let o = send(&emu, state.path(), &[], "x").await;
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "{damaged}: {err}");
        assert!(
            err.starts_with("oint: the rate-limit state ")
                && err.contains(&path.display().to_string())
                && err.contains("reset it to an empty bucket"),
            "{err}"
        );
        let saved = std::fs::read_to_string(&path).unwrap();
        let at: f64 = saved.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert!(at < unix_now() + 1.0, "{saved}");
        // Said once: the next run finds a sane state.
        let o = send(&emu, state.path(), &[], "y").await;
        assert_eq!(stderr(&o), "");
    }
    assert_eq!(emu.notifications().len(), 6);
}

#[tokio::test(flavor = "multi_thread")]
async fn attempts_1_stops_after_one_query_limit_exceeded() {
    let emu = emulator().await;
    let state = tempfile::tempdir().unwrap();
    emu.add_faults(&json!([{"method": "*", "kind": "status", "status": 503, "error": "QUERY_LIMIT_EXCEEDED", "count": 100}])).expect("fault rules accepted");
    let o = send(&emu, state.path(), &["--attempts", "1"], "x").await;
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("QUERY_LIMIT_EXCEEDED"), "{err}");
    assert_eq!(emu.requests().len(), 1, "one attempt");
    assert!(emu.notifications().is_empty());
    let help = oint(&["--help"], &[]).await;
    assert!(
        stdout(&help).contains("(QUERY_LIMIT_EXCEEDED too); retries also stop 180 s"),
        "{}",
        stdout(&help)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shared_rate_limit_wait_is_named_on_stderr() {
    let emu = emulator().await;
    let state = tempfile::tempdir().unwrap();
    // Burst 1 at 0.25/s: the second run waits about 4 s for the first one's request.
    let flags = ["--rate", "0.25", "--burst", "1"];
    let first = send(&emu, state.path(), &flags, "one").await;
    assert_eq!(stderr(&first), "");
    let second = send(&emu, state.path(), &flags, "two").await;
    assert_eq!(second.status.code(), Some(0), "{}", stderr(&second));
    let err = stderr(&second);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("oint: waiting ")
            && err.ends_with(
                " s for the portal's rate limit (shared with other oint processes for this portal)\n"
            ),
        "{err}"
    );
    assert_eq!(emu.notifications().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operating_time_pause_is_named_on_stderr_when_it_starts() {
    let emu = emulator().await;
    let state = tempfile::tempdir().unwrap();
    // Blocked with no reset time: oint pauses the method for a minute.
    emu.add_faults(&json!([{"method": "im.notify.personal.add", "kind": "status", "status": 429, "error": "OPERATION_TIME_LIMIT", "count": 1}])).expect("fault rules accepted");
    let url = emu.webhook_url(1, SECRET);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_oint"))
        .args([
            "notify", "send", "--url", &url, "--user", "1", "--text", "x",
        ])
        .env("OINT_CONFIG", "/nonexistent/oint-test-config.toml")
        .env("OINT_STATE_DIR", state.path())
        .env_remove("BITRIX24_URL")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let line = tokio::time::timeout(LIVENESS, lines.next_line())
        .await
        .expect("the pause is announced when it starts")
        .unwrap()
        .expect("a line before the end");
    child.kill().await.unwrap();
    assert!(
        line.starts_with("oint: waiting ")
            && line.contains("im.notify.personal.add")
            && line.contains("operating-time budget"),
        "{line}"
    );
    assert!(!line.contains(SECRET), "{line}");
    assert!(emu.notifications().is_empty());
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn a_planted_state_file_is_refused_in_one_line_and_never_followed() {
    let emu = emulator().await;
    let state = tempfile::tempdir().unwrap();
    let path = bucket(&emu, state.path());
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let victim = state.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    let plant = |kind: &str| {
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_dir(&path);
        match kind {
            "symlink" => std::os::unix::fs::symlink(&victim, &path).unwrap(),
            "fifo" => assert!(
                std::process::Command::new("mkfifo")
                    .arg(&path)
                    .status()
                    .unwrap()
                    .success()
            ),
            _ => std::fs::create_dir(&path).unwrap(),
        }
    };
    for (kind, want) in [
        ("symlink", "is a symbolic link"),
        ("fifo", "is a FIFO"),
        ("dir", "is a directory"),
    ] {
        plant(kind);
        let o = send(&emu, state.path(), &[], "x").await;
        assert_eq!(o.status.code(), Some(2), "{kind}: {}", stderr(&o));
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(want) && err.contains("remove it"), "{err}");
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert!(emu.requests().is_empty(), "nothing was sent");
}
