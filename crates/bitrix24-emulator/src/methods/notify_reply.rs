//! `im.notify.confirm` and `im.notify.answer` (docs/portal-behaviour.md §5.10, §5.11; `CIMNotify::Confirm/Answer`).
//!
//! A confirm notification has buttons; choosing one deletes the notification and answers with
//! the messages the owning module returns, or "you chose `<button>`" when it returns none (the
//! `rest` module has no handler). Answer accepts any notification in the caller's chat and
//! leaves it in place. Neither can reach another user's notifications.

use serde_json::{Value, json};

use super::Call;
use crate::error::ApiError;
use crate::php;

/// `IM_CONFIRM_CHOICE`; the exact English lang string was not found, so this is a paraphrase.
fn confirm_choice(title: &str) -> String {
    format!("You have chosen \"{title}\"")
}

/// `IM_ANSWER_DONE`, as in the docs' example answer.
const ANSWER_DONE: &str = "Your response has been successfully sent.";

/// `ID` overrides `NOTIFY_ID`; not a positive integer → ID_ERROR.
fn notification_id(call: &Call<'_>) -> Result<u64, ApiError> {
    let id = call
        .param("ID")
        .or_else(|| call.param("NOTIFY_ID"))
        .map_or(0, php::intval);
    if id <= 0 {
        return Err(ApiError::id_error());
    }
    Ok(id as u64)
}

/// PHP 8 loose `==` between a button VALUE and the chosen value: numeric strings compare as
/// numbers, everything else as strings.
fn loose_eq(button: &Value, chosen: &str) -> bool {
    let Some(button) = php::scalar_string(button) else {
        return false;
    };
    let numeric = |s: &str| php::trim(s).parse::<f64>().ok();
    match (numeric(&button), numeric(chosen)) {
        (Some(a), Some(b)) => a == b,
        _ => button == chosen,
    }
}

/// `notifyConfirm`.
pub fn confirm(call: &Call<'_>) -> Result<Value, ApiError> {
    let id = notification_id(call)?;
    // `empty()`: "", "0", [] and absent are all missing.
    let value = match call.param("NOTIFY_VALUE") {
        Some(v) if php::truthy(v) => php::strval(v),
        _ => return Err(ApiError::notify_value_error()),
    };
    let owner = call.caller.user_id();
    let taken = call
        .store
        .take_where(|n| n.id == id && n.user_id == owner && n.r#type == "CONFIRM")
        .map_err(|e| ApiError::core(format!("database error: {e}")))?;
    let Some(record) = taken else {
        return Ok(json!({"result_message": false}));
    };
    let buttons = record
        .notification
        .buttons
        .as_ref()
        .and_then(php::values)
        .unwrap_or_default();
    let messages: Vec<String> = buttons
        .into_iter()
        .find(|b| php::get(b, "VALUE").is_some_and(|v| loose_eq(v, &value)))
        .map(|b| confirm_choice(&php::get(b, "TITLE").map(php::strval).unwrap_or_default()))
        .into_iter()
        .collect();
    Ok(json!({"result_message": messages}))
}

/// `notifyAnswer`.
pub fn answer(call: &Call<'_>) -> Result<Value, ApiError> {
    let id = notification_id(call)?;
    let text = call
        .param("ANSWER_TEXT")
        .and_then(php::scalar_string)
        .unwrap_or_default();
    if php::trim(&text).is_empty() {
        return Err(ApiError::answer_text_error());
    }
    let owner = call.caller.user_id();
    let found = !call
        .store
        .records_where(|n| n.id == id && n.user_id == owner)
        .is_empty();
    if !found {
        return Ok(json!({"result_message": false}));
    }
    Ok(json!({"result_message": [ANSWER_DONE]}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loose_equality() {
        assert!(loose_eq(&json!("Y"), "Y"));
        assert!(!loose_eq(&json!("Y"), "y"));
        assert!(loose_eq(&json!(1), "1"));
        assert!(loose_eq(&json!("1"), "01"));
        assert!(!loose_eq(&json!(["Y"]), "Y"));
    }
}
