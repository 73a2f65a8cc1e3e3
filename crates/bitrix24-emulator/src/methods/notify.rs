//! The `im.notify.*` rules, following `im_rest.php` (`notifyAdd`, `notifyDelete`) and
//! `CIMMessenger::Add` as described in docs/portal-behaviour.md §5.3–§5.6 and §6.
//!
//! The order of checks matters to clients (an empty USER_ID is reported before an empty
//! MESSAGE, a bad ATTACH before a missing recipient), so each step below is numbered like the
//! list in docs/portal-behaviour.md §5.3 and runs in that order.

use md5::{Digest, Md5};
use serde_json::Value;

use super::Call;
use crate::attach;
use crate::error::ApiError;
use crate::php;
use crate::store::NewNotification;
use crate::switches::WebhookTags;

/// `CIMMessenger::MESSAGE_LIMIT`.
const MESSAGE_LIMIT: usize = 20_000;
/// Appended to a cut message; a message is cut only when longer than limit + its length.
const CUT_MARK: &str = " (...)";

/// Which notification type the method asks for.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// `im.notify.personal.add`
    User,
    /// `im.notify.system.add`
    System,
    /// `im.notify`: `TYPE` must be exactly `SYSTEM`, anything else is USER.
    FromParam,
}

/// `notifyAdd`.
pub fn add(call: &Call<'_>, kind: Kind) -> Result<Value, ApiError> {
    // 1. Session auth does not exist in the emulator; webhooks and OAuth are both allowed.

    // 2. TO overrides USER_ID.
    let user_id = call
        .param("TO")
        .or_else(|| call.param("USER_ID"))
        .map_or(0, php::intval);
    if user_id <= 0 {
        return Err(ApiError::user_id_empty());
    }
    let user_id = user_id as u64;

    // 3. The method name forces the type.
    let system = match kind {
        Kind::User => false,
        Kind::System => true,
        Kind::FromParam => {
            call.param("TYPE").and_then(php::scalar_string).as_deref() == Some("SYSTEM")
        }
    };

    // 4. MESSAGE is trimmed; arrays count as empty (PHP 7's trim() gives null for them).
    let raw_message = call
        .param("MESSAGE")
        .and_then(php::scalar_string)
        .unwrap_or_default();
    let mut message = php::trim(&raw_message).to_owned();
    if message.is_empty() {
        return Err(ApiError::message_empty());
    }

    // 5. Author, and the app-name prefix on system notifications sent by an app.
    let author_id = if system { 0 } else { call.caller.user_id() };
    if system && let Some(client_id) = call.caller.client_id() {
        let name = call
            .store
            .app(client_id)
            .map_or_else(|| client_id.to_owned(), |a| a.name);
        message = format!("{name}#BR#{message}");
    }

    // 7. TAG/SUB_TAG only for OAuth apps; a webhook's are dropped, CLIENT_ID or not, unless
    // `--webhook-tags docs` keys them under its CLIENT_ID as `notifyDelete` does (§6.2).
    let webhook_client = match call.store.switches.webhook_tags {
        WebhookTags::Docs => call
            .param("CLIENT_ID")
            .map(php::strval)
            .filter(|c| !c.is_empty())
            .map(|c| format!("custom{c}")),
        WebhookTags::Source => None,
    };
    let (tag, sub_tag) = match call
        .caller
        .client_id()
        .map(str::to_owned)
        .or(webhook_client)
    {
        Some(client_id) => (
            call.param("TAG")
                .filter(|t| php::truthy(t))
                .map(|t| stored_tag(&client_id, &php::strval(t))),
            call.param("SUB_TAG")
                .filter(|t| php::truthy(t))
                .map(|t| stored_tag(&client_id, &php::strval(t))),
        ),
        None => (None, None),
    };

    // 8. ATTACH.
    let attach = match call.param("ATTACH") {
        None => None,
        Some(raw) => match attach::parse(raw, call.now) {
            attach::Parsed::Ok(attach) => Some(attach),
            attach::Parsed::Oversize => return Err(ApiError::attach_oversize()),
            attach::Parsed::Empty if php::truthy(raw) => return Err(ApiError::attach_error()),
            attach::Parsed::Empty => None,
        },
    };

    // 9. CIMMessenger::Add: a missing or inactive recipient is `false`, not an error.
    if !call.store.is_active_user(user_id) {
        return Ok(Value::Bool(false));
    }
    let message = limit_message(&message.replace("[BR]", "\n").replace("[br]", "\n"));

    let new = NewNotification {
        user_id,
        author_id,
        kind: if system { "SYSTEM" } else { "USER" },
        message,
        tag,
        sub_tag,
        attach,
        created_at: call.now,
    };
    let id = call
        .store
        .add_notification(new)
        .map_err(|e| ApiError::core(format!("database error: {e}")))?;
    Ok(Value::from(id))
}

/// `CIMMessenger::Add`: trim again after `[BR]` expansion, then cut over-long text.
fn limit_message(message: &str) -> String {
    let message = php::trim(message);
    if message.chars().count() > MESSAGE_LIMIT + CUT_MARK.len() {
        let cut: String = message.chars().take(MESSAGE_LIMIT).collect();
        format!("{cut}{CUT_MARK}")
    } else {
        message.to_owned()
    }
}

/// `'MP|' . substr(md5($clientId), 0, 5) . '|' . $tag`
pub fn stored_tag(client_id: &str, tag: &str) -> String {
    let digest = Md5::digest(client_id.as_bytes());
    let hex: String = digest.iter().take(3).map(|b| format!("{b:02x}")).collect();
    format!("MP|{}|{tag}", &hex[..5])
}

/// `notifyDelete`: by ID (own notifications only), else by TAG or SUB_TAG for a client id.
pub fn delete(call: &Call<'_>) -> Result<Value, ApiError> {
    let db_error = |e: rusqlite::Error| ApiError::core(format!("database error: {e}"));

    if let Some(id) = call.param("ID") {
        // DeleteWithCheck: only a notification in the caller's own notification chat.
        let id = php::intval(id);
        if id <= 0 {
            return Ok(Value::Bool(false));
        }
        let owner = call.caller.user_id();
        let deleted = call
            .store
            .delete_where(|n| n.id == id as u64 && n.user_id == owner)
            .map_err(db_error)?;
        return Ok(Value::Bool(deleted > 0));
    }

    // An app's own client id; a webhook may name one, which is then keyed as `custom<ID>`.
    let client_id = match (call.caller.client_id(), call.param("CLIENT_ID")) {
        (Some(client_id), _) => client_id.to_owned(),
        (None, Some(param)) => format!("custom{}", php::strval(param)),
        (None, None) => return Err(ApiError::access_denied("Client ID not specified")),
    };

    // DeleteByTag / DeleteBySubTag: portal-wide, true even when nothing matched.
    let (field, value): (fn(&crate::Notification) -> Option<&str>, &Value) =
        if let Some(tag) = call.param("TAG") {
            (|n| n.tag.as_deref(), tag)
        } else if let Some(sub_tag) = call.param("SUB_TAG") {
            (|n| n.sub_tag.as_deref(), sub_tag)
        } else {
            return Err(ApiError::params_error());
        };
    let value = php::strval(value);
    if value.is_empty() {
        return Ok(Value::Bool(false));
    }
    let stored = stored_tag(&client_id, &value);
    call.store
        .delete_where(|n| field(n) == Some(stored.as_str()))
        .map_err(db_error)?;
    Ok(Value::Bool(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_tag_uses_md5_prefix() {
        // md5("local.emulator.app") starts with these five hex digits.
        let hex = format!("{:x}", Md5::digest(b"local.emulator.app"));
        assert_eq!(
            stored_tag("local.emulator.app", "New"),
            format!("MP|{}|New", &hex[..5])
        );
        // md5("") = d41d8cd98f00b204e9800998ecf8427e
        assert_eq!(stored_tag("", "x"), "MP|d41d8|x");
    }

    #[test]
    fn long_messages_are_cut() {
        let exact = "a".repeat(MESSAGE_LIMIT + 6);
        assert_eq!(limit_message(&exact), exact);
        let long = "é".repeat(MESSAGE_LIMIT + 7);
        let cut = limit_message(&long);
        assert_eq!(cut.chars().count(), MESSAGE_LIMIT + 6);
        assert!(cut.ends_with(" (...)"));
    }
}
