//! Thin wrappers over libc. Every `unsafe` block of the program (apart from
//! the OpenSSL binding in `tls`) lives below this module, each with a
//! `// SAFETY:` line; the rest of the crate sees safe functions that return
//! `io::Result`.

/// Calls a libc function and maps a negative return value to
/// `io::Error::last_os_error()`. Must be used inside an `unsafe` block whose
/// `// SAFETY:` comment justifies the call's arguments.
macro_rules! syscall {
    ($fn: ident ( $($arg: expr),* $(,)* ) ) => {{
        let res = libc::$fn($($arg, )*);
        if res < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}
#[allow(unused_imports)]
pub(crate) use syscall;

pub mod epoll;
pub mod memory;
mod msg;
pub mod netdb;
pub mod packet;
pub mod pipe;
pub mod poll;
pub mod process;
pub mod signal;
pub mod socket;
pub mod syslog;
pub mod thread;
pub mod time;
pub mod udp;

/// Whether `e` says that this process or host ran short of something
/// (descriptors, memory, socket buffers, local addresses or ports) rather
/// than that a peer failed: waiting, not blaming the peer, is the cure.
pub fn is_local_shortage(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::ENOBUFS | libc::EADDRNOTAVAIL)
    )
}

/// The process id.
pub fn getpid() -> u32 {
    std::process::id()
}

/// Seconds since the epoch.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
