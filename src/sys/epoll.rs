//! epoll(7), for the UDP relay thread: one thread waits on the listener and
//! on every session's upstream socket, and poll() would walk all of them on
//! every wake-up, however few are ready (bench/README.md).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

use super::poll;

pub const IN: u32 = libc::EPOLLIN as u32;
pub const ERR: u32 = libc::EPOLLERR as u32;
pub const HUP: u32 = libc::EPOLLHUP as u32;

/// An epoll instance (level-triggered registrations).
#[derive(Debug)]
pub struct Epoll {
    fd: OwnedFd,
}

/// One ready descriptor: its events and the token it was registered with.
#[derive(Clone, Copy)]
#[repr(transparent)]
pub struct Event(libc::epoll_event);

impl Event {
    pub fn empty() -> Event {
        Event(libc::epoll_event { events: 0, u64: 0 })
    }
    pub fn events(&self) -> u32 {
        self.0.events
    }
    pub fn token(&self) -> u64 {
        self.0.u64
    }
}

impl Epoll {
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: plain epoll_create1(2) with a constant flag.
        let fd = unsafe { syscall!(epoll_create1(libc::EPOLL_CLOEXEC))? };
        // SAFETY: epoll_create1 returned a new descriptor that we now own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Epoll { fd })
    }

    fn ctl(&self, op: libc::c_int, fd: BorrowedFd<'_>, events: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: `ev` is a live epoll_event; `fd` is borrowed, so it is
        // open for the call.
        unsafe { syscall!(epoll_ctl(self.fd.as_raw_fd(), op, fd.as_raw_fd(), &mut ev))? };
        Ok(())
    }

    /// Watches `fd` for `events`; `token` comes back with its events.
    pub fn add(&self, fd: BorrowedFd<'_>, events: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, events, token)
    }

    /// Stops watching `fd` (closing it would too, once no other descriptor
    /// refers to its file).
    pub fn delete(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0)
    }

    /// Waits until a watched descriptor is ready or `timeout` passes
    /// (`None` = forever); the ready ones fill the front of `events`.
    /// EINTR is reported as `Ok(0)`.
    pub fn wait(&self, events: &mut [Event], timeout: Option<Duration>) -> io::Result<usize> {
        let ms = poll::timeout_ms(timeout);
        let max = events.len().min(i32::MAX as usize) as libc::c_int;
        // SAFETY: Event is repr(transparent) over epoll_event; the pointer
        // and length come from a live mutable slice.
        poll::ready_count(unsafe {
            libc::epoll_wait(self.fd.as_raw_fd(), events.as_mut_ptr().cast(), max, ms)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn reports_ready_descriptors_by_token() {
        let ep = Epoll::new().unwrap();
        let (a, mut a_peer) = UnixStream::pair().unwrap();
        let (b, _b_peer) = UnixStream::pair().unwrap();
        ep.add(a.as_fd(), IN, 7).unwrap();
        ep.add(b.as_fd(), IN, 9).unwrap();
        let mut evs = [Event::empty(); 4];
        assert_eq!(ep.wait(&mut evs, Some(Duration::ZERO)).unwrap(), 0);
        a_peer.write_all(b"x").unwrap();
        let n = ep.wait(&mut evs, Some(Duration::from_secs(5))).unwrap();
        assert_eq!(n, 1);
        assert_eq!(evs[0].token(), 7);
        assert_ne!(evs[0].events() & IN, 0);
        ep.delete(a.as_fd()).unwrap();
        assert_eq!(ep.wait(&mut evs, Some(Duration::ZERO)).unwrap(), 0);
    }
}
