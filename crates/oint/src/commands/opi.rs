//! The OPI-compatible commands, `oint bitrix24 <Method>`: flags with OPI's names become a
//! checked [`Job`] ([`plan`]), which is then sent ([`execute`]).
//!
//! Every check that can be made without the portal is made in [`plan`] (which also downloads
//! `--blocks` given as a URL), so that a mistake is reported with OPI's flag name and exit
//! code 2 before anything is sent. The mapping from a
//! request field to OPI's flag ([`opi_flag`]) lives here, and nowhere else.

use std::path::PathBuf;

use bitrix24::{Block, Request};
use secrecy::SecretString;
use serde_json::Value;

use crate::blocks;
use crate::connect::connect;
use crate::flags::{BlockFlags, CommonFlags, DeleteFlags, Method, NotificationFlags};
use crate::output::{Failure, Success};
use crate::portal_errors;
use crate::settings::{Target, Transport};
use crate::severity::flagged;

/// What the user asked for, checked.
pub enum Job {
    /// Call the portal.
    Send {
        target: Target,
        request: Request,
        expect: Expect,
        common: Common,
    },
    /// Print a value made locally (GetPictureBlock, GetFileBlock).
    Print { value: Value, common: Common },
}

impl Job {
    /// The OPI options every method has.
    pub fn common(&self) -> &Common {
        match self {
            Job::Send { common, .. } | Job::Print { common, .. } => common,
        }
    }
}

/// How to judge a `result` that is not an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// An id; `false` means the notification was not created.
    Created,
    /// `true`; `false` means nothing was deleted.
    Deleted,
}

/// OPI's common options, resolved.
#[derive(Debug, Clone, Default)]
pub struct Common {
    pub debug: bool,
    pub test: bool,
    pub out: Option<PathBuf>,
    /// Refuse warnings too.
    pub strict: bool,
}

/// A usage error: one line, naming the flag.
#[derive(Debug, PartialEq)]
pub struct UsageError(pub String);

fn usage(flag: &str, message: impl std::fmt::Display) -> UsageError {
    UsageError(flagged(flag, &message.to_string()))
}

/// Checks an OPI method's flags and makes its job; `strict` refuses warnings too
/// (`--strict`, `OINT_STRICT`). Async only for a `--blocks` URL.
pub async fn plan(method: Method, strict: bool) -> Result<Job, UsageError> {
    match method {
        Method::CreatePersonalNotification(flags) => notification(flags, false, strict).await,
        Method::CreateSystemNotification(flags) => notification(flags, true, strict).await,
        Method::DeleteNotification(flags) => delete(flags),
        Method::GetPictureBlock(flags) => block(flags, Block::image),
        Method::GetFileBlock(flags) => block(flags, Block::file),
    }
}

async fn notification(
    flags: NotificationFlags,
    system: bool,
    strict: bool,
) -> Result<Job, UsageError> {
    let target = target(flags.url, flags.token)?;
    let user = positive_id("--user", "user", flags.user)?;
    let text = unescape_newlines(&required("--text", flags.text, "the notification text")?);
    if text.trim().is_empty() {
        return Err(usage(
            "--text",
            "is blank; the portal refuses notifications without text",
        ));
    }
    // Last of the flags: a URL is downloaded only when everything else is right.
    let attach = match flags.blocks {
        Some(text) => blocks::read(&text)
            .await
            .map_err(|e| usage("--blocks", e))?,
        None => None,
    };
    let (report, request) = crate::severity::Notification {
        system,
        user,
        text,
        tag: flags.tag.map(|t| unescape_newlines(&t)),
        attach,
        ..Default::default()
    }
    .build(strict);
    crate::severity::admit(&report, strict, &|f| opi_flag(&f.field).to_string())
        .map_err(UsageError)?;
    let request = request.map_err(|e| UsageError(e.to_string()))?;
    let mut common = common(flags.common);
    common.strict = strict;
    Ok(Job::Send {
        target,
        request,
        expect: Expect::Created,
        common,
    })
}

/// The OPI flag that sets a request's field.
pub fn opi_flag(field: &str) -> &str {
    match field {
        "USER_ID" => "--user",
        "MESSAGE" => "--text",
        "ATTACH" => "--blocks",
        "TAG" => "--tag",
        "ID" => "--notif",
        other => other,
    }
}

fn delete(flags: DeleteFlags) -> Result<Job, UsageError> {
    let target = target(flags.url, flags.token)?;
    let id = positive_id("--notif", "notification", flags.notif)?;
    let request = Request::new("im.notify.delete").param("ID", id.to_string());
    Ok(Job::Send {
        target,
        request,
        expect: Expect::Deleted,
        common: common(flags.common),
    })
}

fn block(flags: BlockFlags, make: fn(String, String) -> Block) -> Result<Job, UsageError> {
    let title = unescape_newlines(&required(
        "--title",
        flags.title,
        "the name shown for the block",
    )?);
    let link = required("--url", flags.url, "the link to the picture or file")?;
    let link = link.trim().to_string();
    // The library's link rule, in its words: a block whose link the portal drops is useless.
    let block = make(title, link);
    let report = bitrix24::Attach::new([block.clone()]).review();
    let bad: Vec<String> = report
        .findings()
        .filter(|f| f.path.ends_with(".LINK"))
        .map(|f| f.message.clone())
        .collect();
    if !bad.is_empty() {
        return Err(usage("--url", bad.join("\n")));
    }
    Ok(Job::Print {
        value: block.into_json(),
        common: common(flags.common),
    })
}

fn target(url: Option<String>, token: Option<String>) -> Result<Target, UsageError> {
    let url = required(
        "--url",
        url,
        "a webhook URL (https://PORTAL/rest/USER_ID/SECRET/), a portal domain with --token, or \"sandbox\"; BITRIX24_URL works too",
    )?;
    let token = token
        .map(|t| crate::secrets::clean_secret(&t, "--token"))
        .transpose()
        .map_err(UsageError)?
        .filter(|t| !t.is_empty())
        .map(SecretString::from);
    if url.trim().eq_ignore_ascii_case("sandbox") {
        return Ok(Target::Sandbox { token });
    }
    // OPI has no OAuth flags; the BITRIX24_CLIENT_ID… environment turns refresh on.
    let oauth = crate::settings::real_world(|world| {
        crate::settings::oauth::credentials(&url, None, false, world, &|_, _| {
            Err("no secret files without a config file".into())
        })
    })
    .map_err(UsageError)?;
    Ok(Target::Portal { url, token, oauth })
}

fn required(flag: &str, value: Option<String>, what: &str) -> Result<String, UsageError> {
    match value {
        Some(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(usage(flag, format!("is required: {what}"))),
    }
}

fn positive_id(flag: &str, what: &str, value: Option<String>) -> Result<u64, UsageError> {
    let text = required(flag, value, &format!("the {what} ID"))?;
    match text.trim().parse::<u64>() {
        Ok(id) if id > 0 => Ok(id),
        _ => Err(usage(
            flag,
            format!(
                "expected a {what} ID (a whole number of 1 or more), got {:?}",
                text.trim()
            ),
        )),
    }
}

fn common(flags: CommonFlags) -> Common {
    Common {
        debug: flags.debug,
        test: flags.test,
        out: flags.out.filter(|o| !o.is_empty()).map(PathBuf::from),
        strict: false,
    }
}

/// OPI turns a typed `\n` into a new line in plain-text options.
fn unescape_newlines(text: &str) -> String {
    text.replace("\\n", "\n")
}

/// Sends a planned job (or prints what it made locally) and judges the answer.
pub async fn execute(job: Job, transport: &Transport) -> Result<Success, Failure> {
    match job {
        Job::Print { value, .. } => Ok(Success::Json(value)),
        Job::Send {
            target,
            request,
            expect,
            common,
        } => {
            // Before anything connects: a bad name could leave /rest/ with the credentials.
            bitrix24::check_method(request.method()).map_err(failure)?;
            // Keep the sandbox alive until the call is done.
            let (client, _sandbox) = connect(target, transport).await?;
            if common.debug {
                crate::output::note(&format!("portal : {}", client.portal()));
            }
            crate::severity::webhook_tag(&request, client.portal(), common.strict, &|f| {
                opi_flag(&f.field).to_string()
            })
            .map_err(Failure::Usage)?;
            if common.test {
                let preview = client.preview(&request);
                return Ok(Success::Json(
                    serde_json::to_value(preview).expect("a preview is JSON"),
                ));
            }
            let answer = client.execute(&request).await.map_err(failure)?;
            judge(expect, &request, answer.raw)
        }
    }
}

/// A `false` result is the portal saying "not done" without an error; scripts must see it.
fn judge(expect: Expect, request: &bitrix24::Request, body: Value) -> Result<Success, Failure> {
    let result = body.get("result").cloned().unwrap_or(Value::Null);
    let failed = matches!(result, Value::Bool(false) | Value::Null);
    if !failed {
        return Ok(Success::Json(body));
    }
    let param = |k: &str| {
        request
            .params()
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string()
    };
    let message = match expect {
        Expect::Created => format!(
            "the portal did not create the notification (result false): user {} does not exist or is inactive",
            param("USER_ID")
        ),
        Expect::Deleted => format!(
            "the portal did not delete notification {} (result false): it does not exist or is not among the caller's own notifications",
            param("ID")
        ),
    };
    Err(Failure::Portal {
        body: Some(body),
        message,
        auth: false,
    })
}

/// A library error, with request fields named by OPI's flags.
fn failure(error: bitrix24::Error) -> Failure {
    portal_errors::failure(error, &|field| opi_flag(field).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn flags(url: &str, user: &str, text: &str) -> NotificationFlags {
        NotificationFlags {
            url: Some(url.into()),
            user: Some(user.into()),
            text: Some(text.into()),
            ..Default::default()
        }
    }

    /// The real `plan`, on a runtime of its own.
    fn plan(method: Method, strict: bool) -> Result<Job, UsageError> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(super::plan(method, strict))
    }

    fn request_of(job: Job) -> Request {
        match job {
            Job::Send { request, .. } => request,
            Job::Print { .. } => panic!("expected a request"),
        }
    }

    #[test]
    fn builds_opi_bodies() {
        let mut f = flags("https://x.bitrix24.com/rest/1/s/", "10", "Line 1\\nLine 2");
        f.tag = Some("New".into());
        f.blocks = Some("[{'IMAGE':{'NAME':'i','LINK':'https://x/p.png'}}]".into());
        let r = request_of(plan(Method::CreatePersonalNotification(f), false).unwrap());
        assert_eq!(r.method(), "im.notify.personal.add");
        assert_eq!(
            Value::Object(r.params().clone()),
            json!({"USER_ID": "10", "MESSAGE": "Line 1\nLine 2", "TAG": "New",
                   "ATTACH": [{"IMAGE": {"NAME": "i", "LINK": "https://x/p.png"}}]})
        );
        // Empty optional values are left out.
        let mut f = flags("sandbox", "1", "x");
        f.tag = Some(String::new());
        f.blocks = Some("  ".into());
        let r = request_of(plan(Method::CreateSystemNotification(f), false).unwrap());
        assert_eq!(r.method(), "im.notify.system.add");
        assert_eq!(
            Value::Object(r.params().clone()),
            json!({"USER_ID": "1", "MESSAGE": "x"})
        );
    }

    #[test]
    fn usage_errors_name_the_flag() {
        let cases: Vec<(Method, &str)> = vec![
            (
                Method::CreatePersonalNotification(NotificationFlags::default()),
                "--url: is required",
            ),
            (
                Method::CreatePersonalNotification(flags("sandbox", "", "x")),
                "--user: is required",
            ),
            (
                Method::CreatePersonalNotification(flags("sandbox", "abc", "x")),
                "--user: expected a user ID",
            ),
            (
                Method::CreatePersonalNotification(flags("sandbox", "0", "x")),
                "--user: expected a user ID",
            ),
            (
                Method::CreatePersonalNotification(flags("sandbox", "-3", "x")),
                "--user: expected a user ID",
            ),
            (
                Method::CreatePersonalNotification(flags("sandbox", "1", "   ")),
                "--text: is required",
            ),
            (
                Method::CreatePersonalNotification(NotificationFlags {
                    blocks: Some("nope".into()),
                    ..flags("sandbox", "1", "x")
                }),
                "--blocks: expected a JSON array",
            ),
            (
                Method::DeleteNotification(DeleteFlags {
                    url: Some("sandbox".into()),
                    ..Default::default()
                }),
                "--notif: is required",
            ),
            (
                Method::GetPictureBlock(BlockFlags {
                    title: Some("a".into()),
                    url: Some("ftp://x".into()),
                    ..Default::default()
                }),
                "--url: \"ftp://x\" is not a link",
            ),
            (
                Method::GetFileBlock(BlockFlags {
                    url: Some("https://x".into()),
                    ..Default::default()
                }),
                "--title: is required",
            ),
        ];
        for (method, want) in cases {
            let err = plan(method, false).err().expect(want).0;
            assert!(err.starts_with(want), "{err}");
            assert!(!err.contains('\n'));
        }
    }

    #[test]
    fn warnings_are_sent_unless_strict() {
        // The docs' own example: the portal draws a default delimiter.
        let f = || NotificationFlags {
            blocks: Some(r#"[{"DELIMITER": true}]"#.into()),
            ..flags("sandbox", "1", "x")
        };
        let r = request_of(plan(Method::CreatePersonalNotification(f()), false).unwrap());
        assert_eq!(r.params()["ATTACH"], json!([{"DELIMITER": true}]));
        let err = plan(Method::CreatePersonalNotification(f()), true)
            .err()
            .unwrap()
            .0;
        assert!(
            err.starts_with("--blocks: blocks[0].DELIMITER: is a boolean;")
                && err.ends_with("(a warning, refused: --strict)"),
            "{err}"
        );
    }

    #[test]
    fn sandbox_is_recognised_in_any_case() {
        let job = plan(
            Method::CreatePersonalNotification(flags(" SandBox ", "1", "x")),
            false,
        )
        .unwrap();
        assert!(matches!(
            job,
            Job::Send {
                target: Target::Sandbox { token: None },
                ..
            }
        ));
    }

    #[test]
    fn block_helpers_make_opi_blocks() {
        let job = plan(
            Method::GetPictureBlock(BlockFlags {
                title: Some("Image1".into()),
                url: Some("https://x/p.jpg".into()),
                ..Default::default()
            }),
            false,
        )
        .unwrap();
        let Job::Print { value, .. } = job else {
            panic!()
        };
        assert_eq!(
            value,
            json!({"IMAGE": {"NAME": "Image1", "LINK": "https://x/p.jpg"}})
        );
    }
}
