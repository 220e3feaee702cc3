//! The connection table (`-x`, `conn_max`): one slot per relayed pair, for
//! `connection N`, `close N` and the statistics. Pure bookkeeping; the pair's
//! sockets belong to its relay thread, the table only records their numbers.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::servers::Target;

/// pen's connection state bits (spec control.md §4.3 `connection N`).
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

/// One relayed connection.
#[derive(Clone, Debug)]
pub struct Connection {
    pub state: u32,
    pub client: usize,
    pub server: Target,
    pub client_fd: RawFd,
    pub server_fd: RawFd,
    pub counters: Arc<PairCounters>,
    /// UNIX time the client was accepted.
    pub since: i64,
}

/// Slots for relayed connections; capacity only grows.
#[derive(Clone, Debug)]
pub struct ConnectionTable {
    slots: Vec<Option<Connection>>,
    free: Vec<usize>,
    capacity: usize,
    used: usize,
}

impl ConnectionTable {
    pub fn new(capacity: usize) -> ConnectionTable {
        ConnectionTable {
            slots: Vec::new(),
            free: Vec::new(),
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
        let i = if let Some(i) = self.free.pop() {
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
        self.free.push(i);
        // Keep handing out low indices first, like pen's table.
        self.free.sort_unstable_by(|a, b| b.cmp(a));
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
            counters: Arc::default(),
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
}
