//! `oint` as an OAuth application against the emulator's OAuth server: processes sharing one
//! token store refresh once between them, credentials come from the environment or the config
//! file with no `--token`, a refused refresh exits 4 with one line, and no secret is printed.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, SystemTime};

use bitrix24::{FileTokenStore, TokenStore, Tokens};
use bitrix24_emulator::{BUILTIN_CLIENT_ID, BUILTIN_CLIENT_SECRET, Config, Emulator};
use common::*;
use secrecy::ExposeSecret;

async fn start() -> Emulator {
    Emulator::start(Config::default())
        .await
        .expect("emulator starts")
}

async fn run(args: &[&str], env: &[(&'static str, String)]) -> Output {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    oint(args, &env).await
}

fn stored(path: &Path) -> Tokens {
    FileTokenStore::new(path)
        .load()
        .unwrap()
        .expect("tokens stored")
}

fn assert_hidden(o: &Output, secrets: &[&str]) {
    for text in [stdout(o), stderr(o)] {
        for secret in secrets {
            assert!(!text.contains(secret), "secret leaked: {text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn eight_processes_share_one_token_store_when_the_token_expires() {
    let emu = start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("tokens.json");
    let (access, refresh) = issue(&emu, 0).await;
    FileTokenStore::new(&store)
        .save(&Tokens::new(
            &access,
            &refresh,
            Some(SystemTime::now() - Duration::from_secs(1)),
        ))
        .unwrap();
    let env = oauth_env(&emu, &refresh, &store);
    let runs = (0..8).map(|i| {
        let env = env.clone();
        async move {
            let text = format!("process {i}");
            run(
                &[
                    "notify", "send", "--user", "2", "--text", &text, "--json", "--debug",
                ],
                &env,
            )
            .await
        }
    });
    let outputs = futures_util::future::join_all(runs).await;
    for o in &outputs {
        assert_eq!(o.status.code(), Some(0), "{}", stderr(o));
    }
    assert_eq!(
        refreshes(&emu).await,
        (1, 0),
        "one refresh, and no invalid_grant"
    );
    assert_eq!(emu.notifications().len(), 8);
    let new = stored(&store);
    let (new_access, new_refresh) = (
        new.access_token().expose_secret().to_string(),
        new.refresh_token().expose_secret().to_string(),
    );
    assert_ne!(new_refresh, refresh);
    let debug: String = outputs.iter().map(stderr).collect();
    assert!(
        debug.contains("refreshed the OAuth access token"),
        "--debug says a refresh happened: {debug}"
    );
    for o in &outputs {
        assert_hidden(
            o,
            &[
                BUILTIN_CLIENT_SECRET,
                &access,
                &refresh,
                &new_access,
                &new_refresh,
            ],
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn environment_alone_is_enough_and_the_store_is_reused() {
    let emu = start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("state").join("tokens.json");
    let (_, refresh) = issue(&emu, 3600).await;
    let env = oauth_env(&emu, &refresh, &store);

    let first = run(&["notify", "send", "--user", "2", "--text", "one"], &env).await;
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let mode = std::fs::metadata(&store).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // The OPI-compatible command, with no --url or --token: the stored token, no refresh.
    let second = run(
        &[
            "bitrix24",
            "CreatePersonalNotification",
            "--user",
            "2",
            "--text",
            "two",
        ],
        &env,
    )
    .await;
    assert_eq!(second.status.code(), Some(0), "{}", stderr(&second));
    let third = run(
        &[
            "call",
            "im.notify.personal.add",
            "USER_ID=2",
            "MESSAGE=three",
        ],
        &env,
    )
    .await;
    assert_eq!(third.status.code(), Some(0), "{}", stderr(&third));
    assert_eq!(refreshes(&emu).await, (1, 0));
    assert_eq!(emu.notifications().len(), 3);
    let new = stored(&store);
    for o in [&first, &second, &third] {
        assert_hidden(
            o,
            &[
                BUILTIN_CLIENT_SECRET,
                &refresh,
                new.access_token().expose_secret(),
                new.refresh_token().expose_secret(),
            ],
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_profile_holds_the_application() {
    let emu = start().await;
    let dir = tempfile::tempdir().unwrap();
    let (_, refresh) = issue(&emu, 0).await;
    let secret_file = dir.path().join("client.secret");
    std::fs::write(&secret_file, format!("{BUILTIN_CLIENT_SECRET}\n")).unwrap();
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let store = dir.path().join("tokens.json");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[portals.app]\nurl = \"{}\"\nclient_id = \"{BUILTIN_CLIENT_ID}\"\nclient_secret_file = \"{}\"\nrefresh_token = \"{refresh}\"\noauth_url = \"{}/oauth/token/\"\ntoken_store = \"{}\"\n",
            emu.url(),
            secret_file.display(),
            emu.url(),
            store.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let env = [("OINT_CONFIG", config.display().to_string())];
    let o = run(
        &[
            "notify", "send", "--portal", "app", "--user", "2", "--text", "hi", "--debug",
        ],
        &env,
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(refreshes(&emu).await, (1, 0));
    assert!(store.exists());
    assert_hidden(&o, &[BUILTIN_CLIENT_SECRET, &refresh]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_refresh_exits_4_with_one_line() {
    let emu = start().await;
    let dir = tempfile::tempdir().unwrap();
    let (_, refresh) = issue(&emu, 0).await;

    // Wrong client secret: invalid_client.
    let mut env = oauth_env(&emu, &refresh, &dir.path().join("a.json"));
    env[2].1 = "wrong-client-secret-8c1".into();
    let o = run(
        &["notify", "send", "--user", "2", "--text", "x", "--debug"],
        &env,
    )
    .await;
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    let err = stderr(&o);
    let last = err.lines().last().unwrap();
    assert!(
        last.starts_with("error: the OAuth server answered invalid_client")
            && last.contains("BITRIX24_CLIENT_SECRET"),
        "{err}"
    );
    assert_hidden(&o, &["wrong-client-secret-8c1", &refresh]);

    // A spent refresh token: invalid_grant, with what to do.
    let spend = run(
        &["notify", "send", "--user", "2", "--text", "spends it"],
        &oauth_env(&emu, &refresh, &dir.path().join("b.json")),
    )
    .await;
    assert_eq!(spend.status.code(), Some(0), "{}", stderr(&spend));
    let o = run(
        &["notify", "send", "--user", "2", "--text", "too late"],
        &oauth_env(&emu, &refresh, &dir.path().join("c.json")),
    )
    .await;
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: the OAuth server answered invalid_grant")
            && err.contains("authorize the application again")
            && err.contains("BITRIX24_REFRESH_TOKEN"),
        "{err}"
    );
    assert!(stdout(&o).is_empty(), "{}", stdout(&o));
    assert_hidden(&o, &[BUILTIN_CLIENT_SECRET, &refresh]);
    assert_eq!(emu.notifications().len(), 1);

    // A client id without a secret is a usage error before anything is sent.
    let o = run(
        &["notify", "send", "--user", "2", "--text", "x"],
        &[
            ("BITRIX24_URL", emu.url()),
            ("BITRIX24_CLIENT_ID", BUILTIN_CLIENT_ID.into()),
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("BITRIX24_CLIENT_SECRET"),
        "{}",
        stderr(&o)
    );
}
