//! OAuth applications: access tokens that expire within the hour, refresh tokens that work once.
//!
//! Refresh is where every other Bitrix24 client breaks: concurrent callers each refresh and all
//! but one get `invalid_grant`; a failed refresh leaves waiters hanging; a rotated refresh token
//! is not saved and the next run is locked out; tokens end up in logs. So here:
//!
//! - **Single-flight in a process.** One `tokio::sync::Mutex` serialises refreshes. A caller
//!   notes the token generation it used; after getting the lock, if another caller finished an
//!   attempt in between, it takes that outcome (the new token, or the same error) instead of
//!   refreshing again. Nobody waits on anything that is not running, so a failure cannot hang.
//! - **Across processes.** The [`TokenStore`] lock (for [`FileTokenStore`] an exclusive
//!   [`File::lock`](std::fs::File::lock) on a side file: `flock` on unix, `LockFileEx` on
//!   Windows) is held from re-reading the store to saving the new pair, so two
//!   processes never spend the same refresh token: the second one finds the first's tokens.
//! - **Persisted atomically.** [`FileTokenStore`] writes a temporary file in the same directory,
//!   fsyncs it and renames it over the old one, mode 0600; readers never see half a file.
//!   It is never read or written through a symlink (`O_NOFOLLOW`, on Windows
//!   `FILE_FLAG_OPEN_REPARSE_POINT`, and the rename replaces a link rather than following it),
//!   is refused when group or others may read or write it (unix mode bits; Windows relies on
//!   the directory's ACL), or when it is not a regular file, and is read up to 1 MiB.
//! - **Saved first.** A refresh spends the old refresh token, so the new pair goes to the
//!   store and the `on_renewed` hook before anything else can fail. Expiry times are clamped
//!   to [`MAX_TOKEN_LIFETIME`] ahead, whatever the server or the store claims.
//! - **Bounded.** A request refreshes at most once ahead of expiry and once on `expired_token`,
//!   then resends once. A refused refresh is an [`Error::Api`] with the OAuth server's code
//!   (`invalid_grant`, `invalid_client`), which [`Error::needs_reauthorization`] recognises.
//!
//! Tokens, the client secret and the OAuth server's answers are never logged or shown in
//! `Debug`; logs say that a refresh happened, for which process, and who waited for it.

use std::any::Any;
use std::fmt;
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::client::{error_chain, read_capped};
use crate::error::{ApiError, Error, ErrorCode};
use crate::file;
use crate::portal::{HttpPolicy, MASK};

/// Bitrix24's OAuth server.
pub const DEFAULT_TOKEN_URL: &str = "https://oauth.bitrix.info/oauth/token/";

/// Refresh when the access token has less than this left.
pub const DEFAULT_REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// The longest an access token is believed to live, whatever the OAuth server or the token
/// store says. Bitrix24's live 3600 s; a claim beyond a day is a broken or hostile answer.
/// Believing less than claimed only brings a refresh forward; believing more could not be
/// represented (`SystemTime` overflows) and would keep a dead token for ever.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(86_400);

/// A token store is a few hundred bytes; anything past this is not one, and reading stops.
pub(crate) const MAX_STORE_BYTES: u64 = 1 << 20;

/// An OAuth server's answer is under a kilobyte; reading stops past this.
const MAX_OAUTH_ANSWER_BYTES: usize = 64 << 10;

/// An access token, the refresh token that renews it, and when the access token expires.
#[derive(Clone)]
pub struct Tokens {
    access_token: SecretString,
    refresh_token: SecretString,
    expires_at: Option<SystemTime>,
}

impl Tokens {
    /// A token pair. `expires_at` is when the access token stops working, if known; an empty
    /// access token means "none yet" and is refreshed before first use.
    pub fn new(
        access_token: impl Into<String>,
        refresh_token: impl Into<String>,
        expires_at: Option<SystemTime>,
    ) -> Tokens {
        Tokens {
            access_token: access_token.into().into(),
            refresh_token: refresh_token.into().into(),
            expires_at,
        }
    }

    /// The access token.
    pub fn access_token(&self) -> &SecretString {
        &self.access_token
    }

    /// The refresh token. It works once: the refresh that spends it returns its successor.
    pub fn refresh_token(&self) -> &SecretString {
        &self.refresh_token
    }

    /// When the access token expires, if known.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
    }

    fn has_access(&self) -> bool {
        !self.access_token.expose_secret().is_empty()
    }

    /// True when the access token is missing or has less than `margin` left.
    fn expires_within(&self, margin: Duration) -> bool {
        // A margin too large to add to the clock means "always refresh".
        !self.has_access()
            || self.expires_at.is_some_and(|at| {
                SystemTime::now()
                    .checked_add(margin)
                    .is_none_or(|limit| at <= limit)
            })
    }

    /// Good to use instead of refreshing: present, not expiring, and not the one the portal
    /// just refused.
    fn usable(&self, margin: Duration, refused: Option<&str>) -> bool {
        !self.expires_within(margin) && refused != Some(self.access_token.expose_secret())
    }
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("access_token", &MASK)
            .field("refresh_token", &MASK)
            .field("expires_at", &self.expires_at.map(unix))
            .finish()
    }
}

/// Held while a process renews tokens; dropping it releases the lock.
pub struct StoreLock(#[allow(dead_code)] Option<Box<dyn Any + Send>>);

impl StoreLock {
    /// A lock that holds `guard` (e.g. a locked file) until dropped.
    pub fn new(guard: impl Any + Send) -> StoreLock {
        StoreLock(Some(Box::new(guard)))
    }

    /// No lock, for stores that only one process uses.
    pub fn none() -> StoreLock {
        StoreLock(None)
    }
}

impl fmt::Debug for StoreLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "StoreLock(held)"
        } else {
            "StoreLock(none)"
        })
    }
}

/// Where tokens are kept between runs, shared by every process that uses the same app and
/// portal. The client calls these from a blocking thread, so they may block.
pub trait TokenStore: Send + Sync {
    /// The stored tokens, or `None` if nothing is stored yet.
    fn load(&self) -> io::Result<Option<Tokens>>;

    /// Replaces the stored tokens. Must be atomic: a reader sees the old pair or the new one.
    fn save(&self, tokens: &Tokens) -> io::Result<()>;

    /// An exclusive lock across processes, held from re-reading the store to saving new
    /// tokens. The default is no lock, which is only safe for one process.
    fn lock(&self) -> io::Result<StoreLock> {
        Ok(StoreLock::none())
    }

    /// How the store is named in errors and logs (a path, never a secret).
    fn describe(&self) -> String {
        "the token store".into()
    }
}

/// A JSON file holding the tokens (mode 0600), replaced atomically, with a `.lock` file beside
/// it for the cross-process lock. The lock is separate because a rename replaces the data
/// file's inode, and a lock on a replaced inode protects nothing.
#[derive(Debug, Clone)]
pub struct FileTokenStore {
    path: PathBuf,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StoredTokens {
    access_token: String,
    refresh_token: String,
    /// Unix time the access token expires. Read as any JSON value, so that a damaged or
    /// hand-edited time (negative, fractional, a string, 1e300) costs only the expiry (the
    /// portal's `expired_token` then drives the refresh), never the refresh token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires: Option<Value>,
}

impl FileTokenStore {
    /// A store at `path` (created on first save, with its directory, mode 0700).
    pub fn new(path: impl Into<PathBuf>) -> FileTokenStore {
        FileTokenStore { path: path.into() }
    }

    /// The token file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The lock file beside it.
    pub fn lock_path(&self) -> PathBuf {
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(".lock");
        self.path.with_file_name(name)
    }

    fn dir(&self) -> &Path {
        match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        }
    }

    fn ensure_dir(&self) -> io::Result<()> {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(self.dir())
    }
}

impl TokenStore for FileTokenStore {
    fn load(&self) -> io::Result<Option<Tokens>> {
        let Some(text) = read_store(&self.path)? else {
            return Ok(None);
        };
        tokens_from_json(&text).map(Some)
    }

    fn save(&self, tokens: &Tokens) -> io::Result<()> {
        self.ensure_dir()?;
        let json = tokens_to_json(tokens)?;
        // tempfile creates the file 0600 with a random name in the same directory, so the
        // rename stays on one filesystem and is atomic.
        let mut file = tempfile::NamedTempFile::new_in(self.dir())?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        file.write_all(&json)?;
        file.write_all(b"\n")?;
        file.as_file().sync_all()?;
        file.persist(&self.path).map_err(|e| e.error)?;
        // Make the rename itself durable.
        #[cfg(unix)]
        std::fs::File::open(self.dir())?.sync_all()?;
        Ok(())
    }

    fn lock(&self) -> io::Result<StoreLock> {
        self.ensure_dir()?;
        let mut options = std::fs::OpenOptions::new();
        options.create(true).truncate(false).write(true);
        // Never through a symlink, and never blocking on a FIFO planted in its place.
        file::owner_only(file::no_follow(&mut options));
        let lock_path = self.lock_path();
        let file = options
            .open(&lock_path)
            .map_err(|e| not_followed(&lock_path, e))?;
        check_regular(&file, &lock_path)?;
        // flock on unix, LockFileEx on Windows; released when the file is closed, i.e. when
        // the StoreLock is dropped.
        file.lock()?;
        Ok(StoreLock::new(file))
    }

    fn describe(&self) -> String {
        format!("token store {}", self.path.display())
    }
}

/// A stored pair from its JSON (a token file's, or a shared store's value).
pub(crate) fn tokens_from_json(text: &str) -> io::Result<Tokens> {
    // The parser's message could quote the tokens; say only where it broke.
    let stored: StoredTokens = serde_json::from_str(text).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "not a token file (line {}, column {}); delete it to start again from the configured refresh token",
                e.line(),
                e.column()
            ),
        )
    })?;
    let expires_at = stored.expires.as_ref().and_then(seconds).map(at_unix);
    Ok(Tokens::new(
        stored.access_token,
        stored.refresh_token,
        expires_at,
    ))
}

/// The JSON a pair is stored as.
pub(crate) fn tokens_to_json(tokens: &Tokens) -> io::Result<Vec<u8>> {
    let stored = StoredTokens {
        access_token: tokens.access_token.expose_secret().to_string(),
        refresh_token: tokens.refresh_token.expose_secret().to_string(),
        expires: tokens.expires_at.map(|t| Value::from(unix(t))),
    };
    serde_json::to_vec_pretty(&stored).map_err(io::Error::other)
}

/// Called with the new tokens after every refresh this client makes.
pub type RenewedHook = Arc<dyn Fn(&Tokens) + Send + Sync>;

/// An OAuth application's credentials and how to keep its tokens.
///
/// ```no_run
/// # async fn run() -> Result<(), bitrix24::Error> {
/// use bitrix24::{Client, OAuthConfig};
///
/// let oauth = OAuthConfig::new("app.5f1c2a.12345678", "CLIENT_SECRET")
///     .refresh_token("REFRESH_TOKEN")
///     .file_store("/var/lib/myapp/bitrix24-tokens.json")
///     .on_renewed(|_tokens| tracing::info!("tokens renewed"));
/// let client = Client::builder("portal.bitrix24.com").oauth(oauth).build()?;
/// client.notify().personal(10, "Backup finished").send().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct OAuthConfig {
    client_id: String,
    client_secret: SecretString,
    access_token: Option<(SecretString, Option<SystemTime>)>,
    refresh_token: Option<SecretString>,
    token_url: String,
    refresh_margin: Duration,
    store: Option<Arc<dyn TokenStore>>,
    on_renewed: Option<RenewedHook>,
}

impl OAuthConfig {
    /// The application's client id and secret. Give a refresh token, a store, or both.
    pub fn new(client_id: impl Into<String>, client_secret: impl Into<String>) -> OAuthConfig {
        OAuthConfig {
            client_id: client_id.into(),
            client_secret: client_secret.into().into(),
            access_token: None,
            refresh_token: None,
            token_url: DEFAULT_TOKEN_URL.into(),
            refresh_margin: DEFAULT_REFRESH_MARGIN,
            store: None,
            on_renewed: None,
        }
    }

    /// The refresh token to start from. A store's tokens, when it has some, are newer and win;
    /// this one is still tried if the OAuth server refuses the stored one (e.g. after the app
    /// was authorized again).
    pub fn refresh_token(mut self, token: impl Into<String>) -> OAuthConfig {
        self.refresh_token = Some(token.into().into());
        self
    }

    /// An access token to start from, with its expiry if known.
    pub fn access_token(
        mut self,
        token: impl Into<String>,
        expires_at: Option<SystemTime>,
    ) -> OAuthConfig {
        self.access_token = Some((token.into().into(), expires_at));
        self
    }

    /// Both tokens at once.
    pub fn tokens(self, tokens: Tokens) -> OAuthConfig {
        let Tokens {
            access_token,
            refresh_token,
            expires_at,
        } = tokens;
        let mut config = self;
        config.refresh_token = Some(refresh_token);
        if !access_token.expose_secret().is_empty() {
            config.access_token = Some((access_token, expires_at));
        }
        config
    }

    /// The token endpoint; [`DEFAULT_TOKEN_URL`] by default. Plain `http://` is accepted only
    /// for loopback hosts (a local emulator), like portal URLs.
    pub fn token_url(mut self, url: impl Into<String>) -> OAuthConfig {
        self.token_url = url.into();
        self
    }

    /// Refresh ahead when the access token has less than this left; [`DEFAULT_REFRESH_MARGIN`].
    pub fn refresh_margin(mut self, margin: Duration) -> OAuthConfig {
        self.refresh_margin = margin;
        self
    }

    /// Keeps tokens in `store`, shared with other processes through its lock.
    pub fn store(mut self, store: impl TokenStore + 'static) -> OAuthConfig {
        self.store = Some(Arc::new(store));
        self
    }

    /// Keeps tokens in a [`FileTokenStore`] at `path`.
    pub fn file_store(self, path: impl Into<PathBuf>) -> OAuthConfig {
        self.store(FileTokenStore::new(path))
    }

    /// Calls `hook` with the new tokens after each refresh this client makes (after they are
    /// saved to the store, if there is one). Keep it quick: refreshes wait for it.
    pub fn on_renewed(mut self, hook: impl Fn(&Tokens) + Send + Sync + 'static) -> OAuthConfig {
        self.on_renewed = Some(Arc::new(hook));
        self
    }
}

impl fmt::Debug for OAuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthConfig")
            .field("client_id", &self.client_id)
            .field("client_secret", &MASK)
            .field("access_token", &self.access_token.as_ref().map(|_| MASK))
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| MASK))
            .field("token_url", &self.token_url)
            .field("refresh_margin", &self.refresh_margin)
            .field("store", &self.store.as_ref().map(|s| s.describe()))
            .finish()
    }
}

/// The token a request is sent with, and the generation it belongs to (so that a caller whose
/// token was refused can tell whether someone already replaced it).
#[derive(Clone)]
pub(crate) struct AuthToken {
    token: SecretString,
    generation: u64,
}

impl AuthToken {
    /// A token that never changes (`ClientBuilder::token`).
    pub(crate) fn fixed(token: &str) -> AuthToken {
        AuthToken {
            token: token.to_string().into(),
            generation: 0,
        }
    }

    pub(crate) fn expose(&self) -> &str {
        self.token.expose_secret()
    }

    /// `text` with this token masked.
    pub(crate) fn redact(&self, text: &str) -> String {
        let token = self.token.expose_secret();
        if token.is_empty() {
            text.to_string()
        } else {
            text.replace(token, MASK)
        }
    }
}

/// True for the portal's "refresh and resend" answer.
pub(crate) fn is_expired(error: &Error) -> bool {
    error
        .api()
        .is_some_and(|e| e.code == ErrorCode::ExpiredToken)
}

/// A client's OAuth state.
pub(crate) struct OAuth {
    client_id: String,
    client_secret: SecretString,
    token_url: String,
    margin: Duration,
    seed_refresh: Option<SecretString>,
    store: Option<Arc<dyn TokenStore>>,
    on_renewed: Option<RenewedHook>,
    state: StdMutex<State>,
    /// Held for the whole of a refresh: the single flight.
    refresh: tokio::sync::Mutex<()>,
}

struct State {
    tokens: Option<Tokens>,
    /// The store has been read at least once.
    loaded: bool,
    /// Bumped after every refresh attempt, successful or not.
    generation: u64,
    /// The error of the latest attempt, handed to callers that waited for it.
    last_error: Option<Error>,
    /// Refresh tokens the OAuth server refused: sending them again can only fail again.
    refused_refresh: Vec<(SecretString, Error)>,
    /// The OAuth server refused the client id or secret, which cannot change in this client.
    refused_client: Option<Error>,
}

impl OAuth {
    pub(crate) fn new(config: OAuthConfig, policy: HttpPolicy) -> Result<OAuth, Error> {
        let token_url = check_token_url(&config.token_url, policy)?;
        if config.client_id.trim().is_empty() {
            return Err(Error::invalid("client_id", "is empty"));
        }
        if config.client_secret.expose_secret().trim().is_empty() {
            return Err(Error::invalid("client_secret", "is empty"));
        }
        let seed_refresh = config
            .refresh_token
            .filter(|t| !t.expose_secret().trim().is_empty());
        if seed_refresh.is_none() && config.store.is_none() {
            return Err(Error::invalid(
                "refresh_token",
                "is required: give a refresh token, or a token store that holds one",
            ));
        }
        let tokens = seed_refresh.as_ref().map(|refresh| {
            let (access, expires_at) = config
                .access_token
                .clone()
                .unwrap_or_else(|| (SecretString::from(String::new()), None));
            Tokens {
                access_token: access,
                refresh_token: refresh.clone(),
                expires_at,
            }
        });
        Ok(OAuth {
            client_id: config.client_id,
            client_secret: config.client_secret,
            token_url,
            margin: config.refresh_margin,
            seed_refresh,
            store: config.store,
            on_renewed: config.on_renewed,
            state: StdMutex::new(State {
                tokens,
                loaded: false,
                generation: 0,
                last_error: None,
                refused_refresh: Vec::new(),
                refused_client: None,
            }),
            refresh: tokio::sync::Mutex::new(()),
        })
    }

    /// The application's client id (not a secret).
    pub(crate) fn client_id(&self) -> &str {
        &self.client_id
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere cannot leave State half-written (every update is one assignment).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The access token for the next request: the current one, or a new one when it is
    /// missing or expires within the margin.
    pub(crate) async fn access_token(&self, http: &reqwest::Client) -> Result<AuthToken, Error> {
        let seen = {
            let state = self.state();
            if (state.loaded || self.store.is_none())
                && let Some(tokens) = &state.tokens
                && tokens.usable(self.margin, None)
            {
                return Ok(AuthToken {
                    token: tokens.access_token.clone(),
                    generation: state.generation,
                });
            }
            state.generation
        };
        self.renew(
            http,
            seen,
            None,
            "the access token is missing or expires soon",
        )
        .await
    }

    /// A new access token after the portal refused `refused` as expired.
    pub(crate) async fn after_expired(
        &self,
        http: &reqwest::Client,
        refused: &AuthToken,
    ) -> Result<AuthToken, Error> {
        self.renew(
            http,
            refused.generation,
            Some(refused),
            "the portal answered expired_token",
        )
        .await
    }

    async fn renew(
        &self,
        http: &reqwest::Client,
        seen: u64,
        refused: Option<&AuthToken>,
        why: &'static str,
    ) -> Result<AuthToken, Error> {
        let started = Instant::now();
        let _flight = self.refresh.lock().await;
        {
            let state = self.state();
            if state.generation != seen {
                // Another caller finished an attempt while we waited: share its outcome.
                if let Some(error) = &state.last_error {
                    return Err(error.clone());
                }
                if let Some(tokens) = &state.tokens
                    && tokens.has_access()
                {
                    tracing::debug!(
                        target: "bitrix24::oauth",
                        waited_ms = started.elapsed().as_millis() as u64,
                        "using the access token another caller just obtained"
                    );
                    return Ok(AuthToken {
                        token: tokens.access_token.clone(),
                        generation: state.generation,
                    });
                }
            }
        }
        let refused = refused.map(|t| t.token.clone());
        let outcome = self
            .renew_locked(http, refused.as_ref().map(|t| t.expose_secret()), why)
            .await;
        let mut state = self.state();
        state.generation += 1;
        state.loaded = state.loaded || self.store.is_none() || outcome.is_ok();
        match outcome {
            Ok(tokens) => {
                let token = AuthToken {
                    token: tokens.access_token.clone(),
                    generation: state.generation,
                };
                state.tokens = Some(tokens);
                state.last_error = None;
                Ok(token)
            }
            Err(error) => {
                state.last_error = Some(error.clone());
                Err(error)
            }
        }
    }

    /// Under the in-process lock: adopt stored tokens if they are good, else take the store's
    /// lock, look again, and refresh.
    async fn renew_locked(
        &self,
        http: &reqwest::Client,
        refused: Option<&str>,
        why: &'static str,
    ) -> Result<Tokens, Error> {
        let current = self.state().tokens.clone();
        let Some(store) = self.store.clone() else {
            if let Some(tokens) = current.as_ref().filter(|t| t.usable(self.margin, refused)) {
                return Ok(tokens.clone());
            }
            let refresh = current
                .map(|t| t.refresh_token)
                .or_else(|| self.seed_refresh.clone());
            let tokens = self.refresh_with(http, refresh, why).await?;
            // Without a store the hook is the only place the new pair is kept.
            if let Some(hook) = &self.on_renewed {
                hook(&tokens);
            }
            return Ok(tokens);
        };

        // Cheap path first: another process may have refreshed already.
        if let Some(stored) = self.load(&store).await? {
            if stored.usable(self.margin, refused) {
                tracing::debug!(target: "bitrix24::oauth", store = %store.describe(), "using the stored access token");
                return Ok(stored);
            }
        } else if let Some(tokens) = current.as_ref().filter(|t| t.usable(self.margin, refused)) {
            return Ok(tokens.clone());
        }

        let waited = Instant::now();
        let lock_store = store.clone();
        let _lock = tokio::task::spawn_blocking(move || lock_store.lock())
            .await
            .map_err(|e| store_error(&*store, io::Error::other(e)))?
            .map_err(|e| store_error(&*store, e))?;
        tracing::debug!(
            target: "bitrix24::oauth",
            store = %store.describe(),
            pid = std::process::id(),
            waited_ms = waited.elapsed().as_millis() as u64,
            "holding the token store lock"
        );
        let stored = self.load(&store).await?;
        if let Some(stored) = &stored
            && stored.usable(self.margin, refused)
        {
            tracing::debug!(
                target: "bitrix24::oauth",
                store = %store.describe(),
                pid = std::process::id(),
                "another process refreshed the tokens; using them"
            );
            return Ok(stored.clone());
        }
        // The store's refresh token is the newest; a configured one is the fallback (it may
        // come from a new authorization while the store holds a revoked one).
        let first = stored
            .map(|t| t.refresh_token)
            .or_else(|| current.map(|t| t.refresh_token))
            .or_else(|| self.seed_refresh.clone());
        let tokens = match self.refresh_with(http, first.clone(), why).await {
            Err(e) if is_invalid_grant(&e) => match &self.seed_refresh {
                Some(seed)
                    if first
                        .as_ref()
                        .is_some_and(|f| f.expose_secret() != seed.expose_secret()) =>
                {
                    tracing::debug!(target: "bitrix24::oauth", "the stored refresh token was refused; trying the configured one");
                    self.refresh_with(http, Some(seed.clone()), why).await?
                }
                _ => return Err(e),
            },
            other => other?,
        };
        // The old refresh token is spent now: keep the new pair before anything else can fail.
        let save_store = store.clone();
        let to_save = tokens.clone();
        let saved = tokio::task::spawn_blocking(move || save_store.save(&to_save))
            .await
            .map_err(io::Error::other)
            .and_then(|saved| saved);
        // Even when the store failed: this process keeps using the pair, and the hook may
        // keep it somewhere else.
        {
            let mut state = self.state();
            state.tokens = Some(tokens.clone());
            // The store now holds a spent pair; reading it again would only lose this one.
            state.loaded = true;
        }
        if let Some(hook) = &self.on_renewed {
            hook(&tokens);
        }
        saved.map_err(|e| {
            store_error(
                &*store,
                io::Error::new(
                    e.kind(),
                    format!("the tokens were refreshed but could not be saved ({e}), so the stored refresh token is now spent; authorize the application again"),
                ),
            )
        })?;
        Ok(tokens)
    }

    async fn load(&self, store: &Arc<dyn TokenStore>) -> Result<Option<Tokens>, Error> {
        let loader = store.clone();
        tokio::task::spawn_blocking(move || loader.load())
            .await
            .map_err(|e| store_error(&**store, io::Error::other(e)))?
            .map_err(|e| store_error(&**store, e))
    }

    /// One request to the token endpoint. Its answer holds tokens, so it is never logged.
    async fn refresh_with(
        &self,
        http: &reqwest::Client,
        refresh: Option<SecretString>,
        why: &'static str,
    ) -> Result<Tokens, Error> {
        let refresh = refresh.ok_or_else(|| {
            Error::invalid(
                "refresh_token",
                "is required: the token store is empty and no refresh token was given",
            )
        })?;
        {
            let state = self.state();
            let known = state.refused_client.as_ref().or_else(|| {
                state
                    .refused_refresh
                    .iter()
                    .find(|(t, _)| t.expose_secret() == refresh.expose_secret())
                    .map(|(_, e)| e)
            });
            if let Some(error) = known {
                return Err(error.clone());
            }
        }
        let outcome = self.request_refresh(http, &refresh, why).await;
        if let Err(error) = &outcome {
            let mut state = self.state();
            match error.api().map(|e| &e.code) {
                Some(ErrorCode::InvalidClient) => state.refused_client = Some(error.clone()),
                Some(ErrorCode::InvalidGrant) => {
                    state.refused_refresh.push((refresh.clone(), error.clone()))
                }
                _ => {}
            }
        }
        outcome
    }

    async fn request_refresh(
        &self,
        http: &reqwest::Client,
        refresh: &SecretString,
        why: &'static str,
    ) -> Result<Tokens, Error> {
        tracing::info!(
            target: "bitrix24::oauth",
            url = %self.token_url,
            client_id = %self.client_id,
            pid = std::process::id(),
            reason = why,
            "refreshing the OAuth access token"
        );
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "refresh_token")
            .append_pair("client_id", &self.client_id)
            .append_pair("client_secret", self.client_secret.expose_secret())
            .append_pair("refresh_token", refresh.expose_secret())
            .finish();
        let secrets = [self.client_secret.expose_secret(), refresh.expose_secret()];
        let scrub = |text: &str| {
            let mut out = text.to_string();
            for s in secrets {
                out = out.replace(s, MASK);
            }
            out
        };
        let transport = |e: reqwest::Error| Error::Transport {
            url: self.token_url.clone(),
            message: scrub(&error_chain(&e)),
            timeout: e.is_timeout(),
            connect: e.is_connect(),
        };
        let response = http
            .post(&self.token_url)
            .header(reqwest::header::ACCEPT, "application/json")
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status().as_u16();
        let Some(body) = read_capped(response, MAX_OAUTH_ANSWER_BYTES)
            .await
            .map_err(transport)?
        else {
            return Err(Error::Decode {
                status,
                reason: format!(
                    "an answer from the OAuth server {} larger than {} KiB; stopped reading",
                    self.token_url,
                    MAX_OAUTH_ANSWER_BYTES >> 10
                ),
                body: String::new(),
            });
        };
        let json: Value = serde_json::from_slice(&body).map_err(|_| Error::Decode {
            status,
            reason: format!(
                "an answer from the OAuth server {} that is not JSON",
                self.token_url
            ),
            body: String::new(),
        })?;
        if let Some(code) = json.get("error") {
            let code = match code {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let server = json
                .get("error_description")
                .and_then(Value::as_str)
                .map(&scrub)
                .unwrap_or_default();
            let advice = match code.as_str() {
                "invalid_grant" => {
                    "the refresh token is used, expired or revoked: authorize the application again to get a new one"
                }
                "invalid_client" => "check the application's client id and client secret",
                _ => "the access token was not refreshed",
            };
            let description = if server.is_empty() {
                format!("the access token could not be refreshed; {advice}")
            } else {
                format!("{server}; {advice}")
            };
            tracing::warn!(target: "bitrix24::oauth", code = %code, status, pid = std::process::id(), "the OAuth server refused the refresh");
            return Err(ApiError {
                code: code.as_str().into(),
                description,
                status,
                body: json!({"error": code, "error_description": server}),
            }
            .into());
        }
        let access = json.get("access_token").and_then(Value::as_str);
        let next = json.get("refresh_token").and_then(Value::as_str);
        let (Some(access), Some(next)) = (access, next) else {
            return Err(Error::Decode {
                status,
                reason: format!(
                    "an answer from the OAuth server {} without access_token and refresh_token",
                    self.token_url
                ),
                body: String::new(),
            });
        };
        // Our own clock plus the lifetime, so a skewed clock cannot make the token look fresh;
        // both clamped to MAX_TOKEN_LIFETIME, and unreadable values mean "unknown".
        let lifetime = json.get("expires_in").and_then(seconds);
        let expires_at = match (lifetime, json.get("expires").and_then(seconds)) {
            (Some(life), _) => SystemTime::now().checked_add(life.min(MAX_TOKEN_LIFETIME)),
            (None, Some(at)) => Some(at_unix(at)),
            (None, None) => None,
        };
        tracing::info!(
            target: "bitrix24::oauth",
            pid = std::process::id(),
            expires_in = lifetime.map(|d| d.as_secs()),
            "refreshed the OAuth access token"
        );
        Ok(Tokens::new(access, next, expires_at))
    }
}

fn is_invalid_grant(error: &Error) -> bool {
    error
        .api()
        .is_some_and(|e| e.code == ErrorCode::InvalidGrant)
}

fn store_error(store: &dyn TokenStore, error: io::Error) -> Error {
    Error::TokenStore {
        message: format!("{}: {error}", store.describe()),
    }
}

/// Checks the token endpoint: https, or http on loopback (or anywhere if `policy` allows).
fn check_token_url(url: &str, policy: HttpPolicy) -> Result<String, Error> {
    let invalid = |m: String| Error::invalid("token_url", m);
    let parsed =
        url::Url::parse(url.trim()).map_err(|e| invalid(format!("{url:?} is not a URL ({e})")))?;
    let host = parsed
        .host_str()
        .ok_or_else(|| invalid(format!("{url:?} has no host")))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    match parsed.scheme() {
        "https" => {}
        "http" if policy == HttpPolicy::AllowInsecure => {}
        "http"
            if host.eq_ignore_ascii_case("localhost")
                || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()) => {}
        "http" => {
            return Err(invalid(format!(
                "plain http:// is refused for {host} because it would send the client secret in clear text; use https://"
            )));
        }
        other => return Err(invalid(format!("scheme {other}: is not http(s)"))),
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid("must not carry a user name or password".into()));
    }
    Ok(parsed.to_string())
}

/// Seconds as an OAuth server or a token store may write them: an integer, a float or a
/// numeric string. Negative, non-finite or unreadable values are `None`: unknown.
fn seconds(value: &Value) -> Option<Duration> {
    let secs = match value {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    Some(Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX))
}

/// The instant `since_epoch` after the Unix epoch, at most [`MAX_TOKEN_LIFETIME`] from now.
fn at_unix(since_epoch: Duration) -> SystemTime {
    let now = SystemTime::now();
    let latest = now.checked_add(MAX_TOKEN_LIFETIME).unwrap_or(now);
    UNIX_EPOCH
        .checked_add(since_epoch)
        .map_or(latest, |at| at.min(latest))
}

/// Reads the token store: never through a symlink, never blocking on a FIFO or device (they
/// are refused before any read), at most [`MAX_STORE_BYTES`], and only when neither group nor
/// others can read or write it. `None` when there is no file yet.
fn read_store(path: &Path) -> io::Result<Option<String>> {
    use std::io::Read;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    file::no_follow(&mut options);
    let file = match options.open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(not_followed(path, e)),
    };
    let meta = check_regular(&file, path)?;
    // Windows has ACLs, not mode bits: the file inherits its directory's.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "holds live tokens but group or others may read or write it (mode {mode:03o}); run chmod 600 {}",
                    path.display()
                ),
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    let mut bytes = Vec::new();
    (&file).take(MAX_STORE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_STORE_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "is larger than {} MiB, so it is not a token file; delete it to start again from the configured refresh token",
                MAX_STORE_BYTES >> 20
            ),
        ));
    }
    String::from_utf8(bytes).map(Some).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "not a token file (not UTF-8); delete it to start again from the configured refresh token",
        )
    })
}

/// An `open` error, saying so when the path is a symlink (`O_NOFOLLOW` answers `ELOOP`).
fn not_followed(path: &Path, error: io::Error) -> io::Error {
    if file::is_link_error(&error) {
        return symlink_refused(path);
    }
    error
}

fn symlink_refused(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{} is a symbolic link; token files are never read or written through one: point the setting at the file itself",
            path.display()
        ),
    )
}

/// The opened file's metadata when it is a regular file. Windows opens a symlink itself
/// (`FILE_FLAG_OPEN_REPARSE_POINT`), so it is refused here rather than by the open.
fn check_regular(file: &std::fs::File, path: &Path) -> io::Result<std::fs::Metadata> {
    let meta = file.metadata()?;
    if meta.file_type().is_symlink() {
        return Err(symlink_refused(path));
    }
    if !meta.is_file() {
        return Err(not_regular(path));
    }
    Ok(meta)
}

fn not_regular(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{} is not a regular file (a directory, FIFO or device); point the token store at a file",
            path.display()
        ),
    )
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_urls_are_checked_like_portal_urls() {
        let ok = |u: &str| check_token_url(u, HttpPolicy::LoopbackOnly);
        assert!(ok(DEFAULT_TOKEN_URL).is_ok());
        assert!(ok("http://127.0.0.1:8080/oauth/token/").is_ok());
        assert!(ok("http://localhost/oauth/token/").is_ok());
        assert!(ok("http://[::1]:9/oauth/token/").is_ok());
        let err = ok("http://oauth.example.com/oauth/token/").unwrap_err();
        assert!(err.to_string().contains("plain http://"), "{err}");
        assert!(ok("ftp://x/").is_err());
        assert!(ok("not a url").is_err());
        assert!(check_token_url("http://oauth.lan/t", HttpPolicy::AllowInsecure).is_ok());
    }

    #[test]
    fn secrets_are_absent_from_debug() {
        let tokens = Tokens::new("acc-123", "ref-456", None);
        let config = OAuthConfig::new("app", "sec-789")
            .tokens(tokens.clone())
            .file_store("/tmp/x.json");
        let shown = format!("{tokens:?} {config:?}");
        for secret in ["acc-123", "ref-456", "sec-789"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    #[test]
    fn expiry_margin() {
        let soon = Tokens::new("a", "r", Some(SystemTime::now() + Duration::from_secs(30)));
        assert!(soon.expires_within(Duration::from_secs(60)));
        assert!(!soon.expires_within(Duration::from_secs(1)));
        assert!(!Tokens::new("a", "r", None).expires_within(Duration::from_secs(60)));
        assert!(Tokens::new("", "r", None).expires_within(Duration::ZERO));
        assert!(!soon.usable(Duration::from_secs(1), Some("a")));
    }
}
