//! Replays kept fuzz inputs through a target's check, for the crates' `fuzz_regressions.rs`.

use std::path::PathBuf;

/// Runs `check` on every file in `fuzz/regressions/TARGET/`, and fails naming each input whose
/// check panicked. Returns how many inputs ran.
pub fn replay(target: &str, check: impl Fn(&[u8])) -> usize {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/regressions")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let mut failed = Vec::new();
    for file in &files {
        let data = std::fs::read(file).expect("a kept input");
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&data))).is_err() {
            failed.push(file.display().to_string());
        }
    }
    assert!(failed.is_empty(), "kept fuzz inputs fail again: {failed:?}");
    files.len()
}
