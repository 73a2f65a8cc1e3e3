//! The limits under careless and hostile settings: a process with a tiny rate, a damaged or
//! planted state file, huge durations, bounded QUERY_LIMIT_EXCEEDED retries, and the notices
//! that say why a request waits. Counts come from the emulator's request log.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bitrix24::{
    Client, Error, MAX_WAIT, Notice, Pacer, RateLimit, RetryPolicy, WaitNotice, WaitReason,
};
use bitrix24_emulator::{Config, Emulator};
use serde_json::json;

mod common;
use common::*;

const SECRET: &str = "hostile-limits-secret";

async fn emulator() -> Emulator {
    Emulator::start(Config::default().webhook(1, SECRET))
        .await
        .unwrap()
}

/// A client on user 1's webhook with `pacer` and `retry`, collecting its notices.
fn client(emu: &Emulator, pacer: Pacer, retry: RetryPolicy) -> (Client, Arc<Mutex<Vec<Notice>>>) {
    let notices = Arc::new(Mutex::new(Vec::new()));
    let sink = notices.clone();
    let client = Client::builder(emu.webhook_url(1, SECRET))
        .pacer(pacer)
        .retry(retry)
        .on_notice(move |n| sink.lock().unwrap().push(n.clone()))
        .build()
        .unwrap();
    (client, notices)
}

fn waits(notices: &Mutex<Vec<Notice>>) -> Vec<WaitNotice> {
    notices
        .lock()
        .unwrap()
        .iter()
        .filter_map(|n| match n {
            Notice::Wait(w) => Some(w.clone()),
            _ => None,
        })
        .collect()
}

/// Liveness only: anything here finishes in a fraction of this.
const LIVENESS: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_process_with_a_tiny_rate_does_not_hold_back_the_next_one() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("portal.bucket");
    let (slow, _) = client(
        &emu,
        Pacer::shared(RateLimit::new(0.0001, 50.0).unwrap(), &state),
        fast_retries(),
    );
    slow.notify().personal(1, "slow").send().await.unwrap();
    // The next process, on the plan's limit, sends its burst at once.
    let (standard, notices) = client(
        &emu,
        Pacer::shared(RateLimit::STANDARD, &state),
        fast_retries(),
    );
    let sends = (0..10).map(|i| {
        let c = standard.clone();
        async move { c.notify().personal(1, format!("n{i}")).send().await }
    });
    let results = tokio::time::timeout(LIVENESS, futures_util::future::join_all(sends))
        .await
        .expect("the standard process is not held back");
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    assert!(waits(&notices).is_empty(), "{:?}", waits(&notices));
    assert_eq!(emu.notifications().len(), 11);
    assert!(emu.requests().iter().all(|r| r.status == 200));
}

#[tokio::test]
async fn a_wait_beyond_the_deadline_ends_the_request_unsent() {
    let emu = emulator().await;
    for deadline in [Duration::from_secs(180), Duration::MAX] {
        // Burst 1 at 0.0001/s: the second request would wait 10 000 s, past the deadline or,
        // with no deadline, past MAX_WAIT.
        let (slow, _) = client(
            &emu,
            Pacer::local(RateLimit::new(0.0001, 1.0).unwrap()),
            RetryPolicy {
                deadline,
                ..fast_retries()
            },
        );
        slow.notify().personal(1, "first").send().await.unwrap();
        let err = tokio::time::timeout(LIVENESS, slow.notify().personal(1, "second").send())
            .await
            .expect("no wait starts")
            .unwrap_err();
        match &err {
            Error::Limited { wait, reason, .. } => {
                assert!(*wait > MAX_WAIT.min(deadline), "{wait:?}");
                assert!(reason.contains("rate limit"), "{reason}");
            }
            other => panic!("{other}"),
        }
        assert_eq!(err.to_string().lines().count(), 1);
    }
    assert_eq!(
        emu.notifications().len(),
        2,
        "only the first of each was sent"
    );
}

#[tokio::test]
async fn a_state_from_the_future_is_reset_with_one_notice() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("portal.bucket");
    let in_a_day = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        + 86400.0;
    for text in [
        format!("49 {in_a_day}"),
        format!("{in_a_day}"),
        "NaN".into(),
    ] {
        std::fs::write(&state, &text).unwrap();
        let (c, notices) = client(
            &emu,
            Pacer::shared(RateLimit::STANDARD, &state),
            fast_retries(),
        );
        tokio::time::timeout(LIVENESS, c.notify().personal(1, "x").send())
            .await
            .expect("no wait for a damaged state")
            .unwrap();
        let notices = notices.lock().unwrap();
        assert_eq!(notices.len(), 1, "{text}: {notices:?}");
        let Notice::StateReset(reset) = &notices[0] else {
            panic!("{:?}", notices[0]);
        };
        assert_eq!(reset.path, state);
        let line = notices[0].to_string();
        assert!(line.contains("reset it to an empty bucket"), "{line}");
        // The file now holds a sane state: one request, measured now.
        let saved = std::fs::read_to_string(&state).unwrap();
        let fields: Vec<f64> = saved
            .split_whitespace()
            .map(|f| f.parse().unwrap())
            .collect();
        assert_eq!(fields.len(), 2, "{saved}");
        assert!((fields[0] - 1.0).abs() < 1e-6, "{saved}");
        assert!(fields[1] < in_a_day - 3600.0, "{saved}");
    }
}

#[cfg(unix)]
#[tokio::test]
async fn a_planted_state_path_is_refused_and_nothing_is_sent() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    let link = dir.path().join("link.bucket");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let fifo = dir.path().join("fifo.bucket");
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .unwrap();
    for (path, want) in [
        (&link, "is a symbolic link"),
        (&fifo, "is a FIFO"),
        (&dir.path().to_path_buf(), "is a directory"),
    ] {
        let (c, _) = client(
            &emu,
            Pacer::shared(RateLimit::STANDARD, path),
            fast_retries(),
        );
        let err = tokio::time::timeout(LIVENESS, c.notify().personal(1, "x").send())
            .await
            .expect("never blocks on a FIFO")
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::InvalidArgument { .. }), "{text}");
        assert!(text.contains(want), "{text}");
        assert_eq!(text.lines().count(), 1, "{text}");
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert!(emu.requests().is_empty(), "nothing reached the portal");
}

#[tokio::test]
async fn bounded_attempts_bound_query_limit_retries() {
    let emu = emulator().await;
    emu.add_faults(&json!([{"method": "*", "kind": "status", "status": 503, "error": "QUERY_LIMIT_EXCEEDED", "count": 100}])).expect("fault rules accepted");
    for attempts in [1u32, 3] {
        let (c, _) = client(
            &emu,
            Pacer::Off,
            RetryPolicy {
                base_delay: Duration::from_millis(5),
                max_delay: Duration::from_millis(20),
                ..RetryPolicy::attempts(attempts)
            },
        );
        let before = emu.requests().len();
        let err = tokio::time::timeout(LIVENESS, c.notify().personal(1, "x").send())
            .await
            .expect("stops by the attempt count")
            .unwrap_err();
        assert_eq!(
            err.api().map(|a| a.code.as_str()),
            Some("QUERY_LIMIT_EXCEEDED")
        );
        assert_eq!(
            emu.requests().len() - before,
            attempts as usize,
            "exactly {attempts} attempts"
        );
    }
    assert!(emu.notifications().is_empty());
}

#[tokio::test]
async fn huge_retry_durations_neither_panic_nor_hang() {
    let emu = emulator().await;
    emu.add_faults(&json!([{"method": "*", "kind": "status", "status": 500, "error": "INTERNAL_SERVER_ERROR", "count": 100}])).expect("fault rules accepted");
    let (c, _) = client(
        &emu,
        Pacer::local(RateLimit::new(f64::MAX, f64::MAX).unwrap()),
        RetryPolicy {
            max_attempts: u32::MAX,
            query_limit_attempts: None,
            // Any backoff is beyond what is left of the deadline: the error comes at once.
            base_delay: Duration::MAX,
            max_delay: Duration::MAX,
            deadline: Duration::from_millis(1),
        },
    );
    let err = tokio::time::timeout(LIVENESS, c.notify().get().send())
        .await
        .expect("no endless backoff")
        .unwrap_err();
    assert_eq!(
        err.api().map(|a| a.code.as_str()),
        Some("INTERNAL_SERVER_ERROR")
    );
}

#[tokio::test]
async fn an_operating_time_pause_is_announced_when_it_starts() {
    let emu = emulator().await;
    // Blocked with no reset time reported: the method waits a minute.
    emu.add_faults(&json!([{"method": "im.notify.personal.add", "kind": "status", "status": 429, "error": "OPERATION_TIME_LIMIT", "count": 1}])).expect("fault rules accepted");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let c = Client::builder(emu.webhook_url(1, SECRET))
        .pacer(Pacer::Off)
        .retry(fast_retries())
        .on_notice(move |n| {
            let _ = tx.send(n.clone());
        })
        .build()
        .unwrap();
    let send = tokio::spawn(async move { c.notify().personal(1, "x").send().await });
    let notice = tokio::time::timeout(LIVENESS, rx.recv())
        .await
        .expect("announced when the pause starts")
        .unwrap();
    send.abort();
    let Notice::Wait(wait) = &notice else {
        panic!("{notice:?}")
    };
    assert!(
        matches!(wait.reason, WaitReason::OperatingTime { .. }),
        "{wait:?}"
    );
    assert!(wait.wait > Duration::from_secs(50), "{wait:?}");
    assert_eq!(wait.method, "im.notify.personal.add");
    assert_eq!(wait.attempt, 2);
    let line = notice.to_string();
    assert!(
        line.contains("operating-time budget") && line.contains("im.notify.personal.add"),
        "{line}"
    );
    assert!(!line.contains(SECRET));
}

#[tokio::test]
async fn a_rate_limit_wait_is_announced_once_with_its_bucket() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    // Burst 1 at 0.25/s: the second request waits about 4 s.
    let limit = RateLimit::new(0.25, 1.0).unwrap();
    for (pacer, shared) in [
        (Pacer::local(limit), false),
        (Pacer::shared(limit, dir.path().join("b")), true),
    ] {
        let (c, notices) = client(&emu, pacer, fast_retries());
        c.notify().personal(1, "one").send().await.unwrap();
        tokio::time::timeout(LIVENESS, c.notify().personal(1, "two").send())
            .await
            .unwrap()
            .unwrap();
        let waits = waits(&notices);
        assert_eq!(waits.len(), 1, "{waits:?}");
        assert_eq!(waits[0].reason, WaitReason::RateLimit { shared });
        assert!(waits[0].wait > Duration::from_secs(2), "{waits:?}");
    }
    assert_eq!(emu.notifications().len(), 4);
}
