//! `oint sandbox list|reset|path`: look into, or clear, the local portal behind
//! `--url sandbox`.

use crate::flags::SandboxAction;
use crate::output::{Failure, Success};
use crate::sandbox;

/// Runs `oint sandbox …`.
pub async fn command(action: SandboxAction) -> Result<Success, Failure> {
    match action {
        SandboxAction::Path => sandbox::data_path()
            .map(|p| Success::Text(p.display().to_string()))
            .map_err(Failure::Local),
        SandboxAction::Reset => sandbox::reset()
            .map(|p| Success::Text(format!("sandbox cleared ({})", p.display())))
            .map_err(Failure::Local),
        SandboxAction::List => sandbox::notifications()
            .await
            .map(|n| Success::Json(serde_json::to_value(n).expect("notifications are JSON")))
            .map_err(Failure::Local),
    }
}
