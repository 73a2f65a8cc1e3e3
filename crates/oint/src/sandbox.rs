//! The sandbox: a local portal embedded in `oint`, so the first command works with no account.
//!
//! `--url sandbox` starts the emulator in-process on a loopback port chosen by the OS, sends
//! the request to it over HTTP like to any portal, and stops it. Its state lives in a SQLite
//! file under the user's data directory (or `OINT_SANDBOX_DATA`), so notifications sent by one
//! command can be listed by the next.
//!
//! The emulator reads the whole file when it starts and keeps the next notification id in
//! memory, so two processes on one file at once would hand out the same ids; its own lock
//! (`FILE.lock`) makes the second one fail instead. Sandbox commands therefore take turns
//! on a lock of their own, `FILE.sandbox-lock`, waiting for it: held from before the
//! emulator opens the file until the process exits.
//!
//! Built without the `sandbox` feature, `sandbox_absent.rs` stands in for this module.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use bitrix24::Client;
use bitrix24_emulator::{AppState, Config, Emulator};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::output::Failure;
use crate::settings::Transport;

/// The sandbox webhook belongs to user 1; its secret is not secret.
pub const WEBHOOK_USER: u64 = 1;
const WEBHOOK_SECRET: &str = "sandbox";

/// Where the sandbox keeps its state.
pub fn data_path() -> Result<PathBuf, Failure> {
    if let Some(path) = std::env::var_os("OINT_SANDBOX_DATA").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let dir = dirs::data_dir().ok_or_else(|| {
        Failure::Local(
            "cannot find a data directory for the sandbox; set OINT_SANDBOX_DATA to a file path"
                .into(),
        )
    })?;
    Ok(dir.join("oint").join("sandbox.sqlite3"))
}

/// The sandbox's data file, with this process's turn on it taken (waiting for other
/// processes to finish theirs) and its directory created.
fn take_turn() -> Result<PathBuf, Failure> {
    // Never dropped: the turn ends when the process exits, after the runtime (and with it the
    // emulator's own lock) is gone, so the next process never finds the file still in use.
    static TURN: OnceLock<File> = OnceLock::new();
    let path = data_path()?;
    if TURN.get().is_some() {
        return Ok(path);
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| Failure::Local(format!("cannot create {}: {e}", dir.display())))?;
    }
    let lock = lock_path(&path);
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock)
        .map_err(|e| Failure::Local(format!("cannot open {}: {e}", lock.display())))?;
    file.lock()
        .map_err(|e| Failure::Local(format!("cannot lock {}: {e}", lock.display())))?;
    let _ = TURN.set(file);
    Ok(path)
}

/// `FILE.sandbox-lock` beside the data file.
fn lock_path(data: &Path) -> PathBuf {
    let mut name = data.as_os_str().to_owned();
    name.push(".sandbox-lock");
    PathBuf::from(name)
}

fn config(path: &Path) -> Config {
    Config::default()
        .webhook(WEBHOOK_USER, WEBHOOK_SECRET)
        .data(path)
}

fn open_failed(path: &Path, e: bitrix24_emulator::Error) -> Failure {
    Failure::Local(format!(
        "cannot start the sandbox portal ({}): {e}",
        path.display()
    ))
}

/// A running sandbox portal. It stops when this is dropped.
pub struct Sandbox {
    _emulator: Emulator,
}

/// Starts the sandbox and a client for it. With a token, the token is accepted as an OAuth
/// access token of user 1, so that OAuth-only behaviour (tags) can be tried too.
pub async fn start(
    token: Option<&SecretString>,
    transport: &Transport,
) -> Result<(Client, Sandbox), Failure> {
    let path = take_turn()?;
    let mut config = config(&path);
    if let Some(token) = token {
        config = config.access_token(WEBHOOK_USER, token.expose_secret());
    }
    let emulator = Emulator::start(config)
        .await
        .map_err(|e| open_failed(&path, e))?;
    let builder = transport.configure_local(match token {
        Some(token) => Client::builder(emulator.url()).token(token.expose_secret()),
        None => Client::builder(emulator.webhook_url(WEBHOOK_USER, WEBHOOK_SECRET)),
    });
    let client = builder.build().map_err(|e| Failure::Local(e.to_string()))?;
    Ok((
        client,
        Sandbox {
            _emulator: emulator,
        },
    ))
}

/// Every notification stored in the sandbox, as JSON. Reads the file without serving it.
pub fn list() -> Result<Value, Failure> {
    let path = take_turn()?;
    let state = AppState::new(config(&path)).map_err(|e| open_failed(&path, e))?;
    Ok(serde_json::to_value(state.notifications()).expect("notifications are JSON"))
}

/// Deletes the sandbox's state.
pub fn reset() -> Result<PathBuf, Failure> {
    let path = take_turn()?;
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(path),
        Err(e) => Err(Failure::Local(format!(
            "cannot remove {}: {e}",
            path.display()
        ))),
    }
}

/// Serves the sandbox portal (REST API and the inbox at `/`) on `listen` until SIGINT or
/// SIGTERM. Holds the sandbox's turn meanwhile: other `--url sandbox` commands wait.
pub async fn serve(listen: std::net::SocketAddr) -> Result<(), Failure> {
    use std::io::Write as _;
    // Its webhook secret is public ("sandbox") and the inbox acts as any user: other machines
    // must not reach it.
    if !listen.ip().is_loopback() {
        return Err(Failure::Usage(format!(
            "--listen {listen}: the sandbox serves loopback addresses only (its webhook secret is public); give 127.0.0.1:PORT or [::1]:PORT"
        )));
    }
    let path = take_turn()?;
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Failure::Local(format!("cannot watch for SIGTERM: {e}")))?;
    let emulator = Emulator::bind(config(&path), listen)
        .await
        .map_err(|e| open_failed(&path, e))?;
    println!("listening on {}", emulator.url());
    let _ = std::io::stdout().flush();
    eprintln!(
        "inbox: {url}/  REST: {url}/rest/{WEBHOOK_USER}/{WEBHOOK_SECRET}/  (Ctrl-C stops)",
        url = emulator.url()
    );
    #[cfg(unix)]
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    emulator.shutdown().await;
    Ok(())
}
