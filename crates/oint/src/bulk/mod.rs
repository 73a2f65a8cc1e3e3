//! `oint notify bulk`: thousands of notifications at the portal's speed limit, resumable.
//!
//! The input is read twice, both times as a stream so memory stays flat however long it is:
//! first every row is checked (nothing is sent if any row is bad, unless `--skip-invalid`),
//! then the rows go out in `batch` calls of 50 through the library's bulk sender, several
//! batches in flight, paced by the shared rate limiter. Standard input is copied to a
//! temporary file so that it can be read twice.
//!
//! With `--journal`, each batch's rows are recorded before it is sent and their outcomes after
//! its answer, so a run that is killed can be run again and picks up where it stopped: rows
//! already delivered or refused are skipped, and rows whose fate is unknown are sent again only
//! when a resend cannot duplicate them (a tag, from an OAuth application).

pub mod input;
pub mod journal;

use std::cell::RefCell;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use bitrix24::{BulkItem, Client, ItemOutcome};
use futures_util::{StreamExt, stream};
use serde_json::{Value, json};

pub use input::Format;
use input::{Row, RowError};
use journal::{Entry, Journal, State};

use crate::output::{Exit, Failure};

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
}

pub async fn run(client: &Client, options: Options) -> Result<Exit, Failure> {
    let started = Instant::now();
    let (path, _spooled) = input_file(&options.input)?;
    let format = options.format.unwrap_or_else(|| Format::guess(&path));
    let fingerprint = fingerprint(&path)?;

    // Pass 1: check every row.
    let mut invalid: Vec<RowError> = Vec::new();
    let mut invalid_count = 0u64;
    let mut valid = 0u64;
    let mut last_line = 0u64;
    for raw in input::read(&path, format).map_err(Failure::Usage)? {
        last_line = last_line.max(match &raw {
            Ok(raw) => raw.line,
            Err(e) => e.line,
        });
        match raw.and_then(|raw| input::check(client, &raw)) {
            Ok(_) => valid += 1,
            Err(e) => {
                invalid_count += 1;
                if invalid.len() < SHOWN_ERRORS {
                    invalid.push(e);
                }
            }
        }
    }
    for e in &invalid {
        eprintln!("line {}: {}", e.line, e.message);
    }
    if invalid_count > invalid.len() as u64 {
        eprintln!(
            "… and {} more invalid rows",
            invalid_count - invalid.len() as u64
        );
    }
    if invalid_count > 0 && !options.skip_invalid {
        return Err(Failure::Usage(format!(
            "{invalid_count} of {} rows are invalid; nothing was sent (fix them, or pass --skip-invalid to send the rest)",
            invalid_count + valid
        )));
    }
    if options.dry_run {
        eprintln!("bulk: {valid} valid rows, {invalid_count} invalid; nothing sent (--dry-run)");
        return Ok(Exit::Ok);
    }

    // Pass 2: send.
    let journal = match &options.journal {
        Some(path) => Some(Journal::open(path, &fingerprint, last_line).map_err(Failure::Usage)?),
        None => None,
    };
    let report = match &options.report {
        Some(path) => Some(BufWriter::new(std::fs::File::create(path).map_err(
            |e| Failure::Usage(format!("--report: cannot write {}: {e}", path.display())),
        )?)),
        None => None,
    };
    let resend_safe = client.portal().is_oauth();
    let state = RefCell::new(Run {
        journal,
        report,
        tally: Tally::default(),
        progress: progress(valid),
        refused: None,
    });

    let mut reader = input::read(&path, format).map_err(Failure::Usage)?;
    // Chunks of up to 50 sendable rows, pulled lazily; rows that need no sending are settled
    // on the way.
    let chunks = std::iter::from_fn(|| {
        let mut chunk: Vec<Row> = Vec::with_capacity(BATCH);
        for raw in reader.by_ref() {
            let mut run = state.borrow_mut();
            run.tally.rows += 1;
            let row = match raw.and_then(|raw| input::check(client, &raw)) {
                Ok(row) => row,
                Err(e) => {
                    run.tally.invalid += 1;
                    run.report(
                        json!({"row": e.line, "error": "INVALID_ROW", "description": e.message}),
                    );
                    continue;
                }
            };
            match run
                .journal
                .as_ref()
                .map_or(State::Pending, |j| j.state(row.line))
            {
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
                    chunk.push(row);
                    if chunk.len() == BATCH {
                        break;
                    }
                }
            }
        }
        (!chunk.is_empty()).then_some(chunk)
    });

    let sends = stream::iter(chunks).map(|chunk| {
        let state = &state;
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
            let lines: Vec<u64> = chunk.iter().map(|r| r.line).collect();
            if let Some(journal) = state.borrow_mut().journal.as_mut() {
                journal.sending(&lines)?;
            }
            let items = chunk.into_iter().map(|r| BulkItem {
                row: r.line,
                request: r.request,
            });
            let outcomes: Vec<(u64, ItemOutcome)> = client
                .bulk(stream::iter(items))
                .batch_size(BATCH)
                .concurrency(1)
                .run()
                .collect()
                .await;
            state.borrow_mut().settle(outcomes)
        }
    });
    let mut sends = sends.buffer_unordered(options.concurrency.max(1));
    while let Some(done) = sends.next().await {
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
    eprintln!(
        "bulk: {} rows: {} delivered, {} failed, {} outcome unknown, {} invalid{}; {:.1} s",
        t.rows,
        t.delivered,
        t.failed,
        t.unknown,
        t.invalid,
        if t.earlier > 0 {
            format!(" ({} settled by an earlier run)", t.earlier)
        } else {
            String::new()
        },
        started.elapsed().as_secs_f64()
    );
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

struct Run {
    journal: Option<Journal>,
    report: Option<BufWriter<std::fs::File>>,
    tally: Tally,
    progress: indicatif::ProgressBar,
    /// The error code of the first batch refused for its credentials; nothing more is sent.
    refused: Option<String>,
}

impl Run {
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
        if let Some(journal) = self.journal.as_mut() {
            journal.record(&entries)?;
        }
        for (row, entry) in entries {
            let line = match &entry {
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

/// The input as a file: standard input is copied to a temporary one (kept alive by the guard).
fn input_file(input: &str) -> Result<(PathBuf, Option<tempfile::NamedTempFile>), Failure> {
    if input != "-" {
        let path = PathBuf::from(input);
        if !path.is_file() {
            return Err(Failure::Usage(format!("--input: {input} is not a file")));
        }
        return Ok((path, None));
    }
    let mut spool = tempfile::NamedTempFile::new().map_err(|e| {
        Failure::Local(format!(
            "cannot create a temporary file for standard input: {e}"
        ))
    })?;
    std::io::copy(&mut std::io::stdin().lock(), &mut spool)
        .map_err(|e| Failure::Local(format!("cannot read standard input: {e}")))?;
    Ok((spool.path().to_path_buf(), Some(spool)))
}

/// An MD5 of the input, so a journal is never applied to other input.
fn fingerprint(path: &Path) -> Result<String, Failure> {
    use md5::{Digest, Md5};
    let mut file = std::fs::File::open(path)
        .map_err(|e| Failure::Usage(format!("--input: cannot read {}: {e}", path.display())))?;
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| Failure::Usage(format!("--input: cannot read: {e}")))?;
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
