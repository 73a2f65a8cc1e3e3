//! The fuzz targets' bodies, one module per target. Each `run` panics when a property fails.
//!
//! The crates' `tests/fuzz_regressions.rs` include these same files (`#[path]`) and replay the
//! kept crash inputs under `fuzz/regressions/TARGET/` through them with a plain `cargo test`,
//! so a fixed bug stays fixed without a fuzzer. Modules that only need `bitrix24` (`attach`,
//! `portal`) are kept apart so that crate's tests can use them.

pub mod alerts;
pub mod attach;
pub mod blocks;
pub mod bulk;
pub mod config;
pub mod emu;
pub mod journal;
pub mod portal;
pub mod url;
