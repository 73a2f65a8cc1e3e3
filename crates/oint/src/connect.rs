//! A [`Client`] for a resolved [`Target`]: the real portal with the settings' pacing and
//! OAuth, or the embedded sandbox, started for the length of the command.

use bitrix24::Client;
use secrecy::ExposeSecret;

use crate::output::Failure;
use crate::portal_errors;
use crate::sandbox;
use crate::settings::{Target, Transport};

/// A client for the target; the sandbox, when used, lives as long as the returned guard.
pub async fn connect(
    target: Target,
    transport: &Transport,
) -> Result<(Client, Option<sandbox::Sandbox>), Failure> {
    match target {
        Target::Portal { url, token, oauth } => {
            // The bucket is the portal's: an app with no token yet still has a domain.
            let bucket_token = token
                .as_ref()
                .map(|t| t.expose_secret())
                .or(oauth.as_ref().map(|_| "oauth"));
            let mut builder = transport.configure(Client::builder(&url), &url, bucket_token);
            // A limit store shares the bucket between machines; it replaces the state file.
            let shared = transport
                .store_pacer(&url, bucket_token)
                .await
                .map_err(Failure::Local)?;
            // With the store reachable it keeps the OAuth tokens too; after a fallback to
            // local pacing they stay in this machine's file.
            let share_tokens = shared.is_some();
            if let Some(pacer) = shared {
                builder = builder.pacer(pacer);
            }
            match (&oauth, &token) {
                (Some(oauth), token) => {
                    let mut config = oauth.config(token.as_ref());
                    if share_tokens {
                        config = transport
                            .share_tokens(config, &url, oauth)
                            .map_err(Failure::Local)?;
                    }
                    builder = builder.oauth(config);
                }
                (None, Some(token)) => builder = builder.token(token.expose_secret()),
                (None, None) => {}
            }
            Ok((
                builder
                    .build()
                    .map_err(|e| portal_errors::failure(e, &portal_errors::as_named))?,
                None,
            ))
        }
        Target::Sandbox { token } => {
            let (client, sandbox) = sandbox::start(token.as_ref(), transport).await?;
            Ok((client, Some(sandbox)))
        }
    }
}
