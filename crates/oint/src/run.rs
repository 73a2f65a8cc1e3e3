//! Runs a resolved [`Job`] and says how it went, without printing anything itself.

use bitrix24::{Client, Error};
use secrecy::ExposeSecret;
use serde_json::Value;

use crate::output::{Failure, Success};
use crate::resolve::{Expect, Job, Target};
use crate::sandbox;
use crate::transport::Transport;

pub async fn run(job: Job, transport: &Transport) -> Result<Success, Failure> {
    match job {
        Job::Print { value, .. } => Ok(Success::Json(value)),
        Job::Send {
            target,
            request,
            expect,
            common,
        } => {
            // Before anything connects: a bad name could leave /rest/ with the credentials.
            bitrix24::check_method(request.method()).map_err(library_failure)?;
            // Keep the sandbox alive until the call is done.
            let (client, _sandbox) = connect(target, transport).await?;
            if common.debug {
                crate::output::note(&format!("portal : {}", client.portal()));
            }
            if request.params().contains_key("TAG") && !client.portal().is_oauth() {
                crate::severity::webhook_tag("--tag", common.strict).map_err(Failure::Usage)?;
            }
            if common.test {
                let preview = client.preview(&request);
                return Ok(Success::Json(
                    serde_json::to_value(preview).expect("a preview is JSON"),
                ));
            }
            let answer = client.execute(&request).await.map_err(library_failure)?;
            judge(expect, &request, answer.raw)
        }
    }
}

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
            match (&oauth, &token) {
                (Some(oauth), token) => builder = builder.oauth(oauth.config(token.as_ref())),
                (None, Some(token)) => builder = builder.token(token.expose_secret()),
                (None, None) => {}
            }
            Ok((builder.build().map_err(library_failure)?, None))
        }
        Target::Sandbox { token } => {
            let sandbox = sandbox::start(token.as_ref(), transport)
                .await
                .map_err(Failure::Local)?;
            Ok((sandbox.client.clone(), Some(sandbox)))
        }
    }
}

/// A `false` result is the portal saying "not done" without an error; scripts must see it.
fn judge(expect: Expect, request: &bitrix24::Request, body: Value) -> Result<Success, Failure> {
    let result = body.get("result").cloned().unwrap_or(Value::Null);
    let failed = matches!(result, Value::Bool(false) | Value::Null);
    if !failed {
        return Ok(Success::Json(body));
    }
    let param = |k: &str| {
        request
            .params()
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string()
    };
    let message = match expect {
        Expect::Created => format!(
            "the portal did not create the notification (result false): user {} does not exist or is inactive",
            param("USER_ID")
        ),
        Expect::Deleted => format!(
            "the portal did not delete notification {} (result false): it does not exist or is not among the caller's own notifications",
            param("ID")
        ),
    };
    Err(Failure::Portal {
        body: Some(body),
        message,
        auth: false,
    })
}

/// Maps a library error to what the user sees.
pub fn library_failure(error: Error) -> Failure {
    match error {
        e @ Error::OutcomeUnknown { .. } => Failure::Unknown(format!(
            "{e}; check the portal (oint notify list) before sending it again, or give it a --tag from an OAuth app so that a resend replaces it"
        )),
        Error::InvalidArgument { field, message } => {
            Failure::Usage(format!("{}: {message}", flag_of(&field)))
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

fn flag_of(field: &str) -> &str {
    match field {
        "url" => "--url",
        "method" => "METHOD",
        "refresh_token" => "BITRIX24_REFRESH_TOKEN",
        "token_url" => "BITRIX24_OAUTH_URL",
        other => crate::resolve::opi_flag(other),
    }
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
