//! A local Bitrix24 portal for offline tests of `im.notify.*` integrations.
//!
//! Real portals cannot be used in automated tests: they need an account, rate-limit, and keep
//! what you send. This crate serves the same REST surface on `127.0.0.1` and reproduces the
//! portal's behaviour as documented in the project's REST reference (validation order, error
//! codes and HTTP statuses, PHP parameter decoding, ATTACH normalisation, the quirks of TAG for
//! webhooks and apps), so a client that passes against it has a good chance of passing against
//! a real portal. It runs in-process ([`Emulator`], [`app`]) or as the `b24-emulator` binary.
//!
//! Besides the Bitrix24 API, a small control plane under `/_emulator/` lets tests observe and
//! reset the state.

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

mod attach;
mod auth;
mod error;
mod handlers;
mod jsobject;
mod methods;
mod php;
mod store;
mod timing;

pub use error::Error;

use store::{AccessToken, App, Seed, Store};

/// Client id of the built-in OAuth application all configured access tokens belong to.
pub const BUILTIN_CLIENT_ID: &str = "local.emulator.app";
/// Its name, used as the prefix of system notifications it sends.
pub const BUILTIN_APP_NAME: &str = "Emulator App";

/// What the emulated portal starts with.
///
/// Secrets are kept out of `Debug` output.
#[derive(Clone)]
pub struct Config {
    users: u64,
    inactive: BTreeSet<u64>,
    webhooks: Vec<(u64, String)>,
    tokens: Vec<TokenSpec>,
    token_ttl: u64,
    data: Option<PathBuf>,
}

#[derive(Clone)]
struct TokenSpec {
    user_id: u64,
    token: String,
    expired: bool,
}

impl Default for Config {
    /// Users 1..=10, no webhooks, no tokens, a one-hour token lifetime, state in memory.
    fn default() -> Self {
        Config {
            users: 10,
            inactive: BTreeSet::new(),
            webhooks: Vec::new(),
            tokens: Vec::new(),
            token_ttl: 3600,
            data: None,
        }
    }
}

impl Config {
    /// Users `1..=n` exist and are active.
    pub fn users(mut self, n: u64) -> Self {
        self.users = n;
        self
    }

    /// Mark a user inactive: notifying them gives `"result": false`.
    pub fn inactive_user(mut self, id: u64) -> Self {
        self.inactive.insert(id);
        self
    }

    /// An inbound webhook `/rest/<user_id>/<secret>/`.
    pub fn webhook(mut self, user_id: u64, secret: impl Into<String>) -> Self {
        self.webhooks.push((user_id, secret.into()));
        self
    }

    /// An access token for `user_id`, issued to the built-in OAuth app and valid for
    /// [`token_ttl`](Self::token_ttl) from start-up.
    pub fn access_token(mut self, user_id: u64, token: impl Into<String>) -> Self {
        self.tokens.push(TokenSpec {
            user_id,
            token: token.into(),
            expired: false,
        });
        self
    }

    /// An access token that has already expired (`expired_token`).
    pub fn expired_access_token(mut self, user_id: u64, token: impl Into<String>) -> Self {
        self.tokens.push(TokenSpec {
            user_id,
            token: token.into(),
            expired: true,
        });
        self
    }

    /// Lifetime of access tokens, in seconds.
    pub fn token_ttl(mut self, secs: u64) -> Self {
        self.token_ttl = secs;
        self
    }

    /// Keep notifications in this SQLite file across restarts.
    pub fn data(mut self, path: impl Into<PathBuf>) -> Self {
        self.data = Some(path.into());
        self
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let webhooks: Vec<String> = self
            .webhooks
            .iter()
            .map(|(u, _)| format!("{u}:***"))
            .collect();
        let tokens: Vec<String> = self
            .tokens
            .iter()
            .map(|t| {
                format!(
                    "{}:***{}",
                    t.user_id,
                    if t.expired { " (expired)" } else { "" }
                )
            })
            .collect();
        f.debug_struct("Config")
            .field("users", &self.users)
            .field("inactive", &self.inactive)
            .field("webhooks", &webhooks)
            .field("tokens", &tokens)
            .field("token_ttl", &self.token_ttl)
            .field("data", &self.data)
            .finish()
    }
}

/// A stored notification, as the control plane reports it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Notification {
    pub id: u64,
    /// The recipient.
    pub user_id: u64,
    /// 0 for system notifications.
    pub author_id: u64,
    /// `"USER"` or `"SYSTEM"`.
    pub r#type: String,
    pub message: String,
    /// The stored tag, `MP|<md5(client id)[0:5]>|TAG`, or `None`.
    pub tag: Option<String>,
    pub sub_tag: Option<String>,
    /// The normalised attach.
    pub attach: Option<serde_json::Value>,
    pub read: bool,
}

/// Shared state of one emulated portal. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    store: Arc<Store>,
}

impl AppState {
    /// Build the portal; opens (and creates) the data file when one is configured.
    pub fn new(config: Config) -> Result<AppState, Error> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let tokens = config
            .tokens
            .into_iter()
            .map(|t| {
                let expires_at = if t.expired {
                    now.saturating_sub(1)
                } else {
                    now.saturating_add(config.token_ttl)
                };
                let issued = AccessToken {
                    user_id: t.user_id,
                    client_id: BUILTIN_CLIENT_ID.to_owned(),
                    expires_at,
                };
                (t.token, issued)
            })
            .collect();
        let seed = Seed {
            users: config.users,
            inactive: config.inactive,
            webhooks: config.webhooks,
            tokens,
            apps: vec![(
                BUILTIN_CLIENT_ID.to_owned(),
                App {
                    name: BUILTIN_APP_NAME.to_owned(),
                },
            )],
        };
        let store = Store::open(seed, config.data.as_deref())?;
        Ok(AppState {
            store: Arc::new(store),
        })
    }

    /// Snapshot of the stored notifications, oldest first.
    pub fn notifications(&self) -> Vec<Notification> {
        self.store.notifications()
    }
}

impl fmt::Debug for AppState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

/// The whole HTTP surface (REST API and control plane), for serving or in-process use.
pub fn app(state: AppState) -> axum::Router {
    handlers::router(state)
}

/// A running emulator. Dropping it stops the server.
pub struct Emulator {
    addr: SocketAddr,
    state: AppState,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Emulator {
    /// Start on `127.0.0.1` with a free port.
    pub async fn start(config: Config) -> Result<Emulator, Error> {
        Self::bind(config, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Start on `addr` (port 0 picks a free port).
    pub async fn bind(config: Config, addr: SocketAddr) -> Result<Emulator, Error> {
        let state = AppState::new(config)?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })?;
        let addr = listener.local_addr()?;
        let (tx, rx) = oneshot::channel::<()>();
        let router = app(state.clone());
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    // A dropped sender also means "stop".
                    let _ = rx.await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "server stopped with an error");
            }
        });
        Ok(Emulator {
            addr,
            state,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT/rest/USER/SECRET/`
    pub fn webhook_url(&self, user_id: u64, secret: &str) -> String {
        format!("{}/rest/{user_id}/{secret}/", self.url())
    }

    /// Snapshot of the stored notifications, oldest first.
    pub fn notifications(&self) -> Vec<Notification> {
        self.state.notifications()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Stop and wait until open connections are finished.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl fmt::Debug for Emulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Emulator")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The length the portal compares against the 60,000-character ATTACH limit, for a stored
/// attach such as [`Notification::attach`]: `json_encode` with `JSON_UNESCAPED_UNICODE` (so
/// `/` counts as `\/`), in characters. Lets clients cross-check their own measurement.
pub fn attach_measured_len(stored: &serde_json::Value) -> usize {
    attach::measured_len(stored)
}
