//! `--url` in the CLI: the flag as `oint::config::resolve` takes it, with or without a token
//! and OAuth application settings, then the library's normalisation.

use std::path::PathBuf;

use oint::flags::Connection;
use oint::settings::World;

use crate::portal::{assert_no_secret, url_and_token};

/// Fuzz input: `URL`, or `URL\0TOKEN`; the first byte's low bits choose the environment.
pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (url, token) = url_and_token(rest);
    crate::portal::check(&url, token.as_deref());

    let oauth_env = mode & 1 == 1;
    let env = |name: &str| match name {
        "BITRIX24_CLIENT_ID" if oauth_env => Some("app.1".to_string()),
        "BITRIX24_CLIENT_SECRET" if oauth_env => Some(format!("{}-client", crate::portal::MARKER)),
        _ => None,
    };
    let stdin = || Err("no standard input here".to_string());
    let world = World {
        env: &env,
        stdin: &stdin,
        home: Some(PathBuf::from("/nonexistent/home")),
        config_dir: None,
        data_dir: Some(PathBuf::from("/nonexistent/data")),
    };
    let conn = Connection {
        url: Some(url.clone()),
        token: token.clone(),
        ..Connection::default()
    };
    match oint::settings::target(&conn, &world) {
        Ok(target) => {
            if let oint::settings::Target::Portal {
                oauth: Some(creds), ..
            } = &target
            {
                assert_no_secret(&url, "the OAuth settings' Debug", &format!("{creds:?}"));
                // The token store's file is named after the host alone: never elsewhere.
                assert_eq!(
                    creds.store.parent(),
                    Some(std::path::Path::new("/nonexistent/data/oint/tokens")),
                    "token store {:?} for {url:?}",
                    creds.store
                );
            }
        }
        Err(message) => {
            assert_no_secret(&url, "a --url error", &message);
            assert!(
                !message.contains('\n'),
                "a --url error is one line: {message:?}"
            );
        }
    }
}
