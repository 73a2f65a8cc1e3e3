//! Send a notification with an attachment over an inbound webhook, checking it first.
//!
//! The request is built and checked without a client: errors (what the portal would refuse)
//! stop it, warnings (what the portal would drop or change) are printed and it is sent anyway,
//! unless `B24_STRICT=1`.
//!
//! Against a local emulator:
//!
//! ```sh
//! cargo run -p bitrix24-emulator -- --webhook 1:secret   # prints: listening on http://127.0.0.1:PORT
//! B24_WEBHOOK=http://127.0.0.1:PORT/rest/1/secret/ cargo run -p bitrix24 --example webhook_attach
//! ```
//!
//! Arguments (all optional): `USER_ID MESSAGE`. The webhook URL is a secret: it is read from
//! the environment, never from the command line, and never printed.

use bitrix24::notify::Personal;
use bitrix24::{Attach, Block, Client, Display, GridItem, Link};

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
    let url = std::env::var("B24_WEBHOOK").map_err(
        |_| "set B24_WEBHOOK to the inbound webhook URL (https://PORTAL/rest/USER/SECRET/)",
    )?;
    let strict = std::env::var("B24_STRICT").is_ok_and(|v| v == "1");
    let mut args = std::env::args().skip(1);
    let user: u64 = match args.next() {
        Some(a) => a.parse().map_err(|_| "USER_ID must be a whole number")?,
        None => 1,
    };
    let text = args
        .next()
        .unwrap_or_else(|| "Nightly build finished".into());

    let mut attach = Attach::new([
        Block::message("[B]Build 42[/B] is green"),
        Block::grid([
            GridItem::new("Tests", "1,204 passed").display(Display::Line),
            GridItem::new("Duration", "4m 10s").display(Display::Line),
        ]),
    ])
    .color("#29619b");
    attach.push(Block::link(
        Link::new("https://ci.example.com/builds/42").name("Open the build"),
    ));
    // The docs' own example: the portal accepts it and draws a default line, so it only warns.
    attach.push(Block::from_value(serde_json::json!({"DELIMITER": true})));

    let notification = Personal::new(user, text).attach(attach).strict(strict);
    for warning in notification.check().warnings {
        eprintln!("warning: {} [{}]", warning.line(), warning.rule);
    }
    let client = Client::builder(url).build()?;
    match notification.send(&client).await? {
        Some(id) => println!("sent notification {id}"),
        None => println!("not created: user {user} does not exist or is inactive"),
    }
    Ok(())
}
