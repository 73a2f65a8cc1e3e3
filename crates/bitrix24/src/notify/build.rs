//! Requests built and checked without a client: `notify::Personal::new(user, text)`…
//!
//! Each builder has `check()` (where it can find something), `to_request()` (the exact
//! [`Request`], or the [`Error`] the portal would answer) and `send(&Client)`. Nothing here
//! needs a connection, so a CLI, a bulk sender or a relay can build, check and preview every
//! call before it has a client, and batch the requests as they are.

use std::collections::BTreeMap;

use super::model::{NotificationPage, SchemaModule, SearchPage};
use super::read::{ReadAll as ReadAllAnswer, ReplyResult};
use super::{MAX_PAGE, Notification, NotificationKind};
use crate::answer::{Created, Flag};
use crate::attach::{Attach, Finding, Report, Rule};
use crate::client::{Client, Request};
use crate::error::Error;

/// What the personal, system and typed notifications share.
#[derive(Debug, Clone, PartialEq)]
struct Draft {
    kind: NotificationKind,
    /// Sent through `im.notify` with `TYPE`.
    generic: bool,
    user_id: u64,
    message: String,
    message_out: Option<String>,
    tag: Option<String>,
    sub_tag: Option<String>,
    client_id: Option<String>,
    attach: Option<Attach>,
    strict: bool,
}

impl Draft {
    fn new(kind: NotificationKind, generic: bool, user_id: u64, message: String) -> Draft {
        Draft {
            kind,
            generic,
            user_id,
            message,
            message_out: None,
            tag: None,
            sub_tag: None,
            client_id: None,
            attach: None,
            strict: false,
        }
    }

    fn check(&self) -> Report {
        let mut report = Report::default();
        if self.user_id == 0 {
            report.extend([Finding::refused(
                "USER_ID",
                Rule::UserId,
                "must be a user id of 1 or more",
            )]);
        }
        if self.message.trim().is_empty() {
            report.extend([Finding::refused(
                "MESSAGE",
                Rule::MessageRequired,
                "is empty; the portal refuses notifications without text",
            )]);
        }
        if let Some(attach) = self.attach.as_ref().filter(|a| !a.is_empty()) {
            report.merge(attach.review());
        }
        report
    }

    fn to_request(&self, strict: bool) -> Result<Request, Error> {
        self.check().into_result(strict)?;
        // OPI sends the user id as a string; the portal reads it with intval either way.
        let mut request = if self.generic {
            Request::new("im.notify").param("TYPE", self.kind.type_param())
        } else {
            Request::new(self.kind.method())
        };
        request = request
            .param("USER_ID", self.user_id.to_string())
            .param("MESSAGE", self.message.clone());
        // Empty optional values are left out, as OPI does.
        for (key, value) in [
            ("MESSAGE_OUT", &self.message_out),
            ("TAG", &self.tag),
            ("SUB_TAG", &self.sub_tag),
            ("CLIENT_ID", &self.client_id),
        ] {
            if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
                request = request.param(key, value);
            }
        }
        if let Some(attach) = self.attach.as_ref().filter(|a| !a.is_empty()) {
            request = request.param("ATTACH", attach.as_json().clone());
        }
        Ok(request)
    }
}

/// Legacy builders refuse any attach finding; that is strict mode.
pub(super) fn legacy_request(
    kind: NotificationKind,
    generic: bool,
    user_id: u64,
    message: &str,
    options: [&Option<String>; 4],
    attach: &Option<Attach>,
) -> Result<Request, Error> {
    let [message_out, tag, sub_tag, client_id] = options;
    let draft = Draft {
        message_out: message_out.clone(),
        tag: tag.clone(),
        sub_tag: sub_tag.clone(),
        client_id: client_id.clone(),
        attach: attach.clone(),
        ..Draft::new(kind, generic, user_id, message.to_owned())
    };
    draft.to_request(true)
}

macro_rules! notification {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq)]
        #[must_use = "a notification is sent only by .send()"]
        pub struct $name(Draft);

        impl $name {
            /// Text for email and other external channels (`MESSAGE_OUT`).
            pub fn message_out(mut self, text: impl Into<String>) -> Self {
                self.0.message_out = Some(text.into());
                self
            }

            /// Uniqueness tag (`TAG`): a newer notification with the same tag replaces the
            /// older one for the same recipient. Applied only for OAuth callers; the portal
            /// drops it over a webhook (the notification is still created).
            pub fn tag(mut self, tag: impl Into<String>) -> Self {
                self.0.tag = Some(tag.into());
                self
            }

            /// Secondary tag (`SUB_TAG`), for deleting groups of notifications; OAuth only,
            /// like [`tag`](Self::tag).
            pub fn sub_tag(mut self, sub_tag: impl Into<String>) -> Self {
                self.0.sub_tag = Some(sub_tag.into());
                self
            }

            /// `CLIENT_ID`, which the docs say webhook callers should pass with TAG (unverified:
            /// the known server source ignores it when adding).
            pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
                self.0.client_id = Some(client_id.into());
                self
            }

            /// Attachment blocks, checked when the request is built. An empty attach is left
            /// out.
            pub fn attach(mut self, attach: Attach) -> Self {
                self.0.attach = Some(attach);
                self
            }

            /// Strict mode: refuse warnings too (an attach part the portal would drop or
            /// change), not only what the portal refuses. Off by default.
            pub fn strict(mut self, strict: bool) -> Self {
                self.0.strict = strict;
                self
            }

            /// Everything the portal would refuse (errors) or change (warnings), without
            /// building the request.
            pub fn check(&self) -> Report {
                self.0.check()
            }

            /// The request, or the first refused parameter as [`Error::InvalidArgument`] (one
            /// line per finding). Warnings do not stop it unless [`strict`](Self::strict);
            /// read them with [`check`](Self::check).
            pub fn to_request(&self) -> Result<Request, Error> {
                self.0.to_request(self.0.strict)
            }

            /// Sends it with `client`. Returns the notification's id, or `None` when the portal
            /// did not create it (the recipient does not exist or is inactive).
            pub async fn send(&self, client: &Client) -> Result<Option<u64>, Error> {
                let request = self.to_request()?;
                Ok(client.send::<Created>(&request).await?.result.0)
            }
        }
    };
}

notification! {
    /// `im.notify.personal.add`: a notification from the calling user.
    ///
    /// ```
    /// use bitrix24::notify::Personal;
    /// use bitrix24::{Attach, Block};
    /// let request = Personal::new(10, "Nightly build is green")
    ///     .tag("nightly")
    ///     .sub_tag("ci")
    ///     .attach(Attach::new([Block::message("42 tests")]))
    ///     .to_request()?;
    /// assert_eq!(request.method(), "im.notify.personal.add");
    /// assert_eq!(request.params()["TAG"], "nightly");
    /// # Ok::<(), bitrix24::Error>(())
    /// ```
    Personal
}

notification! {
    /// `im.notify.system.add`: a notification without an author.
    ///
    /// ```
    /// use bitrix24::notify::System;
    /// use bitrix24::Attach;
    /// let attach = Attach::from_value(serde_json::json!([{"DELIMITER": true}]));
    /// let system = System::new(10, "Disk almost full").attach(attach);
    /// assert_eq!(system.check().warnings.len(), 1);
    /// assert!(system.to_request().is_ok(), "a warning does not cost the notification");
    /// assert!(system.clone().strict(true).to_request().is_err());
    /// ```
    System
}

notification! {
    /// `im.notify` with `TYPE`: the generic form of [`Personal`] and [`System`].
    Typed
}

impl Personal {
    /// A notification to `user_id` with `message`.
    pub fn new(user_id: u64, message: impl Into<String>) -> Personal {
        Personal(Draft::new(
            NotificationKind::Personal,
            false,
            user_id,
            message.into(),
        ))
    }
}

impl System {
    /// A system notification to `user_id` with `message`.
    pub fn new(user_id: u64, message: impl Into<String>) -> System {
        System(Draft::new(
            NotificationKind::System,
            false,
            user_id,
            message.into(),
        ))
    }
}

impl Typed {
    /// A notification of `kind` through `im.notify`.
    pub fn new(kind: NotificationKind, user_id: u64, message: impl Into<String>) -> Typed {
        Typed(Draft::new(kind, true, user_id, message.into()))
    }
}

fn refused(field: &str, rule: Rule, message: impl Into<String>) -> Error {
    // One wording: the same finding a report would carry.
    let f = Finding::refused(field, rule, message);
    Error::invalid(f.field.clone(), f.message)
}

/// `im.notify.delete` by id.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "nothing is deleted until .send()"]
pub struct Delete {
    id: u64,
}

impl Delete {
    /// Deletes notification `id` of the caller.
    pub fn new(id: u64) -> Delete {
        Delete { id }
    }

    /// The request.
    pub fn to_request(&self) -> Result<Request, Error> {
        if self.id == 0 {
            return Err(refused(
                "ID",
                Rule::Ids,
                "must be a notification id of 1 or more",
            ));
        }
        Ok(Request::new("im.notify.delete").param("ID", self.id.to_string()))
    }

    /// Sends it; `false` when the portal did not delete it.
    pub async fn send(&self, client: &Client) -> Result<bool, Error> {
        Ok(client.send::<Flag>(&self.to_request()?).await?.result.0)
    }
}

pub(super) fn client_id_required() -> Error {
    refused(
        "CLIENT_ID",
        Rule::OutOfRange,
        "is required to delete by tag over a webhook (the portal answers ACCESS_DENIED without it)",
    )
}

/// `im.notify.delete` by `TAG` or `SUB_TAG`, for every user.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "nothing is deleted until .send()"]
pub struct DeleteTagged {
    key: &'static str,
    tag: String,
    client_id: Option<String>,
}

impl DeleteTagged {
    /// Deletes notifications with this `TAG`.
    pub fn tag(tag: impl Into<String>) -> DeleteTagged {
        DeleteTagged {
            key: "TAG",
            tag: tag.into(),
            client_id: None,
        }
    }

    /// Deletes notifications with this `SUB_TAG`.
    pub fn sub_tag(sub_tag: impl Into<String>) -> DeleteTagged {
        DeleteTagged {
            key: "SUB_TAG",
            tag: sub_tag.into(),
            client_id: None,
        }
    }

    /// The application whose tags to delete (`CLIENT_ID`); required over a webhook, which
    /// [`send`](Self::send) checks.
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    /// The request. Without a client it cannot tell a webhook from OAuth, so the missing
    /// `CLIENT_ID` of a webhook call is refused by [`send`](Self::send) only.
    pub fn to_request(&self) -> Result<Request, Error> {
        if self.tag.is_empty() {
            return Err(refused(
                self.key,
                Rule::OutOfRange,
                "is empty; the portal deletes nothing for an empty tag",
            ));
        }
        let mut request = Request::new("im.notify.delete").param(self.key, self.tag.clone());
        if let Some(id) = self.client_id.as_deref().filter(|c| !c.is_empty()) {
            request = request.param("CLIENT_ID", id);
        }
        Ok(request)
    }

    /// Sends it. The portal answers `true` even when nothing matched.
    pub async fn send(&self, client: &Client) -> Result<bool, Error> {
        let request = self.to_request()?;
        if !client.portal().is_oauth() && !request.params().contains_key("CLIENT_ID") {
            return Err(client_id_required());
        }
        Ok(client.send::<Flag>(&request).await?.result.0)
    }
}

/// `im.notify.read`: marks one notification, or it and every newer one, as read or unread.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "nothing is marked until .send()"]
pub struct Read {
    id: u64,
    unread: bool,
    only_current: bool,
}

impl Read {
    /// Marks `id` and every newer notification as read.
    pub fn new(id: u64) -> Read {
        Read {
            id,
            unread: false,
            only_current: false,
        }
    }

    /// Marks as unread instead (`ACTION=N`).
    pub fn unread(mut self) -> Self {
        self.unread = true;
        self
    }

    /// Only this notification (`ONLY_CURRENT=Y`).
    pub fn only_current(mut self) -> Self {
        self.only_current = true;
        self
    }

    /// The request.
    pub fn to_request(&self) -> Result<Request, Error> {
        Ok(self.request())
    }

    pub(super) fn request(&self) -> Request {
        Request::new("im.notify.read")
            .param("ID", self.id)
            .param("ACTION", if self.unread { "N" } else { "Y" })
            .param("ONLY_CURRENT", if self.only_current { "Y" } else { "N" })
    }

    /// Sends it. The portal answers `true` whatever the id.
    pub async fn send(&self, client: &Client) -> Result<bool, Error> {
        Ok(client.send::<Flag>(&self.to_request()?).await?.result.0)
    }
}

/// `im.notify.read.list`: marks the listed notifications as read or unread.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "nothing is marked until .send()"]
pub struct ReadList {
    ids: Vec<u64>,
    unread: bool,
}

impl ReadList {
    /// Marks these notifications as read.
    pub fn new(ids: impl IntoIterator<Item = u64>) -> ReadList {
        ReadList {
            ids: ids.into_iter().collect(),
            unread: false,
        }
    }

    /// Marks as unread instead (`ACTION=N`).
    pub fn unread(mut self) -> Self {
        self.unread = true;
        self
    }

    /// The request. The portal stops at the first id below 1, so such ids are refused.
    pub fn to_request(&self) -> Result<Request, Error> {
        if self.ids.is_empty() {
            return Err(refused(
                "IDS",
                Rule::Ids,
                "is empty; give at least one notification id",
            ));
        }
        if let Some(pos) = self.ids.iter().position(|id| *id == 0) {
            return Err(refused(
                &format!("IDS[{pos}]"),
                Rule::Ids,
                "is 0; notification ids start at 1",
            ));
        }
        Ok(Request::new("im.notify.read.list")
            .param("IDS", self.ids.clone())
            .param("ACTION", if self.unread { "N" } else { "Y" }))
    }

    /// Sends it.
    pub async fn send(&self, client: &Client) -> Result<bool, Error> {
        Ok(client.send::<Flag>(&self.to_request()?).await?.result.0)
    }
}

/// `im.notify.read.all`: marks every notification of the caller as read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use = "nothing is marked until .send()"]
pub struct ReadAll;

impl ReadAll {
    /// Every notification of the caller.
    pub fn new() -> ReadAll {
        ReadAll
    }

    /// The request.
    pub fn to_request(&self) -> Result<Request, Error> {
        Ok(Request::new("im.notify.read.all"))
    }

    /// Sends it.
    pub async fn send(&self, client: &Client) -> Result<bool, Error> {
        Ok(client
            .send::<ReadAllAnswer>(&self.to_request()?)
            .await?
            .result
            .0)
    }
}

/// `im.notify.confirm` (a button) or `im.notify.answer` (a text reply).
#[derive(Debug, Clone, PartialEq)]
#[must_use = "nothing is sent until .send()"]
pub struct Respond {
    request: Request,
}

impl Respond {
    /// Presses button `value` of confirmation `id` (`im.notify.confirm`).
    pub fn confirm(id: u64, value: impl Into<String>) -> Respond {
        Respond {
            request: Request::new("im.notify.confirm")
                .param("NOTIFY_ID", id)
                .param("NOTIFY_VALUE", value.into()),
        }
    }

    /// Answers notification `id` with `text` (`im.notify.answer`).
    pub fn answer(id: u64, text: impl Into<String>) -> Respond {
        Respond {
            request: Request::new("im.notify.answer")
                .param("NOTIFY_ID", id)
                .param("ANSWER_TEXT", text.into()),
        }
    }

    /// The request.
    pub fn to_request(&self) -> Result<Request, Error> {
        Ok(self.request.clone())
    }

    pub(super) fn into_request(self) -> Request {
        self.request
    }

    /// Sends it: the portal's messages, or `None` when it answered `false`.
    pub async fn send(&self, client: &Client) -> Result<Option<Vec<String>>, Error> {
        Ok(client
            .send::<ReplyResult>(&self.request)
            .await?
            .result
            .result_message)
    }
}

fn page_limit(limit: u32) -> Result<(), Error> {
    if (1..=MAX_PAGE).contains(&limit) {
        Ok(())
    } else {
        Err(refused(
            "LIMIT",
            Rule::OutOfRange,
            format!("must be 1 to {MAX_PAGE}, not {limit}"),
        ))
    }
}

/// `im.notify.get`: one page of the caller's notifications.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "nothing is fetched until .send()"]
pub struct List {
    limit: u32,
    after: Option<(u64, u64)>,
    convert_text: bool,
}

impl Default for List {
    fn default() -> Self {
        List::new()
    }
}

impl List {
    /// The first page, 50 notifications.
    pub fn new() -> List {
        List {
            limit: MAX_PAGE,
            after: None,
            convert_text: false,
        }
    }

    /// Page size, 1 to 50.
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = limit;
        self
    }

    /// Continue after this notification.
    pub fn after(mut self, last: &Notification) -> Self {
        // LAST_TYPE: 1 while confirmations are listed, then 3.
        self.after = Some((last.id, if last.is_confirm() { 1 } else { 3 }));
        self
    }

    /// The cursor as `(LAST_ID, LAST_TYPE)`.
    pub(super) fn cursor(mut self, after: Option<(u64, u64)>) -> Self {
        self.after = after;
        self
    }

    /// BB-codes as HTML (`CONVERT_TEXT=Y`).
    pub fn convert_text(mut self) -> Self {
        self.convert_text = true;
        self
    }

    /// The request.
    pub fn to_request(&self) -> Result<Request, Error> {
        page_limit(self.limit)?;
        let mut request = Request::new("im.notify.get").param("LIMIT", self.limit);
        if let Some((id, stage)) = self.after {
            request = request.param("LAST_ID", id).param("LAST_TYPE", stage);
        }
        if self.convert_text {
            request = request.param("CONVERT_TEXT", "Y");
        }
        Ok(request)
    }

    /// Fetches the page.
    pub async fn send(&self, client: &Client) -> Result<NotificationPage, Error> {
        Ok(client
            .send::<NotificationPage>(&self.to_request()?)
            .await?
            .result)
    }
}

/// `im.notify.history.search`: the caller's notifications whose text matches.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "nothing is fetched until .send()"]
pub struct Search {
    text: String,
    limit: u32,
    after_id: Option<u64>,
}

impl Search {
    /// Notifications containing `text` (3 characters or more).
    pub fn new(text: impl Into<String>) -> Search {
        Search {
            text: text.into(),
            limit: MAX_PAGE,
            after_id: None,
        }
    }

    /// Page size, 1 to 50.
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = limit;
        self
    }

    /// Continue after this notification id.
    pub fn after_id(mut self, id: u64) -> Self {
        self.after_id = Some(id);
        self
    }

    /// The request.
    pub fn to_request(&self) -> Result<Request, Error> {
        if self.text.trim().chars().count() < 3 {
            return Err(refused(
                "SEARCH_TEXT",
                Rule::OutOfRange,
                "needs at least 3 characters",
            ));
        }
        page_limit(self.limit)?;
        let mut request = Request::new("im.notify.history.search")
            .param("SEARCH_TEXT", self.text.clone())
            .param("LIMIT", self.limit);
        if let Some(id) = self.after_id {
            request = request.param("LAST_ID", id);
        }
        Ok(request)
    }

    /// Fetches one page.
    pub async fn send(&self, client: &Client) -> Result<SearchPage, Error> {
        Ok(client.send::<SearchPage>(&self.to_request()?).await?.result)
    }
}

/// `im.notify.schema.get`: notification types by module.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use = "nothing is fetched until .send()"]
pub struct Schema;

impl Schema {
    /// The whole schema.
    pub fn new() -> Schema {
        Schema
    }

    /// The request.
    pub fn to_request(&self) -> Result<Request, Error> {
        Ok(Request::new("im.notify.schema.get"))
    }

    /// Fetches it, keyed by module id.
    pub async fn send(&self, client: &Client) -> Result<BTreeMap<String, SchemaModule>, Error> {
        let answer = client
            .send::<serde_json::Value>(&self.to_request()?)
            .await?;
        match answer.result {
            serde_json::Value::Array(a) if a.is_empty() => Ok(BTreeMap::new()),
            other => serde_json::from_value(other).map_err(|e| Error::Decode {
                status: 200,
                reason: format!("a schema this client cannot read: {e}"),
                body: String::new(),
            }),
        }
    }
}
