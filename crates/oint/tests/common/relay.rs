//! A running `oint serve` for tests: started on a loopback port chosen by the OS, its stderr
//! kept in a file, killed when dropped.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use bitrix24_emulator::Emulator;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::oint_command;

/// A running `oint serve`, killed when dropped.
pub struct Relay {
    child: tokio::process::Child,
    pub base: String,
    pub http: reqwest::Client,
    stderr: PathBuf,
}

impl Relay {
    pub async fn start(args: &[&str], env: &[(&str, &str)], dir: &Path) -> Relay {
        let stderr = dir.join(format!("relay-{}.stderr", fastrand::u32(..)));
        let mut all = vec!["serve", "--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let mut cmd = oint_command(&all, env);
        cmd.stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("oint serve starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("oint serve prints its address")
            .unwrap()
            .unwrap_or_else(|| {
                panic!(
                    "oint serve ended before listening: {}",
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                )
            });
        let base = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("first line: {first}"))
            .to_string();
        Relay {
            child,
            base,
            http: reqwest::Client::new(),
            stderr,
        }
    }

    pub async fn post(&self, path: &str, body: &str) -> (u16, Value) {
        self.post_as(path, body, None).await
    }

    pub async fn post_as(&self, path: &str, body: &str, token: Option<&str>) -> (u16, Value) {
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("the relay answers");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("the relay answers");
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// A counter or gauge from `/metrics`.
    pub async fn metric(&self, name: &str) -> f64 {
        let (status, text) = self.get("/metrics").await;
        assert_eq!(status, 200, "{text}");
        metric(&text, name)
    }

    /// Waits (bounded, not timed) until a metric satisfies `done`; panics with its value if
    /// it never does.
    pub async fn wait_for_metric(&self, name: &str, done: impl Fn(f64) -> bool) {
        for _ in 0..600 {
            if done(self.metric(name).await) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{name} is {}", self.metric(name).await);
    }

    /// Sends `signal` (SIGSTOP, SIGCONT, …) and returns at once.
    pub fn signal(&self, signal: i32) {
        let pid = self.child.id().expect("running") as i32;
        unsafe { libc::kill(pid, signal) };
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the exit code.
    pub async fn terminate(self) -> (i32, String) {
        self.signalled(1).await
    }

    /// Sends SIGTERM `times` times and waits for the exit code.
    pub async fn signalled(mut self, times: usize) -> (i32, String) {
        let pid = self.child.id().expect("running") as i32;
        for _ in 0..times {
            unsafe { libc::kill(pid, libc::SIGTERM) };
            // Each signal is its own event for the relay.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let status = tokio::time::timeout(Duration::from_secs(120), self.child.wait())
            .await
            .expect("the relay stops after SIGTERM")
            .unwrap();
        (status.code().unwrap_or(-1), self.stderr())
    }

    pub async fn kill9(mut self) -> String {
        self.child.kill().await.unwrap();
        self.stderr()
    }
}

pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// Waits (bounded, not timed) until `done` holds for the emulator's notifications.
pub async fn until(
    emu: &Emulator,
    what: &str,
    done: impl Fn(&[bitrix24_emulator::Notification]) -> bool,
) {
    for _ in 0..1200 {
        if done(&emu.notifications()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{what}: the emulator holds {} notifications",
        emu.notifications().len()
    );
}
