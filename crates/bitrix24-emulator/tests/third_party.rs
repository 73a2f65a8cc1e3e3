//! Real third-party clients against the emulator, each driving it over HTTPS (`--tls`):
//!
//! - the official Python SDK `b24pysdk` (PyPI) sends a notification and reads it back;
//! - `b24pysdk`, `fast_bitrix24` and `pybitrix24` (PyPI) and the official JS SDK
//!   `@bitrix24/b24jssdk` (npm, under Node.js) each run a suite: webhook calls
//!   (`im.notify.personal.add` / `im.notify.system.add` with ATTACH and TAG, `im.notify.get`,
//!   `im.notify.read`, `im.notify.delete`), a `batch` whose second command uses `$result[…]`
//!   of the first, the SDK's fetch-all-pages helper over 120 users where it has one, and an
//!   OAuth call with an expired access token that the SDK refreshes at the emulator's
//!   `/oauth/token/` and retries.
//!
//! Each SDK is found through one variable, `OINT_THIRD_PARTY_<SDK>_<WHAT>`: a virtualenv's
//! python (`…_PYTHON`) or an npm `node_modules` directory (`…_NODE_MODULES`; `node` comes from
//! `PATH`). `.ci/run` installs each into a throwaway directory and sets the variables. Without
//! one the test reports itself as ignored, with the reason, except under CI (`CI` set), where a
//! missing SDK is a failure. The scripts print what the SDK answered; the checks here read the
//! emulator's own state (stored notifications, request log, OAuth counters). The harness is
//! `libtest-mimic` (`harness = false`), which takes the usual test arguments (`--ignored`, a
//! name filter, `--list`); a further SDK is one more [`Sdk`] entry.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

use bitrix24_emulator::{
    AuthKind, BUILTIN_CLIENT_ID, BUILTIN_CLIENT_SECRET, Config, Emulator, Notification,
};
use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::{Value, json};

const SECRET: &str = "pysdk-webhook-secret";

/// A third-party client: the variable naming its interpreter, and its test.
struct Sdk {
    test: &'static str,
    /// What the environment variable must point at, for the messages.
    needs: &'static str,
    var: &'static str,
    run: fn(PathBuf) -> Result<(), Failed>,
}

const SDKS: &[Sdk] = &[
    Sdk {
        test: "official_python_sdk_sends_and_reads_back_over_https",
        needs: "a python with b24pysdk installed",
        var: "OINT_THIRD_PARTY_B24PYSDK_PYTHON",
        run: b24pysdk_roundtrip,
    },
    Sdk {
        test: "official_python_sdk_webhook_batch_as_list_and_oauth_refresh",
        needs: "a python with b24pysdk installed",
        var: "OINT_THIRD_PARTY_B24PYSDK_PYTHON",
        run: b24pysdk_suite,
    },
    Sdk {
        test: "fast_bitrix24_webhook_batch_get_all_and_oauth_refresh",
        needs: "a python with fast_bitrix24 installed",
        var: "OINT_THIRD_PARTY_FAST_BITRIX24_PYTHON",
        run: fast_bitrix24_suite,
    },
    Sdk {
        test: "pybitrix24_webhook_batch_and_oauth_refresh",
        needs: "a python with pybitrix24 installed",
        var: "OINT_THIRD_PARTY_PYBITRIX24_PYTHON",
        run: pybitrix24_suite,
    },
    Sdk {
        test: "official_js_sdk_webhook_batch_call_list_and_oauth_refresh",
        needs: "a node_modules directory with @bitrix24/b24jssdk installed",
        var: "OINT_THIRD_PARTY_B24JSSDK_NODE_MODULES",
        run: b24jssdk_suite,
    },
];

/// What a missing SDK means here: a failure under CI, an ignored test elsewhere.
enum Found {
    At(PathBuf),
    Missing(String),
}

fn find(sdk: &Sdk) -> Found {
    match std::env::var_os(sdk.var).filter(|p| !p.is_empty()) {
        Some(path) => Found::At(PathBuf::from(path)),
        None => Found::Missing(format!("set {} to {} to run this test", sdk.var, sdk.needs)),
    }
}

fn main() -> ExitCode {
    let args = Arguments::from_args();
    let ci = std::env::var_os("CI").is_some();
    let trials = SDKS
        .iter()
        .map(|sdk| match find(sdk) {
            Found::At(path) => {
                let run = sdk.run;
                Trial::test(sdk.test, move || run(path))
            }
            Found::Missing(why) if ci => Trial::test(sdk.test, move || {
                Err(format!("CI must run this test: {why} (see .ci/run)").into())
            }),
            // libtest-mimic prints no reason for an ignored test, so it goes to stderr too.
            Found::Missing(why) => {
                eprintln!("{}: ignored: {why}", sdk.test);
                Trial::test(sdk.test, || Ok(())).with_ignored_flag(true)
            }
        })
        .collect();
    libtest_mimic::run(&args, trials).exit_code()
}

/// Turns a failed check into the test's failure message.
fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), Failed> {
    if ok { Ok(()) } else { Err(what().into()) }
}

fn b24pysdk_roundtrip(python: PathBuf) -> Result<(), Failed> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let tls = tempfile::tempdir()?;
        let emu = Emulator::start(Config::default().webhook(1, SECRET).tls(tls.path())).await?;
        check(emu.url().starts_with("https://"), || emu.url())?;
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/third_party/b24pysdk_roundtrip.py");
        let domain = emu.addr().to_string();
        let ca = tls.path().join("ca.pem");
        let output = tokio::task::spawn_blocking(move || {
            Command::new(python)
                .arg(script)
                .arg(domain)
                .arg(format!("1/{SECRET}"))
                .env("REQUESTS_CA_BUNDLE", ca)
                .output()
        })
        .await??;
        let stderr = String::from_utf8_lossy(&output.stderr);
        check(output.status.success(), || {
            format!("the SDK failed:\n{stderr}")
        })?;
        let answer: Value = serde_json::from_slice(&output.stdout)
            .map_err(|e| format!("not one JSON line ({e}): {stderr}"))?;

        let stored = emu.notifications();
        check(stored.len() == 1, || format!("stored: {stored:?}"))?;
        let n = &stored[0];
        check(answer["sent"].as_u64() == Some(n.id), || {
            format!("the id the SDK got is not the stored one: {answer} vs {n:?}")
        })?;
        check(n.message == "Hello from b24pysdk", || n.message.clone())?;
        let attach = n.attach.as_ref().map(Value::to_string).unwrap_or_default();
        check(attach.contains("official Python SDK"), || attach.clone())?;
        let found = &answer["found"][0];
        check(found["text"] == "Hello from b24pysdk", || {
            format!("read back through im.notify.get: {answer}")
        })?;
        check(found["notify_read"] == "N", || answer.to_string())?;
        check(answer["total_count"] == 1, || answer.to_string())?;
        Ok(())
    })
}

/// The webhook of the suites (user 1); OAuth tokens are issued to user 2.
const SUITE_SECRET: &str = "suite-webhook-secret";
/// Users the fetch-all helpers must page through (the portal pages by 50).
const USERS: u64 = 120;

/// How a suite script is started, and what it is expected to cover.
struct Suite {
    /// The interpreter (`python`, `node`) and the arguments before the config.
    program: PathBuf,
    args: Vec<PathBuf>,
    /// The variable naming the CA file for this runtime.
    ca_var: &'static str,
    /// Prefix of the messages the script sends ("fast personal", …).
    prefix: &'static str,
    /// What the script's ATTACH says.
    attach: &'static str,
    /// Whether the SDK has a fetch-all-pages helper.
    pages: bool,
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/third_party")
        .join(name)
}

fn b24pysdk_suite(python: PathBuf) -> Result<(), Failed> {
    run_suite(Suite {
        program: python,
        args: vec![script("b24pysdk_suite.py")],
        ca_var: "REQUESTS_CA_BUNDLE",
        prefix: "py",
        attach: "sent by b24pysdk",
        pages: true,
    })
}

fn fast_bitrix24_suite(python: PathBuf) -> Result<(), Failed> {
    run_suite(Suite {
        program: python,
        args: vec![script("fast_bitrix24_suite.py")],
        ca_var: "SSL_CERT_FILE",
        prefix: "fast",
        attach: "sent by fast_bitrix24",
        pages: true,
    })
}

fn pybitrix24_suite(python: PathBuf) -> Result<(), Failed> {
    run_suite(Suite {
        program: python,
        args: vec![script("pybitrix24_suite.py")],
        ca_var: "SSL_CERT_FILE",
        prefix: "pyb",
        attach: "sent by pybitrix24",
        // pybitrix24 has no fetch-all helper (only call, call_batch and their webhook forms).
        pages: false,
    })
}

fn b24jssdk_suite(node_modules: PathBuf) -> Result<(), Failed> {
    run_suite(Suite {
        program: PathBuf::from("node"),
        args: vec![script("b24jssdk_suite.mjs"), node_modules],
        ca_var: "NODE_EXTRA_CA_CERTS",
        prefix: "js",
        attach: "sent by b24jssdk",
        pages: true,
    })
}

/// Start an HTTPS emulator with 120 users, run the suite script once, check the emulator.
fn run_suite(suite: Suite) -> Result<(), Failed> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let tls = tempfile::tempdir()?;
        let config = Config::default()
            .users(USERS)
            .webhook(1, SUITE_SECRET)
            .tls(tls.path());
        let emu = Emulator::start(config).await?;
        // ttl 0: expired the second it is issued, so the SDK's first OAuth call is refused.
        let tokens = emu.issue_tokens(&json!({"user_id": 2, "ttl": 0}))?;
        let access = tokens["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let refresh = tokens["refresh_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        check(!access.is_empty() && !refresh.is_empty(), || {
            "the control plane issued no token pair".to_owned()
        })?;
        let origin = emu.url();
        check(origin.starts_with("https://"), || origin.clone())?;
        let cfg = json!({
            "origin": origin,
            "host": emu.addr().to_string(),
            "user_id": 1,
            "secret": SUITE_SECRET,
            "oauth": {
                "access_token": access,
                "refresh_token": refresh,
                "member_id": tokens["member_id"],
                "client_id": BUILTIN_CLIENT_ID,
                "client_secret": BUILTIN_CLIENT_SECRET,
            },
        });
        let ca = tls.path().join("ca.pem");
        let (program, args, ca_var) = (suite.program.clone(), suite.args.clone(), suite.ca_var);
        let output = tokio::task::spawn_blocking(move || {
            Command::new(&program)
                .args(&args)
                .arg(cfg.to_string())
                .env(ca_var, &ca)
                .output()
                .map_err(|e| format!("cannot start {}: {e}", program.display()))
        })
        .await??;
        // SDK tracebacks may quote URLs and parameters: keep the secrets out of the failure.
        let mut stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        for secret in [SUITE_SECRET, &access, &refresh] {
            stderr = stderr.replace(secret, "***");
        }
        check(output.status.success(), || {
            format!("the SDK failed:\n{stderr}")
        })?;
        let answer: Value = serde_json::from_slice(&output.stdout)
            .map_err(|e| format!("not one JSON line ({e}): {stderr}"))?;
        check_suite(&emu, &suite, &answer)
            .map_err(|e| format!("{e}\nthe script said: {answer}").into())
    })
}

fn id_of(answer: &Value, key: &str) -> Result<u64, String> {
    answer[key]
        .as_u64()
        .ok_or_else(|| format!("no id in `{key}`"))
}

fn stored(all: &[Notification], id: u64) -> Result<&Notification, String> {
    all.iter()
        .find(|n| n.id == id)
        .ok_or_else(|| format!("notification {id} is not stored: {all:?}"))
}

fn attach_text(n: &Notification) -> String {
    n.attach.as_ref().map(Value::to_string).unwrap_or_default()
}

fn ensure(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok { Ok(()) } else { Err(what()) }
}

/// What each suite must have left at the emulator.
fn check_suite(emu: &Emulator, suite: &Suite, answer: &Value) -> Result<(), String> {
    let all = emu.notifications();
    let prefix = suite.prefix;

    // Webhook personal notification: stored for user 1 with its ATTACH, and read since.
    let personal = stored(&all, id_of(answer, "personal")?)?;
    ensure(personal.message == format!("{prefix} personal"), || {
        format!("{personal:?}")
    })?;
    ensure(personal.r#type == "USER" && personal.user_id == 1, || {
        format!("{personal:?}")
    })?;
    ensure(attach_text(personal).contains(suite.attach), || {
        format!("attach: {personal:?}")
    })?;
    // A webhook's TAG is dropped by the portal (portal-behaviour: TAG only for OAuth apps).
    ensure(personal.tag.is_none(), || {
        format!("webhook TAG kept: {personal:?}")
    })?;
    ensure(personal.read, || {
        format!("im.notify.read did not mark it: {personal:?}")
    })?;

    // Webhook system notification: was listed by im.notify.get, then deleted.
    let system = id_of(answer, "system")?;
    let listed: BTreeSet<u64> = answer["got_ids"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    ensure(
        listed.contains(&personal.id) && listed.contains(&system),
        || format!("im.notify.get listed {listed:?}"),
    )?;
    ensure(all.iter().all(|n| n.id != system), || {
        format!("im.notify.delete left {system}: {all:?}")
    })?;
    ensure(answer["read"] == true && answer["delete"] == true, || {
        "read/delete did not answer true".to_owned()
    })?;

    // Batch: the second command's USER_ID came from `$result[who][0][ID]` (user 7).
    let sent = stored(&all, id_of(answer, "batch_send")?)?;
    ensure(sent.user_id == 7 && sent.message == "batch ref", || {
        format!("$result reference not resolved: {sent:?}")
    })?;

    let log = emu.requests();
    if suite.pages {
        let ids: Vec<u64> = answer["users"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default();
        let distinct: BTreeSet<u64> = ids.iter().copied().collect();
        ensure(
            ids.len() as u64 == USERS && distinct == (1..=USERS).collect(),
            || {
                format!(
                    "fetch-all gave {} ids, {} distinct, of {USERS}",
                    ids.len(),
                    distinct.len()
                )
            },
        )?;
        // The helper's first page is a plain user.get (the rest may come in a batch).
        ensure(
            log.iter().any(|r| r.method.as_deref() == Some("user.get")),
            || "no user.get request logged".to_owned(),
        )?;
    }
    // Nothing was refused and silently retried, except the expired token below.
    let refused: Vec<_> = log
        .iter()
        .filter(|r| r.status != 200)
        .map(|r| (r.method.clone(), r.auth, r.status, r.error.clone()))
        .collect();
    let expected = [(
        Some("im.notify.system.add".to_owned()),
        AuthKind::OAuth,
        401,
        Some("expired_token".to_owned()),
    )];
    ensure(refused == expected, || {
        format!("refused requests: {refused:?}")
    })?;

    // OAuth: the expired token was refused once, refreshed at /oauth/token/, and the retry
    // stored the notification with the app's TAG.
    let oauth = stored(&all, id_of(&answer["oauth"], "sent")?)?;
    ensure(oauth.r#type == "SYSTEM" && oauth.user_id == 2, || {
        format!("{oauth:?}")
    })?;
    ensure(oauth.message.ends_with(&format!("{prefix} oauth")), || {
        format!("{oauth:?}")
    })?;
    let tag = format!("{}_OAUTH", prefix.to_ascii_uppercase());
    let tag_ok = oauth
        .tag
        .as_deref()
        .is_some_and(|t| t.starts_with("MP|") && t.ends_with(&format!("|{tag}")));
    ensure(tag_ok, || format!("app TAG not stored: {oauth:?}"))?;
    ensure(attach_text(oauth).contains(suite.attach), || {
        format!("{oauth:?}")
    })?;
    let refreshes = emu.refreshes();
    ensure(refreshes.succeeded == 1 && refreshes.failed == 0, || {
        format!("token endpoint: {refreshes:?}")
    })?;
    let oauth_calls: Vec<_> = log
        .iter()
        .filter(|r| {
            r.auth == AuthKind::OAuth && r.method.as_deref() == Some("im.notify.system.add")
        })
        .map(|r| (r.status, r.error.clone()))
        .collect();
    ensure(
        oauth_calls == [(401, Some("expired_token".to_owned())), (200, None)],
        || format!("OAuth calls: {oauth_calls:?}"),
    )?;
    Ok(())
}
