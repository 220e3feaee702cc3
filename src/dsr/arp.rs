//! The servers' Ethernet addresses, learnt by ARP (doc/pen-0.34.1.md, "DSR
//! and tarpit"): an unknown one is asked about at most once a second, a
//! known one again every minute, and the answer to any ARP frame a server
//! sends is kept. Pure: the caller passes the time and sends the requests.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::frame::Mac;

/// How often an address nobody answered for is asked about again.
pub const RETRY: Duration = Duration::from_secs(1);
/// How often a known address is asked about again.
pub const REFRESH: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, Default)]
struct Entry {
    mac: Option<Mac>,
    asked: Option<Instant>,
}

/// The Ethernet address of each server address.
#[derive(Debug, Default)]
pub struct Neighbours {
    entries: HashMap<Ipv4Addr, Entry>,
}

impl Neighbours {
    /// Follows the server list: addresses no longer used are forgotten,
    /// new ones are to be asked about.
    pub fn track(&mut self, addresses: impl IntoIterator<Item = Ipv4Addr>) {
        let wanted: HashMap<Ipv4Addr, Entry> = addresses
            .into_iter()
            .map(|a| (a, self.entries.get(&a).copied().unwrap_or_default()))
            .collect();
        self.entries = wanted;
    }

    pub fn mac(&self, ip: Ipv4Addr) -> Option<Mac> {
        self.entries.get(&ip).and_then(|e| e.mac)
    }

    /// Keeps what an ARP frame from `ip` says; whether `ip` is a server's.
    pub fn learn(&mut self, ip: Ipv4Addr, mac: Mac) -> bool {
        match self.entries.get_mut(&ip) {
            Some(e) => {
                e.mac = Some(mac);
                true
            }
            None => false,
        }
    }

    /// The addresses to ask about at `now`, marked as asked.
    pub fn due(&mut self, now: Instant) -> Vec<Ipv4Addr> {
        let mut out: Vec<Ipv4Addr> = self
            .entries
            .iter_mut()
            .filter(|(_, e)| {
                let every = if e.mac.is_some() { REFRESH } else { RETRY };
                e.asked
                    .is_none_or(|t| now.saturating_duration_since(t) >= every)
            })
            .map(|(ip, e)| {
                e.asked = Some(now);
                *ip
            })
            .collect();
        out.sort();
        out
    }

    /// When [`Self::due`] has something next, if anything is tracked.
    pub fn next_due(&self) -> Option<Instant> {
        self.entries
            .values()
            .map(|e| {
                e.asked
                    .map(|t| t + if e.mac.is_some() { REFRESH } else { RETRY })
            })
            .min_by(|a, b| match (a, b) {
                (None, _) => std::cmp::Ordering::Less,
                (_, None) => std::cmp::Ordering::Greater,
                (Some(a), Some(b)) => a.cmp(b),
            })
            .map(|t| t.unwrap_or_else(Instant::now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 21);
    const B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 22);
    const MAC: Mac = [2, 0, 0, 0, 0, 0x21];

    #[test]
    fn unknown_addresses_are_asked_once_a_second_known_ones_every_minute() {
        let t0 = Instant::now();
        let mut n = Neighbours::default();
        n.track([A, B]);
        assert_eq!(n.due(t0), vec![A, B]);
        assert!(n.due(t0 + Duration::from_millis(999)).is_empty());
        assert!(n.learn(A, MAC));
        assert_eq!(n.mac(A), Some(MAC));
        assert_eq!(n.due(t0 + RETRY), vec![B]);
        assert!(n.due(t0 + Duration::from_secs(59)).contains(&B));
        assert_eq!(n.due(t0 + REFRESH), vec![A, B]);
        // A refresh keeps the address in use meanwhile.
        assert_eq!(n.mac(A), Some(MAC));
    }

    #[test]
    fn only_servers_are_learnt_and_dropped_servers_are_forgotten() {
        let mut n = Neighbours::default();
        n.track([A]);
        assert!(!n.learn(B, MAC));
        assert_eq!(n.mac(B), None);
        n.learn(A, MAC);
        n.track([A, B]);
        assert_eq!(n.mac(A), Some(MAC));
        n.track([B]);
        assert_eq!(n.mac(A), None);
    }

    #[test]
    fn next_due_is_now_for_new_addresses_and_after_the_retry_otherwise() {
        let t0 = Instant::now();
        let mut n = Neighbours::default();
        assert_eq!(n.next_due(), None);
        n.track([A]);
        assert!(n.next_due().is_some_and(|t| t <= Instant::now()));
        n.due(t0);
        assert_eq!(n.next_due(), Some(t0 + RETRY));
        n.learn(A, MAC);
        assert_eq!(n.next_due(), Some(t0 + REFRESH));
    }
}
