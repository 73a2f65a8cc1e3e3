//! The sandbox: a local portal embedded in `oint`, so the first command works with no account.
//!
//! `--url sandbox` starts the emulator in-process on a loopback port chosen by the OS, sends
//! the request to it over HTTP like to any portal, and stops it. Its state lives in a SQLite
//! file under the user's data directory (or `OINT_SANDBOX_DATA`), so notifications sent by one
//! command can be listed by the next.

use std::path::PathBuf;

use bitrix24::Client;
use bitrix24_emulator::{Config, Emulator, Notification};
use secrecy::{ExposeSecret, SecretString};

use crate::settings::Transport;

/// The sandbox webhook belongs to user 1; its secret is not secret.
pub const WEBHOOK_USER: u64 = 1;
const WEBHOOK_SECRET: &str = "sandbox";

/// Where the sandbox keeps its state.
pub fn data_path() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("OINT_SANDBOX_DATA").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let dir = dirs::data_dir().ok_or(
        "cannot find a data directory for the sandbox; set OINT_SANDBOX_DATA to a file path",
    )?;
    Ok(dir.join("oint").join("sandbox.sqlite3"))
}

/// A running sandbox portal and a client for it. The portal stops when this is dropped.
pub struct Sandbox {
    pub emulator: Emulator,
    pub client: Client,
}

/// Starts the sandbox. With a token, the token is accepted as an OAuth access token of user 1,
/// so that OAuth-only behaviour (tags) can be tried too.
pub async fn start(token: Option<&SecretString>, transport: &Transport) -> Result<Sandbox, String> {
    let path = data_path()?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let mut config = Config::default()
        .webhook(WEBHOOK_USER, WEBHOOK_SECRET)
        .data(&path);
    if let Some(token) = token {
        config = config.access_token(WEBHOOK_USER, token.expose_secret());
    }
    let emulator = Emulator::start(config)
        .await
        .map_err(|e| format!("cannot start the sandbox portal ({}): {e}", path.display()))?;
    let builder = transport.configure_local(match token {
        Some(token) => Client::builder(emulator.url()).token(token.expose_secret()),
        None => Client::builder(emulator.webhook_url(WEBHOOK_USER, WEBHOOK_SECRET)),
    });
    let client = builder.build().map_err(|e| e.to_string())?;
    Ok(Sandbox { emulator, client })
}

/// Every notification stored in the sandbox.
pub async fn notifications() -> Result<Vec<Notification>, String> {
    let transport = Transport::from_flags(&Default::default())?;
    Ok(start(None, &transport).await?.emulator.notifications())
}

/// Deletes the sandbox's state.
pub fn reset() -> Result<PathBuf, String> {
    let path = data_path()?;
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(path),
        Err(e) => Err(format!("cannot remove {}: {e}", path.display())),
    }
}
