//! A typed async client for the Bitrix24 REST API, built for notifications.
//!
//! Start with [`Client::builder`], given either an inbound webhook URL
//! (`https://portal.bitrix24.com/rest/1/SECRET/`) or a portal domain plus an OAuth access
//! token. Typed calls hang off handlers ([`Client::notify`]); anything else goes through
//! [`Client::call`]. Several calls go in one request with [`Client::batch`], and many
//! notifications at the portal's rate with [`Client::bulk`]. An OAuth application that should refresh its own tokens uses
//! [`ClientBuilder::oauth`] with an [`OAuthConfig`]. Every failure is one [`Error`], and no error, log line or `Debug` output
//! ever shows a webhook secret or token.
//!
//! ```no_run
//! # async fn run() -> Result<(), bitrix24::Error> {
//! use bitrix24::{Attach, Block, Client};
//!
//! let client = Client::builder("portal.bitrix24.com").token("ACCESS_TOKEN").build()?;
//! let id = client
//!     .notify()
//!     .personal(10, "Nightly build is green")
//!     .tag("nightly")
//!     .attach(Attach::new([Block::image("chart", "https://example.com/chart.png")]))
//!     .send()
//!     .await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod answer;
pub mod attach;
pub mod batch;
pub mod bulk;
pub mod client;
pub mod error;
// `Pacer`'s variant fields (limits.rs) are not documented yet.
#[allow(missing_docs)]
pub mod limits;
pub mod notify;
pub mod oauth;
pub mod portal;
pub mod retry;

pub use answer::{Answer, Created, Flag, Time};
pub use attach::{
    Attach, AvatarType, Block, Check, ColorToken, Delimiter, Display, File, Finding, GridItem,
    Image, Issue, IssueKind, Link, MAX_ATTACH_CHARS, Report, Rule, Severity, User, Verdict,
};
pub use batch::{Batch, BatchAnswer, CommandResult, MAX_BATCH, result_ref};
pub use bulk::{Bulk, BulkItem, ItemOutcome};
pub use client::{
    Client, ClientBuilder, DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT, Preview, Request, safety_of,
};
pub use error::{ApiError, Error, ErrorCode};
pub use limits::{Gcra, OperatingBudget, OperatingPause, Pacer, RateLimit};
pub use notify::{
    AddNotification, DeleteByTag, DeleteNotification, GetNotifications, GetSchema, MAX_PAGE,
    MarkAllRead, MarkRead, MarkReadList, Notification, NotificationKind, NotificationPage,
    NotifyHandler, Reply, SchemaEvent, SchemaModule, SearchNotifications, SearchPage,
};
pub use oauth::{
    DEFAULT_REFRESH_MARGIN, DEFAULT_TOKEN_URL, FileTokenStore, OAuthConfig, RenewedHook, StoreLock,
    TokenStore, Tokens,
};
pub use portal::{HttpPolicy, MASK, Portal};
pub use retry::{Decision, Outcome, RetryPolicy, Safety, decide};
