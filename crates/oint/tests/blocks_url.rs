//! `--blocks URL` (and `notify send --attach URL`): downloaded under the HTTPS-or-loopback
//! rule, capped while streaming, then checked like the text itself. A tiny loopback HTTP
//! server serves the fixtures in `tests/fixtures/blocks-url/`.

mod common;

use std::path::PathBuf;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// More than the 1 MiB cap.
const BIG: usize = 1024 * 1024 + 1;

/// Serves on 127.0.0.1 (port 0) until the test ends; returns `http://127.0.0.1:PORT`.
async fn server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        // A TLS ClientHello: hang up, as a plain HTTP server does.
                        Ok(_) if buf[0] == 0x16 && head.is_empty() => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head);
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                let path = path.split('?').next().unwrap().to_string();
                // The client may stop reading (a refused body): write errors are expected.
                let _ = answer(&mut socket, &path).await;
            });
        }
    });
    base
}

async fn answer(socket: &mut tokio::net::TcpStream, path: &str) -> std::io::Result<()> {
    let send = |status: &str, headers: &str, body: &[u8]| {
        let mut out =
            format!("HTTP/1.1 {status}\r\nConnection: close\r\n{headers}\r\n").into_bytes();
        out.extend_from_slice(body);
        out
    };
    let reply = match path {
        "/big-with-length" => send(
            "200 OK",
            &format!("Content-Length: {BIG}\r\n"),
            &vec![b' '; BIG],
        ),
        // No Content-Length: the body ends when the connection closes.
        "/big-without-length" => send("200 OK", "", &vec![b' '; BIG]),
        // A Content-Length far below what follows, in chunks.
        "/big-chunked" => {
            socket
                .write_all(&send("200 OK", "Transfer-Encoding: chunked\r\n", b""))
                .await?;
            let chunk = vec![b' '; 64 * 1024];
            for _ in 0..(BIG / chunk.len() + 2) {
                socket
                    .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                    .await?;
                socket.write_all(&chunk).await?;
                socket.write_all(b"\r\n").await?;
            }
            socket.write_all(b"0\r\n\r\n").await?;
            return Ok(());
        }
        "/to-plain-http" => send(
            "302 Found",
            "Location: http://example.com/blocks.json\r\nContent-Length: 0\r\n",
            b"",
        ),
        "/to-opi-blocks" => send(
            "301 Moved Permanently",
            "Location: /opi-blocks.json\r\nContent-Length: 0\r\n",
            b"",
        ),
        file => match std::fs::read(fixtures().join(file.trim_start_matches('/'))) {
            Ok(body) if !file.contains("..") => send(
                "200 OK",
                &format!(
                    "Content-Type: application/json\r\nContent-Length: {}\r\n",
                    body.len()
                ),
                &body,
            ),
            _ => send("404 Not Found", "Content-Length: 9\r\n", b"not found"),
        },
    };
    socket.write_all(&reply).await?;
    socket.shutdown().await
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/blocks-url")
}

/// `oint bitrix24 CreatePersonalNotification … --blocks BLOCKS`.
async fn opi_send(url: &str, blocks: &str) -> std::process::Output {
    oint(
        &[
            "bitrix24",
            "CreatePersonalNotification",
            "--url",
            url,
            "--user",
            "1",
            "--text",
            "Report",
            "--blocks",
            blocks,
        ],
        &[],
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn downloaded_opi_blocks_arrive() {
    let emu = emulator().await;
    let server = server().await;
    let hook = emu.webhook_url(1, SECRET);
    let stored_attach = |o: &std::process::Output| {
        assert_eq!(o.status.code(), Some(0), "{}", stderr(o));
        let id = json(o)["result"].as_u64().expect("an id");
        let stored = emu.notifications();
        let n = stored.iter().find(|n| n.id == id).expect("stored");
        n.attach.as_ref().unwrap()["BLOCKS"].clone()
    };
    // What the same text given inline becomes at the portal.
    let text = std::fs::read_to_string(fixtures().join("opi-blocks.json")).unwrap();
    let inline = stored_attach(&opi_send(&hook, &text).await);
    assert!(inline.to_string().contains("File1.docx"), "{inline}");
    // Straight, and through a redirect to a loopback address.
    for path in ["/opi-blocks.json", "/to-opi-blocks"] {
        let o = opi_send(&hook, &format!("{server}{path}")).await;
        assert_eq!(stored_attach(&o), inline, "{path}");
    }
}

/// `notify send --attach` reads the same forms as `--blocks`, URLs included.
#[tokio::test(flavor = "multi_thread")]
async fn notify_send_attach_downloads_too() {
    let emu = emulator().await;
    let server = server().await;
    let o = oint(
        &[
            "notify",
            "send",
            "--url",
            &emu.webhook_url(1, SECRET),
            "--user",
            "1",
            "--text",
            "Report",
            "--attach",
            &format!("{server}/full-form.json"),
            "--json",
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let attach = emu.notifications()[0].attach.clone().unwrap();
    assert_eq!(attach["COLOR"], "#29619b");
    assert_eq!(attach["BLOCKS"][0]["MESSAGE"], "from a URL");

    let o = oint(
        &[
            "notify",
            "send",
            "--url",
            &emu.webhook_url(1, SECRET),
            "--user",
            "1",
            "--text",
            "Report",
            "--attach",
            &format!("{server}/missing.json"),
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with("error: --attach: http://127.0.0.1:"),
        "{}",
        stderr(&o)
    );
}

/// Every refusal: exit 2 (bad input), one line naming --blocks, nothing sent.
#[tokio::test(flavor = "multi_thread")]
async fn refusals() {
    let emu = emulator().await;
    let server = server().await;
    let cases = [
        (
            format!("{server}/big-with-length"),
            "sends more than 1024 KiB",
        ),
        (
            format!("{server}/big-without-length"),
            "sends more than 1024 KiB",
        ),
        (format!("{server}/big-chunked"), "sends more than 1024 KiB"),
        (format!("{server}/missing.json"), "answered 404 Not Found"),
        // Never connected to: a TEST-NET address would hang until the deadline instead.
        (
            "http://192.0.2.1/blocks.json".to_string(),
            "plain http:// is refused for 192.0.2.1",
        ),
        (
            format!("{server}/to-plain-http"),
            "/to-plain-http redirects to http://example.com/blocks.json: plain http:// is refused",
        ),
        // Downloaded, then the same checks as for text and files.
        (
            format!("{server}/not-json.txt"),
            "not-json.txt sent is not valid JSON",
        ),
        (
            format!("{server}/refused.json"),
            "blocks[0].IMAGE.LINK: is missing",
        ),
    ];
    for (url, needle) in cases {
        let o = opi_send(&emu.webhook_url(1, SECRET), &url).await;
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{url}: {err}");
        assert!(err.starts_with("error: --blocks: "), "{url}: {err}");
        assert!(err.contains(needle), "{url}: {err}");
        assert_eq!(err.lines().count(), 1, "{url}: {err}");
    }
    assert!(emu.notifications().is_empty());
    assert!(emu.requests().is_empty(), "nothing reached the portal");
}

/// The query string and userinfo may hold secrets: never printed, masked as `***`.
#[tokio::test(flavor = "multi_thread")]
async fn secrets_in_the_url_are_not_printed() {
    let emu = emulator().await;
    let server = server().await;
    let port = server.rsplit(':').next().unwrap();
    for (url, shown) in [
        (format!("{server}/missing.json?secret=q-s3cr3t-4471"), true),
        (
            format!("http://user:pw-s3cr3t-4471@127.0.0.1:{port}/missing.json"),
            true,
        ),
        (format!("{server}/not-json.txt?secret=q-s3cr3t-4471"), true),
        // Not even connected to: the message names the host only.
        (
            "http://203.0.113.9/b.json?secret=q-s3cr3t-4471".to_string(),
            false,
        ),
        // A TLS handshake with a plain HTTP server fails: reqwest's own error, scrubbed.
        (
            format!("https://127.0.0.1:{port}/b.json?secret=q-s3cr3t-4471"),
            true,
        ),
    ] {
        let o = opi_send(&emu.webhook_url(1, SECRET), &url).await;
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(!err.contains("s3cr3t") && !err.contains("4471"), "{err}");
        assert!(!shown || err.contains("***"), "{err}");
    }
}
