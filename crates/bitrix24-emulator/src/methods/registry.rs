//! Every REST method the emulator serves: name, scope, whether `methods` lists it, handler.
//!
//! Dispatch ([`super::call`]), `methods`, `method.get` and `scope` all read [`METHODS`], so
//! what is callable and what the probe methods report cannot disagree. Adding a method is one
//! entry here plus its handler. Scope `""` is the `basic` scope every application has without
//! asking.

use serde_json::Value;

use super::{Call, batch, notify, notify_get, notify_read, notify_reply, probe};
use crate::error::ApiError;

/// What a method runs: the call in, the `result` (or the portal's error) out.
pub type Handler = fn(&Call<'_>) -> Result<Value, ApiError>;

/// Whether `methods` lists a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    Listed,
    /// Registered as private on the portal: callable, but not listed by `methods`.
    Hidden,
}

/// One REST method.
#[derive(Clone, Copy)]
pub struct Method {
    /// Lower-case, without `.json`.
    pub name: &'static str,
    /// The scope code; `""` for basic methods.
    pub scope: &'static str,
    pub visibility: Visibility,
    pub handler: Handler,
}

impl Method {
    /// Callable with the scopes every webhook and token of the emulator is granted.
    pub fn is_available(&self) -> bool {
        self.scope.is_empty() || GRANTED_SCOPES.contains(&self.scope)
    }
}

const fn listed(name: &'static str, scope: &'static str, handler: Handler) -> Method {
    Method {
        name,
        scope,
        visibility: Visibility::Listed,
        handler,
    }
}

const fn hidden(name: &'static str, scope: &'static str, handler: Handler) -> Method {
    Method {
        name,
        scope,
        visibility: Visibility::Hidden,
        handler,
    }
}

/// In the order `methods` lists them.
pub const METHODS: &[Method] = &[
    // Sub-commands come back through dispatch; `batch::run` refuses a nested batch first.
    listed("batch", "", batch::run),
    listed("scope", "", probe::scope),
    listed("methods", "", probe::methods),
    listed("method.get", "", probe::method_get),
    listed("server.time", "", probe::server_time),
    listed("profile", "", probe::profile),
    listed("user.current", "user", probe::user_current),
    listed("user.get", "user", probe::user_get),
    listed("im.notify", "im", |c| {
        notify::add(c, notify::Kind::FromParam)
    }),
    listed("im.notify.personal.add", "im", |c| {
        notify::add(c, notify::Kind::User)
    }),
    listed("im.notify.system.add", "im", |c| {
        notify::add(c, notify::Kind::System)
    }),
    hidden("im.notify.get", "im", notify_get::get),
    listed("im.notify.delete", "im", notify::delete),
    listed("im.notify.read", "im", notify_read::read),
    listed("im.notify.read.list", "im", notify_read::read_list),
    listed("im.notify.read.all", "im", notify_read::read_all),
    listed("im.notify.confirm", "im", notify_reply::confirm),
    listed("im.notify.answer", "im", notify_reply::answer),
    hidden("im.notify.history.search", "im", notify_get::history_search),
    hidden("im.notify.schema.get", "im", notify_get::schema_get),
];

/// Scopes every webhook and token of the emulator is granted (basic is implied, never listed).
pub const GRANTED_SCOPES: &[&str] = &["im", "user"];

/// Every scope the emulated portal has installed (`scope` with `full=true`).
pub const ALL_SCOPES: &[&str] = &["im", "user", "user_basic", "user_brief"];

/// The method of a lower-case name.
pub fn find(name: &str) -> Option<&'static Method> {
    METHODS.iter().find(|m| m.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_lower_case_and_scoped_as_installed() {
        let mut seen = std::collections::BTreeSet::new();
        for m in METHODS {
            assert!(seen.insert(m.name), "{} registered twice", m.name);
            assert_eq!(m.name, m.name.to_lowercase(), "{}", m.name);
            assert!(
                m.scope.is_empty() || ALL_SCOPES.contains(&m.scope),
                "{} has an uninstalled scope {}",
                m.name,
                m.scope
            );
        }
    }
}
