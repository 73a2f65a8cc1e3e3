//! The web inbox in headless Chromium (tests/inbox_browser.mjs drives it with playwright-core):
//! rendering of every attach block, no injected script running, a confirm answered by a click,
//! and a live update over the event stream. Runs when OINT_PLAYWRIGHT_NODE_MODULES points at a
//! node_modules holding playwright-core and Chromium is installed; passes with a notice otherwise
//! (fails under CI).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bitrix24_emulator::{Config, Emulator};
use serde_json::{Value, json};

const SECRET: &str = "br0wserHook";
/// The inbox under test; the webhook belongs to user 1, who notifies user 2.
const INBOX_USER: u64 = 2;

/// Skips the test with a notice, or fails it under CI, where everything must be installed.
fn missing(what: &str) {
    assert!(std::env::var_os("CI").is_none(), "CI is set but {what}");
    eprintln!("skipped: {what}");
}

/// Kills the browser script if the test ends early (panic or timeout).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn post(url: String, body: Value) -> Value {
    let r = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert!(status.is_success(), "HTTP {status}: {v}");
    v
}

#[tokio::test]
async fn inbox_renders_and_updates_in_chromium() {
    let Some(modules) = std::env::var_os("OINT_PLAYWRIGHT_NODE_MODULES") else {
        missing(
            "OINT_PLAYWRIGHT_NODE_MODULES is not set; point it at a node_modules with playwright-core",
        );
        return;
    };
    let chromium = std::env::var_os("OINT_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    if !chromium.exists() {
        missing(&format!(
            "no Chromium at {}; install it or set OINT_CHROMIUM",
            chromium.display()
        ));
        return;
    }

    let emu = Emulator::start(Config::default().webhook(1, SECRET))
        .await
        .unwrap();
    let hook = emu.webhook_url(1, SECRET);
    let every_block = json!({
        "ID": 1,
        "COLOR": "#c8102e",
        "BLOCKS": [
            {"USER": {"NAME": "Anna Petrova", "AVATAR_TYPE": "USER"}},
            {"LINK": {"NAME": "Deal #42", "DESC": "Won", "LINK": "https://example.com/deal/42"}},
            {"MESSAGE": "Plain and [b]bold[/b] text"},
            {"GRID": [
                {"DISPLAY": "LINE", "NAME": "Stage", "VALUE": "Won", "COLOR": "#008000"},
                {"DISPLAY": "BLOCK", "NAME": "Sum", "VALUE": "1000"}
            ]},
            {"IMAGE": [
                {"NAME": "chart", "LINK": format!("{}/upload/chart.png", emu.url())},
                {"NAME": "remote", "LINK": "https://example.com/remote.png"}
            ]},
            {"FILE": [{"NAME": "report.pdf", "LINK": "https://example.com/report.pdf", "SIZE": 20480}]},
            {"DELIMITER": {"SIZE": 200, "COLOR": "#c8102e"}}
        ]
    });
    let blocks = post(
        format!("{hook}im.notify.personal.add"),
        json!({"USER_ID": INBOX_USER, "MESSAGE": "Every block", "ATTACH": every_block}),
    )
    .await;
    assert!(blocks["result"].as_u64().is_some(), "{blocks}");
    let payload = "<img src=x onerror=\"window.__xss=1\"> [url=javascript:window.__xss=1]x[/url]";
    let hostile = post(
        format!("{hook}im.notify.personal.add"),
        json!({"USER_ID": INBOX_USER, "MESSAGE": payload, "ATTACH": [
            {"MESSAGE": payload},
            {"LINK": {"NAME": payload, "LINK": "javascript:window.__xss=1"}},
            {"GRID": [{"DISPLAY": "LINE", "NAME": payload, "VALUE": payload}]}
        ]}),
    )
    .await;
    assert!(hostile["result"].as_u64().is_some(), "{hostile}");
    // Confirm notifications come from portal modules, not REST: seed one.
    post(
        format!("{}/_emulator/notifications", emu.url()),
        json!({"user_id": INBOX_USER, "type": "CONFIRM", "message": "Join the group?",
               "buttons": [{"TITLE": "Accept", "VALUE": "Y", "TYPE": "accept"},
                           {"TITLE": "Decline", "VALUE": "N", "TYPE": "cancel"}]}),
    )
    .await;
    let confirm_id = emu
        .notifications()
        .iter()
        .find(|n| n.r#type == "CONFIRM")
        .map(|n| n.id)
        .expect("seeded confirm notification");

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/inbox_browser.mjs");
    let screenshot = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/inbox-browser.png");
    let _ = std::fs::remove_file(&screenshot);
    let child = Command::new("node")
        .arg(&script)
        .arg(emu.url())
        .arg(confirm_id.to_string())
        .arg(&screenshot)
        .env("OINT_PLAYWRIGHT_NODE_MODULES", &modules)
        .env("OINT_CHROMIUM", &chromium)
        .env("OINT_INBOX_WEBHOOK", &hook)
        .env("OINT_INBOX_USER", INBOX_USER.to_string())
        .stdin(Stdio::null())
        .spawn()
        .expect("node must be on PATH to run the browser test");
    let mut child = KillOnDrop(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "browser script still running after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        status.success(),
        "browser script failed ({status}); its message is above"
    );

    let left = emu.notifications();
    assert!(
        left.iter().all(|n| n.id != confirm_id),
        "confirm notification {confirm_id} was not answered: {left:?}"
    );
    assert!(
        left.iter().any(|n| n.message.contains("Arrived live-")),
        "the notification the script sent is not stored"
    );
    let size = std::fs::metadata(&screenshot).map(|m| m.len()).unwrap_or(0);
    assert!(size > 0, "no screenshot at {}", screenshot.display());
    emu.shutdown().await;
}
