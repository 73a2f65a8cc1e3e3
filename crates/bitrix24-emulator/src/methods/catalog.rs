//! Which methods the portal offers, in which scope, and which are hidden from `methods`.
//!
//! `methods`, `method.get` and `scope` answer from this table, so the probe methods and the
//! dispatcher cannot disagree about what exists. `scope` `""` is the `basic` scope that every
//! application has without asking.

/// One REST method.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub name: &'static str,
    /// The scope code; `""` for basic methods.
    pub scope: &'static str,
    /// Registered as private: callable, but not listed by `methods`.
    pub private: bool,
}

const fn public(name: &'static str, scope: &'static str) -> Entry {
    Entry {
        name,
        scope,
        private: false,
    }
}

const fn private(name: &'static str, scope: &'static str) -> Entry {
    Entry {
        name,
        scope,
        private: true,
    }
}

pub const METHODS: &[Entry] = &[
    public("batch", ""),
    public("scope", ""),
    public("methods", ""),
    public("method.get", ""),
    public("server.time", ""),
    public("profile", ""),
    public("user.current", "user"),
    public("user.get", "user"),
    public("im.notify", "im"),
    public("im.notify.personal.add", "im"),
    public("im.notify.system.add", "im"),
    private("im.notify.get", "im"),
    public("im.notify.delete", "im"),
    public("im.notify.read", "im"),
    public("im.notify.read.list", "im"),
    public("im.notify.read.all", "im"),
    public("im.notify.confirm", "im"),
    public("im.notify.answer", "im"),
    private("im.notify.history.search", "im"),
    private("im.notify.schema.get", "im"),
];

/// Scopes every webhook and token of the emulator is granted (basic is implied, never listed).
pub const GRANTED_SCOPES: &[&str] = &["im", "user"];

/// Every scope the emulated portal has installed (`scope` with `full=true`).
pub const ALL_SCOPES: &[&str] = &["im", "user", "user_basic", "user_brief"];

pub fn find(name: &str) -> Option<&'static Entry> {
    METHODS.iter().find(|e| e.name == name)
}
