//! A real Prometheus Alertmanager for tests: started on a loopback port with a webhook
//! receiver pointing at the test, stopped on drop.
//!
//! The binary is `OINT_ALERTMANAGER`, else `/usr/bin/prometheus-alertmanager` (Debian's
//! `prometheus-alertmanager`, which `.ci/run` installs). [`binary`] says why it is missing.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Alertmanager {
    child: Child,
    url: String,
    http: reqwest::Client,
    // Holds the config, the storage and the log until the process is gone.
    _dir: tempfile::TempDir,
}

/// The Alertmanager binary, or why there is none (to print when skipping).
pub fn binary() -> Result<PathBuf, String> {
    match std::env::var_os("OINT_ALERTMANAGER").filter(|p| !p.is_empty()) {
        Some(path) => {
            let path = PathBuf::from(path);
            if path.is_file() {
                Ok(path)
            } else {
                Err(format!(
                    "OINT_ALERTMANAGER={} is not a file",
                    path.display()
                ))
            }
        }
        None => {
            let path = PathBuf::from("/usr/bin/prometheus-alertmanager");
            if path.is_file() {
                Ok(path)
            } else {
                Err(format!(
                    "no Alertmanager: install prometheus-alertmanager ({} is missing) or set OINT_ALERTMANAGER",
                    path.display()
                ))
            }
        }
    }
}

/// Group by alert name, notify a second after the first alert and a second after each change,
/// repeat only after a day: each change of an alert is one webhook call.
fn config(webhook_url: &str) -> String {
    format!(
        "route:
  receiver: oint
  group_by: ['alertname']
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 24h
receivers:
  - name: oint
    webhook_configs:
      - url: '{webhook_url}'
        send_resolved: true
"
    )
}

impl Alertmanager {
    /// Starts Alertmanager with a webhook receiver at `webhook_url` and waits until it is
    /// ready. Panics when it cannot start; check [`binary`] first to skip instead.
    pub async fn start(webhook_url: &str) -> Alertmanager {
        let binary = binary().unwrap_or_else(|why| panic!("{why}"));
        let dir = tempfile::tempdir().expect("temp dir");
        let config_file = dir.path().join("alertmanager.yml");
        std::fs::write(&config_file, config(webhook_url)).expect("config written");
        let http = reqwest::Client::new();
        // The port is free when chosen but may be taken before Alertmanager binds it: then
        // it exits, and another port is tried.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a loopback port")
                .port();
            let log = dir.path().join(format!("alertmanager-{port}.log"));
            let mut child = Command::new(&binary)
                .arg(format!("--config.file={}", config_file.display()))
                .arg(format!(
                    "--storage.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                // An empty address turns clustering (gossip on 9094) off.
                .arg("--cluster.listen-address=")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("log file"))
                .spawn()
                .unwrap_or_else(|e| panic!("{} does not start: {e}", binary.display()));
            let url = format!("http://127.0.0.1:{port}");
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if let Some(status) = child.try_wait().expect("child status") {
                    let log = std::fs::read_to_string(&log).unwrap_or_default();
                    if log.contains("address already in use") {
                        break;
                    }
                    panic!("Alertmanager exited ({status}) before it was ready:\n{log}");
                }
                let ready = http.get(format!("{url}/-/ready")).send().await;
                if ready.is_ok_and(|r| r.status().is_success()) {
                    return Alertmanager {
                        child,
                        url,
                        http,
                        _dir: dir,
                    };
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    let log = std::fs::read_to_string(&log).unwrap_or_default();
                    panic!("Alertmanager was not ready within 60 s:\n{log}");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        panic!("Alertmanager found no free loopback port in 5 tries");
    }

    /// Its base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Posts `alerts` to `/api/v2/alerts`, as Prometheus does.
    pub async fn post_alerts(&self, alerts: &[Value]) {
        let answer = self
            .http
            .post(format!("{}/api/v2/alerts", self.url))
            .json(alerts)
            .send()
            .await
            .expect("Alertmanager answers");
        let status = answer.status();
        let body = answer.text().await.unwrap_or_default();
        assert!(status.is_success(), "POST /api/v2/alerts: {status}: {body}");
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `test` as the only test of a file with libtest-mimic: ignored, with the reason on
/// stderr, when there is no Alertmanager, except under CI (`CI` set), where that fails.
pub fn run_one(
    name: &'static str,
    test: fn() -> Result<(), libtest_mimic::Failed>,
) -> std::process::ExitCode {
    use libtest_mimic::{Arguments, Trial};
    let args = Arguments::from_args();
    let trial = match binary() {
        Ok(_) => Trial::test(name, test),
        Err(why) if std::env::var_os("CI").is_some() => Trial::test(name, move || {
            Err(format!("CI must run this test: {why} (see .ci/run)").into())
        }),
        // libtest-mimic prints no reason for an ignored test, so it goes to stderr too.
        Err(why) => {
            eprintln!("{name}: ignored: {why}");
            Trial::test(name, || Ok(())).with_ignored_flag(true)
        }
    };
    libtest_mimic::run(&args, vec![trial]).exit_code()
}
