//! The control port (`-C`, `man/penctl.1`): one command per connection,
//! served on its own short-lived thread with a deadline. At most
//! [`MAX_CONTROL_CLIENTS`] are served at once; a new one beyond that closes
//! the connection that has waited longest for its command, so idle or slow
//! clients cannot lock the administrator out.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
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

/// Control connections served at once.
pub const MAX_CONTROL_CLIENTS: usize = 16;

/// Where a control connection is. Only one running its command is never
/// closed to make room: the command may be half way through.
mod phase {
    /// Nothing received yet.
    pub const SILENT: u8 = 0;
    /// Part of the command received.
    pub const READING: u8 = 1;
    pub const RUNNING: u8 = 2;
    /// Sending the reply.
    pub const REPLYING: u8 = 3;
    /// Closed to make room for a newer connection.
    pub const EVICTED: u8 = 4;
}

/// One control connection being served.
#[derive(Debug)]
pub struct ControlConn {
    fd: OwnedFd,
    since: Instant,
    phase: AtomicU8,
}

impl ControlConn {
    fn phase(&self) -> u8 {
        self.phase.load(Ordering::Acquire)
    }

    /// Moves on to `to` unless the connection was evicted; whether it moved.
    fn enter(&self, to: u8) -> bool {
        self.phase
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
                (p != phase::EVICTED).then_some(to)
            })
            .is_ok()
    }

    /// Closes the connection for a newer one, unless its command runs;
    /// whether it was closed. Its thread wakes up (EOF) and leaves.
    fn evict(&self) -> bool {
        let evicted = self
            .phase
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
                (p != phase::RUNNING && p != phase::EVICTED).then_some(phase::EVICTED)
            })
            .is_ok();
        if evicted {
            sys::socket::shutdown(self.fd.as_fd(), sys::socket::Shutdown::Both);
        }
        evicted
    }
}

/// The control connections being served.
#[derive(Debug, Default)]
pub struct ControlClients {
    conns: Mutex<Vec<Arc<ControlConn>>>,
}

impl ControlClients {
    /// Takes in a new connection. When all places are taken, the one that
    /// has waited longest without sending anything is closed to make room,
    /// or else the one that has waited longest for the rest of its command
    /// or for its reply to be read. `None` (and `fd` is closed) when every
    /// place runs a command. The place is given back when the seat is
    /// dropped, served or not.
    pub fn admit(self: &Arc<Self>, fd: OwnedFd) -> Option<ControlSeat> {
        let conn = self.admit_at(fd, Instant::now())?;
        Some(ControlSeat {
            clients: Arc::clone(self),
            conn,
        })
    }

    fn admit_at(&self, fd: OwnedFd, now: Instant) -> Option<Arc<ControlConn>> {
        let mut conns = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
        while conns.len() >= MAX_CONTROL_CLIENTS {
            let oldest_waiting = conns
                .iter()
                .enumerate()
                .filter(|(_, c)| c.phase() != phase::RUNNING)
                .min_by_key(|(_, c)| (c.phase() != phase::SILENT, c.since))
                .map(|(i, _)| i)?;
            let victim = conns.swap_remove(oldest_waiting);
            if victim.evict() {
                logging::debug(1, || {
                    "control port full: closed the oldest waiting connection".into()
                });
            }
        }
        let conn = Arc::new(ControlConn {
            fd,
            since: now,
            phase: AtomicU8::new(phase::SILENT),
        });
        conns.push(Arc::clone(&conn));
        Some(conn)
    }

    /// `conn` is done (its descriptor closes with the last reference).
    fn leave(&self, conn: &Arc<ControlConn>) {
        let mut conns = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
        conns.retain(|c| !Arc::ptr_eq(c, conn));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// A control connection's place among those served.
#[derive(Debug)]
pub struct ControlSeat {
    clients: Arc<ControlClients>,
    conn: Arc<ControlConn>,
}

impl ControlSeat {
    pub fn conn(&self) -> &ControlConn {
        &self.conn
    }
}

impl Drop for ControlSeat {
    fn drop(&mut self) {
        self.clients.leave(&self.conn);
    }
}

/// One control connection: read one line (with a deadline), run it, reply,
/// close (doc/pen-0.34.1.md, "Control connections"). A silent or slow client
/// only ties up this thread, never the acceptor or the pairs.
pub fn serve(shared: &Shared, conn: &ControlConn, peer: &PeerAddr) {
    let fd = &conn.fd;
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
            Ok(n) => {
                conn.enter(phase::READING);
                buf.extend_from_slice(&chunk[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return,
        }
        if buf.contains(&b'\n') || buf.contains(&b'\r') || buf.len() >= 4095 {
            break;
        }
    }
    if !conn.enter(phase::RUNNING) {
        return;
    }
    buf.truncate(4095);
    let line = String::from_utf8_lossy(&buf);
    let reply = super::run_line(shared, &line, Origin::ControlPort);
    conn.enter(phase::REPLYING);
    write_all(fd, reply.as_bytes(), deadline + CONTROL_TIMEOUT);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn conn_fd() -> OwnedFd {
        let (a, _b) = sys::socket::socketpair().unwrap();
        a
    }

    #[test]
    fn a_full_port_closes_the_connection_silent_longest_then_the_oldest_waiting() {
        let clients = ControlClients::default();
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        let conns: Vec<_> = (0..MAX_CONTROL_CLIENTS as u64)
            .map(|i| clients.admit_at(conn_fd(), at(i)).unwrap())
            .collect();
        // 0 runs its command, 1 sent part of one, 2 and later sent nothing.
        assert!(conns[0].enter(phase::RUNNING));
        assert!(conns[1].enter(phase::READING));
        let newer = clients.admit_at(conn_fd(), at(100)).unwrap();
        assert_eq!(conns[2].phase(), phase::EVICTED);
        assert!(!conns[2].enter(phase::RUNNING), "an evicted command runs");
        assert_eq!(clients.len(), MAX_CONTROL_CLIENTS);
        // Every silent one goes before the one that sent something.
        for c in &conns[3..] {
            c.enter(phase::REPLYING);
        }
        assert!(newer.enter(phase::RUNNING));
        clients.admit_at(conn_fd(), at(101)).unwrap();
        assert_eq!(conns[1].phase(), phase::EVICTED);
        assert_eq!(conns[0].phase(), phase::RUNNING);
    }

    #[test]
    fn a_port_where_every_command_runs_refuses_the_newcomer() {
        let clients = Arc::new(ControlClients::default());
        let mut seats: Vec<_> = (0..MAX_CONTROL_CLIENTS)
            .map(|_| clients.admit(conn_fd()).unwrap())
            .collect();
        for s in &seats {
            assert!(s.conn().enter(phase::RUNNING));
        }
        assert!(clients.admit(conn_fd()).is_none());
        // A seat dropped, served or not, gives its place back.
        drop(seats.swap_remove(5));
        let newcomer = clients.admit(conn_fd());
        assert!(newcomer.is_some());
        assert_eq!(clients.len(), MAX_CONTROL_CLIENTS);
        drop((seats, newcomer));
        assert_eq!(clients.len(), 0);
    }
}
