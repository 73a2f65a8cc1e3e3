//! The library against a real emulator over HTTP: OPI's documented calls, every error code the
//! notification methods produce, and secrets kept out of errors.

use bitrix24::{Attach, Block, Client, Error, ErrorCode};
use bitrix24_emulator::{BUILTIN_CLIENT_ID, Config, Emulator};
use md5::{Digest, Md5};
use serde_json::{Value, json};

const SECRET: &str = "wh-secret-4f9a";
const TOKEN: &str = "oauth-token-77c1";

async fn emulator() -> Emulator {
    Emulator::start(
        Config::default()
            .webhook(1, SECRET)
            .access_token(1, TOKEN)
            .expired_access_token(1, "old-token")
            .inactive_user(9),
    )
    .await
    .expect("emulator starts")
}

fn webhook(emu: &Emulator) -> Client {
    Client::builder(emu.webhook_url(1, SECRET)).build().unwrap()
}

fn oauth(emu: &Emulator, token: &str) -> Client {
    Client::builder(emu.url()).token(token).build().unwrap()
}

fn api_error(result: Result<impl std::fmt::Debug, Error>) -> bitrix24::ApiError {
    match result {
        Err(Error::Api(e)) => *e,
        other => panic!("expected a portal error, got {other:?}"),
    }
}

fn stored_tag(tag: &str) -> String {
    let digest = Md5::digest(BUILTIN_CLIENT_ID.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("MP|{}|{tag}", &hex[..5])
}

#[tokio::test]
async fn opi_webhook_call_with_picture_and_file_blocks() {
    let emu = emulator().await;
    let attach = Attach::new([
        Block::image("Image1", "https://example.com/picture.jpg"),
        Block::file("File1.docx", "https://example.com/document.docx"),
    ]);
    let id = webhook(&emu)
        .notify()
        .personal(1, "Message text")
        .attach(attach)
        .send()
        .await
        .unwrap();
    let id = id.expect("created");

    let stored = emu.notifications();
    assert_eq!(stored.len(), 1);
    let n = &stored[0];
    assert_eq!(
        (n.id, n.user_id, n.author_id, n.r#type.as_str()),
        (id, 1, 1, "USER")
    );
    assert_eq!(n.message, "Message text");
    let attach = serde_json::to_string(n.attach.as_ref().expect("attach stored")).unwrap();
    assert!(
        attach.contains("picture.jpg") && attach.contains("document.docx"),
        "{attach}"
    );
}

#[tokio::test]
async fn opi_token_call_with_tag_new_replaces_the_previous_one() {
    let emu = emulator().await;
    let client = oauth(&emu, TOKEN);
    let first = client
        .notify()
        .personal(10, "Message text")
        .tag("New")
        .send()
        .await
        .unwrap()
        .unwrap();
    let second = client
        .notify()
        .personal(10, "Message text 2")
        .tag("New")
        .send()
        .await
        .unwrap()
        .unwrap();
    assert_ne!(first, second, "a replacement gets a new id");

    let stored = emu.notifications();
    assert_eq!(
        stored.len(),
        1,
        "same tag, same recipient: the old one is gone"
    );
    assert_eq!(stored[0].id, second);
    assert_eq!(stored[0].tag.as_deref(), Some(stored_tag("New").as_str()));
    assert_eq!(stored[0].author_id, 1);
}

#[tokio::test]
async fn tag_is_dropped_for_webhook_callers() {
    let emu = emulator().await;
    let client = webhook(&emu);
    client
        .notify()
        .personal(10, "a")
        .tag("New")
        .send()
        .await
        .unwrap();
    client
        .notify()
        .personal(10, "b")
        .tag("New")
        .send()
        .await
        .unwrap();
    let stored = emu.notifications();
    assert_eq!(stored.len(), 2, "webhook tags do not replace");
    assert!(stored.iter().all(|n| n.tag.is_none()));
}

#[tokio::test]
async fn system_notifications_have_no_author() {
    let emu = emulator().await;
    let id = webhook(&emu)
        .notify()
        .system(10, "Disk almost full")
        .send()
        .await
        .unwrap()
        .unwrap();
    let n = emu
        .notifications()
        .into_iter()
        .find(|n| n.id == id)
        .unwrap();
    assert_eq!(
        (n.author_id, n.r#type.as_str(), n.message.as_str()),
        (0, "SYSTEM", "Disk almost full")
    );
}

#[tokio::test]
async fn missing_or_inactive_recipient_is_none_not_an_error() {
    let emu = emulator().await;
    let client = webhook(&emu);
    assert_eq!(
        client.notify().personal(99, "x").send().await.unwrap(),
        None
    );
    assert_eq!(client.notify().personal(9, "x").send().await.unwrap(), None);
    assert!(emu.notifications().is_empty());
}

#[tokio::test]
async fn delete_by_id_succeeds_only_for_own_notifications() {
    let emu = emulator().await;
    let client = webhook(&emu);
    let to_self = client
        .notify()
        .personal(1, "mine")
        .send()
        .await
        .unwrap()
        .unwrap();
    let to_other = client
        .notify()
        .personal(10, "theirs")
        .send()
        .await
        .unwrap()
        .unwrap();
    assert!(
        !client.notify().delete(to_other).send().await.unwrap(),
        "sent by me but in user 10's chat"
    );
    assert!(client.notify().delete(to_self).send().await.unwrap());
    assert!(
        !client.notify().delete(to_self).send().await.unwrap(),
        "already gone"
    );
    let ids: Vec<u64> = emu.notifications().iter().map(|n| n.id).collect();
    assert_eq!(ids, vec![to_other]);
}

#[tokio::test]
async fn long_messages_are_truncated_by_the_portal() {
    let emu = emulator().await;
    let text = "é".repeat(20_010);
    webhook(&emu)
        .notify()
        .personal(1, text)
        .send()
        .await
        .unwrap()
        .unwrap();
    let stored = &emu.notifications()[0].message;
    assert_eq!(stored.chars().count(), 20_006);
    assert!(stored.ends_with(" (...)"));
}

#[tokio::test]
async fn validation_errors_come_back_typed_with_status() {
    let emu = emulator().await;
    let client = webhook(&emu);
    let cases = [
        (
            json!({"USER_ID": "0", "MESSAGE": "x"}),
            ErrorCode::UserIdEmpty,
            400,
        ),
        // USER_ID is checked before MESSAGE.
        (json!({"MESSAGE": ""}), ErrorCode::UserIdEmpty, 400),
        (
            json!({"USER_ID": 1, "MESSAGE": "   "}),
            ErrorCode::MessageEmpty,
            400,
        ),
        (
            json!({"USER_ID": 1, "MESSAGE": "x", "ATTACH": [{"UNKNOWN": 1}]}),
            ErrorCode::AttachError,
            400,
        ),
        (
            json!({"USER_ID": 1, "MESSAGE": "x", "ATTACH": [{"IMAGE": {"LINK": "ftp://x"}}]}),
            ErrorCode::AttachError,
            400,
        ),
        (
            json!({"USER_ID": 1, "MESSAGE": "x", "ATTACH": [{"MESSAGE": "m".repeat(60_000)}]}),
            ErrorCode::AttachOversize,
            400,
        ),
    ];
    for (params, code, status) in cases {
        let e = api_error(client.call("im.notify.personal.add", params.clone()).await);
        assert_eq!((&e.code, e.status), (&code, status), "{params}");
        assert!(!e.description.is_empty());
        assert_eq!(e.body["error"], Value::String(code.as_str().into()));
    }
    assert!(emu.notifications().is_empty());
}

#[tokio::test]
async fn falsy_attach_is_ignored() {
    let emu = emulator().await;
    let client = webhook(&emu);
    for attach in [json!(""), json!("0"), json!([])] {
        let a = client
            .call(
                "im.notify.personal.add",
                json!({"USER_ID": 1, "MESSAGE": "x", "ATTACH": attach}),
            )
            .await;
        assert!(a.unwrap().result.is_u64(), "{attach}");
    }
}

#[tokio::test]
async fn auth_errors_are_typed_and_marked_auth() {
    let emu = emulator().await;
    let wrong_secret = Client::builder(emu.webhook_url(1, "not-the-secret"))
        .build()
        .unwrap();
    let unknown_user = Client::builder(emu.webhook_url(5, SECRET)).build().unwrap();
    let cases = [
        (wrong_secret, ErrorCode::InvalidCredentials),
        (unknown_user, ErrorCode::InvalidCredentials),
        (oauth(&emu, "old-token"), ErrorCode::ExpiredToken),
        (oauth(&emu, "never-issued"), ErrorCode::InvalidToken),
    ];
    for (client, code) in cases {
        let result = client.notify().personal(1, "x").send().await;
        let shown = format!("{result:?}");
        let e = api_error(result);
        assert_eq!(e.code, code);
        assert_eq!(e.status, 401);
        assert!(Error::from(e).is_auth());
        assert!(
            !shown.contains(SECRET) && !shown.contains("never-issued"),
            "{shown}"
        );
    }
}

#[tokio::test]
async fn the_answer_carries_time() {
    let emu = emulator().await;
    let answer = webhook(&emu)
        .call(
            "im.notify.system.add",
            json!({"USER_ID": 1, "MESSAGE": "t"}),
        )
        .await
        .unwrap();
    let time = answer.time.expect("time");
    assert!(time.start.unwrap() > 1.7e9 && time.finish.unwrap() >= time.start.unwrap());
    assert!(time.duration.is_some() && time.processing.is_some());
    assert!(time.date_start.unwrap().contains('T'));
}

#[tokio::test]
async fn unknown_methods_are_reported() {
    let emu = emulator().await;
    let e = api_error(webhook(&emu).call("im.notify.nonexistent", json!({})).await);
    assert_eq!((e.code, e.status), (ErrorCode::MethodNotFound, 404));
}

#[tokio::test]
async fn caller_side_checks_send_nothing() {
    let emu = emulator().await;
    let client = webhook(&emu);
    for result in [
        client.notify().personal(0, "x").send().await,
        client.notify().system(1, " ").send().await,
    ] {
        assert!(
            matches!(result, Err(Error::InvalidArgument { .. })),
            "{result:?}"
        );
    }
    assert!(matches!(
        client.notify().delete(0).send().await,
        Err(Error::InvalidArgument { .. })
    ));
    assert!(emu.notifications().is_empty());
}

#[tokio::test]
async fn network_failures_are_transport_errors_without_secrets() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let client = Client::builder(format!("http://127.0.0.1:{port}/rest/1/{SECRET}/"))
        .build()
        .unwrap();
    let err = client.notify().personal(1, "x").send().await.unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(
        matches!(err, Error::Transport { connect: true, .. }),
        "{shown}"
    );
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(
        shown.contains("/rest/1/***/im.notify.personal.add"),
        "{shown}"
    );
}
