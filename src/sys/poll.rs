//! poll(2) over a small set of descriptors.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

pub const IN: i16 = libc::POLLIN;
pub const OUT: i16 = libc::POLLOUT;
pub const ERR: i16 = libc::POLLERR;
pub const HUP: i16 = libc::POLLHUP;
pub const NVAL: i16 = libc::POLLNVAL;
/// The peer shut down its sending side (Linux).
pub const RDHUP: i16 = libc::POLLRDHUP;

/// One entry of a pollfd array; layout-identical to `libc::pollfd`.
///
/// It keeps only the descriptor's number: poll(2) does no I/O, so an entry
/// that outlived its descriptor can only report readiness (or POLLNVAL),
/// and callers may keep an array across the loops that rebuild it.
#[derive(Clone, Copy)]
#[repr(transparent)]
pub struct PollFd(libc::pollfd);

impl PollFd {
    pub fn new(fd: BorrowedFd<'_>, events: i16) -> PollFd {
        PollFd(libc::pollfd {
            fd: fd.as_raw_fd(),
            events,
            revents: 0,
        })
    }
    /// An entry poll() skips (a negative descriptor): it never reports an
    /// event, not even POLLHUP.
    pub fn unused() -> PollFd {
        PollFd(libc::pollfd {
            fd: -1,
            events: 0,
            revents: 0,
        })
    }
    pub fn fd(&self) -> RawFd {
        self.0.fd
    }
    pub fn set_events(&mut self, events: i16) {
        self.0.events = events;
    }
    pub fn events(&self) -> i16 {
        self.0.events
    }
    pub fn revents(&self) -> i16 {
        self.0.revents
    }
}

impl std::fmt::Debug for PollFd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PollFd(fd {}, events {:#x}, revents {:#x})",
            self.0.fd, self.0.events, self.0.revents
        )
    }
}

/// A wait's timeout in milliseconds for poll(2) and epoll_wait(2): -1 for
/// none, rounded up so a 0.5 ms timeout does not become a busy loop.
pub(super) fn timeout_ms(timeout: Option<Duration>) -> libc::c_int {
    match timeout {
        None => -1,
        Some(d) => d.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as libc::c_int,
    }
}

/// The count a wait returned, with EINTR as `Ok(0)` so callers re-check
/// their signal flags.
pub(super) fn ready_count(res: libc::c_int) -> io::Result<usize> {
    if res >= 0 {
        return Ok(res as usize);
    }
    let err = io::Error::last_os_error();
    if err.kind() == io::ErrorKind::Interrupted {
        return Ok(0);
    }
    Err(err)
}

/// Waits until one of `fds` is ready or `timeout` passes (`None` = forever).
/// EINTR is reported as `Ok(0)` so callers re-check their signal flags.
pub fn poll(fds: &mut [PollFd], timeout: Option<Duration>) -> io::Result<usize> {
    let ms = timeout_ms(timeout);
    // SAFETY: PollFd is repr(transparent) over libc::pollfd, the pointer and
    // length come from a live mutable slice.
    ready_count(unsafe { libc::poll(fds.as_mut_ptr().cast(), fds.len() as libc::nfds_t, ms) })
}

/// Waits for one descriptor; returns its revents (0 on timeout).
pub fn wait_one(fd: BorrowedFd<'_>, events: i16, timeout: Option<Duration>) -> io::Result<i16> {
    let mut p = [PollFd(libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    })];
    poll(&mut p, timeout)?;
    Ok(p[0].revents())
}
