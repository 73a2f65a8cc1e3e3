//! Conformance tests for the im.notify read/confirm/answer/get/search/schema methods, the probe
//! methods (`user.*`, `profile`, `server.time`, `methods`, `method.get`, `scope`), the portal's
//! answer headers and the docs-vs-source switches. One test per rule, each named after it.
//!
//! Every test starts its own emulator on 127.0.0.1 port 0 and talks raw HTTP to it.

use std::collections::BTreeSet;

use bitrix24_emulator::{
    AuthErrorStatus, BUILTIN_CLIENT_ID, Config, Emulator, Plan, ReadAllResult,
};
use serde_json::{Value, json};

mod common;
use common::*;

/// Paging tests send well over a burst; the rate limit has tests of its own.
fn config() -> Config {
    Config::default()
        .plan(Plan::Unlimited)
        .webhook(1, SECRET)
        .webhook(2, "other")
        .access_token(1, TOKEN)
        .expired_access_token(1, "tok-expired")
        .inactive_user(7)
}

async fn start() -> Emulator {
    start_with(config()).await
}

/// Send `message` to `to` from user 2 (so user 2 is the author); returns the id.
async fn notify(emu: &Emulator, to: u64, message: &str) -> u64 {
    let (status, body) = hook2(
        emu,
        "im.notify.personal.add",
        json!({"USER_ID": to, "MESSAGE": message}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["result"].as_u64().expect("id")
}

/// Seed through the control plane.
async fn seed(emu: &Emulator, body: Value) -> (u16, Value) {
    post_json(&format!("{}/_emulator/notifications", emu.url()), body).await
}

async fn seed_confirm(emu: &Emulator, to: u64, message: &str) -> u64 {
    let (status, body) = seed(
        emu,
        json!({
            "user_id": to,
            "message": message,
            "buttons": [
                {"TITLE": "Accept", "VALUE": "Y", "TYPE": "accept"},
                {"TITLE": "Decline", "VALUE": "N", "TYPE": "cancel"}
            ]
        }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["id"].as_u64().expect("id")
}

fn read_flags(emu: &Emulator) -> Vec<(u64, bool)> {
    emu.notifications().iter().map(|n| (n.id, n.read)).collect()
}

// --- im.notify.read ----------------------------------------------------------------------------

#[tokio::test]
async fn read_marks_this_id_and_all_higher() {
    let emu = start().await;
    let a = notify(&emu, 1, "a").await;
    let b = notify(&emu, 1, "b").await;
    let c = notify(&emu, 1, "c").await;
    let (status, got) = hook(&emu, "im.notify.read", json!({"ID": b})).await;
    assert_eq!((status, &got["result"]), (200, &json!(true)));
    assert_eq!(read_flags(&emu), [(a, false), (b, true), (c, true)]);
}

#[tokio::test]
async fn read_only_current_y_marks_just_that_id() {
    let emu = start().await;
    let a = notify(&emu, 1, "a").await;
    let b = notify(&emu, 1, "b").await;
    hook(
        &emu,
        "im.notify.read",
        json!({"ID": a, "ONLY_CURRENT": "Y"}),
    )
    .await;
    assert_eq!(read_flags(&emu), [(a, true), (b, false)]);
    // Only the exact string 'Y' counts: "y" means "and higher".
    hook(
        &emu,
        "im.notify.read",
        json!({"ID": a, "ONLY_CURRENT": "y"}),
    )
    .await;
    assert_eq!(read_flags(&emu), [(a, true), (b, true)]);
}

#[tokio::test]
async fn read_action_n_marks_unread() {
    let emu = start().await;
    let a = notify(&emu, 1, "a").await;
    let b = notify(&emu, 1, "b").await;
    hook(&emu, "im.notify.read", json!({"ID": a})).await;
    let got = hook(&emu, "im.notify.read", json!({"id": b, "action": "N"})).await;
    assert_eq!(got.1["result"], json!(true));
    assert_eq!(read_flags(&emu), [(a, true), (b, false)]);
}

#[tokio::test]
async fn read_always_returns_true() {
    let emu = start().await;
    let a = notify(&emu, 1, "a").await;
    for body in [json!({}), json!({"ID": -5}), json!({"ID": 999})] {
        let (status, got) = hook(&emu, "im.notify.read", body).await;
        assert_eq!((status, &got["result"]), (200, &json!(true)));
    }
    // A negative ID marks nothing; 999 is above every id.
    assert_eq!(read_flags(&emu), [(a, false)]);
}

#[tokio::test]
async fn read_acts_on_the_callers_own_notifications_only() {
    let emu = start().await;
    let mine = notify(&emu, 1, "mine").await;
    let theirs = notify(&emu, 3, "theirs").await;
    hook(&emu, "im.notify.read", json!({"ID": 0})).await;
    assert_eq!(read_flags(&emu), [(mine, true), (theirs, false)]);
}

// --- im.notify.read.list ---------------------------------------------------------------------

#[tokio::test]
async fn read_list_ids_must_be_an_array() {
    let emu = start().await;
    for body in [json!({}), json!({"IDS": 5}), json!({"IDS": "1,2"})] {
        let got = hook(&emu, "im.notify.read.list", body).await;
        assert_error(
            &got,
            400,
            "PARAMS_ERROR",
            "No IDS param or it is not an array",
        );
    }
}

#[tokio::test]
async fn read_list_stops_at_the_first_id_that_is_not_positive() {
    let emu = start().await;
    let a = notify(&emu, 1, "a").await;
    let b = notify(&emu, 1, "b").await;
    let c = notify(&emu, 1, "c").await;
    let got = hook(&emu, "im.notify.read.list", json!({"IDS": [a, 0, c]})).await;
    assert_eq!(got.1["result"], json!(true));
    assert_eq!(read_flags(&emu), [(a, true), (b, false), (c, false)]);
}

#[tokio::test]
async fn read_list_action_other_than_y_marks_unread() {
    let emu = start().await;
    let a = notify(&emu, 1, "a").await;
    let b = notify(&emu, 1, "b").await;
    // Form body with PHP brackets, as BX24.js sends it.
    let url = format!("{}im.notify.read.list", emu.webhook_url(1, SECRET));
    post_form(&url, &format!("IDS[]={a}&IDS[]={b}")).await;
    assert_eq!(read_flags(&emu), [(a, true), (b, true)]);
    post_form(&url, &format!("IDS[]={a}&ACTION=n")).await;
    assert_eq!(read_flags(&emu), [(a, false), (b, true)]);
}

#[tokio::test]
async fn read_list_skips_confirm_notifications() {
    let emu = start().await;
    let c = seed_confirm(&emu, 1, "join?").await;
    let n = notify(&emu, 1, "plain").await;
    hook(&emu, "im.notify.read.list", json!({"IDS": [c, n]})).await;
    assert_eq!(read_flags(&emu), [(c, false), (n, true)]);
}

// --- im.notify.read.all ----------------------------------------------------------------------

#[tokio::test]
async fn read_all_answers_the_documented_object_by_default() {
    let emu = start().await;
    notify(&emu, 1, "a").await;
    notify(&emu, 1, "b").await;
    let other = notify(&emu, 3, "not mine").await;
    let (status, body) = hook(&emu, "im.notify.read.all", json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(body["result"], json!({"result": true, "newCounter": 0}));
    let unread: Vec<u64> = emu
        .notifications()
        .iter()
        .filter(|n| !n.read)
        .map(|n| n.id)
        .collect();
    assert_eq!(unread, [other]);
}

#[tokio::test]
async fn read_all_source_form_is_plain_true() {
    let emu = Emulator::start(config().read_all_result(ReadAllResult::Source))
        .await
        .unwrap();
    notify(&emu, 1, "a").await;
    let (status, body) = hook(&emu, "im.notify.read.all", json!({})).await;
    assert_eq!((status, &body["result"]), (200, &json!(true)));
    assert!(emu.notifications()[0].read);
}

#[tokio::test]
async fn read_all_new_counter_counts_unanswered_confirms() {
    let emu = start().await;
    seed_confirm(&emu, 1, "join?").await;
    notify(&emu, 1, "a").await;
    let (_, body) = hook(&emu, "im.notify.read.all", json!({})).await;
    assert_eq!(body["result"]["newCounter"], json!(1));
}

// --- im.notify.confirm -----------------------------------------------------------------------

#[tokio::test]
async fn confirm_id_error_when_no_positive_id() {
    let emu = start().await;
    for body in [
        json!({"NOTIFY_VALUE": "Y"}),
        json!({"NOTIFY_ID": 0, "NOTIFY_VALUE": "Y"}),
        json!({"ID": "abc", "NOTIFY_VALUE": "Y"}),
        // ID overrides NOTIFY_ID even when ID is worse.
        json!({"ID": -1, "NOTIFY_ID": 5, "NOTIFY_VALUE": "Y"}),
        // The ID check comes before the value check.
        json!({}),
    ] {
        let got = hook(&emu, "im.notify.confirm", body).await;
        assert_error(&got, 400, "ID_ERROR", "Notification ID can't be empty");
    }
}

#[tokio::test]
async fn confirm_notify_value_error_with_two_spaces() {
    let emu = start().await;
    for body in [
        json!({"NOTIFY_ID": 1}),
        json!({"NOTIFY_ID": 1, "NOTIFY_VALUE": ""}),
        // PHP empty(): "0" is empty too.
        json!({"NOTIFY_ID": 1, "NOTIFY_VALUE": "0"}),
    ] {
        let got = hook(&emu, "im.notify.confirm", body).await;
        assert_error(
            &got,
            400,
            "NOTIFY_VALUE_ERROR",
            "Notification Value  can't be empty",
        );
    }
}

#[tokio::test]
async fn confirm_chooses_a_button_and_removes_the_notification() {
    let emu = start().await;
    let id = seed_confirm(&emu, 1, "Join the group?").await;
    let (status, body) = hook(
        &emu,
        "im.notify.confirm",
        json!({"NOTIFY_ID": id, "NOTIFY_VALUE": "Y"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let messages = body["result"]["result_message"].as_array().expect("list");
    assert_eq!(messages.len(), 1);
    assert!(messages[0].as_str().unwrap().contains("Accept"));
    assert!(emu.notifications().is_empty());
    // It is gone: a second confirm finds nothing.
    let (_, again) = hook(
        &emu,
        "im.notify.confirm",
        json!({"ID": id, "NOTIFY_VALUE": "Y"}),
    )
    .await;
    assert_eq!(again["result"], json!({"result_message": false}));
}

#[tokio::test]
async fn confirm_with_an_unknown_value_removes_it_with_no_messages() {
    let emu = start().await;
    let id = seed_confirm(&emu, 1, "Join?").await;
    let (_, body) = hook(
        &emu,
        "im.notify.confirm",
        json!({"ID": id, "NOTIFY_VALUE": "maybe"}),
    )
    .await;
    assert_eq!(body["result"], json!({"result_message": []}));
    assert!(emu.notifications().is_empty());
}

#[tokio::test]
async fn confirm_is_false_for_regular_or_foreign_notifications() {
    let emu = start().await;
    let plain = notify(&emu, 1, "plain").await;
    let foreign = seed_confirm(&emu, 3, "not yours").await;
    for id in [plain, foreign, 999] {
        let (status, body) = hook(
            &emu,
            "im.notify.confirm",
            json!({"ID": id, "NOTIFY_VALUE": "Y"}),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(body["result"], json!({"result_message": false}));
    }
    assert_eq!(emu.notifications().len(), 2);
}

// --- im.notify.answer ------------------------------------------------------------------------

#[tokio::test]
async fn answer_id_error_then_answer_text_error() {
    let emu = start().await;
    let got = hook(&emu, "im.notify.answer", json!({"ANSWER_TEXT": "hi"})).await;
    assert_error(&got, 400, "ID_ERROR", "Notification ID can't be empty");
    for text in [json!(null), json!(""), json!("  \n ")] {
        let got = hook(
            &emu,
            "im.notify.answer",
            json!({"NOTIFY_ID": 3, "ANSWER_TEXT": text}),
        )
        .await;
        assert_error(&got, 400, "ANSWER_TEXT_ERROR", "ANSWER_TEXT can't be empty");
    }
}

#[tokio::test]
async fn answer_own_notification_gives_messages_else_false() {
    let emu = start().await;
    let mine = notify(&emu, 1, "reply to me").await;
    let theirs = notify(&emu, 3, "not yours").await;
    let (status, body) = hook(
        &emu,
        "im.notify.answer",
        json!({"ID": mine, "ANSWER_TEXT": "ok"}),
    )
    .await;
    assert_eq!(status, 200);
    let messages = body["result"]["result_message"].as_array().expect("list");
    assert_eq!(messages.len(), 1);
    // Answering keeps the notification.
    assert_eq!(emu.notifications().len(), 2);
    let (_, body) = hook(
        &emu,
        "im.notify.answer",
        json!({"ID": theirs, "ANSWER_TEXT": "ok"}),
    )
    .await;
    assert_eq!(body["result"], json!({"result_message": false}));
}

// --- im.notify.get ---------------------------------------------------------------------------

#[tokio::test]
async fn get_last_id_and_last_type_must_come_together() {
    let emu = start().await;
    for body in [json!({"LAST_ID": 5}), json!({"LAST_TYPE": 3})] {
        let got = hook(&emu, "im.notify.get", body).await;
        assert_error(
            &got,
            400,
            "LAST_ID_AND_LAST_TYPE",
            "Parameters LAST_ID and LAST_TYPE should be used together.",
        );
    }
}

#[tokio::test]
async fn get_last_id_must_be_digits() {
    let emu = start().await;
    for last_id in [
        json!("abc"),
        json!("-1"),
        json!("1.5"),
        json!(" 7"),
        json!(""),
    ] {
        let got = hook(
            &emu,
            "im.notify.get",
            json!({"LAST_ID": last_id, "LAST_TYPE": 3}),
        )
        .await;
        assert_error(
            &got,
            400,
            "LAST_ID_STRING",
            "Last notification ID can't be string",
        );
    }
    let (status, _) = hook(
        &emu,
        "im.notify.get",
        json!({"LAST_ID": "12", "LAST_TYPE": 3}),
    )
    .await;
    assert_eq!(status, 200);
}

/// Walk `im.notify.get` the way the docs say: last id and the stage of the last item.
async fn walk(emu: &Emulator, limit: Option<u64>) -> Vec<Vec<u64>> {
    let mut pages = Vec::new();
    let mut cursor: Option<(u64, u64)> = None;
    loop {
        let mut body = json!({});
        if let Some(limit) = limit {
            body["LIMIT"] = json!(limit);
        }
        if let Some((id, stage)) = cursor {
            body["LAST_ID"] = json!(id);
            body["LAST_TYPE"] = json!(stage);
        }
        let (status, got) = hook(emu, "im.notify.get", body).await;
        assert_eq!(status, 200, "{got}");
        let items = got["result"]["notifications"].as_array().unwrap().clone();
        if items.is_empty() {
            return pages;
        }
        let last = items.last().unwrap();
        let stage = if last["notify_type"] == json!(1) {
            1
        } else {
            3
        };
        cursor = Some((last["id"].as_u64().unwrap(), stage));
        pages.push(items.iter().map(|n| n["id"].as_u64().unwrap()).collect());
        assert!(pages.len() < 100, "paging does not end");
    }
}

#[tokio::test]
async fn get_pages_through_120_notifications_exactly_once() {
    let emu = start().await;
    let mut sent = BTreeSet::new();
    for i in 0..120 {
        sent.insert(notify(&emu, 1, &format!("n{i}")).await);
    }
    // Someone else's notifications never show up.
    notify(&emu, 3, "other").await;
    let pages = walk(&emu, None).await;
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, [50, 50, 20]);
    let seen: Vec<u64> = pages.concat();
    let unique: BTreeSet<u64> = seen.iter().copied().collect();
    assert_eq!(seen.len(), unique.len(), "an id came twice");
    assert_eq!(unique, sent);
    // Newest first.
    let mut sorted = seen.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(seen, sorted);
}

#[tokio::test]
async fn get_lists_confirms_first_then_regular_and_pages_across_stages() {
    let emu = start().await;
    let mut regular = Vec::new();
    let mut confirms = Vec::new();
    for i in 0..4 {
        regular.push(notify(&emu, 1, &format!("r{i}")).await);
        confirms.push(seed_confirm(&emu, 1, &format!("c{i}")).await);
    }
    let pages = walk(&emu, Some(3)).await;
    let seen = pages.concat();
    confirms.reverse();
    regular.reverse();
    let expected: Vec<u64> = confirms.iter().chain(regular.iter()).copied().collect();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn get_limit_defaults_to_50_and_is_capped_at_50() {
    let emu = start().await;
    for i in 0..55 {
        notify(&emu, 1, &format!("n{i}")).await;
    }
    for (limit, expected) in [
        (json!(null), 50),
        (json!(500), 50),
        (json!("7"), 7),
        (json!(0), 50),
    ] {
        let (_, body) = hook(&emu, "im.notify.get", json!({"LIMIT": limit})).await;
        let got = body["result"]["notifications"].as_array().unwrap().len();
        assert_eq!(got, expected, "LIMIT {limit}");
    }
}

#[tokio::test]
async fn get_result_has_the_documented_shape() {
    let emu = start().await;
    let first = notify(&emu, 1, "Reminder").await;
    let (_, sys) = hook(
        &emu,
        "im.notify.system.add",
        json!({"USER_ID": 1, "MESSAGE": "system", "ATTACH": [{"MESSAGE": "att"}]}),
    )
    .await;
    hook(
        &emu,
        "im.notify.read",
        json!({"ID": first, "ONLY_CURRENT": "Y"}),
    )
    .await;
    let (status, body) = hook(&emu, "im.notify.get", json!({})).await;
    assert_eq!(status, 200);
    let result = &body["result"];
    let keys = object_keys(result);
    assert_eq!(
        keys,
        [
            "total_count",
            "total_unread_count",
            "chat_id",
            "notifications",
            "users"
        ]
    );
    assert_eq!(result["total_count"], json!(2));
    assert_eq!(result["total_unread_count"], json!(1));
    let chat_id = result["chat_id"].as_u64().expect("int chat id");
    let items = result["notifications"].as_array().unwrap();
    // Newest first: the system one.
    let n = &items[1];
    assert_eq!(n["id"], json!(first));
    assert_eq!(n["chat_id"], json!(chat_id));
    assert_eq!(n["author_id"], json!(2));
    assert_eq!(n["notify_type"], json!(2));
    assert_eq!(n["notify_module"], json!("rest"));
    assert_eq!(n["notify_event"], json!("rest_notify"));
    assert_eq!(n["setting_name"], json!("rest|rest_notify"));
    assert_eq!(n["notify_tag"], json!(""));
    assert_eq!(n["notify_sub_tag"], json!(""));
    assert_eq!(n["notify_title"], json!(""));
    assert_eq!(n["text"], json!("Reminder"));
    assert_eq!(n["notify_read"], json!("Y"));
    assert_eq!(n["params"], Value::Null);
    assert!(n.get("notify_buttons").is_none());
    let date = n["date"].as_str().unwrap();
    assert_eq!(date.len(), 25, "{date}");
    assert_eq!(&date[10..11], "T");
    let s = &items[0];
    assert_eq!(s["id"], sys["result"]);
    assert_eq!(s["author_id"], json!(0));
    assert_eq!(s["notify_type"], json!(4));
    assert_eq!(s["notify_read"], json!("N"));
    assert_eq!(
        s["params"]["ATTACH"][0]["BLOCKS"][0]["MESSAGE"],
        json!("att")
    );
    // The users are the authors: user 2 only (system notifications have none).
    let users = result["users"].as_array().unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0]["id"], json!(2));
    assert_eq!(users[0]["active"], json!(true));
    for key in [
        "name",
        "first_name",
        "last_name",
        "color",
        "gender",
        "type",
        "email",
    ] {
        assert!(users[0][key].is_string(), "users[0].{key}");
    }
    assert_eq!(users[0]["departments"], json!([1]));
}

#[tokio::test]
async fn get_shows_tags_and_buttons() {
    let emu = start().await;
    oauth(
        &emu,
        "im.notify.personal.add",
        json!({"USER_ID": 1, "MESSAGE": "tagged", "TAG": "T1", "SUB_TAG": "S1"}),
    )
    .await;
    let id = seed_confirm(&emu, 1, "Join?").await;
    let (_, body) = hook(&emu, "im.notify.get", json!({})).await;
    let items = body["result"]["notifications"].as_array().unwrap();
    let confirm = &items[0];
    assert_eq!(confirm["id"], json!(id));
    assert_eq!(confirm["notify_type"], json!(1));
    // A JSON keyboard, as a string.
    let buttons: Value =
        serde_json::from_str(confirm["notify_buttons"].as_str().expect("string")).unwrap();
    assert_eq!(buttons[0]["VALUE"], json!("Y"));
    let tagged = &items[1];
    let tag = tagged["notify_tag"].as_str().unwrap();
    assert!(tag.starts_with("MP|") && tag.ends_with("|T1"), "{tag}");
    assert!(tagged["notify_sub_tag"].as_str().unwrap().ends_with("|S1"));
    // The OAuth app's user 1 is the author.
    assert_eq!(tagged["author_id"], json!(1));
}

#[tokio::test]
async fn get_with_no_notifications_has_only_the_two_lists() {
    let emu = start().await;
    let (status, body) = hook(&emu, "im.notify.get", json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(body["result"], json!({"notifications": [], "users": []}));
}

#[tokio::test]
async fn get_convert_text_y_turns_bb_codes_into_html() {
    let emu = start().await;
    notify(&emu, 1, "[b]Bold[/b] <x> [url=https://a.b/c]link[/url]").await;
    let url = format!("{}im.notify.get", emu.webhook_url(1, SECRET));
    let raw = client()
        .post(&url)
        .json(&json!({"CONVERT_TEXT": "Y"}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // HTML in answers is escaped the PHP way.
    assert!(
        raw.contains("\\u003Cb\\u003EBold\\u003C\\/b\\u003E"),
        "{raw}"
    );
    assert!(raw.contains("\\u0026lt;x\\u0026gt;"), "{raw}");
    let (_, plain) = hook(&emu, "im.notify.get", json!({"CONVERT_TEXT": "N"})).await;
    assert_eq!(
        plain["result"]["notifications"][0]["text"],
        json!("[b]Bold[/b] <x> [url=https://a.b/c]link[/url]")
    );
}

// --- im.notify.history.search ----------------------------------------------------------------

#[tokio::test]
async fn history_search_text_needs_three_symbols_without_type_or_date() {
    let emu = start().await;
    for body in [
        json!({}),
        json!({"SEARCH_TEXT": "ab"}),
        json!({"SEARCH_TEXT": "  ab  "}),
    ] {
        let got = hook(&emu, "im.notify.history.search", body).await;
        // "then": the server source's spelling (the docs write "than").
        assert_error(
            &got,
            400,
            "SEARCH_TEXT_ERROR",
            "SEARCH_TEXT can't be less then 3 symbols",
        );
    }
    for body in [
        json!({"SEARCH_TEXT": "ab", "SEARCH_TYPE": "rest"}),
        json!({"SEARCH_DATE": "2026-03-03T16:52:29+01:00"}),
        json!({"SEARCH_TEXT": "abc"}),
    ] {
        let (status, got) = hook(&emu, "im.notify.history.search", body).await;
        assert_eq!(status, 200, "{got}");
    }
}

#[tokio::test]
async fn history_search_last_id_must_be_digits() {
    let emu = start().await;
    let got = hook(
        &emu,
        "im.notify.history.search",
        json!({"SEARCH_TEXT": "abc", "LAST_ID": "x1"}),
    )
    .await;
    assert_error(
        &got,
        400,
        "LAST_ID_STRING",
        "Last notification ID can't be string",
    );
}

#[tokio::test]
async fn history_search_finds_text_and_gives_total_results_on_the_first_page_only() {
    let emu = start().await;
    let mut invoices = Vec::new();
    for i in 0..5 {
        invoices.push(notify(&emu, 1, &format!("Invoice #{i} paid")).await);
        notify(&emu, 1, &format!("other {i}")).await;
    }
    notify(&emu, 3, "invoice for someone else").await;
    let (_, first) = hook(
        &emu,
        "im.notify.history.search",
        json!({"SEARCH_TEXT": "INVOICE", "LIMIT": 3}),
    )
    .await;
    let result = &first["result"];
    assert_eq!(result["total_results"], json!(5));
    assert!(result["chat_id"].is_u64());
    let page1: Vec<u64> = result["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_u64().unwrap())
        .collect();
    let (_, second) = hook(
        &emu,
        "im.notify.history.search",
        json!({"SEARCH_TEXT": "INVOICE", "LIMIT": 3, "LAST_ID": page1[2]}),
    )
    .await;
    assert!(second["result"].get("total_results").is_none());
    let page2: Vec<u64> = second["result"]["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_u64().unwrap())
        .collect();
    invoices.reverse();
    assert_eq!([page1, page2].concat(), invoices);
}

#[tokio::test]
async fn history_search_filters_by_type_and_date() {
    let emu = start().await;
    let day = 1_772_534_400; // 2026-03-03T10:40:00+00:00
    let (_, old) = seed(
        &emu,
        json!({"user_id": 1, "message": "old news", "author_id": 2, "created_at": day}),
    )
    .await;
    notify(&emu, 1, "today").await;
    let (_, by_date) = hook(
        &emu,
        "im.notify.history.search",
        json!({"SEARCH_DATE": "2026-03-03T16:52:29+01:00"}),
    )
    .await;
    let ids: Vec<&Value> = by_date["result"]["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| &n["id"])
        .collect();
    assert_eq!(ids, [&old["id"]]);
    let (_, by_type) = hook(
        &emu,
        "im.notify.history.search",
        json!({"SEARCH_TYPE": "tasks|task_update"}),
    )
    .await;
    assert_eq!(by_type["result"]["total_results"], json!(0));
    let (_, rest) = hook(
        &emu,
        "im.notify.history.search",
        json!({"SEARCH_TYPE": "rest|rest_notify"}),
    )
    .await;
    assert_eq!(rest["result"]["total_results"], json!(2));
}

/// portal-behaviour §5.13: the docs' filters (`SEARCH_TYPES`, `SEARCH_AUTHORS`,
/// `SEARCH_DATE_FROM`/`_TO`, `GROUP_TAG`) each lift the 3-character rule and each filter.
#[tokio::test]
async fn history_search_docs_filters_lift_the_text_rule_and_filter() {
    let emu = start().await;
    let march = 1_772_534_400; // 2026-03-03T10:40:00+00:00
    let mut ids = Vec::new();
    for (author, at, tag) in [
        (2, march, "TASK|42"),
        (3, march + 86_400, "TASK|7"),
        (2, march + 2 * 86_400, ""),
    ] {
        let (status, body) = seed(
            &emu,
            json!({"user_id": 1, "message": "n", "author_id": author, "created_at": at, "tag": tag}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        ids.push(body["id"].clone());
    }
    let found = |body: &Value| -> Vec<Value> {
        body["result"]["notifications"]
            .as_array()
            .unwrap_or_else(|| panic!("{body}"))
            .iter()
            .map(|n| n["id"].clone())
            .collect()
    };
    let cases = [
        (json!({"SEARCH_TYPES": ["tasks|task_update"]}), vec![]),
        (
            json!({"SEARCH_TYPES": ["tasks", "rest"]}),
            vec![ids[2].clone(), ids[1].clone(), ids[0].clone()],
        ),
        (json!({"SEARCH_AUTHORS": [3]}), vec![ids[1].clone()]),
        (
            json!({"SEARCH_AUTHORS": ["2"], "SEARCH_TEXT": "n"}),
            vec![ids[2].clone(), ids[0].clone()],
        ),
        (
            json!({"SEARCH_DATE_FROM": "2026-03-04T00:00:00+00:00", "SEARCH_DATE_TO": "2026-03-05T23:59:59+00:00"}),
            vec![ids[2].clone(), ids[1].clone()],
        ),
        (
            json!({"SEARCH_DATE_TO": "2026-03-03T23:00:00+00:00"}),
            vec![ids[0].clone()],
        ),
        (json!({"GROUP_TAG": "TASK|42"}), vec![ids[0].clone()]),
    ];
    for (params, want) in cases {
        let (status, body) = hook(&emu, "im.notify.history.search", params.clone()).await;
        assert_eq!(status, 200, "{params}: {body}");
        assert_eq!(found(&body), want, "{params}: {body}");
    }
    let got = hook(
        &emu,
        "im.notify.history.search",
        json!({"SEARCH_TEXT": "n", "LIMIT": 5}),
    )
    .await;
    assert_error(
        &got,
        400,
        "SEARCH_TEXT_ERROR",
        "SEARCH_TEXT can't be less then 3 symbols",
    );
}

// --- im.notify.schema.get --------------------------------------------------------------------

#[tokio::test]
async fn schema_get_lists_modules_and_their_types() {
    let emu = start().await;
    let (status, body) = hook(&emu, "im.notify.schema.get", json!({})).await;
    assert_eq!(status, 200);
    let rest = &body["result"]["rest"];
    assert_eq!(rest["MODULE_ID"], json!("rest"));
    assert!(rest["NAME"].is_string());
    assert_eq!(rest["LIST"][0]["ID"], json!("rest|rest_notify"));
    for (module, entry) in body["result"].as_object().unwrap() {
        for item in entry["LIST"].as_array().unwrap() {
            let id = item["ID"].as_str().unwrap();
            assert!(id.starts_with(&format!("{module}|")), "{id}");
        }
    }
}

// --- probe methods ---------------------------------------------------------------------------

#[tokio::test]
async fn methods_hides_private_methods_that_stay_callable() {
    let emu = start().await;
    let (status, body) = hook(&emu, "methods", json!({})).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = body["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for public in [
        "im.notify",
        "im.notify.personal.add",
        "im.notify.read.all",
        "im.notify.confirm",
        "user.current",
        "server.time",
        "scope",
    ] {
        assert!(names.contains(&public), "{public} missing from {names:?}");
    }
    for private in [
        "im.notify.get",
        "im.notify.history.search",
        "im.notify.schema.get",
    ] {
        assert!(!names.contains(&private), "{private} listed");
        let (status, _) = hook(&emu, private, json!({"SEARCH_TEXT": "abc"})).await;
        assert_eq!(status, 200, "{private} not callable");
    }
}

#[tokio::test]
async fn methods_scope_narrows_the_list() {
    let emu = start().await;
    let (_, user) = hook(&emu, "methods", json!({"scope": "user"})).await;
    assert_eq!(user["result"], json!(["user.current", "user.get"]));
    let (_, basic) = hook(&emu, "methods", json!({"scope": ""})).await;
    assert!(
        basic["result"]
            .as_array()
            .unwrap()
            .contains(&json!("server.time"))
    );
    assert!(
        !basic["result"]
            .as_array()
            .unwrap()
            .contains(&json!("user.get"))
    );
    let (_, none) = hook(&emu, "methods", json!({"scope": "crm"})).await;
    assert_eq!(none["result"], json!([]));
}

#[tokio::test]
async fn method_get_reports_existence_and_availability() {
    let emu = start().await;
    for (name, expected) in [
        ("user.get", json!({"isExisting": true, "isAvailable": true})),
        (
            "im.notify.get",
            json!({"isExisting": true, "isAvailable": true}),
        ),
        (
            "User.Get",
            json!({"isExisting": false, "isAvailable": false}),
        ),
        (
            "crm.lead.list",
            json!({"isExisting": false, "isAvailable": false}),
        ),
    ] {
        let (_, body) = hook(&emu, "method.get", json!({"name": name})).await;
        assert_eq!(body["result"], expected, "{name}");
    }
}

#[tokio::test]
async fn scope_lists_granted_scopes_and_full_lists_all() {
    let emu = start().await;
    let (_, granted) = hook(&emu, "scope", json!({})).await;
    assert_eq!(granted["result"], json!(["im", "user"]));
    let (_, full) = hook(&emu, "scope", json!({"full": true})).await;
    let full = full["result"].as_array().unwrap();
    assert!(full.len() > 2 && full.contains(&json!("im")));
    // JSON false is false; a form "false" is a truthy string in PHP.
    let (_, json_false) = hook(&emu, "scope", json!({"full": false})).await;
    assert_eq!(json_false["result"], json!(["im", "user"]));
    let url = format!("{}scope", emu.webhook_url(1, SECRET));
    let (_, form_false) = post_form(&url, "full=false").await;
    assert_eq!(form_false["result"].as_array().unwrap().len(), full.len());
}

#[tokio::test]
async fn user_current_is_the_caller_with_string_id() {
    let emu = start().await;
    let (status, body) = hook2(&emu, "user.current", json!({})).await;
    assert_eq!(status, 200);
    let me = &body["result"];
    assert_eq!(me["ID"], json!("2"));
    assert_eq!(me["ACTIVE"], json!(true));
    for key in [
        "NAME",
        "LAST_NAME",
        "EMAIL",
        "DATE_REGISTER",
        "LAST_LOGIN",
        "WORK_POSITION",
    ] {
        assert!(
            me[key].as_str().is_some_and(|s| !s.is_empty()),
            "{key} in {me}"
        );
    }
    assert_eq!(me["UF_DEPARTMENT"], json!([1]));
    let (_, oauth_me) = oauth(&emu, "user.current", json!({})).await;
    assert_eq!(oauth_me["result"]["ID"], json!("1"));
}

#[tokio::test]
async fn user_get_filters_by_id_and_shows_inactive_users_as_inactive() {
    let emu = start().await;
    let (status, body) = hook(&emu, "user.get", json!({"ID": 7})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["total"], json!(1));
    assert!(body.get("next").is_none());
    assert_eq!(body["result"][0]["ID"], json!("7"));
    assert_eq!(body["result"][0]["ACTIVE"], json!(false));
    let (_, filtered) = hook(&emu, "user.get", json!({"FILTER": {"@ID": [2, 3, 99]}})).await;
    let ids: Vec<&Value> = filtered["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| &u["ID"])
        .collect();
    assert_eq!(ids, [&json!("2"), &json!("3")]);
    let (_, active) = hook(&emu, "user.get", json!({"filter": {"ACTIVE": true}})).await;
    assert_eq!(active["total"], json!(9));
    let (_, none) = hook(&emu, "user.get", json!({"ID": 99})).await;
    assert_eq!(none["result"], json!([]));
    assert_eq!(none["total"], json!(0));
}

#[tokio::test]
async fn user_get_pages_by_50_with_next_and_total() {
    let emu = Emulator::start(config().users(120)).await.unwrap();
    let (_, first) = hook(&emu, "user.get", json!({})).await;
    assert_eq!(first["result"].as_array().unwrap().len(), 50);
    assert_eq!(first["next"], json!(50));
    assert_eq!(first["total"], json!(120));
    let keys = object_keys(&first);
    assert_eq!(keys, ["result", "next", "total", "time"]);
    let (_, last) = hook(&emu, "user.get", json!({"start": 100})).await;
    assert_eq!(last["result"].as_array().unwrap().len(), 20);
    assert_eq!(last["result"][0]["ID"], json!("101"));
    assert!(last.get("next").is_none());
    let (_, desc) = hook(&emu, "user.get", json!({"SORT": "ID", "ORDER": "desc"})).await;
    assert_eq!(desc["result"][0]["ID"], json!("120"));
}

#[tokio::test]
async fn server_time_is_php_date_c() {
    let emu = start().await;
    let (status, body) = hook(&emu, "server.time", json!({})).await;
    assert_eq!(status, 200);
    let t = body["result"].as_str().expect("string");
    assert_eq!(t.len(), 25, "{t}");
    assert_eq!(&t[10..11], "T");
    assert_eq!(&t[19..], "+00:00");
}

#[tokio::test]
async fn profile_is_the_basic_view_of_the_caller() {
    let emu = start().await;
    let (_, admin) = hook(&emu, "profile", json!({})).await;
    let keys = object_keys(&admin["result"]);
    assert_eq!(
        keys,
        [
            "ID",
            "ADMIN",
            "NAME",
            "LAST_NAME",
            "PERSONAL_GENDER",
            "TIME_ZONE"
        ]
    );
    assert_eq!(admin["result"]["ID"], json!("1"));
    assert_eq!(admin["result"]["ADMIN"], json!(true));
    let (_, user) = hook2(&emu, "profile", json!({})).await;
    assert_eq!(user["result"]["ADMIN"], json!(false));
}

// --- answer headers and switches -------------------------------------------------------------

#[tokio::test]
async fn cloud_rest_headers_on_every_answer() {
    let emu = start().await;
    let resp = client()
        .post(format!("{}/rest/server.time", emu.url()))
        .json(&json!({"auth": TOKEN}))
        .send()
        .await
        .unwrap();
    let h = resp.headers();
    assert_eq!(h["content-type"], "application/json; charset=utf-8");
    assert_eq!(h["access-control-allow-origin"], "*");
    assert_eq!(
        h["access-control-allow-headers"],
        "origin, content-type, accept"
    );
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["x-bitrix-rest-application"], BUILTIN_CLIENT_ID);
    for name in [
        "x-bitrix-rest-time",
        "x-bitrix-rest-user-time",
        "x-bitrix-rest-system-time",
    ] {
        let v = h[name].to_str().unwrap();
        assert!(v.parse::<f64>().is_ok_and(|f| f >= 0.0), "{name}: {v}");
    }
    // Webhooks have no application; errors still carry the timing headers.
    let resp = client()
        .get(format!("{}server.time", emu.webhook_url(1, "wrong")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().get("x-bitrix-rest-application").is_none());
    assert!(resp.headers().get("x-bitrix-rest-time").is_some());
    // The control plane is not the REST API.
    let resp = client()
        .get(format!("{}/_emulator/notifications", emu.url()))
        .send()
        .await
        .unwrap();
    assert!(resp.headers().get("x-bitrix-rest-time").is_none());
}

#[tokio::test]
async fn auth_errors_are_all_401_by_default() {
    let emu = start().await;
    let bad_hook = post_json(
        &format!("{}profile", emu.webhook_url(1, "wrong")),
        json!({}),
    )
    .await;
    assert_eq!(bad_hook.0, 401);
    assert_eq!(bad_hook.1["error"], json!("INVALID_CREDENTIALS"));
}

#[tokio::test]
async fn auth_error_status_docs_gives_403_for_invalid_credentials() {
    let emu = Emulator::start(config().auth_error_status(AuthErrorStatus::Docs))
        .await
        .unwrap();
    let bad_hook = post_json(
        &format!("{}profile", emu.webhook_url(1, "wrong")),
        json!({}),
    )
    .await;
    assert_error(
        &bad_hook,
        403,
        "INVALID_CREDENTIALS",
        "Invalid request credentials",
    );
    let none = post_json(&format!("{}/rest/profile", emu.url()), json!({})).await;
    assert_error(&none, 401, "NO_AUTH_FOUND", "Wrong authorization data");
    let expired = post_json(
        &format!("{}/rest/profile", emu.url()),
        json!({"auth": "tok-expired"}),
    )
    .await;
    assert_eq!(
        (expired.0, &expired.1["error"]),
        (401, &json!("expired_token"))
    );
    // Method errors keep their own statuses.
    let got = hook(&emu, "im.notify.read.list", json!({})).await;
    assert_eq!(got.0, 400);
}

// --- control plane seeding and persistence ---------------------------------------------------

#[tokio::test]
async fn seeding_rejects_bad_notifications_with_400() {
    let emu = start().await;
    for body in [
        json!({"message": "no user"}),
        json!({"user_id": 99, "message": "unknown user"}),
        json!({"user_id": 1, "message": "  "}),
        json!({"user_id": 1, "message": "x", "buttons": []}),
        json!({"user_id": 1, "message": "x", "buttons": [{"TITLE": "only title"}]}),
        json!({"user_id": 1, "message": "x", "type": "CONFIRM"}),
        json!([{"user_id": 1, "message": "ok"}, {"user_id": 1}]),
    ] {
        let (status, got) = seed(&emu, body.clone()).await;
        assert_eq!(status, 400, "{body} → {got}");
        assert_eq!(got["error"], json!("INVALID_SEED"));
    }
    assert!(emu.notifications().is_empty(), "arrays are all-or-nothing");
    let (status, list) = seed(
        &emu,
        json!([{"user_id": 1, "message": "a", "read": true}, {"user_id": 1, "message": "b", "author_id": 3}]),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(list[0]["read"], json!(true));
    assert_eq!(list[0]["type"], json!("SYSTEM"));
    assert_eq!(list[1]["type"], json!("USER"));
}

#[tokio::test]
async fn read_state_and_buttons_survive_a_restart() {
    let file = TempFile::new("methods-read");
    let emu = Emulator::start(config().data(&file.0)).await.unwrap();
    let a = notify(&emu, 1, "a").await;
    let b = notify(&emu, 1, "b").await;
    let c = seed_confirm(&emu, 1, "join?").await;
    hook(
        &emu,
        "im.notify.read",
        json!({"ID": b, "ONLY_CURRENT": "Y"}),
    )
    .await;
    let before = emu.notifications();
    emu.shutdown().await;

    let emu = Emulator::start(config().data(&file.0)).await.unwrap();
    assert_eq!(emu.notifications(), before);
    assert_eq!(read_flags(&emu), [(a, false), (b, true), (c, false)]);
    let (_, body) = hook(
        &emu,
        "im.notify.confirm",
        json!({"ID": c, "NOTIFY_VALUE": "N"}),
    )
    .await;
    assert!(
        body["result"]["result_message"][0]
            .as_str()
            .unwrap()
            .contains("Decline")
    );
    emu.shutdown().await;
    let emu = Emulator::start(config().data(&file.0)).await.unwrap();
    assert_eq!(
        emu.notifications().len(),
        2,
        "the confirmed one stays deleted"
    );
}

#[tokio::test]
async fn data_files_from_before_buttons_still_open() {
    let file = TempFile::new("methods-old");
    {
        // The schema of the first release, without the buttons column.
        let db = rusqlite::Connection::open(&file.0).unwrap();
        db.execute_batch(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE notifications (
                 id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, author_id INTEGER NOT NULL,
                 type TEXT NOT NULL, message TEXT NOT NULL, tag TEXT, sub_tag TEXT, attach TEXT,
                 is_read INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL);
             INSERT INTO notifications VALUES (4, 1, 2, 'USER', 'old', NULL, NULL, NULL, 0, 1700000000);
             INSERT INTO meta VALUES ('next_notification_id', '5');",
        )
        .unwrap();
    }
    let emu = Emulator::start(config().data(&file.0)).await.unwrap();
    let all = emu.notifications();
    assert_eq!(all.len(), 1);
    assert_eq!((all[0].id, all[0].buttons.clone()), (4, None));
    let id = seed_confirm(&emu, 1, "new").await;
    assert_eq!(id, 5);
    let (_, body) = hook(&emu, "im.notify.get", json!({})).await;
    assert_eq!(body["result"]["total_count"], json!(2));
}

// --- the binary's switches -------------------------------------------------------------------

mod binary {
    use std::process::{Command, Stdio};

    use serde_json::json;

    use super::common::Child;

    #[tokio::test]
    async fn switch_flags_select_docs_behaviour() {
        let mut child = Child(
            Command::new(env!("CARGO_BIN_EXE_b24-emulator"))
                .args([
                    "--webhook",
                    "1:bin-secret",
                    "--auth-error-status",
                    "docs",
                    "--read-all-result",
                    "source",
                    "--webhook-tags",
                    "docs",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn b24-emulator"),
        );
        let url = child.listening_url().await;
        let (status, _) = super::post_json(&format!("{url}/rest/1/nope/profile"), json!({})).await;
        assert_eq!(status, 403);
        let (_, body) = super::post_json(
            &format!("{url}/rest/1/bin-secret/im.notify.read.all"),
            json!({}),
        )
        .await;
        assert_eq!(body["result"], json!(true));
        // `--webhook-tags docs`: the same TAG with CLIENT_ID replaces.
        for message in ["v1", "v2"] {
            super::post_json(
                &format!("{url}/rest/1/bin-secret/im.notify.personal.add"),
                json!({"USER_ID": 1, "MESSAGE": message, "TAG": "T", "CLIENT_ID": "c"}),
            )
            .await;
        }
        let (_, body) =
            super::post_json(&format!("{url}/rest/1/bin-secret/im.notify.get"), json!({})).await;
        assert_eq!(body["result"]["total_count"], json!(1), "{body}");
    }

    #[test]
    fn unknown_switch_value_exits_2() {
        let out = Command::new(env!("CARGO_BIN_EXE_b24-emulator"))
            .args(["--auth-error-status", "maybe"])
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("--auth-error-status"));
    }
}

/// portal-behaviour §9.4: keys that name no user field (SDK telemetry, fast-bitrix24's
/// `__order`) are no filter condition, at the top level and inside `FILTER`.
#[tokio::test]
async fn user_get_ignores_keys_that_are_not_user_fields() {
    let emu = Emulator::start(config().users(60)).await.unwrap();
    let url = format!(
        "{}user.get?bx24_request_id=abc&bx24_sdk_ver=2.1.0&bx24_sdk_type=b24-js-sdk",
        emu.webhook_url(1, SECRET)
    );
    let (status, all) = post_json(
        &url,
        json!({"order": {"ID": "ASC"}, "__order": "order0000000000"}),
    )
    .await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["total"], json!(60), "{all}");
    assert_eq!(all["next"], json!(50), "{all}");
    let (_, one) = post_json(&url, json!({"ID": 5, "bx24_request_id": "x"})).await;
    assert_eq!(one["total"], json!(1), "{one}");
    let (_, nested) = post_json(
        &url,
        json!({"FILTER": {">ID": 55, "__order": "x", "!unknown": 1}}),
    )
    .await;
    assert_eq!(nested["total"], json!(5), "{nested}");
    // A real but unmodelled user field still filters (it is empty here).
    let (_, phone) = post_json(&url, json!({"PERSONAL_PHONE": "123"})).await;
    assert_eq!(phone["total"], json!(0), "{phone}");
}

/// portal-behaviour §9.5: `start=-1` returns the first 50 without a count: no `next`,
/// `total` 0; the same per command inside a batch.
#[tokio::test]
async fn user_get_negative_start_is_no_count_mode() {
    let emu = Emulator::start(config().users(120)).await.unwrap();
    let (status, body) = hook(&emu, "user.get", json!({"start": -1, ">ID": 10})).await;
    assert_eq!(status, 200, "{body}");
    let page = body["result"].as_array().expect("page");
    assert_eq!(page.len(), 50, "{body}");
    assert_eq!(page[0]["ID"], json!("11"), "{body}");
    assert!(body.get("next").is_none(), "{body}");
    assert_eq!(body["total"], json!(0), "{body}");
    let (_, batch) = hook(
        &emu,
        "batch",
        json!({"cmd": {"a": "user.get?start=-1&FILTER[>ID]=100"}}),
    )
    .await;
    let r = &batch["result"];
    assert_eq!(r["result"]["a"].as_array().map(Vec::len), Some(20), "{r}");
    assert_eq!(r["result_total"]["a"], json!(0), "{r}");
    assert!(r["result_next"].get("a").is_none(), "{r}");
}
