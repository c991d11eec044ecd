//! The pty master's window size.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// `TIOCSWINSZ` on the master: the container's terminal gets `height` rows and `width`
/// columns (and its foreground process group SIGWINCH).
pub fn resize(master: &File, height: u16, width: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one `winsize` through a pointer to a live local; the
    // descriptor is open for the call (borrowed from `master`).
    let rc = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &raw const ws) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
