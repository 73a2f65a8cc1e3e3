//! The modern commands: `oint notify …` and `oint call …`.
//!
//! Each command resolves its flags and connection first (usage errors exit 2 before anything
//! is sent), then runs through the library's typed calls, then renders the result as JSON,
//! tab-separated text or a table. Errors go through [`output::report`] like everywhere else.

use std::io::IsTerminal;

use bitrix24::{Attach, Client, Notification, Request};

use crate::severity;
use futures_util::TryStreamExt;
use serde_json::{Map, Value, json};

use crate::cli::{CallArgs, Connection, NotifyAction, NotifyArgs, OutputFormat, SendFlags};
use crate::output::{self, Exit, Failure, Success};
use crate::run::{connect, library_failure};
use crate::transport::Transport;
use crate::{app, blocks, config};

/// What a command produced, before rendering.
enum Outcome {
    /// A value to print as JSON, with its plain-text form.
    Value { json: Value, plain: String },
    /// A list of notifications.
    Notifications(Vec<Notification>),
}

/// `strict` is `--strict` or `OINT_STRICT`; the config file's `strict` is added here.
pub fn notify(args: NotifyArgs, transport: &Transport, strict: bool) -> Exit {
    if let NotifyAction::Bulk(flags) = &args.action {
        return bulk(flags.clone(), &args.connection, transport, strict);
    }
    let format = format(&args.connection);
    let outcome = prepare(&args.connection, transport).and_then(|(target, transport, file)| {
        let rt = app::runtime()?;
        rt.block_on(async {
            let (client, _sandbox) = connect(target, &transport).await?;
            run_notify(&client, args.action, &args.connection, strict || file).await
        })
    });
    render(outcome, format)
}

pub fn call(args: CallArgs, transport: &Transport, strict: bool) -> Exit {
    let format = format(&args.connection);
    let params = match call_params(args.params_json.as_deref(), &args.params) {
        Ok(params) => params,
        Err(e) => return output::report(Err(Failure::Usage(e)), None),
    };
    let request = params
        .into_iter()
        .fold(Request::new(args.method.trim()), |r, (k, v)| r.param(k, v));
    // Before anything connects, --dry-run included: a bad name could leave /rest/.
    if let Err(e) = bitrix24::check_method(request.method()) {
        return output::report(Err(library_failure(e)), None);
    }
    let outcome = prepare(&args.connection, transport).and_then(|(target, transport, file)| {
        // An ATTACH is checked as a notification's is, whatever the method.
        if let Some(attach) = request.params().get("ATTACH") {
            let report = Attach::review_json(attach);
            severity::admit(&report, strict || file, &|f| f.field.clone())
                .map_err(Failure::Usage)?;
        }
        let rt = app::runtime()?;
        rt.block_on(async {
            let (client, _sandbox) = connect(target, &transport).await?;
            if args.connection.dry_run {
                return Ok(preview(&client, &request));
            }
            let answer = client.execute(&request).await.map_err(library_failure)?;
            let plain = match &answer.result {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            Ok(Outcome::Value {
                json: answer.raw,
                plain,
            })
        })
    });
    render(outcome, format)
}

/// `oint notify bulk`: its own exit codes (0 all delivered, 3 some, 1 none).
fn bulk(
    flags: crate::cli::BulkFlags,
    conn: &Connection,
    transport: &Transport,
    strict: bool,
) -> Exit {
    let options = crate::bulk::Options {
        input: flags.input,
        format: flags.format,
        skip_invalid: flags.skip_invalid,
        report: flags.report,
        journal: flags.journal,
        concurrency: flags.concurrency as usize,
        dry_run: conn.dry_run,
        stdin_limit: flags.stdin_limit.saturating_mul(1 << 20),
        strict,
    };
    let outcome = prepare(conn, transport).and_then(|(target, transport, file)| {
        let rt = app::runtime()?;
        rt.block_on(async {
            let (client, _sandbox) = connect(target, &transport).await?;
            let options = crate::bulk::Options {
                strict: options.strict || file,
                ..options
            };
            crate::bulk::run(&client, options).await
        })
    });
    match outcome {
        Ok(exit) => exit,
        Err(failure) => output::report(Err(failure), None),
    }
}

/// Resolves the connection, its limits and the config file's `strict`, and turns on
/// `--debug` logging.
fn prepare(
    conn: &Connection,
    transport: &Transport,
) -> Result<(crate::resolve::Target, Transport, bool), Failure> {
    if conn.debug {
        app::init_debug_logging();
    }
    config::real_world(|world| {
        let target = config::resolve(conn, world)?;
        let transport = transport.with_entry(&config::entry_limits(conn, world)?)?;
        Ok((target, transport, config::strict(conn, world)?))
    })
    .map_err(Failure::Usage)
}

fn format(conn: &Connection) -> OutputFormat {
    match (conn.json, conn.output) {
        (true, _) => OutputFormat::Json,
        (false, Some(format)) => format,
        (false, None) if std::io::stdout().is_terminal() => OutputFormat::Table,
        (false, None) => OutputFormat::Json,
    }
}

fn preview(client: &Client, request: &Request) -> Outcome {
    let json = serde_json::to_value(client.preview(request)).expect("a preview is JSON");
    Outcome::Value {
        plain: output::to_pretty_json(&json),
        json,
    }
}

async fn run_notify(
    client: &Client,
    action: NotifyAction,
    conn: &Connection,
    strict: bool,
) -> Result<Outcome, Failure> {
    let n = client.notify();
    let err = library_failure;
    match action {
        NotifyAction::Send(flags) => {
            let user = flags.user;
            let (report, request) = build_send(flags)?.build(strict);
            severity::admit(&report, strict, &send_flag).map_err(Failure::Usage)?;
            let request = request.map_err(err)?;
            if request.params().contains_key("TAG") && !client.portal().is_oauth() {
                severity::webhook_tag("--tag", strict).map_err(Failure::Usage)?;
            }
            if conn.dry_run {
                return Ok(preview(client, &request));
            }
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
            let (request, by_id) = match (flags.target.id, flags.target.tag, flags.target.sub_tag) {
                (Some(id), _, _) => (n.delete(id).to_request(), Some(id)),
                (_, Some(tag), _) => (
                    with_client_id(n.delete_by_tag(tag), flags.client_id).to_request(),
                    None,
                ),
                (_, _, Some(sub)) => (
                    with_client_id(n.delete_by_sub_tag(sub), flags.client_id).to_request(),
                    None,
                ),
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
                n.read_all().to_request()
            } else if let Some(id) = target.id {
                let mut read = n.read(id);
                if flags.unread {
                    read = read.unread();
                }
                if flags.only_current {
                    read = read.only_current();
                }
                read.to_request()
            } else {
                let mut read = n.read_list(target.ids);
                if flags.unread {
                    read = read.unread();
                }
                read.to_request().map_err(err)?
            };
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
                n.answer(flags.id, flags.text),
                flags.id,
                conn.dry_run,
            )
            .await
        }
        NotifyAction::Confirm(flags) => {
            reply(
                client,
                n.confirm(flags.id, flags.value),
                flags.id,
                conn.dry_run,
            )
            .await
        }
        NotifyAction::List(flags) => {
            let get = n.get().limit(flags.limit);
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
        NotifyAction::Bulk(_) => unreachable!("bulk runs on its own, see notify()"),
        NotifyAction::Search(flags) => {
            let search = n.search(flags.text).limit(flags.limit);
            let request = search.to_request().map_err(err)?;
            if conn.dry_run {
                return Ok(preview(client, &request));
            }
            Ok(Outcome::Notifications(
                search.send().await.map_err(err)?.notifications,
            ))
        }
    }
}

fn with_client_id(
    delete: bitrix24::DeleteByTag<'_>,
    client_id: Option<String>,
) -> bitrix24::DeleteByTag<'_> {
    match client_id {
        Some(id) => delete.client_id(id),
        None => delete,
    }
}

async fn reply(
    client: &Client,
    reply: bitrix24::Reply<'_>,
    id: u64,
    dry_run: bool,
) -> Result<Outcome, Failure> {
    if dry_run {
        return Ok(preview(client, &reply.to_request()));
    }
    match reply.send().await.map_err(library_failure)? {
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

/// Turns the send flags into a notification for the library's builder.
fn build_send(flags: SendFlags) -> Result<severity::Notification, Failure> {
    let attach = build_attach(&flags.attach, &flags.image, &flags.file, &flags.color)
        .map_err(Failure::Usage)?;
    Ok(severity::Notification {
        system: flags.system,
        user: flags.user,
        text: flags.text,
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
        ("USER_ID", _) => "--user",
        ("MESSAGE", _) => "--text",
        ("ATTACH", "COLOR") => "--color",
        ("ATTACH", _) => "--attach",
        (other, _) => other,
    }
    .to_string()
}

/// Joins `--attach`, `--image`, `--file` and `--color` into one attachment.
fn build_attach(
    attach: &Option<String>,
    images: &[String],
    files: &[String],
    color: &Option<String>,
) -> Result<Option<Attach>, String> {
    let base = match attach {
        Some(text) => blocks::parse(text)
            .map_err(|e| crate::resolve::flagged("--attach", &e.to_string()))?
            .map(|a| a.as_json().clone()),
        None => None,
    };
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

/// `--params` JSON (or @file) overlaid with `key=value` pairs in PHP bracket syntax.
pub fn call_params(
    json_text: Option<&str>,
    pairs: &[String],
) -> Result<Map<String, Value>, String> {
    let mut params = match json_text {
        None => Map::new(),
        Some(text) => {
            let (source, text) = match text.strip_prefix('@') {
                Some(path) => (
                    format!("--params @{path}"),
                    blocks::read_file(std::path::Path::new(path))
                        .map_err(|e| format!("--params: {e}"))?,
                ),
                None => ("--params".to_string(), text.to_string()),
            };
            match serde_json::from_str::<Value>(&text) {
                Ok(Value::Object(map)) => map,
                Ok(_) => {
                    return Err(format!(
                        "{source}: must be a JSON object such as {{\"USER_ID\": 1}}"
                    ));
                }
                Err(e) => return Err(format!("{source}: not valid JSON ({e})")),
            }
        }
    };
    for pair in pairs {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("{pair:?}: expected KEY=VALUE"))?;
        let path = key_path(key)
            .ok_or_else(|| format!("{key:?}: expected a key such as NAME, NAME[sub] or NAME[]"))?;
        insert(&mut params, &path, Value::String(value.to_string()))
            .map_err(|e| format!("{key:?}: {e}"))?;
    }
    Ok(params
        .into_iter()
        .map(|(k, v)| (k, lists_from_maps(v)))
        .collect())
}

/// `a[b][]` → `["a", "b", ""]`.
fn key_path(key: &str) -> Option<Vec<String>> {
    let (head, mut rest) = match key.find('[') {
        Some(i) => (&key[..i], &key[i..]),
        None => (key, ""),
    };
    if head.is_empty() {
        return None;
    }
    let mut path = vec![head.to_string()];
    while !rest.is_empty() {
        let inner = rest.strip_prefix('[')?;
        let end = inner.find(']')?;
        path.push(inner[..end].to_string());
        rest = &inner[end + 1..];
    }
    Some(path)
}

fn insert(map: &mut Map<String, Value>, path: &[String], value: Value) -> Result<(), String> {
    let (first, rest) = path.split_first().expect("a path has a head");
    let key = if first.is_empty() {
        map.len().to_string()
    } else {
        first.clone()
    };
    if rest.is_empty() {
        map.insert(key, value);
        return Ok(());
    }
    let slot = map
        .entry(key.clone())
        .or_insert_with(|| Value::Object(Map::new()));
    match slot {
        Value::Object(inner) => insert(inner, rest, value),
        _ => Err(format!("{key} is given both as a value and as a group")),
    }
}

/// Maps keyed exactly 0..n-1 become JSON lists, as PHP would encode them.
fn lists_from_maps(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let is_list = map.keys().enumerate().all(|(i, k)| *k == i.to_string());
            let values = map.into_iter().map(|(k, v)| (k, lists_from_maps(v)));
            if is_list {
                Value::Array(values.map(|(_, v)| v).collect())
            } else {
                Value::Object(values.collect())
            }
        }
        other => other,
    }
}

fn render(outcome: Result<Outcome, Failure>, format: OutputFormat) -> Exit {
    let outcome = outcome.map(|o| match (o, format) {
        (Outcome::Value { json, .. }, OutputFormat::Json) => Success::Json(json),
        (Outcome::Value { plain, .. }, _) => Success::Text(plain),
        (Outcome::Notifications(items), OutputFormat::Json) => {
            Success::Json(serde_json::to_value(items).expect("notifications are JSON"))
        }
        (Outcome::Notifications(items), OutputFormat::Plain) => Success::Text(plain_rows(&items)),
        (Outcome::Notifications(items), OutputFormat::Table) => Success::Text(table(&items)),
    });
    // The portal's error JSON belongs on stdout only when the caller asked for JSON.
    let outcome = outcome.map_err(|f| match (f, format) {
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
    });
    output::report(outcome, None)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_params_nest_like_php() {
        let pairs: Vec<String> = [
            "USER_ID=10",
            "MESSAGE=a=b",
            "ATTACH[0][MESSAGE]=hi",
            "ATTACH[1][IMAGE][LINK]=/x.png",
            "IDS[]=1",
            "IDS[]=2",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let got = call_params(Some(r#"{"MESSAGE": "overridden", "LIMIT": 5}"#), &pairs).unwrap();
        assert_eq!(
            Value::Object(got),
            json!({"MESSAGE": "a=b", "LIMIT": 5, "USER_ID": "10",
                   "ATTACH": [{"MESSAGE": "hi"}, {"IMAGE": {"LINK": "/x.png"}}], "IDS": ["1", "2"]})
        );
        let table = [
            (vec!["novalue"], "expected KEY=VALUE"),
            (vec!["[x]=1"], "expected a key such as"),
            (vec!["A[b=1"], "expected a key such as"),
            (vec!["A=1", "A[b]=2"], "both as a value and as a group"),
        ];
        for (pairs, want) in table {
            let pairs: Vec<String> = pairs.iter().map(|s| s.to_string()).collect();
            let e = call_params(None, &pairs).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
        assert!(
            call_params(Some("[1]"), &[])
                .unwrap_err()
                .contains("must be a JSON object")
        );
        assert!(
            call_params(Some("{"), &[])
                .unwrap_err()
                .contains("not valid JSON")
        );
    }

    #[test]
    fn attach_flags_combine() {
        let images = vec!["chart=https://x/c.png".to_string()];
        let files = vec!["log.txt=/upload/log.txt".to_string()];
        let a = build_attach(&Some("[{'MESSAGE':'hi'}]".into()), &images, &files, &None)
            .unwrap()
            .unwrap();
        assert_eq!(
            a.as_json(),
            &json!([{"MESSAGE": "hi"}, {"IMAGE": {"NAME": "chart", "LINK": "https://x/c.png"}},
                    {"FILE": {"NAME": "log.txt", "LINK": "/upload/log.txt"}}])
        );
        let a = build_attach(&None, &images, &[], &Some("#29619b".into()))
            .unwrap()
            .unwrap();
        assert_eq!(
            a.as_json(),
            &json!({"COLOR": "#29619b", "BLOCKS": [{"IMAGE": {"NAME": "chart", "LINK": "https://x/c.png"}}]})
        );
        assert!(build_attach(&None, &[], &[], &None).unwrap().is_none());
        let table = [
            (None, vec!["noequals"], None, "--image: expected NAME=URL"),
            (None, vec![], Some("#fff"), "--color: colours an attachment"),
            (
                Some("nope"),
                vec![],
                None,
                "--attach: expected a JSON array",
            ),
        ];
        for (attach, images, color, want) in table {
            let images: Vec<String> = images.iter().map(|s| s.to_string()).collect();
            let e = build_attach(
                &attach.map(String::from),
                &images,
                &[],
                &color.map(String::from),
            )
            .unwrap_err();
            assert!(e.starts_with(want), "{e}");
        }
    }

    /// A link or colour the portal drops or replaces is the library's warning, not a refusal;
    /// strict refuses it, and what the portal refuses stays refused.
    #[test]
    fn attach_flags_are_checked_by_the_library() {
        let findings = |images: &[&str], color: Option<&str>, strict: bool| {
            let images: Vec<String> = images.iter().map(|s| s.to_string()).collect();
            let attach = build_attach(&None, &images, &[], &color.map(String::from)).unwrap();
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
