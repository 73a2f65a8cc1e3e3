//! Where a command sends: a real portal or the embedded sandbox.

use secrecy::SecretString;

use super::oauth::OAuthCreds;

/// Where to send.
pub enum Target {
    /// A real portal: webhook URL, or domain plus token, or domain plus OAuth application.
    Portal {
        url: String,
        token: Option<SecretString>,
        oauth: Option<OAuthCreds>,
    },
    /// The embedded sandbox portal (`--url sandbox`).
    Sandbox { token: Option<SecretString> },
}
