//! The client table: who connected recently and which server they were sent
//! to (doc/pen-0.34.1.md, "Client table"). Pure data.
//!
//! Differences from pen 0.34.1, on purpose: with `-T`, a client not seen for
//! T seconds is forgotten and placed afresh when it returns (pen only marked
//! the slot free and kept sending a returning client to its old server until
//! another new client took the slot; doc/pen-0.34.1.md, quirk Q7). Lookups go
//! through a hash index instead of a linear scan; slot order (first free slot,
//! then least recently used, lowest index on ties) is pen's.

use std::collections::HashMap;
use std::net::IpAddr;

pub use crate::addr::canonical_ip;
use crate::state::servers::Target;
use crate::sys::socket::PeerAddr;

/// What identifies a client: its IP address (the port is ignored); all
/// Unix-socket clients share one identity, as in pen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientKey {
    Ip(IpAddr),
    Unix,
}

impl ClientKey {
    pub fn of(peer: &PeerAddr) -> ClientKey {
        match peer.ip() {
            Some(ip) => ClientKey::Ip(canonical_ip(ip)),
            None => ClientKey::Unix,
        }
    }
}

/// Text of a client address as pen prints it (empty for Unix clients).
pub fn client_text(c: &Client) -> String {
    match c.key {
        ClientKey::Ip(ip) => ip.to_string(),
        ClientKey::Unix => String::new(),
    }
}

/// One tracked client.
#[derive(Clone, Debug)]
pub struct Client {
    pub key: ClientKey,
    /// Address (with port) of its latest connection.
    pub addr: PeerAddr,
    /// UNIX time of its latest connection; 0 = free slot.
    pub last_seen: i64,
    /// The server it was last sent to (remembered for tracking).
    pub server: Target,
    pub connects: u64,
    /// Bytes sent to / received from the client by finished connections.
    pub sent: u64,
    pub received: u64,
}

/// The fixed-capacity (grow-only) client table.
#[derive(Clone, Debug)]
pub struct ClientTable {
    slots: Vec<Client>,
    index: HashMap<ClientKey, usize>,
    capacity: usize,
}

impl ClientTable {
    pub fn new(capacity: usize) -> ClientTable {
        ClientTable {
            slots: Vec::new(),
            index: HashMap::new(),
            capacity: capacity.max(1),
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

    /// Grows the table; smaller values are ignored (pen's `-c`/`clients_max`).
    pub fn grow(&mut self, capacity: usize) {
        if capacity > self.capacity {
            self.capacity = capacity;
        }
    }

    fn expired(c: &Client, now: i64, tracking: i64) -> bool {
        c.last_seen == 0 || (tracking > 0 && c.last_seen + tracking < now)
    }

    /// Records a connection from `peer` and returns its slot. A new (or
    /// forgotten) client starts with no remembered server.
    pub fn store(&mut self, peer: &PeerAddr, now: i64, tracking: i64) -> usize {
        let key = ClientKey::of(peer);
        let slot = match self.index.get(&key) {
            Some(&i) => {
                if Self::expired(&self.slots[i], now, tracking) {
                    self.reset(i);
                }
                i
            }
            None => {
                let i = self.free_slot(now, tracking);
                if let Some(old) = self.slots.get(i).map(|c| c.key) {
                    self.index.remove(&old);
                    self.reset(i);
                } else {
                    self.slots.push(Client {
                        key,
                        addr: peer.clone(),
                        last_seen: 0,
                        server: Target::None,
                        connects: 0,
                        sent: 0,
                        received: 0,
                    });
                }
                self.index.insert(key, i);
                self.slots[i].key = key;
                i
            }
        };
        let c = &mut self.slots[slot];
        c.last_seen = now;
        c.addr = peer.clone();
        c.connects += 1;
        slot
    }

    fn reset(&mut self, i: usize) {
        let c = &mut self.slots[i];
        c.server = Target::None;
        c.connects = 0;
        c.sent = 0;
        c.received = 0;
    }

    /// First free (or expired) slot in index order, else an unused slot,
    /// else the least recently used one (lowest index on ties).
    fn free_slot(&self, now: i64, tracking: i64) -> usize {
        if tracking > 0 || self.slots.len() >= self.capacity {
            if let Some(i) = self
                .slots
                .iter()
                .position(|c| Self::expired(c, now, tracking))
            {
                return i;
            }
        }
        if self.slots.len() < self.capacity {
            return self.slots.len();
        }
        let mut oldest = 0;
        for (i, c) in self.slots.iter().enumerate() {
            if c.last_seen < self.slots[oldest].last_seen {
                oldest = i;
            }
        }
        oldest
    }

    pub fn get(&self, i: usize) -> Option<&Client> {
        self.slots.get(i)
    }

    pub fn get_mut(&mut self, i: usize) -> Option<&mut Client> {
        self.slots.get_mut(i)
    }

    /// Slots in use (not free), with their index, in table order.
    pub fn active(&self) -> impl Iterator<Item = (usize, &Client)> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, c)| c.last_seen != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(s: &str) -> PeerAddr {
        PeerAddr::Inet(s.parse().unwrap())
    }

    #[test]
    fn same_ip_any_port_is_one_client() {
        let mut t = ClientTable::new(10);
        let a = t.store(&peer("127.0.0.1:1000"), 100, 0);
        let b = t.store(&peer("127.0.0.1:2000"), 101, 0);
        assert_eq!(a, b);
        assert_eq!(t.get(a).unwrap().connects, 2);
        let c = t.store(&peer("127.0.0.2:1000"), 101, 0);
        assert_ne!(a, c);
    }

    #[test]
    fn lru_recycling() {
        // doc/pen-0.34.1.md, "Client table": with -c 2, .1 .2 .3 -> .3 replaces
        // .1
        let mut t = ClientTable::new(2);
        let a = t.store(&peer("127.0.0.1:1"), 100, 0);
        t.get_mut(a).unwrap().server = Target::Backend(1);
        let b = t.store(&peer("127.0.0.2:1"), 101, 0);
        let c = t.store(&peer("127.0.0.3:1"), 102, 0);
        assert_eq!(c, a);
        assert_ne!(b, c);
        assert_eq!(t.get(c).unwrap().server, Target::None);
        assert_eq!(t.get(c).unwrap().connects, 1);
        // .1 is new again and takes the LRU slot (.2's)
        let d = t.store(&peer("127.0.0.1:1"), 103, 0);
        assert_eq!(d, b);
    }

    #[test]
    fn lru_ties_take_lowest_index() {
        let mut t = ClientTable::new(3);
        t.store(&peer("127.0.0.1:1"), 100, 0);
        t.store(&peer("127.0.0.2:1"), 100, 0);
        t.store(&peer("127.0.0.3:1"), 100, 0);
        assert_eq!(t.store(&peer("127.0.0.4:1"), 100, 0), 0);
    }

    #[test]
    fn tracking_expiry_forgets_the_server() {
        let mut t = ClientTable::new(10);
        let a = t.store(&peer("127.0.0.1:1"), 100, 2);
        t.get_mut(a).unwrap().server = Target::Backend(1);
        let b = t.store(&peer("127.0.0.1:1"), 102, 2);
        assert_eq!(t.get(b).unwrap().server, Target::Backend(1));
        // 4 s later (> 2 s) it is a new client
        let c = t.store(&peer("127.0.0.1:1"), 106, 2);
        assert_eq!(t.get(c).unwrap().server, Target::None);
        assert_eq!(t.get(c).unwrap().connects, 1);
    }

    #[test]
    fn expired_slot_is_reused_first() {
        let mut t = ClientTable::new(10);
        t.store(&peer("127.0.0.1:1"), 100, 5);
        t.store(&peer("127.0.0.2:1"), 104, 5);
        // .1 expired after 105, .2 is still fresh: .3 takes slot 0
        assert_eq!(t.store(&peer("127.0.0.3:1"), 111, 5), 0);
        // .1 is new again
        let i = t.store(&peer("127.0.0.1:1"), 112, 5);
        assert_eq!(t.get(i).unwrap().connects, 1);
    }

    #[test]
    fn grows_only() {
        let mut t = ClientTable::new(2048);
        t.grow(10);
        assert_eq!(t.capacity(), 2048);
        t.grow(4096);
        assert_eq!(t.capacity(), 4096);
    }

    #[test]
    fn unix_clients_share_a_slot_and_mapped_v4_is_v4() {
        let mut t = ClientTable::new(4);
        let a = t.store(&PeerAddr::Unix("".into()), 1, 0);
        let b = t.store(&PeerAddr::Unix("/x".into()), 1, 0);
        assert_eq!(a, b);
        let c = t.store(&peer("[::ffff:127.0.0.9]:5"), 1, 0);
        let d = t.store(&peer("127.0.0.9:6"), 1, 0);
        assert_eq!(c, d);
    }
}

#[cfg(test)]
mod clock_tests {
    //! Tracking (`-T`) and least-recently-used recycling (`-c`, man/pen.1)
    //! count whole seconds of pen's clock; these tests give that clock as
    //! `now` instead of waiting for it. The one end-to-end test of the
    //! tracking timer is tests/selection.rs, `tracking_time_forgets_clients`.
    use super::*;

    fn peer(s: &str) -> PeerAddr {
        PeerAddr::Inet(s.parse().unwrap())
    }

    /// A table with client 127.0.0.1 seen at second 1000 and sent to server 1.
    fn seen_at_1000(tracking: i64) -> ClientTable {
        let mut t = ClientTable::new(10);
        let i = t.store(&peer("127.0.0.1:1"), 1000, tracking);
        t.get_mut(i).unwrap().server = Target::Backend(1);
        t
    }

    #[test]
    fn a_client_is_remembered_for_exactly_the_tracking_time() {
        // -T 2: still known two seconds later...
        let mut t = seen_at_1000(2);
        let i = t.store(&peer("127.0.0.1:2"), 1002, 2);
        assert_eq!(t.get(i).unwrap().server, Target::Backend(1));
        assert_eq!(t.get(i).unwrap().connects, 2);
        // ...forgotten in the third.
        let mut t = seen_at_1000(2);
        let i = t.store(&peer("127.0.0.1:2"), 1003, 2);
        assert_eq!(t.get(i).unwrap().server, Target::None);
        assert_eq!(t.get(i).unwrap().connects, 1);
    }

    #[test]
    fn each_connection_starts_the_tracking_time_again() {
        let mut t = seen_at_1000(2);
        for now in [1002, 1004, 1006] {
            let i = t.store(&peer("127.0.0.1:3"), now, 2);
            assert_eq!(t.get(i).unwrap().server, Target::Backend(1), "at {now}");
        }
    }

    #[test]
    fn without_tracking_time_a_client_is_never_forgotten() {
        let mut t = seen_at_1000(0);
        let i = t.store(&peer("127.0.0.1:4"), 1_000_000, 0);
        assert_eq!(t.get(i).unwrap().server, Target::Backend(1));
    }

    #[test]
    fn a_forgotten_client_frees_its_slot_for_a_new_one() {
        let mut t = seen_at_1000(2);
        t.store(&peer("127.0.0.2:1"), 1001, 2);
        // .1 expired at 1003, .2 not yet: .3 takes .1's slot.
        assert_eq!(t.store(&peer("127.0.0.3:1"), 1003, 2), 0);
    }

    #[test]
    fn a_full_table_recycles_the_least_recently_seen_client() {
        // -c 2: .1 and .2 at 1000, .1 again at 1001; .3 replaces .2, the
        // least recently seen, although .1 has the lower slot.
        let mut t = ClientTable::new(2);
        let one = t.store(&peer("127.0.0.1:1"), 1000, 0);
        let two = t.store(&peer("127.0.0.2:1"), 1000, 0);
        assert_eq!(t.store(&peer("127.0.0.1:1"), 1001, 0), one);
        assert_eq!(t.store(&peer("127.0.0.3:1"), 1001, 0), two);
        assert_eq!(t.store(&peer("127.0.0.1:1"), 1001, 0), one);
    }
}
