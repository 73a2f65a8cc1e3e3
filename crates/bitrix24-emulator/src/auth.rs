//! Who is calling: turning request credentials into a caller, the way the portal checks them.
//!
//! The portal has two kinds of REST caller that matter here. An inbound webhook
//! (`/rest/<user>/<secret>/…`) acts as its user and has no OAuth client id; an OAuth access
//! token acts as its user *on behalf of an application*, and that client id is what makes
//! TAG/SUB_TAG and the app-name prefix work. Keeping the distinction in one type lets the method
//! rules ask "is this an app?" instead of re-reading the request.

use crate::error::ApiError;
use crate::store::Store;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// `hook` tells two webhooks of one user apart (their operating budgets are separate).
    Webhook {
        user_id: u64,
        hook: usize,
    },
    OAuth {
        user_id: u64,
        client_id: String,
    },
}

impl Caller {
    pub fn user_id(&self) -> u64 {
        match self {
            Caller::Webhook { user_id, .. } | Caller::OAuth { user_id, .. } => *user_id,
        }
    }

    /// `$server->getClientId()`: set only for OAuth applications.
    pub fn client_id(&self) -> Option<&str> {
        match self {
            Caller::Webhook { .. } => None,
            Caller::OAuth { client_id, .. } => Some(client_id),
        }
    }
}

/// Credentials as found in the request, before checking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// The `<user>/<secret>` path segments of a webhook URL.
    Webhook {
        user: String,
        secret: String,
    },
    /// An access token from `auth`, `access_token` or `Authorization: Bearer`.
    Token(String),
    None,
}

/// Check credentials against the store.
pub fn authenticate(
    store: &Store,
    credentials: &Credentials,
    now: u64,
) -> Result<Caller, ApiError> {
    match credentials {
        Credentials::None => Err(ApiError::no_auth_found()),
        Credentials::Webhook { user, secret } => {
            // `aplogin` may also be a login on a real portal; the emulator's users are numeric.
            let user_id = user.parse::<u64>().ok().filter(|id| *id > 0);
            let hook = user_id.and_then(|id| Some((id, store.webhook_number(id, secret)?)));
            match hook {
                Some((user_id, hook)) => Ok(Caller::Webhook { user_id, hook }),
                None => Err(ApiError::invalid_credentials()),
            }
        }
        Credentials::Token(token) => {
            let Some(issued) = store.access_token(token) else {
                return Err(ApiError::invalid_token());
            };
            if issued.expires_at <= now {
                return Err(ApiError::expired_token());
            }
            Ok(Caller::OAuth {
                user_id: issued.user_id,
                client_id: issued.client_id,
            })
        }
    }
}

/// Hide a secret in logs. Nothing of it is kept: even a prefix narrows a guess.
pub fn mask(_secret: &str) -> &'static str {
    "***"
}
