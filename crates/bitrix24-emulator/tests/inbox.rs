//! The web inbox over HTTP: escaping, headers, link and image rules, the action guard and
//! the live event stream, against a running emulator.

use bitrix24_emulator::{Config, Emulator};
use serde_json::{Value, json};

async fn seeded() -> Emulator {
    let emu = Emulator::start(Config::default().webhook(1, "s3cretHook"))
        .await
        .unwrap();
    let c = reqwest::Client::new();
    let attach = json!([
        {"MESSAGE": "<img src=x onerror=window.__xss=1> [url=javascript:alert(1)]bad[/url] [b]bold[/b]"},
        {"IMAGE": {"NAME": "remote", "LINK": "https://example.com/a.png"}},
        {"IMAGE": {"NAME": "local", "LINK": "http://127.0.0.1:9/a.png"}},
        {"GRID": [{"DISPLAY": "TABLE", "NAME": "k", "VALUE": "v"}]},
    ]);
    let r: Value = c
        .post(format!("{}im.notify.personal.add", emu.webhook_url(1, "s3cretHook")))
        .json(&json!({"USER_ID": 2, "MESSAGE": "Hi <script>window.__xss=1</script> [url=data:text/html,x]d[/url]", "ATTACH": attach}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(r["result"].as_u64().is_some(), "{r}");
    emu
}

#[tokio::test]
async fn page_escapes_values_and_sends_strict_headers() {
    let emu = seeded().await;
    let r = reqwest::get(format!("{}/?user=2", emu.url()))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("default-src 'self'") && csp.contains("script-src 'self'"));
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    let html = r.text().await.unwrap();
    assert!(!html.contains("<script>window"), "raw script in page");
    assert!(!html.contains("<img src=x"), "raw img in page");
    assert!(html.contains("&lt;script&gt;"));
    assert!(!html.to_lowercase().contains("href=\"javascript:"));
    assert!(!html.to_lowercase().contains("href=\"data:"));
    assert!(!html.contains("s3cretHook"), "webhook secret in page");
    assert!(
        html.contains("data-remote-image"),
        "remote image placeholder"
    );
    assert!(!html.contains("src=\"https://example.com"));
    assert!(html.contains("src=\"http://127.0.0.1:9/a.png\""));
    assert!(html.contains("data-display=\"table\""));
    assert!(html.contains("<b>bold</b>"));
}

#[tokio::test]
async fn action_endpoint_refuses_other_origins_and_non_json() {
    let emu = seeded().await;
    let c = reqwest::Client::new();
    let url = format!("{}/inbox/api/2/im.notify.read", emu.url());
    let form = c
        .post(&url)
        .body("ID=1")
        .header("content-type", "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 403);
    let foreign = c
        .post(&url)
        .json(&json!({"ID": 1}))
        .header("origin", "http://evil.test")
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);
    let rebind = c
        .post(&url)
        .json(&json!({"ID": 1}))
        .header("host", "evil.test")
        .send()
        .await
        .unwrap();
    assert_eq!(rebind.status(), 403);
    assert!(!emu.notifications()[0].read);
    let ok = c
        .post(&url)
        .json(&json!({"ID": 1, "ONLY_CURRENT": "Y"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert!(emu.notifications()[0].read, "im.notify.read ran as user 2");
    let other = c
        .post(format!("{}/inbox/api/2/im.notify.personal.add", emu.url()))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
}

#[tokio::test]
async fn event_stream_reports_a_new_notification() {
    let emu = seeded().await;
    let mut events = reqwest::get(format!("{}/inbox/2/events", emu.url()))
        .await
        .unwrap();
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let mut seen = String::new();
    while !seen.contains("event: ready") {
        seen.push_str(&String::from_utf8_lossy(
            &events.chunk().await.unwrap().unwrap(),
        ));
    }
    reqwest::Client::new()
        .post(format!(
            "{}im.notify.personal.add",
            emu.webhook_url(1, "s3cretHook")
        ))
        .json(&json!({"USER_ID": 2, "MESSAGE": "second"}))
        .send()
        .await
        .unwrap();
    while !seen.contains("event: changed") {
        seen.push_str(&String::from_utf8_lossy(
            &events.chunk().await.unwrap().unwrap(),
        ));
    }
    let list = reqwest::get(format!("{}/inbox/2/list", emu.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        list.find("second").unwrap() < list.find("bold").unwrap(),
        "newest first"
    );
    drop(events);
    emu.shutdown().await;
}
