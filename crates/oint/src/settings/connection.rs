//! A modern command's `--portal`, `--url` and token flags, with the environment and the
//! config file, become a [`Target`]; the config portal also gives limits and `strict`.

use std::path::Path;

use secrecy::SecretString;

use super::config_file::{ConfigFile, PortalEntry, load, read_secret_file};
use super::target::Target;
use super::transport::EntryLimits;
use super::world::World;
use crate::flags::Connection;
use crate::ranges::{self, Range};
use crate::secrets::{clean_secret, may_be_secret, shown_name};

/// The target of a modern command. Errors are one line naming the flag, variable or
/// file at fault.
pub fn target(conn: &Connection, world: &World<'_>) -> Result<Target, String> {
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
    let oauth = super::oauth::credentials(&url, entry, explicit_portal, world, &read_secret_file)?;
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

/// `strict` at the config file's top level, for commands that use no config portal (OPI's).
pub fn top_level_strict(world: &World<'_>) -> Result<bool, String> {
    let (_, config) = load(world, false)?;
    Ok(config.and_then(|c| c.strict).unwrap_or(false))
}

/// The config file's `[serve]` table, if any.
pub fn serve_section(world: &World<'_>) -> Result<Option<toml::Table>, String> {
    let (_, config) = load(world, false)?;
    Ok(config.and_then(|c| c.serve))
}

/// The rate-limit settings of the config-file portal the command uses, if any.
pub fn entry_limits(conn: &Connection, world: &World<'_>) -> Result<EntryLimits, String> {
    let name = conn.portal.clone().or_else(|| world.var("OINT_PORTAL"));
    let (path, config) = load(world, name.is_some())?;
    let store_password = store_password(world)?;
    let Some(config) = config else {
        return Ok(EntryLimits {
            store_password,
            ..EntryLimits::default()
        });
    };
    let top_store = config.limit_store.clone().map(|s| s.0);
    let Some(entry) = name
        .or(config.default_portal.clone())
        .and_then(|name| config.portals.get(&name).map(|entry| (name, entry)))
    else {
        return Ok(EntryLimits {
            limit_store: top_store,
            store_password,
            ..EntryLimits::default()
        });
    };
    let (name, entry) = entry;
    // The same ranges as the flags, named as settings of this file.
    let check = |setting: &str, range: Range, value: Option<f64>| {
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
        rate: check("rate", ranges::RATE, entry.rate)?,
        burst: check("burst", ranges::BURST, entry.burst)?,
        limit_store: entry.limit_store.clone().map(|s| s.0).or(top_store),
        store_password,
    })
}

/// The limit store's password from OINT_LIMIT_STORE_PASSWORD or, as a private file,
/// OINT_LIMIT_STORE_PASSWORD_FILE.
pub fn store_password(world: &World<'_>) -> Result<Option<String>, String> {
    let inline = world
        .var("OINT_LIMIT_STORE_PASSWORD")
        .filter(|v| !v.is_empty());
    let file = world
        .var("OINT_LIMIT_STORE_PASSWORD_FILE")
        .filter(|v| !v.is_empty());
    match (inline, file) {
        (Some(_), Some(_)) => Err(
            "OINT_LIMIT_STORE_PASSWORD: give only one of OINT_LIMIT_STORE_PASSWORD and OINT_LIMIT_STORE_PASSWORD_FILE"
                .into(),
        ),
        (Some(password), None) => clean_secret(&password, "OINT_LIMIT_STORE_PASSWORD").map(Some),
        (None, Some(path)) => read_secret_file(
            Path::new(&path),
            "OINT_LIMIT_STORE_PASSWORD_FILE",
        )
        .map(Some),
        (None, None) => Ok(None),
    }
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
        return read_secret_file(&world.expand(path), "--token-file").map(Some);
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
        return read_secret_file(&world.expand(path), &what).map(Some);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::scrub_serde_message;
    use secrecy::ExposeSecret;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

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
        target(&case.conn, &world).map(|t| match t {
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
