//! `oint notify bulk`: thousands of notifications at the portal's speed limit, resumable.
//!
//! The input is read twice, both times as a stream so memory stays flat however long it is:
//! first every row is checked (nothing is sent if any row is bad, unless `--skip-invalid`),
//! then the rows go out in `batch` calls of 50 through the library's bulk sender, several
//! batches in flight, paced by the shared rate limiter. Standard input is copied to an
//! unnamed temporary file (the system removes it however the process ends, even by kill -9)
//! so that it can be read twice; at most `--stdin-limit` of it. A row longer than
//! [`input::MAX_ROW_BYTES`] is an invalid row, skipped without being held in memory.
//!
//! With `--journal`, each batch's rows are recorded the moment it is dispatched (its
//! rate-limit slot taken, its request about to be written) and their outcomes after its
//! answer, so a run that is killed can be run again and picks up where it stopped: rows
//! already delivered or refused are skipped, rows that never left are sent, and rows whose
//! fate is unknown are sent again only when a resend cannot duplicate them (a tag, from an
//! OAuth application).
//!
//! `--report` and `--journal` are refused when they are the same file as `--input` or as
//! each other (the report would truncate the input), and neither is written through a
//! symbolic link.

pub mod input;
pub mod journal;

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use bitrix24::{BulkItem, Client, ItemOutcome};
use futures_util::{StreamExt, stream};
use serde_json::{Value, json};

pub use input::Format;
use input::{Row, RowError};
use journal::{Entry, Journal, State};

use crate::connect::connect;
use crate::flags::{BulkFlags, Connection};
use crate::output::{Exit, Failure, Success, note};
use crate::settings::{self, Global};

/// Rows per `batch` call: the portal's maximum.
const BATCH: usize = 50;
/// Invalid rows listed one by one before the rest are only counted.
const SHOWN_ERRORS: usize = 50;

/// What `oint notify bulk` was asked to do, resolved.
pub struct Options {
    pub input: String,
    pub format: Option<Format>,
    pub skip_invalid: bool,
    pub report: Option<PathBuf>,
    pub journal: Option<PathBuf>,
    pub concurrency: usize,
    pub dry_run: bool,
    /// The most bytes of standard input spooled for `--input -`.
    pub stdin_limit: u64,
    /// Warnings make a row invalid (`--strict`).
    pub strict: bool,
}

#[derive(Default)]
struct Tally {
    rows: u64,
    delivered: u64,
    failed: u64,
    /// Failures that were the credentials' fault.
    auth: u64,
    unknown: u64,
    invalid: u64,
    earlier: u64,
    /// Rows sent with warnings: the portal drops or changes part of them.
    warned: u64,
}

/// Runs `oint notify bulk`: its own exit codes (0 all delivered, 3 some, 1 none…), and its
/// own per-row report as it goes.
pub async fn command(
    flags: BulkFlags,
    conn: &Connection,
    global: &Global,
) -> Result<Success, Failure> {
    let resolved =
        settings::real_world(|world| settings::resolve_connection(conn, &global.transport, world))
            .map_err(Failure::Usage)?;
    let options = Options {
        input: flags.input,
        format: flags.format,
        skip_invalid: flags.skip_invalid,
        report: flags.report,
        journal: flags.journal,
        concurrency: flags.concurrency as usize,
        dry_run: conn.dry_run,
        stdin_limit: flags.stdin_limit.saturating_mul(1 << 20),
        strict: global.strict || resolved.strict,
    };
    let (client, _sandbox) = connect(resolved.target, &resolved.transport).await?;
    run(&client, options).await.map(Success::Finished)
}

pub async fn run(client: &Client, options: Options) -> Result<Exit, Failure> {
    let started = Instant::now();
    distinct_files(&options)?;
    let input = input_file(&options.input, options.stdin_limit)?;
    let format = options
        .format
        .unwrap_or_else(|| Format::guess(Path::new(&options.input)));

    // Over a webhook the portal drops tags: a warning per row, or with --strict an invalid row.
    let portal = client.portal();

    // Pass 1: check every row.
    let mut invalid: Vec<RowError> = Vec::new();
    let mut invalid_count = 0u64;
    let mut valid = 0u64;
    let mut warned = 0u64;
    let mut warnings_shown = 0usize;
    let mut last_line = 0u64;
    for raw in input::read_from(rewound(&input)?, format).map_err(Failure::Usage)? {
        last_line = last_line.max(match &raw {
            Ok(raw) => raw.line,
            Err(e) => e.line,
        });
        match raw.and_then(|raw| checked(&raw, options.strict, portal)) {
            Ok(row) => {
                valid += 1;
                warned += u64::from(!row.warnings.is_empty());
                for w in &row.warnings {
                    if warnings_shown < SHOWN_ERRORS {
                        crate::severity::warn(&format!("line {}: {}", row.line, w.line));
                    }
                    warnings_shown += 1;
                }
            }
            Err(e) => {
                invalid_count += 1;
                if invalid.len() < SHOWN_ERRORS {
                    invalid.push(e);
                }
            }
        }
    }
    for e in &invalid {
        note(&format!("line {}: {}", e.line, e.message));
    }
    if warnings_shown > SHOWN_ERRORS {
        note(&format!(
            "… and {} more warnings",
            warnings_shown - SHOWN_ERRORS
        ));
    }
    if invalid_count > invalid.len() as u64 {
        note(&format!(
            "… and {} more invalid rows",
            invalid_count - invalid.len() as u64
        ));
    }
    if invalid_count > 0 && !options.skip_invalid {
        return Err(Failure::Usage(format!(
            "{invalid_count} of {} rows are invalid; nothing was sent (fix them, or pass --skip-invalid to send the rest)",
            invalid_count + valid
        )));
    }
    if options.dry_run {
        note(&format!(
            "bulk: {valid} valid rows ({warned} with warnings), {invalid_count} invalid; nothing sent (--dry-run)"
        ));
        return Ok(Exit::Ok);
    }

    // Pass 2: send.
    let journal = match &options.journal {
        // The input's fingerprint is only needed (and read) to match it with a journal.
        Some(path) => {
            Some(Journal::open(path, &fingerprint(&input)?, last_line).map_err(Failure::Usage)?)
        }
        None => None,
    };
    let report = match &options.report {
        Some(path) => Some(BufWriter::new(
            journal::open_no_follow(
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true),
                path,
            )
            .map_err(|e| Failure::Usage(journal::no_follow_error("--report", path, e)))?,
        )),
        None => None,
    };
    let resend_safe = client.portal().is_oauth();
    // Shared with the bulk sender's dispatch hook, which records `sending`.
    let journal = Mutex::new(journal);
    let journal_failed: Mutex<Option<String>> = Mutex::new(None);
    let state = RefCell::new(Run {
        journal: &journal,
        report,
        tally: Tally::default(),
        progress: progress(valid),
        refused: None,
        warnings: HashMap::new(),
    });

    let mut reader = input::read_from(rewound(&input)?, format).map_err(Failure::Usage)?;
    // Chunks of up to 50 sendable rows, pulled lazily; rows that need no sending are settled
    // on the way.
    let chunks = std::iter::from_fn(|| {
        let mut chunk: Vec<Row> = Vec::with_capacity(BATCH);
        for raw in reader.by_ref() {
            let mut run = state.borrow_mut();
            run.tally.rows += 1;
            let mut row = match raw.and_then(|raw| checked(&raw, options.strict, portal)) {
                Ok(row) => row,
                Err(e) => {
                    run.tally.invalid += 1;
                    let mut line =
                        json!({"row": e.line, "error": "INVALID_ROW", "description": e.message});
                    if !e.rules.is_empty() {
                        line["rules"] = json!(e.rules);
                    }
                    run.report(line);
                    continue;
                }
            };
            let warnings: Vec<Value> = std::mem::take(&mut row.warnings)
                .into_iter()
                .map(|w| json!({"rule": w.rule, "message": w.line}))
                .collect();
            run.tally.warned += u64::from(!warnings.is_empty());
            let known = lock(run.journal)
                .as_ref()
                .map_or(State::Pending, |j| j.state(row.line));
            match known {
                State::Delivered => {
                    run.tally.earlier += 1;
                    run.tally.delivered += 1;
                    run.progress.inc(1);
                    run.report(json!({"row": row.line, "outcome": "delivered_earlier"}));
                }
                State::Failed => {
                    run.tally.earlier += 1;
                    run.tally.failed += 1;
                    run.progress.inc(1);
                    run.report(json!({"row": row.line, "outcome": "failed_earlier"}));
                }
                State::Unknown if !(row.tagged && resend_safe) => {
                    run.tally.unknown += 1;
                    run.progress.inc(1);
                    run.report(
                        json!({"row": row.line, "outcome": "outcome_unknown", "resent": false}),
                    );
                }
                State::Unknown | State::Pending => {
                    if !warnings.is_empty() {
                        run.warnings.insert(row.line, Value::Array(warnings));
                    }
                    chunk.push(row);
                    if chunk.len() == BATCH {
                        break;
                    }
                }
            }
        }
        (!chunk.is_empty()).then_some(chunk)
    });

    // Records `sending` (durably) the moment a batch is about to be written; a journal that
    // cannot be written stops the batch unsent, and the run.
    let on_dispatch = |rows: &[u64]| -> Result<(), String> {
        let Some(journal) = lock(&journal).as_mut().map(|j| j.sending(rows)) else {
            return Ok(());
        };
        journal.inspect_err(|e| {
            lock(&journal_failed).get_or_insert_with(|| e.clone());
        })
    };
    let sends = stream::iter(chunks).map(|chunk| {
        let state = &state;
        let on_dispatch = &on_dispatch;
        async move {
            // After the credentials were refused, every later batch would be refused too.
            let refused = state.borrow().refused.clone();
            if let Some(code) = refused {
                let mut run = state.borrow_mut();
                for row in &chunk {
                    run.tally.failed += 1;
                    run.progress.inc(1);
                    let description =
                        format!("not sent: the portal refused the credentials ({code})");
                    run.report(json!({"row": row.line, "error": code, "description": description}));
                }
                return Ok(());
            }
            let items = chunk.into_iter().map(|r| BulkItem {
                row: r.line,
                request: r.request,
            });
            let outcomes: Vec<(u64, ItemOutcome)> = client
                .bulk(stream::iter(items))
                .batch_size(BATCH)
                .concurrency(1)
                .on_dispatch(on_dispatch)
                .run()
                .collect()
                .await;
            state.borrow_mut().settle(outcomes)
        }
    });
    let mut sends = sends.buffer_unordered(options.concurrency.max(1));
    while let Some(done) = sends.next().await {
        if let Some(e) = lock(&journal_failed).take() {
            return Err(Failure::Local(e));
        }
        done.map_err(Failure::Local)?;
    }
    drop(sends);

    let mut run = state.into_inner();
    run.progress.finish_and_clear();
    if let Some(report) = run.report.as_mut() {
        report
            .flush()
            .map_err(|e| Failure::Local(format!("--report: cannot write: {e}")))?;
    }
    let t = &run.tally;
    note(&format!(
        "bulk: {} rows: {} delivered, {} failed, {} outcome unknown, {} invalid, {} with warnings{}; {:.1} s",
        t.rows,
        t.delivered,
        t.failed,
        t.unknown,
        t.invalid,
        t.warned,
        if t.earlier > 0 {
            format!(" ({} settled by an earlier run)", t.earlier)
        } else {
            String::new()
        },
        started.elapsed().as_secs_f64()
    ));
    Ok(if t.delivered == t.rows {
        Exit::Ok
    } else if t.delivered > 0 {
        Exit::Partial
    } else if t.auth > 0 {
        Exit::Auth
    } else if t.unknown > 0 && t.failed == 0 && t.invalid == 0 {
        Exit::Unknown
    } else {
        Exit::Failed
    })
}

/// [`input::check`], and the library's warning for a tag over a webhook: one more warning of
/// the row, or with `strict` what makes it invalid.
pub fn checked(
    raw: &input::RawRow,
    strict: bool,
    portal: &bitrix24::Portal,
) -> Result<Row, RowError> {
    let mut row = input::check(raw, strict)?;
    if let Some(finding) = bitrix24::notify::webhook_tag_finding(&row.request, portal) {
        let line = crate::severity::line(&finding, &|f| input::column_of(&f.field).to_string());
        if strict {
            return Err(RowError {
                line: row.line,
                message: format!("{line} (a warning, refused: --strict)"),
                rules: vec![finding.rule.id()],
            });
        }
        row.warnings.push(input::Warning {
            rule: finding.rule.id(),
            line,
        });
    }
    Ok(row)
}

/// A lock that a panic elsewhere does not poison (there is no invariant to protect).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct Run<'j> {
    journal: &'j Mutex<Option<Journal>>,
    report: Option<BufWriter<std::fs::File>>,
    tally: Tally,
    progress: indicatif::ProgressBar,
    /// The error code of the first batch refused for its credentials; nothing more is sent.
    refused: Option<String>,
    /// The warnings of rows in flight, by line, for their report lines.
    warnings: HashMap<u64, Value>,
}

impl Run<'_> {
    fn report(&mut self, line: Value) {
        if let Some(report) = self.report.as_mut() {
            // A report that cannot be written is reported once at the end, by the flush.
            let _ = writeln!(report, "{line}");
        }
    }

    /// Records a batch's outcomes: journal first (durably), then the report and the tally.
    fn settle(&mut self, outcomes: Vec<(u64, ItemOutcome)>) -> Result<(), String> {
        let entries: Vec<(u64, Entry)> = outcomes
            .iter()
            .map(|(row, outcome)| {
                let entry = match outcome {
                    ItemOutcome::Delivered { id } => Entry::Delivered { id: *id },
                    ItemOutcome::NotCreated => Entry::Failed {
                        error: "NOT_CREATED".into(),
                        description:
                            "the portal answered false: the recipient does not exist or is inactive"
                                .into(),
                    },
                    // The portal judged this row itself, inside the batch's answer: final.
                    ItemOutcome::Failed(api) if api.status == 200 => Entry::Failed {
                        error: api.code.to_string(),
                        description: api.description.clone(),
                    },
                    // The whole batch was refused or never went out: a resume sends it.
                    ItemOutcome::Failed(api) => {
                        if api.code.is_auth() {
                            self.tally.auth += 1;
                            self.refused.get_or_insert_with(|| api.code.to_string());
                        }
                        Entry::NotSent {
                            error: api.code.to_string(),
                            description: api.description.clone(),
                        }
                    }
                    ItemOutcome::Unknown => Entry::Unknown,
                };
                (*row, entry)
            })
            .collect();
        if let Some(journal) = lock(self.journal).as_mut() {
            journal.record(&entries)?;
        }
        for (row, entry) in entries {
            let mut line = match &entry {
                Entry::Delivered { id } => {
                    self.tally.delivered += 1;
                    json!({"row": row, "id": id})
                }
                Entry::Failed { error, description } | Entry::NotSent { error, description } => {
                    self.tally.failed += 1;
                    json!({"row": row, "error": error, "description": description})
                }
                Entry::Unknown => {
                    self.tally.unknown += 1;
                    json!({"row": row, "outcome": "outcome_unknown"})
                }
            };
            if let Some(warnings) = self.warnings.remove(&row) {
                line["warnings"] = warnings;
            }
            self.report(line);
            self.progress.inc(1);
        }
        self.progress
            .set_message(format!("{} failed", self.tally.failed));
        Ok(())
    }
}

/// A progress bar on a terminal; nothing when stderr is piped.
fn progress(total: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bar:30} {pos}/{len} sent · {msg} · {per_sec} · eta {eta}",
    ) {
        bar.set_style(style);
    }
    bar.set_message("0 failed");
    bar
}

/// The input, opened once: the named file, or standard input spooled (at most `limit` bytes)
/// into an unnamed temporary file, which the system removes however the process ends.
fn input_file(input: &str, limit: u64) -> Result<File, Failure> {
    if input != "-" {
        let not_a_file = || Failure::Usage(format!("--input: {input} is not a file"));
        if !Path::new(input).is_file() {
            return Err(not_a_file());
        }
        let file = File::open(input)
            .map_err(|e| Failure::Usage(format!("--input: cannot open {input}: {e}")))?;
        // Checked again on what was opened: the path may have changed in between.
        if !file.metadata().is_ok_and(|m| m.is_file()) {
            return Err(not_a_file());
        }
        return Ok(file);
    }
    let mut spool = tempfile::tempfile().map_err(|e| {
        Failure::Local(format!(
            "cannot create a temporary file for standard input (in TMPDIR): {e}"
        ))
    })?;
    let copied = std::io::copy(
        &mut std::io::stdin().lock().take(limit.saturating_add(1)),
        &mut spool,
    )
    .map_err(|e| Failure::Local(format!("cannot spool standard input: {e}")))?;
    if copied > limit {
        return Err(Failure::Usage(format!(
            "--input -: standard input is longer than --stdin-limit ({} MiB); nothing was sent: save it to a file and pass --input FILE, or raise --stdin-limit",
            limit >> 20
        )));
    }
    Ok(spool)
}

/// Another handle on `file`, at its start: each pass reads the very file the first one did.
fn rewound(file: &File) -> Result<File, Failure> {
    let mut again = file
        .try_clone()
        .map_err(|e| Failure::Local(format!("--input: cannot read it again: {e}")))?;
    again
        .rewind()
        .map_err(|e| Failure::Local(format!("--input: cannot read it again: {e}")))?;
    Ok(again)
}

/// An MD5 of the input, so a journal is never applied to other input.
fn fingerprint(file: &File) -> Result<String, Failure> {
    use md5::{Digest, Md5};
    let mut file = rewound(file)?;
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match file.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Failure::Usage(format!("--input: cannot read: {e}"))),
        };
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// What makes two paths the same file: device and inode of one that exists (so hard links,
/// symbolic links and `./x` against `x` all match), else its canonical parent and name.
#[derive(Debug, PartialEq, Eq)]
enum FileId {
    // Device and inode exist only on unix; elsewhere paths are compared canonically.
    #[cfg(unix)]
    Node(u64, u64),
    Path(PathBuf),
}

fn file_id(path: &Path) -> Option<FileId> {
    match std::fs::metadata(path) {
        Ok(meta) => node_id(&meta).or_else(|| std::fs::canonicalize(path).ok().map(FileId::Path)),
        Err(_) => {
            let name = path.file_name()?;
            let parent = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            Some(FileId::Path(std::fs::canonicalize(parent).ok()?.join(name)))
        }
    }
}

/// Standard input's file, when it is one (`--input - <FILE`).
fn stdin_id() -> Option<FileId> {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        let fd = std::io::stdin().as_fd().try_clone_to_owned().ok()?;
        node_id(&File::from(fd).metadata().ok()?)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

#[cfg(unix)]
fn node_id(meta: &std::fs::Metadata) -> Option<FileId> {
    use std::os::unix::fs::MetadataExt;
    Some(FileId::Node(meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn node_id(_: &std::fs::Metadata) -> Option<FileId> {
    None
}

/// Refuses `--report` or `--journal` that is the same file as `--input` or as each other,
/// before anything is read or written: the report is truncated when it is opened.
fn distinct_files(options: &Options) -> Result<(), Failure> {
    let input = if options.input == "-" {
        stdin_id()
    } else {
        file_id(Path::new(&options.input))
    };
    let report = options.report.as_deref().and_then(file_id);
    let journal = options.journal.as_deref().and_then(file_id);
    let named = [
        ("--report", report.as_ref(), "--input", input.as_ref()),
        ("--journal", journal.as_ref(), "--input", input.as_ref()),
    ];
    for (flag, id, other, other_id) in named {
        if id.is_some() && id == other_id {
            return Err(Failure::Usage(format!(
                "{flag} and {other} are the same file; give {flag} a path of its own (it would overwrite the input)"
            )));
        }
    }
    if report.is_some() && report == journal {
        return Err(Failure::Usage(
            "--report and --journal are the same file; give each a path of its own".into(),
        ));
    }
    Ok(())
}
