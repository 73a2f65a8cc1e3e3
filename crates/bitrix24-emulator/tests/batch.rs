//! Conformance tests for `batch` (docs/portal-behaviour.md §7), one portal rule per test, over raw HTTP.

use bitrix24_emulator::{Config, Emulator};
use serde_json::{Value, json};

mod common;
use common::*;

async fn start() -> Emulator {
    start_with(
        Config::default()
            .webhook(1, SECRET)
            .access_token(1, TOKEN)
            .access_token(2, "tok-user-2"),
    )
    .await
}

fn batch_url(emu: &Emulator) -> String {
    format!("{}batch", emu.webhook_url(1, SECRET))
}

/// A webhook batch with a JSON body; asserts HTTP 200 and returns `result`.
async fn batch(emu: &Emulator, body: Value) -> Value {
    let (status, text, body) = decode_with_text(
        client()
            .post(batch_url(emu))
            .json(&body)
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert!(body["time"].is_object(), "{text}");
    body["result"].clone()
}

async fn batch_form(emu: &Emulator, form: &str) -> Value {
    let (status, text, body) = decode_with_text(
        client()
            .post(batch_url(emu))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.to_owned())
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    body["result"].clone()
}

fn error_code(section: &Value, key: &str) -> String {
    section["result_error"][key]["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error for {key}: {section}"))
        .to_owned()
}

const TIME_FIELDS: [&str; 6] = [
    "start",
    "finish",
    "duration",
    "processing",
    "date_start",
    "date_finish",
];

#[tokio::test]
async fn batch_map_cmd_keys_every_section_by_command_key() {
    let emu = start().await;
    let r = batch(
        &emu,
        json!({"cmd": {
            "first": "im.notify.personal.add?USER_ID=2&MESSAGE=one",
            "second": "im.notify.system.add?USER_ID=3&MESSAGE=two",
        }}),
    )
    .await;
    let ids: Vec<u64> = emu.notifications().iter().map(|n| n.id).collect();
    assert_eq!(r["result"], json!({"first": ids[0], "second": ids[1]}));
    assert_eq!(r["result_error"], json!([]));
    for key in ["first", "second"] {
        for field in TIME_FIELDS {
            assert!(r["result_time"][key].get(field).is_some(), "{key}.{field}");
        }
    }
    let keys = object_keys(&r);
    assert_eq!(
        keys,
        [
            "result",
            "result_error",
            "result_total",
            "result_next",
            "result_time"
        ]
    );
}

#[tokio::test]
async fn batch_list_cmd_gives_list_shaped_sections() {
    let emu = start().await;
    let r = batch(
        &emu,
        json!({"cmd": [
            "im.notify.personal.add?USER_ID=2&MESSAGE=one",
            "im.notify.personal.add?USER_ID=2&MESSAGE=two",
        ]}),
    )
    .await;
    assert_eq!(r["result"], json!([1, 2]));
    assert_eq!(r["result_time"].as_array().map(Vec::len), Some(2));

    // A failed first command leaves keys {1}, which PHP encodes as an object.
    let r = batch(
        &emu,
        json!({"cmd": ["im.notify.personal.add?MESSAGE=x", "im.notify.personal.add?USER_ID=2&MESSAGE=y"]}),
    )
    .await;
    assert_eq!(r["result"], json!({"1": 3}));
    assert_eq!(
        r["result_error"],
        json!([{"error": "USER_ID_EMPTY", "error_description": "User ID can't be empty"}])
    );
}

#[tokio::test]
async fn batch_form_encoded_commands_are_double_encoded() {
    let emu = start().await;
    // `&` inside MESSAGE is %2526: once for the outer form, once for the command's query.
    let r = batch_form(
        &emu,
        "cmd[a]=im.notify.personal.add%3FUSER_ID%3D2%26MESSAGE%3Dhi%2526there%2Byou&halt=0",
    )
    .await;
    assert_eq!(r["result"], json!({"a": 1}));
    assert_eq!(only(&emu).message, "hi&there you");
}

#[tokio::test]
async fn batch_get_query_string_works() {
    let emu = start().await;
    let (status, text, body) = decode_with_text(
        client()
            .get(format!(
                "{}?cmd[0]=im.notify.personal.add%3FUSER_ID%3D2%26MESSAGE%3Dx",
                batch_url(&emu)
            ))
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(body["result"]["result"], json!([1]));
}

#[tokio::test]
async fn batch_attach_inside_a_command_is_bracket_encoded_even_in_a_json_body() {
    let emu = start().await;
    let r = batch(
        &emu,
        json!({"cmd": {"a": "im.notify.personal.add?USER_ID=2&MESSAGE=m&ATTACH[0][MESSAGE]=hello&ATTACH[1][DELIMITER][SIZE]=100"}}),
    )
    .await;
    assert_eq!(r["result_error"], json!([]), "{r}");
    let attach = only(&emu).attach.expect("attach stored");
    assert_eq!(attach["BLOCKS"][0], json!({"MESSAGE": "hello"}));
    assert_eq!(attach["BLOCKS"][1]["DELIMITER"]["SIZE"], json!(100));
}

#[tokio::test]
async fn batch_attach_inside_a_command_may_be_url_encoded_json() {
    let emu = start().await;
    let attach: String = form_urlencoded::byte_serialize(br#"[{"MESSAGE":"from json"}]"#).collect();
    let r = batch(
        &emu,
        json!({"cmd": {"a": format!("im.notify.personal.add?USER_ID=2&MESSAGE=m&ATTACH={attach}")}}),
    )
    .await;
    assert_eq!(r["result_error"], json!([]), "{r}");
    let stored = only(&emu).attach.expect("attach stored");
    assert_eq!(stored["BLOCKS"], json!([{"MESSAGE": "from json"}]));
}

#[tokio::test]
async fn batch_halt_uses_php_truthiness() {
    // (halt value, halts?) — the string "false" is truthy in PHP.
    let table = [
        (json!(0), false),
        (json!("0"), false),
        (json!(false), false),
        (json!(""), false),
        (json!(null), false),
        (json!(1), true),
        (json!("1"), true),
        (json!(true), true),
        (json!("false"), true),
        (json!("no"), true),
    ];
    for (halt, halts) in table {
        let emu = start().await;
        let r = batch(
            &emu,
            json!({"halt": halt, "cmd": {
                "bad": "im.notify.personal.add?MESSAGE=x",
                "good": "im.notify.personal.add?USER_ID=2&MESSAGE=y",
            }}),
        )
        .await;
        assert_eq!(error_code(&r, "bad"), "USER_ID_EMPTY");
        let ran = r["result"].get("good").is_some();
        assert_eq!(ran, !halts, "halt={halt}: {r}");
        assert_eq!(emu.notifications().len(), usize::from(!halts));
    }
    // No halt parameter at all: keep going.
    let emu = start().await;
    let r = batch(
        &emu,
        json!({"cmd": ["im.notify.personal.add", "im.notify.personal.add?USER_ID=2&MESSAGE=y"]}),
    )
    .await;
    assert_eq!(r["result"], json!({"1": 1}));
}

#[tokio::test]
async fn batch_halt_false_string_in_a_form_body_halts() {
    let emu = start().await;
    let r = batch_form(
        &emu,
        "halt=false&cmd[a]=im.notify.personal.add&cmd[b]=im.notify.personal.add%3FUSER_ID%3D2%26MESSAGE%3Dy",
    )
    .await;
    assert_eq!(error_code(&r, "a"), "USER_ID_EMPTY");
    assert_eq!(r["result"], json!([]));
    assert!(emu.notifications().is_empty());
}

#[tokio::test]
async fn batch_max_length_is_50_commands_and_the_rest_get_length_exceeded() {
    let emu = start().await;
    let mut cmd = serde_json::Map::new();
    for i in 0..52 {
        cmd.insert(
            format!("c{i}"),
            json!(format!("im.notify.personal.add?USER_ID=2&MESSAGE=m{i}")),
        );
    }
    let r = batch(&emu, json!({"cmd": cmd})).await;
    assert_eq!(r["result"].as_object().map(|m| m.len()), Some(50));
    assert!(r["result"].get("c49").is_some());
    for key in ["c50", "c51"] {
        assert_eq!(
            r["result_error"][key],
            json!({"error": "ERROR_BATCH_LENGTH_EXCEEDED", "error_description": "Max batch length exceeded"})
        );
    }
    assert_eq!(r["result_error"].as_object().map(|m| m.len()), Some(2));
    assert_eq!(emu.notifications().len(), 50);

    // With halt the first refused command stops the batch; nothing else changes.
    let r = batch(&emu, json!({"halt": 1, "cmd": cmd})).await;
    assert_eq!(r["result_error"].as_object().map(|m| m.len()), Some(1));
}

#[tokio::test]
async fn batch_nested_batch_download_and_upload_are_not_allowed() {
    let emu = start().await;
    let r = batch(
        &emu,
        json!({"cmd": {
            "nested": "batch?cmd[x]=im.notify.personal.add%3FUSER_ID%3D2%26MESSAGE%3Dx",
            "upper": "BATCH?cmd[x]=im.notify.personal.add%3FUSER_ID%3D2%26MESSAGE%3Dx",
            "download": "download?id=1",
            "upload": "upload",
            "fine": "im.notify.personal.add?USER_ID=2&MESSAGE=ok",
        }}),
    )
    .await;
    for key in ["nested", "upper", "download", "upload"] {
        assert_eq!(
            r["result_error"][key],
            json!({"error": "ERROR_BATCH_METHOD_NOT_ALLOWED", "error_description": "Method is not allowed for batch usage"}),
            "{key}"
        );
    }
    assert_eq!(only(&emu).message, "ok");
}

#[tokio::test]
async fn batch_result_reference_passes_a_previous_result() {
    let emu = start().await;
    let r = batch(
        &emu,
        json!({"cmd": {
            "add": "im.notify.personal.add?USER_ID=1&MESSAGE=mine",
            "del": "im.notify.delete?ID=$result[add]",
            "text": "im.notify.personal.add?USER_ID=2&MESSAGE=deleted+$result[add]+ok",
        }}),
    )
    .await;
    assert_eq!(r["result"]["del"], json!(true), "{r}");
    assert_eq!(only(&emu).message, "deleted 1 ok");
}

#[tokio::test]
async fn batch_whole_value_reference_substitutes_an_array() {
    let emu = start().await;
    // A missing key stops at the deepest existing value: `$result[missing]` is the whole
    // `result` section, an array. As the whole value MESSAGE becomes that array (empty to
    // trim()), inside a string it becomes "Array".
    let r = batch(
        &emu,
        json!({"cmd": {
            "a": "im.notify.personal.add?USER_ID=2&MESSAGE=first",
            "whole": "im.notify.personal.add?USER_ID=2&MESSAGE=$result[missing]",
            "inside": "im.notify.personal.add?USER_ID=2&MESSAGE=got+$result[missing][0]",
            "deep": "im.notify.personal.add?USER_ID=$result[a][nothing][here]&MESSAGE=deep",
        }}),
    )
    .await;
    assert_eq!(error_code(&r, "whole"), "MESSAGE_EMPTY", "{r}");
    // $result[a] exists (the id 1), so USER_ID stops there.
    assert!(r["result"].get("deep").is_some(), "{r}");
    let messages: Vec<(u64, String)> = emu
        .notifications()
        .into_iter()
        .map(|n| (n.user_id, n.message))
        .collect();
    assert_eq!(
        messages,
        [
            (2, "first".to_owned()),
            (2, "got Array".to_owned()),
            (1, "deep".to_owned())
        ]
    );
}

#[tokio::test]
async fn batch_error_time_next_and_total_references() {
    let emu = start().await;
    let r = batch(
        &emu,
        json!({"cmd": {
            "bad": "im.notify.personal.add?MESSAGE=x",
            "ok": "im.notify.personal.add?USER_ID=2&MESSAGE=first",
            "err": "im.notify.personal.add?USER_ID=2&MESSAGE=e:$error[bad][error]",
            "time": "im.notify.personal.add?USER_ID=2&MESSAGE=t:$time[ok][date_start]",
            // Nothing returned next/total, so the walk stops at the (empty) section.
            "next": "im.notify.personal.add?USER_ID=2&MESSAGE=n:$next[ok]",
            "total": "im.notify.personal.add?USER_ID=2&MESSAGE=n:$total[ok]",
            "literal": "im.notify.personal.add?USER_ID=2&MESSAGE=$result+costs+$5",
        }}),
    )
    .await;
    let date_start = r["result_time"]["ok"]["date_start"]
        .as_str()
        .expect("date_start")
        .to_owned();
    let messages: Vec<String> = emu.notifications().into_iter().map(|n| n.message).collect();
    assert_eq!(
        messages,
        [
            "first".to_owned(),
            "e:USER_ID_EMPTY".to_owned(),
            format!("t:{date_start}"),
            "n:Array".to_owned(),
            "n:Array".to_owned(),
            "$result costs $5".to_owned(),
        ]
    );
}

#[tokio::test]
async fn batch_keeps_each_commands_own_error() {
    let emu = start().await;
    let r = batch(
        &emu,
        json!({"cmd": {
            "no_user": "im.notify.personal.add?MESSAGE=x",
            "ok": "im.notify.personal.add?USER_ID=2&MESSAGE=fine",
            "no_message": "im.notify.personal.add?USER_ID=2",
            "bad_attach": "im.notify.personal.add?USER_ID=2&MESSAGE=m&ATTACH=nonsense",
            "unknown": "no.such.method",
            "inactive": "im.notify.personal.add?USER_ID=999&MESSAGE=x",
        }}),
    )
    .await;
    assert_eq!(error_code(&r, "no_user"), "USER_ID_EMPTY");
    assert_eq!(error_code(&r, "no_message"), "MESSAGE_EMPTY");
    assert_eq!(error_code(&r, "bad_attach"), "ATTACH_ERROR");
    assert_eq!(
        r["result_error"]["unknown"],
        json!({"error": "ERROR_METHOD_NOT_FOUND", "error_description": "Method not found!"})
    );
    assert_eq!(r["result"], json!({"ok": 1, "inactive": false}));
    // Failed commands have no time entry.
    let timed: Vec<&String> = r["result_time"].as_object().unwrap().keys().collect();
    assert_eq!(timed, ["ok", "inactive"]);
}

#[tokio::test]
async fn batch_empty_sections_are_php_empty_arrays() {
    let emu = start().await;
    for body in [json!({}), json!({"cmd": "not a list"}), json!({"cmd": {}})] {
        let (status, text, _) = decode_with_text(
            client()
                .post(batch_url(&emu))
                .json(&body)
                .send()
                .await
                .expect("request"),
        )
        .await;
        assert_eq!(status, 200);
        assert!(
            text.starts_with(r#"{"result":{"result":[],"result_error":[],"result_total":[],"result_next":[],"result_time":[]},"time":{"#),
            "{body}: {text}"
        );
    }
    let (_, text, _) = decode_with_text(
        client()
            .post(batch_url(&emu))
            .json(&json!({"cmd": {"a": "im.notify.personal.add"}}))
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert!(
        text.starts_with(r#"{"result":{"result":[],"result_error":{"a":{"error":"USER_ID_EMPTY","#),
        "{text}"
    );
    assert!(
        text.contains(r#""result_total":[],"result_next":[],"result_time":[]}"#),
        "{text}"
    );
}

#[tokio::test]
async fn batch_propagates_webhook_auth_to_sub_calls() {
    let emu = start().await;
    let r = batch(
        &emu,
        json!({"cmd": {"a": "im.notify.personal.add?USER_ID=2&MESSAGE=x&TAG=t"}}),
    )
    .await;
    assert_eq!(r["result"], json!({"a": 1}));
    let n = only(&emu);
    // The webhook's user is the author, and a webhook's TAG is dropped.
    assert_eq!(n.author_id, 1);
    assert_eq!(n.tag, None);
}

#[tokio::test]
async fn batch_propagates_oauth_auth_to_sub_calls_and_ignores_auth_in_commands() {
    let emu = start().await;
    let (status, text, body) = decode_with_text(
        client()
            .post(format!("{}/rest/batch", emu.url()))
            .bearer_auth(TOKEN)
            .json(&json!({"cmd": {
                // A command's own auth does not switch the caller.
                "a": "im.notify.personal.add?USER_ID=3&MESSAGE=x&TAG=t&auth=tok-user-2",
                "b": "im.notify.system.add?USER_ID=3&MESSAGE=sys",
            }}))
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(body["result"]["result_error"], json!([]), "{text}");
    let all = emu.notifications();
    assert_eq!(all[0].author_id, 1);
    assert!(
        all[0].tag.as_deref().is_some_and(|t| t.ends_with("|t")),
        "{all:?}"
    );
    assert_eq!(all[1].message, "Emulator App#BR#sys");
}

#[tokio::test]
async fn batch_without_credentials_is_refused() {
    let emu = start().await;
    let (status, _, body) = decode_with_text(
        client()
            .post(format!("{}/rest/batch", emu.url()))
            .json(&json!({"cmd": {"a": "im.notify.personal.add?USER_ID=2&MESSAGE=x"}}))
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "NO_AUTH_FOUND");
    // Credentials inside a command do not help either.
    let (status, _, _) = decode_with_text(
        client()
            .post(format!("{}/rest/batch", emu.url()))
            .json(&json!({"cmd": {"a": format!("im.notify.personal.add?USER_ID=2&MESSAGE=x&auth={TOKEN}")}}))
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(status, 401);
    assert!(emu.notifications().is_empty());
}

#[tokio::test]
async fn batch_counts_as_one_request_against_the_rate_limit() {
    // A bucket of 3 that barely drains: a batch of 40 commands uses one slot of it.
    let emu = Emulator::start(Config::default().webhook(1, SECRET).rate(0.001).burst(3.0))
        .await
        .unwrap();
    let cmd: serde_json::Map<String, Value> = (0..40)
        .map(|i| {
            (
                format!("c{i}"),
                json!(format!("im.notify.system.add?USER_ID=2&MESSAGE=n{i}")),
            )
        })
        .collect();
    let result = batch(&emu, json!({"cmd": cmd})).await;
    assert_eq!(result["result"].as_object().unwrap().len(), 40);
    let single = |n: usize| {
        client()
            .post(format!(
                "{}im.notify.system.add",
                emu.webhook_url(1, SECRET)
            ))
            .json(&json!({"USER_ID": 2, "MESSAGE": format!("single {n}")}))
            .send()
    };
    assert_eq!(single(1).await.unwrap().status(), 200);
    assert_eq!(single(2).await.unwrap().status(), 200);
    assert_eq!(
        single(3).await.unwrap().status(),
        503,
        "the batch took one slot of three"
    );
    assert_eq!(emu.notifications().len(), 42);
}

/// portal-behaviour §7.2: each command's own `start` pages its list call; paging `user.get`
/// through one batch over 120 users yields all 120 once, with `next`/`total` per command.
#[tokio::test]
async fn batch_command_start_is_its_own() {
    let emu = start_with(Config::default().users(120).webhook(1, SECRET)).await;
    let url = format!("{}?start=50", batch_url(&emu));
    let (status, body) = post_json(
        &url,
        json!({"cmd": {
            "p0": "user.get?start=0",
            "p1": "user.get?start=50",
            "p2": "user.get?start=100",
        }}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let r = &body["result"];
    let mut ids = std::collections::BTreeSet::new();
    for key in ["p0", "p1", "p2"] {
        for user in r["result"][key].as_array().expect("page") {
            ids.insert(user["ID"].as_str().expect("ID").to_owned());
        }
        assert_eq!(r["result_total"][key], json!(120), "{r}");
    }
    assert_eq!(ids.len(), 120, "{r}");
    assert_eq!(r["result"]["p1"][0]["ID"], json!("51"), "{r}");
    assert_eq!(r["result_next"]["p0"], json!(50), "{r}");
    assert_eq!(r["result_next"]["p1"], json!(100), "{r}");
    assert!(r["result_next"].get("p2").is_none(), "{r}");
}
