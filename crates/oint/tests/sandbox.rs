//! The embedded sandbox (`--url sandbox`, `oint sandbox …`) through the built binary: state
//! kept across runs, several processes on one data file at once, and the build without it.

mod common;

use common::*;

const SEND: [&str; 6] = [
    "bitrix24",
    "CreatePersonalNotification",
    "--url",
    "sandbox",
    "--user",
    "1",
];

#[cfg(feature = "sandbox")]
mod built_in {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    use super::*;

    /// Sends `text` to the sandbox at `data`; the new notification's id.
    async fn send(data: &str, text: &str) -> u64 {
        let mut args = SEND.to_vec();
        args.extend(["--text", text]);
        let out = oint(&args, &[("OINT_SANDBOX_DATA", data)]).await;
        assert_eq!(out.status.code(), Some(0), "{text}: {}", stderr(&out));
        json(&out)["result"].as_u64().expect("the answer is an id")
    }

    async fn sandbox(action: &str, data: &str) -> std::process::Output {
        let out = oint(&["sandbox", action], &[("OINT_SANDBOX_DATA", data)]).await;
        assert_eq!(out.status.code(), Some(0), "{action}: {}", stderr(&out));
        out
    }

    /// `(id, message)` of every stored notification.
    async fn list(data: &str) -> BTreeMap<u64, String> {
        let stored = json(&sandbox("list", data).await);
        let stored = stored.as_array().expect("a list");
        let by_id: BTreeMap<u64, String> = stored
            .iter()
            .map(|n| {
                (
                    n["id"].as_u64().unwrap(),
                    n["message"].as_str().unwrap().into(),
                )
            })
            .collect();
        assert_eq!(by_id.len(), stored.len(), "ids repeat: {stored:?}");
        by_id
    }

    /// `lanes` processes at a time: each lane runs `per_lane` sends one after another.
    /// Returns `(id, text)` of every send.
    async fn send_in_lanes(data: &Path, lanes: usize, per_lane: usize) -> Vec<(u64, String)> {
        let tasks: Vec<_> = (0..lanes)
            .map(|lane| {
                let data = data.to_str().unwrap().to_owned();
                tokio::spawn(async move {
                    let mut sent = Vec::new();
                    for i in 0..per_lane {
                        let text = format!("lane {lane} message {i}");
                        sent.push((send(&data, &text).await, text));
                    }
                    sent
                })
            })
            .collect();
        let mut sent = Vec::new();
        for task in tasks {
            sent.extend(task.await.unwrap());
        }
        sent
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn works_without_an_account_and_keeps_state() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("sandbox.sqlite3");
        let data = data.to_str().unwrap();
        let a = send(data, "Hello").await;
        let b = send(data, "Hello").await;
        assert!(b > a, "ids keep growing across runs: {a} then {b}");

        let stored = json(&sandbox("list", data).await);
        assert_eq!(stored.as_array().unwrap().len(), 2);
        assert_eq!(stored[0]["message"], "Hello");

        sandbox("reset", data).await;
        assert_eq!(json(&sandbox("list", data).await), serde_json::json!([]));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn serve_refuses_addresses_other_machines_reach() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("sandbox.sqlite3");
        let out = oint(
            &["sandbox", "serve", "--listen", "0.0.0.0:0"],
            &[("OINT_SANDBOX_DATA", data.to_str().unwrap())],
        )
        .await;
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("loopback addresses only"),
            "{}",
            stderr(&out)
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn serve_shows_the_inbox_takes_rest_calls_and_stops_on_sigterm() {
        use tokio::io::{AsyncBufReadExt, BufReader};
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("sandbox.sqlite3");
        let data = data.to_str().unwrap();
        send(data, "[b]Sent before[/b] <script>x</script>").await;

        let mut cmd = oint_command(
            &["sandbox", "serve", "--listen", "127.0.0.1:0"],
            &[("OINT_SANDBOX_DATA", data)],
        );
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(std::time::Duration::from_secs(60), lines.next_line())
            .await
            .expect("prints its address")
            .unwrap()
            .expect("a first line");
        let base = first
            .strip_prefix("listening on ")
            .expect(&first)
            .to_string();

        let http = reqwest::Client::new();
        let page = http.get(format!("{base}/?user=1")).send().await.unwrap();
        assert_eq!(page.status(), 200);
        assert!(page.headers().contains_key("content-security-policy"));
        let html = page.text().await.unwrap();
        assert!(html.contains("<b>Sent before</b>"), "{html}");
        assert!(!html.contains("<script>x"), "escaped: {html}");

        // The served portal is the sandbox itself: what the REST API stores, the data file keeps.
        let stored: serde_json::Value = http
            .post(format!("{base}/rest/1/sandbox/im.notify.personal.add"))
            .json(&serde_json::json!({"USER_ID": 1, "MESSAGE": "Sent while serving"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(stored["result"].as_u64().is_some(), "{stored}");

        unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGTERM) };
        let status = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait())
            .await
            .expect("stops after SIGTERM")
            .unwrap();
        assert_eq!(status.code(), Some(0));
        let messages: Vec<String> = list(data).await.into_values().collect();
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert_eq!(messages[1], "Sent while serving");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn processes_running_at_once_take_turns_and_ids_stay_unique() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("sandbox.sqlite3");
        let sent = send_in_lanes(&data, 4, 10).await;

        let ids: BTreeSet<u64> = sent.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, (1..=40).collect(), "40 distinct ids: {sent:?}");
        let stored = list(data.to_str().unwrap()).await;
        assert_eq!(stored, sent.into_iter().collect::<BTreeMap<_, _>>());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn reset_while_sending_waits_its_turn() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("sandbox.sqlite3");
        let resets = 3;
        let sending = tokio::spawn({
            let data = data.clone();
            async move { send_in_lanes(&data, 3, 6).await }
        });
        for _ in 0..resets {
            sandbox("reset", data.to_str().unwrap()).await;
        }
        let sent = sending.await.unwrap();
        let stored = list(data.to_str().unwrap()).await;

        // Every reset starts the ids at 1 again, so each id is handed out at most once per
        // stretch between resets, and an id is never handed out more often than a smaller one.
        let mut times: BTreeMap<u64, usize> = BTreeMap::new();
        for (id, _) in &sent {
            *times.entry(*id).or_default() += 1;
        }
        let counts: Vec<usize> = times.values().copied().collect();
        assert!(counts[0] <= resets + 1, "{sent:?}");
        assert!(counts.windows(2).all(|w| w[0] >= w[1]), "{sent:?}");
        assert!(times.keys().copied().eq(1..=times.len() as u64), "{sent:?}");
        // What is left is the last stretch: ids 1..=n, each with the text its send got it for.
        assert!(
            stored.keys().copied().eq(1..=stored.len() as u64),
            "{stored:?}"
        );
        for (id, message) in &stored {
            assert!(sent.contains(&(*id, message.clone())), "{id} {message}");
        }
    }
}

#[cfg(not(feature = "sandbox"))]
#[tokio::test(flavor = "multi_thread")]
async fn without_the_feature_sandbox_commands_say_how_to_get_it() {
    let mut send = SEND.to_vec();
    send.extend(["--text", "x"]);
    for args in [send, vec!["sandbox", "list"], vec!["sandbox", "reset"]] {
        let out = oint(&args, &[]).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(
            stderr(&out),
            "error: this oint was built without the sandbox; rebuild with --features sandbox\n"
        );
    }
}
