//! The idle upstream connections that `idlers N` keeps (man/penctl.1): made
//! in advance by the maintainer thread (`crate::idlers`) and given to the
//! next client placed on their server instead of a fresh connect.
//!
//! The pool has its own lock, never the balancer's. Neither is held across
//! a connect, read or write: the only calls made under the pool's lock are
//! zero-timeout polls and peeks, which never wait.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::addr::Host;
use crate::sys::poll;
use crate::sys::socket;

/// Which server an idle connection goes to: its slot, and the address the
/// slot had when it was made (a re-pointed slot's idlers are dropped).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    pub slot: usize,
    pub host: Host,
    pub port: u16,
}

#[derive(Debug)]
struct Idle {
    to: Destination,
    socket: OwnedFd,
}

#[derive(Debug, Default)]
struct Inner {
    idle: Vec<Idle>,
    /// Something changed since the maintainer last looked.
    woken: bool,
}

/// What [`IdlePool::prune`] took out.
#[derive(Debug, Default)]
pub struct Pruned {
    /// To close once the pool's lock is released.
    pub sockets: Vec<OwnedFd>,
    /// The slots of those the server had closed.
    pub closed_by_server: Vec<usize>,
}

/// The idle connections, and the maintainer's wake-up.
#[derive(Debug, Default)]
pub struct IdlePool {
    inner: Mutex<Inner>,
    changed: Condvar,
    /// Mirrors `inner.idle.len()`, so that with no idlers (the default) a
    /// new connection does not take the pool's lock.
    held: AtomicUsize,
}

impl IdlePool {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Idle connections held now (the CUR of `Idlers: CUR/WANTED`).
    pub fn len(&self) -> usize {
        self.lock().idle.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the pool may hold a connection, read without its lock.
    pub fn holds_any(&self) -> bool {
        self.held.load(Ordering::Relaxed) > 0
    }

    /// Idle connections per slot, for spreading new ones.
    pub fn count_for(&self, slot: usize) -> usize {
        self.lock()
            .idle
            .iter()
            .filter(|i| i.to.slot == slot)
            .count()
    }

    /// Tells the maintainer to look again now (a setting or server changed,
    /// or an idler was taken).
    pub fn wake(&self) {
        self.lock().woken = true;
        self.changed.notify_all();
    }

    /// The maintainer waits for [`wake`](Self::wake) or `timeout`.
    pub fn wait(&self, timeout: Duration) {
        let g = self.lock();
        let (mut g, _) = self
            .changed
            .wait_timeout_while(g, timeout, |i| !i.woken)
            .unwrap_or_else(PoisonError::into_inner);
        g.woken = false;
    }

    /// Adds a connection made to `to`, unless the pool already has `wanted`
    /// (then the connection comes back, to be closed by the caller).
    pub fn put(&self, to: Destination, socket: OwnedFd, wanted: usize) -> Result<(), OwnedFd> {
        let mut g = self.lock();
        if g.idle.len() >= wanted {
            return Err(socket);
        }
        g.idle.push(Idle { to, socket });
        self.held.store(g.idle.len(), Ordering::Relaxed);
        Ok(())
    }

    /// Removes the idle connections that `keep` refuses, those the server
    /// closed, and those beyond `wanted`.
    pub fn prune(&self, wanted: usize, keep: impl Fn(&Destination) -> bool) -> Pruned {
        let mut g = self.lock();
        let mut pruned = Pruned::default();
        let mut kept = Vec::with_capacity(g.idle.len());
        for i in std::mem::take(&mut g.idle) {
            if !keep(&i.to) || kept.len() >= wanted {
                pruned.sockets.push(i.socket);
            } else if !is_open(&i.socket) {
                pruned.closed_by_server.push(i.to.slot);
                pruned.sockets.push(i.socket);
            } else {
                kept.push(i);
            }
        }
        g.idle = kept;
        self.held.store(g.idle.len(), Ordering::Relaxed);
        pruned
    }

    /// An idle connection to `to` that the server has not closed, taken out
    /// of the pool. Closed ones met on the way are dropped; bytes the server
    /// sent first (a banner) stay queued in the socket, so the relay gives
    /// them to the client first.
    pub fn take(&self, to: &Destination) -> Option<OwnedFd> {
        let mut found = None;
        let mut closed = Vec::new();
        {
            let mut g = self.lock();
            while let Some(at) = g.idle.iter().position(|i| i.to == *to) {
                let socket = g.idle.swap_remove(at).socket;
                if is_open(&socket) {
                    found = Some(socket);
                    break;
                }
                closed.push(socket);
            }
            self.held.store(g.idle.len(), Ordering::Relaxed);
            if found.is_some() || !closed.is_empty() {
                g.woken = true;
                self.changed.notify_all();
            }
        }
        drop(closed);
        found
    }
}

/// Whether the server still has the connection open, without waiting: not
/// shut down (RDHUP, HUP), no error, and readable only with data (end of
/// file reads as 0 bytes).
pub fn is_open(socket: &OwnedFd) -> bool {
    let fd = socket.as_fd();
    let Ok(ev) = poll::wait_one(fd, poll::IN | poll::RDHUP, Some(Duration::ZERO)) else {
        return false;
    };
    if ev & (poll::ERR | poll::HUP | poll::NVAL | poll::RDHUP) != 0 {
        return false;
    }
    if ev & poll::IN == 0 {
        return true;
    }
    let mut one = [0u8; 1];
    match socket::peek(fd, &mut one) {
        Ok(n) => n > 0,
        Err(e) => matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    fn to(slot: usize) -> Destination {
        Destination {
            slot,
            host: Host::Unset,
            port: 1,
        }
    }

    #[test]
    fn open_banner_and_closed_sockets_are_told_apart() {
        let (a, b) = UnixStream::pair().unwrap();
        let ours: OwnedFd = a.into();
        assert!(is_open(&ours));
        let mut theirs = b;
        theirs.write_all(b"220 hello\r\n").unwrap();
        assert!(is_open(&ours), "a banner is not a close");
        drop(theirs);
        assert!(!is_open(&ours));
    }

    #[test]
    fn take_skips_closed_and_other_servers() {
        let pool = IdlePool::default();
        let (a, a_peer) = UnixStream::pair().unwrap();
        let (b, _b_peer) = UnixStream::pair().unwrap();
        let (c, _c_peer) = UnixStream::pair().unwrap();
        pool.put(to(0), a.into(), 3).unwrap();
        pool.put(to(0), b.into(), 3).unwrap();
        pool.put(to(1), c.into(), 3).unwrap();
        let (d, _d_peer) = UnixStream::pair().unwrap();
        assert!(pool.put(to(1), d.into(), 3).is_err(), "pool full");
        drop(a_peer);
        assert!(pool.take(&to(0)).is_some());
        assert_eq!(pool.len(), 1, "the closed one went too");
        assert!(pool.take(&to(0)).is_none());
        assert_eq!(pool.count_for(1), 1);
        assert_eq!(pool.prune(0, |_| true).sockets.len(), 1);
        assert!(pool.is_empty());
    }
}
