//! The relay's own queue: a SQLite file in WAL mode with `synchronous=FULL`, so an item answered
//! 202 is on disk before the answer leaves.
//!
//! One writer thread owns the writing connection and commits whatever jobs have piled up in
//! one transaction (group commit): under load many accepts share one fsync instead of each
//! paying for its own, and the async server never waits on the disk itself.
//!
//! An item is `queued` until a batch holding it is dispatched (its rate-limit slot taken, its
//! request about to be written); then `sending`. Delivered items are deleted; items the portal
//! refused, and items whose outcome is unknown, move to `dead_letters`. After a crash, items
//! still `sending` may have reached the portal: they are queued again only when a resend
//! cannot duplicate them (a tag, from an OAuth application), and dead-lettered otherwise —
//! the journal rules of `notify bulk`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use bitrix24::Request;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde_json::{Map, Value, json};

use super::{NewItem, Recovery, Refusal, Settlement, Stats, now_ms, shown_item};

/// Jobs the writer thread commits together, at most.
const GROUP: usize = 512;

enum Job {
    Enqueue(
        Vec<NewItem>,
        tokio::sync::oneshot::Sender<Result<Vec<u64>, String>>,
    ),
    Sending(Vec<u64>, mpsc::SyncSender<Result<(), String>>),
    NotRun(Vec<u64>, mpsc::SyncSender<Result<(), String>>),
    /// Dead letters back to the queue (`true`) or gone for good (`false`); `None`: all.
    Dead(
        Option<Vec<u64>>,
        bool,
        tokio::sync::oneshot::Sender<Result<Vec<u64>, String>>,
    ),
    Settle(
        Vec<(u64, Settlement)>,
        tokio::sync::oneshot::Sender<Result<(), String>>,
    ),
}

pub struct SqliteQueue {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    reader: Mutex<Connection>,
    /// Pending items (queued and sending), kept in step with the commits.
    pending: AtomicU64,
    path: PathBuf,
    /// Held while the relay runs: one relay per queue.
    _lock: std::fs::File,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    accepted_ms INTEGER NOT NULL,
    source TEXT NOT NULL,
    method TEXT NOT NULL,
    params TEXT NOT NULL,
    tagged INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'sending')),
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    description TEXT
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY,
    accepted_ms INTEGER NOT NULL,
    dead_ms INTEGER NOT NULL,
    source TEXT NOT NULL,
    method TEXT NOT NULL,
    params TEXT NOT NULL,
    tagged INTEGER NOT NULL DEFAULT 0,
    reason TEXT NOT NULL,
    error TEXT NOT NULL,
    description TEXT NOT NULL
);
";

impl SqliteQueue {
    /// Opens (or creates) the queue at `path` and recovers it; `resend_tagged` when tagged
    /// items may be sent again without a duplicate (an OAuth application).
    pub fn open(path: &Path, resend_tagged: bool) -> Result<(SqliteQueue, Recovery), String> {
        let shown = path.display();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("--queue: cannot create {}: {e}", dir.display()))?;
        }
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(format!(
                    "--queue: {shown} is a symbolic link; give the queue's real path"
                ));
            }
            Ok(meta) if !meta.is_file() => {
                return Err(format!("--queue: {shown} is not a regular file"));
            }
            Ok(_) => {}
            // Created private: queued texts are nobody else's business.
            Err(_) => {
                create_private(path).map_err(|e| format!("--queue: cannot create {shown}: {e}"))?
            }
        }
        // Only one relay may own a queue: a second would send every item again.
        let lock_path = {
            let mut name = path.as_os_str().to_owned();
            name.push(".lock");
            PathBuf::from(name)
        };
        let lock_file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| format!("--queue: cannot open {}: {e}", lock_path.display()))?;
        lock_file.try_lock().map_err(|_| {
            format!(
                "--queue: {shown} is in use by another oint serve; give each relay its own --queue"
            )
        })?;
        let fail = |e: rusqlite::Error| format!("--queue: {shown}: {e}");
        let not_a_queue = |e: rusqlite::Error| {
            format!(
                "--queue: {shown} is not a queue this relay can use ({e}); give another --queue file"
            )
        };
        let mut writer = connect(path).map_err(not_a_queue)?;
        // WAL lets /queue and the delivery loop read while the writer commits.
        writer
            .pragma_update(None, "journal_mode", "WAL")
            .and_then(|()| writer.execute_batch(SCHEMA))
            .map_err(not_a_queue)?;
        let recovery = recover(&mut writer, resend_tagged).map_err(fail)?;
        let reader = connect(path).map_err(fail)?;
        let pending: u64 = reader
            .query_row("SELECT count(*) FROM items", [], |r| r.get(0))
            .map_err(fail)?;
        let (jobs, inbox) = mpsc::channel();
        let writer = std::thread::Builder::new()
            .name("oint-serve-queue".into())
            .spawn(move || write_loop(writer, inbox))
            .map_err(|e| format!("cannot start the queue's writer thread: {e}"))?;
        Ok((
            SqliteQueue {
                jobs: Mutex::new(Some(jobs)),
                writer: Mutex::new(Some(writer)),
                reader: Mutex::new(reader),
                pending: AtomicU64::new(pending),
                path: path.to_path_buf(),
                _lock: lock_file,
            },
            recovery,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Pending items: committed, and being committed.
    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }

    /// Queues `items` durably (committed and synced) and gives their ids, in order; or
    /// `Full(pending)` when they would take the queue past `limit` (counted before the
    /// commit, so that accepts at once cannot overshoot it together).
    pub async fn enqueue(&self, items: Vec<NewItem>, limit: u64) -> Result<Vec<u64>, Refusal> {
        let n = items.len() as u64;
        self.pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
                p.checked_add(n).filter(|total| *total <= limit)
            })
            .map_err(Refusal::Full)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let committed = match self.submit(Job::Enqueue(items, tx)) {
            Ok(()) => rx.await.map_err(|_| stopped()).and_then(|r| r),
            Err(e) => Err(e),
        };
        committed.map_err(|e| {
            self.pending.fetch_sub(n, Ordering::AcqRel);
            Refusal::Failed(e)
        })
    }

    /// Marks items `sending`, durably, before their batch is written. Blocks until synced:
    /// it runs inside the bulk sender's dispatch hook, which must not return before.
    pub fn mark_sending(&self, ids: &[u64]) -> Result<(), String> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit(Job::Sending(ids.to_vec(), tx))?;
        rx.recv().map_err(|_| stopped())?
    }

    /// Marks items `queued` again after their batch certainly did not run (it is retried,
    /// or settled later); blocks like [`SqliteQueue::mark_sending`].
    pub fn mark_not_run(&self, ids: &[u64]) -> Result<(), String> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit(Job::NotRun(ids.to_vec(), tx))?;
        rx.recv().map_err(|_| stopped())?
    }

    /// Records a batch's outcomes.
    pub async fn settle(&self, outcomes: Vec<(u64, Settlement)>) -> Result<(), String> {
        let gone = outcomes
            .iter()
            .filter(|(_, s)| !matches!(s, Settlement::Again { .. }))
            .count() as u64;
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(Job::Settle(outcomes, tx))?;
        rx.await.map_err(|_| stopped())??;
        self.pending.fetch_sub(gone, Ordering::Relaxed);
        Ok(())
    }

    /// Puts dead letters (the given ones, or all) back in the queue, as a person decided
    /// after looking at them; gives the ids now queued.
    pub async fn requeue_dead(&self, ids: Option<Vec<u64>>) -> Result<Vec<u64>, String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(Job::Dead(ids, true, tx))?;
        let moved = rx.await.map_err(|_| stopped())??;
        self.pending.fetch_add(moved.len() as u64, Ordering::AcqRel);
        Ok(moved)
    }

    /// Deletes dead letters (the given ones, or all); gives the ids deleted.
    pub async fn purge_dead(&self, ids: Option<Vec<u64>>) -> Result<Vec<u64>, String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(Job::Dead(ids, false, tx))?;
        rx.await.map_err(|_| stopped())?
    }

    /// The request of a pending item.
    pub fn load(&self, id: u64) -> Result<Option<Request>, String> {
        let reader = lock(&self.reader);
        let row: Option<(String, String)> = reader
            .query_row(
                "SELECT method, params FROM items WHERE id = ?1",
                [id as i64],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| format!("queue: cannot read item {id}: {e}"))?;
        let Some((method, params)) = row else {
            return Ok(None);
        };
        let params: Map<String, Value> = serde_json::from_str(&params)
            .map_err(|e| format!("queue: item {id} is damaged: {e}"))?;
        Ok(Some(super::request_from(method, params)))
    }

    pub fn stats(&self) -> Result<Stats, String> {
        let reader = lock(&self.reader);
        let read = || -> rusqlite::Result<Stats> {
            let (pending, oldest_ms) =
                reader.query_row("SELECT count(*), min(accepted_ms) FROM items", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
            let dead = reader.query_row("SELECT count(*) FROM dead_letters", [], |r| r.get(0))?;
            Ok(Stats {
                pending,
                dead,
                oldest_ms,
            })
        };
        read().map_err(|e| format!("queue: cannot read its size: {e}"))
    }

    /// Up to `limit` pending and `limit` dead-lettered items, oldest first, for `GET /queue`.
    /// They hold what was queued (user, text, attach), never a credential.
    pub fn listing(&self, limit: usize) -> Result<Value, String> {
        let reader = lock(&self.reader);
        let read = || -> rusqlite::Result<Value> {
            let mut pending = Vec::new();
            let mut stmt = reader.prepare(
                "SELECT id, accepted_ms, source, method, params, state, attempts, error, description
                 FROM items ORDER BY id LIMIT ?1",
            )?;
            let mut rows = stmt.query([limit as i64])?;
            while let Some(r) = rows.next()? {
                let mut item = shown_item(
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    &r.get::<_, String>(4)?,
                );
                item["state"] = json!(r.get::<_, String>(5)?);
                item["attempts"] = json!(r.get::<_, i64>(6)?);
                if let Some(error) = r.get::<_, Option<String>>(7)? {
                    item["last_error"] =
                        json!({"error": error, "description": r.get::<_, Option<String>>(8)?});
                }
                pending.push(item);
            }
            let mut dead = Vec::new();
            let mut stmt = reader.prepare(
                "SELECT id, accepted_ms, source, method, params, dead_ms, reason, error, description
                 FROM dead_letters ORDER BY id LIMIT ?1",
            )?;
            let mut rows = stmt.query([limit as i64])?;
            while let Some(r) = rows.next()? {
                let mut item = shown_item(
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    &r.get::<_, String>(4)?,
                );
                item["dead_ms"] = json!(r.get::<_, i64>(5)?);
                item["reason"] = json!(r.get::<_, String>(6)?);
                item["error"] = json!(r.get::<_, String>(7)?);
                item["description"] = json!(r.get::<_, String>(8)?);
                dead.push(item);
            }
            Ok(json!({"pending": pending, "dead_letters": dead}))
        };
        read().map_err(|e| format!("queue: cannot list it: {e}"))
    }

    /// Commits what is left and stops the writer thread.
    pub fn close(&self) {
        lock(&self.jobs).take();
        if let Some(writer) = lock(&self.writer).take() {
            let _ = writer.join();
        }
    }

    fn submit(&self, job: Job) -> Result<(), String> {
        lock(&self.jobs)
            .as_ref()
            .ok_or_else(stopped)?
            .send(job)
            .map_err(|_| stopped())
    }
}

impl Drop for SqliteQueue {
    fn drop(&mut self) {
        self.close();
    }
}

fn stopped() -> String {
    "queue: its writer has stopped (see the error above)".into()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(unix)]
fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(drop)
}

#[cfg(not(unix))]
fn create_private(path: &Path) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map(drop)
}

fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    // Every commit is synced before its jobs hear of it.
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

fn recover(conn: &mut Connection, resend_tagged: bool) -> rusqlite::Result<Recovery> {
    let tx = conn.transaction()?;
    let resumed = if resend_tagged {
        tx.execute(
            "UPDATE items SET state = 'queued' WHERE state = 'sending' AND tagged = 1",
            [],
        )? as u64
    } else {
        0
    };
    let moved = tx.execute(
        "INSERT INTO dead_letters (id, accepted_ms, dead_ms, source, method, params, tagged, reason, error, description)
         SELECT id, accepted_ms, ?1, source, method, params, tagged, 'outcome_unknown', 'OUTCOME_UNKNOWN',
                'the relay stopped while this was being sent; it may have reached the portal, and sending it again could duplicate it'
         FROM items WHERE state = 'sending'",
        [now_ms()],
    )? as u64;
    tx.execute("DELETE FROM items WHERE state = 'sending'", [])?;
    let queued = {
        let mut stmt = tx.prepare("SELECT id FROM items ORDER BY id")?;
        stmt.query_map([], |r| r.get::<_, i64>(0).map(|id| id as u64))?
            .collect::<rusqlite::Result<Vec<u64>>>()?
    };
    tx.commit()?;
    Ok(Recovery {
        queued,
        resumed,
        unknown: moved,
    })
}

fn write_loop(mut conn: Connection, inbox: mpsc::Receiver<Job>) {
    while let Ok(first) = inbox.recv() {
        let mut jobs = vec![first];
        while jobs.len() < GROUP {
            match inbox.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        commit_group(&mut conn, jobs);
    }
}

/// Applies every job in one transaction, each in a savepoint of its own, then commits; a
/// job hears of its result only after the commit is synced.
fn commit_group(conn: &mut Connection, jobs: Vec<Job>) {
    let now = now_ms();
    let mut results: Vec<Result<Vec<u64>, String>> = Vec::with_capacity(jobs.len());
    let committed = (|| -> rusqlite::Result<()> {
        let mut tx = conn.transaction()?;
        for job in &jobs {
            let sp = tx.savepoint()?;
            let applied = match job {
                Job::Enqueue(items, _) => apply_enqueue(&sp, items, now),
                Job::Sending(ids, _) => apply_state(&sp, ids, "sending").map(|()| Vec::new()),
                Job::NotRun(ids, _) => apply_state(&sp, ids, "queued").map(|()| Vec::new()),
                Job::Settle(outcomes, _) => apply_settle(&sp, outcomes, now).map(|()| Vec::new()),
                Job::Dead(ids, requeue, _) => apply_dead(&sp, ids.as_deref(), *requeue),
            };
            results.push(match applied {
                Ok(ids) => {
                    sp.commit()?;
                    Ok(ids)
                }
                // Dropping the savepoint rolls this job back; the others still commit.
                Err(e) => Err(format!("queue: {e}")),
            });
        }
        tx.commit()
    })();
    let failed = committed
        .err()
        .map(|e| format!("queue: cannot commit: {e}"));
    for (job, result) in jobs.into_iter().zip(
        results
            .into_iter()
            .map(Some)
            .chain(std::iter::repeat_with(|| None)),
    ) {
        let result = match (&failed, result) {
            (Some(e), _) => Err(e.clone()),
            (None, Some(r)) => r,
            (None, None) => Err(stopped()),
        };
        match job {
            Job::Enqueue(_, reply) | Job::Dead(_, _, reply) => {
                let _ = reply.send(result);
            }
            Job::Sending(_, reply) | Job::NotRun(_, reply) => {
                let _ = reply.send(result.map(drop));
            }
            Job::Settle(_, reply) => {
                let _ = reply.send(result.map(drop));
            }
        }
    }
}

fn apply_enqueue(conn: &Connection, items: &[NewItem], now: i64) -> rusqlite::Result<Vec<u64>> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO items (accepted_ms, source, method, params, tagged, state)
         VALUES (?1, ?2, ?3, ?4, ?5, 'queued')",
    )?;
    let mut ids = Vec::with_capacity(items.len());
    for item in items {
        let params = Value::Object(item.request.params().clone()).to_string();
        stmt.execute(params![
            now,
            item.source,
            item.request.method(),
            params,
            item.tagged
        ])?;
        ids.push(conn.last_insert_rowid() as u64);
    }
    Ok(ids)
}

fn apply_dead(conn: &Connection, ids: Option<&[u64]>, requeue: bool) -> rusqlite::Result<Vec<u64>> {
    let chosen: Vec<u64> = match ids {
        Some(ids) => {
            let mut stmt = conn.prepare_cached("SELECT id FROM dead_letters WHERE id = ?1")?;
            let mut found = Vec::new();
            for id in ids {
                if stmt.exists([*id as i64])? {
                    found.push(*id);
                }
            }
            found
        }
        None => {
            let mut stmt = conn.prepare("SELECT id FROM dead_letters ORDER BY id")?;
            stmt.query_map([], |r| r.get::<_, i64>(0).map(|id| id as u64))?
                .collect::<rusqlite::Result<_>>()?
        }
    };
    for id in &chosen {
        if requeue {
            conn.prepare_cached(
                "INSERT INTO items (id, accepted_ms, source, method, params, tagged, state, attempts, error, description)
                 SELECT id, accepted_ms, source, method, params, tagged, 'queued', 0, error, description
                 FROM dead_letters WHERE id = ?1",
            )?
            .execute([*id as i64])?;
        }
        conn.prepare_cached("DELETE FROM dead_letters WHERE id = ?1")?
            .execute([*id as i64])?;
    }
    Ok(chosen)
}

fn apply_state(conn: &Connection, ids: &[u64], state: &str) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached("UPDATE items SET state = ?2 WHERE id = ?1")?;
    for id in ids {
        stmt.execute(params![*id as i64, state])?;
    }
    Ok(())
}

fn apply_settle(
    conn: &Connection,
    outcomes: &[(u64, Settlement)],
    now: i64,
) -> rusqlite::Result<()> {
    for (id, settlement) in outcomes {
        let id = *id as i64;
        match settlement {
            Settlement::Delivered => {
                conn.prepare_cached("DELETE FROM items WHERE id = ?1")?
                    .execute([id])?;
            }
            Settlement::Again { error, description } => {
                conn.prepare_cached(
                    "UPDATE items SET state = 'queued', attempts = attempts + 1, error = ?2, description = ?3
                     WHERE id = ?1",
                )?
                .execute(params![id, error, description])?;
            }
            Settlement::Dead {
                reason,
                error,
                description,
            } => {
                conn.prepare_cached(
                    "INSERT OR REPLACE INTO dead_letters
                       (id, accepted_ms, dead_ms, source, method, params, tagged, reason, error, description)
                     SELECT id, accepted_ms, ?2, source, method, params, tagged, ?3, ?4, ?5 FROM items WHERE id = ?1",
                )?
                .execute(params![id, now, reason, error, description])?;
                conn.prepare_cached("DELETE FROM items WHERE id = ?1")?
                    .execute([id])?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(text: &str, tagged: bool) -> NewItem {
        NewItem {
            request: Request::new("im.notify.personal.add")
                .param("USER_ID", 1)
                .param("MESSAGE", text),
            tagged,
            source: "notify".into(),
        }
    }

    /// The journal rules after a crash: what was `sending` is resent only when tagged over
    /// OAuth; the rest of it is dead-lettered; what was only queued is queued.
    #[tokio::test]
    async fn a_restart_sorts_what_was_in_flight_by_whether_a_resend_is_safe() {
        for resend_tagged in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("q.sqlite3");
            let (queue, recovery) = SqliteQueue::open(&path, resend_tagged).unwrap();
            assert_eq!(recovery.queued, Vec::<u64>::new());
            let ids = queue
                .enqueue(
                    vec![item("a", true), item("b", false), item("c", false)],
                    100,
                )
                .await
                .unwrap();
            assert_eq!(ids, [1, 2, 3]);
            queue.mark_sending(&ids[..2]).unwrap();
            drop(queue);

            let (queue, recovery) = SqliteQueue::open(&path, resend_tagged).unwrap();
            if resend_tagged {
                assert_eq!(recovery.queued, [1, 3]);
                assert_eq!((recovery.resumed, recovery.unknown), (1, 1));
            } else {
                assert_eq!(recovery.queued, [3]);
                assert_eq!((recovery.resumed, recovery.unknown), (0, 2));
            }
            let stats = queue.stats().unwrap();
            assert_eq!(stats.pending, recovery.queued.len() as u64);
            assert_eq!(stats.dead, recovery.unknown);
            assert_eq!(queue.pending(), stats.pending);
            let listing = queue.listing(10).unwrap();
            let dead: Vec<&Value> = listing["dead_letters"].as_array().unwrap().iter().collect();
            assert!(
                dead.iter().all(|d| d["reason"] == "outcome_unknown"),
                "{listing}"
            );
            let texts: Vec<&str> = dead.iter().map(|d| d["text"].as_str().unwrap()).collect();
            assert_eq!(
                texts,
                if resend_tagged {
                    vec!["b"]
                } else {
                    vec!["a", "b"]
                }
            );
            assert_eq!(
                queue.load(3).unwrap().unwrap().params()["MESSAGE"],
                "c",
                "a queued item reads back as it was accepted"
            );
        }
    }

    #[tokio::test]
    async fn settled_items_leave_the_queue_or_wait_in_it_again() {
        let dir = tempfile::tempdir().unwrap();
        let (queue, _) = SqliteQueue::open(&dir.path().join("q.sqlite3"), false).unwrap();
        let ids = queue
            .enqueue(
                vec![item("a", false), item("b", false), item("c", false)],
                100,
            )
            .await
            .unwrap();
        queue.mark_sending(&ids).unwrap();
        queue
            .settle(vec![
                (ids[0], Settlement::Delivered),
                (
                    ids[1],
                    Settlement::Again {
                        error: "NOT_SENT".into(),
                        description: "no connection".into(),
                    },
                ),
                (
                    ids[2],
                    Settlement::Dead {
                        reason: "failed",
                        error: "USER_NOT_FOUND".into(),
                        description: "no such user".into(),
                    },
                ),
            ])
            .await
            .unwrap();
        assert_eq!(queue.pending(), 1);
        assert!(queue.load(ids[0]).unwrap().is_none());
        let listing = queue.listing(10).unwrap();
        assert_eq!(listing["pending"][0]["state"], "queued");
        assert_eq!(listing["pending"][0]["attempts"], 1);
        assert_eq!(listing["pending"][0]["last_error"]["error"], "NOT_SENT");
        assert_eq!(listing["dead_letters"][0]["error"], "USER_NOT_FOUND");
    }

    #[test]
    fn a_queue_that_is_not_one_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.txt");
        std::fs::write(&path, "not a database, just notes\n".repeat(100)).unwrap();
        let err = SqliteQueue::open(&path, false).err().unwrap();
        assert!(err.contains("is not a queue this relay can use"), "{err}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "not a database, just notes\n".repeat(100)
        );
        #[cfg(unix)]
        {
            let link = dir.path().join("link.sqlite3");
            std::os::unix::fs::symlink(dir.path().join("elsewhere"), &link).unwrap();
            let err = SqliteQueue::open(&link, false).err().unwrap();
            assert!(err.contains("symbolic link"), "{err}");
            assert!(!dir.path().join("elsewhere").exists());
        }
        let err = SqliteQueue::open(dir.path(), false).err().unwrap();
        assert!(err.contains("not a regular file"), "{err}");
    }
}
