//! `oint sandbox list|reset|path|serve`: look into, or clear, the local portal behind
//! `--url sandbox`.

use crate::flags::SandboxAction;
use crate::output::{Exit, Failure, Success};
use crate::sandbox;

/// Runs `oint sandbox …`.
pub async fn command(action: SandboxAction) -> Result<Success, Failure> {
    match action {
        SandboxAction::Path => sandbox::data_path().map(|p| Success::Text(p.display().to_string())),
        SandboxAction::Reset => {
            sandbox::reset().map(|p| Success::Text(format!("sandbox cleared ({})", p.display())))
        }
        SandboxAction::List => sandbox::list().map(Success::Json),
        SandboxAction::Serve { listen } => sandbox::serve(listen)
            .await
            .map(|()| Success::Finished(Exit::Ok)),
    }
}
