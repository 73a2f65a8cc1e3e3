//! OAuth application credentials for `oint`: where they come from, and where tokens are kept.
//!
//! An OAuth application's access token lives an hour and its refresh token works once, so a
//! CLI run from cron must refresh, save the new pair, and not race other runs doing the same.
//! The library does all of that given an [`bitrix24::OAuthConfig`] with a file
//! store; this module only gathers the settings:
//!
//! | setting | environment | config entry |
//! |---|---|---|
//! | client id | `BITRIX24_CLIENT_ID` | `client_id` |
//! | client secret | `BITRIX24_CLIENT_SECRET` | `client_secret`, `client_secret_file` |
//! | first refresh token | `BITRIX24_REFRESH_TOKEN` | `refresh_token` |
//! | token endpoint | `BITRIX24_OAUTH_URL` | `oauth_url` |
//! | token store | `BITRIX24_TOKEN_STORE` | `token_store` |
//!
//! The environment wins over the config entry, unless the portal was named with `--portal`
//! (the same rule as for the URL and token). OAuth is on when a client id and secret are set;
//! the token store defaults to `<data dir>/oint/tokens/<portal host>.json`.

use std::path::PathBuf;

use bitrix24::{HttpPolicy, OAuthConfig, Portal};
use secrecy::{ExposeSecret, SecretString};

use super::config_file::PortalEntry;
use super::world::World;
use crate::secrets::clean_secret;

/// The OAuth application to refresh tokens as.
#[derive(Clone)]
pub struct OAuthCreds {
    pub client_id: String,
    pub client_secret: SecretString,
    pub refresh_token: Option<SecretString>,
    pub token_url: Option<String>,
    pub store: PathBuf,
}

impl std::fmt::Debug for OAuthCreds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthCreds")
            .field("client_id", &self.client_id)
            .field("client_secret", &bitrix24::MASK)
            .field("token_url", &self.token_url)
            .field("store", &self.store)
            .finish()
    }
}

impl OAuthCreds {
    /// The library's configuration; `access_token` (from --token and friends) seeds the store.
    pub fn config(&self, access_token: Option<&SecretString>) -> OAuthConfig {
        let mut config =
            OAuthConfig::new(self.client_id.clone(), self.client_secret.expose_secret())
                .file_store(&self.store);
        if let Some(refresh) = &self.refresh_token {
            config = config.refresh_token(refresh.expose_secret());
        }
        if let Some(access) = access_token {
            config = config.access_token(access.expose_secret(), None);
        }
        if let Some(url) = &self.token_url {
            config = config.token_url(url);
        }
        config
    }
}

/// Where a setting may come from: the environment variable, then the config entry (or the
/// other way round after an explicit `--portal`).
struct Sources<'a> {
    world: &'a World<'a>,
    entry: Option<&'a PortalEntry>,
    entry_first: bool,
}

impl Sources<'_> {
    fn pick(
        &self,
        var: &str,
        from_entry: impl Fn(&PortalEntry) -> Option<String>,
    ) -> Option<String> {
        let env = || self.world.var(var);
        let entry = || {
            self.entry
                .and_then(&from_entry)
                .filter(|v| !v.trim().is_empty())
        };
        if self.entry_first {
            entry().or_else(env)
        } else {
            env().or_else(entry)
        }
    }
}

/// The OAuth settings for `url`, or `None` when no client id and secret are set or `url` is a
/// webhook URL or the sandbox. `entry` is
/// the config file's portal, if one is used; `read_secret` reads a private secret file.
pub fn credentials(
    url: &str,
    entry: Option<&PortalEntry>,
    entry_first: bool,
    world: &World<'_>,
    read_secret: &dyn Fn(&std::path::Path, &str) -> Result<String, String>,
) -> Result<Option<OAuthCreds>, String> {
    // A webhook URL carries its own credentials, and the sandbox has no OAuth server.
    if url.trim().eq_ignore_ascii_case("sandbox")
        || Portal::parse(url, None, HttpPolicy::AllowInsecure).is_ok()
    {
        return Ok(None);
    }
    let src = Sources {
        world,
        entry,
        entry_first,
    };
    let client_id = src.pick("BITRIX24_CLIENT_ID", |e| e.client_id.clone());
    let client_secret = match src.pick("BITRIX24_CLIENT_SECRET", |e| e.client_secret.clone()) {
        Some(secret) => Some(secret),
        None => match entry.and_then(|e| e.client_secret_file.as_ref()) {
            Some(path) => Some(read_secret(
                &world.expand(path),
                "client_secret_file in the config file",
            )?),
            None => None,
        },
    };
    let (client_id, client_secret) = match (client_id, client_secret) {
        (None, None) => return Ok(None),
        (Some(id), Some(secret)) => (
            id.trim().to_string(),
            clean_secret(
                &secret,
                "BITRIX24_CLIENT_SECRET (or client_secret in the config file)",
            )?,
        ),
        (Some(_), None) => {
            return Err(
                "BITRIX24_CLIENT_SECRET: an OAuth client id is set but no client secret; set BITRIX24_CLIENT_SECRET (or client_secret_file in the config file)".into(),
            );
        }
        (None, Some(_)) => {
            return Err(
                "BITRIX24_CLIENT_ID: an OAuth client secret is set but no client id; set BITRIX24_CLIENT_ID (or client_id in the config file)".into(),
            );
        }
    };
    let refresh_token = src
        .pick("BITRIX24_REFRESH_TOKEN", |e| e.refresh_token.clone())
        .map(|t| {
            clean_secret(
                &t,
                "BITRIX24_REFRESH_TOKEN (or refresh_token in the config file)",
            )
        })
        .transpose()?
        .map(SecretString::from);
    let token_url = src.pick("BITRIX24_OAUTH_URL", |e| e.oauth_url.clone());
    let store = match src.pick("BITRIX24_TOKEN_STORE", |e| {
        e.token_store.as_ref().map(|p| p.display().to_string())
    }) {
        Some(path) => world.expand(std::path::Path::new(path.trim())),
        None => default_store(url, world)?,
    };
    Ok(Some(OAuthCreds {
        client_id,
        client_secret: client_secret.into(),
        refresh_token,
        token_url,
        store,
    }))
}

/// `<data dir>/oint/tokens/<host>.json`, one store per portal.
fn default_store(url: &str, world: &World<'_>) -> Result<PathBuf, String> {
    // Only the host is needed; the placeholder token makes a domain parse as an OAuth portal.
    let portal =
        Portal::parse(url, Some("-"), HttpPolicy::AllowInsecure).map_err(|e| format!("{e}"))?;
    let dir = world.data_dir.clone().ok_or(
        "BITRIX24_TOKEN_STORE: cannot find a data directory for the OAuth token store; set BITRIX24_TOKEN_STORE to a file path",
    )?;
    let name = crate::files::file_name_for(portal.authority());
    Ok(dir.join("oint").join("tokens").join(format!("{name}.json")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world<'a>(env: &'a dyn Fn(&str) -> Option<String>) -> World<'a> {
        World {
            env,
            stdin: &|| Ok(String::new()),
            home: Some("/home/u".into()),
            config_dir: None,
            data_dir: Some("/home/u/.local/share".into()),
        }
    }

    fn no_files(_: &std::path::Path, what: &str) -> Result<String, String> {
        Err(format!("{what}: unexpected"))
    }

    #[test]
    fn settings_come_from_env_then_config_unless_the_portal_is_named() {
        let env = |k: &str| match k {
            "BITRIX24_CLIENT_ID" => Some("env-app".to_string()),
            "BITRIX24_CLIENT_SECRET" => Some("env-secret".to_string()),
            _ => None,
        };
        let entry = PortalEntry {
            client_id: Some("cfg-app".into()),
            client_secret: Some("cfg-secret".into()),
            refresh_token: Some("cfg-refresh".into()),
            token_store: Some("~/t.json".into()),
            ..Default::default()
        };
        let w = world(&env);
        let url = "Portal.Bitrix24.com:8443";
        let env_first = credentials(url, Some(&entry), false, &w, &no_files)
            .unwrap()
            .unwrap();
        assert_eq!(env_first.client_id, "env-app");
        assert_eq!(env_first.client_secret.expose_secret(), "env-secret");
        assert_eq!(
            env_first.refresh_token.unwrap().expose_secret(),
            "cfg-refresh"
        );
        assert_eq!(env_first.store, PathBuf::from("/home/u/t.json"));
        let named = credentials(url, Some(&entry), true, &w, &no_files)
            .unwrap()
            .unwrap();
        assert_eq!(named.client_id, "cfg-app");
        assert!(!format!("{named:?}").contains("cfg-secret"));

        // Default store: one file per portal host under the data directory.
        let plain = credentials(url, None, false, &w, &no_files)
            .unwrap()
            .unwrap();
        assert_eq!(
            plain.store,
            PathBuf::from("/home/u/.local/share/oint/tokens/portal.bitrix24.com_8443.json")
        );
        // Webhook URLs and the sandbox carry their own credentials.
        for url in ["https://p.bitrix24.com/rest/1/s/", "sandbox"] {
            assert!(
                credentials(url, None, false, &w, &no_files)
                    .unwrap()
                    .is_none()
            );
        }
        let nothing = |_: &str| None;
        assert!(
            credentials(url, None, false, &world(&nothing), &no_files)
                .unwrap()
                .is_none()
        );
        let half = |k: &str| (k == "BITRIX24_CLIENT_ID").then(|| "a".to_string());
        let err = credentials(url, None, false, &world(&half), &no_files).unwrap_err();
        assert!(err.starts_with("BITRIX24_CLIENT_SECRET:"), "{err}");
    }
}
