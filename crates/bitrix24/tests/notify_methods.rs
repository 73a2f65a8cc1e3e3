//! The typed read, reply, list and delete-by-tag calls against the emulator over HTTP.

use bitrix24::{Client, Error, NotificationKind, Pacer};
use bitrix24_emulator::{Config, Emulator, Plan};
use futures_util::TryStreamExt;
use serde_json::json;

const SECRET: &str = "methods-secret";
const TOKEN: &str = "methods-token";

async fn setup() -> (Emulator, Client) {
    // Paging tests send well over a burst; limits have tests of their own.
    let config = Config::default()
        .webhook(1, SECRET)
        .access_token(1, TOKEN)
        .plan(Plan::Unlimited);
    let emu = Emulator::start(config).await.unwrap();
    let client = Client::builder(emu.webhook_url(1, SECRET))
        .pacer(Pacer::Off)
        .build()
        .unwrap();
    (emu, client)
}

/// Sends `n` notifications to the caller (user 1) and returns their ids, oldest first.
async fn inbox(client: &Client, n: usize) -> Vec<u64> {
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(
            client
                .notify()
                .system(1, format!("note {i}"))
                .send()
                .await
                .unwrap()
                .unwrap(),
        );
    }
    ids
}

/// Seeds a confirmation notification through the control plane, as the portal's own
/// modules create them (REST cannot).
async fn seed_confirm(emu: &Emulator, user: u64) -> u64 {
    let answer = emu
        .seed_notifications(&json!({"user_id": user, "message": "Join the group?",
                "buttons": [{"TITLE": "Accept", "VALUE": "Y", "TYPE": "accept"},
                            {"TITLE": "Decline", "VALUE": "N", "TYPE": "cancel"}]}))
        .expect("seeded");
    answer["id"].as_u64().expect("seeded id")
}

fn read_flags(emu: &Emulator) -> Vec<(u64, bool)> {
    emu.notifications().iter().map(|n| (n.id, n.read)).collect()
}

#[tokio::test]
async fn read_marks_one_or_everything_newer() {
    let (emu, client) = setup().await;
    let ids = inbox(&client, 3).await;
    assert!(
        client
            .notify()
            .read(ids[1])
            .only_current()
            .send()
            .await
            .unwrap()
    );
    assert_eq!(
        read_flags(&emu),
        vec![(ids[0], false), (ids[1], true), (ids[2], false)]
    );
    assert!(client.notify().read(ids[0]).send().await.unwrap());
    assert!(
        read_flags(&emu).iter().all(|(_, read)| *read),
        "this id and all higher"
    );
    client
        .notify()
        .read(ids[2])
        .unread()
        .only_current()
        .send()
        .await
        .unwrap();
    assert_eq!(read_flags(&emu)[2], (ids[2], false));
}

#[tokio::test]
async fn read_list_and_read_all() {
    let (emu, client) = setup().await;
    let ids = inbox(&client, 4).await;
    assert!(
        client
            .notify()
            .read_list([ids[0], ids[3]])
            .send()
            .await
            .unwrap()
    );
    assert_eq!(read_flags(&emu).iter().filter(|(_, r)| *r).count(), 2);
    assert!(client.notify().read_all().send().await.unwrap());
    assert!(read_flags(&emu).iter().all(|(_, r)| *r));
    // Caller-side checks send nothing.
    assert!(matches!(
        client.notify().read_list([]).send().await,
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        client.notify().read_list([3, 0]).send().await,
        Err(Error::InvalidArgument { .. })
    ));
}

#[tokio::test]
async fn confirm_and_answer() {
    let (emu, client) = setup().await;
    let confirm = seed_confirm(&emu, 1).await;
    let messages = client
        .notify()
        .confirm(confirm, "Y")
        .send()
        .await
        .unwrap()
        .expect("confirmed");
    assert!(!messages.is_empty());
    assert!(
        emu.notifications().iter().all(|n| n.id != confirm),
        "a confirmed notification goes away"
    );

    let id = inbox(&client, 1).await[0];
    let answered = client.notify().answer(id, "On it").send().await.unwrap();
    assert!(answered.is_some_and(|m| !m.is_empty()));
    // Someone else's notification cannot be answered.
    let theirs = client
        .notify()
        .personal(2, "x")
        .send()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        client.notify().answer(theirs, "no").send().await.unwrap(),
        None
    );
    let e = client.notify().confirm(0, "Y").send().await.unwrap_err();
    assert_eq!(e.api().map(|a| a.code.as_str()), Some("ID_ERROR"));
}

#[tokio::test]
async fn get_streams_every_notification_once_across_pages_and_stages() {
    let (emu, client) = setup().await;
    let mut ids = inbox(&client, 120).await;
    ids.push(seed_confirm(&emu, 1).await);
    ids.push(seed_confirm(&emu, 1).await);
    let streamed: Vec<u64> = client
        .notify()
        .get()
        .limit(7)
        .stream()
        .map_ok(|n| n.id)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(streamed.len(), 122, "every notification, once");
    let mut sorted = streamed.clone();
    sorted.sort_unstable();
    sorted.dedup();
    ids.sort_unstable();
    assert_eq!(sorted, ids);
    assert_eq!(
        &streamed[..2],
        &[ids[121], ids[120]],
        "confirmations first, newest first"
    );

    let page = client.notify().get().limit(5).send().await.unwrap();
    assert_eq!(page.notifications.len(), 5);
    assert_eq!(page.total_count, Some(122));
    assert!(
        page.notifications
            .iter()
            .all(|n| n.notify_module.as_deref() == Some("rest"))
    );
    assert!(matches!(
        client.notify().get().limit(51).send().await,
        Err(Error::InvalidArgument { .. })
    ));
}

#[tokio::test]
async fn search_and_schema() {
    let (_emu, client) = setup().await;
    client
        .notify()
        .system(1, "Disk almost full on host-7")
        .send()
        .await
        .unwrap();
    client
        .notify()
        .system(1, "Backup done")
        .send()
        .await
        .unwrap();
    let found = client.notify().search("host-7").send().await.unwrap();
    assert_eq!(found.notifications.len(), 1);
    assert!(found.notifications[0].text.contains("host-7"));
    assert_eq!(found.total_results, Some(1));
    assert!(matches!(
        client.notify().search("ab").send().await,
        Err(Error::InvalidArgument { .. })
    ));

    let schema = client.notify().schema().send().await.unwrap();
    assert!(
        schema
            .values()
            .any(|m| m.events.iter().any(|e| e.id == "rest|rest_notify")),
        "{schema:?}"
    );
}

#[tokio::test]
async fn generic_im_notify_takes_the_type() {
    let (emu, client) = setup().await;
    let request = client
        .notify()
        .with_type(NotificationKind::System, 2, "via im.notify")
        .to_request()
        .unwrap();
    assert_eq!(
        (request.method(), &request.params()["TYPE"]),
        ("im.notify", &json!("SYSTEM"))
    );
    client
        .notify()
        .with_type(NotificationKind::System, 2, "via im.notify")
        .send()
        .await
        .unwrap()
        .unwrap();
    let n = &emu.notifications()[0];
    assert_eq!((n.r#type.as_str(), n.author_id), ("SYSTEM", 0));
}

#[tokio::test]
async fn delete_by_tag_and_sub_tag() {
    let (emu, _) = setup().await;
    let app = Client::builder(emu.url()).token(TOKEN).build().unwrap();
    for user in [2, 3] {
        app.notify()
            .personal(user, "a")
            .tag("alert")
            .sub_tag("host-7")
            .send()
            .await
            .unwrap();
    }
    app.notify()
        .personal(4, "b")
        .sub_tag("host-8")
        .send()
        .await
        .unwrap();
    assert!(
        app.notify()
            .delete_by_sub_tag("host-8")
            .send()
            .await
            .unwrap()
    );
    assert_eq!(emu.notifications().len(), 2);
    assert!(app.notify().delete_by_tag("alert").send().await.unwrap());
    assert!(
        emu.notifications().is_empty(),
        "tags are deleted for every user"
    );

    let hook = Client::builder(emu.webhook_url(1, SECRET)).build().unwrap();
    let e = hook
        .notify()
        .delete_by_tag("alert")
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::InvalidArgument { field, .. } if field == "CLIENT_ID"),
        "{e}"
    );
    assert!(
        hook.notify()
            .delete_by_tag("alert")
            .client_id("my.app")
            .send()
            .await
            .unwrap()
    );
}
