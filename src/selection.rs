//! Server selection: the initial choice, the acceptance test and the
//! failover walk (doc/pen-0.34.1.md, "Server selection"). Pure logic over
//! [`Balancer`]: the caller does the connecting and reports back.
//!
//! Deliberate differences from pen 0.34.1:
//! * A client denied by `client_acl` with no abuse server configured is
//!   closed; pen sent it to the emergency server (doc/pen-0.34.1.md, quirk Q9).
//! * `-W` with no server weights at all treats every server as weight 1;
//!   pen refused every client (doc/pen-0.34.1.md, "Weight"). When some servers
//!   have a weight, weight-0 servers are still never chosen by weight.
//! * IPv6 clients are hashed over all 16 address bytes, not only the last
//!   one, so a /64 of clients does not land on a handful of servers.
//! * The failover walk visits each server at most once per client even with
//!   `-b 0` (pen could cycle forever when every server refuses).

use std::net::IpAddr;

use std::os::fd::RawFd;
use std::sync::Arc;

use crate::state::clients::ClientKey;
use crate::state::connections::Pair;
use crate::state::servers::Target;
use crate::state::{Balancer, Refusal};
use crate::sys::socket::PeerAddr;

/// Why a server was not acceptable for a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    NoServer,
    NotConfigured,
    Blacklisted,
    Full,
    AclDenied,
}

/// The initial choice for a new connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Initial {
    Server(Target),
    /// Denied by `client_acl` and there is no abuse server.
    Denied,
}

fn available(b: &Balancer, i: usize, now: i64) -> bool {
    let s = &b.servers.backends[i];
    s.is_configured() && !s.is_blacklisted(now, b.settings.blacklist_time)
}

fn client_ip(b: &Balancer, client: usize) -> Option<IpAddr> {
    match b.clients.get(client).map(|c| c.key) {
        Some(ClientKey::Ip(ip)) => Some(ip),
        _ => None,
    }
}

/// Round robin: advance the cursor, then take the first available server
/// (doc/pen-0.34.1.md, "Round robin").
pub fn by_roundrobin(b: &mut Balancer, now: i64) -> Target {
    let n = b.servers.len();
    if n == 0 {
        return Target::None;
    }
    let start = b.rr_last % n;
    let mut i = start;
    loop {
        i = (i + 1) % n;
        if available(b, i, now) {
            b.rr_last = i;
            return Target::Backend(i);
        }
        if i == start {
            return Target::None;
        }
    }
}

/// Weighted least connections: lowest `256 * conns / weight`, ties to the
/// lowest index (doc/pen-0.34.1.md, "Weight").
pub fn by_weight(b: &Balancer, now: i64) -> Target {
    let n = b.servers.len();
    let any_weight = (0..n).any(|i| available(b, i, now) && b.servers.backends[i].weight > 0);
    let mut best: Option<(usize, u64)> = None;
    for i in 0..n {
        if !available(b, i, now) {
            continue;
        }
        let s = &b.servers.backends[i];
        let weight = if any_weight { s.weight } else { 1 };
        if weight == 0 {
            continue;
        }
        let load = 256 * u64::from(s.conns) / u64::from(weight);
        if best.is_none_or(|(_, l)| load < l) {
            best = Some((i, load));
        }
    }
    best.map_or(Target::None, |(i, _)| Target::Backend(i))
}

/// Lowest `prio` among available servers, ties to the lowest index.
pub fn by_prio(b: &Balancer, now: i64) -> Target {
    let mut best: Option<(usize, u32)> = None;
    for i in 0..b.servers.len() {
        if !available(b, i, now) {
            continue;
        }
        let p = b.servers.backends[i].prio;
        if best.is_none_or(|(_, bp)| p < bp) {
            best = Some((i, p));
        }
    }
    best.map_or(Target::None, |(i, _)| Target::Backend(i))
}

/// pen's hash (doc/pen-0.34.1.md, "Hash"): the IPv4 address bytes read as a
/// little-endian u32 (what the Debian amd64 binary does), XORed with the
/// port's network-order bytes read little-endian under `-r`, modulo the
/// number of server slots. Not checked for availability.
pub fn hash_index(ip: Option<IpAddr>, port: u16, roundrobin: bool, n: usize) -> usize {
    let n = n.max(1) as u64;
    let port_bits = if roundrobin {
        u32::from(u16::from_le_bytes(port.to_be_bytes()))
    } else {
        0
    };
    let x = match ip {
        Some(IpAddr::V4(v4)) => u32::from_le_bytes(v4.octets()) ^ port_bits,
        Some(IpAddr::V6(v6)) => {
            let o = v6.octets();
            let mut x = 0u32;
            for w in o.chunks_exact(4) {
                x ^= u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
            }
            x ^ port_bits
        }
        None => 0,
    };
    (u64::from(x) % n) as usize
}

fn by_hash(b: &Balancer, client: usize) -> Target {
    let Some(c) = b.clients.get(client) else {
        return Target::None;
    };
    let port = match &c.addr {
        crate::sys::socket::PeerAddr::Inet(a) => a.port(),
        crate::sys::socket::PeerAddr::Unix(_) => 0,
    };
    let ip = match c.key {
        ClientKey::Ip(ip) => Some(ip),
        ClientKey::Unix => None,
    };
    Target::Backend(hash_index(ip, port, b.settings.roundrobin, b.servers.len()))
}

/// The initial choice (doc/pen-0.34.1.md, "Initial choice"): ACL, then the
/// remembered server unless `-r`, then prio, weight, hash, round robin.
pub fn initial_server(b: &mut Balancer, client: usize, now: i64) -> Initial {
    let ip = client_ip(b, client);
    let permitted = b
        .acls
        .get(b.settings.client_acl)
        .is_none_or(|acl| acl.permits(ip));
    if !permitted {
        return if b.servers.abuse.is_some() {
            Initial::Server(Target::Abuse)
        } else {
            Initial::Denied
        };
    }
    if !b.settings.roundrobin {
        if let Some(Target::Backend(i)) = b.clients.get(client).map(|c| c.server) {
            if i < b.servers.len() {
                return Initial::Server(Target::Backend(i));
            }
        }
    }
    let t = if b.settings.prio {
        by_prio(b, now)
    } else if b.settings.weight {
        by_weight(b, now)
    } else if b.settings.hash {
        if b.servers.is_empty() {
            Target::None
        } else {
            by_hash(b, client)
        }
    } else {
        by_roundrobin(b, now)
    };
    Initial::Server(t)
}

/// pen's `try_server` acceptance checks (doc/pen-0.34.1.md, "Acceptance"),
/// without the connect: configured, not blacklisted, within the soft/hard
/// limits, and permitted by the server's ACL.
pub fn admits(b: &Balancer, t: Target, client: usize, now: i64) -> Result<(), Reject> {
    let s = b.servers.get(t).ok_or(Reject::NoServer)?;
    if !s.is_configured() {
        return Err(Reject::NotConfigured);
    }
    if s.is_blacklisted(now, b.settings.blacklist_time) {
        return Err(Reject::Blacklisted);
    }
    let sticky = b.clients.get(client).is_some_and(|c| c.server == t);
    if s.max_conns != 0 && s.conns >= s.max_conns && (!sticky || s.conns >= s.hard_limit) {
        return Err(Reject::Full);
    }
    let permitted = b
        .acls
        .get(s.acl)
        .is_none_or(|acl| acl.permits(client_ip(b, client)));
    if !permitted {
        return Err(Reject::AclDenied);
    }
    Ok(())
}

/// One client's way through the servers: the initial choice, then the
/// failover walk in index order, then the emergency server.
#[derive(Clone, Debug)]
pub struct Attempt {
    client: usize,
    initial: Target,
    current: Target,
    /// Servers visited by the failover walk so far.
    walked: usize,
    emergency_tried: bool,
    /// `client_acl` denied the client.
    denied: bool,
    /// A server was passed over for being at its limit.
    saw_full: bool,
}

impl Attempt {
    /// Chooses the first server to connect to, or `None` when the client
    /// must be closed. The chosen server is remembered for the client.
    pub fn start(b: &mut Balancer, client: usize, now: i64) -> (Attempt, Option<Target>) {
        let choice = initial_server(b, client, now);
        let initial = match choice {
            Initial::Server(t) => t,
            Initial::Denied => Target::None,
        };
        let mut a = Attempt {
            client,
            initial,
            current: initial,
            walked: 0,
            emergency_tried: false,
            denied: choice == Initial::Denied,
            saw_full: false,
        };
        // Denied by client_acl without abuse server: closed (doc/pen-0.34.1.md,
        // quirk Q9); "nothing available" (Target::None) still goes on to the
        // emergency server.
        if choice == Initial::Denied {
            return (a, None);
        }
        if a.accept(b, initial, now) {
            return (a, Some(initial));
        }
        let next = a.failover(b, now);
        (a, next)
    }

    fn accept(&mut self, b: &mut Balancer, t: Target, now: i64) -> bool {
        if let Err(why) = admits(b, t, self.client, now) {
            self.saw_full |= why == Reject::Full;
            return false;
        }
        self.current = t;
        if let Some(c) = b.clients.get_mut(self.client) {
            c.server = t;
        }
        b.current = t;
        true
    }

    /// The next server after the current one was rejected or failed to
    /// connect (the caller blacklists it first), or `None` to close.
    pub fn failover(&mut self, b: &mut Balancer, now: i64) -> Option<Target> {
        if b.settings.stubborn {
            return None;
        }
        if matches!(self.current, Target::Abuse | Target::Emergency) {
            return None;
        }
        let n = b.servers.len();
        if let (Target::Backend(initial), Target::Backend(mut s)) = (self.initial, self.current) {
            if n > 1 {
                while self.walked < n {
                    s = (s + 1) % n;
                    self.walked += 1;
                    if self.accept(b, Target::Backend(s), now) {
                        return Some(Target::Backend(s));
                    }
                    if s == initial {
                        self.walked = n;
                    }
                }
            }
        }
        if !self.emergency_tried {
            self.emergency_tried = true;
            if self.accept(b, Target::Emergency, now) {
                return Some(Target::Emergency);
            }
        }
        None
    }

    /// Why the client is refused once no server is left for it.
    pub fn refusal(&self) -> Refusal {
        if self.denied {
            Refusal::Acl
        } else if self.saw_full {
            Refusal::Limit
        } else {
            Refusal::NoServer
        }
    }

    /// The server currently being tried.
    pub fn current(&self) -> Target {
        self.current
    }
}

/// A client taken in by [`admit`].
#[derive(Debug)]
pub struct Admitted {
    /// Client table slot.
    pub client: usize,
    /// Connection table slot.
    pub conn: usize,
    pub attempt: Attempt,
    /// The first server to try; `None` closes the client.
    pub target: Option<Target>,
}

/// Takes in a new client (TCP connection or UDP session): tracks it, takes
/// a connection slot and chooses its first server (doc/pen-0.34.1.md,
/// "Connection set-up"). `None` when the connection table is full.
pub fn admit(
    b: &mut Balancer,
    peer: &PeerAddr,
    client_fd: RawFd,
    pair: &Arc<Pair>,
    now: i64,
) -> Option<Admitted> {
    let (client, conn) = b.track(peer, client_fd, pair, now)?;
    let (attempt, target) = Attempt::start(b, client, now);
    if let (Some(t), Some(c)) = (target, b.conns.get_mut(conn)) {
        c.server = t;
    }
    Some(Admitted {
        client,
        conn,
        attempt,
        target,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::Host;
    use crate::state::servers::Backend;
    use crate::sys::socket::PeerAddr;

    fn farm(n: usize) -> Balancer {
        let mut b = Balancer::default();
        for i in 0..n {
            let s = b.servers.ensure_slot(i);
            s.host = Host::Ip("127.0.0.1".parse().unwrap());
            s.port = 10000 + i as u16;
        }
        b
    }

    fn client(b: &mut Balancer, ip: &str, now: i64) -> usize {
        let peer = PeerAddr::Inet(format!("{ip}:40000").parse().unwrap());
        let tracking = b.settings.tracking_time;
        b.clients.store(&peer, now, tracking)
    }

    fn pick(b: &mut Balancer, ip: &str, now: i64) -> Option<Target> {
        let c = client(b, ip, now);
        Attempt::start(b, c, now).1
    }

    #[test]
    fn first_new_client_goes_to_server_1_then_tracking() {
        let mut b = farm(3);
        let got: Vec<_> = [
            "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.1", "10.0.0.2", "10.0.0.3",
        ]
        .iter()
        .map(|ip| pick(&mut b, ip, 100).unwrap())
        .collect();
        use Target::Backend as B;
        assert_eq!(got, vec![B(1), B(2), B(0), B(1), B(2), B(0)]);
    }

    #[test]
    fn roundrobin_ignores_memory() {
        let mut b = farm(3);
        b.settings.roundrobin = true;
        let got: Vec<_> = (0..4)
            .map(|_| pick(&mut b, "10.0.0.1", 100).unwrap())
            .collect();
        use Target::Backend as B;
        assert_eq!(got, vec![B(1), B(2), B(0), B(1)]);
    }

    #[test]
    fn worked_example_from_the_spec() {
        // doc/pen-0.34.1.md, "Worked example"
        let mut b = farm(3);
        use Target::Backend as B;
        assert_eq!(pick(&mut b, "10.0.0.1", 100), Some(B(1)));
        assert_eq!(pick(&mut b, "10.0.0.2", 100), Some(B(2)));
        assert_eq!(pick(&mut b, "10.0.0.1", 100), Some(B(1)));
        assert_eq!(pick(&mut b, "10.0.0.3", 100), Some(B(0)));
        // B refuses: the caller blacklists it and fails over to C.
        let c = client(&mut b, "10.0.0.1", 101);
        let (mut a, t) = Attempt::start(&mut b, c, 101);
        assert_eq!(t, Some(B(1)));
        b.blacklist(B(1), 101);
        assert_eq!(a.failover(&mut b, 101), Some(B(2)));
        assert_eq!(b.clients.get(c).unwrap().server, B(2));
        assert_eq!(pick(&mut b, "10.0.0.4", 102), Some(B(2)));
        // 30 s later B is back; 10.0.0.1 stays on C.
        assert_eq!(pick(&mut b, "10.0.0.1", 140), Some(B(2)));
    }

    #[test]
    fn skips_blacklisted_in_roundrobin() {
        let mut b = farm(3);
        b.blacklist(Target::Backend(1), 100);
        assert_eq!(pick(&mut b, "10.0.0.1", 100), Some(Target::Backend(2)));
        assert_eq!(pick(&mut b, "10.0.0.2", 100), Some(Target::Backend(0)));
        assert_eq!(pick(&mut b, "10.0.0.3", 100), Some(Target::Backend(2)));
        // After expiry it is used again.
        assert_eq!(pick(&mut b, "10.0.0.4", 131), Some(Target::Backend(0)));
        assert_eq!(pick(&mut b, "10.0.0.5", 131), Some(Target::Backend(1)));
    }

    #[test]
    fn hash_matches_pen_on_amd64() {
        // Verified values from doc/pen-0.34.1.md, "Hash" (7 backends).
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(hash_index(ip("127.0.0.1"), 0, false, 7), 2);
        assert_eq!(hash_index(ip("127.0.0.2"), 0, false, 7), 3);
        assert_eq!(hash_index(ip("127.0.1.0"), 0, false, 7), 3);
        assert_eq!(hash_index(ip("127.1.0.0"), 0, false, 7), 5);
        assert_eq!(hash_index(ip("127.9.8.7"), 0, false, 7), 4);
        for last in 0..=255u8 {
            assert_eq!(hash_index(ip(&format!("127.0.0.{last}")), 0, false, 4), 3);
        }
        assert_eq!(hash_index(ip("127.0.0.1"), 40500, true, 7), 0);
        assert_eq!(hash_index(ip("127.0.0.1"), 40501, true, 7), 4);
        assert_eq!(hash_index(ip("127.0.0.1"), 40502, true, 7), 1);
        assert_eq!(hash_index(ip("127.0.0.1"), 40777, true, 7), 6);
        assert_eq!(hash_index(None, 0, false, 7), 0);
    }

    #[test]
    fn ipv6_hash_uses_all_bytes() {
        let a = hash_index(Some("2001:db8::1:0".parse().unwrap()), 0, false, 1000);
        let c = hash_index(Some("2001:db8::2:0".parse().unwrap()), 0, false, 1000);
        assert_ne!(a, c);
    }

    #[test]
    fn hash_mode_with_failover_stays_on_failover_server() {
        let mut b = farm(7);
        b.settings.hash = true;
        assert_eq!(pick(&mut b, "127.0.0.1", 100), Some(Target::Backend(2)));
        let mut b = farm(7);
        b.settings.hash = true;
        b.blacklist(Target::Backend(2), 100);
        assert_eq!(pick(&mut b, "127.0.0.1", 100), Some(Target::Backend(3)));
        assert_eq!(pick(&mut b, "127.0.0.1", 200), Some(Target::Backend(3)));
    }

    #[test]
    fn weight_sequence_from_the_spec() {
        // weights 1,2,4 with -r and long-lived connections (doc/pen-0.34.1.md,
        // "Weight")
        let mut b = farm(3);
        for (i, w) in [1, 2, 4].iter().enumerate() {
            b.servers.backends[i].weight = *w;
        }
        b.settings.weight = true;
        b.settings.roundrobin = true;
        let mut got = Vec::new();
        for _ in 0..14 {
            let t = pick(&mut b, "10.0.0.1", 100).unwrap();
            b.servers.get_mut(t).unwrap().conns += 1;
            got.push(t.code());
        }
        assert_eq!(got, vec![0, 1, 2, 2, 1, 2, 2, 0, 1, 2, 2, 1, 2, 2]);
    }

    #[test]
    fn weight_without_weights_serves_everyone() {
        let mut b = farm(2);
        b.settings.weight = true;
        b.settings.roundrobin = true;
        let t1 = pick(&mut b, "10.0.0.1", 100).unwrap();
        b.servers.get_mut(t1).unwrap().conns += 1;
        let t2 = pick(&mut b, "10.0.0.2", 100).unwrap();
        assert_eq!((t1, t2), (Target::Backend(0), Target::Backend(1)));
        // With some weights, weight-0 servers are never picked.
        b.servers.backends[1].weight = 1;
        for _ in 0..5 {
            assert_eq!(pick(&mut b, "10.0.0.3", 100), Some(Target::Backend(1)));
        }
    }

    #[test]
    fn prio_picks_lowest_available() {
        let mut b = farm(3);
        for (i, p) in [3, 1, 2].iter().enumerate() {
            b.servers.backends[i].prio = *p;
        }
        b.settings.prio = true;
        b.settings.roundrobin = true;
        assert_eq!(pick(&mut b, "10.0.0.1", 100), Some(Target::Backend(1)));
        b.blacklist_for(Target::Backend(1), 5, 100);
        assert_eq!(pick(&mut b, "10.0.0.1", 101), Some(Target::Backend(2)));
        b.blacklist_for(Target::Backend(1), 0, 101);
        assert_eq!(pick(&mut b, "10.0.0.1", 101), Some(Target::Backend(1)));
    }

    #[test]
    fn prio_failover_goes_by_index_not_prio() {
        let mut b = farm(3);
        for (i, p) in [3, 1, 2].iter().enumerate() {
            b.servers.backends[i].prio = *p;
        }
        b.servers.backends[1].max_conns = 1;
        b.servers.backends[1].conns = 1;
        b.settings.prio = true;
        b.settings.roundrobin = true;
        assert_eq!(pick(&mut b, "10.0.0.1", 100), Some(Target::Backend(2)));
        b.servers.backends[2].max_conns = 1;
        b.servers.backends[2].conns = 1;
        assert_eq!(pick(&mut b, "10.0.0.2", 100), Some(Target::Backend(0)));
    }

    #[test]
    fn soft_and_hard_limits() {
        // backend 1 = maxc 1, hard 2; one client IP (doc/pen-0.34.1.md,
        // "Acceptance")
        let mut b = farm(3);
        b.servers.backends[1].max_conns = 1;
        b.servers.backends[1].hard_limit = 2;
        let t = pick(&mut b, "10.0.0.1", 100).unwrap();
        assert_eq!(t, Target::Backend(1));
        b.servers.backends[1].conns += 1;
        assert_eq!(pick(&mut b, "10.0.0.1", 100), Some(Target::Backend(1)));
        b.servers.backends[1].conns += 1;
        assert_eq!(pick(&mut b, "10.0.0.1", 100), Some(Target::Backend(2)));
        // now remembered on 2
        assert_eq!(pick(&mut b, "10.0.0.1", 100), Some(Target::Backend(2)));
        // a different client is not sticky on 1: over the soft limit -> next
        assert_eq!(pick(&mut b, "10.0.0.2", 100), Some(Target::Backend(2)));
    }

    #[test]
    fn emergency_when_all_fail_and_not_remembered() {
        let mut b = farm(2);
        let mut e = Backend::unset();
        e.host = Host::Ip("127.0.0.1".parse().unwrap());
        e.port = 9999;
        b.servers.emergency = Some(e);
        b.blacklist(Target::Backend(0), 100);
        b.blacklist(Target::Backend(1), 100);
        assert_eq!(pick(&mut b, "10.0.0.1", 100), Some(Target::Emergency));
        // Emergency is remembered as -1 and ignored: rebalanced next time.
        assert_eq!(pick(&mut b, "10.0.0.1", 200), Some(Target::Backend(1)));
    }

    #[test]
    fn walk_order_and_end() {
        let mut b = farm(4);
        let c = client(&mut b, "10.0.0.1", 100);
        let (mut a, t) = Attempt::start(&mut b, c, 100);
        assert_eq!(t, Some(Target::Backend(1)));
        let mut seen = vec![1];
        loop {
            b.blacklist(a.current(), 100);
            match a.failover(&mut b, 100) {
                Some(Target::Backend(i)) => seen.push(i),
                Some(other) => panic!("unexpected {other:?}"),
                None => break,
            }
        }
        assert_eq!(seen, vec![1, 2, 3, 0]);
    }

    #[test]
    fn walk_is_bounded_without_blacklisting() {
        let mut b = farm(3);
        b.settings.blacklist_time = 0;
        let c = client(&mut b, "10.0.0.1", 100);
        let (mut a, t) = Attempt::start(&mut b, c, 100);
        assert!(t.is_some());
        let mut tries = 1;
        while a.failover(&mut b, 100).is_some() {
            tries += 1;
            assert!(tries < 10);
        }
        // initial, the two others, then the initial again (retried last)
        assert_eq!(tries, 4);
    }

    #[test]
    fn stubborn_never_fails_over() {
        let mut b = farm(3);
        b.settings.stubborn = true;
        let mut e = Backend::unset();
        e.host = Host::Ip("127.0.0.1".parse().unwrap());
        e.port = 9999;
        b.servers.emergency = Some(e);
        assert_eq!(pick(&mut b, "10.0.0.1", 100), Some(Target::Backend(1)));
        b.blacklist(Target::Backend(1), 100);
        assert_eq!(pick(&mut b, "10.0.0.1", 101), None);
    }

    #[test]
    fn single_server_goes_straight_to_emergency() {
        let mut b = farm(1);
        let mut e = Backend::unset();
        e.host = Host::Ip("127.0.0.1".parse().unwrap());
        e.port = 9999;
        b.servers.emergency = Some(e);
        let c = client(&mut b, "10.0.0.1", 100);
        let (mut a, t) = Attempt::start(&mut b, c, 100);
        assert_eq!(t, Some(Target::Backend(0)));
        b.blacklist(Target::Backend(0), 100);
        assert_eq!(a.failover(&mut b, 100), Some(Target::Emergency));
        assert_eq!(a.failover(&mut b, 100), None);
    }

    #[test]
    fn no_servers_at_all() {
        let mut b = farm(0);
        assert_eq!(pick(&mut b, "10.0.0.1", 100), None);
    }
}
