//! What a library error means to the person at the terminal: the exit class (usage, portal,
//! authentication, outcome unknown), one line, and the fix.
//!
//! Every command family maps errors through [`failure`], giving its own names for request
//! fields (`USER_ID` is `--user`; `ID` is `--notif` for OPI, `--id` for `oint notify`).

use bitrix24::Error;

use crate::output::Failure;

/// Maps a library error to what the user sees.
pub fn failure(error: Error, flag_of: &dyn Fn(&str) -> String) -> Failure {
    match error {
        e @ Error::OutcomeUnknown { .. } => Failure::Unknown(format!(
            "{e}; check the portal (oint notify list) before sending it again, or give it a --tag from an OAuth app so that a resend replaces it"
        )),
        Error::InvalidArgument { field, message } => {
            Failure::Usage(format!("{}: {message}", name_of(&field, flag_of)))
        }
        Error::Api(api) if matches!(api.code.as_str(), "invalid_grant" | "invalid_client") => {
            Failure::Portal {
                body: None,
                // The library's description repeats the advice below in its own terms.
                message: format!(
                    "the OAuth server answered {} (HTTP {}): {}{}",
                    api.code,
                    api.status,
                    api.body
                        .get("error_description")
                        .and_then(serde_json::Value::as_str)
                        .filter(|d| !d.is_empty())
                        .unwrap_or("the access token was not refreshed"),
                    hint_for(api.code.as_str())
                ),
                auth: true,
            }
        }
        Error::TokenStore { message } => Failure::Local(message),
        Error::Api(api) => {
            let api = *api;
            let auth = api.code.is_auth();
            let hint = hint_for(api.code.as_str());
            let message = format!("{api}{hint}");
            Failure::Portal {
                body: Some(api.body),
                message,
                auth,
            }
        }
        Error::Decode {
            status,
            reason,
            body,
        } => {
            let snippet: String = body
                .chars()
                .take(200)
                .collect::<String>()
                .replace(['\n', '\r'], " ");
            let message = if snippet.trim().is_empty() {
                format!("the portal answered HTTP {status} with {reason}")
            } else {
                format!("the portal answered HTTP {status} with {reason}: {snippet}")
            };
            Failure::Portal {
                body: None,
                message,
                auth: false,
            }
        }
        other => Failure::Portal {
            body: None,
            message: other.to_string(),
            auth: false,
        },
    }
}

/// The flag or variable that sets `field`: the connection's are the same for every command;
/// a request field is named by the command family's own flags (`flag_of`).
fn name_of(field: &str, flag_of: &dyn Fn(&str) -> String) -> String {
    match field {
        "url" => "--url".into(),
        "method" => "METHOD".into(),
        "refresh_token" => "BITRIX24_REFRESH_TOKEN".into(),
        "token_url" => "BITRIX24_OAUTH_URL".into(),
        other => flag_of(other),
    }
}

/// For errors that no flag of the command's own caused (building a client, say).
pub fn as_named(field: &str) -> String {
    field.to_string()
}

fn hint_for(code: &str) -> &'static str {
    match code {
        "NO_AUTH_FOUND" => "; pass a webhook URL, or --token with a portal domain",
        "INVALID_CREDENTIALS" => {
            "; check the webhook URL: the user ID or secret is wrong, or the webhook was deleted"
        }
        "expired_token" => {
            "; get a fresh access token (OAuth tokens live one hour), or set BITRIX24_CLIENT_ID, BITRIX24_CLIENT_SECRET and BITRIX24_REFRESH_TOKEN so oint refreshes it"
        }
        "invalid_grant" => {
            "; the refresh token is used, expired or revoked: authorize the application again and set BITRIX24_REFRESH_TOKEN (or refresh_token in the config file) to the new refresh token"
        }
        "invalid_client" => {
            "; check BITRIX24_CLIENT_ID and BITRIX24_CLIENT_SECRET (or client_id and client_secret in the config file)"
        }
        "invalid_token" => "; the access token is not known to this portal",
        "insufficient_scope" => "; give the webhook or application the \"im\" scope",
        "ERROR_METHOD_NOT_FOUND" => {
            "; check the method name, and that a webhook URL ends with /rest/USER_ID/SECRET/"
        }
        "QUERY_LIMIT_EXCEEDED" => "; too many requests, wait a few seconds and try again",
        _ => "",
    }
}
