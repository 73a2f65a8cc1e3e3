//! `oint notify send|delete|read|answer|confirm|list|search`: the whole notification API
//! in a modern grammar. (`notify bulk` is [`super::bulk`].)
//!
//! Each command resolves its flags and connection first (usage errors exit 2 before anything
//! is sent), builds its request with the library's client-free builders, sends it, and
//! renders the result as JSON, tab-separated text or a table. Errors name this grammar's
//! flags (`--id`, `--attach`), never OPI's.

use bitrix24::notify::{Delete, Read, ReadAll, ReadList, Respond, Search};
use bitrix24::{Attach, BulkItem, Client, ItemOutcome};
use futures_util::{StreamExt, TryStreamExt};
use serde_json::{Value, json};

use super::render::{self, Outcome, UserResult, preview};
use crate::blocks;
use crate::connect::connect;
use crate::flags::{Connection, NotifyAction, NotifyArgs, SendFlags};
use crate::output::{Exit, Failure, Success};
use crate::portal_errors;
use crate::settings::{self, Global};
use crate::severity::{self, Notification};

/// Runs `oint notify …` (but `bulk`). The config file's `strict` is added to the global one.
pub async fn command(args: NotifyArgs, global: &Global) -> Result<Success, Failure> {
    let format = render::format(&args.connection);
    let outcome = notify(args, global).await;
    render::render(outcome, format)
}

async fn notify(args: NotifyArgs, global: &Global) -> Result<Outcome, Failure> {
    if let NotifyAction::Send(flags) = &args.action
        && flags.text == "-"
        && args.connection.token_stdin
    {
        return Err(Failure::Usage(
            "--text: - reads the text from standard input, which --token-stdin reads the token from; give the token with --token-file or BITRIX24_TOKEN".into(),
        ));
    }
    let resolved = settings::real_world(|world| {
        settings::resolve_connection(&args.connection, &global.transport, world)
    })
    .map_err(Failure::Usage)?;
    let (client, _sandbox) = connect(resolved.target, &resolved.transport).await?;
    run_notify(
        &client,
        args.action,
        &args.connection,
        global.strict || resolved.strict,
    )
    .await
}

/// The `oint notify` flag that sets a request field.
fn notify_flag(field: &str) -> String {
    match field {
        "USER_ID" => "--user",
        "MESSAGE" => "--text",
        "ATTACH" => "--attach",
        "TAG" => "--tag",
        "SUB_TAG" => "--sub-tag",
        "MESSAGE_OUT" => "--message-out",
        "CLIENT_ID" => "--client-id",
        "ID" => "--id",
        "IDS" => "--ids",
        "NOTIFY_ID" => "--id",
        "ANSWER_TEXT" => "--text",
        "NOTIFY_VALUE" => "--value",
        "SEARCH_TEXT" => "TEXT",
        "LIMIT" => "--limit",
        other => other,
    }
    .to_string()
}

/// A library error, with request fields named by this grammar's flags.
fn failure(error: bitrix24::Error) -> Failure {
    portal_errors::failure(error, &notify_flag)
}

async fn run_notify(
    client: &Client,
    action: NotifyAction,
    conn: &Connection,
    strict: bool,
) -> Result<Outcome, Failure> {
    let err = failure;
    match action {
        NotifyAction::Send(flags) => {
            let users = flags.user.clone();
            let notification = build_send(flags).await?;
            // One check says it for every user: only USER_ID differs.
            let (report, request) = Notification {
                user: users[0],
                ..notification.clone()
            }
            .build(strict);
            severity::admit(&report, strict, &send_flag).map_err(Failure::Usage)?;
            let request = request.map_err(err)?;
            severity::webhook_tag(&request, client.portal(), strict, &send_flag)
                .map_err(Failure::Usage)?;
            if users.len() > 1 {
                return send_to_each(client, notification, &users, strict, conn.dry_run).await;
            }
            if conn.dry_run {
                return Ok(preview(client, &request));
            }
            let user = users[0];
            let created = client.send::<bitrix24::Created>(&request).await;
            match created.map_err(err)?.result.0 {
                Some(id) => Ok(Outcome::Value {
                    json: json!({"id": id}),
                    plain: id.to_string(),
                }),
                None => Err(not_done(format!(
                    "the portal did not create the notification (result false): user {user} does not exist or is inactive"
                ))),
            }
        }
        NotifyAction::Delete(flags) => {
            let target = flags.target;
            // The client-bound builder for tags: it knows a webhook needs CLIENT_ID, and says
            // so before anything is sent, --dry-run included.
            let n = client.notify();
            let tagged = |by: bitrix24::DeleteByTag<'_>| match flags.client_id.clone() {
                Some(id) => by.client_id(id).to_request(),
                None => by.to_request(),
            };
            let (request, by_id) = match (target.id, target.tag, target.sub_tag) {
                (Some(id), _, _) => (Delete::new(id).to_request(), Some(id)),
                (_, Some(tag), _) => (tagged(n.delete_by_tag(tag)), None),
                (_, _, Some(sub)) => (tagged(n.delete_by_sub_tag(sub)), None),
                _ => unreachable!("clap requires one of --id, --tag, --sub-tag"),
            };
            let request = request.map_err(err)?;
            if conn.dry_run {
                return Ok(preview(client, &request));
            }
            let deleted = client
                .send::<bitrix24::Flag>(&request)
                .await
                .map_err(err)?
                .result
                .0;
            match (deleted, by_id) {
                (false, Some(id)) => Err(not_done(format!(
                    "the portal did not delete notification {id} (result false): it does not exist or is not among your own notifications"
                ))),
                _ => Ok(Outcome::Value {
                    json: json!({"deleted": deleted}),
                    plain: deleted.to_string(),
                }),
            }
        }
        NotifyAction::Read(flags) => {
            let target = flags.target;
            let request = if target.all {
                ReadAll::new().to_request()
            } else if let Some(id) = target.id {
                let mut read = Read::new(id);
                if flags.unread {
                    read = read.unread();
                }
                if flags.only_current {
                    read = read.only_current();
                }
                read.to_request()
            } else {
                let mut read = ReadList::new(target.ids);
                if flags.unread {
                    read = read.unread();
                }
                read.to_request()
            };
            let request = request.map_err(err)?;
            if conn.dry_run {
                return Ok(preview(client, &request));
            }
            client.execute(&request).await.map_err(err)?;
            Ok(Outcome::Value {
                json: json!({"ok": true}),
                plain: "ok".into(),
            })
        }
        NotifyAction::Answer(flags) => {
            reply(
                client,
                Respond::answer(flags.id, flags.text),
                flags.id,
                conn.dry_run,
            )
            .await
        }
        NotifyAction::Confirm(flags) => {
            reply(
                client,
                Respond::confirm(flags.id, flags.value),
                flags.id,
                conn.dry_run,
            )
            .await
        }
        NotifyAction::List(flags) => {
            // Every page is one stream over both of the portal's cursor stages.
            let get = client.notify().get().limit(flags.limit);
            if conn.dry_run {
                return Ok(preview(client, &get.to_request().map_err(err)?));
            }
            let items = if flags.all {
                get.stream().try_collect().await.map_err(err)?
            } else {
                get.send().await.map_err(err)?.notifications
            };
            Ok(Outcome::Notifications(items))
        }
        NotifyAction::Bulk(_) => unreachable!("the app runs bulk as its own command"),
        NotifyAction::Search(flags) => {
            let search = Search::new(flags.text).limit(flags.limit);
            let request = search.to_request().map_err(err)?;
            if conn.dry_run {
                return Ok(preview(client, &request));
            }
            Ok(Outcome::Notifications(
                search.send(client).await.map_err(err)?.notifications,
            ))
        }
    }
}

/// `--user 1,5,9`: one notification per user, sent through the library's bulk sender (batches
/// of 50, paced, retried where safe), one result per user in the order given.
async fn send_to_each(
    client: &Client,
    notification: Notification,
    users: &[u64],
    strict: bool,
    dry_run: bool,
) -> Result<Outcome, Failure> {
    let mut items = Vec::with_capacity(users.len());
    for (row, user) in (0u64..).zip(users) {
        let (_, request) = Notification {
            user: *user,
            ..notification.clone()
        }
        .build(strict);
        items.push(BulkItem {
            row,
            request: request.map_err(failure)?,
        });
    }
    if dry_run {
        // The batches the send would make: a portal batch holds at most 50 commands.
        let batches = items
            .chunks(bitrix24::MAX_BATCH)
            .map(|chunk| {
                chunk
                    .iter()
                    .fold(client.batch(), |b, item| b.push(item.request.clone()))
                    .to_request()
                    .map_err(failure)
            })
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(render::previews(client, &batches));
    }
    let mut outcomes: Vec<(u64, ItemOutcome)> = client
        .bulk(futures_util::stream::iter(items))
        .run()
        .collect()
        .await;
    outcomes.sort_by_key(|(row, _)| *row);
    let (mut delivered, mut auth, mut unknown) = (0, 0, 0);
    let results: Vec<UserResult> = outcomes
        .into_iter()
        .map(|(row, outcome)| {
            let user = users[row as usize];
            let outcome = match outcome {
                ItemOutcome::Delivered { id } => {
                    delivered += 1;
                    Ok(id)
                }
                ItemOutcome::NotCreated => Err(format!(
                    "not created (result false): user {user} does not exist or is inactive"
                )),
                ItemOutcome::Failed(api) => {
                    auth += usize::from(api.code.is_auth());
                    Err(api.to_string())
                }
                ItemOutcome::Unknown => {
                    unknown += 1;
                    Err(
                        "outcome unknown: it may have been created; check before sending again"
                            .into(),
                    )
                }
            };
            UserResult { user, outcome }
        })
        .collect();
    let exit = if delivered == results.len() {
        Exit::Ok
    } else if delivered > 0 {
        Exit::Partial
    } else if auth > 0 {
        Exit::Auth
    } else if unknown == results.len() {
        Exit::Unknown
    } else {
        Exit::Failed
    };
    Ok(Outcome::PerUser { results, exit })
}

async fn reply(
    client: &Client,
    reply: Respond,
    id: u64,
    dry_run: bool,
) -> Result<Outcome, Failure> {
    if dry_run {
        return Ok(preview(client, &reply.to_request().map_err(failure)?));
    }
    match reply.send(client).await.map_err(failure)? {
        Some(messages) => Ok(Outcome::Value {
            plain: messages.join("\n"),
            json: json!({"messages": messages}),
        }),
        None => Err(not_done(format!(
            "the portal answered false: notification {id} does not exist, is not yours, or cannot take this reply"
        ))),
    }
}

fn not_done(message: String) -> Failure {
    Failure::Portal {
        body: None,
        message,
        auth: false,
    }
}

/// Turns the send flags into a notification for the library's builder. Async only for an
/// `--attach` URL, which is downloaded like OPI's `--blocks`.
async fn build_send(flags: SendFlags) -> Result<Notification, Failure> {
    let base = match &flags.attach {
        Some(text) => blocks::read(text)
            .await
            .map_err(|e| Failure::Usage(severity::flagged("--attach", &e)))?
            .map(|a| a.as_json().clone()),
        None => None,
    };
    let attach =
        build_attach(base, &flags.image, &flags.file, &flags.color).map_err(Failure::Usage)?;
    let text = match flags.text.as_str() {
        "-" => {
            use std::io::IsTerminal;
            // Otherwise a terminal just waits, silently, for an end of input.
            if std::io::stdin().is_terminal() {
                crate::output::note(if cfg!(windows) {
                    "reading --text from standard input; end with Ctrl-Z Enter"
                } else {
                    "reading --text from standard input; end with Ctrl-D"
                });
            }
            crate::files::read_stdin_text(crate::files::STDIN_TEXT_CAP)
                .map_err(|e| Failure::Usage(format!("--text -: {e}")))?
        }
        _ => flags.text,
    };
    let text = if flags.markdown {
        crate::markdown::to_bbcode(&text)
    } else {
        text
    };
    Ok(Notification {
        system: flags.system,
        user: flags.user[0],
        text,
        tag: flags.tag,
        sub_tag: flags.sub_tag,
        message_out: flags.message_out,
        client_id: flags.client_id,
        attach,
    })
}

/// The `notify send` flag that set what a finding is about.
fn send_flag(finding: &bitrix24::Finding) -> String {
    match (finding.field.as_str(), finding.path.as_str()) {
        ("ATTACH", "COLOR") => "--color".to_string(),
        (field, _) => notify_flag(field),
    }
}

/// Joins `--attach` (already read), `--image`, `--file` and `--color` into one attachment.
fn build_attach(
    base: Option<Value>,
    images: &[String],
    files: &[String],
    color: &Option<String>,
) -> Result<Option<Attach>, String> {
    let mut extra = Vec::new();
    for (flag, kind, items) in [("--image", "IMAGE", images), ("--file", "FILE", files)] {
        for item in items {
            let (name, link) = item
                .split_once('=')
                .filter(|(n, l)| !n.trim().is_empty() && !l.trim().is_empty())
                .ok_or_else(|| format!("{flag}: expected NAME=URL, got {item:?}"))?;
            // The link is checked with the rest of the attach, by the library's rule.
            let link = link.trim();
            extra.push(json!({ kind: {"NAME": name.trim(), "LINK": link} }));
        }
    }
    if base.is_none() && extra.is_empty() {
        return match color {
            Some(_) => {
                Err("--color: colours an attachment; add --attach, --image or --file".into())
            }
            None => Ok(None),
        };
    }
    // Full form when there is one already or a colour needs a place; a plain list otherwise.
    let value = match base {
        Some(Value::Object(mut full)) => {
            let key = full
                .keys()
                .find(|k| k.eq_ignore_ascii_case("BLOCKS"))
                .cloned()
                .unwrap_or("BLOCKS".into());
            if let Some(Value::Array(list)) = full.get_mut(&key) {
                list.extend(extra);
            }
            if let Some(c) = color {
                full.insert("COLOR".into(), Value::String(c.clone()));
            }
            Value::Object(full)
        }
        base => {
            let mut list = match base {
                Some(Value::Array(list)) => list,
                _ => Vec::new(),
            };
            list.extend(extra);
            match color {
                Some(c) => json!({"COLOR": c, "BLOCKS": list}),
                None => Value::Array(list),
            }
        }
    };
    // Errors are refused with the rest of the notification's findings, warnings shown.
    let attach = Attach::from_value(value);
    Ok((!attach.is_empty()).then_some(attach))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attach_flags_combine() {
        let images = vec!["chart=https://x/c.png".to_string()];
        let files = vec!["log.txt=/upload/log.txt".to_string()];
        let a = build_attach(Some(json!([{"MESSAGE": "hi"}])), &images, &files, &None)
            .unwrap()
            .unwrap();
        assert_eq!(
            a.as_json(),
            &json!([{"MESSAGE": "hi"}, {"IMAGE": {"NAME": "chart", "LINK": "https://x/c.png"}},
                    {"FILE": {"NAME": "log.txt", "LINK": "/upload/log.txt"}}])
        );
        let a = build_attach(None, &images, &[], &Some("#29619b".into()))
            .unwrap()
            .unwrap();
        assert_eq!(
            a.as_json(),
            &json!({"COLOR": "#29619b", "BLOCKS": [{"IMAGE": {"NAME": "chart", "LINK": "https://x/c.png"}}]})
        );
        assert!(build_attach(None, &[], &[], &None).unwrap().is_none());
        let table = [
            (vec!["noequals"], None, "--image: expected NAME=URL"),
            (vec![], Some("#fff"), "--color: colours an attachment"),
        ];
        for (images, color, want) in table {
            let images: Vec<String> = images.iter().map(|s| s.to_string()).collect();
            let e = build_attach(None, &images, &[], &color.map(String::from)).unwrap_err();
            assert!(e.starts_with(want), "{e}");
        }
    }

    /// A link or colour the portal drops or replaces is the library's warning, not a refusal;
    /// strict refuses it, and what the portal refuses stays refused.
    #[test]
    fn attach_flags_are_checked_by_the_library() {
        let findings = |images: &[&str], color: Option<&str>, strict: bool| {
            let images: Vec<String> = images.iter().map(|s| s.to_string()).collect();
            let attach = build_attach(None, &images, &[], &color.map(String::from)).unwrap();
            let (report, _) = severity::Notification {
                user: 1,
                text: "x".into(),
                attach,
                ..Default::default()
            }
            .build(strict);
            (severity::admit_quietly(&report, strict, &send_flag), report)
        };
        let (admitted, report) = findings(&["a=ftp://x", "b=https://x/b.png"], Some("red"), false);
        assert!(admitted.is_ok());
        let lines: Vec<&str> = report.warnings.iter().map(|f| f.message.as_str()).collect();
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("\"ftp://x\" is not a link")),
            "{lines:?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("\"red\" is not a colour")),
            "{lines:?}"
        );
        let (refused, _) = findings(&["a=ftp://x", "b=https://x/b.png"], Some("red"), true);
        let refused = refused.unwrap_err();
        assert!(refused.starts_with("--color: COLOR: "), "{refused}");
        assert!(
            refused.contains("\n--attach: BLOCKS[0].IMAGE.LINK: "),
            "{refused}"
        );
        assert_eq!(refused.lines().count(), 2, "{refused}");
        let (clean, report) = findings(&["b=https://x/b.png"], Some("#29619b"), true);
        assert!(clean.is_ok() && report.is_clean());
    }
}
