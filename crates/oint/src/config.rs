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
    pub rate: Option<f64>,
    /// Burst override, requests.
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
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
        Ok(line)
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
    let entry_name = portal_name.or_else(|| config.as_ref().and_then(|c| c.default_portal.clone()));
    let entry = match (&entry_name, &config) {
        (Some(name), Some(config)) => Some(config.portals.get(name).ok_or_else(|| {
            let known: Vec<&str> = config.portals.keys().map(String::as_str).collect();
            format!(
                "--portal: no portal {name:?} in {} (known: {})",
                config_path.display(),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )
        })?),
        (Some(name), None) => {
            return Err(format!(
                "--portal: no config file at {} to find portal {name:?} in",
                config_path.display()
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
            None => world.var("BITRIX24_TOKEN"),
        },
        None => match world.var("BITRIX24_TOKEN") {
            Some(token) => Some(token),
            None => entry_token()?,
        },
    };
    if let Some(entry) = entry
        && (entry.token.is_some()
            || entry.client_secret.is_some()
            || entry.refresh_token.is_some()
            || entry.url.as_deref().is_some_and(looks_like_webhook))
    {
        check_private(&config_path, "the config file")?;
    }

    let token = token
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .map(SecretString::from);
    let oauth = crate::oauth::resolve(&url, entry, explicit_portal, world, &read_secret_file)?;
    Ok(if url.trim().eq_ignore_ascii_case("sandbox") {
        Target::Sandbox { token }
    } else {
        Target::Portal { url, token, oauth }
    })
}

/// The rate-limit settings of the config-file portal the command uses, if any.
pub fn entry_limits(conn: &Connection, world: &World<'_>) -> Result<EntryLimits, String> {
    let name = conn.portal.clone().or_else(|| world.var("OINT_PORTAL"));
    let (_, config) = load(world, name.is_some())?;
    let Some(config) = config else {
        return Ok(EntryLimits::default());
    };
    let Some(name) = name.or(config.default_portal) else {
        return Ok(EntryLimits::default());
    };
    Ok(config
        .portals
        .get(&name)
        .map(|e| EntryLimits {
            plan: e.plan.clone(),
            rate: e.rate,
            burst: e.burst,
        })
        .unwrap_or_default())
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
        return Ok(Some(token.clone()));
    }
    if let Some(path) = &conn.token_file {
        return read_secret_file(&expand(path, world), "--token-file").map(Some);
    }
    if conn.token_stdin {
        let line = (world.stdin)()?;
        let token = line.trim().to_string();
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
        return Ok(Some(token.clone()));
    }
    if let Some(path) = &entry.token_file {
        let what = format!("token_file in {}", config_path.display());
        return read_secret_file(&expand(path, world), &what).map(Some);
    }
    if let Some(var) = &entry.token_env {
        return world
            .var(var)
            .map(Some)
            .ok_or_else(|| format!("token_env in {}: ${var} is not set", config_path.display()));
    }
    Ok(None)
}

/// Loads the config file. A missing file is fine unless a portal was named.
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
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((path, None)),
        Err(e) => return Err(format!("cannot read config file {}: {e}", path.display())),
    };
    let config: ConfigFile = toml::from_str(&text).map_err(|e| {
        format!(
            "config file {}: {}",
            path.display(),
            e.message().replace('\n', " ")
        )
    })?;
    Ok((path, Some(config)))
}

fn read_secret_file(path: &Path, what: &str) -> Result<String, String> {
    check_private(path, what)?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{what}: cannot read {}: {e}", path.display()))?;
    let secret = text.lines().next().unwrap_or_default().trim().to_string();
    if secret.is_empty() {
        return Err(format!("{what}: {} is empty", path.display()));
    }
    Ok(secret)
}

/// Refuses a file that group or others may read: it holds a secret.
fn check_private(path: &Path, what: &str) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path)
            .map_err(|e| format!("{what}: cannot read {}: {e}", path.display()))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "{what}: {} holds a secret but is readable by others (mode {mode:04o}); run: chmod 600 {}",
                path.display(),
                path.display()
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = (path, what);
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
