//! Marking, answering and deleting notifications: `im.notify.read*`, `confirm`, `answer`,
//! and `delete` by tag.
//!
//! All of these act on the caller's own notifications: a webhook's user, or the user the
//! OAuth token belongs to.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::answer::Flag;
use crate::client::{Client, Request};
use crate::error::Error;

/// `im.notify.read`: marks one notification, or it and every newer one, as read or unread.
#[derive(Debug, Clone)]
#[must_use = "nothing is marked until .send()"]
pub struct MarkRead<'c> {
    pub(super) client: &'c Client,
    pub(super) id: u64,
    pub(super) unread: bool,
    pub(super) only_current: bool,
}

impl MarkRead<'_> {
    /// Marks as unread instead (`ACTION=N`).
    pub fn unread(mut self) -> Self {
        self.unread = true;
        self
    }

    /// Only this notification, not every newer one too (`ONLY_CURRENT=Y`).
    pub fn only_current(mut self) -> Self {
        self.only_current = true;
        self
    }

    /// The request this builder sends.
    pub fn to_request(&self) -> Request {
        let mut read = super::Read::new(self.id);
        if self.unread {
            read = read.unread();
        }
        if self.only_current {
            read = read.only_current();
        }
        read.request()
    }

    /// Sends it. The portal answers `true` whatever the id.
    pub async fn send(self) -> Result<bool, Error> {
        Ok(self.client.send::<Flag>(&self.to_request()).await?.result.0)
    }
}

/// `im.notify.read.list`: marks the listed notifications as read or unread.
#[derive(Debug, Clone)]
#[must_use = "nothing is marked until .send()"]
pub struct MarkReadList<'c> {
    pub(super) client: &'c Client,
    pub(super) ids: Vec<u64>,
    pub(super) unread: bool,
}

impl MarkReadList<'_> {
    /// Marks as unread instead (`ACTION=N`).
    pub fn unread(mut self) -> Self {
        self.unread = true;
        self
    }

    /// The request this builder sends. The portal stops at the first id below 1, so such ids
    /// are refused here.
    pub fn to_request(&self) -> Result<Request, Error> {
        let list = super::ReadList::new(self.ids.iter().copied());
        if self.unread { list.unread() } else { list }.to_request()
    }

    /// Sends it.
    pub async fn send(self) -> Result<bool, Error> {
        Ok(self
            .client
            .send::<Flag>(&self.to_request()?)
            .await?
            .result
            .0)
    }
}

/// `im.notify.read.all`: marks every notification of the caller as read.
#[derive(Debug, Clone)]
#[must_use = "nothing is marked until .send()"]
pub struct MarkAllRead<'c> {
    pub(super) client: &'c Client,
}

impl MarkAllRead<'_> {
    /// The request this builder sends.
    pub fn to_request(&self) -> Request {
        Request::new("im.notify.read.all")
    }

    /// Sends it. Accepts both the documented `{"result": true, "newCounter": 0}` and a bare `true`.
    pub async fn send(self) -> Result<bool, Error> {
        Ok(self
            .client
            .send::<ReadAll>(&self.to_request())
            .await?
            .result
            .0)
    }
}

pub(super) struct ReadAll(pub(super) bool);

impl<'de> Deserialize<'de> for ReadAll {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let flag = match &v {
            Value::Object(map) => map.get("result").cloned().unwrap_or(Value::Bool(true)),
            other => other.clone(),
        };
        Ok(ReadAll(
            serde_json::from_value::<Flag>(flag)
                .map_err(serde::de::Error::custom)?
                .0,
        ))
    }
}

/// `im.notify.confirm` and `im.notify.answer`: replying to a notification.
#[derive(Debug, Clone)]
#[must_use = "nothing is sent until .send()"]
pub struct Reply<'c> {
    pub(super) client: &'c Client,
    pub(super) request: Request,
}

impl Reply<'_> {
    /// The request this builder sends.
    pub fn to_request(&self) -> Request {
        self.request.clone()
    }

    /// Sends it. Returns the portal's messages about the reply, or `None` when it answered
    /// `false` (no such notification, or nothing to reply to).
    pub async fn send(self) -> Result<Option<Vec<String>>, Error> {
        Ok(self
            .client
            .send::<ReplyResult>(&self.request)
            .await?
            .result
            .result_message)
    }
}

/// `{"result_message": [strings] | false}`.
#[derive(Debug, Deserialize)]
pub(super) struct ReplyResult {
    #[serde(default, deserialize_with = "de_messages")]
    pub(super) result_message: Option<Vec<String>>,
}

fn de_messages<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Array(items) => Some(
            items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                })
                .collect(),
        ),
        Value::String(s) => Some(vec![s]),
        _ => None,
    })
}

/// What `im.notify.delete` deletes besides a single id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum DeleteTarget {
    Tag(String),
    SubTag(String),
}

/// `im.notify.delete` by `TAG` or `SUB_TAG`.
///
/// Tags belong to the OAuth application that set them. Over a webhook, give the application's
/// [`client_id`](DeleteByTag::client_id): the portal then deletes tags of `custom<CLIENT_ID>`.
/// Unlike deletion by id, this deletes matching notifications of every user.
#[derive(Debug, Clone)]
#[must_use = "nothing is deleted until .send()"]
pub struct DeleteByTag<'c> {
    pub(super) client: &'c Client,
    pub(super) target: DeleteTarget,
    pub(super) client_id: Option<String>,
}

impl DeleteByTag<'_> {
    /// The application whose tags to delete (`CLIENT_ID`), required over a webhook.
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    /// The request this builder sends.
    pub fn to_request(&self) -> Result<Request, Error> {
        let mut delete = match &self.target {
            DeleteTarget::Tag(tag) => super::DeleteTagged::tag(tag.clone()),
            DeleteTarget::SubTag(tag) => super::DeleteTagged::sub_tag(tag.clone()),
        };
        if let Some(id) = &self.client_id {
            delete = delete.client_id(id.clone());
        }
        let request = delete.to_request()?;
        if !self.client.portal().is_oauth() && !request.params().contains_key("CLIENT_ID") {
            return Err(super::build::client_id_required());
        }
        Ok(request)
    }

    /// Sends it. The portal answers `true` even when nothing matched.
    pub async fn send(self) -> Result<bool, Error> {
        Ok(self
            .client
            .send::<Flag>(&self.to_request()?)
            .await?
            .result
            .0)
    }
}
