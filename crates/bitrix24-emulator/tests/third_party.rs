//! A real third-party client against the emulator: the official Python SDK (`b24pysdk`,
//! from PyPI) sends a notification over HTTPS and reads it back with `im.notify.get`.
//!
//! `.ci/run` installs the SDK into a throwaway virtualenv and points
//! `OINT_THIRD_PARTY_PYTHON` at its interpreter. Without that variable the test is skipped
//! with a message, except under CI, where a missing SDK is a failure.

use std::path::PathBuf;
use std::process::Command;

use bitrix24_emulator::{Config, Emulator};
use serde_json::Value;

const SECRET: &str = "pysdk-webhook-secret";

fn third_party_python() -> Option<PathBuf> {
    match std::env::var_os("OINT_THIRD_PARTY_PYTHON").filter(|p| !p.is_empty()) {
        Some(python) => Some(PathBuf::from(python)),
        None if std::env::var_os("CI").is_some() => {
            panic!(
                "CI must set OINT_THIRD_PARTY_PYTHON to a python with b24pysdk installed (see .ci/run)"
            )
        }
        None => {
            eprintln!(
                "skipped: set OINT_THIRD_PARTY_PYTHON to a python with b24pysdk installed to run this test"
            );
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn official_python_sdk_sends_and_reads_back_over_https() {
    let Some(python) = third_party_python() else {
        return;
    };
    let tls = tempfile::tempdir().unwrap();
    let emu = Emulator::start(Config::default().webhook(1, SECRET).tls(tls.path()))
        .await
        .unwrap();
    assert!(emu.url().starts_with("https://"));
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/third_party/b24pysdk_roundtrip.py");
    let domain = emu.addr().to_string();
    let ca = tls.path().join("ca.pem");
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .arg(domain)
            .arg(format!("1/{SECRET}"))
            .env("REQUESTS_CA_BUNDLE", ca)
            .output()
            .expect("python runs")
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the SDK failed:\n{stderr}");
    let answer: Value = serde_json::from_slice(&output.stdout).expect("one JSON line");

    let stored = emu.notifications();
    assert_eq!(stored.len(), 1);
    assert_eq!(
        answer["sent"].as_u64(),
        Some(stored[0].id),
        "the id the SDK got is the stored one"
    );
    assert_eq!(stored[0].message, "Hello from b24pysdk");
    assert!(
        stored[0]
            .attach
            .as_ref()
            .unwrap()
            .to_string()
            .contains("official Python SDK")
    );
    let found = &answer["found"][0];
    assert_eq!(
        found["text"], "Hello from b24pysdk",
        "read back through im.notify.get: {answer}"
    );
    assert_eq!(found["notify_read"], "N");
    assert_eq!(answer["total_count"], 1);
}
