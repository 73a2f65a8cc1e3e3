//! Stage three: one module per command family. Each takes its parsed flags and the global
//! settings, resolves the rest, talks to the portal through the library, and returns what
//! happened; none prints a result or an error or picks an exit code (the app does).

pub mod bulk;
pub mod call;
pub mod notify;
pub mod opi;
pub mod render;
pub mod sandbox;
#[cfg(feature = "serve")]
pub mod serve;
