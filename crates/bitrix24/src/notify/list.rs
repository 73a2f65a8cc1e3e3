//! Reading notifications back: `im.notify.get` (paged), `im.notify.history.search` and
//! `im.notify.schema.get`.
//!
//! `im.notify.get` pages with a cursor of two values, `LAST_ID` and `LAST_TYPE`: confirmations
//! come first (type 1), then the rest (type 3). [`GetNotifications::stream`] follows that
//! cursor so callers see every notification once.

use std::collections::BTreeMap;

use futures_util::Stream;
use futures_util::stream::{self, StreamExt};

use super::model::{NotificationPage, SchemaModule, SearchPage};
use crate::client::{Client, Request};
use crate::error::Error;
use crate::notify::Notification;

/// The portal's page size limit for `im.notify.get` and `im.notify.history.search`.
pub const MAX_PAGE: u32 = 50;

/// `LAST_TYPE` values of the `im.notify.get` cursor.
const STAGE_CONFIRM: u64 = 1;
const STAGE_REGULAR: u64 = 3;

/// `im.notify.get`: the caller's notifications, newest first, a page at a time.
#[derive(Debug, Clone)]
#[must_use = "nothing is fetched until .send() or .stream()"]
pub struct GetNotifications<'c> {
    pub(super) client: &'c Client,
    pub(super) limit: u32,
    pub(super) after: Option<(u64, u64)>,
    pub(super) convert_text: bool,
}

impl<'c> GetNotifications<'c> {
    /// Page size, 1 to 50 (the portal caps it at 50).
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = limit;
        self
    }

    /// Continue after this notification (its id and whether it was a confirmation).
    pub fn after(mut self, last: &Notification) -> Self {
        self.after = Some((
            last.id,
            if last.is_confirm() {
                STAGE_CONFIRM
            } else {
                STAGE_REGULAR
            },
        ));
        self
    }

    /// Ask the portal to turn BB-codes into HTML (`CONVERT_TEXT=Y`).
    pub fn convert_text(mut self) -> Self {
        self.convert_text = true;
        self
    }

    /// The request this builder sends.
    pub fn to_request(&self) -> Result<Request, Error> {
        let list = super::List::new().limit(self.limit).cursor(self.after);
        if self.convert_text {
            list.convert_text()
        } else {
            list
        }
        .to_request()
    }

    /// Fetches one page.
    pub async fn send(&self) -> Result<NotificationPage, Error> {
        Ok(self
            .client
            .send::<NotificationPage>(&self.to_request()?)
            .await?
            .result)
    }

    /// Every notification, page after page, until the portal has no more.
    ///
    /// ```no_run
    /// # async fn run(client: bitrix24::Client) -> Result<(), bitrix24::Error> {
    /// use futures_util::TryStreamExt;
    /// let all: Vec<_> = client.notify().get().stream().try_collect().await?;
    /// # Ok(()) }
    /// ```
    pub fn stream(self) -> impl Stream<Item = Result<Notification, Error>> + 'c {
        // Stop on an empty page, or if the cursor stops moving (a portal ignoring LAST_ID
        // must not make this loop forever).
        let pages = stream::unfold(Some(self), |state| async move {
            let request = state?;
            match request.send().await {
                Err(e) => Some((Err(e), None)),
                Ok(page) => {
                    let next = page
                        .notifications
                        .last()
                        .map(|last| request.clone().after(last))
                        .filter(|next| next.after != request.after);
                    Some((Ok(page.notifications), next))
                }
            }
        });
        pages.flat_map(|page| match page {
            Ok(items) => stream::iter(items.into_iter().map(Ok).collect::<Vec<_>>()),
            Err(e) => stream::iter(vec![Err(e)]),
        })
    }
}

/// `im.notify.history.search`: the caller's notifications whose text matches.
#[derive(Debug, Clone)]
#[must_use = "nothing is fetched until .send()"]
pub struct SearchNotifications<'c> {
    pub(super) client: &'c Client,
    pub(super) text: String,
    pub(super) limit: u32,
    pub(super) after_id: Option<u64>,
}

impl SearchNotifications<'_> {
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

    /// The request this builder sends.
    pub fn to_request(&self) -> Result<Request, Error> {
        let search = super::Search::new(self.text.clone()).limit(self.limit);
        match self.after_id {
            Some(id) => search.after_id(id),
            None => search,
        }
        .to_request()
    }

    /// Fetches one page.
    pub async fn send(&self) -> Result<SearchPage, Error> {
        Ok(self
            .client
            .send::<SearchPage>(&self.to_request()?)
            .await?
            .result)
    }
}

/// `im.notify.schema.get`: notification types by module.
#[derive(Debug, Clone)]
#[must_use = "nothing is fetched until .send()"]
pub struct GetSchema<'c> {
    pub(super) client: &'c Client,
}

impl GetSchema<'_> {
    /// The request this builder sends.
    pub fn to_request(&self) -> Request {
        Request::new("im.notify.schema.get")
    }

    /// Fetches the schema, keyed by module id.
    pub async fn send(self) -> Result<BTreeMap<String, SchemaModule>, Error> {
        let answer = self
            .client
            .send::<serde_json::Value>(&self.to_request())
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
