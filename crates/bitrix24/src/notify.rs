//! The notification methods, `im.notify.*`.
//!
//! Two families of builders, one shape: required arguments in the constructor, options as
//! setters, then `to_request()` (the exact [`Request`], for previews and batching) or `send`.
//! - Without a client: [`Personal`], [`System`], [`Typed`], [`Delete`], [`DeleteTagged`],
//!   [`Read`], [`ReadList`], [`ReadAll`], [`Respond`], [`List`], [`Search`], [`Schema`];
//!   `send(&client)`. The notification builders have `check()`, which sorts findings into
//!   errors (refused before sending) and warnings (sent; the portal drops or changes that
//!   part), and `.strict(true)`, which refuses warnings too.
//! - From a client ([`Client::notify`]): [`AddNotification`] and the others, `send()`. These
//!   are strict: any attachment finding refuses the call.
//!
//! Portal behaviours worth knowing:
//! - `TAG` and `SUB_TAG` are applied only for OAuth applications: the portal keys them by the
//!   calling app's client id, and a webhook has none. Over a webhook it silently drops them, so
//!   a tag cannot replace an earlier notification there. The docs say webhook callers should
//!   pass `CLIENT_ID` with the tag ([`AddNotification::client_id`]); the server source we know
//!   ignores `CLIENT_ID` when adding (it only reads it when deleting by tag), so whether that
//!   helps is unverified. Use OAuth when a tag must work.
//! - An attachment is checked against the portal's rules before sending ([`Attach::review`]);
//!   what the portal would refuse is an [`Error::InvalidArgument`], and so is what it would
//!   silently swallow when the builder is strict.
//! - A missing or inactive recipient is not an error: the portal answers `false`, which
//!   [`AddNotification::send`] returns as `None`.

use crate::answer::{Created, Flag};
use crate::attach::{Attach, Finding, Rule};
use crate::client::{Client, NOTIFICATION_ADDS, Request};
use crate::error::Error;
use crate::php;
use crate::portal::Portal;

mod build;
mod list;
mod model;
mod read;

pub use build::{
    Delete, DeleteTagged, List, Personal, Read, ReadAll, ReadList, Respond, Schema, Search, System,
    Typed,
};
pub use list::{GetNotifications, GetSchema, MAX_PAGE, SearchNotifications};
pub use model::{Notification, NotificationPage, SchemaEvent, SchemaModule, SearchPage};
use read::DeleteTarget;
pub use read::{DeleteByTag, MarkAllRead, MarkRead, MarkReadList, Reply};

/// The warning ([`Rule::WebhookTag`]) for a notification with `TAG` or `SUB_TAG` sent
/// through a webhook portal, which drops both (the notification is still created); `None`
/// for an OAuth portal, another method, or no (or an empty) tag. The finding names `TAG`
/// when both are given.
///
/// ```
/// use bitrix24::notify::{Personal, webhook_tag_finding};
/// use bitrix24::{HttpPolicy, Portal};
///
/// let request = Personal::new(10, "Nightly build").tag("nightly").to_request()?;
/// let webhook = Portal::parse("https://b24.example.com/rest/1/SECRET/", None, HttpPolicy::default())?;
/// let finding = webhook_tag_finding(&request, &webhook).expect("the portal drops the tag");
/// assert_eq!(finding.rule.id(), "notify.tag.webhook");
/// let app = Portal::parse("b24.example.com", Some("TOKEN"), HttpPolicy::default())?;
/// assert!(webhook_tag_finding(&request, &app).is_none());
/// # Ok::<(), bitrix24::Error>(())
/// ```
pub fn webhook_tag_finding(request: &Request, portal: &Portal) -> Option<Finding> {
    if portal.is_oauth() {
        return None;
    }
    let method = request.method().trim().to_ascii_lowercase();
    if !NOTIFICATION_ADDS.contains(&method.as_str()) {
        return None;
    }
    // The portal upper-cases parameter names and, like `empty()`, skips an empty tag.
    let field = ["TAG", "SUB_TAG"]
        .into_iter()
        .find(|key| php::upper_get(request.params(), key).is_some_and(php::truthy))?;
    Some(Finding::ignored(
        field,
        Rule::WebhookTag,
        "is dropped on webhook calls (the portal applies tags only for OAuth applications), so this notification replaces no earlier one and deleting by tag will not find it; use an OAuth application, or leave the tag out",
    ))
}

/// Entry point for `im.notify.*`, from [`Client::notify`].
#[derive(Debug, Clone, Copy)]
pub struct NotifyHandler<'c> {
    client: &'c Client,
}

/// Who a notification appears to come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationKind {
    /// From the webhook's or token's user (`im.notify.personal.add`).
    Personal,
    /// From the system, no author (`im.notify.system.add`).
    System,
}

impl NotificationKind {
    /// The REST method that creates this kind.
    pub fn method(self) -> &'static str {
        match self {
            NotificationKind::Personal => "im.notify.personal.add",
            NotificationKind::System => "im.notify.system.add",
        }
    }

    /// The `TYPE` value `im.notify` takes for this kind.
    pub fn type_param(self) -> &'static str {
        match self {
            NotificationKind::Personal => "USER",
            NotificationKind::System => "SYSTEM",
        }
    }
}

impl<'c> NotifyHandler<'c> {
    pub(crate) fn new(client: &'c Client) -> Self {
        NotifyHandler { client }
    }

    /// A notification from the calling user to `user_id` (`im.notify.personal.add`).
    ///
    /// ```no_run
    /// # async fn run(client: bitrix24::Client) -> Result<(), bitrix24::Error> {
    /// use bitrix24::{Attach, Block};
    /// let id = client
    ///     .notify()
    ///     .personal(10, "Backup finished")
    ///     .attach(Attach::new([Block::file("report.pdf", "https://example.com/report.pdf")]))
    ///     .send()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn personal(&self, user_id: u64, message: impl Into<String>) -> AddNotification<'c> {
        AddNotification::new(
            self.client,
            NotificationKind::Personal,
            user_id,
            message.into(),
        )
    }

    /// A system notification to `user_id` (`im.notify.system.add`).
    ///
    /// ```no_run
    /// # async fn run(client: bitrix24::Client) -> Result<(), bitrix24::Error> {
    /// let id = client.notify().system(10, "Disk almost full").tag("disk").send().await?;
    /// # Ok(()) }
    /// ```
    pub fn system(&self, user_id: u64, message: impl Into<String>) -> AddNotification<'c> {
        AddNotification::new(
            self.client,
            NotificationKind::System,
            user_id,
            message.into(),
        )
    }

    /// Deletes one notification by id (`im.notify.delete`).
    ///
    /// ```no_run
    /// # async fn run(client: bitrix24::Client) -> Result<(), bitrix24::Error> {
    /// let deleted = client.notify().delete(7450).send().await?;
    /// # Ok(()) }
    /// ```
    pub fn delete(&self, id: u64) -> DeleteNotification<'c> {
        DeleteNotification {
            client: self.client,
            id,
        }
    }

    /// A notification through the generic `im.notify`, its kind given as `TYPE`.
    /// Equivalent to [`personal`](Self::personal) or [`system`](Self::system).
    pub fn with_type(
        &self,
        kind: NotificationKind,
        user_id: u64,
        message: impl Into<String>,
    ) -> AddNotification<'c> {
        let mut add = AddNotification::new(self.client, kind, user_id, message.into());
        add.generic = true;
        add
    }

    /// Deletes every notification with this tag, for all users (`im.notify.delete` with `TAG`).
    ///
    /// ```no_run
    /// # async fn run(client: bitrix24::Client) -> Result<(), bitrix24::Error> {
    /// client.notify().delete_by_tag("disk-alert").send().await?;
    /// # Ok(()) }
    /// ```
    pub fn delete_by_tag(&self, tag: impl Into<String>) -> DeleteByTag<'c> {
        DeleteByTag {
            client: self.client,
            target: DeleteTarget::Tag(tag.into()),
            client_id: None,
        }
    }

    /// Deletes every notification with this sub-tag (`im.notify.delete` with `SUB_TAG`).
    pub fn delete_by_sub_tag(&self, sub_tag: impl Into<String>) -> DeleteByTag<'c> {
        DeleteByTag {
            client: self.client,
            target: DeleteTarget::SubTag(sub_tag.into()),
            client_id: None,
        }
    }

    /// Marks a notification, and every newer one, as read (`im.notify.read`).
    ///
    /// ```no_run
    /// # async fn run(client: bitrix24::Client) -> Result<(), bitrix24::Error> {
    /// client.notify().read(7450).only_current().send().await?;
    /// # Ok(()) }
    /// ```
    pub fn read(&self, id: u64) -> MarkRead<'c> {
        MarkRead {
            client: self.client,
            id,
            unread: false,
            only_current: false,
        }
    }

    /// Marks the listed notifications as read (`im.notify.read.list`).
    pub fn read_list(&self, ids: impl IntoIterator<Item = u64>) -> MarkReadList<'c> {
        MarkReadList {
            client: self.client,
            ids: ids.into_iter().collect(),
            unread: false,
        }
    }

    /// Marks all of the caller's notifications as read (`im.notify.read.all`).
    pub fn read_all(&self) -> MarkAllRead<'c> {
        MarkAllRead {
            client: self.client,
        }
    }

    /// Presses a button of a confirmation notification (`im.notify.confirm`).
    ///
    /// ```no_run
    /// # async fn run(client: bitrix24::Client) -> Result<(), bitrix24::Error> {
    /// let messages = client.notify().confirm(7450, "Y").send().await?;
    /// # Ok(()) }
    /// ```
    pub fn confirm(&self, id: u64, value: impl Into<String>) -> Reply<'c> {
        let request = Respond::confirm(id, value).into_request();
        Reply {
            client: self.client,
            request,
        }
    }

    /// Answers a notification with text (`im.notify.answer`).
    pub fn answer(&self, id: u64, text: impl Into<String>) -> Reply<'c> {
        let request = Respond::answer(id, text).into_request();
        Reply {
            client: self.client,
            request,
        }
    }

    /// Lists the caller's notifications (`im.notify.get`), one page or all of them.
    ///
    /// ```no_run
    /// # async fn run(client: bitrix24::Client) -> Result<(), bitrix24::Error> {
    /// let page = client.notify().get().limit(20).send().await?;
    /// println!("{} unread", page.total_unread_count.unwrap_or(0));
    /// # Ok(()) }
    /// ```
    pub fn get(&self) -> GetNotifications<'c> {
        GetNotifications {
            client: self.client,
            limit: MAX_PAGE,
            after: None,
            convert_text: false,
        }
    }

    /// Searches the caller's notifications by text (`im.notify.history.search`).
    pub fn search(&self, text: impl Into<String>) -> SearchNotifications<'c> {
        SearchNotifications {
            client: self.client,
            text: text.into(),
            limit: MAX_PAGE,
            after_id: None,
        }
    }

    /// The notification types by module (`im.notify.schema.get`).
    pub fn schema(&self) -> GetSchema<'c> {
        GetSchema {
            client: self.client,
        }
    }
}

/// Builder for `im.notify.personal.add` and `im.notify.system.add`.
#[derive(Debug, Clone)]
#[must_use = "a notification is sent only by .send()"]
pub struct AddNotification<'c> {
    client: &'c Client,
    kind: NotificationKind,
    user_id: u64,
    message: String,
    message_out: Option<String>,
    tag: Option<String>,
    sub_tag: Option<String>,
    client_id: Option<String>,
    attach: Option<Attach>,
    /// Sent through `im.notify` with `TYPE` rather than the kind's own method.
    generic: bool,
}

impl<'c> AddNotification<'c> {
    fn new(client: &'c Client, kind: NotificationKind, user_id: u64, message: String) -> Self {
        AddNotification {
            client,
            kind,
            user_id,
            message,
            message_out: None,
            tag: None,
            sub_tag: None,
            client_id: None,
            attach: None,
            generic: false,
        }
    }

    /// Text for email and other external channels (`MESSAGE_OUT`).
    pub fn message_out(mut self, text: impl Into<String>) -> Self {
        self.message_out = Some(text.into());
        self
    }

    /// Uniqueness tag (`TAG`): a newer notification with the same tag replaces the older one
    /// for the same recipient.
    ///
    /// **Webhooks:** the portal applies TAG only for OAuth callers and silently drops it for a
    /// webhook (the notification is still created, untagged). The docs suggest also passing
    /// [`client_id`](Self::client_id); that is unverified, as the known server source ignores
    /// it here.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tag = Some(tag.into());
        self
    }

    /// Secondary tag (`SUB_TAG`), for deleting groups of notifications. Like
    /// [`tag`](Self::tag), applied only for OAuth callers; dropped for webhooks.
    pub fn sub_tag(mut self, sub_tag: impl Into<String>) -> Self {
        self.sub_tag = Some(sub_tag.into());
        self
    }

    /// `CLIENT_ID`, which the docs say webhook callers should pass together with TAG and
    /// SUB_TAG. Unverified: the server source we know ignores it when adding (it uses the
    /// calling OAuth app's id), so over a webhook the tag may still be dropped.
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    /// Attachment blocks. Checked against the portal's rules when the request is built.
    pub fn attach(mut self, attach: Attach) -> Self {
        self.attach = Some(attach);
        self
    }

    /// The request this builder sends. Empty optional values are left out, as OPI does.
    pub fn to_request(&self) -> Result<Request, Error> {
        // Any attach finding refuses the call here (strict mode); the client-free builders
        // ([`Personal`]…) let warnings through.
        build::legacy_request(
            self.kind,
            self.generic,
            self.user_id,
            &self.message,
            [&self.message_out, &self.tag, &self.sub_tag, &self.client_id],
            &self.attach,
        )
    }

    /// Sends the notification. Returns its id, or `None` when the portal did not create it
    /// because the recipient does not exist or is inactive.
    pub async fn send(self) -> Result<Option<u64>, Error> {
        let request = self.to_request()?;
        Ok(self.client.send::<Created>(&request).await?.result.0)
    }
}

/// Builder for `im.notify.delete` by id.
#[derive(Debug, Clone)]
#[must_use = "nothing is deleted until .send()"]
pub struct DeleteNotification<'c> {
    client: &'c Client,
    id: u64,
}

impl DeleteNotification<'_> {
    /// The request this builder sends.
    pub fn to_request(&self) -> Result<Request, Error> {
        Delete::new(self.id).to_request()
    }

    /// Deletes the notification. `false` means the portal did not delete it: it does not exist
    /// or is not in the caller's own notifications.
    pub async fn send(self) -> Result<bool, Error> {
        let request = self.to_request()?;
        Ok(self.client.send::<Flag>(&request).await?.result.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attach::{Report, Severity};
    use crate::portal::HttpPolicy;

    fn webhook() -> Portal {
        Portal::parse(
            "https://b24.example.com/rest/1/SECRET/",
            None,
            HttpPolicy::default(),
        )
        .unwrap()
    }

    #[test]
    fn a_tag_over_a_webhook_is_a_warning_naming_the_field() {
        let tagged = Personal::new(10, "hi").tag("nightly").sub_tag("ci");
        let f = webhook_tag_finding(&tagged.to_request().unwrap(), &webhook()).unwrap();
        assert_eq!(
            (f.field.as_str(), f.rule.id(), f.severity),
            ("TAG", "notify.tag.webhook", Severity::Warning)
        );
        assert_eq!(f.effect(), "ignores the field");
        assert!(
            f.line().starts_with("TAG: is dropped on webhook calls"),
            "{}",
            f.line()
        );
        assert!(!f.line().contains("SECRET"));

        let sub = System::new(10, "hi").sub_tag("ci").to_request().unwrap();
        let f = webhook_tag_finding(&sub, &webhook()).unwrap();
        assert_eq!(f.field, "SUB_TAG");

        // The portal upper-cases parameter names; `im.notify` adds too.
        let raw = Request::new(" IM.NOTIFY ")
            .param("TYPE", "SYSTEM")
            .param("tag", "x");
        assert!(webhook_tag_finding(&raw, &webhook()).is_some());

        // Strict mode refuses it, with the one wording.
        let report = Report::from_findings(webhook_tag_finding(&raw, &webhook()));
        assert!(report.clone().into_result(false).is_ok());
        let e = report.into_result(true).unwrap_err().to_string();
        assert!(e.contains("tag") && e.contains("OAuth application"), "{e}");
    }

    #[test]
    fn no_warning_without_a_tag_for_apps_or_other_methods() {
        let oauth = Portal::parse("b24.example.com", Some("TOKEN"), HttpPolicy::default()).unwrap();
        let tagged = Personal::new(10, "hi").tag("nightly").to_request().unwrap();
        assert!(webhook_tag_finding(&tagged, &oauth).is_none());

        let plain = Personal::new(10, "hi").to_request().unwrap();
        assert!(webhook_tag_finding(&plain, &webhook()).is_none());
        // An empty tag is no tag (`empty()`); neither is a later empty spelling's value.
        let empty = Request::new("im.notify.personal.add")
            .param("USER_ID", "10")
            .param("TAG", "x")
            .param("Tag", "");
        assert!(webhook_tag_finding(&empty, &webhook()).is_none());
        // Deleting by tag over a webhook works with CLIENT_ID: not this rule.
        let delete = DeleteTagged::tag("nightly")
            .client_id("app")
            .to_request()
            .unwrap();
        assert!(webhook_tag_finding(&delete, &webhook()).is_none());
    }
}
