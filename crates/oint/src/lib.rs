//! The `oint` command line as a library target.
//!
//! The binary in `main.rs` only calls [`app::main`]. The modules are reachable from here so
//! that fuzz targets and tests can drive the parsers (config files, bulk input, the journal,
//! `--blocks`) without spawning a process. This is not a stable API: the stable one is the
//! `bitrix24` crate.

pub mod app;
pub mod blocks;
pub mod bulk;
pub mod cli;
pub mod config;
pub mod modern;
pub mod oauth;
pub mod output;
pub mod resolve;
pub mod run;
pub mod sandbox;
pub mod severity;
pub mod transport;
