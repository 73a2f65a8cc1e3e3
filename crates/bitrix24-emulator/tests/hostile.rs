//! Hostile and careless input: PHP's input limits on forms, bounded JSON, bounded bodies,
//! connection timeouts, and the `--data` file's permissions and lock.
//!
//! Every test talks to a real emulator over 127.0.0.1 (raw TCP where the connection itself is
//! under test) and asserts what it answers, stores or does to the connection.

mod common;

use std::time::Duration;

use bitrix24_emulator::decode::{self, InputLimits};
use bitrix24_emulator::{Config, Emulator, Error};
use common::{Child, FORM, SECRET, TempFile, decode as decode_resp, only, start_with};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Long enough for any of these to happen on a loaded machine; never a timing assertion.
const BOUNDED: Duration = Duration::from_secs(20);

fn hook(emu: &Emulator, method: &str) -> String {
    format!("{}{method}", emu.webhook_url(1, SECRET))
}

fn config() -> Config {
    Config::default().webhook(1, SECRET)
}

/// The body that used to kill the emulator: 160,000 keys, each 60 levels deep, about 30 MB.
fn hostile_form() -> String {
    let levels = "[a]".repeat(60);
    let mut body = String::with_capacity(31_000_000);
    for i in 1..=160_000 {
        if i > 1 {
            body.push('&');
        }
        body.push_str(&format!("A{i}{levels}=1"));
    }
    body
}

async fn post(url: &str, content_type: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(url)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("the emulator answers");
    decode_resp(resp).await
}

/// `n` filler variables `f1=1&…&fn=1` (or an empty string).
fn fillers(n: usize) -> String {
    (1..=n).map(|i| format!("f{i}=1&")).collect::<String>()
}

// ---------------------------------------------------------------------------------------------
// Forms: max_input_vars, max_input_nesting_level, post_max_size
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn hostile_form_over_post_max_size_is_ignored_and_the_server_keeps_serving() {
    let emu = start_with(config()).await;
    let body = hostile_form();
    assert!(body.len() > 30_000_000, "{} bytes", body.len());
    // PHP's post_max_size (8M) is exceeded: the body is thrown away, the query string counts.
    let url = format!(
        "{}?USER_ID=2&MESSAGE=from+the+query",
        hook(&emu, "im.notify.system.add")
    );
    let (status, answer) = post(&url, FORM, body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(only(&emu).message, "from the query");
    // And the next request is served.
    let (status, answer) = common::post_json(
        &hook(&emu, "im.notify.system.add"),
        json!({"USER_ID": 3, "MESSAGE": "next"}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(emu.notifications().len(), 2);
}

#[tokio::test]
async fn hostile_form_under_post_max_size_keeps_the_first_variables() {
    let emu = start_with(config().post_max_size(64 * 1024 * 1024)).await;
    // MESSAGE is given first and again after 160,000 variables: PHP keeps the first 1001
    // ($_POST's count), so the later MESSAGE never arrives.
    let body = format!(
        "USER_ID=2&MESSAGE=first&{}&MESSAGE=last&USER_ID=3",
        hostile_form()
    );
    let (status, answer) = post(&hook(&emu, "im.notify.system.add"), FORM, body.clone()).await;
    assert_eq!(status, 200, "{answer}");
    let stored = only(&emu);
    assert_eq!((stored.user_id, stored.message.as_str()), (2, "first"));
    // The same body as a raw (non-form) body goes through parse_str: same outcome.
    let (status, answer) = post(&hook(&emu, "im.notify.system.add"), "text/plain", body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(emu.notifications().len(), 2);
    assert_eq!(emu.notifications()[1].message, "first");
}

#[tokio::test]
async fn input_vars_boundary_over_http() {
    let emu = start_with(config()).await;
    let url = hook(&emu, "im.notify.system.add");
    // A form body ($_POST) keeps max_input_vars + 1 = 1001 variables (PHP's off-by-one).
    let kept = format!("{}USER_ID=2&MESSAGE=post1001", fillers(999));
    let (status, answer) = post(&url, FORM, kept).await;
    assert_eq!((status, &answer["error"]), (200, &Value::Null), "{answer}");
    let dropped = format!("{}USER_ID=2&MESSAGE=post1002", fillers(1000));
    let (status, answer) = post(&url, FORM, dropped).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("MESSAGE_EMPTY"))
    );

    // A raw body and the query string go through parse_str: the first 1000 are kept.
    let kept = format!("{}USER_ID=2&MESSAGE=raw1000", fillers(998));
    let (status, answer) = post(&url, "text/plain", kept).await;
    assert_eq!((status, &answer["error"]), (200, &Value::Null), "{answer}");
    let dropped = format!("{}USER_ID=2&MESSAGE=raw1001", fillers(999));
    let (status, answer) = post(&url, "text/plain", dropped).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("MESSAGE_EMPTY"))
    );

    let kept = format!("{url}?{}USER_ID=2&MESSAGE=query1000", fillers(998));
    let (status, answer) = common::get(&kept).await;
    assert_eq!((status, &answer["error"]), (200, &Value::Null), "{answer}");
    let dropped = format!("{url}?{}USER_ID=2&MESSAGE=query1001", fillers(999));
    let (status, answer) = common::get(&dropped).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("MESSAGE_EMPTY"))
    );

    let stored: Vec<String> = emu.notifications().into_iter().map(|n| n.message).collect();
    assert_eq!(stored, ["post1001", "raw1000", "query1000"]);
}

#[tokio::test]
async fn configured_input_vars_limit_applies_to_batch_commands() {
    let emu = start_with(config().max_input_vars(3)).await;
    // Inside a batch command parse_str keeps 3: USER_ID, MESSAGE, f1; TAG-like extras go.
    let cmd = "im.notify.system.add?USER_ID=2&MESSAGE=in+batch&f1=1&MESSAGE=overwritten";
    let (status, answer) =
        common::post_json(&hook(&emu, "batch"), json!({"cmd": {"a": cmd}})).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["result"]["result"]["a"].is_u64(), "{answer}");
    assert_eq!(only(&emu).message, "in batch");
}

#[tokio::test]
async fn nesting_boundary_over_http() {
    let emu = start_with(config()).await;
    let url = hook(&emu, "im.notify.system.add");
    // 64 bracket levels are kept: USER_ID becomes an array, which intval() makes 1.
    let body = format!("USER_ID=2&MESSAGE=deep64&USER_ID{}=1", "[a]".repeat(64));
    let (status, answer) = post(&url, FORM, body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(only(&emu).user_id, 1);
    // 65 levels remove the whole USER_ID, the earlier plain value included.
    let body = format!("USER_ID=2&MESSAGE=deep65&USER_ID{}=1", "[a]".repeat(65));
    let (status, answer) = post(&url, FORM, body).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("USER_ID_EMPTY"))
    );
    // The same in multipart.
    let boundary = "XB";
    let part = |name: &str, value: &str| {
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        )
    };
    let body = format!(
        "{}{}{}--{boundary}--\r\n",
        part("USER_ID", "3"),
        part("MESSAGE", "multipart"),
        part(&format!("USER_ID{}", "[a]".repeat(65)), "1")
    );
    let (status, answer) = post(
        &url,
        &format!("multipart/form-data; boundary={boundary}"),
        body,
    )
    .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("USER_ID_EMPTY"))
    );
    assert_eq!(emu.notifications().len(), 1);
}

#[tokio::test]
async fn multipart_keeps_the_first_1000_fields() {
    let emu = start_with(config()).await;
    let boundary = "XB";
    let mut body = String::new();
    let mut part = |name: &str, value: &str| {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        ));
    };
    for i in 1..=998 {
        part(&format!("f{i}"), "1");
    }
    part("USER_ID", "2");
    part("MESSAGE", "field1000");
    part("MESSAGE", "field1001");
    for i in 0..5000 {
        part(&format!("g{i}"), "1");
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    let (status, answer) = post(
        &hook(&emu, "im.notify.system.add"),
        &format!("multipart/form-data; boundary={boundary}"),
        body,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(only(&emu).message, "field1000");
}

// ---------------------------------------------------------------------------------------------
// JSON bodies
// ---------------------------------------------------------------------------------------------

fn deep_json(extra_levels: usize) -> String {
    format!(
        "{{\"USER_ID\":2,\"MESSAGE\":\"json{}\",\"X\":{}0{}}}",
        extra_levels + 1,
        "[".repeat(extra_levels),
        "]".repeat(extra_levels)
    )
}

#[tokio::test]
async fn json_depth_follows_php_512() {
    let emu = start_with(config()).await;
    let url = hook(&emu, "im.notify.system.add");
    // The object itself is level 1: 511 more arrays make 512, which json_decode accepts.
    let (status, answer) = post(&url, "application/json", deep_json(511)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(only(&emu).message, "json512");
    // 513 levels: json_decode fails, the portal sees no parameters.
    let (status, answer) = post(&url, "application/json", deep_json(512)).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("USER_ID_EMPTY"))
    );
    // An 8 MB flood of '[' (under post_max_size) is refused without recursion.
    let flood = "[".repeat(8_000_000);
    let (status, answer) = post(&url, "application/json", flood).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("USER_ID_EMPTY"))
    );
    let (status, _) = post(&url, "application/json", deep_json(3)).await;
    assert_eq!(status, 200);
    assert_eq!(emu.notifications().len(), 2);
}

// ---------------------------------------------------------------------------------------------
// Bodies without Content-Length, endless and stalled bodies (raw TCP)
// ---------------------------------------------------------------------------------------------

/// Read until the peer closes (or `BOUNDED` passes, which fails the test); returns the bytes.
async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    tokio::time::timeout(BOUNDED, stream.read_to_end(&mut got))
        .await
        .expect("the server closes the connection within the bounded wait")
        .ok();
    got
}

/// Read one response head and its Content-Length body.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + len {
                return text;
            }
        }
        let n = tokio::time::timeout(BOUNDED, stream.read(&mut buf))
            .await
            .expect("an answer within the bounded wait")
            .expect("read");
        assert!(n > 0, "connection closed before a full answer: {text:?}");
        got.extend_from_slice(&buf[..n]);
    }
}

fn request(emu: &Emulator, method: &str, query: &str) -> String {
    format!(
        "GET /rest/1/{SECRET}/{method}?{query} HTTP/1.1\r\nHost: {}\r\n\r\n",
        emu.addr()
    )
}

#[tokio::test]
async fn endless_chunked_body_gets_an_answer_and_a_close() {
    let emu = start_with(config().body_timeout(Duration::from_secs(1))).await;
    let mut stream = TcpStream::connect(emu.addr()).await.unwrap();
    let head = format!(
        "POST /rest/1/{SECRET}/im.notify.system.add?USER_ID=2&MESSAGE=endless HTTP/1.1\r\n\
         Host: {}\r\nContent-Type: {FORM}\r\nTransfer-Encoding: chunked\r\n\r\n",
        emu.addr()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    // Chunks of 64 KiB forever, until the server stops reading.
    let chunk = format!("10000\r\n{}\r\n", "a".repeat(0x10000));
    let sender = tokio::spawn(async move {
        let mut sent = 0usize;
        while writer.write_all(chunk.as_bytes()).await.is_ok() {
            sent += 0x10000;
        }
        sent
    });
    let mut got = Vec::new();
    tokio::time::timeout(BOUNDED, reader.read_to_end(&mut got))
        .await
        .expect("answered and closed within the bounded wait")
        .ok();
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    let sent = tokio::time::timeout(BOUNDED, sender)
        .await
        .unwrap()
        .unwrap();
    assert!(
        sent > 8 * 1024 * 1024,
        "the body went past post_max_size: {sent}"
    );
    // The query's parameters were used, the endless body's were not.
    assert_eq!(only(&emu).message, "endless");
    let (status, _) = common::get(&format!("{}?", hook(&emu, "server.time"))).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn chunked_body_without_content_length_within_the_limit_is_decoded() {
    let emu = start_with(config()).await;
    let mut stream = TcpStream::connect(emu.addr()).await.unwrap();
    let body = "USER_ID=2&MESSAGE=chunked";
    let req = format!(
        "POST /rest/1/{SECRET}/im.notify.system.add HTTP/1.1\r\nHost: {}\r\nContent-Type: {FORM}\r\n\
         Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        emu.addr(),
        body.len()
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let answer = read_response(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(only(&emu).message, "chunked");
}

#[tokio::test]
async fn stalled_body_gets_408_and_a_close() {
    let emu = start_with(config().body_timeout(Duration::from_millis(500))).await;
    let mut stream = TcpStream::connect(emu.addr()).await.unwrap();
    let head = format!(
        "POST /rest/1/{SECRET}/im.notify.system.add HTTP/1.1\r\nHost: {}\r\nContent-Type: {FORM}\r\n\
         Content-Length: 100\r\n\r\nUSER_ID=2&",
        emu.addr()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let got = read_to_close(&mut stream).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(emu.notifications().is_empty());
    let log = emu.requests();
    assert_eq!(log.last().map(|e| e.status), Some(408));
}

// ---------------------------------------------------------------------------------------------
// Connection timeouts
// ---------------------------------------------------------------------------------------------

fn short_idle() -> Config {
    config().idle_timeout(Duration::from_millis(500))
}

#[tokio::test]
async fn idle_keep_alive_connection_is_closed() {
    let emu = start_with(short_idle()).await;
    let mut stream = TcpStream::connect(emu.addr()).await.unwrap();
    stream
        .write_all(request(&emu, "server.time", "").as_bytes())
        .await
        .unwrap();
    let answer = read_response(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Kept alive, then closed once idle: read returns 0 with nothing more sent.
    let rest = read_to_close(&mut stream).await;
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
}

#[tokio::test]
async fn silent_connection_is_closed() {
    let emu = start_with(short_idle()).await;
    let mut silent: Vec<TcpStream> = Vec::new();
    for _ in 0..50 {
        silent.push(TcpStream::connect(emu.addr()).await.unwrap());
    }
    for stream in &mut silent {
        assert!(read_to_close(stream).await.is_empty());
    }
    let (status, _) = common::get(&format!("{}?", hook(&emu, "server.time"))).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn slowloris_headers_are_cut_off() {
    let emu = start_with(short_idle()).await;
    let stream = TcpStream::connect(emu.addr()).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    // One header byte every 100 ms, for up to 20 s: the 500 ms deadline is not renewed by
    // the drip.
    let dripper = tokio::spawn(async move {
        let head = format!("GET /rest/1/{SECRET}/server.time HTTP/1.1\r\nHost: x\r\nX-Slow: ");
        if writer.write_all(head.as_bytes()).await.is_err() {
            return 0;
        }
        let mut dripped = 0;
        while dripped < 200 && writer.write_all(b"a").await.is_ok() {
            dripped += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        dripped
    });
    let mut got = Vec::new();
    tokio::time::timeout(BOUNDED, reader.read_to_end(&mut got))
        .await
        .expect("closed within the bounded wait")
        .ok();
    assert!(!String::from_utf8_lossy(&got).contains("200 OK"));
    let dripped = tokio::time::timeout(BOUNDED, dripper)
        .await
        .unwrap()
        .unwrap();
    assert!(dripped < 200, "the server waited for the whole drip");
}

#[tokio::test]
async fn busy_keep_alive_connection_is_not_cut() {
    let emu = start_with(short_idle()).await;
    emu.add_faults(&json!([{"method": "server.time", "kind": "delay", "ms": 1500, "count": 1}]))
        .expect("fault rules accepted");
    let mut stream = TcpStream::connect(emu.addr()).await.unwrap();
    // The first answer takes three idle timeouts to come; the connection stays.
    stream
        .write_all(request(&emu, "server.time", "").as_bytes())
        .await
        .unwrap();
    let first = read_response(&mut stream).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    // A body sent slowly but steadily (each pause shorter than the body timeout) also stays.
    let body = "USER_ID=2&MESSAGE=slow+but+steady";
    let head = format!(
        "POST /rest/1/{SECRET}/im.notify.system.add HTTP/1.1\r\nHost: x\r\nContent-Type: {FORM}\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    for piece in body.as_bytes().chunks(4) {
        tokio::time::sleep(Duration::from_millis(150)).await;
        stream.write_all(piece).await.unwrap();
    }
    let second = read_response(&mut stream).await;
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
    assert_eq!(only(&emu).message, "slow but steady");
}

// ---------------------------------------------------------------------------------------------
// The --data file
// ---------------------------------------------------------------------------------------------

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn side(data: &std::path::Path, suffix: &str) -> std::path::PathBuf {
    let mut name = data.as_os_str().to_owned();
    name.push(suffix);
    name.into()
}

#[cfg(unix)]
#[tokio::test]
async fn data_file_and_side_files_are_owner_only() {
    let data = TempFile::new("perms");
    let _lock = TempFile(side(&data.0, ".lock"));
    let _wal = TempFile(side(&data.0, "-wal"));
    let _shm = TempFile(side(&data.0, "-shm"));
    let emu = start_with(config().data(&data.0)).await;
    common::post_json(
        &hook(&emu, "im.notify.system.add"),
        json!({"USER_ID": 2, "MESSAGE": "stored"}),
    )
    .await;
    assert_eq!(mode(&data.0), 0o600);
    assert_eq!(mode(&side(&data.0, ".lock")), 0o600);
    // Side files SQLite makes for this file take its mode: switch it to WAL to make them.
    let db = rusqlite::Connection::open(&data.0).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    let journal: String = db
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .unwrap();
    assert_eq!(journal, "wal");
    db.execute("CREATE TABLE IF NOT EXISTS probe (x)", [])
        .unwrap();
    assert_eq!(mode(&side(&data.0, "-wal")), 0o600);
    assert_eq!(mode(&side(&data.0, "-shm")), 0o600);
    drop(db);
    emu.shutdown().await;
}

#[cfg(unix)]
#[tokio::test]
async fn existing_world_readable_data_files_are_tightened() {
    use std::os::unix::fs::PermissionsExt as _;
    let data = TempFile::new("tighten");
    let _lock = TempFile(side(&data.0, ".lock"));
    let journal = TempFile(side(&data.0, "-journal"));
    // An old data file made with a 022 umask, and a stale empty journal beside it.
    let first = start_with(config().data(&data.0)).await;
    common::post_json(
        &hook(&first, "im.notify.system.add"),
        json!({"USER_ID": 2, "MESSAGE": "old"}),
    )
    .await;
    first.shutdown().await;
    std::fs::set_permissions(&data.0, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&journal.0, b"").unwrap();
    std::fs::set_permissions(&journal.0, std::fs::Permissions::from_mode(0o666)).unwrap();

    let emu = start_with(config().data(&data.0)).await;
    assert_eq!(mode(&data.0), 0o600);
    if journal.0.exists() {
        assert_eq!(mode(&journal.0), 0o600);
    }
    // The data is still there.
    assert_eq!(only(&emu).message, "old");
    emu.shutdown().await;
}

#[cfg(unix)]
#[tokio::test]
async fn data_path_that_is_not_a_regular_file_is_refused_and_nothing_is_chmodded() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("a-directory");
    std::fs::create_dir(&sub).unwrap();
    std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o755)).unwrap();
    let err = Emulator::start(config().data(&sub)).await.unwrap_err();
    assert!(err.to_string().contains("is not a regular file"), "{err}");
    assert_eq!(mode(&sub), 0o755);
    assert!(!side(&sub, ".lock").exists());
    // A side file that is a symlink would make the chmod land on its target.
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
    let data = dir.path().join("data.sqlite");
    std::os::unix::fs::symlink(&victim, side(&data, "-wal")).unwrap();
    let err = Emulator::start(config().data(&data)).await.unwrap_err();
    assert!(
        err.to_string().contains("-wal is not a regular file"),
        "{err}"
    );
    assert_eq!(mode(&victim), 0o644);
}

#[tokio::test]
async fn second_emulator_on_the_same_data_file_is_refused() {
    let data = TempFile::new("locked");
    let _lock = TempFile(side(&data.0, ".lock"));
    let first = start_with(config().data(&data.0)).await;
    let second = Emulator::start(config().data(&data.0)).await;
    let err = second.expect_err("a second emulator on the same file must not start");
    assert!(matches!(err, Error::DataInUse { .. }), "{err:?}");
    let line = err.to_string();
    assert!(line.contains(&data.0.display().to_string()), "{line}");
    assert!(!line.contains('\n'), "{line}");
    // The first one is unharmed.
    let (status, _) = common::post_json(
        &hook(&first, "im.notify.system.add"),
        json!({"USER_ID": 2, "MESSAGE": "first"}),
    )
    .await;
    assert_eq!(status, 200);
    // Stopping it releases the lock.
    first.shutdown().await;
    let third = start_with(config().data(&data.0)).await;
    assert_eq!(only(&third).message, "first");
    third.shutdown().await;
}

#[tokio::test]
async fn second_binary_on_the_same_data_file_exits_1_with_one_line() {
    use std::process::{Command, Stdio};
    let data = TempFile::new("locked-bin");
    let _lock = TempFile(side(&data.0, ".lock"));
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_b24-emulator"))
            .args(["--listen", "127.0.0.1:0", "--webhook", "1:s3cr3t", "--data"])
            .arg(&data.0)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn b24-emulator")
    };
    let mut first = Child(spawn());
    assert!(first.listening_url().await.starts_with("http://127.0.0.1:"));
    let out = Command::new(env!("CARGO_BIN_EXE_b24-emulator"))
        .args(["--listen", "127.0.0.1:0", "--data"])
        .arg(&data.0)
        .output()
        .expect("run b24-emulator");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with("error: data file ")
            && lines[0].contains(&data.0.display().to_string()),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "no listening line");
    // Once the first one stops, the file can be used again.
    let _ = first.0.kill();
    let _ = first.0.wait();
    let mut third = Child(spawn());
    assert!(third.listening_url().await.starts_with("http://127.0.0.1:"));
}

// ---------------------------------------------------------------------------------------------
// Public decoders (the entry points fuzz targets use)
// ---------------------------------------------------------------------------------------------

#[test]
fn public_decoders_apply_php_limits() {
    let php = InputLimits::default();
    assert_eq!(
        (php.max_input_vars, php.max_input_nesting_level),
        (1000, 64)
    );
    assert_eq!(php.post_max_size, 8 * 1024 * 1024);
    let flat = |n: usize| {
        (1..=n)
            .map(|i| format!("v{i}=1"))
            .collect::<Vec<_>>()
            .join("&")
    };
    assert_eq!(decode::query_string(&flat(1000), &php).len(), 1000);
    assert_eq!(decode::query_string(&flat(1001), &php).len(), 1000);
    assert_eq!(decode::form_body(flat(1001).as_bytes(), &php).len(), 1001);
    assert_eq!(decode::form_body(flat(1002).as_bytes(), &php).len(), 1001);
    let deep = |n: usize| format!("A{}=1", "[a]".repeat(n));
    assert_eq!(decode::query_string(&deep(64), &php).len(), 1);
    assert!(decode::query_string(&deep(65), &php).is_empty());
    assert!(
        decode::request_body(
            "application/x-www-form-urlencoded",
            deep(65).as_bytes(),
            &php
        )
        .is_empty()
    );
    assert_eq!(
        Value::Object(decode::json_body(br#"{"A":[1]}"#)),
        json!({"A": [1]})
    );
    assert!(decode::json_body("[".repeat(513).as_bytes()).is_empty());
    assert_eq!(decode::json_depth(b"{\"a\":[[\"[[[\"]]}"), 3);
    let multipart = "--B\r\nContent-Disposition: form-data; name=\"A[x]\"\r\n\r\n1\r\n--B--\r\n";
    assert_eq!(
        Value::Object(decode::multipart_body(
            "multipart/form-data; boundary=B",
            multipart.as_bytes(),
            &php
        )),
        json!({"A": {"x": "1"}})
    );
    let (method, params) = decode::batch_command("user.get?ID=$result[a][ID]&FILTER[x]=1", &php);
    assert_eq!(method, "user.get");
    assert_eq!(params["FILTER"], json!({"x": "1"}));
    assert!(params.contains_key("ID"));
}
