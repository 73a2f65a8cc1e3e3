//! Conformance tests: one test per portal rule, driven over raw HTTP.
//!
//! Each test starts its own emulator on 127.0.0.1 port 0, so tests share no state and need no
//! fixed ports. Requests are built by hand with reqwest (no client library), so what is tested
//! is the wire behaviour a real integration would see.

use std::time::Duration;

use bitrix24_emulator::{BUILTIN_CLIENT_ID, Config, Emulator, WebhookTags};
use md5::{Digest, Md5};
use serde_json::{Value, json};

mod common;
use common::*;

fn config() -> Config {
    Config::default()
        .webhook(1, SECRET)
        .webhook(2, "other")
        .access_token(1, TOKEN)
        .access_token(2, "tok-user-2")
        .expired_access_token(1, "tok-expired")
}

async fn start() -> Emulator {
    start_with(config()).await
}

fn tag_prefix(client_id: &str) -> String {
    let hex = format!("{:x}", Md5::digest(client_id.as_bytes()));
    format!("MP|{}|", &hex[..5])
}

// --- im.notify.*add: validation order -----------------------------------------------------------

#[tokio::test]
async fn user_id_empty_is_400_before_message_check() {
    let emu = start().await;
    for body in [
        json!({}),
        json!({"USER_ID": 0}),
        json!({"USER_ID": "abc"}),
        json!({"USER_ID": -3, "MESSAGE": "x"}),
    ] {
        let got = hook(&emu, "im.notify.personal.add", body).await;
        assert_error(&got, 400, "USER_ID_EMPTY", "User ID can't be empty");
    }
    assert!(emu.notifications().is_empty());
}

#[tokio::test]
async fn to_overrides_user_id() {
    let emu = start().await;
    let (status, body) = hook(
        &emu,
        "im.notify.personal.add",
        json!({"USER_ID": 0, "TO": "3", "MESSAGE": "hi"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(only(&emu).user_id, 3);
}

#[tokio::test]
async fn message_empty_is_400_after_trim() {
    let emu = start().await;
    for body in [
        json!({"USER_ID": 1}),
        json!({"USER_ID": 1, "MESSAGE": " \n\t "}),
        json!({"USER_ID": 1, "MESSAGE": ["x"]}),
    ] {
        let got = hook(&emu, "im.notify.system.add", body).await;
        assert_error(&got, 400, "MESSAGE_EMPTY", "Message can't be empty");
    }
}

#[tokio::test]
async fn message_is_trimmed_and_br_becomes_newline() {
    let emu = start().await;
    let (status, _) = hook(
        &emu,
        "im.notify.personal.add",
        json!({"USER_ID": 2, "MESSAGE": "  a[BR]b[br]c  "}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(only(&emu).message, "a\nb\nc");
}

#[tokio::test]
async fn long_message_is_truncated_to_20000_plus_marker() {
    let emu = start().await;
    let fits = "x".repeat(20_006);
    hook(
        &emu,
        "im.notify.personal.add",
        json!({"USER_ID": 2, "MESSAGE": fits}),
    )
    .await;
    let long = "y".repeat(20_007);
    hook(
        &emu,
        "im.notify.personal.add",
        json!({"USER_ID": 2, "MESSAGE": long}),
    )
    .await;
    let all = emu.notifications();
    assert_eq!(all[0].message, fits);
    assert_eq!(all[1].message, format!("{} (...)", "y".repeat(20_000)));
}

#[tokio::test]
async fn missing_user_gives_result_false() {
    let emu = start().await;
    let (status, body) = hook(
        &emu,
        "im.notify.personal.add",
        json!({"USER_ID": 11, "MESSAGE": "hi"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["result"], json!(false));
    assert!(body["time"].is_object());
    assert!(emu.notifications().is_empty());
}

#[tokio::test]
async fn inactive_user_gives_result_false() {
    let emu = Emulator::start(config().inactive_user(4)).await.unwrap();
    let (status, body) = hook(
        &emu,
        "im.notify.system.add",
        json!({"USER_ID": 4, "MESSAGE": "hi"}),
    )
    .await;
    assert_eq!((status, &body["result"]), (200, &json!(false)));
    assert!(emu.notifications().is_empty());
}

#[tokio::test]
async fn result_is_the_new_id() {
    let emu = start().await;
    let (_, first) = hook(
        &emu,
        "im.notify.personal.add",
        json!({"USER_ID": 2, "MESSAGE": "a"}),
    )
    .await;
    let (_, second) = hook(
        &emu,
        "im.notify.personal.add",
        json!({"USER_ID": 2, "MESSAGE": "b"}),
    )
    .await;
    let ids: Vec<u64> = emu.notifications().iter().map(|n| n.id).collect();
    assert_eq!(
        ids,
        vec![
            first["result"].as_u64().unwrap(),
            second["result"].as_u64().unwrap()
        ]
    );
    assert!(ids[1] > ids[0]);
}

// --- type and author ------------------------------------------------------------------------------

#[tokio::test]
async fn personal_add_is_authored_by_the_caller() {
    let emu = start().await;
    hook(
        &emu,
        "im.notify.personal.add",
        json!({"USER_ID": 2, "MESSAGE": "hi"}),
    )
    .await;
    let n = only(&emu);
    assert_eq!((n.r#type.as_str(), n.author_id, n.user_id), ("USER", 1, 2));
}

#[tokio::test]
async fn system_add_has_author_zero() {
    let emu = start().await;
    hook(
        &emu,
        "im.notify.system.add",
        json!({"USER_ID": 2, "MESSAGE": "hi"}),
    )
    .await;
    let n = only(&emu);
    assert_eq!(
        (n.r#type.as_str(), n.author_id, n.message.as_str()),
        ("SYSTEM", 0, "hi")
    );
}

#[tokio::test]
async fn im_notify_type_must_be_exactly_system() {
    let emu = start().await;
    hook(
        &emu,
        "im.notify",
        json!({"USER_ID": 2, "MESSAGE": "a", "TYPE": "SYSTEM"}),
    )
    .await;
    hook(
        &emu,
        "im.notify",
        json!({"USER_ID": 2, "MESSAGE": "b", "TYPE": "system"}),
    )
    .await;
    hook(&emu, "im.notify", json!({"USER_ID": 2, "MESSAGE": "c"})).await;
    let types: Vec<String> = emu.notifications().into_iter().map(|n| n.r#type).collect();
    assert_eq!(types, ["SYSTEM", "USER", "USER"]);
}

#[tokio::test]
async fn oauth_system_notification_gets_app_name_prefix() {
    let emu = start().await;
    let (status, _) = oauth_as(
        &emu,
        TOKEN,
        "im.notify.system.add",
        json!({"USER_ID": 2, "MESSAGE": "hi[BR]there"}),
    )
    .await;
    assert_eq!(status, 200);
    let n = only(&emu);
    assert_eq!(n.message, "Emulator App#BR#hi\nthere");
    // Personal notifications from an app carry no prefix.
    oauth_as(
        &emu,
        TOKEN,
        "im.notify.personal.add",
        json!({"USER_ID": 2, "MESSAGE": "p"}),
    )
    .await;
    assert_eq!(emu.notifications()[1].message, "p");
}

// --- TAG ----------------------------------------------------------------------------------------------

#[tokio::test]
async fn tag_is_ignored_for_webhook_callers() {
    let emu = start().await;
    let body =
        json!({"USER_ID": 2, "MESSAGE": "a", "TAG": "New", "SUB_TAG": "S", "CLIENT_ID": "app"});
    hook(&emu, "im.notify.personal.add", body.clone()).await;
    hook(&emu, "im.notify.personal.add", body).await;
    let all = emu.notifications();
    assert_eq!(all.len(), 2, "no replace without a tag");
    assert!(all.iter().all(|n| n.tag.is_none() && n.sub_tag.is_none()));
}

/// portal-behaviour §6.2, `--webhook-tags docs`: a webhook call with CLIENT_ID keeps its tags
/// under `custom<CLIENT_ID>`, so a repeat replaces and `im.notify.delete` by TAG + CLIENT_ID
/// finds it; without CLIENT_ID they are still dropped.
#[tokio::test]
async fn webhook_tags_docs_keeps_tags_under_custom_client_id() {
    let emu = start_with(config().webhook_tags(WebhookTags::Docs)).await;
    let body =
        json!({"USER_ID": 2, "MESSAGE": "a", "TAG": "New", "SUB_TAG": "S", "CLIENT_ID": "app"});
    hook(&emu, "im.notify.personal.add", body.clone()).await;
    hook(&emu, "im.notify.personal.add", body).await;
    let n = only(&emu);
    let prefix = tag_prefix("customapp");
    assert_eq!(n.tag, Some(format!("{prefix}New")));
    assert_eq!(n.sub_tag, Some(format!("{prefix}S")));
    hook(
        &emu,
        "im.notify.personal.add",
        json!({"USER_ID": 2, "MESSAGE": "b", "TAG": "New"}),
    )
    .await;
    assert_eq!(emu.notifications().len(), 2);
    assert!(emu.notifications().iter().any(|n| n.tag.is_none()));
    let (_, got) = hook(
        &emu,
        "im.notify.delete",
        json!({"TAG": "New", "CLIENT_ID": "app"}),
    )
    .await;
    assert_eq!(got["result"], json!(true), "{got}");
    let left = only(&emu);
    assert_eq!(left.message, "b");
}

#[tokio::test]
async fn tag_is_stored_with_client_hash_for_oauth_callers() {
    let emu = start().await;
    oauth_as(
        &emu,
        TOKEN,
        "im.notify.personal.add",
        json!({"USER_ID": 2, "MESSAGE": "a", "TAG": "New", "SUB_TAG": "Sub"}),
    )
    .await;
    let n = only(&emu);
    let prefix = tag_prefix(BUILTIN_CLIENT_ID);
    assert_eq!(n.tag, Some(format!("{prefix}New")));
    assert_eq!(n.sub_tag, Some(format!("{prefix}Sub")));
}

#[tokio::test]
async fn falsy_tag_is_ignored() {
    let emu = start().await;
    oauth_as(
        &emu,
        TOKEN,
        "im.notify.personal.add",
        json!({"USER_ID": 2, "MESSAGE": "a", "TAG": "0"}),
    )
    .await;
    oauth_as(
        &emu,
        TOKEN,
        "im.notify.personal.add",
        json!({"USER_ID": 2, "MESSAGE": "b", "TAG": "0"}),
    )
    .await;
    let all = emu.notifications();
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|n| n.tag.is_none()));
}

#[tokio::test]
async fn same_tag_replaces_for_oauth_callers() {
    let emu = start().await;
    let (_, first) = oauth_as(
        &emu,
        TOKEN,
        "im.notify.personal.add",
        json!({"USER_ID": 2, "MESSAGE": "v1", "TAG": "T"}),
    )
    .await;
    // Another recipient with the same tag is a different notification chat: kept.
    oauth_as(
        &emu,
        TOKEN,
        "im.notify.personal.add",
        json!({"USER_ID": 3, "MESSAGE": "other", "TAG": "T"}),
    )
    .await;
    let (_, second) = oauth_as(
        &emu,
        TOKEN,
        "im.notify.personal.add",
        json!({"USER_ID": 2, "MESSAGE": "v2", "TAG": "T"}),
    )
    .await;
    assert_ne!(first["result"], second["result"], "replace gives a new id");
    let all = emu.notifications();
    let texts: Vec<(u64, &str)> = all
        .iter()
        .map(|n| (n.user_id, n.message.as_str()))
        .collect();
    assert_eq!(texts, [(3, "other"), (2, "v2")]);
    assert_eq!(all[1].id, second["result"].as_u64().unwrap());
}

// --- ATTACH ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn attach_error_when_attach_parses_to_nothing() {
    let emu = start().await;
    for attach in [
        json!({"MESSAGE": "bare block"}),
        json!([{"HTML": "<b>x</b>"}]),
        json!("not json"),
        json!([{"IMAGE": {"LINK": "ftp://x"}}]),
    ] {
        let got = hook(
            &emu,
            "im.notify.personal.add",
            json!({"USER_ID": 2, "MESSAGE": "m", "ATTACH": attach}),
        )
        .await;
        assert_error(&got, 400, "ATTACH_ERROR", "Incorrect attach params");
    }
    assert!(emu.notifications().is_empty());
}

#[tokio::test]
async fn attach_error_comes_after_message_check() {
    let emu = start().await;
    let got = hook(
        &emu,
        "im.notify.personal.add",
        json!({"USER_ID": 2, "ATTACH": "junk"}),
    )
    .await;
    assert_error(&got, 400, "MESSAGE_EMPTY", "Message can't be empty");
}

#[tokio::test]
async fn attach_error_comes_before_missing_user() {
    let emu = start().await;
    let got = hook(
        &emu,
        "im.notify.personal.add",
        json!({"USER_ID": 99, "MESSAGE": "m", "ATTACH": "junk"}),
    )
    .await;
    assert_error(&got, 400, "ATTACH_ERROR", "Incorrect attach params");
}

#[tokio::test]
async fn falsy_attach_is_ignored() {
    let emu = start().await;
    for attach in [json!(""), json!("0"), json!([]), json!(0)] {
        let (status, body) = hook(
            &emu,
            "im.notify.personal.add",
            json!({"USER_ID": 2, "MESSAGE": "m", "ATTACH": attach}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    assert!(emu.notifications().iter().all(|n| n.attach.is_none()));
}

#[tokio::test]
async fn attach_is_stored_normalised() {
    let emu = start().await;
    let attach = json!([
        {"IMAGE": {"NAME": "Image1", "LINK": "https://x/a.png", "UNKNOWN": 1}},
        {"FILE": [{"NAME": " f.pdf ", "LINK": "https://x/f.pdf", "SIZE": "2048"}]},
        {"HTML": "<b>dropped</b>"},
        {"DELIMITER": {}},
    ]);
    let (status, body) = hook(
        &emu,
        "im.notify.personal.add",
        json!({"USER_ID": 2, "MESSAGE": "m", "ATTACH": attach}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let stored = only(&emu).attach.expect("attach stored");
    assert!(stored["ID"].is_u64());
    assert!(stored.get("COLOR").is_none());
    assert_eq!(
        stored["BLOCKS"],
        json!([
            {"IMAGE": [{"NAME": "Image1", "LINK": "https://x/a.png"}]},
            {"FILE": [{"LINK": "https://x/f.pdf", "NAME": "f.pdf", "SIZE": 2048}]},
            {"DELIMITER": {"SIZE": 200}},
        ])
    );
}

#[tokio::test]
async fn attach_oversize_uses_normalised_60000_chars() {
    let emu = start().await;
    // Normalised: {"ID":<10 digits>,"BLOCKS":[{"MESSAGE":"…"}]} = 43 characters + text, and every
    // '/' is written `\/`. 29,978 slashes + 1 letter = 60,000 characters: over the limit, even
    // though the text itself is only about 30,000 characters.
    let over = "/".repeat(29_978) + "a";
    let got = hook(
        &emu,
        "im.notify.personal.add",
        json!({"USER_ID": 2, "MESSAGE": "m", "ATTACH": [{"MESSAGE": over}]}),
    )
    .await;
    assert_error(
        &got,
        400,
        "ATTACH_OVERSIZE",
        "You have exceeded the maximum allowable size of attach",
    );
    // One character less fits.
    let fits = "/".repeat(29_978);
    let (status, body) = hook(
        &emu,
        "im.notify.personal.add",
        json!({"USER_ID": 2, "MESSAGE": "m", "ATTACH": [{"MESSAGE": fits}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // Raw size does not count: 70,000 characters of unknown keys normalise to a tiny attach.
    let padding = "p".repeat(70_000);
    let (status, body) = hook(
        &emu,
        "im.notify.personal.add",
        json!({"USER_ID": 2, "MESSAGE": "m", "ATTACH": [{"DELIMITER": {}, "PAD": padding}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn attach_json_string_in_form_body() {
    let emu = start().await;
    let attach = r#"[{"MESSAGE":"from string"}]"#;
    let body: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("USER_ID", "2")
        .append_pair("MESSAGE", "m")
        .append_pair("ATTACH", attach)
        .finish();
    let url = format!("{}im.notify.personal.add", emu.webhook_url(1, SECRET));
    let (status, resp) = post_raw(&url, "application/x-www-form-urlencoded", body).await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(
        only(&emu).attach.unwrap()["BLOCKS"],
        json!([{"MESSAGE": "from string"}])
    );
}

// --- wire decoding --------------------------------------------------------------------------------------

#[tokio::test]
async fn form_bodies_use_php_brackets() {
    let emu = start().await;
    let body = "USER_ID=2&MESSAGE=Hi+there&ATTACH[0][IMAGE][NAME]=Image1&ATTACH[0][IMAGE][LINK]=https%3A%2F%2Fx%2Fa.png\
                &ATTACH[1][GRID][0][NAME]=k&ATTACH[1][GRID][0][VALUE]=v&ATTACH[1][GRID][0][DISPLAY]=COLUMN";
    let url = format!("{}im.notify.personal.add", emu.webhook_url(1, SECRET));
    let (status, resp) = post_raw(&url, "application/x-www-form-urlencoded", body).await;
    assert_eq!(status, 200, "{resp}");
    let n = only(&emu);
    assert_eq!(n.message, "Hi there");
    assert_eq!(
        n.attach.unwrap()["BLOCKS"],
        json!([
            {"IMAGE": [{"NAME": "Image1", "LINK": "https://x/a.png"}]},
            {"GRID": [{"DISPLAY": "ROW", "NAME": "k", "VALUE": "v"}]},
        ])
    );
}

#[tokio::test]
async fn multipart_bodies_are_accepted() {
    let emu = start().await;
    let body = "--B\r\nContent-Disposition: form-data; name=\"USER_ID\"\r\n\r\n2\r\n\
                --B\r\nContent-Disposition: form-data; name=\"MESSAGE\"\r\n\r\nmulti\r\n\
                --B\r\nContent-Disposition: form-data; name=\"ATTACH[0][DELIMITER][SIZE]\"\r\n\r\n5\r\n--B--\r\n";
    let url = format!("{}im.notify.personal.add", emu.webhook_url(1, SECRET));
    let (status, resp) = post_raw(&url, "multipart/form-data; boundary=B", body).await;
    assert_eq!(status, 200, "{resp}");
    let n = only(&emu);
    assert_eq!(n.message, "multi");
    assert_eq!(
        n.attach.unwrap()["BLOCKS"],
        json!([{"DELIMITER": {"SIZE": 5}}])
    );
}

#[tokio::test]
async fn full_form_attach_via_brackets() {
    let emu = start().await;
    let body = "USER_ID=2&MESSAGE=m&ATTACH[ID]=1&ATTACH[COLOR]=%23ff0000&ATTACH[BLOCKS][0][GRID][0][NAME]=k\
                &ATTACH[BLOCKS][0][GRID][0][VALUE]=v&ATTACH[BLOCKS][0][GRID][0][DISPLAY]=LINE";
    let url = format!("{}im.notify.personal.add", emu.webhook_url(1, SECRET));
    let (status, resp) = post_raw(&url, "text/plain", body).await;
    assert_eq!(status, 200, "{resp}");
    let attach = only(&emu).attach.unwrap();
    assert_eq!(attach["COLOR"], "#ff0000");
    assert_eq!(
        attach["BLOCKS"],
        json!([{"GRID": [{"DISPLAY": "LINE", "NAME": "k", "VALUE": "v"}]}])
    );
}

#[tokio::test]
async fn invalid_json_becomes_empty_params() {
    let emu = start().await;
    let url = format!("{}im.notify.personal.add", emu.webhook_url(1, SECRET));
    let got = post_raw(
        &url,
        "application/json; charset=utf-8",
        r#"{"USER_ID": 2, "MESSAGE": "#,
    )
    .await;
    assert_error(&got, 400, "USER_ID_EMPTY", "User ID can't be empty");
}

#[tokio::test]
async fn non_object_json_becomes_empty_params() {
    let emu = start().await;
    let url = format!(
        "{}im.notify.personal.add?USER_ID=2",
        emu.webhook_url(1, SECRET)
    );
    let got = post_raw(&url, "application/json", r#"["MESSAGE", "x"]"#).await;
    assert_error(&got, 400, "MESSAGE_EMPTY", "Message can't be empty");
}

#[tokio::test]
async fn body_overrides_query() {
    let emu = start().await;
    let url = format!(
        "{}im.notify.personal.add?USER_ID=3&MESSAGE=from+query",
        emu.webhook_url(1, SECRET)
    );
    let (status, _) = post_json(&url, json!({"MESSAGE": "from body"})).await;
    assert_eq!(status, 200);
    let n = only(&emu);
    assert_eq!((n.user_id, n.message.as_str()), (3, "from body"));
}

#[tokio::test]
async fn get_requests_use_the_query() {
    let emu = start().await;
    let url = format!(
        "{}im.notify.personal.add.json?USER_ID=2&MESSAGE=via%20get",
        emu.webhook_url(1, SECRET)
    );
    let (status, body) = get(&url).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(only(&emu).message, "via get");
}

#[tokio::test]
async fn param_names_are_case_insensitive() {
    let emu = start().await;
    let (status, body) = hook(
        &emu,
        "im.notify.personal.add",
        json!({"user_id": 2, "Message": "lower"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(only(&emu).message, "lower");
}

#[tokio::test]
async fn method_name_case_suffix_and_trailing_slash() {
    let emu = start().await;
    for method in [
        "IM.NOTIFY.PERSONAL.ADD",
        "im.notify.personal.add.json",
        "im.notify.personal.add/",
        "Im.Notify.Personal.Add.JSON/",
    ] {
        let (status, body) = hook(&emu, method, json!({"USER_ID": 2, "MESSAGE": "x"})).await;
        assert_eq!(status, 200, "{method}: {body}");
    }
    assert_eq!(emu.notifications().len(), 4);
}

/// portal-behaviour §2.1: repeated slashes are one (nginx `merge_slashes`); b24jssdk's
/// `B24OAuth` calls `/rest//method`.
#[tokio::test]
async fn double_slashes_in_the_path_are_one() {
    let emu = start().await;
    for path in ["/rest//user.current", "/rest//user.current/"] {
        let got = post_json(&format!("{}{path}", emu.url()), json!({"auth": TOKEN})).await;
        assert_eq!(got.0, 200, "{path}: {}", got.1);
        assert_eq!(got.1["result"]["ID"], json!("1"), "{path}: {}", got.1);
    }
    let hook = format!("{}/rest/1//{SECRET}//user.current", emu.url());
    let got = post_json(&hook, json!({})).await;
    assert_eq!(got.0, 200, "{}", got.1);
}

#[tokio::test]
async fn answers_carry_time_and_portal_headers() {
    let emu = start().await;
    let resp = client()
        .post(format!(
            "{}im.notify.personal.add",
            emu.webhook_url(1, SECRET)
        ))
        .json(&json!({"USER_ID": 2, "MESSAGE": "x"}))
        .send()
        .await
        .unwrap();
    let h = resp.headers().clone();
    assert_eq!(h["content-type"], "application/json; charset=utf-8");
    assert_eq!(h["access-control-allow-origin"], "*");
    assert_eq!(h["x-content-type-options"], "nosniff");
    let (_, body) = decode(resp).await;
    let time = &body["time"];
    for key in ["start", "finish", "duration", "processing", "operating"] {
        assert!(time[key].is_number(), "time.{key} in {time}");
    }
    assert!(time["start"].as_f64() <= time["finish"].as_f64());
    assert!(time["operating_reset_at"].is_u64());
    for key in ["date_start", "date_finish"] {
        let date = time[key].as_str().unwrap();
        // date('c'): 2026-03-03T10:00:00+00:00
        assert_eq!(date.len(), 25, "{date}");
        assert_eq!(&date[10..11], "T");
        assert!(date.ends_with("+00:00"));
    }
    // Error answers carry the same headers.
    let resp = client()
        .get(format!("{}/rest/im.notify", emu.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["content-type"],
        "application/json; charset=utf-8"
    );
}

// --- auth ----------------------------------------------------------------------------------------------

#[tokio::test]
async fn no_auth_found() {
    let emu = start().await;
    let got = post_json(
        &format!("{}/rest/im.notify.personal.add", emu.url()),
        json!({"USER_ID": 2, "MESSAGE": "x"}),
    )
    .await;
    assert_error(&got, 401, "NO_AUTH_FOUND", "Wrong authorization data");
}

#[tokio::test]
async fn invalid_credentials() {
    let emu = start().await;
    for url in [
        emu.webhook_url(1, "wrong"),
        emu.webhook_url(2, SECRET),
        emu.webhook_url(9, SECRET),
        format!("{}/rest/admin/{SECRET}/", emu.url()),
    ] {
        let got = post_json(
            &format!("{url}im.notify.personal.add"),
            json!({"USER_ID": 2, "MESSAGE": "x"}),
        )
        .await;
        assert_error(
            &got,
            401,
            "INVALID_CREDENTIALS",
            "Invalid request credentials",
        );
    }
    assert!(emu.notifications().is_empty());
}

#[tokio::test]
async fn expired_token() {
    let emu = start().await;
    let got = oauth_as(
        &emu,
        "tok-expired",
        "im.notify.personal.add",
        json!({"USER_ID": 2, "MESSAGE": "x"}),
    )
    .await;
    assert_error(
        &got,
        401,
        "expired_token",
        "The access token provided has expired",
    );
}

#[tokio::test]
async fn token_ttl_zero_expires_at_once() {
    let emu = Emulator::start(Config::default().access_token(1, "t").token_ttl(0))
        .await
        .unwrap();
    let got = oauth_as(
        &emu,
        "t",
        "im.notify.personal.add",
        json!({"USER_ID": 2, "MESSAGE": "x"}),
    )
    .await;
    assert_error(
        &got,
        401,
        "expired_token",
        "The access token provided has expired",
    );
}

#[tokio::test]
async fn invalid_token() {
    let emu = start().await;
    let got = oauth_as(
        &emu,
        "nope",
        "im.notify.personal.add",
        json!({"USER_ID": 2, "MESSAGE": "x"}),
    )
    .await;
    assert_error(
        &got,
        401,
        "invalid_token",
        "The access token provided is invalid.",
    );
}

#[tokio::test]
async fn token_from_query_access_token_and_bearer_header() {
    let emu = start().await;
    let base = format!("{}/rest/im.notify.personal.add", emu.url());
    let (s1, b1) = post_json(
        &format!("{base}?auth={TOKEN}"),
        json!({"USER_ID": 2, "MESSAGE": "q"}),
    )
    .await;
    let (s2, b2) = post_json(
        &base,
        json!({"access_token": TOKEN, "USER_ID": 2, "MESSAGE": "a"}),
    )
    .await;
    let resp = client()
        .post(&base)
        .header("authorization", format!("Bearer {TOKEN}"))
        .json(&json!({"USER_ID": 2, "MESSAGE": "h"}))
        .send()
        .await
        .unwrap();
    let (s3, b3) = decode(resp).await;
    assert_eq!((s1, s2, s3), (200, 200, 200), "{b1} {b2} {b3}");
    // The auth parameter is consumed, not passed to the method; the author is the token's user.
    assert!(emu.notifications().iter().all(|n| n.author_id == 1));
}

#[tokio::test]
async fn unknown_method() {
    let emu = start().await;
    let got = hook(&emu, "im.notify.nonexistent", json!({})).await;
    assert_error(&got, 404, "ERROR_METHOD_NOT_FOUND", "Method not found!");
}

/// portal-behaviour §3.3: the method is looked up before the credentials are checked.
#[tokio::test]
async fn unknown_method_is_checked_before_auth() {
    let emu = start().await;
    for url in [
        format!("{}/rest/no.such.method", emu.url()),
        format!("{}/rest/no.such.method?auth=wrong-token", emu.url()),
        format!("{}/rest/1/wrong-secret/no.such.method", emu.url()),
        format!("{}/rest/no.such.method?auth=tok-expired", emu.url()),
    ] {
        let got = post_json(&url, json!({})).await;
        assert_error(&got, 404, "ERROR_METHOD_NOT_FOUND", "Method not found!");
    }
    // A known method with the same bad credentials is still an auth error.
    let got = post_json(&format!("{}/rest/user.current", emu.url()), json!({})).await;
    assert_error(&got, 401, "NO_AUTH_FOUND", "Wrong authorization data");
}

#[tokio::test]
async fn wrong_segment_count_is_method_not_found() {
    let emu = start().await;
    for path in [
        "/rest/1/s3cr3t/",
        "/rest/1/s3cr3t/a/im.notify",
        "/rest/",
        "/rest",
    ] {
        let got = post_json(&format!("{}{path}", emu.url()), json!({})).await;
        assert_error(&got, 404, "ERROR_METHOD_NOT_FOUND", "Method not found!");
    }
}

// --- im.notify.delete ---------------------------------------------------------------------------------

#[tokio::test]
async fn delete_by_id_only_own() {
    let emu = start().await;
    // User 1 sends to user 2 and to themself.
    let (_, to_two) = hook(
        &emu,
        "im.notify.personal.add",
        json!({"USER_ID": 2, "MESSAGE": "for 2"}),
    )
    .await;
    let (_, to_self) = hook(
        &emu,
        "im.notify.personal.add",
        json!({"USER_ID": 1, "MESSAGE": "for 1"}),
    )
    .await;
    // The sender cannot delete what is in user 2's notification chat.
    let (status, body) = hook(&emu, "im.notify.delete", json!({"ID": to_two["result"]})).await;
    assert_eq!((status, &body["result"]), (200, &json!(false)));
    // The recipient can, through their own webhook.
    let url = format!("{}im.notify.delete", emu.webhook_url(2, "other"));
    let (_, body) = post_json(&url, json!({"ID": to_two["result"]})).await;
    assert_eq!(body["result"], json!(true));
    let (_, body) = hook(&emu, "im.notify.delete", json!({"ID": to_self["result"]})).await;
    assert_eq!(body["result"], json!(true));
    assert!(emu.notifications().is_empty());
    // Deleting again, or a missing id, is false.
    let (_, body) = hook(&emu, "im.notify.delete", json!({"ID": to_self["result"]})).await;
    assert_eq!(body["result"], json!(false));
}

#[tokio::test]
async fn delete_by_tag_is_portal_wide_for_the_app() {
    let emu = start().await;
    oauth_as(
        &emu,
        TOKEN,
        "im.notify.personal.add",
        json!({"USER_ID": 2, "MESSAGE": "a", "TAG": "T"}),
    )
    .await;
    oauth_as(
        &emu,
        TOKEN,
        "im.notify.personal.add",
        json!({"USER_ID": 3, "MESSAGE": "b", "TAG": "T"}),
    )
    .await;
    oauth_as(
        &emu,
        TOKEN,
        "im.notify.personal.add",
        json!({"USER_ID": 3, "MESSAGE": "c", "SUB_TAG": "S"}),
    )
    .await;
    let (_, body) = oauth_as(&emu, "tok-user-2", "im.notify.delete", json!({"TAG": "T"})).await;
    assert_eq!(body["result"], json!(true));
    assert_eq!(emu.notifications().len(), 1);
    let (_, body) = oauth_as(&emu, TOKEN, "im.notify.delete", json!({"SUB_TAG": "S"})).await;
    assert_eq!(body["result"], json!(true));
    assert!(emu.notifications().is_empty());
    // Nothing matching is still true.
    let (_, body) = oauth_as(&emu, TOKEN, "im.notify.delete", json!({"TAG": "none"})).await;
    assert_eq!(body["result"], json!(true));
}

#[tokio::test]
async fn delete_by_tag_from_webhook_needs_client_id() {
    let emu = start().await;
    let got = hook(&emu, "im.notify.delete", json!({"TAG": "T"})).await;
    assert_error(
        &got,
        403,
        "ACCESS_DENIED",
        "Access denied! Client ID not specified",
    );
    // With CLIENT_ID the key is md5("custom" + id), which never matches an app's tag.
    oauth_as(
        &emu,
        TOKEN,
        "im.notify.personal.add",
        json!({"USER_ID": 2, "MESSAGE": "a", "TAG": "T"}),
    )
    .await;
    let (_, body) = hook(
        &emu,
        "im.notify.delete",
        json!({"TAG": "T", "CLIENT_ID": BUILTIN_CLIENT_ID}),
    )
    .await;
    assert_eq!(body["result"], json!(true));
    assert_eq!(emu.notifications().len(), 1);
    let got = hook(&emu, "im.notify.delete", json!({"CLIENT_ID": "x"})).await;
    assert_error(&got, 400, "PARAMS_ERROR", "Incorrect params");
}

// --- control plane, persistence, lifecycle ----------------------------------------------------------

#[tokio::test]
async fn control_plane_lists_and_resets() {
    let emu = start().await;
    oauth_as(
        &emu,
        TOKEN,
        "im.notify.personal.add",
        json!({"USER_ID": 2, "MESSAGE": "x", "TAG": "New"}),
    )
    .await;
    let (status, list) = get(&format!("{}/_emulator/notifications", emu.url())).await;
    assert_eq!(status, 200);
    let first = &list[0];
    let keys = object_keys(first);
    assert_eq!(
        keys,
        [
            "id",
            "user_id",
            "author_id",
            "type",
            "message",
            "tag",
            "sub_tag",
            "attach",
            "read"
        ]
    );
    assert_eq!(
        first["tag"],
        json!(format!("{}New", tag_prefix(BUILTIN_CLIENT_ID)))
    );
    assert_eq!(first["sub_tag"], Value::Null);
    assert_eq!(first["read"], json!(false));
    let (status, _) = decode(
        client()
            .post(format!("{}/_emulator/reset", emu.url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert!(emu.notifications().is_empty());
    let (_, list) = get(&format!("{}/_emulator/notifications", emu.url())).await;
    assert_eq!(list, json!([]));
}

#[tokio::test]
async fn sqlite_state_survives_restart() {
    let file = TempFile::new("persist");
    let emu = Emulator::start(config().data(&file.0)).await.unwrap();
    let attach = json!([{"MESSAGE": "kept"}]);
    oauth_as(
        &emu,
        TOKEN,
        "im.notify.personal.add",
        json!({"USER_ID": 2, "MESSAGE": "one", "TAG": "T", "ATTACH": attach}),
    )
    .await;
    let (_, second) = hook(
        &emu,
        "im.notify.personal.add",
        json!({"USER_ID": 2, "MESSAGE": "two"}),
    )
    .await;
    hook(
        &emu,
        "im.notify.personal.add",
        json!({"USER_ID": 2, "MESSAGE": "three"}),
    )
    .await;
    // Delete the newest so the counter, not the max id, decides the next id.
    let url = format!("{}im.notify.delete", emu.webhook_url(2, "other"));
    let third_id = emu.notifications()[2].id;
    post_json(&url, json!({"ID": third_id})).await;
    let before = emu.notifications();
    emu.shutdown().await;

    let emu = Emulator::start(config().data(&file.0)).await.unwrap();
    assert_eq!(emu.notifications(), before);
    // Same-TAG replace still sees the stored tag after the restart.
    oauth_as(
        &emu,
        TOKEN,
        "im.notify.personal.add",
        json!({"USER_ID": 2, "MESSAGE": "one again", "TAG": "T"}),
    )
    .await;
    let after = emu.notifications();
    let texts: Vec<&str> = after.iter().map(|n| n.message.as_str()).collect();
    assert_eq!(texts, ["two", "one again"]);
    assert_eq!(after[0].id, second["result"].as_u64().unwrap());
    assert!(after[1].id > third_id, "ids are never reused");
}

#[tokio::test]
async fn dropping_the_emulator_stops_the_server() {
    let emu = start().await;
    let url = emu.url();
    drop(emu);
    let fresh = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let mut stopped = false;
    for _ in 0..50 {
        if fresh
            .get(format!("{url}/_emulator/notifications"))
            .send()
            .await
            .is_err()
        {
            stopped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(stopped, "server still answering after drop");
}

// --- the binary --------------------------------------------------------------------------------------------

mod binary {
    use std::process::{Command, Stdio};

    use serde_json::json;

    use super::common::Child;

    #[tokio::test]
    async fn binary_prints_listening_line_and_serves() {
        let mut child = Child(
            Command::new(env!("CARGO_BIN_EXE_b24-emulator"))
                .args([
                    "--listen",
                    "127.0.0.1:0",
                    "--webhook",
                    "1:bin-secret",
                    "--users",
                    "3",
                ])
                .env("RUST_LOG", "info")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn b24-emulator"),
        );
        let stderr = child.0.stderr.take().expect("stderr");
        let url = child.listening_url().await;
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");

        let (status, body) = super::post_json(
            &format!("{url}/rest/1/bin-secret/im.notify.system.add"),
            json!({"USER_ID": 3, "MESSAGE": "from the binary"}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert!(body["result"].as_u64().is_some());
        let (_, over_limit) = super::post_json(
            &format!("{url}/rest/1/bin-secret/im.notify.system.add"),
            json!({"USER_ID": 4, "MESSAGE": "no such user"}),
        )
        .await;
        assert_eq!(over_limit["result"], json!(false));

        drop(child);
        // The request log never contains the secret.
        let log = tokio::task::spawn_blocking(move || std::io::read_to_string(stderr))
            .await
            .unwrap()
            .unwrap();
        assert!(
            log.contains("/rest/1/***/im.notify.system.add"),
            "log: {log}"
        );
        assert!(
            !log.contains("bin-secret"),
            "secret leaked into the log: {log}"
        );
    }

    #[test]
    fn bad_flag_value_is_one_line_naming_the_flag_and_exit_2() {
        for (args, flag) in [
            (&["--webhook", "abc:topsecret"][..], "--webhook"),
            (&["--access-token", "1:"][..], "--access-token"),
            (&["--users", "many"][..], "--users"),
            (&["--listen", "nowhere"][..], "--listen"),
        ] {
            let out = Command::new(env!("CARGO_BIN_EXE_b24-emulator"))
                .args(args)
                .output()
                .expect("run");
            assert_eq!(out.status.code(), Some(2), "{args:?}");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
            assert!(stderr.contains(flag), "{args:?}: {stderr}");
            assert!(!stderr.contains("topsecret"), "secret echoed: {stderr}");
            assert!(out.stdout.is_empty());
        }
    }
}
