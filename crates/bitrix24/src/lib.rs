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
//! Requests can also be built and checked without a client, then sent with one: the builders
//! of [`notify`] ([`notify::Personal`], [`notify::System`], [`notify::List`]…) each have
//! `to_request()` and `send(&client)`. Their checks sort every finding into an error (the
//! portal would refuse the call: nothing is sent) or a warning (the portal accepts it but drops
//! or changes part of it, say an invalid link or an unknown key: the notification is sent).
//! Read both with `check()` ([`Report`]); `.strict(true)` refuses warnings too. Each finding
//! names its [`Rule`] by a stable id such as `attach.link.invalid`. The client-bound
//! builders ([`Client::notify`]) and [`Attach::from_json`] are strict.
//!
//! ```
//! use bitrix24::notify::Personal;
//! use bitrix24::{Attach, Block};
//!
//! let mut attach = Attach::new([Block::message("Build 42 is green")]);
//! attach.push(Block::image("chart", "ftp://ci.example.com/chart.png"));
//! let notification = Personal::new(10, "Nightly build").tag("nightly").attach(attach);
//! let report = notification.check();
//! assert!(report.errors.is_empty());
//! assert_eq!(report.warnings[0].rule.id(), "attach.link.invalid"); // the image is dropped
//! let request = notification.to_request()?; // sent without the image
//! assert!(notification.clone().strict(true).to_request().is_err());
//! # Ok::<(), bitrix24::Error>(())
//! ```
//!
//! Runnable programs are in `examples/` (`webhook_attach`, `oauth_token_store`,
//! `bulk_stream`); each says how to run it against `cargo run -p bitrix24-emulator`.
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
mod file;
pub mod limits;
pub mod notify;
pub mod oauth;
mod php;
// Public once its module docs stop linking the private `Portal::endpoint` (rustdoc -D warnings).
mod portal;
#[cfg(feature = "redis")]
pub mod redis_store;
#[cfg(feature = "redis")]
pub mod redis_tokens;
pub mod retry;

pub use answer::{Answer, Created, Flag, Time};
pub use attach::{
    Attach, AvatarType, Block, Check, ColorToken, Delimiter, Display, File, Finding, GridItem,
    Image, Issue, IssueKind, Link, MAX_ATTACH_CHARS, Report, Rule, Severity, User, Verdict,
};
pub use batch::{Batch, BatchAnswer, CommandResult, MAX_BATCH, result_ref};
pub use bulk::{Bulk, BulkItem, ItemOutcome};
pub use client::{
    Client, ClientBuilder, DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT, MAX_ANSWER_BYTES, Preview,
    Request, check_method, safety_of,
};
pub use error::{ApiError, Error, ErrorCode};
pub use limits::{
    Gcra, NOTICE_THRESHOLD, Notice, OperatingBudget, OperatingPause, Pacer, RateLimit, Reservation,
    STATE_LOCK_TIMEOUT, StateReset, StoreNotice, WaitNotice, WaitReason,
};
pub use notify::{
    AddNotification, DeleteByTag, DeleteNotification, GetNotifications, GetSchema, MAX_PAGE,
    MarkAllRead, MarkRead, MarkReadList, Notification, NotificationKind, NotificationPage,
    NotifyHandler, Reply, SchemaEvent, SchemaModule, SearchNotifications, SearchPage,
};
pub use oauth::{
    DEFAULT_REFRESH_MARGIN, DEFAULT_TOKEN_URL, FileTokenStore, MAX_TOKEN_LIFETIME, OAuthConfig,
    RenewedHook, StoreLock, TokenStore, Tokens,
};
pub use portal::{HttpPolicy, MASK, Portal};
#[cfg(feature = "redis")]
pub use redis_store::{RedisBucket, RedisTarget};
#[cfg(feature = "redis")]
pub use redis_tokens::RedisTokenStore;
pub use retry::{Decision, MAX_WAIT, Outcome, RetryPolicy, Safety, decide};
