//! `POST /_emulator/notifications`: put notifications straight into the store.
//!
//! Some notifications cannot be created over REST: confirm notifications with buttons come
//! from portal modules, not from `im.notify.*.add`. Seeding them (and notifications with a
//! chosen date, author or read state) lets tests exercise `im.notify.confirm`, `get` paging and
//! `history.search` against the same data a real portal would hold.
//!
//! The body is one object or an array of them:
//! `{user_id, message, buttons?: [{TITLE, VALUE, TYPE?}], type?: "CONFIRM"|"USER"|"SYSTEM",
//!   author_id?, tag?, sub_tag?, attach?, created_at?: unix seconds, read?: bool}`.
//! Tags are stored as given (module tags carry no `MP|` prefix). An array is all-or-nothing.

use serde_json::Value;

use crate::control::ControlError;
use crate::store::NewNotification;
use crate::{AppState, attach, php};

struct Seed {
    new: NewNotification,
    buttons: Option<Value>,
    read: bool,
}

fn bad(description: impl Into<String>) -> ControlError {
    ControlError::bad("INVALID_SEED", description)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `[{TITLE, VALUE, TYPE}]` with upper-case keys; TITLE and VALUE must be scalars.
fn buttons(raw: &Value) -> Result<Value, String> {
    let items = match raw {
        Value::Array(items) if !items.is_empty() => items,
        _ => return Err("buttons must be a non-empty array".into()),
    };
    let mut out = Vec::new();
    for item in items {
        let Value::Object(map) = item else {
            return Err("each button must be an object".into());
        };
        let mut button = php::upper_case_keys(map.clone());
        for key in ["TITLE", "VALUE"] {
            match button.get(key).and_then(php::scalar_string) {
                Some(s) if !s.is_empty() => {
                    button.insert(key.to_owned(), Value::String(s));
                }
                _ => return Err(format!("each button needs a non-empty {key}")),
            }
        }
        out.push(Value::Object(button));
    }
    Ok(Value::Array(out))
}

fn one(state: &AppState, raw: &Value) -> Result<Seed, String> {
    let Value::Object(obj) = raw else {
        return Err("a notification must be a JSON object".into());
    };
    let user_id = obj
        .get("user_id")
        .and_then(Value::as_u64)
        .ok_or("user_id must be a positive integer")?;
    if state.store.user_state(user_id).is_none() {
        return Err(format!("user {user_id} does not exist"));
    }
    let message = obj
        .get("message")
        .and_then(Value::as_str)
        .map(php::trim)
        .filter(|m| !m.is_empty())
        .ok_or("message must be a non-empty string")?
        .to_owned();
    let author_id = match obj.get("author_id") {
        None | Some(Value::Null) => 0,
        Some(v) => v
            .as_u64()
            .ok_or("author_id must be a non-negative integer")?,
    };
    let buttons = match obj.get("buttons") {
        None | Some(Value::Null) => None,
        Some(b) => Some(buttons(b)?),
    };
    let kind: &'static str = match obj.get("type").and_then(Value::as_str) {
        Some("CONFIRM") => "CONFIRM",
        Some("USER") => "USER",
        Some("SYSTEM") => "SYSTEM",
        Some(other) => return Err(format!("unknown type {other:?}")),
        None if buttons.is_some() => "CONFIRM",
        None if author_id > 0 => "USER",
        None => "SYSTEM",
    };
    if (kind == "CONFIRM") != buttons.is_some() {
        return Err("buttons go with type CONFIRM, and only with it".into());
    }
    let text = |key: &str| -> Result<Option<String>, String> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("{key} must be a string")),
        }
    };
    let created_at = match obj.get("created_at") {
        None | Some(Value::Null) => now(),
        Some(v) => v.as_u64().ok_or("created_at must be unix seconds")?,
    };
    let attach = match obj.get("attach") {
        None | Some(Value::Null) => None,
        Some(raw) => match attach::parse(raw, created_at) {
            attach::Parsed::Ok(a) => Some(a),
            attach::Parsed::Oversize => return Err("attach is over the size limit".into()),
            attach::Parsed::Empty => return Err("attach has no valid block".into()),
        },
    };
    let read = match obj.get("read") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("read must be a boolean".into()),
    };
    Ok(Seed {
        new: NewNotification {
            user_id,
            author_id,
            kind,
            message,
            tag: text("tag")?,
            sub_tag: text("sub_tag")?,
            attach,
            created_at,
        },
        buttons,
        read,
    })
}

/// Store one notification (answered as stored) or an array of them (all or nothing; answered
/// as the list).
pub fn seed(state: &AppState, raw: &Value) -> Result<Value, ControlError> {
    let (items, single) = match raw {
        Value::Array(items) => (items.iter().collect::<Vec<_>>(), false),
        other => (vec![other], true),
    };
    let mut seeds = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        match one(state, item) {
            Ok(s) => seeds.push(s),
            Err(e) if single => return Err(bad(e)),
            Err(e) => return Err(bad(format!("item {i}: {e}"))),
        }
    }
    let mut created = Vec::new();
    for s in seeds {
        let id = state
            .store
            .add_notification_with_buttons(s.new, s.buttons)
            .and_then(|id| {
                if s.read {
                    state.store.set_read_where(true, |n| n.id == id)?;
                }
                Ok(id)
            })
            .map_err(|e| {
                tracing::error!(error = %e, "seeding failed");
                ControlError::core(e)
            })?;
        created.push(id);
    }
    let stored: Vec<crate::Notification> = state
        .notifications()
        .into_iter()
        .filter(|n| created.contains(&n.id))
        .collect();
    let answer = if single {
        stored.into_iter().next().map(serde_json::to_value)
    } else {
        Some(serde_json::to_value(stored))
    };
    answer
        .transpose()
        .map(Option::unwrap_or_default)
        .map_err(ControlError::core)
}
