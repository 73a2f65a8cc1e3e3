//! The REST methods the emulator serves, behind one dispatch function and one [`registry`].
//!
//! Handlers decode the wire and authenticate; everything after that (which method, its
//! validation order, its result) is here, away from HTTP. A later `batch` can then call
//! [`call`] for each sub-command with the same caller and its own parsed parameters.

use serde_json::{Map, Value};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::operating::Operating;
use crate::store::Store;

pub mod batch;
mod notify;
mod notify_get;
mod notify_read;
mod notify_reply;
mod probe;
pub mod registry;

/// Everything a method needs: the state, who calls, and the upper-cased parameters.
pub struct Call<'a> {
    pub store: &'a Store,
    pub caller: &'a Caller,
    pub params: &'a Map<String, Value>,
    /// Unix time of the request.
    pub now: u64,
    /// The `start` request parameter (`intval`): the offset of list methods; negative means
    /// the first page without counting (`total` 0, no `next`).
    pub start: i64,
    /// Operating-time accounting; `batch` runs each sub-command through
    /// [`Operating::sub_call`].
    #[allow(dead_code)] // until batch uses it
    pub operating: &'a Operating,
}

impl Call<'_> {
    /// `isset($arParams[KEY])`.
    pub fn param(&self, key: &str) -> Option<&Value> {
        self.params.get(key).filter(|v| !v.is_null())
    }
}

/// The `start` request parameter as `CRestServer::processCall` reads it: `intval`.
pub fn start_param(value: Option<Value>) -> i64 {
    value.map_or(0, |v| crate::php::intval(&v))
}

/// Run `method` (already lower-cased, without `.json`) from the [`registry`]. Unknown methods
/// give ERROR_METHOD_NOT_FOUND.
pub fn call(method: &str, call: &Call<'_>) -> Result<Value, ApiError> {
    match registry::find(method) {
        Some(m) => (m.handler)(call),
        None => Err(ApiError::method_not_found()),
    }
}

/// A page of a list method, as PHP returns it: the items under keys `0..n-1` plus `next` (when
/// more follow) and `total`. [`lift_paging`] takes those two out again, as `CRestServer` does.
pub fn paged(items: Vec<Value>, next: Option<u64>, total: u64) -> Value {
    let mut map = Map::new();
    for (i, item) in items.into_iter().enumerate() {
        map.insert(i.to_string(), item);
    }
    if let Some(next) = next {
        map.insert("next".into(), Value::from(next));
    }
    map.insert("total".into(), Value::from(total));
    Value::Object(map)
}

/// Take `next` and `total` out of an array result, returning `(result, next, total)`. What is
/// left of a page is a list again (`[]` when empty).
pub fn lift_paging(result: Value) -> (Value, Option<Value>, Option<Value>) {
    match result {
        Value::Object(mut map) if map.contains_key("next") || map.contains_key("total") => {
            let next = map.shift_remove("next");
            let total = map.shift_remove("total");
            let rest = Value::Object(map);
            let rest = if crate::php::is_list(&rest) {
                Value::Array(
                    crate::php::values(&rest)
                        .unwrap_or_default()
                        .into_iter()
                        .cloned()
                        .collect(),
                )
            } else {
                rest
            };
            (rest, next, total)
        }
        other => (other, None, None),
    }
}
