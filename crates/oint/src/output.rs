//! The one place that prints results and errors and picks the exit code.
//!
//! Results go to standard output (or `--out`) as JSON; diagnostics go to standard error as a
//! single line starting with `error:`. A portal error still prints the portal's JSON on
//! standard output, as OPI does, but the exit code tells scripts it failed.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

/// Exit codes, documented in `--help` and the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    Failed = 1,
    /// Some of a bulk run's rows were delivered, not all.
    Partial = 3,
    Usage = 2,
    Auth = 4,
    Unknown = 5,
}

pub enum Success {
    Json(Value),
    /// Plain text already formatted (help, listings).
    Text(String),
    /// A run that reported as it went (`notify bulk`): only its exit code is left.
    Finished(Exit),
    /// A result printed as usual whose exit code says not every part of it succeeded
    /// (`notify send --user 1,5,9`: exit 3 when some were delivered).
    Parts(Box<Success>, Exit),
}

pub enum Failure {
    /// Bad input, nothing sent.
    Usage(String),
    /// The portal refused or failed; `body` is its answer when there is one.
    Portal {
        body: Option<Value>,
        message: String,
        auth: bool,
    },
    /// Something on this machine failed (files, the sandbox).
    Local(String),
    /// A write may or may not have taken effect and was not resent.
    Unknown(String),
}

impl Failure {
    fn exit(&self) -> Exit {
        match self {
            Failure::Usage(_) => Exit::Usage,
            Failure::Portal { auth: true, .. } => Exit::Auth,
            Failure::Portal { .. } | Failure::Local(_) => Exit::Failed,
            Failure::Unknown(_) => Exit::Unknown,
        }
    }
}

/// Pretty JSON the way OPI prints it: one-space indent, unicode and slashes unescaped.
pub fn to_pretty_json(value: &Value) -> String {
    let mut buf = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b" ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, formatter);
    value
        .serialize(&mut ser)
        .expect("JSON values always serialise");
    String::from_utf8(buf).expect("serde_json writes UTF-8")
}

/// Prints the outcome and returns the exit code. With `out` (`--out`, prepared before
/// anything was sent) the result goes to that file.
pub fn report(outcome: Result<Success, Failure>, out: Option<OutFile>) -> Exit {
    if let Ok(Success::Parts(body, exit)) = outcome {
        let printed = report(Ok(*body), out);
        return if printed == Exit::Ok { exit } else { printed };
    }
    let (body, failure) = match outcome {
        Ok(Success::Json(value)) => (Some(to_pretty_json(&value)), None),
        Ok(Success::Text(text)) => (Some(text), None),
        Ok(Success::Parts(..)) => unreachable!("printed above"),
        Ok(Success::Finished(exit)) => {
            if let Some(out) = out {
                out.discard();
            }
            return exit;
        }
        Err(Failure::Portal {
            body,
            message,
            auth,
        }) => (
            body.as_ref().map(to_pretty_json),
            Some(Failure::Portal {
                body: None,
                message,
                auth,
            }),
        ),
        Err(failure) => (None, Some(failure)),
    };
    let mut exit = failure.as_ref().map_or(Exit::Ok, Failure::exit);
    match (body, out) {
        (Some(body), out) => {
            if let Err(message) = emit(&body, out) {
                error_line(&message);
                // A failure already has its own, more telling code.
                if exit == Exit::Ok {
                    exit = Exit::Failed;
                }
            }
        }
        (None, Some(out)) => out.discard(),
        (None, None) => {}
    }
    if let Some(failure) = failure {
        let (Failure::Usage(m)
        | Failure::Local(m)
        | Failure::Unknown(m)
        | Failure::Portal { message: m, .. }) = failure;
        error_line(&m);
    }
    exit
}

/// `error: …` on standard error. A closed or full stderr is not worth a panic (`eprintln!`
/// would panic), and there is nowhere left to say so.
pub fn error_line(message: &str) {
    let _ = writeln!(std::io::stderr().lock(), "error: {message}");
}

/// A warning or note on standard error, without `eprintln!`'s panic on a closed stderr.
pub fn note(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Writes `bytes` to standard output and flushes; a closed pipe (`oint … | head`) is fine,
/// any other failure (`>/dev/full`, an I/O error) is reported: the answer is lost.
pub fn write_stdout(bytes: &[u8]) -> Result<(), String> {
    let lost = |e: std::io::Error| format!("cannot write the result to standard output: {e}");
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(lost(e)),
        Ok(()) => Ok(()),
    }
}

/// Prints text that is the whole answer (help, completions, the manual) and says how it went.
pub fn print(bytes: &[u8]) -> Exit {
    match write_stdout(bytes) {
        Ok(()) => Exit::Ok,
        Err(message) => {
            error_line(&message);
            Exit::Failed
        }
    }
}

fn emit(body: &str, out: Option<OutFile>) -> Result<(), String> {
    match out {
        None => write_stdout(format!("{body}\n").as_bytes()),
        Some(out) => {
            let path = out.commit(body)?;
            let full = std::fs::canonicalize(&path).unwrap_or(path);
            let megabytes = body.len() as f64 / (1024.0 * 1024.0);
            // OPI's confirmation line, so scripts that read it keep working.
            write_stdout(
                format!(
                    "File with size {} MB was recorded in {}\n",
                    trim_number(megabytes),
                    full.display()
                )
                .as_bytes(),
            )
        }
    }
}

/// The `--out` file, opened before anything is sent so that a path that cannot be written
/// costs nothing: a retried run would otherwise send the notification twice.
#[derive(Debug)]
pub struct OutFile {
    path: PathBuf,
    file: std::fs::File,
    /// Made by this run (removed again when there is no answer to write).
    created: bool,
}

impl OutFile {
    /// Checks `path` and opens it for writing, without truncating it yet. Refuses
    /// directories, devices and FIFOs (`/dev/full` would swallow the answer), and a path in a
    /// missing directory.
    pub fn prepare(path: &Path) -> Result<OutFile, String> {
        use crate::files::{ReadError, kind_of, open_nonblocking};
        let shown = path.display();
        let not_regular = |meta: &std::fs::Metadata| {
            format!(
                "--out: {shown} is not a regular file (it is {}); give the path of a file to write the answer to",
                kind_of(meta)
            )
        };
        let existed = match std::fs::metadata(path) {
            Ok(meta) if !meta.is_file() => return Err(not_regular(&meta)),
            Ok(_) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let dir = match path.parent() {
                    Some(d) if !d.as_os_str().is_empty() => d,
                    _ => Path::new("."),
                };
                match std::fs::metadata(dir) {
                    Ok(meta) if meta.is_dir() => {}
                    Ok(_) => {
                        return Err(format!("--out: {} is not a directory", dir.display()));
                    }
                    Err(_) => {
                        return Err(format!(
                            "--out: the directory {} does not exist; create it first",
                            dir.display()
                        ));
                    }
                }
                false
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
                return Err(format!(
                    "--out: {shown} is under a path that is not a directory"
                ));
            }
            Err(e) => return Err(format!("--out: cannot use {shown}: {e}")),
        };
        let file = open_nonblocking(path, true).map_err(|e| match e {
            ReadError::Io(e) => format!("--out: cannot write to {shown}: {e}"),
            other => format!("--out: cannot write to {shown}: it {other}"),
        })?;
        let meta = file
            .metadata()
            .map_err(|e| format!("--out: cannot use {shown}: {e}"))?;
        if !meta.is_file() {
            return Err(not_regular(&meta));
        }
        Ok(OutFile {
            path: path.to_path_buf(),
            file,
            created: !existed,
        })
    }

    /// Replaces the file's content with `body`, durably; returns the path.
    fn commit(mut self, body: &str) -> Result<PathBuf, String> {
        let shown = self.path.display().to_string();
        self.file
            .set_len(0)
            .and_then(|()| self.file.write_all(body.as_bytes()))
            .and_then(|()| self.file.flush())
            .and_then(|()| self.file.sync_all())
            .map_err(|e| format!("--out: cannot write {shown}: {e}"))?;
        Ok(self.path)
    }

    /// No answer to write: leave an existing file alone, remove one this run made.
    fn discard(self) {
        if self.created {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn trim_number(x: f64) -> String {
    let s = format!("{x:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pretty_json_matches_opi_style() {
        let v = json!({"result": 1, "link": "https://x/é", "a": []});
        assert_eq!(
            to_pretty_json(&v),
            "{\n \"result\": 1,\n \"link\": \"https://x/é\",\n \"a\": []\n}"
        );
    }

    #[test]
    fn exit_codes() {
        assert_eq!(Failure::Usage(String::new()).exit() as i32, 2);
        assert_eq!(
            Failure::Portal {
                body: None,
                message: String::new(),
                auth: true
            }
            .exit() as i32,
            4
        );
        assert_eq!(
            Failure::Portal {
                body: None,
                message: String::new(),
                auth: false
            }
            .exit() as i32,
            1
        );
        assert_eq!(trim_number(0.0), "0");
        assert_eq!(trim_number(0.00123), "0.001");
    }
}
