//! Direct server return's placement: a table of 256 slots, each naming a
//! server, filled in proportion to the servers' weights; a frame goes to
//! the server in the slot its client hashes to (doc/pen-0.34.1.md, "DSR and
//! tarpit"). Pure: the caller says which servers may be used.
//!
//! pen 0.34.1 built the table once and never again, so a blacklisted server
//! kept its slots. Here it is rebuilt whenever the usable servers or their
//! weights change, moving as few slots as it can: a slot keeps its server
//! while that server may be used and does not hold more than its share.
//! Slots also remember their *home*, the server they have with every
//! configured server usable, so a server back from the blacklist gets its
//! own clients back, and clients of servers that never left are not moved.

use std::net::Ipv4Addr;

pub const SLOTS: usize = 256;

/// The slot a client hashes to: the XOR of its address bytes, and with
/// `roundrobin` of its source port's bytes too (pen's hash).
pub fn slot(client: Ipv4Addr, port: u16, roundrobin: bool) -> usize {
    let [a, b, c, d] = client.octets();
    let mut h = a ^ b ^ c ^ d;
    if roundrobin {
        let [p, q] = port.to_be_bytes();
        h ^= p ^ q;
    }
    usize::from(h)
}

/// Each server's number of slots: pen's split of 256 over the `weights`
/// of the usable servers (`None`: not usable; a weight of 0 counts as 1).
fn shares(weights: &[Option<u32>]) -> Vec<usize> {
    let w: Vec<u64> = weights
        .iter()
        .map(|w| w.map_or(0, |w| u64::from(w.max(1))))
        .collect();
    let mut total: u64 = w.iter().sum();
    let mut left = SLOTS as u64;
    w.iter()
        .map(|&s| {
            if total == 0 || s == 0 {
                return 0;
            }
            let n = left * s / total;
            left -= n;
            total -= s;
            n as usize
        })
        .collect()
}

/// pen's first layout: server 0's slots first, then server 1's, and so on,
/// laid out at slots 0, 3, 6, ... (mod 256), which visits every slot.
fn pen_layout(share: &[usize]) -> Vec<Option<u16>> {
    let mut slots = vec![None; SLOTS];
    let mut servers = share
        .iter()
        .enumerate()
        .flat_map(|(i, &n)| std::iter::repeat_n(i as u16, n));
    let mut at = 0;
    for _ in 0..SLOTS {
        slots[at] = servers.next();
        at = (at + 3) % SLOTS;
    }
    slots
}

/// Fills slots to `share`: a slot keeps the first of its `preferences`
/// that is still under its share; the slots left go, in order, to the
/// server furthest under its share (ties to the lower index).
fn fill(share: &[usize], preferences: &[&[Option<u16>]]) -> Vec<Option<u16>> {
    let mut held = vec![0usize; share.len()];
    let mut slots = vec![None; SLOTS];
    for (at, slot) in slots.iter_mut().enumerate() {
        for p in preferences {
            if let Some(s) = p[at] {
                let s = usize::from(s);
                if s < share.len() && held[s] < share[s] {
                    held[s] += 1;
                    *slot = Some(s as u16);
                    break;
                }
            }
        }
    }
    for slot in slots.iter_mut().filter(|s| s.is_none()) {
        let needy = (0..share.len())
            .filter(|&s| held[s] < share[s])
            .max_by_key(|&s| (share[s] - held[s], std::cmp::Reverse(s)));
        if let Some(s) = needy {
            held[s] += 1;
            *slot = Some(s as u16);
        }
    }
    slots
}

/// The placement table and what it was built from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    /// The server of each slot; empty until built.
    slots: Vec<Option<u16>>,
    /// Each slot's server with every configured server usable.
    home: Vec<Option<u16>>,
    /// The weights the table was built for (`None`: unusable).
    usable: Vec<Option<u32>>,
    /// The weights of the configured servers the homes were built for.
    configured: Vec<Option<u32>>,
}

impl Table {
    /// The server for slot `at`, if any server is usable.
    pub fn server(&self, at: usize) -> Option<usize> {
        self.slots.get(at).copied().flatten().map(usize::from)
    }

    /// Brings the table up to date; whether it changed. `configured` has
    /// the weight of every server slot that has an address (`None`: no
    /// server there), `usable` the same with the servers that may not be
    /// used now (blacklisted, down) as `None`.
    pub fn update(&mut self, configured: &[Option<u32>], usable: &[Option<u32>]) -> bool {
        if self.configured != configured || self.slots.is_empty() {
            let share = shares(configured);
            self.home = if self.home.is_empty() {
                pen_layout(&share)
            } else {
                fill(&share, &[&self.home])
            };
            self.configured = configured.to_vec();
        } else if self.usable == usable {
            return false;
        }
        let share = shares(usable);
        self.slots = if self.slots.is_empty() {
            fill(&share, &[&self.home])
        } else {
            fill(&share, &[&self.home, &self.slots])
        };
        self.usable = usable.to_vec();
        true
    }

    /// The number of slots each server holds.
    #[cfg(test)]
    fn counts(&self, servers: usize) -> Vec<usize> {
        let mut c = vec![0; servers];
        for s in self.slots.iter().flatten() {
            c[usize::from(*s)] += 1;
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(configured: &[Option<u32>]) -> Table {
        let mut t = Table::default();
        t.update(configured, configured);
        t
    }

    #[test]
    fn slots_follow_the_weights_as_pen_splits_them() {
        assert_eq!(shares(&[Some(1), Some(1)]), vec![128, 128]);
        assert_eq!(shares(&[Some(1), Some(3)]), vec![64, 192]);
        // pen: t*s/tw with what is left, so the rounding goes to the last.
        assert_eq!(shares(&[Some(1), Some(1), Some(1)]), vec![85, 85, 86]);
        // Weight 0 counts as 1; unusable servers get nothing.
        assert_eq!(shares(&[Some(0), None, Some(1)]), vec![128, 0, 128]);
        assert_eq!(shares(&[None, None]), vec![0, 0]);
        let t = table(&[Some(1), Some(3)]);
        assert_eq!(t.counts(2), vec![64, 192]);
    }

    #[test]
    fn the_first_layout_is_pens() {
        let t = table(&[Some(1), Some(1)]);
        // Server 0 takes slots 0, 3, 6, ... until its 128 are placed.
        assert_eq!(t.server(0), Some(0));
        assert_eq!(t.server(3), Some(0));
        assert_eq!(t.server(3 * 127 % 256), Some(0));
        assert_eq!(t.server(3 * 128 % 256), Some(1));
    }

    #[test]
    fn the_hash_is_the_xor_of_the_address_and_port_bytes() {
        let a = Ipv4Addr::new(192, 0, 2, 10);
        assert_eq!(slot(a, 40000, false), usize::from(192u8 ^ 2 ^ 10));
        let [p, q] = 40000u16.to_be_bytes();
        assert_eq!(slot(a, 40000, true), usize::from(192u8 ^ 2 ^ 10 ^ p ^ q));
    }

    #[test]
    fn no_usable_server_means_no_server() {
        let mut t = Table::default();
        t.update(&[Some(1), Some(1)], &[None, None]);
        assert_eq!(t.server(7), None);
    }

    #[test]
    fn a_blacklisted_server_loses_only_its_own_slots_and_gets_them_back() {
        let configured = [Some(1), Some(1), Some(2)];
        let mut t = table(&configured);
        let before = t.clone();
        assert!(t.update(&configured, &[Some(1), None, Some(2)]));
        assert_eq!(t.counts(3), vec![85, 0, 171]);
        for at in 0..SLOTS {
            let was = before.server(at);
            if was != Some(1) {
                assert_eq!(t.server(at), was, "slot {at} moved");
            }
        }
        // Back from the blacklist: exactly the old table again.
        assert!(t.update(&configured, &configured));
        assert_eq!(t.slots, before.slots);
        assert!(!t.update(&configured, &configured));
    }

    #[test]
    fn a_second_server_leaving_moves_no_client_of_the_others() {
        let configured = [Some(1), Some(1), Some(1), Some(1)];
        let mut t = table(&configured);
        t.update(&configured, &[Some(1), None, Some(1), Some(1)]);
        let one_gone = t.clone();
        t.update(&configured, &[Some(1), None, Some(1), None]);
        for at in 0..SLOTS {
            let was = one_gone.server(at);
            if was != Some(3) {
                assert_eq!(t.server(at), was, "slot {at} moved");
            }
        }
        assert_eq!(t.counts(4), vec![128, 0, 128, 0]);
    }

    #[test]
    fn a_weight_change_moves_only_what_it_must() {
        let mut t = table(&[Some(1), Some(1)]);
        let before = t.clone();
        t.update(&[Some(1), Some(3)], &[Some(1), Some(3)]);
        assert_eq!(t.counts(2), vec![64, 192]);
        let moved = (0..SLOTS)
            .filter(|&at| t.server(at) != before.server(at))
            .count();
        assert_eq!(moved, 64);
    }

    #[test]
    fn a_new_server_takes_its_share_from_the_others_only() {
        let mut t = table(&[Some(1), Some(1)]);
        let before = t.clone();
        t.update(&[Some(1), Some(1), Some(1)], &[Some(1), Some(1), Some(1)]);
        assert_eq!(t.counts(3), vec![85, 85, 86]);
        for at in 0..SLOTS {
            if t.server(at) != Some(2) {
                assert_eq!(t.server(at), before.server(at));
            }
        }
    }
}
