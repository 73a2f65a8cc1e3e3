//! `im.notify.get`, `im.notify.history.search` and `im.notify.schema.get` (docs/portal-behaviour.md §5.12–§5.14 and
//! the docs pages of the same names).
//!
//! Notifications are listed newest first (date, then id, both descending). `get` pages in two
//! stages: confirm notifications first, then the regular ones, and the cursor (`LAST_ID`,
//! `LAST_TYPE`) says which stage the previous page ended in: `1` continues the confirm stage
//! (and fills up from the top of the regular stage), `3` continues the regular stage. A client
//! that passes the last item's id and `1` or `3` by its `notify_type` sees every notification
//! exactly once. `history.search` pages with `LAST_ID` alone over one ordered list.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::Call;
use crate::error::ApiError;
use crate::php;
use crate::store::Record;
use crate::timing::iso8601;
use crate::users::Profile;

/// `LIMIT` default and cap.
const MAX_LIMIT: i64 = 50;
/// `LAST_TYPE` of the confirm stage.
const STAGE_CONFIRM: i64 = 1;

/// Id of a user's system notification chat. The emulator has no other chats, so any stable,
/// distinct number will do.
pub fn notify_chat_id(user_id: u64) -> u64 {
    1000 + user_id
}

/// `IM_NOTIFY_CONFIRM` (1), `IM_NOTIFY_FROM` (2), `IM_NOTIFY_SYSTEM` (4).
fn notify_type(r: &Record) -> u64 {
    match r.notification.r#type.as_str() {
        "CONFIRM" => 1,
        "SYSTEM" => 4,
        _ => 2,
    }
}

/// Newest first: date descending, then id descending.
fn sort_key(r: &Record) -> (u64, u64) {
    (r.created_at, r.notification.id)
}

/// `LIMIT`: default 50, at most 50; zero or less means the default.
fn limit(call: &Call<'_>) -> usize {
    let limit = call.param("LIMIT").map_or(MAX_LIMIT, php::intval);
    let limit = if limit <= 0 {
        MAX_LIMIT
    } else {
        limit.min(MAX_LIMIT)
    };
    limit as usize
}

/// `LAST_ID` must match `^\d+$`.
fn last_id(call: &Call<'_>) -> Result<Option<u64>, ApiError> {
    let Some(raw) = call.param("LAST_ID") else {
        return Ok(None);
    };
    let text = php::scalar_string(raw).unwrap_or_default();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::last_id_string());
    }
    // All digits but too large for u64: no notification comes after it anyway.
    Ok(Some(text.parse::<u64>().unwrap_or(u64::MAX)))
}

fn convert_text(call: &Call<'_>) -> bool {
    matches!(call.param("CONVERT_TEXT"), Some(Value::String(s)) if s == "Y")
}

/// Items strictly after the cursor in newest-first order. The cursor is the notification with
/// `LAST_ID` when it still exists; otherwise only ids below `LAST_ID` follow.
fn after<'a>(sorted: &'a [Record], all: &[Record], last_id: u64) -> Vec<&'a Record> {
    match all.iter().find(|r| r.notification.id == last_id) {
        Some(cursor) => {
            let key = sort_key(cursor);
            sorted.iter().filter(|r| sort_key(r) < key).collect()
        }
        None => sorted
            .iter()
            .filter(|r| r.notification.id < last_id)
            .collect(),
    }
}

/// `notifyGet`.
pub fn get(call: &Call<'_>) -> Result<Value, ApiError> {
    if call.param("LAST_ID").is_some() != call.param("LAST_TYPE").is_some() {
        return Err(ApiError::last_id_and_last_type());
    }
    let last_id = last_id(call)?;
    let last_type = call.param("LAST_TYPE").map_or(0, php::intval);
    let limit = limit(call);
    let convert = convert_text(call);

    let owner = call.caller.user_id();
    let mut all = call.store.records_where(|n| n.user_id == owner);
    if all.is_empty() {
        // No notification chat (or an empty one): only the two lists.
        return Ok(json!({"notifications": [], "users": []}));
    }
    all.sort_by_key(|r| std::cmp::Reverse(sort_key(r)));
    let (confirms, regular): (Vec<Record>, Vec<Record>) =
        all.iter().cloned().partition(|r| notify_type(r) == 1);

    let mut page: Vec<&Record> = match last_id {
        None => confirms.iter().chain(regular.iter()).collect(),
        Some(id) if last_type == STAGE_CONFIRM => {
            let mut rest = after(&confirms, &all, id);
            rest.extend(regular.iter());
            rest
        }
        // LAST_TYPE 3 (regular stage), and anything else: the docs say other values get no
        // error of their own.
        Some(id) => after(&regular, &all, id),
    };
    page.truncate(limit);

    let total_unread = all.iter().filter(|r| !r.notification.read).count();
    Ok(json!({
        "total_count": all.len(),
        "total_unread_count": total_unread,
        "chat_id": notify_chat_id(owner),
        "notifications": page.iter().map(|r| notification(r, convert)).collect::<Vec<_>>(),
        "users": users(call, &page),
    }))
}

/// A `MODULE` or `MODULE|EVENT` type filter: every notification the emulator holds is
/// `rest|rest_notify`.
fn type_matches(t: &str) -> bool {
    t.is_empty() || t == "rest" || t == "rest|rest_notify"
}

/// The values of an array parameter (a scalar is a one-item list).
fn list_param(call: &Call<'_>, key: &str) -> Option<Vec<String>> {
    let v = call.param(key)?;
    Some(match v {
        Value::Array(_) | Value::Object(_) => php::values(v)
            .unwrap_or_default()
            .into_iter()
            .map(php::strval)
            .collect(),
        other => vec![php::strval(other)],
    })
}

/// Unix time of an RFC 3339 date, or of a bare `YYYY-MM-DD` (its first or last second, by
/// `end`); `None` when it is neither.
fn parse_date(s: &str, end: bool) -> Option<u64> {
    use time::format_description::well_known::{Iso8601, Rfc3339};
    let s = s.trim();
    if let Ok(t) = time::OffsetDateTime::parse(s, &Rfc3339) {
        return u64::try_from(t.unix_timestamp()).ok();
    }
    let day = time::Date::parse(s, &Iso8601::DATE).ok()?;
    let start = u64::try_from(day.midnight().assume_utc().unix_timestamp()).ok()?;
    Some(if end { start + 86_399 } else { start })
}

/// `notifyHistorySearch`, with the filters of the docs page (portal-behaviour §5.13).
pub fn history_search(call: &Call<'_>) -> Result<Value, ApiError> {
    let text = call
        .param("SEARCH_TEXT")
        .and_then(php::scalar_string)
        .unwrap_or_default();
    let text = php::trim(&text).to_owned();
    let search_type = call.param("SEARCH_TYPE").map(php::strval);
    let search_types = list_param(call, "SEARCH_TYPES");
    let search_date = call.param("SEARCH_DATE").map(php::strval);
    let date_from = call.param("SEARCH_DATE_FROM").map(php::strval);
    let date_to = call.param("SEARCH_DATE_TO").map(php::strval);
    let authors = list_param(call, "SEARCH_AUTHORS");
    let group_tag = call.param("GROUP_TAG").map(php::strval);
    let filtered = search_type.is_some()
        || search_types.is_some()
        || search_date.is_some()
        || date_from.is_some()
        || date_to.is_some()
        || authors.is_some()
        || group_tag.is_some();
    if !filtered && text.chars().count() < 3 {
        return Err(ApiError::search_text_error());
    }
    let last_id = last_id(call)?;
    let limit = limit(call);
    let convert = convert_text(call);

    let owner = call.caller.user_id();
    let mut all = call.store.records_where(|n| n.user_id == owner);
    all.sort_by_key(|r| std::cmp::Reverse(sort_key(r)));
    let needle = text.to_lowercase();
    let day = search_date
        .as_deref()
        .map(|d| d.get(..10).unwrap_or(d).to_owned());
    let from = date_from.as_deref().and_then(|d| parse_date(d, false));
    let to = date_to.as_deref().and_then(|d| parse_date(d, true));
    let authors: Option<Vec<u64>> =
        authors.map(|a| a.iter().filter_map(|id| id.trim().parse().ok()).collect());
    let matching: Vec<Record> = all
        .iter()
        .filter(|r| needle.is_empty() || r.notification.message.to_lowercase().contains(&needle))
        .filter(|_| search_type.as_deref().is_none_or(type_matches))
        .filter(|_| {
            search_types
                .as_ref()
                .is_none_or(|ts| ts.is_empty() || ts.iter().any(|t| type_matches(t)))
        })
        .filter(|r| match &day {
            None => true,
            Some(day) if day.is_empty() => true,
            Some(day) => iso8601(r.created_at).starts_with(day.as_str()),
        })
        .filter(|r| from.is_none_or(|f| r.created_at >= f))
        .filter(|r| to.is_none_or(|t| r.created_at <= t))
        .filter(|r| {
            authors
                .as_ref()
                .is_none_or(|a| a.is_empty() || a.contains(&r.notification.author_id))
        })
        .filter(|r| match group_tag.as_deref() {
            None | Some("") => true,
            Some(tag) => r.notification.tag.as_deref() == Some(tag),
        })
        .cloned()
        .collect();

    let mut page: Vec<&Record> = match last_id {
        None => matching.iter().collect(),
        Some(id) => after(&matching, &all, id),
    };
    page.truncate(limit);

    let mut result = Map::new();
    result.insert("chat_id".into(), json!(notify_chat_id(owner)));
    if last_id.is_none() {
        result.insert("total_results".into(), json!(matching.len()));
    }
    result.insert(
        "notifications".into(),
        Value::Array(page.iter().map(|r| notification(r, convert)).collect()),
    );
    result.insert("users".into(), users(call, &page));
    Ok(Value::Object(result))
}

/// `notifySchemaGet`: the notification types of the installed modules.
pub fn schema_get(_call: &Call<'_>) -> Result<Value, ApiError> {
    Ok(json!({
        "im": {
            "NAME": "Chat and Calls",
            "MODULE_ID": "im",
            "LIST": [
                {"ID": "im|message", "NAME": "Private messages"},
                {"ID": "im|chat", "NAME": "Group chat messages"},
                {"ID": "im|mention", "NAME": "Mentions in chats"},
            ],
        },
        "rest": {
            "NAME": "Applications",
            "MODULE_ID": "rest",
            "LIST": [
                {"ID": "rest|rest_notify", "NAME": "Notifications from applications"},
            ],
        },
    }))
}

/// One notification as `im.notify.get` shows it.
fn notification(r: &Record, convert: bool) -> Value {
    let n = &r.notification;
    let mut m = Map::new();
    m.insert("id".into(), json!(n.id));
    m.insert("chat_id".into(), json!(notify_chat_id(n.user_id)));
    m.insert("author_id".into(), json!(n.author_id));
    m.insert("date".into(), json!(iso8601(r.created_at)));
    m.insert("notify_type".into(), json!(notify_type(r)));
    m.insert("notify_module".into(), json!("rest"));
    m.insert("notify_event".into(), json!("rest_notify"));
    m.insert(
        "notify_tag".into(),
        json!(n.tag.clone().unwrap_or_default()),
    );
    m.insert(
        "notify_sub_tag".into(),
        json!(n.sub_tag.clone().unwrap_or_default()),
    );
    m.insert("notify_title".into(), json!(""));
    m.insert("setting_name".into(), json!("rest|rest_notify"));
    let text = if convert {
        bb_to_html(&n.message)
    } else {
        n.message.clone()
    };
    m.insert("text".into(), json!(text));
    m.insert("notify_read".into(), json!(if n.read { "Y" } else { "N" }));
    if let Some(buttons) = &n.buttons {
        // The docs type it as a string: the keyboard as JSON.
        m.insert("notify_buttons".into(), json!(buttons.to_string()));
    }
    let params = match &n.attach {
        Some(attach) => json!({"ATTACH": [attach]}),
        None => Value::Null,
    };
    m.insert("params".into(), params);
    Value::Object(m)
}

/// The authors of the page's notifications (system notifications have none).
fn users(call: &Call<'_>, page: &[&Record]) -> Value {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for r in page {
        let id = r.notification.author_id;
        if id == 0 || !seen.insert(id) {
            continue;
        }
        if let Some(active) = call.store.user_state(id) {
            out.push(Profile::new(id, active).im_fields());
        }
    }
    Value::Array(out)
}

/// `CONVERT_TEXT=Y`: the BB-codes a notification may hold, as HTML. The text is escaped first,
/// as the portal's text parser does.
fn bb_to_html(text: &str) -> String {
    let mut html = php::htmlspecialchars(text);
    for (bb, tag) in [("b", "b"), ("i", "i"), ("u", "u"), ("s", "del")] {
        html = replace_ci(&html, &format!("[{bb}]"), &format!("<{tag}>"));
        html = replace_ci(&html, &format!("[/{bb}]"), &format!("</{tag}>"));
    }
    html = replace_url_tags(&html);
    html = replace_ci(&html, "[br]", "<br />");
    html.replace("\r\n", "\n").replace('\n', "<br />")
}

/// ASCII-case-insensitive replace of every `from` (ASCII) in `s`.
fn replace_ci(s: &str, from: &str, to: &str) -> String {
    let lower = s.to_ascii_lowercase();
    let mut out = String::with_capacity(s.len());
    let mut at = 0;
    while let Some(found) = lower[at..].find(from) {
        out.push_str(&s[at..at + found]);
        out.push_str(to);
        at += found + from.len();
    }
    out.push_str(&s[at..]);
    out
}

/// `[url]X[/url]` and `[url=X]Y[/url]` as links; `[USER=id]Name[/USER]` as the name.
fn replace_url_tags(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    loop {
        let lower = rest.to_ascii_lowercase();
        let next = [("[url", "[/url]"), ("[user=", "[/user]")]
            .into_iter()
            .filter_map(|(open, close)| lower.find(open).map(|at| (at, open, close)))
            .min_by_key(|(at, _, _)| *at);
        let Some((at, open, close)) = next else {
            out.push_str(rest);
            return out;
        };
        let tag = &lower[at..];
        let (Some(head_end), Some(close_at)) = (tag.find(']'), tag.find(close)) else {
            out.push_str(rest);
            return out;
        };
        if head_end > close_at {
            out.push_str(&rest[..at + open.len()]);
            rest = &rest[at + open.len()..];
            continue;
        }
        out.push_str(&rest[..at]);
        let head = &rest[at + 1..at + head_end];
        let inner = &rest[at + head_end + 1..at + close_at];
        let arg = head.split_once('=').map(|(_, v)| v.trim_matches('"'));
        if open == "[url" {
            let href = arg.unwrap_or(inner);
            out.push_str(&format!("<a href=\"{href}\" target=\"_blank\">{inner}</a>"));
        } else {
            out.push_str(inner);
        }
        rest = &rest[at + close_at + close.len()..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bb_codes_become_html() {
        assert_eq!(
            bb_to_html("[B]Hi[/b] <x>\nline[br][url=https://a.b/c]link[/url] [USER=5]Ann[/USER]"),
            "<b>Hi</b> &lt;x&gt;<br />line<br /><a href=\"https://a.b/c\" target=\"_blank\">link</a> Ann"
        );
        assert_eq!(
            bb_to_html("[url]https://x.y[/url]"),
            "<a href=\"https://x.y\" target=\"_blank\">https://x.y</a>"
        );
        // Unclosed tags stay as text and never panic.
        assert_eq!(bb_to_html("[url=x"), "[url=x");
        assert_eq!(bb_to_html("[url]x"), "[url]x");
        assert_eq!(bb_to_html("[user=1]é"), "[user=1]é");
    }
}
