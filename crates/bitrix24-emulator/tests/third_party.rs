//! Real third-party clients against the emulator. So far the official Python SDK
//! (`b24pysdk`, from PyPI): it sends a notification over HTTPS and reads it back with
//! `im.notify.get`.
//!
//! `.ci/run` installs the SDK into a throwaway virtualenv and points
//! `OINT_THIRD_PARTY_PYTHON` at its interpreter. Without that variable the test reports
//! itself as ignored, with the reason, except under CI (`CI` set), where a missing SDK is a
//! failure. The harness is `libtest-mimic` (`harness = false`), which takes the usual test
//! arguments (`--ignored`, a name filter, `--list`); a further SDK is one more [`Sdk`] entry.

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use bitrix24_emulator::{Config, Emulator};
use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::Value;

const SECRET: &str = "pysdk-webhook-secret";

/// A third-party client: the variable naming its interpreter, and its test.
struct Sdk {
    test: &'static str,
    /// What the environment variable must point at, for the messages.
    needs: &'static str,
    var: &'static str,
    run: fn(PathBuf) -> Result<(), Failed>,
}

const SDKS: &[Sdk] = &[Sdk {
    test: "official_python_sdk_sends_and_reads_back_over_https",
    needs: "a python with b24pysdk installed",
    var: "OINT_THIRD_PARTY_PYTHON",
    run: b24pysdk_roundtrip,
}];

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
