//! The upstream side of a connection, shared by TCP pairs and UDP sessions:
//! the acceptor's admission permits (`-x`, `pending_max`; man/pen.1), a
//! client's connection slot held as a [`Lease`], and connecting to the
//! chosen server, failing over to the next one on refusal or timeout.
//!
//! Nothing here holds the balancer lock across a connect: the place to
//! connect to is copied out of the table ([`Dial`]) first.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::addr::Host;
use crate::idle_pool::{Destination, IdlePool};
use crate::logging;
use crate::selection::{self, Attempt};
use crate::state::connections::{state, Pair, PairCounters};
use crate::state::servers::Target;
use crate::state::{Balancer, Refusal};
use crate::sys;
use crate::sys::pipe;
use crate::sys::socket::{self, ConnectOptions, PeerAddr};
use crate::sys::udp;

/// The balancer state; a thread that panicked while holding the lock leaves
/// consistent plain data, so poisoning is ignored (as `Shared::lock` does).
fn lock(balancer: &Mutex<Balancer>) -> MutexGuard<'_, Balancer> {
    balancer.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------
// Admission.

/// The limits the acceptor takes clients in under: at most `conn_max` pairs
/// (`-x`) and fewer than `pending_max` upstream connects in progress. A pair
/// holds a [`Permit`] from before its client is accepted until it ends.
///
/// The acceptor stops polling its listeners while a limit is reached and
/// says so with [`set_waiting`](Self::set_waiting); a permit given back or a
/// connect finished then wakes it through its wake pipe.
#[derive(Debug)]
pub struct Admission {
    /// Permits held.
    active: AtomicUsize,
    /// Stream connects in progress.
    connecting: AtomicUsize,
    conn_max: AtomicUsize,
    pending_max: AtomicUsize,
    waiting: AtomicBool,
    /// Write end of the acceptor's wake pipe.
    wake: Arc<OwnedFd>,
}

// The acceptor publishes `waiting` and then reads the counters; a finishing
// pair changes a counter and then reads `waiting`. Sequentially consistent
// order makes at least one of them see the other, so no wake-up is lost.
const ORDER: Ordering = Ordering::SeqCst;

impl Admission {
    pub fn new(conn_max: usize, pending_max: usize, wake: Arc<OwnedFd>) -> Admission {
        Admission {
            active: AtomicUsize::new(0),
            connecting: AtomicUsize::new(0),
            conn_max: AtomicUsize::new(conn_max),
            pending_max: AtomicUsize::new(pending_max),
            waiting: AtomicBool::new(false),
            wake,
        }
    }

    /// New limits (`conn_max`, `pending_max` at run time); the caller then
    /// wakes the acceptor so it re-checks them.
    pub fn set_limits(&self, conn_max: usize, pending_max: usize) {
        self.conn_max.store(conn_max, Ordering::Relaxed);
        self.pending_max.store(pending_max, Ordering::Relaxed);
    }

    /// The `-x`/`conn_max` limit (UDP mode bounds its sessions by it).
    pub fn conn_max(&self) -> usize {
        self.conn_max.load(Ordering::Relaxed)
    }

    /// Permits held: pairs from before their accept until they end.
    pub fn active(&self) -> usize {
        self.active.load(ORDER)
    }

    /// Whether a permit would be given now.
    pub fn may_accept(&self) -> bool {
        self.active.load(ORDER) < self.conn_max.load(Ordering::Relaxed)
            && self.connecting.load(ORDER) < self.pending_max.load(Ordering::Relaxed)
    }

    /// The acceptor stops (`true`) or resumes polling its listeners; while
    /// it waits, every permit given back and every connect finished wakes it.
    pub fn set_waiting(&self, waiting: bool) {
        self.waiting.store(waiting, ORDER);
    }

    /// A permit for one more pair, taken before accepting its client;
    /// `None` while a limit is reached.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        if self.connecting.load(ORDER) >= self.pending_max.load(Ordering::Relaxed) {
            return None;
        }
        let max = self.conn_max.load(Ordering::Relaxed);
        self.active
            .fetch_update(ORDER, ORDER, |n| (n < max).then_some(n + 1))
            .ok()?;
        Some(Permit {
            admission: Arc::clone(self),
        })
    }

    /// Counts a stream connect as pending until the guard is dropped.
    fn connect_started(&self) -> Connecting<'_> {
        self.connecting.fetch_add(1, ORDER);
        Connecting(self)
    }

    /// A counter went down: wake the acceptor if a limit stopped it.
    fn released(&self) {
        if self.waiting.load(ORDER) {
            pipe::wake(self.wake.as_raw_fd());
        }
    }
}

/// One pair's place under `conn_max`, taken before its client is accepted
/// and given back when dropped, however the pair ends.
#[must_use]
#[derive(Debug)]
pub struct Permit {
    admission: Arc<Admission>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.admission.active.fetch_sub(1, ORDER);
        self.admission.released();
    }
}

/// A stream connect in progress (`pending_max`).
struct Connecting<'a>(&'a Admission);

impl Drop for Connecting<'_> {
    fn drop(&mut self) {
        self.0.connecting.fetch_sub(1, ORDER);
        self.0.released();
    }
}

// ---------------------------------------------------------------------------
// Dialing one server.

/// How servers are reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// A TCP or Unix stream, connected within `connect_timeout`.
    Stream,
    /// A UDP socket connected to the server (UDP mode, `-U`), so only its
    /// datagrams arrive and its port-unreachable errors are reported.
    Datagram,
}

/// Where and how to connect to one server, copied out of the table so the
/// lock is not held while connecting.
#[derive(Debug)]
pub struct Dial {
    target: Target,
    host: Host,
    port: u16,
    opts: ConnectOptions,
    timeout: Duration,
    transport: Transport,
}

impl Dial {
    /// `client` is the client's address, the local address of the upstream
    /// socket with `transparent`. `None` when there is no such server.
    fn new(
        b: &Balancer,
        target: Target,
        client: Option<IpAddr>,
        transport: Transport,
    ) -> Option<Dial> {
        let s = b.servers.get(target)?;
        let st = &b.settings;
        let (bind, transparent) = st.upstream_bind(&s.host, client);
        Some(Dial {
            target,
            host: s.host.clone(),
            port: s.port,
            opts: ConnectOptions {
                bind,
                transparent,
                keepalive: st.keepalive,
                // Always: see listeners::open. `tcp_nodelay` is kept for
                // compatibility only.
                nodelay: matches!(s.host, Host::Ip(_)),
            },
            timeout: st.connect_timeout(),
            transport,
        })
    }

    /// How a health probe reaches server `target` (`health_check`): as a
    /// client's connection would, from no particular client.
    pub fn probe(b: &Balancer, target: Target) -> Option<Dial> {
        Dial::new(b, target, None, Transport::Stream)
    }

    /// Where an idle connection made for this dial goes: a backend slot,
    /// reached as any client would (no `transparent` source address).
    /// `None` for a dial no idle connection can stand in for.
    pub fn idle_destination(&self) -> Option<Destination> {
        let Target::Backend(slot) = self.target else {
            return None;
        };
        (self.transport == Transport::Stream && !self.opts.transparent).then(|| Destination {
            slot,
            host: self.host.clone(),
            port: self.port,
        })
    }

    /// The connected socket (non-blocking).
    pub fn open(&self) -> io::Result<OwnedFd> {
        let invalid = |why| Err(io::Error::new(io::ErrorKind::InvalidInput, why));
        match (&self.host, self.transport) {
            (Host::Ip(ip), Transport::Stream) => {
                socket::connect_inet(&SocketAddr::new(*ip, self.port), &self.opts, self.timeout)
            }
            (Host::Ip(ip), Transport::Datagram) => udp::connect(
                &SocketAddr::new(*ip, self.port),
                self.opts.bind,
                self.opts.transparent,
            ),
            (Host::Unix(path), Transport::Stream) => socket::connect_unix(path, self.timeout),
            (Host::Unix(_), Transport::Datagram) => {
                invalid("Unix-socket servers can't be used in UDP mode")
            }
            (Host::Unset, _) => invalid("server has no address"),
        }
    }
}

/// The address of server `t` as the filters name it.
pub fn server_host(b: &Balancer, t: Target) -> Host {
    b.servers
        .get(t)
        .map(|s| s.host.clone())
        .unwrap_or(Host::Unset)
}

// ---------------------------------------------------------------------------
// The connection slot.

/// A client's connection slot, held from admission until its pair (or UDP
/// session) ends. While connected it also holds the server's count of the
/// connection (`mark_connected`). Dropping it frees the slot and settles the
/// server's and the client's counters (bytes, and the connection), on every
/// way out: normal end, early return, unwinding.
///
/// The lease owns the pair's share of its sockets ([`Pair`]); the slot's
/// share goes with the slot, under the lock, so the sockets close after it,
/// on the pair's thread and outside the lock.
#[derive(Debug)]
pub struct Lease<'a> {
    balancer: &'a Mutex<Balancer>,
    conn: usize,
    client: usize,
    /// The server counting this connection, while connected.
    server: Option<Target>,
    pair: Arc<Pair>,
    /// For dialing servers: the client's address and the transport.
    client_ip: Option<IpAddr>,
    transport: Transport,
}

/// A client taken in by [`admit`].
#[derive(Debug)]
pub struct Admitted<'a> {
    pub lease: Lease<'a>,
    /// The client's way through the servers.
    pub attempt: Attempt,
    /// The first server to connect to; `None`: there is none for the client.
    pub dial: Option<Dial>,
}

/// Takes in a new client (a TCP connection, whose socket is `client`, or a
/// UDP session, which has none): tracks it, takes a connection slot and
/// chooses its first server. `None` when the connection table is full.
pub fn admit<'a>(
    balancer: &'a Mutex<Balancer>,
    peer: &PeerAddr,
    client: Option<OwnedFd>,
    transport: Transport,
    now: i64,
) -> Option<Admitted<'a>> {
    let client_fd = client.as_ref().map_or(-1, AsRawFd::as_raw_fd);
    let pair = Arc::new(Pair::new(client));
    let mut b = lock(balancer);
    // On `None` the guard goes first, so the client closes outside the lock.
    let Some(a) = selection::admit(&mut b, peer, client_fd, &pair, now) else {
        b.counters.refuse(Refusal::Limit);
        return None;
    };
    if a.target.is_none() {
        b.counters.refuse(a.attempt.refusal());
    }
    let lease = Lease {
        balancer,
        conn: a.conn,
        client: a.client,
        server: None,
        pair,
        client_ip: peer.ip(),
        transport,
    };
    let dial = a.target.and_then(|t| lease.dial(&b, t));
    drop(b);
    Some(Admitted {
        lease,
        attempt: a.attempt,
        dial,
    })
}

/// A client connected to a server by [`Admitted::connect`].
#[derive(Debug)]
pub struct Connected<'a, R> {
    pub lease: Lease<'a>,
    /// The client's way through the servers, for later failovers.
    pub attempt: Attempt,
    /// What the caller read from the table on success.
    pub value: R,
}

impl<'a> Admitted<'a> {
    /// Connects the client to its first server or the ones it fails over
    /// to ([`connect_with_failover`]). `None` when no server is left; the
    /// slot is free by then.
    pub fn connect<R>(
        self,
        admission: &Admission,
        idle: Option<&IdlePool>,
        connected: impl FnOnce(&Balancer, Target) -> R,
    ) -> Option<Connected<'a, R>> {
        let Admitted {
            mut lease,
            mut attempt,
            dial,
        } = self;
        let value =
            connect_with_failover(&mut lease, &mut attempt, dial, admission, idle, connected)?;
        Some(Connected {
            lease,
            attempt,
            value,
        })
    }
}

impl Lease<'_> {
    /// The connection slot's index.
    pub fn conn(&self) -> usize {
        self.conn
    }

    /// The sockets and byte counters.
    pub fn pair(&self) -> &Pair {
        &self.pair
    }

    /// The server counting this connection, while connected.
    pub fn server(&self) -> Option<Target> {
        self.server
    }

    fn dial(&self, b: &Balancer, t: Target) -> Option<Dial> {
        Dial::new(b, t, self.client_ip, self.transport)
    }

    /// The connect to `t` succeeded: the server counts the connection, and
    /// the slot names its socket.
    fn connected(&mut self, b: &mut Balancer, t: Target, socket: OwnedFd) {
        b.mark_connected(self.conn, t, socket.as_raw_fd());
        // Not connected until now, so the pair has no server socket yet
        // (`disconnect` gives a connected lease a fresh pair).
        let stored = self.pair.set_server(socket);
        debug_assert!(stored.is_ok(), "a pair connects once");
        self.server = Some(t);
    }

    /// Connecting to (or sending to) `failed` went wrong: blacklists it with
    /// pen's messages, chooses the next server and notes it in the slot.
    /// The next server's dial; `None` when no server is left.
    pub fn fail_over(
        &mut self,
        b: &mut Balancer,
        attempt: &mut Attempt,
        failed: Target,
        error: &io::Error,
        now: i64,
    ) -> Option<Dial> {
        b.connect_failed(failed, error, now);
        let next = attempt.failover(b, now)?;
        if let Some(c) = b.conns.get_mut(self.conn) {
            c.server = next;
        }
        self.dial(b, next)
    }

    /// The server stopped taking the connection (a UDP server answered
    /// port unreachable): its bytes are settled and it no longer counts the
    /// connection; the slot waits for the next server with a fresh pair.
    /// Only for a pair without a client socket (UDP sessions). Returns the
    /// server, and the old pair, to drop once the lock is released (that
    /// closes its socket).
    pub fn disconnect(&mut self, b: &mut Balancer) -> (Option<Target>, Arc<Pair>) {
        let server = self.settle(b);
        let fresh = Arc::new(Pair::new(None));
        if let Some(c) = b.conns.get_mut(self.conn) {
            c.state = state::CONNECTING;
            c.server_fd = -1;
            c.pair = Arc::clone(&fresh);
        }
        (server, std::mem::replace(&mut self.pair, fresh))
    }

    /// Moves the pair's bytes into its server's and client's totals and
    /// ends the server's count of the connection; the server it was.
    fn settle(&mut self, b: &mut Balancer) -> Option<Target> {
        let t = self.server.take()?;
        let up = PairCounters::get(&self.pair.counters.from_client);
        let down = PairCounters::get(&self.pair.counters.from_server);
        b.settle(t, self.client, up, down);
        Some(t)
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let mut b = lock(self.balancer);
        b.conns.remove(self.conn);
        self.settle(&mut b);
    }
}

/// Connects `lease` to the server `dial` names or, when that fails, to the
/// servers its `attempt` fails over to, blacklisting each one that fails.
/// A failure that is this host's own shortage (descriptors, memory, local
/// ports: [`sys::is_local_shortage`]) is not the server's fault: the
/// client is refused and no server is blacklisted.
/// The socket goes into the lease's pair, and `connected` runs under the
/// same lock for whatever else the caller needs from the table. `None` when
/// no server is left. Stream connects count towards `pending_max` while
/// they are in progress. With `idle`, a connection to the server that
/// `idlers N` made in advance is used instead of a fresh connect when one
/// is open.
pub fn connect_with_failover<R>(
    lease: &mut Lease<'_>,
    attempt: &mut Attempt,
    mut dial: Option<Dial>,
    admission: &Admission,
    idle: Option<&IdlePool>,
    connected: impl FnOnce(&Balancer, Target) -> R,
) -> Option<R> {
    while let Some(d) = dial.take() {
        let ready = idle
            .filter(|p| p.holds_any())
            .and_then(|p| p.take(&d.idle_destination()?));
        let result = match ready {
            Some(socket) => Ok(socket),
            None => {
                let _pending =
                    (d.transport == Transport::Stream).then(|| admission.connect_started());
                d.open()
            }
        };
        let now = sys::now_unix();
        let balancer = lease.balancer;
        let mut b = lock(balancer);
        match result {
            Ok(socket) => {
                lease.connected(&mut b, d.target, socket);
                return Some(connected(&b, d.target));
            }
            Err(e) if sys::is_local_shortage(&e) => {
                // Our own shortage, not the server's fault: a local limit.
                b.counters.refuse(crate::state::Refusal::Limit);
                drop(b);
                logging::causes::CLIENT_REFUSED.message(|| {
                    format!(
                        "can't connect to server {}: {e}; client refused, server not blacklisted",
                        d.target.code()
                    )
                });
                return None;
            }
            Err(e) => {
                dial = lease.fail_over(&mut b, attempt, d.target, &e, now);
                if dial.is_none() {
                    b.counters.refuse(attempt.refusal());
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::connections::state;
    use std::net::TcpListener;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;
    use std::sync::atomic::AtomicUsize;

    const B0: Target = Target::Backend(0);
    const B1: Target = Target::Backend(1);

    fn wake_pipe() -> (OwnedFd, Arc<OwnedFd>) {
        let (r, w) = pipe::pipe().unwrap();
        (r, Arc::new(w))
    }

    fn admission(conn_max: usize, pending_max: usize) -> (Arc<Admission>, OwnedFd) {
        let (r, w) = wake_pipe();
        (Arc::new(Admission::new(conn_max, pending_max, w)), r)
    }

    /// Whether the wake pipe got a byte (and takes it).
    fn woken(r: &OwnedFd) -> bool {
        let mut buf = [0u8; 16];
        matches!(socket::read(r.as_fd(), &mut buf), Ok(n) if n > 0)
    }

    #[test]
    fn permits_respect_conn_max() {
        let (adm, _r) = admission(2, 10);
        let a = adm.try_acquire().unwrap();
        let b = adm.try_acquire().unwrap();
        assert!(!adm.may_accept());
        assert!(adm.try_acquire().is_none());
        drop(a);
        assert!(adm.may_accept());
        let c = adm.try_acquire().unwrap();
        assert!(adm.try_acquire().is_none());
        adm.set_limits(3, 10);
        let d = adm.try_acquire().unwrap();
        assert!(adm.try_acquire().is_none());
        drop((b, c, d));
        assert_eq!(adm.active.load(ORDER), 0);
    }

    #[test]
    fn pending_connects_hold_back_permits() {
        let (adm, _r) = admission(10, 1);
        let connecting = adm.connect_started();
        assert!(adm.try_acquire().is_none());
        drop(connecting);
        assert!(adm.try_acquire().is_some());
    }

    #[test]
    fn release_wakes_the_acceptor_only_while_it_waits() {
        let (adm, r) = admission(1, 10);
        let p = adm.try_acquire().unwrap();
        drop(p);
        assert!(!woken(&r));
        let p = adm.try_acquire().unwrap();
        adm.set_waiting(true);
        drop(p);
        assert!(woken(&r));
        let connecting = adm.connect_started();
        drop(connecting);
        assert!(woken(&r));
    }

    #[test]
    fn permits_respect_the_cap_across_threads() {
        let (adm, _r) = admission(3, 100);
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let (adm, inside, most) =
                    (Arc::clone(&adm), Arc::clone(&inside), Arc::clone(&most));
                std::thread::spawn(move || {
                    for _ in 0..2000 {
                        if let Some(p) = adm.try_acquire() {
                            let n = inside.fetch_add(1, ORDER) + 1;
                            most.fetch_max(n, ORDER);
                            std::thread::yield_now();
                            inside.fetch_sub(1, ORDER);
                            drop(p);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(most.load(ORDER) <= 3, "{}", most.load(ORDER));
        assert!(most.load(ORDER) >= 1);
        assert_eq!(adm.active.load(ORDER), 0);
    }

    fn farm(hosts: &[Host]) -> Mutex<Balancer> {
        let mut b = Balancer::default();
        for (i, h) in hosts.iter().enumerate() {
            let s = b.servers.ensure_slot(i);
            s.host = h.clone();
            s.port = 10000 + i as u16;
        }
        // The first new client goes to server 1 (round robin); start at 0.
        b.rr_last = hosts.len().saturating_sub(1);
        Mutex::new(b)
    }

    fn peer() -> PeerAddr {
        PeerAddr::Inet("127.0.0.1:40000".parse().unwrap())
    }

    /// A lease connected to server 0 over a socket pair, with bytes counted.
    fn connected_lease(m: &Mutex<Balancer>) -> Lease<'_> {
        let (client, _) = UnixStream::pair().unwrap();
        let a = admit(m, &peer(), Some(client.into()), Transport::Stream, 100).unwrap();
        let mut lease = a.lease;
        let (server, _) = UnixStream::pair().unwrap();
        lease.connected(&mut lock(m), B0, server.into());
        PairCounters::add(&lease.pair().counters.from_client, 10);
        PairCounters::add(&lease.pair().counters.from_server, 20);
        lease
    }

    fn assert_settled(m: &Mutex<Balancer>) {
        let b = lock(m);
        assert_eq!(b.conns.used(), 0);
        let s = b.servers.get(B0).unwrap();
        assert_eq!((s.conns, s.sent, s.received), (0, 10, 20));
        let (_, c) = b.clients.active().next().unwrap();
        assert_eq!((c.received, c.sent), (10, 20));
    }

    #[test]
    fn lease_counts_the_connection_and_settles_on_drop() {
        let m = farm(&[Host::Ip("127.0.0.1".parse().unwrap())]);
        let lease = connected_lease(&m);
        {
            let b = lock(&m);
            assert_eq!(b.servers.get(B0).unwrap().conns, 1);
            let c = b.conns.get(lease.conn()).unwrap();
            assert_eq!(c.state, state::CONNECTED);
            assert_eq!(c.server, B0);
            assert!(Arc::ptr_eq(&c.pair, &lease.pair));
            assert_eq!(c.server_fd, lease.pair().server().unwrap().as_raw_fd());
        }
        drop(lease);
        assert_settled(&m);
    }

    #[test]
    fn lease_settles_on_an_early_return() {
        fn relay_that_fails(m: &Mutex<Balancer>) -> Result<(), std::num::ParseIntError> {
            let _lease = connected_lease(m);
            let _handshake: u8 = "no".parse()?;
            Ok(())
        }
        let m = farm(&[Host::Ip("127.0.0.1".parse().unwrap())]);
        assert!(relay_that_fails(&m).is_err());
        assert_settled(&m);
    }

    #[test]
    fn lease_settles_when_the_pair_thread_unwinds() {
        let m = farm(&[Host::Ip("127.0.0.1".parse().unwrap())]);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _lease = connected_lease(&m);
            panic!("relay bug");
        }));
        assert!(r.is_err());
        assert_settled(&m);
    }

    #[test]
    fn unconnected_lease_only_frees_its_slot() {
        let m = farm(&[Host::Ip("127.0.0.1".parse().unwrap())]);
        let a = admit(&m, &peer(), None, Transport::Datagram, 100).unwrap();
        assert_eq!(a.lease.server(), None);
        assert!(a.dial.is_some());
        assert_eq!(lock(&m).conns.used(), 1);
        drop(a);
        let b = lock(&m);
        assert_eq!(b.conns.used(), 0);
        assert_eq!(b.servers.get(B0).unwrap().conns, 0);
    }

    #[test]
    fn a_full_table_admits_nobody() {
        let m = farm(&[Host::Ip("127.0.0.1".parse().unwrap())]);
        lock(&m).conns.set_capacity(1);
        let first = admit(&m, &peer(), None, Transport::Datagram, 100);
        assert!(first.is_some());
        assert!(admit(&m, &peer(), None, Transport::Datagram, 100).is_none());
    }

    #[test]
    fn disconnect_settles_and_gives_the_slot_a_fresh_pair() {
        let m = farm(&[Host::Ip("127.0.0.1".parse().unwrap())]);
        let mut lease = connected_lease(&m);
        let (was, old) = lease.disconnect(&mut lock(&m));
        assert_eq!(was, Some(B0));
        assert!(old.server().is_some());
        assert!(lease.pair().server().is_none());
        {
            let b = lock(&m);
            let s = b.servers.get(B0).unwrap();
            assert_eq!((s.conns, s.sent, s.received), (0, 10, 20));
            let c = b.conns.get(lease.conn()).unwrap();
            assert_eq!((c.state, c.server_fd), (state::CONNECTING, -1));
            assert!(Arc::ptr_eq(&c.pair, &lease.pair));
        }
        drop(lease);
        // Nothing is settled twice.
        assert_eq!(lock(&m).servers.get(B0).unwrap().sent, 10);
    }

    #[test]
    fn connect_fails_over_to_the_next_server() {
        let live = TcpListener::bind("127.0.0.1:0").unwrap();
        let m = farm(&[
            Host::Unix("/nonexistent/pen-upstream-test.sock".into()),
            Host::Ip("127.0.0.1".parse().unwrap()),
        ]);
        lock(&m).servers.get_mut(B1).unwrap().port = live.local_addr().unwrap().port();
        let (adm, _r) = admission(10, 10);
        let a = admit(&m, &peer(), None, Transport::Stream, 100).unwrap();
        let (mut lease, mut attempt) = (a.lease, a.attempt);
        let got = connect_with_failover(&mut lease, &mut attempt, a.dial, &adm, None, |b, t| {
            (t, server_host(b, t))
        });
        assert_eq!(got, Some((B1, Host::Ip("127.0.0.1".parse().unwrap()))));
        assert_eq!(lease.server(), Some(B1));
        assert!(lease.pair().server().is_some());
        assert_eq!(adm.connecting.load(ORDER), 0);
        let b = lock(&m);
        assert!(b.servers.get(B0).unwrap().failed_at > 0);
        assert_eq!(b.servers.get(B1).unwrap().conns, 1);
        assert_eq!(b.conns.get(lease.conn()).unwrap().server, B1);
    }

    #[test]
    fn no_server_left_ends_the_connect() {
        let m = farm(&[Host::Unix("/nonexistent/pen-upstream-test.sock".into())]);
        let (adm, _r) = admission(10, 10);
        let a = admit(&m, &peer(), None, Transport::Stream, 100).unwrap();
        let (mut lease, mut attempt) = (a.lease, a.attempt);
        let got = connect_with_failover(&mut lease, &mut attempt, a.dial, &adm, None, |_, t| t);
        assert_eq!(got, None);
        assert_eq!(lease.server(), None);
    }

    #[test]
    fn a_local_shortage_refuses_the_client_and_blacklists_nobody() {
        // Binding to an address this host does not have fails with
        // EADDRNOTAVAIL before any packet reaches a server: this host's
        // problem, like running out of descriptors.
        let live = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = live.local_addr().unwrap().port();
        let m = farm(&[
            Host::Ip("127.0.0.1".parse().unwrap()),
            Host::Ip("127.0.0.1".parse().unwrap()),
        ]);
        {
            let mut b = lock(&m);
            b.settings.source = Some("192.0.2.1".parse().unwrap());
            b.servers.get_mut(B0).unwrap().port = port;
            b.servers.get_mut(B1).unwrap().port = port;
        }
        let (adm, _r) = admission(10, 10);
        let a = admit(&m, &peer(), None, Transport::Stream, 100).unwrap();
        let (mut lease, mut attempt) = (a.lease, a.attempt);
        let got = connect_with_failover(&mut lease, &mut attempt, a.dial, &adm, None, |_, t| t);
        assert_eq!(got, None);
        assert_eq!(adm.connecting.load(ORDER), 0);
        let b = lock(&m);
        for t in [B0, B1] {
            assert_eq!(b.servers.get(t).unwrap().failed_at, 0, "{t:?} blacklisted");
        }
    }

    #[test]
    fn shortages_are_told_from_server_failures() {
        for errno in [libc::EMFILE, libc::ENFILE, libc::ENOMEM, libc::ENOBUFS] {
            assert!(sys::is_local_shortage(&io::Error::from_raw_os_error(errno)));
        }
        for errno in [libc::ECONNREFUSED, libc::ETIMEDOUT, libc::EHOSTUNREACH] {
            assert!(!sys::is_local_shortage(&io::Error::from_raw_os_error(
                errno
            )));
        }
        assert!(!sys::is_local_shortage(&io::ErrorKind::TimedOut.into()));
    }

    #[test]
    fn unix_servers_cannot_take_datagrams() {
        let m = farm(&[Host::Unix("/tmp/x.sock".into())]);
        let d = Dial::new(&lock(&m), B0, None, Transport::Datagram).unwrap();
        assert_eq!(d.open().unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }
}
