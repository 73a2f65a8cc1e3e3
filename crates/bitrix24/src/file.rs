//! Opening the files other processes share (rate-limit state, token store and its lock), the
//! same way on every platform as far as each allows.
//!
//! - unix: `O_NOFOLLOW | O_NONBLOCK` (a symbolic link fails with `ELOOP`; a FIFO or device
//!   planted in the file's place does not block the open and is refused by the caller's
//!   regular-file check), files created 0600.
//! - Windows: `FILE_FLAG_OPEN_REPARSE_POINT` opens a symbolic link itself rather than its
//!   target, and the caller's check refuses it as not a regular file; there are no FIFOs on
//!   the file system. Files get the directory's inherited ACL (no mode bits).
//! - Elsewhere: nothing; callers check `symlink_metadata` before opening.
//!
//! Locks are std's [`File::lock`](std::fs::File::lock) / `try_lock`: `flock` on unix (as
//! before), `LockFileEx` on Windows; both are released when the file is closed.

use std::fs::OpenOptions;
use std::io;

/// `FILE_FLAG_OPEN_REPARSE_POINT` (winbase.h).
#[cfg(windows)]
const FILE_FLAG_OPEN_REPARSE_POINT: u32 = 0x0020_0000;

/// Makes `options` open the path itself, never through a symbolic link, and never block.
pub(crate) fn no_follow(options: &mut OpenOptions) -> &mut OpenOptions {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
        options.custom_flags(flags.bits() as i32);
    }
    #[cfg(windows)]
    std::os::windows::fs::OpenOptionsExt::custom_flags(options, FILE_FLAG_OPEN_REPARSE_POINT);
    options
}

/// Makes `options` create the file readable and writable by its owner only (0600 on unix).
pub(crate) fn owner_only(options: &mut OpenOptions) -> &mut OpenOptions {
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(options, 0o600);
    options
}

/// Whether an `open` through [`no_follow`] failed because the path is a symbolic link.
pub(crate) fn is_link_error(error: &io::Error) -> bool {
    #[cfg(unix)]
    return error.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error());
    #[cfg(not(unix))]
    {
        // Windows opens the link itself and the caller refuses it after the open.
        let _ = error;
        false
    }
}
