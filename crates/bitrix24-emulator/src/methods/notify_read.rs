//! `im.notify.read`, `im.notify.read.list` and `im.notify.read.all` (docs/portal-behaviour.md §5.7–§5.9).
//!
//! All three act on the caller's own notifications only. Confirm notifications (with buttons)
//! are not marked: they stay unread until answered with `im.notify.confirm`, as the docs say
//! for `read.list` ("excluding CONFIRM"); the emulator applies that to all three so the unread
//! counter behaves the same whichever method a client uses.

use serde_json::{Value, json};

use super::Call;
use crate::error::ApiError;
use crate::php;
use crate::switches::ReadAllResult;

fn db_error(e: rusqlite::Error) -> ApiError {
    ApiError::core(format!("database error: {e}"))
}

/// `ACTION === 'Y'` marks read; anything else unread. An absent ACTION means `Y`.
fn marks_read(call: &Call<'_>) -> bool {
    match call.param("ACTION") {
        None => true,
        Some(v) => matches!(v, Value::String(s) if s == "Y"),
    }
}

/// `notifyRead`: from ID upwards (or only ID with `ONLY_CURRENT === 'Y'`); always `true`.
pub fn read(call: &Call<'_>) -> Result<Value, ApiError> {
    let owner = call.caller.user_id();
    if let Some(raw) = call.param("ID") {
        let id = php::intval(raw);
        if id >= 0 {
            let id = id as u64;
            let only_current =
                matches!(call.param("ONLY_CURRENT"), Some(Value::String(s)) if s == "Y");
            call.store
                .set_read_where(marks_read(call), |n| {
                    n.user_id == owner
                        && n.r#type != "CONFIRM"
                        && if only_current { n.id == id } else { n.id >= id }
                })
                .map_err(db_error)?;
        }
    }
    Ok(Value::Bool(true))
}

/// `notifyReadList`: IDS must be an array; stops at the first id that is not positive.
pub fn read_list(call: &Call<'_>) -> Result<Value, ApiError> {
    let ids = match call.param("IDS") {
        Some(v @ (Value::Array(_) | Value::Object(_))) => php::values(v).unwrap_or_default(),
        _ => return Err(ApiError::ids_not_array()),
    };
    let mut wanted = Vec::new();
    for id in ids {
        let id = php::intval(id);
        if id <= 0 {
            break;
        }
        wanted.push(id as u64);
    }
    if !wanted.is_empty() {
        let owner = call.caller.user_id();
        call.store
            .set_read_where(marks_read(call), |n| {
                n.user_id == owner && n.r#type != "CONFIRM" && wanted.contains(&n.id)
            })
            .map_err(db_error)?;
    }
    Ok(Value::Bool(true))
}

/// `notifyReadAll`: every notification of the caller; the result form is a switch.
pub fn read_all(call: &Call<'_>) -> Result<Value, ApiError> {
    let owner = call.caller.user_id();
    call.store
        .set_read_where(true, |n| n.user_id == owner && n.r#type != "CONFIRM")
        .map_err(db_error)?;
    match call.store.switches.read_all_result {
        ReadAllResult::Source => Ok(Value::Bool(true)),
        ReadAllResult::Docs => {
            let unread = call
                .store
                .records_where(|n| n.user_id == owner && !n.read)
                .len();
            Ok(json!({"result": true, "newCounter": unread}))
        }
    }
}
