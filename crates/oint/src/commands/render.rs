//! How the modern commands (`oint notify …`, `oint call …`) show what they got: JSON for
//! scripts, tab-separated text, or a table for people; and the `--dry-run` preview.

use std::io::IsTerminal;

use bitrix24::{Client, Notification, Request};
use serde_json::Value;

use crate::flags::{Connection, OutputFormat};
use crate::output::{self, Failure, Success};

/// What a command produced, before rendering.
pub enum Outcome {
    /// A value to print as JSON, with its plain-text form.
    Value { json: Value, plain: String },
    /// A list of notifications.
    Notifications(Vec<Notification>),
    /// One notification per user: each user's id or error, and the exit code of the whole.
    PerUser {
        results: Vec<UserResult>,
        exit: crate::output::Exit,
    },
}

/// What became of one user's notification.
pub struct UserResult {
    pub user: u64,
    /// The notification's id, or why there is none.
    pub outcome: Result<u64, String>,
}

/// `--json`, else `--output`, else a table on a terminal and JSON otherwise.
pub fn format(conn: &Connection) -> OutputFormat {
    match (conn.json, conn.output) {
        (true, _) => OutputFormat::Json,
        (false, Some(format)) => format,
        (false, None) if std::io::stdout().is_terminal() => OutputFormat::Table,
        (false, None) => OutputFormat::Json,
    }
}

/// The request as it would go out, secrets masked.
pub fn preview(client: &Client, request: &Request) -> Outcome {
    let json = serde_json::to_value(client.preview(request)).expect("a preview is JSON");
    Outcome::Value {
        plain: output::to_pretty_json(&json),
        json,
    }
}

/// What `--dry-run` shows for several requests: one preview as [`preview`] shows it, more
/// as a list of them.
pub fn previews(client: &Client, requests: &[Request]) -> Outcome {
    match requests {
        [one] => preview(client, one),
        many => {
            let json = Value::Array(
                many.iter()
                    .map(|r| serde_json::to_value(client.preview(r)).expect("a preview is JSON"))
                    .collect(),
            );
            Outcome::Value {
                plain: output::to_pretty_json(&json),
                json,
            }
        }
    }
}

/// The outcome in `format`. The portal's error JSON belongs on stdout only when the caller
/// asked for JSON.
pub fn render(outcome: Result<Outcome, Failure>, format: OutputFormat) -> Result<Success, Failure> {
    let outcome = outcome.map(|o| match (o, format) {
        (Outcome::Value { json, .. }, OutputFormat::Json) => Success::Json(json),
        (Outcome::Value { plain, .. }, _) => Success::Text(plain),
        (Outcome::Notifications(items), OutputFormat::Json) => {
            Success::Json(serde_json::to_value(items).expect("notifications are JSON"))
        }
        (Outcome::Notifications(items), OutputFormat::Plain) => Success::Text(plain_rows(&items)),
        (Outcome::Notifications(items), OutputFormat::Table) => Success::Text(table(&items)),
        (Outcome::PerUser { results, exit }, format) => {
            let body = match format {
                OutputFormat::Json => Success::Json(Value::Array(
                    results
                        .iter()
                        .map(|r| match &r.outcome {
                            Ok(id) => serde_json::json!({"user": r.user, "id": id}),
                            Err(e) => serde_json::json!({"user": r.user, "error": e}),
                        })
                        .collect(),
                )),
                _ => Success::Text(
                    results
                        .iter()
                        .map(|r| match &r.outcome {
                            Ok(id) => format!("{}\t{id}", r.user),
                            Err(e) => format!("{}\terror: {e}", r.user),
                        })
                        .collect::<Vec<_>>()
                        .join("\n"),
                ),
            };
            Success::Parts(Box::new(body), exit)
        }
    });
    outcome.map_err(|f| match (f, format) {
        (
            Failure::Portal {
                body,
                message,
                auth,
            },
            OutputFormat::Json,
        ) => Failure::Portal {
            body,
            message,
            auth,
        },
        (Failure::Portal { message, auth, .. }, _) => Failure::Portal {
            body: None,
            message,
            auth,
        },
        (other, _) => other,
    })
}

fn plain_rows(items: &[Notification]) -> String {
    let clean = |s: &str| {
        s.replace('\\', "\\\\")
            .replace('\t', "\\t")
            .replace('\n', "\\n")
            .replace('\r', "\\r")
    };
    items
        .iter()
        .map(|n| {
            format!(
                "{}\t{}\t{}\t{}\t{}",
                n.id,
                n.author_id,
                if n.read { "read" } else { "unread" },
                n.date.as_deref().unwrap_or(""),
                clean(&n.text)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn table(items: &[Notification]) -> String {
    if items.is_empty() {
        return "no notifications".into();
    }
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::NOTHING);
    table.set_header(["ID", "FROM", "READ", "DATE", "TEXT"]);
    for n in items {
        let text: String = n.text.replace(['\n', '\r'], " ");
        let text = if text.chars().count() > 60 {
            format!("{}…", text.chars().take(59).collect::<String>())
        } else {
            text
        };
        let from = if n.author_id == 0 {
            "system".to_string()
        } else {
            n.author_id.to_string()
        };
        table.add_row([
            n.id.to_string(),
            from,
            if n.read { "yes" } else { "no" }.into(),
            n.date.clone().unwrap_or_default(),
            text,
        ]);
    }
    table.to_string()
}
