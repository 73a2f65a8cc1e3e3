//! The config file (`oint::config`): any TOML text, resolved as a modern command would.
//! No panic, one-line errors, and a secret written anywhere in the file never shows in one.

use std::io::Write;
use std::path::PathBuf;

use oint::flags::Connection;
use oint::settings::World;

use crate::portal::MARKER;

/// Keys whose values are paths or public names, which messages may show.
const SHOWN_KEYS: &[&str] = &[
    "token_file",
    "client_secret_file",
    "token_store",
    "oauth_url",
    "client_id",
];

/// Fuzz input: the first byte chooses the flags, the rest is the file (`SECRET` becomes a
/// marker secret).
pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest).replace("SECRET", MARKER);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("config.toml");
    {
        let mut file = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode_0600()
            .open(&path)
            .expect("the config file");
        file.write_all(text.as_bytes())
            .expect("write the config file");
    }
    let config_path = path.display().to_string();
    let env = |name: &str| match name {
        "OINT_CONFIG" => Some(config_path.clone()),
        _ => None,
    };
    let stdin = || Err("no standard input here".to_string());
    let world = World {
        env: &env,
        stdin: &stdin,
        home: Some(dir.path().to_path_buf()),
        config_dir: Some(PathBuf::from("/nonexistent/config")),
        data_dir: Some(dir.path().join("data")),
    };
    let conn = Connection {
        portal: (mode & 1 == 1).then(|| "work".to_string()),
        url: (mode & 2 == 2).then(|| "https://portal.example.com/".to_string()),
        ..Connection::default()
    };
    let shown_ok = marker_only_in_shown_keys(&text);
    let results = [
        oint::settings::target(&conn, &world).map(|_| ()),
        oint::settings::entry_limits(&conn, &world).map(|_| ()),
    ];
    for message in results.into_iter().filter_map(Result::err) {
        assert!(
            !message.contains('\n'),
            "a config error is one line: {message:?}"
        );
        if !shown_ok {
            assert!(
                !message.to_ascii_lowercase().contains(MARKER),
                "a secret from the config file leaks into {message:?}"
            );
        }
    }
}

/// True when the marker appears in the file only as (part of) a value that may be shown.
fn marker_only_in_shown_keys(text: &str) -> bool {
    if !text.contains(MARKER) {
        return true;
    }
    let Ok(table) = text.parse::<toml::Table>() else {
        return false;
    };
    let mut shown_hits = 0;
    count_shown(&toml::Value::Table(table), None, &mut shown_hits);
    shown_hits > 0 && shown_hits >= text.matches(MARKER).count()
}

fn count_shown(value: &toml::Value, key: Option<&str>, hits: &mut usize) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                count_shown(v, Some(k), hits);
            }
        }
        toml::Value::Array(a) => a.iter().for_each(|v| count_shown(v, key, hits)),
        toml::Value::String(s) if key.is_some_and(|k| SHOWN_KEYS.contains(&k)) => {
            *hits += s.matches(MARKER).count();
        }
        _ => {}
    }
}

trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}

impl Mode0600 for std::fs::OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
    }
}
