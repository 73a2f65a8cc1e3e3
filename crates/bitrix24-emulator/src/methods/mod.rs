//! The REST methods the emulator serves, behind one dispatch function.
//!
//! Handlers decode the wire and authenticate; everything after that (which method, its
//! validation order, its result) is here, away from HTTP. A later `batch` can then call
//! [`call`] for each sub-command with the same caller and its own parsed parameters.

use serde_json::{Map, Value};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::operating::Operating;
use crate::store::Store;

mod notify;

/// Everything a method needs: the state, who calls, and the upper-cased parameters.
pub struct Call<'a> {
    pub store: &'a Store,
    pub caller: &'a Caller,
    pub params: &'a Map<String, Value>,
    /// Unix time of the request.
    pub now: u64,
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

/// Run `method` (already lower-cased, without `.json`). Unknown methods give
/// ERROR_METHOD_NOT_FOUND.
pub fn call(method: &str, call: &Call<'_>) -> Result<Value, ApiError> {
    match method {
        "im.notify" => notify::add(call, notify::Kind::FromParam),
        "im.notify.personal.add" => notify::add(call, notify::Kind::User),
        "im.notify.system.add" => notify::add(call, notify::Kind::System),
        "im.notify.delete" => notify::delete(call),
        _ => Err(ApiError::method_not_found()),
    }
}
