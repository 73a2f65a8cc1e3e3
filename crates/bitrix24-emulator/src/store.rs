//! The portal's state: users, credentials and notifications.
//!
//! Everything the API rules read or change lives here behind one lock, so a request sees and
//! makes a consistent change (the same-TAG replace deletes and inserts in one step). Users and
//! credentials come from the configuration on every start; notifications and the id counter are
//! the portal's data and, when a data file is given, are written through to SQLite before the
//! in-memory copy changes, so a restart finds them again and ids are never reused.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use crate::{Error, Notification};

/// The built-in OAuth application every configured access token is issued to.
#[derive(Debug, Clone)]
pub struct App {
    pub name: String,
}

/// An issued OAuth access token.
#[derive(Debug, Clone)]
pub struct AccessToken {
    pub user_id: u64,
    pub client_id: String,
    /// Unix time; the token is expired when `expires_at <= now`.
    pub expires_at: u64,
}

/// Static configuration the store is built from.
pub struct Seed {
    pub users: u64,
    pub inactive: BTreeSet<u64>,
    pub webhooks: Vec<(u64, String)>,
    pub tokens: Vec<(String, AccessToken)>,
    pub apps: Vec<(String, App)>,
}

/// A notification as stored, with the fields the public view leaves out.
#[derive(Debug, Clone)]
pub struct Record {
    pub notification: Notification,
    pub created_at: u64,
}

/// A notification about to be stored; the store assigns the id.
#[derive(Debug, Clone)]
pub struct NewNotification {
    pub user_id: u64,
    pub author_id: u64,
    pub kind: &'static str,
    pub message: String,
    pub tag: Option<String>,
    pub sub_tag: Option<String>,
    pub attach: Option<Value>,
    pub created_at: u64,
}

pub struct Store {
    inner: Mutex<Inner>,
    /// Choices between documented and observed behaviour.
    pub switches: crate::switches::Switches,
    /// PHP's `max_input_vars` and friends, for every `parse_str` (batch commands too).
    pub input_limits: crate::php::InputLimits,
    /// Bumped after every change to the notifications, so live views (the inbox's event
    /// stream) wait for a change instead of polling.
    changes: tokio::sync::watch::Sender<u64>,
    /// Held for as long as the data file is in use; after `inner`, so it is released last.
    _data_lock: Option<crate::datafile::DataLock>,
}

struct Inner {
    users: u64,
    inactive: BTreeSet<u64>,
    webhooks: BTreeSet<(u64, String)>,
    tokens: HashMap<String, AccessToken>,
    apps: HashMap<String, App>,
    notifications: BTreeMap<u64, Record>,
    next_id: u64,
    db: Option<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS notifications (
    id         INTEGER PRIMARY KEY,
    user_id    INTEGER NOT NULL,
    author_id  INTEGER NOT NULL,
    type       TEXT    NOT NULL,
    message    TEXT    NOT NULL,
    tag        TEXT,
    sub_tag    TEXT,
    attach     TEXT,
    is_read    INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS notifications_user_tag ON notifications (user_id, tag);
";

/// Columns added after the first release, with their definitions. Files written before they
/// existed get them on open, so old data files stay usable.
const ADDED_COLUMNS: &[(&str, &str)] = &[("buttons", "TEXT")];

fn migrate(db: &Connection) -> Result<(), rusqlite::Error> {
    let mut stmt = db.prepare("SELECT name FROM pragma_table_info('notifications')")?;
    let existing: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<_, _>>()?;
    for (name, definition) in ADDED_COLUMNS {
        if !existing.iter().any(|c| c == name) {
            db.execute_batch(&format!(
                "ALTER TABLE notifications ADD COLUMN {name} {definition}"
            ))?;
        }
    }
    Ok(())
}

impl Store {
    pub fn open(seed: Seed, data: Option<&Path>) -> Result<Store, Error> {
        let mut inner = Inner {
            users: seed.users,
            inactive: seed.inactive,
            webhooks: seed.webhooks.into_iter().collect(),
            tokens: seed.tokens.into_iter().collect(),
            apps: seed.apps.into_iter().collect(),
            notifications: BTreeMap::new(),
            next_id: 1,
            db: None,
        };
        let mut data_lock = None;
        if let Some(path) = data {
            data_lock = Some(crate::datafile::prepare(path)?);
            let db = Connection::open(path)?;
            // Two processes on one file (an emulator and a sandboxed CLI) wait instead of failing.
            db.busy_timeout(std::time::Duration::from_secs(5))?;
            db.execute_batch(SCHEMA)?;
            migrate(&db)?;
            inner.load(&db)?;
            inner.db = Some(db);
        }
        Ok(Store {
            inner: Mutex::new(inner),
            switches: crate::switches::Switches::default(),
            input_limits: crate::php::InputLimits::default(),
            changes: tokio::sync::watch::Sender::new(0),
            _data_lock: data_lock,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere must not take the whole emulator down with a poisoned lock.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A receiver that sees a new value after each change to the notifications.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Whether `user_id` exists and is active (inactive users do not receive notifications).
    pub fn is_active_user(&self, user_id: u64) -> bool {
        let inner = self.lock();
        user_id >= 1 && user_id <= inner.users && !inner.inactive.contains(&user_id)
    }

    /// The webhook's number (its place among the configured webhooks, which never change
    /// while the portal runs), if `user_id` and `secret` name one.
    pub fn webhook_number(&self, user_id: u64, secret: &str) -> Option<usize> {
        self.lock()
            .webhooks
            .iter()
            .position(|(u, s)| *u == user_id && s == secret)
    }

    pub fn access_token(&self, token: &str) -> Option<AccessToken> {
        self.lock().tokens.get(token).cloned()
    }

    /// Register an access token issued at run time (OAuth refresh, control plane).
    pub fn insert_access_token(&self, token: String, issued: AccessToken) {
        self.lock().tokens.insert(token, issued);
    }

    pub fn app(&self, client_id: &str) -> Option<App> {
        self.lock().apps.get(client_id).cloned()
    }

    pub fn notifications(&self) -> Vec<Notification> {
        self.lock()
            .notifications
            .values()
            .map(|r| r.notification.clone())
            .collect()
    }

    /// Insert a notification, first deleting the recipient's earlier ones with the same tag.
    pub fn add_notification(&self, new: NewNotification) -> Result<u64, rusqlite::Error> {
        self.add_notification_with_buttons(new, None)
    }

    /// [`add_notification`](Self::add_notification) for a confirm notification with buttons.
    pub fn add_notification_with_buttons(
        &self,
        new: NewNotification,
        buttons: Option<Value>,
    ) -> Result<u64, rusqlite::Error> {
        let mut inner = self.lock();
        let id = inner.next_id;
        let replaced: Vec<u64> = match &new.tag {
            Some(tag) => inner
                .notifications
                .values()
                .filter(|r| {
                    r.notification.user_id == new.user_id
                        && r.notification.tag.as_deref() == Some(tag.as_str())
                })
                .map(|r| r.notification.id)
                .collect(),
            None => Vec::new(),
        };
        let record = Record {
            notification: Notification {
                id,
                user_id: new.user_id,
                author_id: new.author_id,
                r#type: new.kind.to_owned(),
                message: new.message,
                tag: new.tag,
                sub_tag: new.sub_tag,
                attach: new.attach,
                read: false,
                buttons,
            },
            created_at: new.created_at,
        };
        if let Some(db) = inner.db.as_mut() {
            let tx = db.transaction()?;
            for old in &replaced {
                tx.execute(
                    "DELETE FROM notifications WHERE id = ?1",
                    params![*old as i64],
                )?;
            }
            insert_row(&tx, &record)?;
            set_next_id(&tx, id + 1)?;
            tx.commit()?;
        }
        for old in &replaced {
            inner.notifications.remove(old);
        }
        inner.notifications.insert(id, record);
        inner.next_id = id + 1;
        drop(inner);
        self.changed();
        Ok(id)
    }

    /// Delete the notifications matching `pred`; returns how many went.
    pub fn delete_where(
        &self,
        pred: impl Fn(&Notification) -> bool,
    ) -> Result<usize, rusqlite::Error> {
        let mut inner = self.lock();
        let ids: Vec<u64> = inner
            .notifications
            .values()
            .filter(|r| pred(&r.notification))
            .map(|r| r.notification.id)
            .collect();
        if ids.is_empty() {
            return Ok(0);
        }
        if let Some(db) = inner.db.as_mut() {
            let tx = db.transaction()?;
            for id in &ids {
                tx.execute(
                    "DELETE FROM notifications WHERE id = ?1",
                    params![*id as i64],
                )?;
            }
            tx.commit()?;
        }
        for id in &ids {
            inner.notifications.remove(id);
        }
        drop(inner);
        self.changed();
        Ok(ids.len())
    }

    /// Forget every notification and start ids from 1 again.
    pub fn reset(&self) -> Result<(), rusqlite::Error> {
        let mut inner = self.lock();
        if let Some(db) = inner.db.as_mut() {
            let tx = db.transaction()?;
            tx.execute("DELETE FROM notifications", [])?;
            set_next_id(&tx, 1)?;
            tx.commit()?;
        }
        inner.notifications.clear();
        inner.next_id = 1;
        drop(inner);
        self.changed();
        Ok(())
    }

    /// `Some(active)` for an existing user, `None` for an unknown id.
    pub fn user_state(&self, user_id: u64) -> Option<bool> {
        let inner = self.lock();
        (user_id >= 1 && user_id <= inner.users).then(|| !inner.inactive.contains(&user_id))
    }

    /// How many users exist (`1..=n`).
    pub fn user_count(&self) -> u64 {
        self.lock().users
    }

    /// Copies of the records matching `pred`, in id order.
    pub fn records_where(&self, pred: impl Fn(&Notification) -> bool) -> Vec<Record> {
        self.lock()
            .notifications
            .values()
            .filter(|r| pred(&r.notification))
            .cloned()
            .collect()
    }

    /// Set the read flag of the notifications matching `pred`; returns how many changed.
    pub fn set_read_where(
        &self,
        read: bool,
        pred: impl Fn(&Notification) -> bool,
    ) -> Result<usize, rusqlite::Error> {
        let mut inner = self.lock();
        let ids: Vec<u64> = inner
            .notifications
            .values()
            .filter(|r| r.notification.read != read && pred(&r.notification))
            .map(|r| r.notification.id)
            .collect();
        if ids.is_empty() {
            return Ok(0);
        }
        if let Some(db) = inner.db.as_mut() {
            let tx = db.transaction()?;
            for id in &ids {
                tx.execute(
                    "UPDATE notifications SET is_read = ?1 WHERE id = ?2",
                    params![i64::from(read), *id as i64],
                )?;
            }
            tx.commit()?;
        }
        for id in &ids {
            if let Some(r) = inner.notifications.get_mut(id) {
                r.notification.read = read;
            }
        }
        drop(inner);
        self.changed();
        Ok(ids.len())
    }

    /// Delete the first notification matching `pred` and return it, in one step, so two
    /// concurrent confirms of one notification cannot both succeed.
    pub fn take_where(
        &self,
        pred: impl Fn(&Notification) -> bool,
    ) -> Result<Option<Record>, rusqlite::Error> {
        let mut inner = self.lock();
        let Some(id) = inner
            .notifications
            .values()
            .find(|r| pred(&r.notification))
            .map(|r| r.notification.id)
        else {
            return Ok(None);
        };
        if let Some(db) = inner.db.as_mut() {
            db.execute(
                "DELETE FROM notifications WHERE id = ?1",
                params![id as i64],
            )?;
        }
        let taken = inner.notifications.remove(&id);
        drop(inner);
        self.changed();
        Ok(taken)
    }
}

impl Inner {
    fn load(&mut self, db: &Connection) -> Result<(), Error> {
        let next: Option<String> = db
            .query_row(
                "SELECT value FROM meta WHERE key = 'next_notification_id'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        let mut stmt = db.prepare(
            "SELECT id, user_id, author_id, type, message, tag, sub_tag, attach, is_read, created_at,
                    buttons
             FROM notifications ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            let attach: Option<String> = r.get(7)?;
            let buttons: Option<String> = r.get(10)?;
            Ok(Record {
                notification: Notification {
                    id: r.get::<_, i64>(0)? as u64,
                    user_id: r.get::<_, i64>(1)? as u64,
                    author_id: r.get::<_, i64>(2)? as u64,
                    r#type: r.get(3)?,
                    message: r.get(4)?,
                    tag: r.get(5)?,
                    sub_tag: r.get(6)?,
                    // A row edited by hand into invalid JSON loses its attach, not the row.
                    attach: attach.and_then(|a| serde_json::from_str(&a).ok()),
                    read: r.get::<_, i64>(8)? != 0,
                    buttons: buttons.and_then(|b| serde_json::from_str(&b).ok()),
                },
                created_at: r.get::<_, i64>(9)? as u64,
            })
        })?;
        for row in rows {
            let record = row?;
            self.notifications.insert(record.notification.id, record);
        }
        let max_id = self.notifications.keys().next_back().copied().unwrap_or(0);
        let stored_next = next.and_then(|v| v.parse::<u64>().ok()).unwrap_or(1);
        self.next_id = stored_next.max(max_id + 1);
        Ok(())
    }
}

fn insert_row(tx: &rusqlite::Transaction<'_>, r: &Record) -> Result<(), rusqlite::Error> {
    let n = &r.notification;
    let attach = n.attach.as_ref().map(Value::to_string);
    let buttons = n.buttons.as_ref().map(Value::to_string);
    tx.execute(
        "INSERT INTO notifications (id, user_id, author_id, type, message, tag, sub_tag, attach, is_read, created_at, buttons)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            n.id as i64,
            n.user_id as i64,
            n.author_id as i64,
            n.r#type,
            n.message,
            n.tag,
            n.sub_tag,
            attach,
            i64::from(n.read),
            r.created_at as i64,
            buttons
        ],
    )?;
    Ok(())
}

fn set_next_id(tx: &rusqlite::Transaction<'_>, next: u64) -> Result<(), rusqlite::Error> {
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('next_notification_id', ?1)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![next.to_string()],
    )?;
    Ok(())
}
