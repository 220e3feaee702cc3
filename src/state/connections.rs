//! The connection table (`-x`, `conn_max`): one slot per relayed pair, for
//! `connection N`, `close N` and the statistics. Bookkeeping, plus a share
//! in each pair's sockets ([`Pair`]) so that `close N` shuts down sockets
//! that are certainly still open; the descriptor numbers it records are for
//! display only.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use crate::state::servers::Target;
use crate::sys::socket::{self, Shutdown};

/// pen's connection state bits (doc/pen-0.34.1.md, "Control commands"
/// `connection N`).
pub mod state {
    pub const CONNECTING: u32 = 1;
    pub const CONNECTED: u32 = 2;
    pub const SERVER_EOF: u32 = 4;
    pub const CLIENT_EOF: u32 = 8;
}

/// Byte counters a relay thread updates once per read, without the lock.
#[derive(Debug, Default)]
pub struct PairCounters {
    /// Bytes read from the client (relayed towards the server).
    pub from_client: AtomicU64,
    /// Bytes read from the server (relayed towards the client).
    pub from_server: AtomicU64,
}

impl PairCounters {
    /// Adds `n`; only the pair's own thread writes, so a plain load/store
    /// (no locked read-modify-write) is enough.
    pub fn add(counter: &AtomicU64, n: usize) {
        counter.store(
            counter.load(Ordering::Relaxed) + n as u64,
            Ordering::Relaxed,
        );
    }
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// What a pair's thread and its connection slot share: the byte counters,
/// and the sockets, which close only when both have let go. The slot is
/// read under the balancer lock and the thread frees it (see
/// `upstream::Lease`) before dropping its own share, so the sockets close
/// on the pair's thread, outside the lock, and `close N` never reaches a
/// closed or reused descriptor.
#[derive(Debug, Default)]
pub struct Pair {
    pub counters: PairCounters,
    // Fields drop in order: the server's socket closes before the client's,
    // as pen closes them.
    server: OnceLock<OwnedFd>,
    /// `None` for a UDP session, which has no socket of its own towards
    /// the client.
    client: Option<OwnedFd>,
}

impl Pair {
    pub fn new(client: Option<OwnedFd>) -> Pair {
        Pair {
            client,
            ..Pair::default()
        }
    }

    pub fn client(&self) -> Option<&OwnedFd> {
        self.client.as_ref()
    }

    /// The upstream socket, once connected.
    pub fn server(&self) -> Option<&OwnedFd> {
        self.server.get()
    }

    /// Records the upstream socket. A pair connects once: the second
    /// socket is handed back.
    pub fn set_server(&self, socket: OwnedFd) -> Result<(), OwnedFd> {
        self.server.set(socket)
    }

    /// `close N`: shuts both sockets down. The pair's thread sees the
    /// hang-up and ends the pair as if the peers had closed.
    pub fn shut_down(&self) {
        for s in [self.client.as_ref(), self.server.get()]
            .into_iter()
            .flatten()
        {
            socket::shutdown(s.as_fd(), Shutdown::Both);
        }
    }
}

/// One relayed connection.
#[derive(Clone, Debug)]
pub struct Connection {
    pub state: u32,
    pub client: usize,
    pub server: Target,
    /// The descriptor numbers, for `connection N`, `socket N` and the
    /// statistics only; `pair` reaches the sockets.
    pub client_fd: RawFd,
    pub server_fd: RawFd,
    pub pair: Arc<Pair>,
    /// UNIX time the client was accepted.
    pub since: i64,
}

/// Slots for relayed connections; capacity only grows.
#[derive(Clone, Debug)]
pub struct ConnectionTable {
    slots: Vec<Option<Connection>>,
    /// Free slot numbers, lowest on top: O(log n) per connection under
    /// the lock, where sorting the list on every remove was O(n).
    free: BinaryHeap<Reverse<usize>>,
    capacity: usize,
    used: usize,
}

impl ConnectionTable {
    pub fn new(capacity: usize) -> ConnectionTable {
        ConnectionTable {
            slots: Vec::new(),
            free: BinaryHeap::new(),
            capacity: capacity.max(1),
            used: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Sets the size before any slot is used (start-up); later only
    /// [`Self::grow`] applies.
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.max(1);
    }

    pub fn used(&self) -> usize {
        self.used
    }

    /// Grows the table; smaller values are ignored (pen's `-x`/`conn_max`).
    pub fn grow(&mut self, capacity: usize) {
        if capacity > self.capacity {
            self.capacity = capacity;
        }
    }

    /// Takes a slot, lowest free index first; `None` when full.
    pub fn insert(&mut self, conn: Connection) -> Option<usize> {
        let i = if let Some(Reverse(i)) = self.free.pop() {
            i
        } else if self.slots.len() < self.capacity {
            self.slots.push(None);
            self.slots.len() - 1
        } else {
            return None;
        };
        self.slots[i] = Some(conn);
        self.used += 1;
        Some(i)
    }

    pub fn remove(&mut self, i: usize) -> Option<Connection> {
        let c = self.slots.get_mut(i)?.take()?;
        self.used -= 1;
        // Low indices are handed out first, like pen's table.
        self.free.push(Reverse(i));
        Some(c)
    }

    pub fn get(&self, i: usize) -> Option<&Connection> {
        self.slots.get(i)?.as_ref()
    }

    pub fn get_mut(&mut self, i: usize) -> Option<&mut Connection> {
        self.slots.get_mut(i)?.as_mut()
    }

    pub fn iter(&self) -> impl Iterator<Item = (usize, &Connection)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().map(|c| (i, c)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Connection {
        Connection {
            state: 0,
            client: 0,
            server: Target::None,
            client_fd: -1,
            server_fd: -1,
            pair: Arc::default(),
            since: 0,
        }
    }

    #[test]
    fn fills_and_frees_lowest_first() {
        let mut t = ConnectionTable::new(3);
        assert_eq!(t.insert(conn()), Some(0));
        assert_eq!(t.insert(conn()), Some(1));
        assert_eq!(t.insert(conn()), Some(2));
        assert_eq!(t.insert(conn()), None);
        t.remove(2);
        t.remove(0);
        assert_eq!(t.used(), 1);
        assert_eq!(t.insert(conn()), Some(0));
        assert_eq!(t.insert(conn()), Some(2));
        assert!(t.remove(7).is_none());
        t.grow(4);
        assert_eq!(t.insert(conn()), Some(3));
    }

    #[test]
    fn many_frees_in_any_order_come_back_lowest_first() {
        let n = 1000;
        let mut t = ConnectionTable::new(n);
        for i in 0..n {
            assert_eq!(t.insert(conn()), Some(i));
        }
        // Every third slot, from the top, then the rest from the bottom.
        for i in (0..n).rev().step_by(3) {
            t.remove(i);
        }
        for i in 0..n {
            t.remove(i);
        }
        assert_eq!(t.used(), 0);
        for i in 0..n {
            assert_eq!(t.insert(conn()), Some(i));
        }
        assert_eq!(t.insert(conn()), None);
    }

    #[test]
    fn shut_down_reaches_both_sockets() {
        use std::io::Read;
        use std::os::unix::net::UnixStream;
        let (client, mut client_peer) = UnixStream::pair().unwrap();
        let (server, mut server_peer) = UnixStream::pair().unwrap();
        let pair = Pair::new(Some(client.into()));
        // Before the connect only the client is there.
        pair.shut_down();
        assert!(pair.set_server(server.into()).is_ok());
        pair.shut_down();
        let mut buf = [0u8; 4];
        assert_eq!(client_peer.read(&mut buf).unwrap(), 0);
        assert_eq!(server_peer.read(&mut buf).unwrap(), 0);
        // A pair connects once.
        let (again, _) = UnixStream::pair().unwrap();
        assert!(pair.set_server(again.into()).is_err());
    }
}
