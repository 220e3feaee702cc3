//! The system log (syslog(3)), used by daemons once stderr is gone
//! (doc/pen-0.34.1.md, "Daemon mode and the debug channel": facility user,
//! debug lines at priority debug, fatal errors at priority err).

use std::ffi::{CStr, CString};

/// Message priorities used by pen's programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// Fatal and serious errors (`LOG_ERR`).
    Err,
    /// Problems the program survives (`LOG_WARNING`).
    Warning,
    /// Noteworthy events (`LOG_INFO`).
    Info,
    /// Debug tracing (`LOG_DEBUG`).
    Debug,
}

impl Priority {
    fn raw(self) -> libc::c_int {
        match self {
            Priority::Err => libc::LOG_ERR,
            Priority::Warning => libc::LOG_WARNING,
            Priority::Info => libc::LOG_INFO,
            Priority::Debug => libc::LOG_DEBUG,
        }
    }
}

/// Opens the connection to the system logger with the given identifier,
/// facility user, the process id in every message and the console as
/// fallback. The connection is made at once (`LOG_NDELAY`) so that logging
/// keeps working after a chroot into a directory without `/dev/log`.
pub fn open(ident: &'static CStr) {
    // SAFETY: ident is a 'static NUL-terminated string, as openlog requires
    // (it keeps the pointer); the other arguments are constants.
    unsafe {
        libc::openlog(
            ident.as_ptr(),
            libc::LOG_PID | libc::LOG_CONS | libc::LOG_NDELAY,
            libc::LOG_USER,
        )
    };
}

/// Sends one message to the system logger. Interior NUL bytes are removed
/// (they would otherwise cut the message short).
pub fn send(priority: Priority, msg: &str) {
    let bytes: Vec<u8> = msg.bytes().filter(|&b| b != 0).collect();
    // Cannot fail: all NUL bytes were just removed.
    let Ok(c_msg) = CString::new(bytes) else {
        return;
    };
    // SAFETY: the format is a constant "%s" and its one argument a valid
    // NUL-terminated string, so syslog reads nothing else.
    unsafe { libc::syslog(priority.raw(), c"%s".as_ptr(), c_msg.as_ptr()) };
}

/// The system logger's socket.
pub const SOCKET: &str = "/dev/log";

/// Whether a system logger listens on [`SOCKET`]; without one (as in many
/// containers) a daemon's messages are lost.
pub fn available() -> bool {
    std::os::unix::net::UnixDatagram::unbound()
        .and_then(|s| s.connect(SOCKET))
        .is_ok()
}
