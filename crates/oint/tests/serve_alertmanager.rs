//! A real Prometheus Alertmanager delivering through `oint serve` to the emulator: an alert
//! fires, re-fires (its group changes) and resolves, and each user keeps one notification per
//! alert, replaced each time through its tag `<route>:<fingerprint>`.
//!
//! Without an Alertmanager binary the test reports itself as ignored, with the reason,
//! except under CI (`CI` set), where that is a failure: `.ci/run` installs it.

mod common;

use std::process::ExitCode;

use bitrix24_emulator::Notification;
use common::alertmanager::{self, Alertmanager};
use common::relay::{Relay, until};
use common::{TOKEN, emulator};
use libtest_mimic::Failed;
use serde_json::json;

const TEST: &str = "a_real_alertmanager_fires_refires_and_resolves_through_the_relay";

fn main() -> ExitCode {
    alertmanager::run_one(TEST, fires_refires_resolves)
}

/// The notifications of `user` about `instance`.
fn about<'a>(all: &'a [Notification], user: u64, instance: &str) -> Vec<&'a Notification> {
    all.iter()
        .filter(|n| n.user_id == user && n.message.contains(instance))
        .collect()
}

fn fires_refires_resolves() -> Result<(), Failed> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let emu = emulator().await;
            let dir = tempfile::tempdir()?;
            let queue = dir.path().join("q.sqlite3");
            let url = emu.url();
            let relay = Relay::start(
                &["--url", &url, "--token", TOKEN, "--queue", queue.to_str().unwrap(), "--route", "ops=1,2"],
                &[],
                dir.path(),
            )
            .await;
            let am = Alertmanager::start(&format!("{}/alertmanager/ops", relay.base)).await;
            let alert = |instance: &str| {
                json!({
                    "labels": {"alertname": "OintDiskFull", "severity": "critical", "instance": instance},
                    "annotations": {"summary": "Disk almost full"},
                    "startsAt": "2020-01-01T00:00:00Z",
                    "generatorURL": "http://prometheus.example:9090/graph",
                })
            };

            // Fires: one notification per user.
            am.post_alerts(&[alert("db1:9100")]).await;
            until(&emu, "db1 firing for users 1 and 2", |n| n.len() == 2).await;

            // Its group changes (db2 joins): Alertmanager sends both again; db1's replaces
            // its earlier one, db2's is new.
            am.post_alerts(&[alert("db1:9100"), alert("db2:9100")]).await;
            until(&emu, "db1 and db2 for both users", |n| {
                [1, 2].iter().all(|u| about(n, *u, "db2:9100").len() == 1)
            })
            .await;
            let refires = emu.requests().iter().filter(|r| r.method.as_deref() == Some("batch")).count();
            if refires < 2 {
                return Err(format!("expected a second batch for the re-fire, saw {refires}").into());
            }

            // db1 resolves: its notification becomes the resolved one.
            let mut resolved = alert("db1:9100");
            resolved["endsAt"] = json!("2020-01-01T00:05:00Z");
            am.post_alerts(&[resolved, alert("db2:9100")]).await;
            until(&emu, "db1 resolved for both users", |n| {
                [1, 2].iter().all(|u| {
                    about(n, *u, "db1:9100")
                        .iter()
                        .any(|x| x.message.contains("RESOLVED"))
                })
            })
            .await;

            let all = emu.notifications();
            for user in [1, 2] {
                let db1 = about(&all, user, "db1:9100");
                let db2 = about(&all, user, "db2:9100");
                if db1.len() != 1 || db2.len() != 1 {
                    return Err(format!(
                        "user {user}: one notification per alert, replaced each time: {all:?}"
                    )
                    .into());
                }
                if !db1[0].message.starts_with("[b]RESOLVED[/b]") || !db2[0].message.starts_with("[b]FIRING[/b]") {
                    return Err(format!("user {user}: {} / {}", db1[0].message, db2[0].message).into());
                }
                if db1[0].tag == db2[0].tag {
                    return Err("each alert has its own tag".into());
                }
            }
            drop(am);
            let (code, stderr) = relay.terminate().await;
            if code != 0 || stderr.contains(TOKEN) {
                return Err(format!("relay exit {code}: {stderr}").into());
            }
            Ok(())
        })
}
