//! Pipes: the acceptor's self-pipe and the relay's splice pipes.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Creates a non-blocking, close-on-exec pipe: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds is a valid array of two ints for pipe2 to fill.
    unsafe { syscall!(pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC))? };
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Writes one byte, ignoring a full pipe: used from signal handlers and
/// threads to wake a poll loop. Async-signal-safe.
pub fn wake(fd: RawFd) {
    let b = 1u8;
    // SAFETY: writes one byte from a live local; write(2) is async-signal-safe.
    unsafe {
        libc::write(fd, (&b as *const u8).cast(), 1);
    }
}

/// Reads and discards everything buffered in a non-blocking pipe.
pub fn drain(fd: impl AsFd) {
    let fd = fd.as_fd();
    let mut buf = [0u8; 64];
    loop {
        // SAFETY: reads into a live local buffer of the given length.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
    }
}

/// Moves up to `len` bytes between descriptors without copying through user
/// space (one side must be a pipe). Non-blocking.
pub fn splice(from: BorrowedFd<'_>, to: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
    // SAFETY: null offsets are allowed (use the file positions); the fds are
    // borrowed, so they stay open for the call.
    let n = unsafe {
        syscall!(splice(
            from.as_raw_fd(),
            std::ptr::null_mut(),
            to.as_raw_fd(),
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK
        ))?
    };
    Ok(n as usize)
}

/// Grows a pipe's capacity (best effort; the kernel may refuse).
pub fn set_pipe_size(fd: BorrowedFd<'_>, size: usize) -> io::Result<usize> {
    // SAFETY: F_SETPIPE_SZ takes an int argument; the fd is borrowed, so open.
    let n = unsafe {
        syscall!(fcntl(
            fd.as_raw_fd(),
            libc::F_SETPIPE_SZ,
            size as libc::c_int
        ))?
    };
    Ok(n as usize)
}
