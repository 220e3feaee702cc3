//! An established TLS connection ([`TlsStream`]) over a non-blocking
//! socket: the server handshake, then `read`/`write` that follow the
//! non-blocking `io` conventions ([`Want`] says which readiness to wait for
//! after `WouldBlock`), the half-close and the shutdown (man/pen.1, TLS
//! TERMINATION).

use libc::{c_int, c_short};
use std::ffi::CStr;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Instant;

use super::context::AcceptorState;
use super::error::{
    clear_openssl_errors, prepare_io_call, take_openssl_errors, take_openssl_errors_if_any,
};
use super::{ffi, TlsError};
use crate::sys::syscall;

/// Pen writes at most this many bytes per `SSL_write` (doc/pen-0.34.1.md,
/// "TLS").
const MAX_WRITE: usize = 16000;

/// Runs the server handshake for [`TlsAcceptor::accept`](super::TlsAcceptor::accept)
/// on `sock` with `shared`'s default context, polling until it succeeds,
/// fails, or `deadline` passes.
pub(super) fn handshake(
    shared: &Arc<AcceptorState>,
    sock: OwnedFd,
    deadline: Instant,
) -> Result<TlsStream, TlsError> {
    clear_openssl_errors();
    // SAFETY: valid context; SSL_new returns a new SSL or NULL.
    let raw = unsafe { ffi::SSL_new(shared.ctx.as_ptr()) };
    let ssl = NonNull::new(raw).ok_or_else(|| TlsError::Setup(take_openssl_errors()))?;
    let mut stream = TlsStream {
        ssl,
        sock,
        _shared: Arc::clone(shared),
        want: Want::Read,
        failed: false,
        notify_sent: false,
        starved: false,
    };
    // SAFETY: valid SSL and an open socket that outlives it (the stream
    // frees the SSL before closing the fd); the socket BIO does not close it.
    if unsafe { ffi::SSL_set_fd(stream.ssl.as_ptr(), stream.sock.as_raw_fd()) } != 1 {
        stream.failed = true;
        return Err(TlsError::Setup(take_openssl_errors()));
    }
    // Bounded by the deadline: every pass either finishes or polls.
    loop {
        prepare_io_call();
        // SAFETY: valid SSL with a socket attached.
        let ret = unsafe { ffi::SSL_accept(stream.ssl.as_ptr()) };
        if ret == 1 {
            return Ok(stream);
        }
        let os_error = io::Error::last_os_error();
        // SAFETY: valid SSL; ret is the value SSL_accept just returned.
        let code = unsafe { ffi::SSL_get_error(stream.ssl.as_ptr(), ret) };
        let events = match code {
            ffi::SSL_ERROR_WANT_READ => libc::POLLIN,
            ffi::SSL_ERROR_WANT_WRITE => libc::POLLOUT,
            _ => {
                stream.failed = true;
                return Err(handshake_error(code, os_error));
            }
        };
        match wait_fd(stream.sock.as_raw_fd(), events, deadline) {
            Ok(true) => {}
            Ok(false) => {
                stream.failed = true;
                return Err(TlsError::HandshakeTimeout);
            }
            Err(e) => {
                stream.failed = true;
                return Err(TlsError::Io(e));
            }
        }
    }
}

/// Maps a failed `SSL_accept` (`SSL_get_error` code `code`) to the error.
fn handshake_error(code: c_int, os_error: io::Error) -> TlsError {
    match code {
        ffi::SSL_ERROR_SYSCALL => {
            let queued = take_openssl_errors_if_any();
            match (queued, os_error.raw_os_error()) {
                (Some(reason), _) => TlsError::Handshake(reason),
                (None, Some(errno)) if errno != 0 => TlsError::Io(os_error),
                (None, _) => TlsError::Handshake("connection closed by the client".to_string()),
            }
        }
        ffi::SSL_ERROR_ZERO_RETURN => {
            TlsError::Handshake("connection closed by the client".to_string())
        }
        _ => TlsError::Handshake(take_openssl_errors()),
    }
}

/// Waits until `fd` has one of `events` (or an error/hangup) or until
/// `deadline`; `Ok(false)` when the deadline passed.
fn wait_fd(fd: RawFd, events: c_short, deadline: Instant) -> io::Result<bool> {
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        // Round up so that a poll never returns just before the deadline.
        let left = deadline - now;
        let millis = left.as_millis().saturating_add(1).min(c_int::MAX as u128) as c_int;
        let mut pollfd = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        // SAFETY: pollfd is a valid, exclusively borrowed array of one entry.
        match unsafe { syscall!(poll(&mut pollfd, 1, millis)) } {
            Ok(0) => continue,
            Ok(_) => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Which socket readiness a [`TlsStream`] needs after `WouldBlock`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Wait until the socket is readable.
    Read,
    /// Wait until the socket is writable.
    Write,
}

/// An established TLS connection over a non-blocking socket.
pub struct TlsStream {
    ssl: NonNull<ffi::Ssl>,
    sock: OwnedFd,
    /// Keeps the contexts and the callbacks' argument alive.
    _shared: Arc<AcceptorState>,
    want: Want,
    /// A fatal error happened: OpenSSL forbids SSL_shutdown afterwards.
    failed: bool,
    /// Our close_notify went out (see [`close_notify`](TlsStream::close_notify)).
    notify_sent: bool,
    /// The last read wanted more bytes from the socket: what OpenSSL holds
    /// (read ahead) is only part of a record, and only the socket becoming
    /// readable can complete it.
    starved: bool,
}

// SAFETY: an SSL object may move between threads as long as it is used by
// one thread at a time, which `&mut self` / ownership guarantee.
unsafe impl Send for TlsStream {}

impl TlsStream {
    /// The socket, for `poll`.
    pub fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// Reads decrypted data: `Ok(n > 0)` data, `Ok(0)` clean end of stream
    /// (close_notify or TCP EOF; also for an empty `buf`),
    /// `Err(WouldBlock)` → wait for [`want`](Self::want).
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let len = c_int::try_from(buf.len()).unwrap_or(c_int::MAX);
        // SAFETY: buf is writable for len bytes.
        unsafe { self.ssl_read(buf.as_mut_ptr().cast(), len) }
    }

    /// As [`read`](Self::read), into the spare capacity of `buf` (at most
    /// `max` bytes), which grows by what was read: no zeroing of a buffer
    /// that only lives for one read.
    pub fn read_into(&mut self, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        if max == 0 {
            return Ok(0);
        }
        buf.reserve(max);
        let spare = buf.spare_capacity_mut();
        let len = c_int::try_from(spare.len().min(max)).unwrap_or(c_int::MAX);
        // SAFETY: the pointer and length describe spare capacity of `buf`,
        // which SSL_read only writes to.
        let n = unsafe { self.ssl_read(spare.as_mut_ptr().cast(), len)? };
        // SAFETY: SSL_read initialised the first `n` (<= `len`) bytes.
        unsafe { buf.set_len(buf.len() + n) };
        Ok(n)
    }

    /// SSL_read into `len` bytes at `out`, as [`read`](Self::read)
    /// reports it, noting whether it wanted more bytes (see `starved`).
    ///
    /// # Safety
    /// `out` must be valid for writes of `len` bytes.
    unsafe fn ssl_read(&mut self, out: *mut libc::c_void, len: c_int) -> io::Result<usize> {
        prepare_io_call();
        // SAFETY: valid SSL; the caller vouches for `out` and `len`.
        let ret = unsafe { ffi::SSL_read(self.ssl.as_ptr(), out, len) };
        self.starved = ret <= 0;
        if ret > 0 {
            return Ok(ret as usize);
        }
        self.io_error(ret).map(|()| 0)
    }

    /// Writes up to 16000 bytes of `buf`: `Ok(n)` bytes taken (partial
    /// writes are normal), `Err(WouldBlock)` → wait for
    /// [`want`](Self::want), then call again with the same data.
    pub fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let len = buf.len().min(MAX_WRITE) as c_int;
        prepare_io_call();
        // SAFETY: valid SSL; buf is readable for len bytes.
        let ret = unsafe { ffi::SSL_write(self.ssl.as_ptr(), buf.as_ptr().cast(), len) };
        if ret > 0 {
            return Ok(ret as usize);
        }
        match self.io_error(ret) {
            Ok(()) => Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "TLS connection closed by the peer",
            )),
            Err(e) => Err(e),
        }
    }

    /// Maps a failed SSL_read/SSL_write: `Ok(())` for a clean close,
    /// `WouldBlock` (recording what to wait for), or the error.
    fn io_error(&mut self, ret: c_int) -> io::Result<()> {
        let os_error = io::Error::last_os_error();
        // SAFETY: valid SSL; ret is what the I/O call just returned.
        let code = unsafe { ffi::SSL_get_error(self.ssl.as_ptr(), ret) };
        match code {
            ffi::SSL_ERROR_ZERO_RETURN => Ok(()),
            ffi::SSL_ERROR_WANT_READ => {
                self.want = Want::Read;
                Err(io::ErrorKind::WouldBlock.into())
            }
            ffi::SSL_ERROR_WANT_WRITE => {
                self.want = Want::Write;
                Err(io::ErrorKind::WouldBlock.into())
            }
            ffi::SSL_ERROR_SYSCALL => {
                self.failed = true;
                match (take_openssl_errors_if_any(), os_error.raw_os_error()) {
                    (Some(reason), _) => Err(io::Error::other(reason)),
                    (None, Some(errno)) if errno != 0 => Err(os_error),
                    // SSL_OP_IGNORE_UNEXPECTED_EOF turns TCP EOF into
                    // ZERO_RETURN; treat anything else the same way.
                    (None, _) => Ok(()),
                }
            }
            ffi::SSL_ERROR_SSL => {
                self.failed = true;
                Err(io::Error::other(take_openssl_errors()))
            }
            other => {
                self.failed = true;
                Err(io::Error::other(format!(
                    "unexpected OpenSSL error code {other}"
                )))
            }
        }
    }

    /// After `WouldBlock`: the socket event to wait for.
    pub fn want(&self) -> Want {
        self.want
    }

    /// True when OpenSSL holds bytes that a `read` may return without the
    /// socket becoming readable: decrypted data, or whole records read
    /// ahead. Not after a read that wanted more: the bytes held then are
    /// an incomplete record, and a caller that polled them as "pending"
    /// would spin until the rest arrives.
    pub fn pending(&self) -> bool {
        // SAFETY: valid SSL.
        !self.starved && unsafe { ffi::SSL_has_pending(self.ssl.as_ptr()) } == 1
    }

    /// Waits until the socket is ready for `want` (or data is
    /// [`pending`](Self::pending) for `Want::Read`); `Ok(false)` when
    /// `deadline` passed first.
    pub fn wait(&self, want: Want, deadline: Instant) -> io::Result<bool> {
        if want == Want::Read && self.pending() {
            return Ok(true);
        }
        let events = match want {
            Want::Read => libc::POLLIN,
            Want::Write => libc::POLLOUT,
        };
        wait_fd(self.as_raw_fd(), events, deadline)
    }

    /// The TLS half-close: sends close_notify once and returns, without
    /// waiting for the peer's. `Ok(())` once it went out (or nothing can be
    /// sent any more: after a fatal error, or when already sent);
    /// `Err(WouldBlock)` → wait for [`want`](Self::want) and call again.
    ///
    /// Data the peer still sends stays readable with [`read`](Self::read):
    /// unlike [`shutdown`](Self::shutdown), this never calls `SSL_shutdown` a
    /// second time, which would read and throw away such data.
    pub fn close_notify(&mut self) -> io::Result<()> {
        if self.failed || self.notify_sent {
            return Ok(());
        }
        prepare_io_call();
        // SAFETY: valid SSL whose handshake completed. While the alert could
        // not be written (WANT_WRITE), a repeated call only re-sends it.
        let ret = unsafe { ffi::SSL_shutdown(self.ssl.as_ptr()) };
        if ret >= 0 {
            self.notify_sent = true;
            return Ok(());
        }
        self.io_error(ret)?;
        self.notify_sent = true;
        Ok(())
    }

    /// Best-effort, non-blocking close_notify (doc/pen-0.34.1.md, "TLS":
    /// `SSL_shutdown`, twice if needed). Skipped after a fatal error.
    pub fn shutdown(&mut self) {
        if self.failed {
            return;
        }
        clear_openssl_errors();
        // SAFETY: valid SSL whose handshake completed.
        let first = unsafe { ffi::SSL_shutdown(self.ssl.as_ptr()) };
        if first == 0 {
            // SAFETY: as above; on a non-blocking socket this returns at once.
            unsafe { ffi::SSL_shutdown(self.ssl.as_ptr()) };
        }
        clear_openssl_errors();
    }

    /// The negotiated protocol, e.g. `"TLSv1.3"`.
    pub fn protocol_version(&self) -> &'static str {
        // SAFETY: valid SSL; SSL_get_version returns a pointer to a static
        // string inside libssl, which stays loaded for the process lifetime.
        let version = unsafe { ffi::SSL_get_version(self.ssl.as_ptr()) };
        if version.is_null() {
            return "unknown";
        }
        // SAFETY: non-NULL, NUL-terminated static string (see above).
        unsafe { CStr::from_ptr(version) }
            .to_str()
            .unwrap_or("unknown")
    }
}

impl AsFd for TlsStream {
    /// The socket, for `poll`.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

impl Drop for TlsStream {
    fn drop(&mut self) {
        // SAFETY: we own the SSL; it is freed once, before `sock` closes.
        unsafe { ffi::SSL_free(self.ssl.as_ptr()) };
    }
}

impl fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsStream")
            .field("fd", &self.as_raw_fd())
            .field("want", &self.want)
            .finish()
    }
}
