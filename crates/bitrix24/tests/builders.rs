//! Requests built and checked without a client (`bitrix24::notify::Personal` and the rest),
//! then sent with one: the same requests as the client-bound builders, warnings sent, errors
//! and strict mode refused before anything reaches the portal.

mod common;

use bitrix24::notify::{
    Delete, DeleteTagged, List, Personal, Read, ReadAll, ReadList, Respond, Schema, Search, System,
    Typed,
};
use bitrix24::{Attach, Block, Client, Error, NotificationKind, Rule, Severity};
use bitrix24_emulator::{Config, Emulator, Plan};
use serde_json::json;

const SECRET: &str = "builders-secret";

async fn emulator() -> Emulator {
    Emulator::start(
        Config::default()
            .webhook(1, SECRET)
            .access_token(1, "builders-token")
            .plan(Plan::Unlimited),
    )
    .await
    .expect("emulator starts")
}

fn offline() -> Client {
    Client::builder("https://portal.test/rest/1/secret/")
        .build()
        .unwrap()
}

fn field_of(e: &Error) -> &str {
    match e {
        Error::InvalidArgument { field, .. } => field,
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

#[test]
fn client_free_builders_make_the_requests_of_the_client_bound_ones() {
    let client = offline();
    let attach = Attach::new([Block::message("42 tests"), Block::delimiter()]);
    let free = Personal::new(10, "Build")
        .message_out("Build (mail)")
        .tag("nightly")
        .sub_tag("ci")
        .client_id("app.1")
        .attach(attach.clone())
        .to_request()
        .unwrap();
    let bound = client
        .notify()
        .personal(10, "Build")
        .message_out("Build (mail)")
        .tag("nightly")
        .sub_tag("ci")
        .client_id("app.1")
        .attach(attach.clone())
        .to_request()
        .unwrap();
    assert_eq!(free, bound);
    assert_eq!(free.method(), "im.notify.personal.add");
    assert_eq!(free.params()["SUB_TAG"], "ci");
    assert_eq!(
        System::new(3, "Disk").to_request().unwrap(),
        client.notify().system(3, "Disk").to_request().unwrap()
    );
    let typed = Typed::new(NotificationKind::System, 3, "Disk")
        .to_request()
        .unwrap();
    assert_eq!(typed.method(), "im.notify");
    assert_eq!(typed.params()["TYPE"], "SYSTEM");
    assert_eq!(
        typed,
        client
            .notify()
            .with_type(NotificationKind::System, 3, "Disk")
            .to_request()
            .unwrap()
    );

    let n = client.notify();
    let pairs = [
        (
            Delete::new(7).to_request().unwrap(),
            n.delete(7).to_request().unwrap(),
        ),
        (
            Read::new(7).unread().only_current().to_request().unwrap(),
            n.read(7).unread().only_current().to_request(),
        ),
        (
            ReadList::new([1, 2]).unread().to_request().unwrap(),
            n.read_list([1, 2]).unread().to_request().unwrap(),
        ),
        (
            ReadAll::new().to_request().unwrap(),
            n.read_all().to_request(),
        ),
        (
            Respond::confirm(7, "Y").to_request().unwrap(),
            n.confirm(7, "Y").to_request(),
        ),
        (
            Respond::answer(7, "ok").to_request().unwrap(),
            n.answer(7, "ok").to_request(),
        ),
        (
            List::new().limit(5).convert_text().to_request().unwrap(),
            n.get().limit(5).convert_text().to_request().unwrap(),
        ),
        (
            Search::new("backup")
                .limit(3)
                .after_id(9)
                .to_request()
                .unwrap(),
            n.search("backup")
                .limit(3)
                .after_id(9)
                .to_request()
                .unwrap(),
        ),
        (Schema::new().to_request().unwrap(), n.schema().to_request()),
        (
            DeleteTagged::tag("t")
                .client_id("app.1")
                .to_request()
                .unwrap(),
            n.delete_by_tag("t")
                .client_id("app.1")
                .to_request()
                .unwrap(),
        ),
    ];
    for (free, bound) in pairs {
        assert_eq!(free, bound, "{}", free.method());
    }
}

#[test]
fn errors_are_found_without_a_client_with_their_rule_and_field() {
    let report = Personal::new(0, "  ").check();
    let rules: Vec<_> = report
        .errors
        .iter()
        .map(|f| (f.field.as_str(), f.rule))
        .collect();
    assert_eq!(
        rules,
        [
            ("USER_ID", Rule::UserId),
            ("MESSAGE", Rule::MessageRequired)
        ]
    );
    assert!(report.errors.iter().all(|f| f.severity == Severity::Error));
    let err = Personal::new(0, "  ").to_request().unwrap_err();
    assert_eq!(err.to_string(), "USER_ID: must be a user id of 1 or more");
    let err = Personal::new(1, "").to_request().unwrap_err();
    assert_eq!(field_of(&err), "MESSAGE");
    // Out-of-range values of the other calls, one wording each.
    for (err, field) in [
        (Delete::new(0).to_request().unwrap_err(), "ID"),
        (ReadList::new([]).to_request().unwrap_err(), "IDS"),
        (ReadList::new([3, 0]).to_request().unwrap_err(), "IDS[1]"),
        (List::new().limit(51).to_request().unwrap_err(), "LIMIT"),
        (Search::new("ab").to_request().unwrap_err(), "SEARCH_TEXT"),
        (
            DeleteTagged::sub_tag("").to_request().unwrap_err(),
            "SUB_TAG",
        ),
    ] {
        assert_eq!(field_of(&err), field, "{err}");
    }
}

#[test]
fn a_report_refuses_the_first_field_with_its_lines_in_document_order() {
    let attach = Attach::from_value(json!([
        {"DELIMITER": true},
        {"IMAGE": {"LINK": "ftp://x"}},
        {"MESSAGE": "kept"},
    ]));
    let report = attach.review();
    assert!(
        report.errors.is_empty(),
        "a message is left: nothing refused"
    );
    assert_eq!(report.warnings.len(), 2);
    let err = report.clone().into_result(true).unwrap_err();
    assert_eq!(
        err.to_string(),
        "ATTACH: blocks[0].DELIMITER: is a boolean; the portal ignores it and draws a default delimiter (use {} or {\"SIZE\": 200, \"COLOR\": \"#c6c6c6\"})\n\
         blocks[1].IMAGE.LINK: \"ftp://x\" is not a link the portal accepts (use http://, https:// or /); the portal drops this image"
    );
    // The legacy check is the strict one, with the same lines.
    assert_eq!(
        Attach::from_json(attach.as_json().clone())
            .unwrap_err()
            .to_string(),
        err.to_string()
    );
    // USER_ID is refused before the attach, as the portal checks it first.
    let err = Personal::new(0, "x")
        .attach(attach)
        .strict(true)
        .to_request()
        .unwrap_err();
    assert_eq!(field_of(&err), "USER_ID");
    // What the portal will do, per finding.
    let effects: Vec<_> = report.warnings.iter().map(|f| f.effect()).collect();
    assert_eq!(effects, ["uses its default", "drops the block or item"]);
}

#[test]
fn push_appends_a_block_in_either_form() {
    let mut short = Attach::new([Block::message("one")]);
    short.push(Block::delimiter());
    assert_eq!(
        short.as_json(),
        &json!([{"MESSAGE": "one"}, {"DELIMITER": {}}])
    );
    let mut full = Attach::new([]).color("#ff0000");
    full.push(Block::message("one"));
    assert_eq!(full.as_json()["BLOCKS"], json!([{"MESSAGE": "one"}]));
    assert_eq!(full.as_json()["COLOR"], "#ff0000");
    // A bare block the portal would refuse becomes a list holding it and the new one.
    let mut bare = Attach::from_value(json!({"MESSAGE": "bare"}));
    assert!(bare.review().has_errors());
    bare.push(Block::message("two"));
    assert_eq!(bare.as_json(), &json!(["bare", {"MESSAGE": "two"}]));
    // BLOCKS given as an object (keys ignored by the portal) becomes a list.
    let mut keyed = Attach::from_value(json!({"BLOCKS": {"a": {"MESSAGE": "x"}}}));
    keyed.push(Block::message("y"));
    assert_eq!(
        keyed.as_json()["BLOCKS"],
        json!([{"MESSAGE": "x"}, {"MESSAGE": "y"}])
    );
    assert!(keyed.review().is_clean());
}

#[tokio::test]
async fn a_warned_notification_is_sent_and_strict_mode_keeps_it_back() {
    let emu = emulator().await;
    let client = common::fast_webhook(&emu, SECRET);
    let attach = Attach::from_value(json!([{"MESSAGE": "Build 42"}, {"DELIMITER": true}]));
    let system = System::new(1, "Disk almost full").attach(attach);
    let report = system.check();
    assert!(report.errors.is_empty());
    assert_eq!(report.warnings[0].rule, Rule::DelimiterShape);

    let err = system.clone().strict(true).send(&client).await.unwrap_err();
    assert_eq!(field_of(&err), "ATTACH");
    assert!(emu.notifications().is_empty(), "strict: nothing sent");

    let id = system.send(&client).await.unwrap().expect("created");
    let stored = emu
        .notifications()
        .into_iter()
        .find(|n| n.id == id)
        .unwrap();
    assert_eq!(stored.message, "Disk almost full");
    assert_eq!(
        stored.attach.unwrap()["BLOCKS"],
        json!([{"MESSAGE": "Build 42"}, {"DELIMITER": {"SIZE": 200}}]),
        "the portal draws its default line, as the warning says"
    );
}

#[tokio::test]
async fn an_attach_the_portal_refuses_is_refused_before_sending_even_when_lenient() {
    let emu = emulator().await;
    let client = common::fast_webhook(&emu, SECRET);
    for attach in [
        json!([{"IMAGE": {"LINK": "ftp://x"}}]),
        json!({"MESSAGE": "bare"}),
        json!("[]"),
        json!([{"MESSAGE": "a".repeat(60_000)}]),
    ] {
        let err = Personal::new(1, "text")
            .attach(Attach::from_value(attach.clone()))
            .send(&client)
            .await
            .unwrap_err();
        assert_eq!(field_of(&err), "ATTACH", "{attach}");
        // The portal agrees: sent by hand, it refuses the call.
        let raw = client
            .call(
                "im.notify.personal.add",
                json!({"USER_ID": 1, "MESSAGE": "text", "ATTACH": attach}),
            )
            .await;
        assert!(matches!(raw, Err(Error::Api(_))), "{attach}: {raw:?}");
    }
    assert!(emu.notifications().is_empty());
    // A value the portal ignores is no attach at all, and the notification goes out.
    let id = Personal::new(1, "no attach")
        .attach(Attach::from_value(json!("")))
        .send(&client)
        .await
        .unwrap();
    assert!(id.is_some());
    assert_eq!(emu.notifications()[0].attach, None);
}

#[tokio::test]
async fn the_other_calls_send_with_a_client() {
    let emu = emulator().await;
    let client = common::fast_webhook(&emu, SECRET);
    let oauth = common::fast_oauth(&emu, "builders-token");
    let first = Personal::new(1, "first backup")
        .send(&client)
        .await
        .unwrap()
        .unwrap();
    let tagged = System::new(1, "tagged backup")
        .tag("disk")
        .send(&oauth)
        .await
        .unwrap()
        .unwrap();

    let page = List::new().limit(10).send(&client).await.unwrap();
    let ids: Vec<u64> = page.notifications.iter().map(|n| n.id).collect();
    assert!(ids.contains(&first) && ids.contains(&tagged), "{ids:?}");
    let found = Search::new("backup").send(&client).await.unwrap();
    assert_eq!(found.notifications.len(), 2);
    assert!(Read::new(first).only_current().send(&client).await.unwrap());
    assert!(
        emu.notifications()
            .iter()
            .find(|n| n.id == first)
            .unwrap()
            .read
    );
    assert!(ReadAll::new().send(&client).await.unwrap());
    Schema::new().send(&client).await.unwrap();

    // Deleting by tag over a webhook needs CLIENT_ID; refused before sending.
    let err = DeleteTagged::tag("disk").send(&client).await.unwrap_err();
    assert_eq!(field_of(&err), "CLIENT_ID");
    assert!(DeleteTagged::tag("disk").send(&oauth).await.unwrap());
    assert!(Delete::new(first).send(&client).await.unwrap());
    assert!(emu.notifications().is_empty(), "both deleted");
}
