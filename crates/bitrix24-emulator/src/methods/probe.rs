//! The methods clients call to probe a portal before using it: `user.current`, `user.get`,
//! `profile`, `server.time`, `methods`, `method.get` and `scope`.
//!
//! Shapes follow the docs' examples: uppercase user fields with string ids and RFC 3339 dates,
//! `user.get` pages of 50 with `total` and `next`, `methods`/`scope` as lists of names.

use std::cmp::Ordering;

use serde_json::{Value, json};

use super::registry::{self, Visibility};
use super::{Call, paged};
use crate::error::ApiError;
use crate::php;
use crate::timing::iso8601;
use crate::users::Profile;

/// `user.get` page size; the portal's is fixed.
const PAGE: u64 = 50;

fn me(call: &Call<'_>) -> Profile {
    let id = call.caller.user_id();
    Profile::new(id, call.store.user_state(id).unwrap_or(true))
}

/// `user.current`.
pub fn user_current(call: &Call<'_>) -> Result<Value, ApiError> {
    Ok(me(call).rest_fields(true, call.now))
}

/// `profile`: the basic-scope subset of the caller's account.
pub fn profile(call: &Call<'_>) -> Result<Value, ApiError> {
    let p = me(call);
    Ok(json!({
        "ID": p.id.to_string(),
        "ADMIN": p.is_admin(),
        "NAME": p.first_name,
        "LAST_NAME": p.last_name,
        "PERSONAL_GENDER": p.gender,
        "TIME_ZONE": "",
    }))
}

/// `server.time`: PHP `date('c')`.
pub fn server_time(call: &Call<'_>) -> Result<Value, ApiError> {
    Ok(json!(iso8601(call.now)))
}

/// `scope`: the granted scopes, or with a truthy `full` every installed one.
pub fn scope(call: &Call<'_>) -> Result<Value, ApiError> {
    let full = call.param("FULL").is_some_and(php::truthy);
    let list = if full {
        registry::ALL_SCOPES
    } else {
        registry::GRANTED_SCOPES
    };
    Ok(json!(list))
}

/// `methods`: public method names of the granted scopes plus basic ones; `scope` narrows to one
/// scope (`""` = basic only, unknown = none); a truthy `full` lists every scope's.
pub fn methods(call: &Call<'_>) -> Result<Value, ApiError> {
    let wanted = call.param("SCOPE").map(php::strval);
    let full = call.param("FULL").is_some_and(php::truthy);
    let names: Vec<&str> = registry::METHODS
        .iter()
        .filter(|m| m.visibility == Visibility::Listed)
        .filter(|m| match &wanted {
            Some(scope) => m.scope == scope,
            None => full || m.is_available(),
        })
        .map(|m| m.name)
        .collect();
    Ok(json!(names))
}

/// `method.get`: whether a (lower-case) method name exists and is callable here.
pub fn method_get(call: &Call<'_>) -> Result<Value, ApiError> {
    let name = call.param("NAME").map(php::strval).unwrap_or_default();
    let method = registry::find(&name);
    let available = method.is_some_and(registry::Method::is_available);
    Ok(json!({"isExisting": method.is_some(), "isAvailable": available}))
}

/// A `user.get` filter condition: `[prefix]FIELD => value`.
struct Condition {
    op: &'static str,
    field: String,
    value: Value,
}

/// Prefixes the portal's filter accepts, longest first so `>=` wins over `>`.
const OPERATORS: [&str; 12] = [
    "!=%", "!%=", "!@", "!%", "!=", "=%", "%=", ">=", "<=", "!", "@", "%",
];

fn condition(key: &str, value: &Value) -> Condition {
    let key = key.to_ascii_uppercase();
    for op in OPERATORS.into_iter().chain([">", "<", "="]) {
        if let Some(field) = key.strip_prefix(op) {
            return Condition {
                op,
                field: field.to_owned(),
                value: value.clone(),
            };
        }
    }
    Condition {
        op: "=",
        field: key,
        value: value.clone(),
    }
}

/// A field of a user record as the filter compares it.
fn field_value(user: &Value, field: &str) -> Option<Value> {
    let v = user.get(field)?;
    Some(match (field, v) {
        ("ACTIVE", Value::Bool(b)) => json!(if *b { "Y" } else { "N" }),
        _ => v.clone(),
    })
}

/// The filter's value as the strings it may match (`@` takes an array).
fn candidates(v: &Value) -> Vec<String> {
    match v {
        Value::Array(_) | Value::Object(_) => php::values(v)
            .unwrap_or_default()
            .into_iter()
            .map(php::strval)
            .collect(),
        Value::Bool(b) => vec![if *b { "Y" } else { "N" }.to_owned()],
        other => vec![php::strval(other)],
    }
}

fn compare(a: &str, b: &str) -> Ordering {
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
        _ => a.cmp(b),
    }
}

/// SQL `LIKE` with `%` wildcards, case-insensitive.
fn like(value: &str, pattern: &str) -> bool {
    let value = value.to_lowercase();
    let parts: Vec<String> = pattern
        .to_lowercase()
        .split('%')
        .map(str::to_owned)
        .collect();
    if parts.len() == 1 {
        return value == parts[0];
    }
    let mut at = 0;
    for (i, part) in parts.iter().enumerate() {
        if part.is_empty() {
            continue;
        }
        if i == 0 {
            if !value.starts_with(part.as_str()) {
                return false;
            }
            at = part.len();
        } else if i == parts.len() - 1 {
            return value.len() >= at + part.len() && value[at..].ends_with(part.as_str());
        } else if let Some(found) = value[at..].find(part.as_str()) {
            at += found + part.len();
        } else {
            return false;
        }
    }
    true
}

fn matches(user: &Value, c: &Condition) -> bool {
    let Some(actual) = field_value(user, &c.field) else {
        // User fields the emulator does not model match nothing but a negation.
        return c.op.starts_with('!');
    };
    let actual = match &actual {
        Value::Array(list) => list.iter().map(php::strval).collect::<Vec<_>>(),
        other => vec![php::strval(other)],
    };
    let mut wanted = candidates(&c.value);
    if c.field == "ACTIVE" {
        // `ACTIVE: true` (or "Y", "1", "true") keeps active users only.
        for w in &mut wanted {
            let yes = matches!(w.to_ascii_lowercase().as_str(), "y" | "1" | "true");
            *w = if yes { "Y" } else { "N" }.to_owned();
        }
    }
    let any =
        |f: &dyn Fn(&str, &str) -> bool| actual.iter().any(|a| wanted.iter().any(|w| f(a, w)));
    match c.op {
        "=" | "@" => any(&|a, w| compare(a, w) == Ordering::Equal),
        "!" | "!=" | "!@" => !any(&|a, w| compare(a, w) == Ordering::Equal),
        ">" => any(&|a, w| compare(a, w) == Ordering::Greater),
        "<" => any(&|a, w| compare(a, w) == Ordering::Less),
        ">=" => any(&|a, w| compare(a, w) != Ordering::Less),
        "<=" => any(&|a, w| compare(a, w) != Ordering::Greater),
        "%" => any(&|a, w| a.to_lowercase().contains(&w.to_lowercase())),
        "!%" => !any(&|a, w| a.to_lowercase().contains(&w.to_lowercase())),
        "=%" | "%=" => any(&|a, w| like(a, w)),
        _ => !any(&|a, w| like(a, w)),
    }
}

/// Parameters of `user.get` that are not filter fields.
const NOT_FILTERS: [&str; 5] = ["SORT", "ORDER", "FILTER", "ADMIN_MODE", "SELECT"];

/// Fields a `user.get` filter may name: the `user.add` fields plus the extras of the
/// `user.get` page; `UF_*` are custom fields. A key naming anything else (an SDK's
/// `bx24_request_id`, fast-bitrix24's `__order`) is no condition at all (portal-behaviour §9.4).
const FILTER_FIELDS: &[&str] = &[
    "ID",
    "XML_ID",
    "ACTIVE",
    "NAME",
    "LAST_NAME",
    "SECOND_NAME",
    "TITLE",
    "EMAIL",
    "LAST_LOGIN",
    "DATE_REGISTER",
    "TIMESTAMP_X",
    "LAST_ACTIVITY_DATE",
    "TIME_ZONE",
    "TIME_ZONE_OFFSET",
    "IS_ONLINE",
    "NAME_SEARCH",
    "FIND",
    "USER_TYPE",
    "PERSONAL_PROFESSION",
    "PERSONAL_WWW",
    "PERSONAL_BIRTHDAY",
    "PERSONAL_PHOTO",
    "PERSONAL_GENDER",
    "PERSONAL_ICQ",
    "PERSONAL_PHONE",
    "PERSONAL_FAX",
    "PERSONAL_MOBILE",
    "PERSONAL_PAGER",
    "PERSONAL_STREET",
    "PERSONAL_MAILBOX",
    "PERSONAL_CITY",
    "PERSONAL_STATE",
    "PERSONAL_ZIP",
    "PERSONAL_COUNTRY",
    "PERSONAL_NOTES",
    "WORK_COMPANY",
    "WORK_DEPARTMENT",
    "WORK_POSITION",
    "WORK_WWW",
    "WORK_PHONE",
    "WORK_FAX",
    "WORK_PAGER",
    "WORK_STREET",
    "WORK_MAILBOX",
    "WORK_CITY",
    "WORK_STATE",
    "WORK_ZIP",
    "WORK_COUNTRY",
    "WORK_PROFILE",
    "WORK_LOGO",
    "WORK_NOTES",
];

/// Whether a filter condition names a user field the portal filters by.
fn is_user_field(c: &Condition) -> bool {
    c.field.starts_with("UF_") || FILTER_FIELDS.contains(&c.field.as_str())
}

/// `user.get`: users matching `FILTER` (or the top-level fields), sorted, 50 a page, with
/// `total` and `next`.
pub fn user_get(call: &Call<'_>) -> Result<Value, ApiError> {
    let conditions: Vec<Condition> = match call.param("FILTER") {
        Some(Value::Object(map)) => map.iter().map(|(k, v)| condition(k, v)).collect(),
        _ => call
            .params
            .iter()
            .filter(|(k, v)| !NOT_FILTERS.contains(&k.as_str()) && !v.is_null())
            .map(|(k, v)| condition(k, v))
            .collect(),
    };
    let conditions: Vec<Condition> = conditions.into_iter().filter(is_user_field).collect();
    let sort = call
        .param("SORT")
        .map(php::strval)
        .unwrap_or_else(|| "ID".to_owned())
        .to_ascii_uppercase();
    let descending = call
        .param("ORDER")
        .map(php::strval)
        .is_some_and(|o| o.eq_ignore_ascii_case("desc"));

    let me = call.caller.user_id();
    let mut users: Vec<Value> = (1..=call.store.user_count())
        .filter_map(|id| {
            let active = call.store.user_state(id)?;
            Some(Profile::new(id, active).rest_fields(id == me, call.now))
        })
        .filter(|u| conditions.iter().all(|c| matches(u, c)))
        .collect();
    users.sort_by(|a, b| {
        let key = |u: &Value| u.get(&sort).map(php::strval).unwrap_or_default();
        let ord = compare(&key(a), &key(b));
        if descending { ord.reverse() } else { ord }
    });

    let total = users.len() as u64;
    // `getNavData`: a negative start is `nTopCount` — the first page, nothing counted.
    if call.start < 0 {
        users.truncate(PAGE as usize);
        return Ok(paged(users, None, 0));
    }
    let start = (call.start as u64).min(total);
    let page: Vec<Value> = users
        .into_iter()
        .skip(start as usize)
        .take(PAGE as usize)
        .collect();
    let next = (start + PAGE < total).then_some(start + PAGE);
    Ok(paged(page, next, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns() {
        assert!(like("Ivanov", "iva%"));
        assert!(!like("Petrov", "iva%"));
        assert!(like("Petrov", "%ov"));
        assert!(like("Petrov", "%tr%"));
        assert!(like("Anna", "anna"));
        assert!(!like("ab", "%abc"));
    }

    #[test]
    fn prefixes() {
        assert_eq!(condition(">=id", &json!(1)).op, ">=");
        assert_eq!(condition("!%LAST_NAME", &json!("x")).op, "!%");
        assert_eq!(condition("ID", &json!(1)).op, "=");
    }
}
