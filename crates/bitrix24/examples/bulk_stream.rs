//! Many notifications from a stream: JSON lines on stdin, each checked, then sent through
//! `batch` at the portal's rate with one outcome per row.
//!
//! Each line is `{"user": 1, "message": "…", "attach": […]}` (`attach` optional). A row the
//! portal would refuse is reported and not sent; a row with warnings is sent, and its warnings
//! are printed (`B24_STRICT=1` refuses those too). Stdin is read by a thread into a bounded
//! channel, so memory stays flat however long the input is.
//!
//! Against a local emulator:
//!
//! ```sh
//! cargo run -p bitrix24-emulator -- --webhook 1:secret   # prints: listening on http://127.0.0.1:PORT
//! for i in $(seq 1 120); do echo "{\"user\": $((i % 3 + 1)), \"message\": \"row $i\"}"; done |
//!   B24_WEBHOOK=http://127.0.0.1:PORT/rest/1/secret/ cargo run -p bitrix24 --example bulk_stream
//! ```

use std::io::BufRead;

use bitrix24::notify::Personal;
use bitrix24::{Attach, BulkItem, Client, ItemOutcome};
use futures_util::StreamExt;
use serde_json::Value;

/// One line as a checked request, or why it is not sent.
fn row(line: &str, strict: bool) -> Result<(Personal, usize), String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let user = v["user"].as_u64().ok_or("\"user\" must be a user id")?;
    let message = v["message"].as_str().ok_or("\"message\" must be text")?;
    let mut notification = Personal::new(user, message).strict(strict);
    if let Some(attach) = v.get("attach") {
        notification = notification.attach(Attach::from_value(attach.clone()));
    }
    let report = notification.check();
    // In strict mode the refusal below carries the same lines.
    for w in report.warnings.iter().filter(|_| !strict) {
        eprintln!("warning: {} [{}]", w.line(), w.rule);
    }
    let warnings = report.warnings.len();
    report.into_result(strict).map_err(|e| e.to_string())?;
    Ok((notification, warnings))
}

#[tokio::main]
async fn main() {
    // One line and the project's exit codes: 2 refused before sending, 1 anything else.
    if let Err(e) = run().await {
        eprintln!("error: {e}");
        let refused = e
            .downcast_ref::<bitrix24::Error>()
            .is_some_and(|e| matches!(e, bitrix24::Error::InvalidArgument { .. }));
        std::process::exit(if refused { 2 } else { 1 });
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("B24_WEBHOOK").map_err(
        |_| "set B24_WEBHOOK to the inbound webhook URL (https://PORTAL/rest/USER/SECRET/)",
    )?;
    let strict = std::env::var("B24_STRICT").is_ok_and(|v| v == "1");
    let client = Client::builder(url).build()?;

    // Bounded: the reader waits while the sender is busy.
    let (tx, rx) = tokio::sync::mpsc::channel::<(u64, String)>(256);
    std::thread::spawn(move || {
        for (n, line) in std::io::stdin().lock().lines().enumerate() {
            let Ok(line) = line else { break };
            if tx.blocking_send((n as u64 + 1, line)).is_err() {
                break;
            }
        }
    });
    let refused = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let warned = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (r, w) = (refused.clone(), warned.clone());
    let items = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|line| (line, rx))
    })
    .filter_map(move |(n, line)| {
        let (r, w) = (r.clone(), w.clone());
        async move {
            if line.trim().is_empty() {
                return None;
            }
            let built = row(&line, strict).and_then(|(notification, warnings)| {
                let request = notification.to_request().map_err(|e| e.to_string())?;
                Ok((request, warnings))
            });
            match built {
                Ok((request, warnings)) => {
                    w.fetch_add(warnings as u64, std::sync::atomic::Ordering::Relaxed);
                    Some(BulkItem { row: n, request })
                }
                Err(e) => {
                    eprintln!("row {n}: not sent: {e}");
                    r.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    None
                }
            }
        }
    });

    let (mut delivered, mut not_created, mut failed, mut unknown) = (0, 0, 0, 0);
    let mut outcomes = std::pin::pin!(client.bulk(Box::pin(items)).run());
    while let Some((n, outcome)) = outcomes.next().await {
        match outcome {
            ItemOutcome::Delivered { .. } => delivered += 1,
            ItemOutcome::NotCreated => not_created += 1,
            ItemOutcome::Failed(e) => {
                eprintln!("row {n}: failed: {} {}", e.code, e.description);
                failed += 1;
            }
            ItemOutcome::Unknown => {
                eprintln!("row {n}: outcome unknown (may have been delivered)");
                unknown += 1;
            }
        }
    }
    let refused = refused.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "delivered {delivered}, not created {not_created}, failed {failed}, unknown {unknown}, refused before sending {refused}, warnings {}",
        warned.load(std::sync::atomic::Ordering::Relaxed),
    );
    if not_created + failed + unknown + refused > 0 {
        // The project's code for a partly delivered bulk.
        std::process::exit(3);
    }
    Ok(())
}
