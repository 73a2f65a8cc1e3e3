//! What a real Prometheus Alertmanager posts, read by `oint::alerts::render`.
//!
//! Alertmanager (tests/common/alertmanager.rs) is given one alert, then the same alert again
//! with an end in the past; a loopback receiver at `/alertmanager/ops` captures the two
//! webhook calls it makes, and each must render as the expected notification: firing, then
//! resolved, under the same tag (so the resolve replaces the firing one on the portal).
//!
//! Without an Alertmanager binary the test reports itself as ignored, with the reason,
//! except under CI (`CI` set), where that is a failure: `.ci/run` installs it.

mod common;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use common::alertmanager::{self, Alertmanager};
use libtest_mimic::Failed;
use oint::alerts::{Route, RouteConfig, Source, fingerprint, render};
use serde_json::{Value, json};
use tokio::sync::mpsc;

const TEST: &str = "real_alertmanager_firing_then_resolved_renders_under_one_tag";

fn main() -> ExitCode {
    alertmanager::run_one(TEST, firing_then_resolved)
}

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), Failed> {
    if ok { Ok(()) } else { Err(what().into()) }
}

/// A receiver on a loopback port: every body posted to `/alertmanager/ops` goes to the
/// channel, and the answer is 200.
async fn receiver() -> (String, mpsc::UnboundedReceiver<Bytes>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = Router::new().route(
        "/alertmanager/ops",
        post(move |body: Bytes| async move {
            let _ = tx.send(body);
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/alertmanager/ops", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

/// The next webhook call. The limit only keeps a broken run from hanging: Alertmanager
/// calls a second after each change (group_wait, group_interval).
async fn next(calls: &mut mpsc::UnboundedReceiver<Bytes>) -> Result<Bytes, Failed> {
    match tokio::time::timeout(Duration::from_secs(60), calls.recv()).await {
        Ok(Some(body)) => Ok(body),
        _ => Err("Alertmanager made no webhook call within 60 s".into()),
    }
}

fn firing_then_resolved() -> Result<(), Failed> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let (url, mut calls) = receiver().await;
            let am = Alertmanager::start(&url).await;
            let labels = json!({"alertname": "OintDiskFull", "severity": "critical", "instance": "db1:9100"});
            let mut alert = json!({
                "labels": labels,
                "annotations": {"summary": "Disk almost full", "description": "/var is 97% full"},
                "startsAt": "2020-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.example:9090/graph?g0.expr=disk_free",
            });
            am.post_alerts(std::slice::from_ref(&alert)).await;
            let firing = next(&mut calls).await?;
            alert["endsAt"] = "2020-01-01T00:05:00Z".into();
            am.post_alerts(&[alert]).await;
            let resolved = next(&mut calls).await?;

            let wire: Value = serde_json::from_slice(&firing)?;
            check(wire["version"] == "4" && wire["status"] == "firing", || {
                format!("firing call: {wire}")
            })?;
            let labels: BTreeMap<String, String> = serde_json::from_value(labels)?;
            // Our derivation of a fingerprint (for payloads without one) is Alertmanager's.
            check(wire["alerts"][0]["fingerprint"] == fingerprint(&labels), || {
                format!("fingerprint {} vs {}", wire["alerts"][0]["fingerprint"], fingerprint(&labels))
            })?;
            let tag = format!("ops:{}", fingerprint(&labels));

            let route = Route::new("ops", toml::from_str::<RouteConfig>("users = [1]")?)?;
            let out = render(Source::Alertmanager, &route, &firing)?;
            check(out.len() == 1, || format!("{out:?}"))?;
            check(
                out[0].text
                    == "[b]FIRING[/b] [b]OintDiskFull[/b] (critical) — Disk almost full\n\
                        /var is 97% full\n\
                        instance=db1:9100\n\
                        [url=http://prometheus.example:9090/graph?g0.expr=disk_free]Source[/url]",
                || format!("firing text: {}", out[0].text),
            )?;
            check(!out[0].resolved && out[0].tag.as_deref() == Some(&tag), || {
                format!("{:?}", out[0])
            })?;

            let out = render(Source::Alertmanager, &route, &resolved)?;
            check(out.len() == 1, || format!("{out:?}"))?;
            check(
                out[0]
                    .text
                    .starts_with("[b]RESOLVED[/b] [s]OintDiskFull[/s] (critical) — Disk almost full\n"),
                || format!("resolved text: {}", out[0].text),
            )?;
            check(out[0].resolved && out[0].tag.as_deref() == Some(&tag), || {
                format!("{:?}", out[0])
            })?;

            // Per group: one notification each time, under the group's one tag.
            let route = Route::new("ops", toml::from_str("users = [1]\ngroup = true")?)?;
            let (a, b) = (
                render(Source::Alertmanager, &route, &firing)?,
                render(Source::Alertmanager, &route, &resolved)?,
            );
            check(
                a.len() == 1 && b.len() == 1 && a[0].tag.is_some() && a[0].tag == b[0].tag,
                || format!("{a:?} {b:?}"),
            )?;
            check(!a[0].resolved && b[0].resolved, || format!("{a:?} {b:?}"))?;
            check(a[0].text.starts_with("[b]FIRING:1[/b] alertname=OintDiskFull\n"), || {
                a[0].text.clone()
            })?;
            check(
                a[0].text.ends_with(&format!("[url={}]Alertmanager[/url]", wire["externalURL"].as_str().unwrap_or("?"))),
                || a[0].text.clone(),
            )?;
            drop(am);
            Ok(())
        })
}
