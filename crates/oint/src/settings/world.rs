//! What settings may look at (the environment, standard input, the home, config and data
//! directories), passed in so that tests can give a fake world.

use std::path::{Path, PathBuf};

use crate::files::SECRET_CAP;

/// What the resolver may look at, so tests can give it a fake world.
pub struct World<'a> {
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub stdin: &'a dyn Fn() -> Result<String, String>,
    pub home: Option<PathBuf>,
    pub config_dir: Option<PathBuf>,
    /// Where the OAuth token store goes by default.
    pub data_dir: Option<PathBuf>,
}

impl World<'_> {
    pub(crate) fn var(&self, name: &str) -> Option<String> {
        (self.env)(name).filter(|v| !v.trim().is_empty())
    }

    /// `path` with a leading `~` replaced by the home directory.
    pub fn expand(&self, path: &Path) -> PathBuf {
        match (path.strip_prefix("~"), &self.home) {
            (Ok(rest), Some(home)) => home.join(rest),
            _ => path.to_path_buf(),
        }
    }
}

/// The real environment, standard input and home directory.
pub fn real_world<T>(f: impl FnOnce(&World<'_>) -> T) -> T {
    let env = |name: &str| std::env::var(name).ok();
    let stdin = || {
        use std::io::{BufRead, Read};
        // A token is short: /dev/zero must not fill the memory.
        let mut line = Vec::new();
        std::io::stdin()
            .lock()
            .take(SECRET_CAP + 1)
            .read_until(b'\n', &mut line)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
        if line.len() as u64 > SECRET_CAP && !line.ends_with(b"\n") {
            return Err(format!(
                "the first line of standard input is longer than {} KiB; a token is short: pipe just the token",
                SECRET_CAP / 1024
            ));
        }
        String::from_utf8(line)
            .map_err(|_| "standard input is not UTF-8 text; pipe just the token".to_string())
    };
    f(&World {
        env: &env,
        stdin: &stdin,
        home: dirs::home_dir(),
        config_dir: dirs::config_dir(),
        data_dir: dirs::data_dir(),
    })
}
