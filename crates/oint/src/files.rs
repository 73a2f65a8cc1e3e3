//! Reading files the user names, safely: never blocking on a FIFO, never reading a device
//! without end, never more than a cap.
//!
//! A leaf module shared by the config file, secret files, `--blocks`/`--attach` files,
//! `--params @FILE` and `--out`.

use std::path::Path;

/// Largest token or secret: a file, or the first line of standard input.
pub const SECRET_CAP: u64 = 64 * 1024;
/// Largest config file.
pub const CONFIG_CAP: u64 = 1024 * 1024;

/// Why [`read_regular`] failed; the caller names the flag or setting.
#[derive(Debug)]
pub enum ReadError {
    NotFound,
    /// A directory, FIFO, device or socket: it could block, or never end.
    NotRegular(&'static str),
    TooLarge(u64),
    Io(std::io::Error),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::NotFound => write!(f, "does not exist"),
            ReadError::NotRegular(kind) => write!(f, "is not a regular file (it is {kind})"),
            ReadError::TooLarge(cap) => write!(f, "is larger than {} KiB", cap / 1024),
            ReadError::Io(e) => write!(f, "cannot be read ({e})"),
        }
    }
}

/// Opens `path` without blocking (a FIFO would wait for a writer), refuses anything but a
/// regular file, and reads at most `cap` bytes.
pub fn read_regular(path: &Path, cap: u64) -> Result<(Vec<u8>, std::fs::Metadata), ReadError> {
    use std::io::Read;
    let file = open_nonblocking(path, false)?;
    let meta = file.metadata().map_err(ReadError::Io)?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular(kind_of(&meta)));
    }
    let mut bytes = Vec::new();
    file.take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() as u64 > cap {
        return Err(ReadError::TooLarge(cap));
    }
    Ok((bytes, meta))
}

/// Opens for reading, or for writing (creating the file) with `write`, without blocking on a
/// FIFO.
pub fn open_nonblocking(path: &Path, write: bool) -> Result<std::fs::File, ReadError> {
    let mut options = std::fs::OpenOptions::new();
    if write {
        options.write(true).create(true);
    } else {
        options.read(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32);
    }
    options.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ReadError::NotFound,
        _ => ReadError::Io(e),
    })
}

/// "a directory", "a FIFO", …, for [`ReadError::NotRegular`].
pub fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if meta.is_dir() {
        "a directory"
    } else {
        "not a file"
    }
}

/// A file name for per-portal state (rate-limit bucket, token store) from a portal's
/// `host[:port]`: anything but letters, digits, `.` and `-` becomes `_`.
pub fn file_name_for(authority: &str) -> String {
    authority
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Largest `--text -`: far above any notification a person reads.
pub const STDIN_TEXT_CAP: u64 = 1024 * 1024;

/// All of standard input as text, for `--text -`: at most `cap` bytes (more is refused, never
/// cut), UTF-8, one trailing line break dropped (`echo`, `df -h` end with one).
pub fn read_stdin_text(cap: u64) -> Result<String, String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::io::stdin()
        .lock()
        .take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read standard input: {e}"))?;
    if bytes.len() as u64 > cap {
        return Err(format!(
            "standard input is longer than {} KiB; send a summary, or attach the rest as a file link",
            cap / 1024
        ));
    }
    let mut text =
        String::from_utf8(bytes).map_err(|_| "standard input is not UTF-8 text".to_string())?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(text)
}
