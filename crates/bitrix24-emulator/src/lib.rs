//! A local Bitrix24 portal for offline tests of `im.notify.*` integrations.
//!
//! Real portals cannot be used in automated tests: they need an account, rate-limit, and keep
//! what you send. This crate serves the same REST surface on `127.0.0.1` and reproduces the
//! portal's behaviour as described in docs/portal-behaviour.md (validation order, error
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
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

mod attach;
mod auth;
mod control;
mod datafile;
pub mod decode;
mod error;
mod faults;
mod handlers;
mod inbox;
mod jsobject;
mod limits;
mod methods;
mod oauth;
mod operating;
mod php;
mod pipeline;
mod requests;
mod seed;
mod serve;
mod store;
mod switches;
mod timing;
mod tls;
mod users;
mod wire_headers;

pub use control::{ControlError, Refreshes, RequestRecord};
pub use error::Error;
pub use limits::Plan;
pub use operating::Billing;
pub use requests::AuthKind;
pub use switches::{AuthErrorStatus, ReadAllResult, UnknownChoice, WebhookTags};

use store::{AccessToken, App, Seed, Store};

/// Client id of the built-in OAuth application all configured access tokens belong to.
pub const BUILTIN_CLIENT_ID: &str = "local.emulator.app";
/// Its name, used as the prefix of system notifications it sends.
pub const BUILTIN_APP_NAME: &str = "Emulator App";
/// The built-in app's client secret, for `/oauth/token/` (override with [`Config::oauth_app`]).
pub const BUILTIN_CLIENT_SECRET: &str = "local.emulator.secret";
/// Lifetime of refresh tokens: 180 days, as on the real OAuth server.
pub const REFRESH_TOKEN_TTL: u64 = oauth::REFRESH_TOKEN_TTL;

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
    switches: switches::Switches,
    /// `(client id, secret)` of OAuth apps besides (or overriding) the built-in one.
    oauth_apps: Vec<(String, String)>,
    plan: Plan,
    rate: Option<f64>,
    burst: Option<f64>,
    operating_budget: f64,
    operating_billing: Billing,
    processing_ms: u64,
    tls: Option<PathBuf>,
    input_limits: decode::InputLimits,
    idle_timeout: Duration,
    body_timeout: Duration,
    request_time_limit: Duration,
}

/// nginx's `keepalive_timeout` default: how long a connection may sit without a complete
/// request head (idle between requests, silent, or sending headers slowly).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(75);
/// nginx's `client_body_timeout` default: the longest pause between two pieces of a body.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// The cloud's cap on one REST request (`limits.md`, "Request Execution Time Limit").
pub const DEFAULT_REQUEST_TIME_LIMIT: Duration = Duration::from_secs(60);

#[derive(Clone)]
struct TokenSpec {
    user_id: u64,
    token: String,
    expired: bool,
}

impl Default for Config {
    /// Users 1..=10, no webhooks, no tokens, a one-hour token lifetime, state in memory; the
    /// standard plan's rate limit, a 480 s operating budget billed the measured way, plain HTTP.
    fn default() -> Self {
        Config {
            users: 10,
            inactive: BTreeSet::new(),
            webhooks: Vec::new(),
            tokens: Vec::new(),
            token_ttl: 3600,
            data: None,
            switches: switches::Switches::default(),
            oauth_apps: Vec::new(),
            plan: Plan::Standard,
            rate: None,
            burst: None,
            operating_budget: operating::DEFAULT_BUDGET_SECS,
            operating_billing: Billing::Batch,
            processing_ms: 0,
            tls: None,
            input_limits: decode::InputLimits::default(),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            request_time_limit: DEFAULT_REQUEST_TIME_LIMIT,
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

    /// HTTP status of auth errors: all 401 as in the server source (default), or the statuses
    /// the docs list (403 for `INVALID_CREDENTIALS` and `insufficient_scope`).
    pub fn auth_error_status(mut self, choice: AuthErrorStatus) -> Self {
        self.switches.auth_error_status = choice;
        self
    }

    /// Result of `im.notify.read.all`: `{"result": true, "newCounter": N}` as documented
    /// (default), or plain `true` as in the older server source.
    pub fn read_all_result(mut self, choice: ReadAllResult) -> Self {
        self.switches.read_all_result = choice;
        self
    }

    /// TAG/SUB_TAG of a webhook call: dropped as in the server source (default), or, as the
    /// method docs describe, kept when the call names a `CLIENT_ID` (stored under
    /// `custom<CLIENT_ID>`, so `im.notify.delete` with the same `CLIENT_ID` finds them).
    pub fn webhook_tags(mut self, choice: WebhookTags) -> Self {
        self.switches.webhook_tags = choice;
        self
    }

    /// An OAuth application that may refresh tokens at `/oauth/token/`. The built-in
    /// [`BUILTIN_CLIENT_ID`] always exists (secret [`BUILTIN_CLIENT_SECRET`]); registering it
    /// again replaces its secret. Other apps' names (the system-notification prefix) are their
    /// client ids.
    pub fn oauth_app(mut self, client_id: impl Into<String>, secret: impl Into<String>) -> Self {
        self.oauth_apps.push((client_id.into(), secret.into()));
        self
    }

    /// The plan whose rate limit applies (default [`Plan::Standard`]: 2 requests/s, burst 50).
    pub fn plan(mut self, plan: Plan) -> Self {
        self.plan = plan;
        self
    }

    /// Override the plan's drain rate, in requests per second (> 0, may be fractional).
    pub fn rate(mut self, per_sec: f64) -> Self {
        self.rate = Some(per_sec);
        self
    }

    /// Override the plan's block threshold (>= 1): from an empty bucket exactly `floor(burst)`
    /// instant requests pass.
    pub fn burst(mut self, burst: f64) -> Self {
        self.burst = Some(burst);
        self
    }

    /// Operating-time budget per method and caller over 10 minutes, in seconds (default 480;
    /// 0 disables the limit, usage is still reported).
    pub fn operating_budget(mut self, secs: f64) -> Self {
        self.operating_budget = secs;
        self
    }

    /// Where a `batch` request's time is billed (default [`Billing::Batch`]).
    pub fn operating_billing(mut self, billing: Billing) -> Self {
        self.operating_billing = billing;
        self
    }

    /// Simulated server time per REST call: each call sleeps this long and is billed for it.
    pub fn processing_ms(mut self, ms: u64) -> Self {
        self.processing_ms = ms;
        self
    }

    /// Serve HTTPS with a certificate made at start; the CA is written to `dir/ca.pem` (the
    /// directory is created).
    pub fn tls(mut self, dir: impl Into<PathBuf>) -> Self {
        self.tls = Some(dir.into());
        self
    }

    /// PHP's `max_input_vars` (default 1000): variables kept per query string, body or
    /// `parse_str` call; later ones are dropped, as PHP drops them.
    pub fn max_input_vars(mut self, n: usize) -> Self {
        self.input_limits.max_input_vars = n;
        self
    }

    /// PHP's `max_input_nesting_level` (default 64): a name with more bracket levels removes
    /// its whole top-level variable, as PHP does.
    pub fn max_input_nesting_level(mut self, n: usize) -> Self {
        self.input_limits.max_input_nesting_level = n;
        self
    }

    /// PHP's `post_max_size` in bytes (default 8 MiB): a larger body is read and thrown away,
    /// and the call runs without its parameters, as PHP does.
    pub fn post_max_size(mut self, bytes: usize) -> Self {
        self.input_limits.post_max_size = bytes;
        self
    }

    /// How long a connection may go without a complete request head: from its opening, or
    /// from the end of the previous answer (default 75 s, nginx's `keepalive_timeout`). Idle
    /// keep-alive connections, silent ones and ones sending headers slowly are closed then.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// The longest pause between two pieces of a request body (default 60 s, nginx's
    /// `client_body_timeout`); then the answer is 408 and the connection is closed.
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout;
        self
    }

    /// How long one REST request may run, from its admission to its answer (default 60 s,
    /// the cloud's cap); a request still running then is cut off: the connection closes
    /// without an answer, and whatever the method already stored stays. Zero: no cap.
    pub fn request_time_limit(mut self, limit: Duration) -> Self {
        self.request_time_limit = limit;
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
            .field("switches", &self.switches)
            .field(
                "oauth_apps",
                &self
                    .oauth_apps
                    .iter()
                    .map(|(id, _)| format!("{id}:***"))
                    .collect::<Vec<_>>(),
            )
            .field("plan", &self.plan)
            .field("rate", &self.rate)
            .field("burst", &self.burst)
            .field("operating_budget", &self.operating_budget)
            .field("operating_billing", &self.operating_billing)
            .field("processing_ms", &self.processing_ms)
            .field("tls", &self.tls)
            .field("input_limits", &self.input_limits)
            .field("idle_timeout", &self.idle_timeout)
            .field("body_timeout", &self.body_timeout)
            .field("request_time_limit", &self.request_time_limit)
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
    /// Buttons of a confirm notification (`r#type == "CONFIRM"`), `[{TITLE, VALUE, TYPE}]`.
    /// Only the control plane can create those; REST add never does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buttons: Option<serde_json::Value>,
}

/// Shared state of one emulated portal. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    store: Arc<Store>,
    oauth: Arc<oauth::OAuthServer>,
    pipeline: Arc<pipeline::Pipeline>,
    /// Set when the server stops, so long-lived answers (the inbox's event stream) end.
    closing: Arc<tokio::sync::watch::Sender<bool>>,
}

impl AppState {
    /// Build the portal; opens (and creates) the data file when one is configured.
    pub fn new(config: Config) -> Result<AppState, Error> {
        let pipeline = Arc::new(pipeline_of(&config)?);
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
        // The built-in app first, then configured ones (a later entry replaces an earlier one).
        let mut oauth_apps = vec![(
            BUILTIN_CLIENT_ID.to_owned(),
            BUILTIN_CLIENT_SECRET.to_owned(),
        )];
        oauth_apps.extend(config.oauth_apps);
        let apps: Vec<(String, App)> = oauth_apps
            .iter()
            .map(|(id, _)| {
                let name = if id == BUILTIN_CLIENT_ID {
                    BUILTIN_APP_NAME
                } else {
                    id
                };
                (
                    id.clone(),
                    App {
                        name: name.to_owned(),
                    },
                )
            })
            .collect();
        let seed = Seed {
            users: config.users,
            inactive: config.inactive,
            webhooks: config.webhooks,
            tokens,
            apps,
        };
        let mut store = Store::open(seed, config.data.as_deref())?;
        store.switches = config.switches;
        store.input_limits = config.input_limits;
        let oauth = oauth::OAuthServer::open(
            &oauth_apps,
            config.token_ttl,
            config.data.as_deref(),
            &store,
            now,
        )?;
        Ok(AppState {
            store: Arc::new(store),
            oauth: Arc::new(oauth),
            pipeline,
            closing: Arc::new(tokio::sync::watch::Sender::new(false)),
        })
    }

    /// Snapshot of the stored notifications, oldest first.
    pub fn notifications(&self) -> Vec<Notification> {
        self.store.notifications()
    }

    /// End the inbox's event streams, so a graceful stop does not wait for open pages.
    pub fn close_streams(&self) {
        self.closing.send_replace(true);
    }
}

/// The rate limiter, operating budget and fault/request state a configuration asks for.
fn pipeline_of(config: &Config) -> Result<pipeline::Pipeline, Error> {
    let policy = limits::RatePolicy::resolve(config.plan, config.rate, config.burst);
    if let Some(why) = policy.as_ref().and_then(limits::RatePolicy::invalid) {
        return Err(Error::Config(why));
    }
    for (name, d) in [
        ("idle timeout", config.idle_timeout),
        ("body timeout", config.body_timeout),
    ] {
        if d.is_zero() {
            return Err(Error::Config(format!("{name} must be positive")));
        }
    }
    let budget = config.operating_budget;
    if !(budget.is_finite() && budget >= 0.0) {
        return Err(Error::Config(format!(
            "operating budget must be a non-negative number of seconds, got {budget}"
        )));
    }
    Ok(pipeline::Pipeline {
        rate: limits::RateLimiter::new(policy),
        operating: operating::Operating::new(
            (budget > 0.0).then_some(budget),
            config.operating_billing,
        ),
        faults: faults::Faults::default(),
        log: requests::RequestLog::default(),
        processing: std::time::Duration::from_millis(config.processing_ms),
        body_timeout: config.body_timeout,
        request_time_limit: (!config.request_time_limit.is_zero())
            .then_some(config.request_time_limit),
    })
}

impl fmt::Debug for AppState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

/// The whole HTTP surface (REST API, control plane and the inbox at `GET /`), for serving or in-process use.
pub fn app(state: AppState) -> axum::Router {
    handlers::router(state)
}

/// A running emulator. Dropping it stops the server.
pub struct Emulator {
    addr: SocketAddr,
    state: AppState,
    ca_pem: Option<String>,
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
        let tls_dir = config.tls.clone();
        let idle_timeout = config.idle_timeout;
        let state = AppState::new(config)?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })?;
        let addr = listener.local_addr()?;
        let (listener, ca_pem) = match tls_dir {
            Some(dir) => {
                let material = tls::generate(Some(addr.ip()))?;
                tls::write_ca(&dir, &material.ca_pem)?;
                let listener = serve::EmuListener::tls(listener, material.server_config)?;
                (listener, Some(material.ca_pem))
            }
            None => (serve::EmuListener::plain(listener)?, None),
        };
        let (tx, rx) = oneshot::channel::<()>();
        let router = app(state.clone());
        let closing = state.clone();
        let task = tokio::spawn(serve::run(listener, router, idle_timeout, async move {
            // A dropped sender also means "stop".
            let _ = rx.await;
            closing.close_streams();
        }));
        Ok(Emulator {
            addr,
            state,
            ca_pem,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, or `https://…` when serving TLS.
    pub fn url(&self) -> String {
        let scheme = if self.ca_pem.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// The PEM of the CA that signed the server certificate, when serving TLS (the same text
    /// as `DIR/ca.pem`).
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
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
