//! The one place that prints results and errors and picks the exit code.
//!
//! Results go to standard output (or `--out`) as JSON; diagnostics go to standard error as a
//! single line starting with `error:`. A portal error still prints the portal's JSON on
//! standard output, as OPI does, but the exit code tells scripts it failed.

use std::io::Write;
use std::path::Path;

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

/// Prints the outcome and returns the exit code.
pub fn report(outcome: Result<Success, Failure>, out: Option<&Path>) -> Exit {
    let (body, failure) = match outcome {
        Ok(Success::Json(value)) => (Some(to_pretty_json(&value)), None),
        Ok(Success::Text(text)) => (Some(text), None),
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
    if let Some(body) = body
        && let Err(message) = emit(&body, out)
    {
        eprintln!("error: {message}");
        exit = Exit::Failed;
    }
    if let Some(failure) = failure {
        let (Failure::Usage(m)
        | Failure::Local(m)
        | Failure::Unknown(m)
        | Failure::Portal { message: m, .. }) = failure;
        eprintln!("error: {m}");
    }
    exit
}

fn emit(body: &str, out: Option<&Path>) -> Result<(), String> {
    match out {
        None => {
            let mut stdout = std::io::stdout().lock();
            // A closed pipe (oint … | head) is not worth a panic.
            let _ = writeln!(stdout, "{body}");
            Ok(())
        }
        Some(path) => {
            std::fs::write(path, body)
                .map_err(|e| format!("--out: cannot write {}: {e}", path.display()))?;
            let full = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
            let megabytes = body.len() as f64 / (1024.0 * 1024.0);
            // OPI's confirmation line, so scripts that read it keep working.
            println!(
                "File with size {} MB was recorded in {}",
                trim_number(megabytes),
                full.display()
            );
            Ok(())
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
