//! The control port (`-C`, `man/penctl.1`): one command per connection,
//! served on its own short-lived thread with a deadline.

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use super::Origin;
use crate::logging;
use crate::runtime::Shared;
use crate::sys;
use crate::sys::socket::PeerAddr;

/// A control client must send its command within this time.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a control client that sent part of a line without a
/// terminator may stay quiet before that text is run as the command.
const UNTERMINATED_COMMAND_QUIET: Duration = Duration::from_millis(100);

/// One control connection: read one line (with a deadline), run it, reply,
/// close (doc/pen-0.34.1.md, "Control connections"). A silent or slow client
/// only ties up this thread, never the acceptor or the pairs.
pub fn serve(shared: &Shared, fd: OwnedFd, peer: &PeerAddr) {
    if !permitted(shared, peer) {
        logging::debug(1, || "do_ctrl: not from there".into());
        return;
    }
    let deadline = Instant::now() + CONTROL_TIMEOUT;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 1024];
    loop {
        let mut left = deadline.saturating_duration_since(Instant::now());
        if !buf.is_empty() {
            // pen runs whatever its one recv() got, and a terminator is
            // optional (doc/pen-0.34.1.md, "Control connections"): a client
            // that sent a command without one and waits for the reply gets it
            // once it has been quiet for a moment. Pieces arriving within that
            // moment are joined, where pen would run the first piece alone.
            left = left.min(UNTERMINATED_COMMAND_QUIET);
        }
        if left.is_zero() {
            return;
        }
        match sys::poll::wait_one(fd.as_fd(), sys::poll::IN, Some(left)) {
            Ok(0) if !buf.is_empty() => break,
            Ok(0) => return,
            Ok(_) => {}
            Err(_) => return,
        }
        match sys::socket::read(fd.as_fd(), &mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return,
        }
        if buf.contains(&b'\n') || buf.contains(&b'\r') || buf.len() >= 4095 {
            break;
        }
    }
    buf.truncate(4095);
    let line = String::from_utf8_lossy(&buf);
    let reply = super::run_line(shared, &line, Origin::ControlPort);
    write_all(&fd, reply.as_bytes(), deadline + CONTROL_TIMEOUT);
}

/// Whether `control_acl` lets `peer` in (a Unix-socket peer always).
pub(super) fn permitted(shared: &Shared, peer: &PeerAddr) -> bool {
    let Some(ip) = peer.ip() else { return true };
    let b = shared.lock();
    b.acls
        .get(b.settings.control_acl)
        .is_none_or(|a| a.permits(Some(ip), &b.geoip))
}

/// Writes `bytes` to the non-blocking `fd` until done, an error, or
/// `deadline`.
pub(super) fn write_all(fd: &OwnedFd, bytes: &[u8], deadline: Instant) {
    let mut rest = bytes;
    while !rest.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        match sys::socket::write(fd.as_fd(), rest) {
            Ok(n) => rest = &rest[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if sys::poll::wait_one(fd.as_fd(), sys::poll::OUT, Some(left)).unwrap_or(0) == 0 {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}
