//! `b24-emulator`: run the local Bitrix24 portal from the command line.
//!
//! The first line on stdout is `listening on http://ADDR` (`https://` with `--tls`), so scripts
//! and tests can start it on port 0 and read the address. Logs go to stderr (`RUST_LOG` controls them) and never contain
//! webhook secrets or tokens.

use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use bitrix24_emulator::{
    AuthErrorStatus, Billing, Config, Emulator, Plan, ReadAllResult, WebhookTags,
};
use clap::{Parser, ValueEnum};

/// A local Bitrix24 portal for offline tests of im.notify.* integrations.
#[derive(Debug, Parser)]
#[command(name = "b24-emulator", version, about)]
struct Cli {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    listen: SocketAddr,

    /// Users 1..=N exist.
    #[arg(long, value_name = "N", default_value_t = 10)]
    users: u64,

    /// Mark a user inactive (notifying them gives "result": false). Repeatable.
    #[arg(long = "inactive-user", value_name = "ID")]
    inactive_user: Vec<u64>,

    /// An inbound webhook /rest/USER_ID/SECRET/. Repeatable.
    #[arg(long, value_name = "USER_ID:SECRET")]
    webhook: Vec<String>,

    /// A valid OAuth access token for a user, issued to the built-in app. Repeatable.
    #[arg(long = "access-token", value_name = "USER_ID:TOKEN")]
    access_token: Vec<String>,

    /// Lifetime of access tokens, in seconds.
    #[arg(long = "token-ttl", value_name = "SECONDS", default_value_t = 3600)]
    token_ttl: u64,

    /// Keep notifications in this SQLite file across restarts.
    #[arg(long, value_name = "FILE")]
    data: Option<PathBuf>,

    /// HTTP status of auth errors. `source`: every auth error is 401, as the server code does.
    /// `docs`: NO_AUTH_FOUND and expired_token 401, INVALID_CREDENTIALS and insufficient_scope
    /// 403, as the documentation lists them.
    #[arg(
        long = "auth-error-status",
        value_name = "source|docs",
        default_value = "source",
        value_parser = ["source", "docs"]
    )]
    auth_error_status: String,

    /// Result of im.notify.read.all. `docs`: {"result":true,"newCounter":N}, as documented.
    /// `source`: plain true, as in the older server code.
    #[arg(
        long = "read-all-result",
        value_name = "docs|source",
        default_value = "docs",
        value_parser = ["docs", "source"]
    )]
    read_all_result: String,

    /// TAG/SUB_TAG of a webhook's im.notify.*add. `source`: dropped, as in the server code.
    /// `docs`: kept when the call names CLIENT_ID, stored as MP|<5 hex of md5("custom"+CLIENT_ID)>|TAG
    /// so im.notify.delete with that CLIENT_ID matches them.
    #[arg(
        long = "webhook-tags",
        value_name = "source|docs",
        default_value = "source",
        value_parser = ["source", "docs"]
    )]
    webhook_tags: String,
    /// An OAuth app allowed to refresh tokens at /oauth/token/. Repeatable. The built-in app
    /// local.emulator.app (secret local.emulator.secret) always exists; naming it again
    /// replaces its secret.
    #[arg(long = "oauth-app", value_name = "CLIENT_ID:CLIENT_SECRET")]
    oauth_app: Vec<String>,
    /// Rate limit of the portal's plan: a leaky bucket per client IP. standard: drains 2
    /// requests/s, blocks above 50; enterprise: 5/s, 250; unlimited: off. Over the limit a call
    /// gets HTTP 503 QUERY_LIMIT_EXCEEDED and is not executed.
    #[arg(long, value_enum, value_name = "PLAN", default_value_t = CliPlan::Standard)]
    plan: CliPlan,

    /// Override the plan's drain rate, in requests per second (may be fractional, e.g. 0.5).
    #[arg(long, value_name = "R")]
    rate: Option<f64>,

    /// Override the plan's block threshold (>= 1): a request passes if the bucket level plus one
    /// stays <= B, so from an empty bucket exactly floor(B) instant requests pass and the next
    /// gets 503.
    #[arg(long, value_name = "B")]
    burst: Option<f64>,

    /// Operating-time budget per method (and per webhook or app) over a sliding 10 minutes, in
    /// seconds. The call after the budget is used gets HTTP 429 OPERATION_TIME_LIMIT. 0 turns
    /// the limit off (usage is still reported in time.operating).
    #[arg(
        long = "operating-budget",
        value_name = "SECONDS",
        default_value_t = 480.0
    )]
    operating_budget: f64,

    /// Where a batch's operating time is billed. batch: to the method "batch", as measured on
    /// cloud portals in 2026; per-method: to each sub-command's method, as the docs say.
    #[arg(long = "operating-billing", value_enum, value_name = "MODE", default_value_t = CliBilling::Batch)]
    operating_billing: CliBilling,

    /// Simulated server time per REST call: each call sleeps this long and is billed for it.
    #[arg(long = "processing-ms", value_name = "MS", default_value_t = 0)]
    processing_ms: u64,

    /// Serve HTTPS with a certificate made at start; its CA is written to DIR/ca.pem (DIR is
    /// created). Trust it with REQUESTS_CA_BUNDLE=DIR/ca.pem or NODE_EXTRA_CA_CERTS=DIR/ca.pem.
    #[arg(long, value_name = "DIR")]
    tls: Option<PathBuf>,

    /// PHP's max_input_vars: variables kept per query string, body or parse_str() call (batch
    /// commands); later ones are dropped, as PHP drops them.
    #[arg(long = "max-input-vars", value_name = "N", default_value_t = 1000)]
    max_input_vars: usize,

    /// PHP's max_input_nesting_level: a parameter name with more bracket levels (`a[b][c]` has
    /// 2) removes its whole top-level variable, as PHP does.
    #[arg(
        long = "max-input-nesting-level",
        value_name = "N",
        default_value_t = 64
    )]
    max_input_nesting_level: usize,

    /// PHP's post_max_size, in bytes or with a K, M or G suffix as in php.ini: a larger body
    /// is read and thrown away, and the call runs without its parameters.
    #[arg(long = "post-max-size", value_name = "SIZE", default_value = "8M")]
    post_max_size: String,

    /// Close a connection that has not sent a complete request head this many seconds after
    /// it opened or after the previous answer (idle keep-alive, silent or slow clients).
    /// Default: nginx's keepalive_timeout.
    #[arg(long = "idle-timeout", value_name = "SECONDS", default_value_t = 75.0)]
    idle_timeout: f64,

    /// Longest pause between two pieces of a request body; then 408 and the connection is
    /// closed. Default: nginx's client_body_timeout.
    #[arg(long = "body-timeout", value_name = "SECONDS", default_value_t = 60.0)]
    body_timeout: f64,

    /// Cut off a REST request still running this many seconds after it arrived: the
    /// connection closes without an answer. Default: the cloud's 60 s cap.
    #[arg(
        long = "request-time-limit",
        value_name = "SECONDS",
        default_value_t = 60.0
    )]
    request_time_limit: f64,
}

/// Seconds for a timeout flag: positive, at most a day. The error names the flag.
fn timeout_secs(flag: &str, secs: f64) -> Result<std::time::Duration, String> {
    if secs.is_finite()
        && secs > 0.0
        && secs <= 86_400.0
        && let Ok(d) = std::time::Duration::try_from_secs_f64(secs)
    {
        return Ok(d);
    }
    Err(format!(
        "error: invalid value for '--{flag}': expected a number of seconds greater than 0 and at most 86400"
    ))
}

/// `8M`-style sizes as php.ini writes them (K, M, G are powers of 1024).
fn php_size(raw: &str) -> Result<usize, String> {
    let bad = || {
        "error: invalid value for '--post-max-size': expected bytes, optionally with a K, M or G suffix (e.g. 8M)".to_owned()
    };
    let raw = raw.trim();
    let (digits, unit) = match raw.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&raw[..i], c.to_ascii_uppercase()),
        _ => (raw, 'B'),
    };
    let shift = match unit {
        'B' => 0,
        'K' => 10,
        'M' => 20,
        'G' => 30,
        _ => return Err(bad()),
    };
    let n: usize = digits.parse().map_err(|_| bad())?;
    n.checked_mul(1usize << shift).ok_or_else(bad)
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CliPlan {
    Standard,
    Enterprise,
    Unlimited,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CliBilling {
    Batch,
    PerMethod,
}

/// Split `USER_ID:SECRET`. The error never repeats the value, which holds a secret.
fn credential_pair(flag: &str, what: &str, raw: &str) -> Result<(u64, String), String> {
    let bad = || {
        format!(
            "error: invalid value for '--{flag}': expected USER_ID:{what} with a positive numeric USER_ID and a non-empty {what}"
        )
    };
    let (user, secret) = raw.split_once(':').ok_or_else(bad)?;
    let user = user
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|u| *u > 0)
        .ok_or_else(bad)?;
    if secret.is_empty() {
        return Err(bad());
    }
    Ok((user, secret.to_owned()))
}

/// Split `CLIENT_ID:CLIENT_SECRET` at the first `:`. The error never repeats the value.
fn oauth_app(raw: &str) -> Result<(String, String), String> {
    match raw.split_once(':') {
        Some((id, secret)) if !id.trim().is_empty() && !secret.is_empty() => {
            Ok((id.trim().to_owned(), secret.to_owned()))
        }
        _ => Err(
            "error: invalid value for '--oauth-app': expected CLIENT_ID:CLIENT_SECRET, both non-empty"
                .to_owned(),
        ),
    }
}

fn config(cli: &Cli) -> Result<Config, String> {
    let mut config = Config::default().users(cli.users).token_ttl(cli.token_ttl);
    for id in &cli.inactive_user {
        config = config.inactive_user(*id);
    }
    for raw in &cli.webhook {
        let (user, secret) = credential_pair("webhook", "SECRET", raw)?;
        config = config.webhook(user, secret);
    }
    for raw in &cli.access_token {
        let (user, token) = credential_pair("access-token", "TOKEN", raw)?;
        config = config.access_token(user, token);
    }
    if let Some(path) = &cli.data {
        config = config.data(path);
    }
    let auth_error_status: AuthErrorStatus = cli
        .auth_error_status
        .parse()
        .map_err(|e| format!("error: invalid value for '--auth-error-status': {e}"))?;
    let read_all_result: ReadAllResult = cli
        .read_all_result
        .parse()
        .map_err(|e| format!("error: invalid value for '--read-all-result': {e}"))?;
    let webhook_tags: WebhookTags = cli
        .webhook_tags
        .parse()
        .map_err(|e| format!("error: invalid value for '--webhook-tags': {e}"))?;
    config = config
        .auth_error_status(auth_error_status)
        .read_all_result(read_all_result)
        .webhook_tags(webhook_tags);
    for raw in &cli.oauth_app {
        let (client_id, secret) = oauth_app(raw)?;
        config = config.oauth_app(client_id, secret);
    }
    config = config.plan(match cli.plan {
        CliPlan::Standard => Plan::Standard,
        CliPlan::Enterprise => Plan::Enterprise,
        CliPlan::Unlimited => Plan::Unlimited,
    });
    if let Some(rate) = cli.rate {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(
                "error: invalid value for '--rate': expected a positive number of requests per second".into(),
            );
        }
        config = config.rate(rate);
    }
    if let Some(burst) = cli.burst {
        if !(burst.is_finite() && burst >= 1.0) {
            return Err("error: invalid value for '--burst': expected a number >= 1".into());
        }
        config = config.burst(burst);
    }
    if !(cli.operating_budget.is_finite() && cli.operating_budget >= 0.0) {
        return Err(
            "error: invalid value for '--operating-budget': expected a non-negative number of seconds".into(),
        );
    }
    config = config
        .operating_budget(cli.operating_budget)
        .operating_billing(match cli.operating_billing {
            CliBilling::Batch => Billing::Batch,
            CliBilling::PerMethod => Billing::PerMethod,
        })
        .processing_ms(cli.processing_ms);
    if let Some(dir) = &cli.tls {
        config = config.tls(dir);
    }
    config = config
        .max_input_vars(cli.max_input_vars)
        .max_input_nesting_level(cli.max_input_nesting_level)
        .post_max_size(php_size(&cli.post_max_size)?)
        .idle_timeout(timeout_secs("idle-timeout", cli.idle_timeout)?)
        .body_timeout(timeout_secs("body-timeout", cli.body_timeout)?)
        .request_time_limit(timeout_secs("request-time-limit", cli.request_time_limit)?);
    Ok(config)
}

/// Resolves on Ctrl-C or, on Unix, SIGTERM.
async fn stop_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = ctrl_c => {}
            () = term => {}
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await;
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // One line, naming the flag; clap's usage block is left out.
            let message = e.to_string();
            let line = message
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("error: invalid arguments");
            eprintln!("{line}");
            return ExitCode::from(2);
        }
    };
    let config = match config(&cli) {
        Ok(config) => config,
        Err(line) => {
            eprintln!("{line}");
            return ExitCode::from(2);
        }
    };

    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let emulator = match Emulator::bind(config, cli.listen).await {
            Ok(emulator) => emulator,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "listening on {}", emulator.url());
        let _ = stdout.flush();
        drop(stdout);
        if !emulator.addr().ip().is_loopback() {
            tracing::warn!(addr = %emulator.addr(), "listening on a non-loopback address");
        }
        stop_signal().await;
        tracing::info!("stopping");
        emulator.shutdown().await;
        ExitCode::SUCCESS
    })
}
