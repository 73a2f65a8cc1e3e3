//! Stands in for `sandbox.rs` in an `oint` built without the `sandbox` feature (no emulator,
//! no SQLite): the same functions, each refusing with one usage error (exit 2).

use std::path::PathBuf;

use bitrix24::Client;
use secrecy::SecretString;
use serde_json::Value;

use crate::output::Failure;
use crate::settings::Transport;

fn absent() -> Failure {
    Failure::Usage(
        "this oint was built without the sandbox; rebuild with --features sandbox".into(),
    )
}

/// Has no values: no sandbox can run in this build.
pub enum Sandbox {}

pub fn data_path() -> Result<PathBuf, Failure> {
    Err(absent())
}

pub async fn start(
    _token: Option<&SecretString>,
    _transport: &Transport,
) -> Result<(Client, Sandbox), Failure> {
    Err(absent())
}

pub fn list() -> Result<Value, Failure> {
    Err(absent())
}

pub fn reset() -> Result<PathBuf, Failure> {
    Err(absent())
}

pub async fn serve(_listen: std::net::SocketAddr) -> Result<(), Failure> {
    Err(absent())
}
