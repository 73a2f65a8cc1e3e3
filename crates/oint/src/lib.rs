//! The `oint` command line as a library target.
//!
//! The binary in `main.rs` only calls [`app::main`]. Modules depend on each other in one
//! direction, from the leaves up (ARCHITECTURE.md draws it):
//!
//! - leaves: [`flags`] (raw clap flags), [`ranges`], [`secrets`], [`files`], [`download`],
//!   [`markdown`];
//! - [`output`] (exit codes, results, the printer), [`portal_errors`], [`severity`],
//!   [`blocks`], [`alerts`] (alert webhooks to notification texts, for `serve`);
//! - [`settings`] (flags + environment + config file + OAuth → target and transport);
//! - [`sandbox`] (the embedded portal) and [`connect`] (a client for a target);
//! - [`commands`]: one module per command family (OPI, notify, call, bulk, sandbox);
//! - [`app`]: one runtime, one place that prints results and errors and picks the exit code.
//!
//! The modules are public so that fuzz targets and tests can drive the parsers (config
//! files, bulk input, the journal, `--blocks`) without spawning a process. This is not a
//! stable API: the stable one is the `bitrix24` crate.

pub mod alerts;
pub mod app;
pub mod blocks;
pub mod commands;
pub mod connect;
pub mod download;
pub mod files;
pub mod flags;
pub mod markdown;
pub mod output;
pub mod portal_errors;
pub mod ranges;
// Without the feature, a stand-in with the same functions refuses every sandbox command.
#[cfg_attr(not(feature = "sandbox"), path = "sandbox_absent.rs")]
pub mod sandbox;
pub mod secrets;
pub mod settings;
pub mod severity;
