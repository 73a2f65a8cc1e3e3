//! Stage two of the pipeline: raw flags, the environment, the config file and OAuth
//! credentials become *where to send* (a [`Target`]) and *how hard to drive the portal*
//! (a [`Transport`]).
//!
//! Settings are taken in this order, first found wins: command-line flags, then the
//! environment (`BITRIX24_URL`, `BITRIX24_TOKEN`), then a named portal in the config file
//! (`$OINT_CONFIG`, else `~/.config/oint/config.toml`), chosen with `--portal NAME`,
//! `OINT_PORTAL` or the file's `default_portal`. An explicit `--portal` is a flag, so its
//! settings win over the environment.
//!
//! Secrets need never be typed on the command line: a token can come from the environment,
//! from a file (`--token-file`, `token_file`), or from standard input (`--token-stdin`).
//! Files holding secrets, the config file included when it holds one, must not be readable by
//! group or others; a file that is gets refused with the `chmod` that fixes it.
//!
//! Nothing here talks to a portal; every mistake is one line naming the flag, variable or
//! file at fault, before anything is sent.

pub mod config_file;
pub mod connection;
pub mod oauth;
pub mod target;
pub mod transport;
pub mod world;

pub use config_file::read_secret_file;
pub use config_file::{ConfigFile, PortalEntry};
pub use connection::{
    entry_limits, serve_section, store_password, strict, target, top_level_strict,
};
pub use oauth::OAuthCreds;
pub use target::Target;
pub use transport::{EntryLimits, NoticeSink, Transport};
pub use world::{World, real_world};

use crate::flags::{CheckFlags, LimitFlags};

/// What every command takes from the global flags and the environment.
pub struct Global {
    /// `--plan`, `--rate`, … (a config portal's settings are laid under them later).
    pub transport: Transport,
    /// `--strict` or `OINT_STRICT`.
    pub strict: bool,
}

/// The global flags with `OINT_STRICT` (`env_strict`, its value if set).
pub fn global(
    limits: &LimitFlags,
    checks: &CheckFlags,
    env_strict: Option<String>,
) -> Result<Global, String> {
    Ok(Global {
        transport: Transport::from_flags(limits)?,
        strict: flag_or_env(checks.strict, env_strict)?,
    })
}

/// A modern command's connection, resolved: where to send, at what pace, how strictly.
pub struct Resolved {
    pub target: Target,
    pub transport: Transport,
    /// The config file's `strict` (top level or the portal's).
    pub strict: bool,
}

/// Resolves `--portal`/`--url`/`--token`… with the environment and the config file, and lays
/// the config portal's limits under the global flags of `transport`.
pub fn resolve_connection(
    conn: &crate::flags::Connection,
    transport: &Transport,
    world: &World<'_>,
) -> Result<Resolved, String> {
    Ok(Resolved {
        target: target(conn, world)?,
        transport: transport.with_entry(&entry_limits(conn, world)?)?,
        strict: strict(conn, world)?,
    })
}

/// `--strict`, or `OINT_STRICT` (1/0, true/false, yes/no, on/off; empty is off).
pub fn flag_or_env(flag: bool, env: Option<String>) -> Result<bool, String> {
    if flag {
        return Ok(true);
    }
    match env
        .as_deref()
        .map(|v| v.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("" | "0" | "false" | "no" | "off") => Ok(false),
        Some("1" | "true" | "yes" | "on") => Ok(true),
        Some(_) => Err("OINT_STRICT: expected 1 or 0 (or true/false, yes/no, on/off)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_comes_from_the_flag_or_the_environment() {
        let env = |v: &str| Some(v.to_string());
        assert_eq!(flag_or_env(true, env("0")), Ok(true), "the flag wins");
        for on in ["1", "true", "YES", " on "] {
            assert_eq!(flag_or_env(false, env(on)), Ok(true), "{on}");
        }
        for off in ["", "0", "false", "no", "off"] {
            assert_eq!(flag_or_env(false, env(off)), Ok(false), "{off}");
        }
        assert_eq!(flag_or_env(false, None), Ok(false));
        let e = flag_or_env(false, env("maybe")).unwrap_err();
        assert!(e.starts_with("OINT_STRICT: expected 1 or 0") && !e.contains("maybe"));
    }
}
