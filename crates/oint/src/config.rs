//! Where the modern commands send to, and where their secrets come from.
//!
//! Settings are taken in this order, first found wins: command-line flags, then the
//! environment (`BITRIX24_URL`, `BITRIX24_TOKEN`), then a named portal in the config file
//! (`$OINT_CONFIG`, else `~/.config/oint/config.toml`), chosen with `--portal NAME`,
//! `OINT_PORTAL` or the file's `default_portal`. An explicit `--portal` is a flag, so its
//! settings win over the environment.
//!
//! Secrets need never be typed on the command line: a token can come from the environment,
//! from a file (`--token-file`, `token_file`), or from standard input (`--token-stdin`).
//! Files holding secrets, the config file included when it holds one, must not be readable by
//! group or others; a file that is gets refused with the `chmod` that fixes it.
//!
//! ```toml
//! default_portal = "work"
//! strict = true            # refuse warnings too (--strict); a portal may set its own
//!
//! [portals.work]
//! url = "https://portal.bitrix24.com/rest/1/WEBHOOK_SECRET/"
//!
//! [portals.app]
//! url = "portal.bitrix24.com"
//! token_file = "~/.config/oint/app.token"   # or token_env = "APP_TOKEN", or token = "…"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::Deserialize;

use crate::cli::Connection;
use crate::resolve::Target;
use crate::transport::EntryLimits;

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
}

/// A number setting that, given anything else, says what it expects without echoing it (a
/// token pasted into `rate` must not end up in an error message).
struct NumberSetting(&'static str, crate::transport::Range);

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
    d.deserialize_any(NumberSetting("rate", crate::transport::RATE))
}

fn burst_setting<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    d.deserialize_any(NumberSetting("burst", crate::transport::BURST))
}

/// Whether a value the user gave may be a secret: a URL (a webhook's carries its secret), or
/// one long word (a token). Such values are named, never shown, in error messages.
pub fn may_be_secret(value: &str) -> bool {
    let v = value.trim();
    v.contains("://")
        || v.contains("/rest/")
        || v.contains('@')
        || v.chars().any(char::is_control)
        || (v.chars().count() >= 20 && !v.contains(['/', '.', ' ', '~']))
}

/// `"name"` for a plain portal name, or a description when it may be a secret.
fn shown_name(name: &str) -> String {
    if may_be_secret(name) || name.contains('/') {
        "(a value that looks like a URL or a token, not shown)".into()
    } else {
        format!("{name:?}")
    }
}

/// A path for an error message, unless it may be a secret typed in the wrong place.
pub fn shown_path(path: &Path) -> String {
    let text = path.display().to_string();
    if may_be_secret(&text) {
        "the file it names (the value looks like a URL or a token, not a path)".into()
    } else {
        text
    }
}

/// Serde's messages quote the offending value (`invalid type: string "…"`) and key; both
/// may be secrets.
fn scrub_serde_message(message: &str) -> String {
    let mut out = String::new();
    let mut rest = message;
    while let Some(i) = rest.find(['"', '`']) {
        let quote = rest.as_bytes()[i] as char;
        let after = &rest[i + 1..];
        let Some(end) = after.find(quote) else { break };
        let inner = &after[..end];
        out.push_str(&rest[..i]);
        let value_of_wrong_type = rest[..i].ends_with("string ");
        if value_of_wrong_type || may_be_secret(inner) {
            out.push_str("(not shown)");
        } else {
            out.push(quote);
            out.push_str(inner);
            out.push(quote);
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out.replace('\n', " ")
}

/// Largest token or secret: a file, or the first line of standard input.
pub const SECRET_CAP: u64 = 64 * 1024;
/// Largest config file.
pub const CONFIG_CAP: u64 = 1024 * 1024;

/// Why [`read_regular`] failed; the caller names the flag or setting.
#[derive(Debug)]
pub enum ReadError {
    NotFound,
    /// A directory, FIFO, device or socket: it could block, or never end.
    NotRegular(&'static str),
    TooLarge(u64),
    Io(std::io::Error),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::NotFound => write!(f, "does not exist"),
            ReadError::NotRegular(kind) => write!(f, "is not a regular file (it is {kind})"),
            ReadError::TooLarge(cap) => write!(f, "is larger than {} KiB", cap / 1024),
            ReadError::Io(e) => write!(f, "cannot be read ({e})"),
        }
    }
}

/// Opens `path` without blocking (a FIFO would wait for a writer), refuses anything but a
/// regular file, and reads at most `cap` bytes.
pub fn read_regular(path: &Path, cap: u64) -> Result<(Vec<u8>, std::fs::Metadata), ReadError> {
    use std::io::Read;
    let file = open_nonblocking(path, false)?;
    let meta = file.metadata().map_err(ReadError::Io)?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular(kind_of(&meta)));
    }
    let mut bytes = Vec::new();
    file.take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() as u64 > cap {
        return Err(ReadError::TooLarge(cap));
    }
    Ok((bytes, meta))
}

/// Opens for reading, or for writing (creating the file) with `write`, without blocking on a
/// FIFO.
pub fn open_nonblocking(path: &Path, write: bool) -> Result<std::fs::File, ReadError> {
    let mut options = std::fs::OpenOptions::new();
    if write {
        options.write(true).create(true);
    } else {
        options.read(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32);
    }
    options.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ReadError::NotFound,
        _ => ReadError::Io(e),
    })
}

/// "a directory", "a FIFO", …, for [`ReadError::NotRegular`].
pub fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if meta.is_dir() {
        "a directory"
    } else {
        "not a file"
    }
}

/// A token or secret without a byte-order mark and surrounding blanks; one with a space, line
/// break or control character inside is refused (the portal would refuse it anyway).
pub fn clean_secret(raw: &str, what: &str) -> Result<String, String> {
    let text = raw.trim().trim_start_matches('\u{feff}').trim();
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{what}: the value holds a space, line break or control character inside; a token or secret is one word: give it alone, on one line"
        ));
    }
    Ok(text.to_string())
}

/// `Some` secrets show as `***`.
pub(crate) fn masked(value: &Option<String>) -> Option<&'static str> {
    value.as_ref().map(|_| bitrix24::MASK)
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
            .finish()
    }
}

/// What the resolver may look at, so tests can give it a fake world.
pub struct World<'a> {
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub stdin: &'a dyn Fn() -> Result<String, String>,
    pub home: Option<PathBuf>,
    pub config_dir: Option<PathBuf>,
    /// Where the OAuth token store goes by default.
    pub data_dir: Option<PathBuf>,
}

impl World<'_> {
    pub(crate) fn var(&self, name: &str) -> Option<String> {
        (self.env)(name).filter(|v| !v.trim().is_empty())
    }

    /// `path` with a leading `~` replaced by the home directory.
    pub(crate) fn expand(&self, path: &Path) -> PathBuf {
        expand(path, self)
    }
}

/// The real environment, standard input and home directory.
pub fn real_world<T>(f: impl FnOnce(&World<'_>) -> T) -> T {
    let env = |name: &str| std::env::var(name).ok();
    let stdin = || {
        use std::io::{BufRead, Read};
        // A token is short: /dev/zero must not fill the memory.
        let mut line = Vec::new();
        std::io::stdin()
            .lock()
            .take(SECRET_CAP + 1)
            .read_until(b'\n', &mut line)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
        if line.len() as u64 > SECRET_CAP && !line.ends_with(b"\n") {
            return Err(format!(
                "the first line of standard input is longer than {} KiB; a token is short: pipe just the token",
                SECRET_CAP / 1024
            ));
        }
        String::from_utf8(line)
            .map_err(|_| "standard input is not UTF-8 text; pipe just the token".to_string())
    };
    f(&World {
        env: &env,
        stdin: &stdin,
        home: dirs::home_dir(),
        config_dir: dirs::config_dir(),
        data_dir: dirs::data_dir(),
    })
}

/// Resolves the target of a modern command. Errors are one line naming the flag, variable or
/// file at fault.
pub fn resolve(conn: &Connection, world: &World<'_>) -> Result<Target, String> {
    let portal_name = conn.portal.clone().or_else(|| world.var("OINT_PORTAL"));
    let explicit_portal = conn.portal.is_some();
    let (config_path, config) = load(world, portal_name.is_some())?;
    let from_default = portal_name.is_none();
    let entry_name = portal_name.or_else(|| config.as_ref().and_then(|c| c.default_portal.clone()));
    let entry = match (&entry_name, &config) {
        (Some(name), Some(config)) => Some(
            config
                .portals
                .get(name)
                .ok_or_else(|| no_such_portal(name, from_default, config, &config_path))?,
        ),
        (Some(name), None) => {
            return Err(format!(
                "--portal: no config file at {} to find portal {} in",
                config_path.display(),
                shown_name(name)
            ));
        }
        (None, _) => None,
    };

    // From the config entry, only when it is consulted.
    let entry_url = || entry.and_then(|e| e.url.clone());
    let url = if explicit_portal {
        conn.url
            .clone()
            .or_else(entry_url)
            .or_else(|| world.var("BITRIX24_URL"))
    } else {
        conn.url
            .clone()
            .or_else(|| world.var("BITRIX24_URL"))
            .or_else(entry_url)
    };
    let url = url.filter(|u| !u.trim().is_empty()).ok_or(
        "--url: no portal given; pass --url, set BITRIX24_URL, or name a portal from the config file with --portal",
    )?;

    let flag_token = flag_token(conn, world)?;
    let entry_token = || entry_token(entry, &config_path, world);
    let token = match flag_token {
        Some(token) => Some(token),
        None if explicit_portal => match entry_token()? {
            Some(token) => Some(token),
            None => env_token(world)?,
        },
        None => match env_token(world)? {
            Some(token) => Some(token),
            None => entry_token()?,
        },
    };

    let token = token.filter(|t| !t.is_empty()).map(SecretString::from);
    let oauth = crate::oauth::resolve(&url, entry, explicit_portal, world, &read_secret_file)?;
    Ok(if url.trim().eq_ignore_ascii_case("sandbox") {
        Target::Sandbox { token }
    } else {
        Target::Portal { url, token, oauth }
    })
}

/// `--portal NAME` (or `default_portal`) names no portal: say so without echoing a value that
/// may be a webhook URL or token put in the wrong place.
fn no_such_portal(name: &str, from_default: bool, config: &ConfigFile, path: &Path) -> String {
    let setting = if from_default {
        format!("default_portal in {}", path.display())
    } else {
        "--portal".to_string()
    };
    let shown: Vec<String> = config
        .portals
        .keys()
        .filter(|k| !may_be_secret(k) && !k.contains('/'))
        .cloned()
        .collect();
    let hidden = config.portals.len() - shown.len();
    let mut known = if shown.is_empty() {
        "none".to_string()
    } else {
        shown.join(", ")
    };
    if hidden > 0 {
        known.push_str(&format!(
            "; {hidden} more not shown: they look like URLs or tokens"
        ));
    }
    if may_be_secret(name) || name.contains('/') {
        format!(
            "{setting}: no portal named like that in {} (the value looks like a URL or a token: give a portal name from [portals], or use --url; known: {known})",
            path.display()
        )
    } else {
        format!(
            "{setting}: no portal {name:?} in {} (known: {known})",
            path.display()
        )
    }
}

/// `BITRIX24_TOKEN`, cleaned.
fn env_token(world: &World<'_>) -> Result<Option<String>, String> {
    world
        .var("BITRIX24_TOKEN")
        .map(|t| clean_secret(&t, "BITRIX24_TOKEN"))
        .transpose()
}

/// `strict` of the config-file portal the command uses, else of the file's top level.
pub fn strict(conn: &Connection, world: &World<'_>) -> Result<bool, String> {
    let name = conn.portal.clone().or_else(|| world.var("OINT_PORTAL"));
    let (_, config) = load(world, name.is_some())?;
    let Some(config) = config else {
        return Ok(false);
    };
    let entry = name
        .or(config.default_portal.clone())
        .and_then(|n| config.portals.get(&n).and_then(|e| e.strict));
    Ok(entry.or(config.strict).unwrap_or(false))
}

/// The rate-limit settings of the config-file portal the command uses, if any.
pub fn entry_limits(conn: &Connection, world: &World<'_>) -> Result<EntryLimits, String> {
    let name = conn.portal.clone().or_else(|| world.var("OINT_PORTAL"));
    let (path, config) = load(world, name.is_some())?;
    let Some(config) = config else {
        return Ok(EntryLimits::default());
    };
    let Some(name) = name.or(config.default_portal) else {
        return Ok(EntryLimits::default());
    };
    let Some(entry) = config.portals.get(&name) else {
        return Ok(EntryLimits::default());
    };
    // The same ranges as the flags, named as settings of this file.
    let check = |setting: &str, range: crate::transport::Range, value: Option<f64>| {
        value
            .map(|v| {
                range.check(v).map_err(|e| {
                    format!(
                        "{setting} of portal {} in {}: {e}",
                        shown_name(&name),
                        path.display()
                    )
                })
            })
            .transpose()
    };
    Ok(EntryLimits {
        plan: entry.plan.clone(),
        rate: check("rate", crate::transport::RATE, entry.rate)?,
        burst: check("burst", crate::transport::BURST, entry.burst)?,
    })
}

fn flag_token(conn: &Connection, world: &World<'_>) -> Result<Option<String>, String> {
    let given = [
        conn.token.is_some(),
        conn.token_file.is_some(),
        conn.token_stdin,
    ]
    .iter()
    .filter(|g| **g)
    .count();
    if given > 1 {
        return Err("--token: give only one of --token, --token-file and --token-stdin".into());
    }
    if let Some(token) = &conn.token {
        return clean_secret(token, "--token").map(Some);
    }
    if let Some(path) = &conn.token_file {
        return read_secret_file(&expand(path, world), "--token-file").map(Some);
    }
    if conn.token_stdin {
        let line = (world.stdin)().map_err(|e| format!("--token-stdin: {e}"))?;
        let token = clean_secret(&line, "--token-stdin")?;
        if token.is_empty() {
            return Err("--token-stdin: standard input is empty; pipe the token in".into());
        }
        return Ok(Some(token));
    }
    Ok(None)
}

fn entry_token(
    entry: Option<&PortalEntry>,
    config_path: &Path,
    world: &World<'_>,
) -> Result<Option<String>, String> {
    let Some(entry) = entry else { return Ok(None) };
    if let Some(token) = &entry.token {
        let what = format!("token in {}", config_path.display());
        return clean_secret(token, &what).map(Some);
    }
    if let Some(path) = &entry.token_file {
        let what = format!("token_file in {}", config_path.display());
        return read_secret_file(&expand(path, world), &what).map(Some);
    }
    if let Some(var) = &entry.token_env {
        let what = format!("token_env in {}", config_path.display());
        let plain_name = !var.is_empty()
            && var.len() <= 64
            && var
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            && !var.starts_with(|c: char| c.is_ascii_digit());
        return match world.var(var) {
            Some(token) => clean_secret(&token, &what).map(Some),
            None if plain_name => Err(format!("{what}: ${var} is not set")),
            // A token pasted here instead of a variable's name must not be echoed.
            None => Err(format!(
                "{what}: expects the name of an environment variable holding the token (such as APP_TOKEN), and no variable of that name is set"
            )),
        };
    }
    Ok(None)
}

/// Loads the config file. A missing file is fine unless a portal was named. A file that holds
/// a secret anywhere (not only in the portal used) must be private.
fn load(world: &World<'_>, required: bool) -> Result<(PathBuf, Option<ConfigFile>), String> {
    let path = match world.var("OINT_CONFIG") {
        Some(path) => expand(Path::new(&path), world),
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
        || config.portals.iter().any(|(name, e)| {
            looks_like_webhook(name)
                || e.token.is_some()
                || e.client_secret.is_some()
                || e.refresh_token.is_some()
                || e.url.as_deref().is_some_and(looks_like_webhook)
        })
}

/// Reads a private file holding one secret: a regular file, at most [`SECRET_CAP`], not
/// readable by group or others, holding one word (a byte-order mark and blank lines around it
/// are dropped).
fn read_secret_file(path: &Path, what: &str) -> Result<String, String> {
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

fn expand(path: &Path, world: &World<'_>) -> PathBuf {
    match (path.strip_prefix("~"), &world.home) {
        (Ok(rest), Some(home)) => home.join(rest),
        _ => path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use std::os::unix::fs::PermissionsExt;

    struct Case {
        conn: Connection,
        env: Vec<(&'static str, String)>,
        stdin: &'static str,
    }

    fn conn() -> Connection {
        Connection::default()
    }

    fn run(case: Case) -> Result<(String, Option<String>), String> {
        let env = case.env;
        let lookup = move |name: &str| env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone());
        let stdin_text = case.stdin.to_string();
        let stdin = move || Ok(stdin_text.clone());
        let world = World {
            env: &lookup,
            stdin: &stdin,
            home: Some("/home/u".into()),
            config_dir: None,
            data_dir: Some("/home/u/.local/share".into()),
        };
        resolve(&case.conn, &world).map(|t| match t {
            Target::Portal { url, token, .. } => {
                (url, token.map(|t| t.expose_secret().to_string()))
            }
            Target::Sandbox { token } => (
                "sandbox".into(),
                token.map(|t| t.expose_secret().to_string()),
            ),
        })
    }

    fn private_file(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn precedence_is_flags_then_env_then_config() {
        let dir = tempfile::tempdir().unwrap();
        let config = private_file(
            dir.path(),
            "config.toml",
            "default_portal = \"a\"\n[portals.a]\nurl = \"a.bitrix24.com\"\ntoken = \"config-token\"\n[portals.b]\nurl = \"https://b.bitrix24.com/rest/1/s/\"\n",
            0o600,
        );
        let cfg = ("OINT_CONFIG", config.display().to_string());
        let env_url = ("BITRIX24_URL", "env.bitrix24.com".to_string());
        let env_token = ("BITRIX24_TOKEN", "env-token".to_string());
        let with_url = Connection {
            url: Some("flag.bitrix24.com".into()),
            ..conn()
        };
        let with_portal_b = Connection {
            portal: Some("b".into()),
            ..conn()
        };
        let table: Vec<(Case, (&str, Option<&str>))> = vec![
            (
                Case {
                    conn: conn(),
                    env: vec![cfg.clone()],
                    stdin: "",
                },
                ("a.bitrix24.com", Some("config-token")),
            ),
            (
                Case {
                    conn: conn(),
                    env: vec![cfg.clone(), env_url.clone(), env_token.clone()],
                    stdin: "",
                },
                ("env.bitrix24.com", Some("env-token")),
            ),
            (
                Case {
                    conn: with_url.clone(),
                    env: vec![cfg.clone(), env_url.clone(), env_token.clone()],
                    stdin: "",
                },
                ("flag.bitrix24.com", Some("env-token")),
            ),
            // An explicit --portal wins over the environment.
            (
                Case {
                    conn: with_portal_b.clone(),
                    env: vec![cfg.clone(), env_url.clone()],
                    stdin: "",
                },
                ("https://b.bitrix24.com/rest/1/s/", None),
            ),
            (
                Case {
                    conn: Connection {
                        portal: Some("a".into()),
                        ..conn()
                    },
                    env: vec![cfg.clone(), env_token],
                    stdin: "",
                },
                ("a.bitrix24.com", Some("config-token")),
            ),
            (
                Case {
                    conn: Connection {
                        token_stdin: true,
                        ..with_url.clone()
                    },
                    env: vec![],
                    stdin: " piped-token \n",
                },
                ("flag.bitrix24.com", Some("piped-token")),
            ),
            (
                Case {
                    conn: Connection {
                        url: Some("Sandbox".into()),
                        ..conn()
                    },
                    env: vec![],
                    stdin: "",
                },
                ("sandbox", None),
            ),
        ];
        for (case, (url, token)) in table {
            let got = run(case).unwrap();
            assert_eq!(got, (url.to_string(), token.map(String::from)));
        }
    }

    #[test]
    fn secret_files_must_be_private() {
        let dir = tempfile::tempdir().unwrap();
        let ok = private_file(dir.path(), "ok.token", "tok-1\n", 0o600);
        let open = private_file(dir.path(), "open.token", "tok-2\n", 0o644);
        let base = Connection {
            url: Some("x.bitrix24.com".into()),
            ..conn()
        };
        let got = run(Case {
            conn: Connection {
                token_file: Some(ok),
                ..base.clone()
            },
            env: vec![],
            stdin: "",
        });
        assert_eq!(got.unwrap().1.as_deref(), Some("tok-1"));
        let err = run(Case {
            conn: Connection {
                token_file: Some(open.clone()),
                ..base.clone()
            },
            env: vec![],
            stdin: "",
        })
        .unwrap_err();
        assert!(
            err.starts_with("--token-file:") && err.contains("chmod 600"),
            "{err}"
        );

        let config = private_file(
            dir.path(),
            "c.toml",
            "[portals.p]\nurl = \"x.bitrix24.com\"\ntoken = \"t\"\n",
            0o644,
        );
        let err = run(Case {
            conn: Connection {
                portal: Some("p".into()),
                ..conn()
            },
            env: vec![("OINT_CONFIG", config.display().to_string())],
            stdin: "",
        })
        .unwrap_err();
        assert!(
            err.contains("the config file") && err.contains("chmod 600"),
            "{err}"
        );
    }

    #[test]
    fn values_that_may_be_secrets_are_not_echoed() {
        for secret in [
            "https://x.bitrix24.com/rest/1/abc/",
            "x.bitrix24.com/rest/1/abcdef/",
            "4e8e0c5e0061ab5d006b8b1d00000001000003a9",
            "user:pass@host",
        ] {
            assert!(may_be_secret(secret), "{secret}");
        }
        for plain in [
            "work",
            "prod-eu",
            "~/.config/oint/app.token",
            "APP_TOKEN",
            "/tmp/x",
        ] {
            assert!(!may_be_secret(plain), "{plain}");
        }
        let scrubbed = scrub_serde_message(
            "invalid type: string \"tok-1\", expected f64; unknown field `https://h/rest/1/s/`, expected `url`",
        );
        assert!(
            !scrubbed.contains("tok-1") && !scrubbed.contains("rest/1/s"),
            "{scrubbed}"
        );
        assert!(scrubbed.contains("`url`"), "{scrubbed}");
        assert_eq!(clean_secret("\u{feff} t1 \r\n", "x"), Ok("t1".into()));
        assert!(clean_secret("t1 t2", "x").unwrap_err().starts_with("x: "));
        assert!(clean_secret("t1\u{0}", "x").is_err());
    }

    #[test]
    fn mistakes_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let config = private_file(
            dir.path(),
            "c.toml",
            "[portals.p]\nurl = \"x\"\ntokn = \"t\"\n",
            0o600,
        );
        let cfg = ("OINT_CONFIG", config.display().to_string());
        let table: Vec<(Case, &str)> = vec![
            (
                Case {
                    conn: conn(),
                    env: vec![],
                    stdin: "",
                },
                "--url: no portal given",
            ),
            (
                Case {
                    conn: conn(),
                    env: vec![cfg.clone()],
                    stdin: "",
                },
                "unknown field `tokn`",
            ),
            (
                Case {
                    conn: Connection {
                        portal: Some("zz".into()),
                        ..conn()
                    },
                    env: vec![("OINT_CONFIG", "/nonexistent/c.toml".into())],
                    stdin: "",
                },
                "--portal: no config file",
            ),
            (
                Case {
                    conn: Connection {
                        url: Some("x".into()),
                        token: Some("a".into()),
                        token_stdin: true,
                        ..conn()
                    },
                    env: vec![],
                    stdin: "",
                },
                "give only one of",
            ),
            (
                Case {
                    conn: Connection {
                        url: Some("x".into()),
                        token_stdin: true,
                        ..conn()
                    },
                    env: vec![],
                    stdin: "\n",
                },
                "--token-stdin: standard input is empty",
            ),
        ];
        for (case, want) in table {
            let err = run(case).unwrap_err();
            assert!(err.contains(want), "want {want:?}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }
}
