//! Attachments and tags on `im.notify.*.add`: a bad attach never leaves the library, and
//! `CLIENT_ID` is sent as the docs ask for webhook callers.

use bitrix24::{Attach, Block, Client, Display, Error, GridItem};
use bitrix24_emulator::{Config, Emulator, Plan};
use serde_json::json;

const SECRET: &str = "attach-notify-secret";

async fn emulator() -> Emulator {
    Emulator::start(Config::default().webhook(1, SECRET).plan(Plan::Unlimited))
        .await
        .expect("emulator starts")
}

#[tokio::test]
async fn a_mistake_in_the_attach_is_reported_and_nothing_is_sent() {
    let emu = emulator().await;
    let client = Client::builder(emu.webhook_url(1, SECRET)).build().unwrap();
    let attach = Attach::new([
        Block::message("ok"),
        Block::image("chart", "ftp://x"),
        Block::grid([GridItem::new("", "")]),
    ]);
    let err = client
        .notify()
        .personal(1, "text")
        .attach(attach)
        .send()
        .await
        .unwrap_err();
    match err {
        Error::InvalidArgument { field, message } => {
            assert_eq!(field, "ATTACH");
            assert_eq!(
                message.lines().collect::<Vec<_>>(),
                [
                    "blocks[1].IMAGE.LINK: \"ftp://x\" is not a link the portal accepts (use http://, https:// or /); the portal drops this image",
                    "blocks[2].GRID[0]: has neither NAME nor VALUE; the portal drops it (only DISPLAY \"LINE\" items may be empty)",
                ]
            );
        }
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
    assert!(emu.notifications().is_empty(), "nothing reaches the portal");
}

#[tokio::test]
async fn a_checked_attach_is_stored_as_built() {
    let emu = emulator().await;
    let client = Client::builder(emu.webhook_url(1, SECRET)).build().unwrap();
    let attach = Attach::new([
        Block::message("Deploy finished"),
        Block::grid([GridItem::new("Status", "green").display(Display::Line)]),
    ])
    .color("#29619b");
    let id = client
        .notify()
        .personal(1, "text")
        .attach(attach.clone())
        .send()
        .await
        .unwrap()
        .expect("created");
    let stored = emu
        .notifications()
        .into_iter()
        .find(|n| n.id == id)
        .unwrap();
    let mut want = attach.check().stored().cloned().unwrap();
    want["ID"] = stored.attach.as_ref().unwrap()["ID"].clone();
    assert_eq!(stored.attach, Some(want));
}

#[test]
fn client_id_is_sent_beside_the_tag() {
    let client = Client::builder("https://portal.test/rest/1/secret/")
        .build()
        .unwrap();
    let request = client
        .notify()
        .personal(5, "Task reminder")
        .tag("TASK_REMINDER_42")
        .sub_tag("TASK_REMINDER|42")
        .client_id("my.app")
        .to_request()
        .unwrap();
    assert_eq!(
        serde_json::Value::Object(request.params().clone()),
        json!({
            "USER_ID": "5",
            "MESSAGE": "Task reminder",
            "TAG": "TASK_REMINDER_42",
            "SUB_TAG": "TASK_REMINDER|42",
            "CLIENT_ID": "my.app",
        })
    );
}
