//! One bounded GET, for `--blocks`/`--attach` given as a URL (OPI downloads it too).
//!
//! The text downloaded becomes part of a notification, so it must come from where the user
//! said: HTTPS only, except loopback hosts; every redirect target under the same rule; a
//! size cap enforced while reading, whatever Content-Length says; one total deadline. The
//! query string and userinfo may hold a secret (a signed link, a password) and are never
//! shown: messages name the URL through [`shown`].

use std::time::Duration;

use reqwest::Url;
use reqwest::header::{HeaderValue, LOCATION};

/// How much one download may take.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// For the whole download: connecting, every redirect, the body.
    pub timeout: Duration,
    /// Largest body, in bytes; a longer one is refused, never cut.
    pub cap: usize,
    /// Redirects followed before giving up.
    pub redirects: usize,
}

/// Attachment blocks are a few KiB; 1 MiB is far above what a portal takes in a notification.
pub const BLOCKS: Limits = Limits {
    timeout: Duration::from_secs(10),
    cap: 1024 * 1024,
    redirects: 5,
};

/// Whether the value is meant as a URL to download (`http://` or `https://`, any case).
pub fn is_url(text: &str) -> bool {
    ["http://", "https://"].iter().any(|prefix| {
        text.get(..prefix.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
    })
}

/// The URL with its userinfo and query string masked and its fragment dropped.
pub fn shown(url: &Url) -> String {
    let mut text = format!("{}://", url.scheme());
    if !url.username().is_empty() || url.password().is_some() {
        text.push_str(bitrix24::MASK);
        text.push('@');
    }
    text.push_str(url.host_str().unwrap_or(""));
    if let Some(port) = url.port() {
        text.push_str(&format!(":{port}"));
    }
    text.push_str(url.path());
    if url.query().is_some_and(|q| !q.is_empty()) {
        text.push('?');
        text.push_str(bitrix24::MASK);
    }
    text
}

/// Parses a URL given on the command line and checks that it may be fetched.
pub fn parse(text: &str) -> Result<Url, String> {
    // The url crate's messages ("invalid port number") never quote the input.
    let url = Url::parse(text.trim()).map_err(|e| {
        format!("is not a valid URL ({e}); give https://HOST/PATH, or save the JSON to a file and pass its path")
    })?;
    allowed(&url)?;
    Ok(url)
}

/// HTTPS anywhere, plain HTTP for loopback hosts only: a download over plain HTTP could be
/// changed on the way.
fn allowed(url: &Url) -> Result<(), String> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(url) => Ok(()),
        "http" => Err(format!(
            "plain http:// is refused for {} because the download could be altered on the way; use https:// (http:// is accepted only for loopback hosts)",
            url.host_str().unwrap_or("")
        )),
        other => Err(format!(
            "{other}:// is not downloaded; use https:// (http:// only for loopback hosts)"
        )),
    }
}

/// 127.0.0.0/8, ::1 and `localhost`, as for `--url`.
fn is_loopback(url: &Url) -> bool {
    let host = url.host_str().unwrap_or("");
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Downloads `url` within `limits`. Errors are one line without the flag's name (the caller
/// adds it), each with what to do.
pub async fn get(url: &Url, limits: &Limits) -> Result<Vec<u8>, String> {
    let limit = limits.timeout;
    match tokio::time::timeout(limit, fetch(url, limits)).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "{} did not answer in full within {limit:?}; check the URL and the network, or save the JSON to a file and pass its path",
            shown(url)
        )),
    }
}

async fn fetch(start: &Url, limits: &Limits) -> Result<Vec<u8>, String> {
    // reqwest is built without a crypto provider; the library installs ring the same way.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .user_agent(concat!("oint/", env!("CARGO_PKG_VERSION")))
        // Followed here, so that every target is checked before it is connected to.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| {
            format!(
                "cannot set up HTTP ({}); save the JSON to a file and pass its path",
                chain(e, start)
            )
        })?;
    let mut url = start.clone();
    let mut redirects = 0;
    let mut response = loop {
        let response = client
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| {
                format!(
                    "cannot download {} ({}); check the URL and the network, or save the JSON to a file and pass its path",
                    shown(&url),
                    chain(e, &url)
                )
            })?;
        let Some(location) = response
            .status()
            .is_redirection()
            .then(|| response.headers().get(LOCATION))
            .flatten()
        else {
            break response;
        };
        let next = redirect_target(&url, location)?;
        redirects += 1;
        if redirects > limits.redirects {
            return Err(format!(
                "{} redirected more than {} times; give the final URL, or save the JSON to a file and pass its path",
                shown(start),
                limits.redirects
            ));
        }
        url = next;
    };
    let status = response.status();
    if !status.is_success() {
        return Err(format!(
            "{} answered {status}; check the URL, or save the JSON to a file and pass its path",
            shown(&url)
        ));
    }
    let too_large = || {
        format!(
            "{} sends more than {} KiB, far more than any attachment; check the URL",
            shown(&url),
            limits.cap / 1024
        )
    };
    if response
        .content_length()
        .is_some_and(|n| n > limits.cap as u64)
    {
        return Err(too_large());
    }
    // Counted while reading: Content-Length may be absent, or lie.
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| {
        format!(
            "the download from {} broke off ({}); try again, or save the JSON to a file and pass its path",
            shown(&url),
            chain(e, &url)
        )
    })? {
        if body.len() + chunk.len() > limits.cap {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Where a redirect leads, checked by the same rule as the URL given.
fn redirect_target(from: &Url, location: &HeaderValue) -> Result<Url, String> {
    let bad = || {
        format!(
            "{} redirects to an address that is not a valid URL; give the final URL, or save the JSON to a file and pass its path",
            shown(from)
        )
    };
    let text = location.to_str().map_err(|_| bad())?;
    let next = from.join(text).map_err(|_| bad())?;
    allowed(&next)
        .map_err(|why| format!("{} redirects to {}: {why}", shown(from), shown(&next)))?;
    // A remote server must not make oint read from this machine's own services.
    if is_loopback(&next) && !is_loopback(from) {
        return Err(format!(
            "{} redirects to {}, on this machine; a remote address may not lead to a local one: give the local URL yourself if you mean it",
            shown(from),
            shown(&next)
        ));
    }
    Ok(next)
}

/// reqwest's error and its causes, without the URL (whose query or userinfo may be secret).
fn chain(error: reqwest::Error, url: &Url) -> String {
    let error = error.without_url();
    let mut text = String::new();
    let mut cause: Option<&dyn std::error::Error> = Some(&error);
    while let Some(e) = cause {
        let part = e.to_string();
        if !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
        cause = e.source();
    }
    // Belt and braces: no cause may carry the secret parts either (shorter ones would mask
    // ordinary words).
    for secret in [
        url.query().unwrap_or(""),
        url.username(),
        url.password().unwrap_or(""),
    ] {
        if secret.len() >= 4 {
            text = text.replace(secret, bitrix24::MASK);
        }
    }
    text.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn masks_what_may_be_secret() {
        let url = Url::parse("https://user:pw@example.com:8443/a/b.json?sig=s3cr3t#frag").unwrap();
        assert_eq!(shown(&url), "https://***@example.com:8443/a/b.json?***");
        let url = Url::parse("https://example.com/b.json").unwrap();
        assert_eq!(shown(&url), "https://example.com/b.json");
    }

    #[test]
    fn https_or_loopback() {
        for ok in [
            "https://example.com/b.json",
            "http://127.0.0.1:8080/b.json",
            "http://127.5.6.7/b",
            "http://[::1]:9/b",
            "http://LOCALHOST/b",
        ] {
            assert!(parse(ok).is_ok(), "{ok}");
        }
        for (bad, needle) in [
            (
                "http://example.com/b.json",
                "plain http:// is refused for example.com",
            ),
            ("http://10.0.0.1/b.json", "plain http:// is refused"),
            ("http://localhost.example.com/b", "plain http:// is refused"),
            ("ftp://example.com/b", "ftp:// is not downloaded"),
            ("https://exa mple.com/b", "is not a valid URL"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(needle), "{bad}: {e}");
        }
        assert!(is_url("HTTPS://x") && is_url("http://x") && !is_url("blocks.json"));
    }

    #[test]
    fn a_remote_address_may_not_redirect_to_this_machine() {
        let location = |l: &str| HeaderValue::from_str(l).unwrap();
        let remote = Url::parse("https://example.com/b.json").unwrap();
        for local in [
            "http://127.0.0.1:8080/x",
            "https://localhost/x",
            "http://[::1]/x",
        ] {
            let e = redirect_target(&remote, &location(local)).unwrap_err();
            assert!(e.contains("on this machine"), "{local}: {e}");
        }
        assert!(redirect_target(&remote, &location("https://cdn.example.com/b")).is_ok());
        let local = Url::parse("http://127.0.0.1:9/a").unwrap();
        assert!(
            redirect_target(&local, &location("/b")).is_ok(),
            "loopback to loopback"
        );
    }

    /// A loopback server that answers every connection with `answer` (or never, when `None`).
    async fn serve(answer: Option<&'static str>) -> Url {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = socket.read(&mut buf).await;
                    match answer {
                        Some(text) => {
                            let _ = socket.write_all(text.as_bytes()).await;
                        }
                        // Hold the connection open without a word.
                        None => std::future::pending::<()>().await,
                    }
                });
            }
        });
        Url::parse(&format!("http://{addr}/blocks.json?token=s3cr3t")).unwrap()
    }

    #[tokio::test]
    async fn gives_up_at_the_deadline() {
        let url = serve(None).await;
        let limits = Limits {
            timeout: Duration::from_millis(200),
            ..BLOCKS
        };
        let e = get(&url, &limits).await.unwrap_err();
        assert!(e.contains("did not answer in full within 200ms"), "{e}");
        assert!(!e.contains("s3cr3t"), "{e}");
    }

    #[tokio::test]
    async fn redirect_loops_end() {
        let url = serve(Some(
            "HTTP/1.1 302 Found\r\nLocation: /again?token=s3cr3t\r\nContent-Length: 0\r\n\r\n",
        ))
        .await;
        let e = get(&url, &BLOCKS).await.unwrap_err();
        assert!(e.contains("redirected more than 5 times"), "{e}");
        assert!(!e.contains("s3cr3t") && !e.contains('\n'), "{e}");
    }
}
