//! An OAuth application that refreshes its own tokens and keeps them in a token store.
//!
//! The first run starts from a refresh token; every refresh saves the new pair to the store
//! (a file, mode 0600, locked against other processes) before anything else can fail, so later
//! runs need only the store. Tags work only for OAuth callers, so this one is tagged.
//!
//! Against a local emulator (its built-in app is `local.emulator.app` /
//! `local.emulator.secret`):
//!
//! ```sh
//! cargo run -p bitrix24-emulator -- --webhook 1:secret   # prints: listening on http://127.0.0.1:PORT
//! curl -s -X POST http://127.0.0.1:PORT/_emulator/oauth/issue -d '{"user_id": 1}'   # a refresh_token
//! export B24_PORTAL=http://127.0.0.1:PORT B24_TOKEN_URL=http://127.0.0.1:PORT/oauth/token/
//! export B24_CLIENT_ID=local.emulator.app B24_CLIENT_SECRET=local.emulator.secret
//! B24_REFRESH_TOKEN=… cargo run -p bitrix24 --example oauth_token_store   # first run
//! cargo run -p bitrix24 --example oauth_token_store                       # later runs: the store
//! ```
//!
//! `B24_TOKEN_STORE` names the store file (default `bitrix24-tokens.json` here). Secrets come
//! from the environment only and are never printed.

use bitrix24::notify::System;
use bitrix24::{Client, FileTokenStore, OAuthConfig, TokenStore};

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("set {name}"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // One line and the project's exit codes: 2 refused before sending, 1 anything else.
    if let Err(e) = run().await {
        eprintln!("error: {e}");
        let refused = e
            .downcast_ref::<bitrix24::Error>()
            .is_some_and(|e| matches!(e, bitrix24::Error::InvalidArgument { .. }));
        std::process::exit(if refused { 2 } else { 1 });
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let portal = env("B24_PORTAL")?;
    let store_path =
        std::env::var("B24_TOKEN_STORE").unwrap_or_else(|_| "bitrix24-tokens.json".into());
    let store = FileTokenStore::new(&store_path);
    let mut oauth = OAuthConfig::new(env("B24_CLIENT_ID")?, env("B24_CLIENT_SECRET")?);
    if let Ok(url) = std::env::var("B24_TOKEN_URL") {
        oauth = oauth.token_url(url);
    }
    // The store's pair is newer and wins; the variable is needed on the first run only.
    if let Ok(refresh) = std::env::var("B24_REFRESH_TOKEN") {
        oauth = oauth.refresh_token(refresh);
    }
    let oauth = oauth
        .store(store.clone())
        .on_renewed(|_| eprintln!("tokens renewed and saved"));
    let client = Client::builder(portal).oauth(oauth).build()?;

    let user = 1;
    let id = System::new(user, "Backup finished: 12 GB in 4 minutes")
        .tag("backup")
        .sub_tag("nightly")
        .send(&client)
        .await?;
    match id {
        Some(id) => println!("sent notification {id} (tag backup replaces the previous one)"),
        None => println!("not created: user {user} does not exist or is inactive"),
    }
    let saved = store.load()?.is_some();
    println!(
        "token store {store_path}: {}",
        if saved {
            "holds the current pair"
        } else {
            "empty"
        }
    );
    Ok(())
}
