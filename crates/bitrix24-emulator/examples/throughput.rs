//! Requests per second of the emulator, side by side with the machine's per-request floor.
//!
//! The emulator runs with its limits off (`Plan::Unlimited`): this measures its cost per
//! request, not the portal's rate limit. Both servers run in this process on loopback ports chosen by the OS and get the same load
//! from the same client: the emulator answering `im.notify.personal.add` for real (auth,
//! parameter decoding, validation, storage, PHP-style encoding), and a trivial axum handler
//! that returns a fixed answer. Rounds alternate between the two so that drift in the machine
//! affects both; the table shows each round and the median ratio.
//!
//! Run it with `bench/emulator-throughput.sh` (release build). Options:
//! `--requests N` per round (default 20000), `--concurrency C` (default 32), `--rounds R` (default 3).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use bitrix24_emulator::{Config, Emulator, Plan};

struct Options {
    requests: usize,
    concurrency: usize,
    rounds: usize,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        requests: 20_000,
        concurrency: 32,
        rounds: 3,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = |name: &str| -> Result<usize, String> {
            args.next()
                .and_then(|v| v.parse().ok())
                .filter(|v| *v > 0)
                .ok_or(format!("{name} needs a whole number above 0"))
        };
        match flag.as_str() {
            "--requests" => o.requests = value("--requests")?,
            "--concurrency" => o.concurrency = value("--concurrency")?,
            "--rounds" => o.rounds = value("--rounds")?,
            other => {
                return Err(format!(
                    "unknown option {other}; use --requests, --concurrency, --rounds"
                ));
            }
        }
    }
    Ok(o)
}

/// The floor: an axum handler that does nothing but answer.
async fn start_floor() -> SocketAddr {
    let app = Router::new().route(
        "/rest/{user}/{secret}/{method}",
        post(|| async {
            (
                [("content-type", "application/json; charset=utf-8")],
                r#"{"result":1,"time":{"start":0}}"#,
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("floor server") });
    addr
}

/// Sends `requests` notifications over `concurrency` keep-alive connections; returns the time.
async fn load(url: &str, requests: usize, concurrency: usize) -> Duration {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("client");
    let body = r#"{"USER_ID":"2","MESSAGE":"Benchmark notification with some text in it"}"#;
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, next, url) = (client.clone(), next.clone(), url.to_string());
            tokio::spawn(async move {
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < requests {
                    let answer = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                        .expect("request");
                    assert!(answer.status().is_success(), "status {}", answer.status());
                    answer.bytes().await.expect("body");
                }
            })
        })
        .collect();
    for w in workers {
        w.await.expect("worker");
    }
    started.elapsed()
}

#[tokio::main]
async fn main() {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let emulator = Emulator::start(Config::default().webhook(1, "bench").plan(Plan::Unlimited))
        .await
        .expect("emulator");
    let emulator_url = format!("{}im.notify.personal.add", emulator.webhook_url(1, "bench"));
    let floor_url = format!(
        "http://{}/rest/1/bench/im.notify.personal.add",
        start_floor().await
    );

    // Warm up connections and allocators on both.
    load(&emulator_url, 1_000, o.concurrency).await;
    load(&floor_url, 1_000, o.concurrency).await;

    println!(
        "requests per round: {}, concurrency: {}, cores: {}",
        o.requests,
        o.concurrency,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "{:<7} {:>14} {:>14} {:>9}",
        "round", "emulator rps", "floor rps", "ratio"
    );
    let mut ratios = Vec::new();
    for round in 1..=o.rounds {
        let emu = o.requests as f64
            / load(&emulator_url, o.requests, o.concurrency)
                .await
                .as_secs_f64();
        let floor = o.requests as f64
            / load(&floor_url, o.requests, o.concurrency)
                .await
                .as_secs_f64();
        ratios.push(emu / floor);
        println!(
            "{round:<7} {emu:>14.0} {floor:>14.0} {:>8.1}%",
            100.0 * emu / floor
        );
    }
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    println!(
        "median emulator/floor: {:.1}% (target: at least 50%)",
        100.0 * median
    );
    println!(
        "notifications stored by the emulator: {}",
        emulator.notifications().len()
    );
}
