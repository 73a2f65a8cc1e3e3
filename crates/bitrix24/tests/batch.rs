//! `client.batch()` against the emulator: keys, halt, per-command errors, the 50-command
//! limit, `$result` references, and that a command's parameters (nested ATTACH included)
//! arrive exactly as a direct call's do.

use bitrix24::{
    Attach, Block, Client, CommandResult, Error, ErrorCode, GridItem, Pacer, Request, result_ref,
};
use bitrix24_emulator::{Config, Emulator, Plan};
use serde_json::{Value, json};

mod common;
use common::*;

const SECRET: &str = "batch-secret";
const TOKEN: &str = "batch-token";

async fn emulator() -> Emulator {
    Emulator::start(
        Config::default()
            .webhook(1, SECRET)
            .access_token(1, TOKEN)
            .inactive_user(3)
            .plan(Plan::Unlimited),
    )
    .await
    .expect("emulator starts")
}

fn webhook(emu: &Emulator) -> Client {
    Client::builder(emu.webhook_url(1, SECRET))
        .pacer(Pacer::Off)
        .build()
        .unwrap()
}

fn oauth(emu: &Emulator) -> Client {
    Client::builder(emu.url())
        .token(TOKEN)
        .pacer(Pacer::Off)
        .build()
        .unwrap()
}

async fn request_count(emu: &Emulator) -> usize {
    emu.requests().len()
}

fn id_of(result: Option<&CommandResult>) -> u64 {
    match result {
        Some(CommandResult::Ok(v)) => v
            .as_u64()
            .or_else(|| v.as_str()?.parse().ok())
            .unwrap_or_else(|| panic!("not an id: {v}")),
        other => panic!("expected a result, got {other:?}"),
    }
}

#[tokio::test]
async fn named_keys_and_positional_keys_come_back_in_the_order_added() {
    let emu = emulator().await;
    let client = webhook(&emu);
    let answer = client
        .batch()
        .add("second", add(2, "b"))
        .add("first", add(1, "a"))
        .add("inactive", add(3, "c"))
        .send()
        .await
        .unwrap();
    let keys: Vec<&str> = answer.results.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["second", "first", "inactive"]);
    let (b, a) = (id_of(answer.get("second")), id_of(answer.get("first")));
    assert!(matches!(
        answer.get("inactive"),
        Some(CommandResult::Ok(Value::Bool(false)))
    ));
    assert!(answer.time.is_some());

    // Positional keys: the portal answers with lists, read back by index.
    let batch = client.batch().push(add(1, "x")).push(add(2, "y"));
    assert_eq!(batch.len(), 2);
    let answer = batch.send().await.unwrap();
    let keys: Vec<&str> = answer.results.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["0", "1"]);
    let (x, y) = (id_of(answer.get("0")), id_of(answer.get("1")));

    let stored: Vec<(u64, u64, String)> = emu
        .notifications()
        .iter()
        .map(|n| (n.id, n.user_id, n.message.clone()))
        .collect();
    for (id, user, text) in [(b, 2, "b"), (a, 1, "a"), (x, 1, "x"), (y, 2, "y")] {
        assert!(stored.contains(&(id, user, text.into())), "{id} {stored:?}");
    }
    assert_eq!(stored.len(), 4);
    assert_eq!(request_count(&emu).await, 2, "one HTTP request per batch");
}

#[tokio::test]
async fn per_command_errors_are_kept_and_the_rest_run() {
    let emu = emulator().await;
    let answer = webhook(&emu)
        .batch()
        .push(add(1, "ok"))
        .push(Request::new("im.notify.personal.add").param("USER_ID", "1"))
        .push(Request::new("no.such.method"))
        .push(add(2, "after"))
        .send()
        .await
        .unwrap();
    match answer.get("1") {
        Some(CommandResult::Err(e)) => {
            assert_eq!(e.code, ErrorCode::MessageEmpty);
            assert!(!e.description.is_empty());
        }
        other => panic!("{other:?}"),
    }
    match answer.get("2") {
        Some(CommandResult::Err(e)) => assert_eq!(e.code, ErrorCode::MethodNotFound),
        other => panic!("{other:?}"),
    }
    id_of(answer.get("0"));
    id_of(answer.get("3"));
    assert_eq!(emu.notifications().len(), 2);
}

#[tokio::test]
async fn halt_stops_after_the_first_failed_command() {
    let emu = emulator().await;
    let answer = webhook(&emu)
        .batch()
        .add("a", add(1, "runs"))
        .add(
            "b",
            Request::new("im.notify.personal.add").param("MESSAGE", "no user"),
        )
        .add("c", add(1, "never runs"))
        .halt(true)
        .send()
        .await
        .unwrap();
    id_of(answer.get("a"));
    assert!(
        matches!(answer.get("b"), Some(CommandResult::Err(e)) if e.code == ErrorCode::UserIdEmpty)
    );
    assert!(matches!(answer.get("c"), Some(CommandResult::NotRun)));
    let texts: Vec<String> = emu.notifications().into_iter().map(|n| n.message).collect();
    assert_eq!(texts, ["runs"]);
}

#[tokio::test]
async fn more_than_fifty_commands_are_refused_before_sending() {
    let emu = emulator().await;
    let client = webhook(&emu);
    let batch = (0..51).fold(client.batch(), |b, i| b.push(add(1, &format!("n{i}"))));
    assert_eq!(batch.len(), 51);
    assert!(matches!(
        batch.to_request(),
        Err(Error::InvalidArgument { ref field, .. }) if field == "cmd"
    ));
    assert!(matches!(
        batch.send().await,
        Err(Error::InvalidArgument { .. })
    ));
    // Empty batches and reused keys are mistakes too.
    assert!(client.batch().to_request().is_err());
    assert!(
        client
            .batch()
            .add("a", add(1, "x"))
            .add("a", add(1, "y"))
            .to_request()
            .is_err()
    );
    assert_eq!(request_count(&emu).await, 0);
    assert!(emu.notifications().is_empty());

    // Fifty is fine.
    let batch = (0..50).fold(client.batch(), |b, i| b.push(add(1, &format!("n{i}"))));
    let answer = batch.send().await.unwrap();
    assert!(
        answer
            .results
            .iter()
            .all(|(_, r)| matches!(r, CommandResult::Ok(_)))
    );
    assert_eq!(emu.notifications().len(), 50);
}

#[tokio::test]
async fn a_result_reference_is_filled_in_by_the_portal() {
    let emu = emulator().await;
    let answer = webhook(&emu)
        .batch()
        .add("first", add(1, "first"))
        .add(
            "second",
            add(1, &format!("follows {}", result_ref("first", &[]))),
        )
        // A whole-value reference: the raw id.
        .add(
            "read",
            Request::new("im.notify.read").param("ID", result_ref("first", &[])),
        )
        .send()
        .await
        .unwrap();
    let first = id_of(answer.get("first"));
    id_of(answer.get("second"));
    assert!(matches!(answer.get("read"), Some(CommandResult::Ok(_))));
    let stored = emu.notifications();
    let second = stored
        .iter()
        .find(|n| n.message.starts_with("follows"))
        .unwrap();
    assert_eq!(second.message, format!("follows {first}"));
}

/// The same request, once directly and once inside a batch, must store the same thing.
async fn direct_and_batched(client: &Client, emu: &Emulator, request: Request) -> (Value, Value) {
    let summary = |n: &bitrix24_emulator::Notification| {
        let mut attach = n.attach.clone().unwrap_or(Value::Null);
        if attach.is_object() {
            attach["ID"] = json!(0); // random per notification
        }
        json!({"user": n.user_id, "type": n.r#type, "message": n.message,
               "tag": n.tag, "sub_tag": n.sub_tag, "attach": attach})
    };
    let newest = || emu.notifications().into_iter().max_by_key(|n| n.id);
    let direct = match client.execute(&request).await {
        Ok(_) => summary(&newest().unwrap()),
        Err(e) => json!({"error": e.api().map(|a| a.code.as_str().to_owned())}),
    };
    let batched = client.batch().add("x", request).send().await.unwrap();
    let batched = match batched.get("x") {
        Some(CommandResult::Ok(_)) => summary(&newest().unwrap()),
        Some(CommandResult::Err(e)) => json!({"error": e.code.as_str()}),
        other => panic!("{other:?}"),
    };
    (direct, batched)
}

#[tokio::test]
async fn attachments_through_batch_store_what_a_direct_call_stores() {
    let emu = emulator().await;
    let client = webhook(&emu);
    let attach = Attach::new([
        Block::message("Deploy [b]finished[/b] & done: 100% <ok>"),
        Block::grid([
            GridItem::new("Status", "green"),
            GridItem::new("Build", "#42 + 1"),
        ]),
        Block::image("chart", "https://example.com/chart.png?a=1&b=2"),
        Block::file("report.pdf", "https://example.com/r.pdf"),
        Block::delimiter(),
        Block::message("Привет, мир"),
    ])
    .color("#29619b");
    let request = client
        .notify()
        .system(2, "with attach")
        .attach(attach)
        .to_request()
        .unwrap();
    let (direct, batched) = direct_and_batched(&client, &emu, request).await;
    assert_eq!(direct, batched);
    assert!(
        direct["attach"]["BLOCKS"].as_array().unwrap().len() >= 6,
        "{direct}"
    );
}

#[tokio::test]
async fn every_attach_of_the_corpus_survives_a_batch() {
    let emu = emulator().await;
    let client = webhook(&emu);
    let corpus: Value =
        serde_json::from_str(include_str!("data/attach-corpus.json")).expect("corpus is JSON");
    let mut differ = Vec::new();
    for case in corpus["cases"].as_array().unwrap() {
        let request = add(1, "corpus").param("ATTACH", case["attach"].clone());
        let (mut direct, mut batched) = direct_and_batched(&client, &emu, request).await;
        // An invalid COLOR is replaced by a random one.
        let check = Attach::check_json(&case["attach"]);
        if check.issues().iter().any(|i| i.path == "COLOR") {
            for v in [&mut direct, &mut batched] {
                if v["attach"].is_object() {
                    v["attach"]["COLOR"] = json!("random");
                }
            }
        }
        if direct != batched {
            differ.push(format!(
                "{}:\n  direct  {direct}\n  batched {batched}",
                case["name"]
            ));
        }
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
}

#[tokio::test]
async fn batches_work_over_oauth_and_keep_tags() {
    let emu = emulator().await;
    let client = oauth(&emu);
    let tagged = client
        .notify()
        .personal(2, "tagged")
        .tag("build-7")
        .sub_tag("builds")
        .to_request()
        .unwrap();
    let (direct, batched) = direct_and_batched(&client, &emu, tagged).await;
    assert_eq!(direct, batched);
    assert!(
        batched["tag"].as_str().unwrap().ends_with("|build-7"),
        "{batched}"
    );
    // The second copy replaced the first: one notification with that tag.
    assert_eq!(
        emu.notifications()
            .iter()
            .filter(|n| n.tag.is_some())
            .count(),
        1
    );
}
