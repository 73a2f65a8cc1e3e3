//! What `im.notify.get` and `im.notify.history.search` return, read tolerantly.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::answer::{de_opt_string, de_opt_u64, de_u64};

/// The `notify_type` of confirmation notifications (with buttons), `IM_NOTIFY_CONFIRM`.
pub const NOTIFY_TYPE_CONFIRM: u64 = 1;

/// One notification as the portal lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Notification id.
    #[serde(deserialize_with = "de_u64")]
    pub id: u64,
    /// The recipient's notification chat.
    #[serde(default, deserialize_with = "de_opt_u64")]
    pub chat_id: Option<u64>,
    /// Author's user id; 0 for system notifications.
    #[serde(default, deserialize_with = "de_u64")]
    pub author_id: u64,
    /// Creation time, RFC 3339.
    #[serde(default, deserialize_with = "de_opt_string")]
    pub date: Option<String>,
    /// 1 confirmation, 2 from a user, 4 system.
    #[serde(default, deserialize_with = "de_opt_u64")]
    pub notify_type: Option<u64>,
    /// Module that sent it (`rest` for REST notifications).
    #[serde(default, deserialize_with = "de_opt_string")]
    pub notify_module: Option<String>,
    /// Event code (`rest_notify` for REST notifications).
    #[serde(default, deserialize_with = "de_opt_string")]
    pub notify_event: Option<String>,
    /// Stored tag, `MP|<app hash>|TAG`.
    #[serde(default, deserialize_with = "de_opt_string")]
    pub notify_tag: Option<String>,
    /// Stored sub-tag.
    #[serde(default, deserialize_with = "de_opt_string")]
    pub notify_sub_tag: Option<String>,
    /// Title, often empty.
    #[serde(default, deserialize_with = "de_opt_string")]
    pub notify_title: Option<String>,
    /// `MODULE|EVENT`.
    #[serde(default, deserialize_with = "de_opt_string")]
    pub setting_name: Option<String>,
    /// The text.
    #[serde(default, deserialize_with = "de_text")]
    pub text: String,
    /// Read or not (`notify_read`: `"Y"`/`"N"`).
    #[serde(
        default,
        rename(deserialize = "notify_read"),
        deserialize_with = "de_yes"
    )]
    pub read: bool,
    /// Buttons of a confirmation notification.
    #[serde(default)]
    pub notify_buttons: Option<Value>,
    /// Extra parameters (attachments among them).
    #[serde(default)]
    pub params: Option<Value>,
    /// Fields this crate does not name, kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Notification {
    /// True for confirmation notifications, which `im.notify.get` lists first.
    pub fn is_confirm(&self) -> bool {
        self.notify_type == Some(NOTIFY_TYPE_CONFIRM)
    }
}

/// One page of `im.notify.get`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NotificationPage {
    /// All notifications of the user (absent when the user has none).
    pub total_count: Option<u64>,
    /// Unread ones.
    pub total_unread_count: Option<u64>,
    /// The user's notification chat.
    pub chat_id: Option<u64>,
    /// This page, newest first, confirmations before the rest.
    pub notifications: Vec<Notification>,
    /// The authors, as user objects.
    pub users: Vec<Value>,
}

/// One page of `im.notify.history.search`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SearchPage {
    /// Matches in all (sent on the first page only).
    pub total_results: Option<u64>,
    /// The user's notification chat.
    pub chat_id: Option<u64>,
    /// This page.
    pub notifications: Vec<Notification>,
    /// The authors, as user objects.
    pub users: Vec<Value>,
}

/// The other fields of a page, its notifications and its users.
type PageParts = (Map<String, Value>, Vec<Notification>, Vec<Value>);

/// Reads a page from a PHP answer, where an empty result may be `[]` instead of an object.
fn page_fields(value: Value) -> Result<PageParts, String> {
    let mut map = match value {
        Value::Object(map) => map,
        Value::Array(a) if a.is_empty() => Map::new(),
        Value::Null | Value::Bool(false) => Map::new(),
        other => return Err(format!("expected an object, got {other}")),
    };
    let notifications = match map.remove("notifications") {
        Some(Value::Array(items)) => items
            .into_iter()
            .map(serde_json::from_value)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("a notification: {e}"))?,
        // PHP encodes a map keyed by id as an object.
        Some(Value::Object(items)) => items
            .into_iter()
            .map(|(_, v)| serde_json::from_value(v))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("a notification: {e}"))?,
        _ => Vec::new(),
    };
    let users = match map.remove("users") {
        Some(Value::Array(users)) => users,
        Some(Value::Object(users)) => users.into_iter().map(|(_, v)| v).collect(),
        _ => Vec::new(),
    };
    Ok((map, notifications, users))
}

fn number(map: &Map<String, Value>, key: &str) -> Option<u64> {
    map.get(key).and_then(crate::answer::lenient_u64)
}

impl<'de> Deserialize<'de> for NotificationPage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (map, notifications, users) =
            page_fields(Value::deserialize(d)?).map_err(serde::de::Error::custom)?;
        Ok(NotificationPage {
            total_count: number(&map, "total_count"),
            total_unread_count: number(&map, "total_unread_count"),
            chat_id: number(&map, "chat_id"),
            notifications,
            users,
        })
    }
}

impl<'de> Deserialize<'de> for SearchPage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (map, notifications, users) =
            page_fields(Value::deserialize(d)?).map_err(serde::de::Error::custom)?;
        Ok(SearchPage {
            total_results: number(&map, "total_results"),
            chat_id: number(&map, "chat_id"),
            notifications,
            users,
        })
    }
}

/// A module of `im.notify.schema.get`: its notification events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchemaModule {
    /// Module name as shown to users.
    #[serde(rename = "NAME", default, deserialize_with = "de_text")]
    pub name: String,
    /// Module id, e.g. `rest`.
    #[serde(rename = "MODULE_ID", default, deserialize_with = "de_text")]
    pub module_id: String,
    /// Its events.
    #[serde(rename = "LIST", default, deserialize_with = "de_events")]
    pub events: Vec<SchemaEvent>,
}

/// One notification event: `ID` is `module|event`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchemaEvent {
    /// `module|event`, the setting name.
    #[serde(rename = "ID", default, deserialize_with = "de_text")]
    pub id: String,
    /// Event name as shown to users.
    #[serde(rename = "NAME", default, deserialize_with = "de_text")]
    pub name: String,
}

fn de_events<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SchemaEvent>, D::Error> {
    let items = match Value::deserialize(d)? {
        Value::Array(items) => items,
        Value::Object(items) => items.into_iter().map(|(_, v)| v).collect(),
        _ => Vec::new(),
    };
    items
        .into_iter()
        .map(serde_json::from_value)
        .collect::<Result<_, _>>()
        .map_err(serde::de::Error::custom)
}

fn de_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(de_opt_string(d)?.unwrap_or_default())
}

fn de_yes<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => s == "Y",
        Value::Bool(b) => b,
        Value::Number(n) => n.as_u64() == Some(1),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pages_tolerate_php_shapes() {
        let page: NotificationPage = serde_json::from_value(json!({
            "total_count": "120", "total_unread_count": 5, "chat_id": 77,
            "notifications": [{"id": "1500", "chat_id": 77, "author_id": 1, "date": "2026-03-03T09:00:00+00:00",
                "notify_type": 2, "notify_tag": "MP|12345|TASK_42", "text": "Reminder", "notify_read": "N",
                "params": null, "brand_new_field": [1]}],
            "users": [{"id": 1}]
        }))
        .unwrap();
        assert_eq!(page.total_count, Some(120));
        let n = &page.notifications[0];
        assert_eq!(
            (n.id, n.author_id, n.read, n.text.as_str()),
            (1500, 1, false, "Reminder")
        );
        assert_eq!(n.extra["brand_new_field"], json!([1]));
        assert!(!n.is_confirm());
        // An empty result as PHP's [] or with only the lists.
        assert_eq!(
            serde_json::from_value::<NotificationPage>(json!([])).unwrap(),
            NotificationPage::default()
        );
        let only_lists: NotificationPage =
            serde_json::from_value(json!({"notifications": [], "users": []})).unwrap();
        assert_eq!(only_lists.total_count, None);
    }

    #[test]
    fn schema_reads_lists_and_maps() {
        let schema: std::collections::BTreeMap<String, SchemaModule> = serde_json::from_value(json!({
            "rest": {"NAME": "REST", "MODULE_ID": "rest", "LIST": {"0": {"ID": "rest|rest_notify", "NAME": "Apps"}}}
        }))
        .unwrap();
        assert_eq!(schema["rest"].events[0].id, "rest|rest_notify");
    }
}
