//! `oint sandbox list|reset|path`: look into, or clear, the local portal behind
//! `--url sandbox`.

use crate::flags::SandboxAction;
use crate::output::{Failure, Success};
use crate::sandbox;

/// Runs `oint sandbox …`.
pub async fn command(action: SandboxAction) -> Result<Success, Failure> {
    match action {
        SandboxAction::Path => sandbox::data_path().map(|p| Success::Text(p.display().to_string())),
        SandboxAction::Reset => {
            sandbox::reset().map(|p| Success::Text(format!("sandbox cleared ({})", p.display())))
        }
        SandboxAction::List => sandbox::list().map(Success::Json),
    }
}
