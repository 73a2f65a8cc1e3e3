//! The config file: its format, and reading it safely.
//!
//! `$OINT_CONFIG`, else `~/.config/oint/config.toml`. A missing file is fine unless a portal
//! is named. A file that holds a secret anywhere must not be readable by group or others, and
//! no message quotes a value from it that may be a secret.
//!
//! ```toml
//! default_portal = "work"
//! strict = true            # refuse warnings too (--strict); a portal may set its own
//!
//! [portals.work]
//! url = "https://portal.bitrix24.com/rest/1/WEBHOOK_SECRET/"
//!
//! [serve.routes.ops]      # oint serve: /alertmanager/ops and /grafana/ops
//! users = [1, 10]
//!
//! [portals.app]
//! url = "portal.bitrix24.com"
//! token_file = "~/.config/oint/app.token"   # or token_env = "APP_TOKEN", or token = "…"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::world::World;
use crate::files::{CONFIG_CAP, ReadError, SECRET_CAP, read_regular};
use crate::ranges::{self, Range};
use crate::secrets::{clean_secret, masked, scrub_serde_message, shown_path};

/// The config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Portal used when none is named.
    pub default_portal: Option<String>,
    /// Named portals.
    #[serde(default)]
    pub portals: BTreeMap<String, PortalEntry>,
    /// Refuse warnings too, for every portal (`--strict`).
    pub strict: Option<bool>,
    /// Where rate limits are shared between machines (`--limit-store`).
    pub limit_store: Option<StoreUrl>,
    /// `oint serve`'s settings (`[serve.routes.NAME]`), read by the relay itself: a build
    /// without it still reads the file.
    pub serve: Option<toml::Table>,
}

/// One `[portals.NAME]` table. Its `Debug` masks every secret it may hold.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortalEntry {
    /// Webhook URL, portal domain, or "sandbox".
    pub url: Option<String>,
    /// Access token, inline (the file must then be private).
    pub token: Option<String>,
    /// File holding the access token.
    pub token_file: Option<PathBuf>,
    /// Environment variable holding the access token.
    pub token_env: Option<String>,
    /// Rate limit plan of this portal: standard or enterprise.
    pub plan: Option<String>,
    /// Drain rate override, requests per second.
    #[serde(default, deserialize_with = "rate_setting")]
    pub rate: Option<f64>,
    /// Burst override, requests.
    #[serde(default, deserialize_with = "burst_setting")]
    pub burst: Option<f64>,
    /// OAuth application client id (with a secret, turns on token refresh).
    pub client_id: Option<String>,
    /// OAuth application client secret, inline (the file must then be private).
    pub client_secret: Option<String>,
    /// File holding the OAuth client secret.
    pub client_secret_file: Option<PathBuf>,
    /// The first refresh token; later ones live in the token store.
    pub refresh_token: Option<String>,
    /// The OAuth token endpoint (default `https://oauth.bitrix.info/oauth/token/`).
    pub oauth_url: Option<String>,
    /// Where refreshed tokens are kept (default `<data dir>/oint/tokens/<host>.json`).
    pub token_store: Option<PathBuf>,
    /// Refuse warnings too for this portal (`--strict`); wins over the top-level setting.
    pub strict: Option<bool>,
    /// Where this portal's rate limit is shared (`--limit-store`); wins over the top level.
    pub limit_store: Option<StoreUrl>,
}

/// A limit store's URL, which may hold a password: its `Debug` shows only that one is set.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct StoreUrl(pub String);

impl StoreUrl {
    /// `redis://:PASSWORD@…`, or anything with credentials in it.
    fn holds_password(&self) -> bool {
        self.0.contains('@')
    }
}

impl std::fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(bitrix24::MASK)
    }
}

/// A number setting that, given anything else, says what it expects without echoing it (a
/// token pasted into `rate` must not end up in an error message).
struct NumberSetting(&'static str, Range);

impl serde::de::Visitor<'_> for NumberSetting {
    type Value = Option<f64>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: a number of {}", self.0, self.1.unit)
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Some(v))
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v as f64))
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(v as f64))
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Err(E::custom(format!(
            "{}: expects a number of {} (such as {}), not text",
            self.0,
            self.1.unit,
            self.1.min.max(1.0)
        )))
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
        self.visit_str("")
    }
}

fn rate_setting<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    d.deserialize_any(NumberSetting("rate", ranges::RATE))
}

fn burst_setting<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    d.deserialize_any(NumberSetting("burst", ranges::BURST))
}

impl std::fmt::Debug for PortalEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL of a webhook holds its secret: show only that one is set.
        f.debug_struct("PortalEntry")
            .field("url", &masked(&self.url))
            .field("token", &masked(&self.token))
            .field("token_file", &self.token_file)
            .field("token_env", &self.token_env)
            .field("plan", &self.plan)
            .field("rate", &self.rate)
            .field("burst", &self.burst)
            .field("client_id", &self.client_id)
            .field("client_secret", &masked(&self.client_secret))
            .field("client_secret_file", &self.client_secret_file)
            .field("refresh_token", &masked(&self.refresh_token))
            .field("oauth_url", &self.oauth_url)
            .field("token_store", &self.token_store)
            .field("strict", &self.strict)
            .field("limit_store", &self.limit_store)
            .finish()
    }
}

/// Loads the config file. A missing file is fine unless a portal was named. A file that holds
/// a secret anywhere (not only in the portal used) must be private.
pub(super) fn load(
    world: &World<'_>,
    required: bool,
) -> Result<(PathBuf, Option<ConfigFile>), String> {
    let path = match world.var("OINT_CONFIG") {
        Some(path) => world.expand(Path::new(&path)),
        None => match &world.config_dir {
            Some(dir) => dir.join("oint").join("config.toml"),
            None if required => {
                return Err("--portal: cannot find a config directory; set OINT_CONFIG".into());
            }
            None => return Ok((PathBuf::from("config.toml"), None)),
        },
    };
    let (bytes, meta) = match read_regular(&path, CONFIG_CAP) {
        Ok(read) => read,
        Err(ReadError::NotFound) => return Ok((path, None)),
        Err(e) => return Err(format!("config file {} {e}", path.display())),
    };
    let text = String::from_utf8(bytes)
        .map_err(|_| format!("config file {} is not UTF-8 text", path.display()))?;
    let config: ConfigFile = toml::from_str(&text).map_err(|e| {
        format!(
            "config file {}: {}",
            path.display(),
            scrub_serde_message(e.message())
        )
    })?;
    if holds_secret(&config) {
        check_mode(&meta, "the config file", &path)?;
    }
    Ok((path, Some(config)))
}

/// Any secret in any portal: a token, client secret, refresh token, or webhook URL (also one
/// put by mistake in a portal's name or `default_portal`).
fn holds_secret(config: &ConfigFile) -> bool {
    config
        .default_portal
        .as_deref()
        .is_some_and(looks_like_webhook)
        || config
            .limit_store
            .as_ref()
            .is_some_and(StoreUrl::holds_password)
        || config.portals.iter().any(|(name, e)| {
            looks_like_webhook(name)
                || e.limit_store.as_ref().is_some_and(StoreUrl::holds_password)
                || e.token.is_some()
                || e.client_secret.is_some()
                || e.refresh_token.is_some()
                || e.url.as_deref().is_some_and(looks_like_webhook)
        })
}

/// Reads a private file holding one secret: a regular file, at most [`SECRET_CAP`], not
/// readable by group or others, holding one word (a byte-order mark and blank lines around it
/// are dropped).
pub fn read_secret_file(path: &Path, what: &str) -> Result<String, String> {
    let shown = shown_path(path);
    let (bytes, meta) = read_regular(path, SECRET_CAP).map_err(|e| match e {
        ReadError::NotFound => format!("{what}: {shown} does not exist"),
        other => format!("{what}: {shown} {other}"),
    })?;
    check_mode(&meta, what, path)?;
    let text = String::from_utf8(bytes).map_err(|_| {
        format!("{what}: {shown} is not UTF-8 text; put the token alone in the file")
    })?;
    let secret = clean_secret(&text, what)?;
    if secret.is_empty() {
        return Err(format!("{what}: {shown} is empty"));
    }
    Ok(secret)
}

/// Refuses a file that group or others may read: it holds a secret.
fn check_mode(meta: &std::fs::Metadata, what: &str, path: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use crate::secrets::may_be_secret;
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            let shown = shown_path(path);
            let fix = if may_be_secret(&path.display().to_string()) {
                "chmod 600 it".to_string()
            } else {
                format!("chmod 600 {}", path.display())
            };
            return Err(format!(
                "{what}: {shown} holds a secret but is readable by others (mode {mode:04o}); run: {fix}"
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = (meta, what, path);
    Ok(())
}

fn looks_like_webhook(url: &str) -> bool {
    let path = url.split_once("/rest/").map(|(_, p)| p).unwrap_or_default();
    path.split('/').filter(|s| !s.is_empty()).count() >= 2
}
