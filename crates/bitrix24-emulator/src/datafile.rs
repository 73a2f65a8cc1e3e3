//! The `--data` SQLite file: kept private, and used by one emulator at a time.
//!
//! The file holds live access and refresh tokens, so it and SQLite's side files (`-wal`,
//! `-shm`, `-journal`) are owner-only (0600). SQLite gives side files the main file's mode, so
//! creating the main file 0600 before SQLite opens it covers them. An existing file (or side
//! file) that group or others may access is tightened to owner-only rather than refused: the
//! emulator wrote it itself (older versions followed the umask), refusing would strand every
//! such file, and the tokens about to be written are what needs protecting.
//!
//! Two emulators on one file would each keep their own in-memory copy and overwrite each
//! other's ids, so the second one refuses to start. The lock is an advisory `flock` on
//! `FILE.lock` (not on the database itself: closing any extra descriptor of the database would
//! drop SQLite's own POSIX locks). The lock file is left in place when the emulator stops;
//! removing it could let two processes lock different files of the same name.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use crate::Error;

/// Held while the emulator uses the data file; dropping it releases the lock.
#[derive(Debug)]
pub struct DataLock {
    _file: File,
}

/// `FILE.lock` beside the data file.
pub fn lock_path(data: &Path) -> PathBuf {
    let mut name = data.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Take the lock, then make sure the data file exists and it and its side files are private.
/// Only regular files are touched: a directory, device or FIFO given as `--data` is refused
/// before anything is created or chmod-ed, and so are side files or a lock file that are
/// symlinks (a chmod through them would change some other file).
pub fn prepare(data: &Path) -> Result<DataLock, Error> {
    if let Ok(meta) = std::fs::metadata(data)
        && !meta.is_file()
    {
        return Err(Error::Config(format!(
            "--data {} is not a regular file; give the path of an SQLite file (it is created if missing)",
            data.display()
        )));
    }
    let lock = lock_path(data);
    regular_or_absent(&lock)?;
    let file = private_options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock)
        .map_err(|e| Error::Config(format!("cannot open the lock file {}: {e}", lock.display())))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(Error::DataInUse {
                path: data.to_owned(),
            });
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(Error::Config(format!(
                "cannot lock {}: {e}",
                lock.display()
            )));
        }
    }
    tighten(&lock)?;
    if !data.exists() {
        private_options()
            .write(true)
            .create(true)
            .truncate(false)
            .open(data)
            .map_err(|e| {
                Error::Config(format!(
                    "cannot create the data file {}: {e}",
                    data.display()
                ))
            })?;
    }
    tighten(data)?;
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut name = data.as_os_str().to_owned();
        name.push(suffix);
        regular_or_absent(Path::new(&name))?;
        tighten(Path::new(&name))?;
    }
    Ok(DataLock { _file: file })
}

/// Refuse a side file that exists but is not a plain regular file (symlinks included).
fn regular_or_absent(path: &Path) -> Result<(), Error> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_file() => Err(Error::Config(format!(
            "{} is not a regular file (a symlink, directory or device); remove it",
            path.display()
        ))),
        _ => Ok(()),
    }
}

fn private_options() -> OpenOptions {
    #[cfg_attr(not(unix), allow(unused_mut))] // only unix has a mode to set
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

/// Remove group and other permissions from an existing file.
#[cfg(unix)]
fn tighten(path: &Path) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt as _;
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(()); // absent: SQLite creates it from the main file's mode
    };
    if !meta.is_file() {
        return Ok(()); // refused by the callers' checks; never chmod anything else
    }
    let mode = meta.permissions().mode();
    if mode & 0o077 == 0 {
        return Ok(());
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700)).map_err(|e| {
        Error::Config(format!(
            "{} may be read by others and cannot be made private ({e}); run chmod 600 on it",
            path.display()
        ))
    })?;
    tracing::warn!(file = %path.display(), "data file was readable by others; made it owner-only (0600)");
    Ok(())
}

#[cfg(not(unix))]
fn tighten(_path: &Path) -> Result<(), Error> {
    Ok(())
}
