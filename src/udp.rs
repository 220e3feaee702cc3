//! UDP mode (`-U`, man/pen.1, UDP MODE).
//!
//! # Architecture
//!
//! TCP mode gives every client pair its own thread; UDP has no connections
//! to hand over, so UDP mode runs **one relay thread** (`pen-udp`) that
//! waits on the listening socket and the upstream socket of every session
//! with epoll, so that a wake-up costs the same with 10 sessions or 4,000
//! (with poll() it walked every session's socket each time).
//! The acceptor keeps running without TCP listeners and serves the control
//! socket and the signals as usual. The relay thread never blocks: all its
//! sockets are non-blocking and it takes the balancer lock only for short,
//! I/O-free critical sections (opening, failing over and closing sessions).
//!
//! * A **session** is one client address + port. Its first datagram on the
//!   listener registers the client (tracking), selects a server with the
//!   same rules as TCP (tracking, `-r`, `-h`, `-W`, prio, limits, ACLs,
//!   stubborn, emergency and abuse servers; doc/pen-0.34.1.md,
//!   "Server selection") and opens an upstream UDP socket `connect()`ed to that
//!   server. All of the session's datagrams go through that socket, so the
//!   server sees one stable source port per client session.
//! * Replies read from the upstream socket are sent with `sendto` from the
//!   **listening socket**, so they come from the address and port the
//!   client wrote to. When the listener is a wildcard address (`0.0.0.0`,
//!   `::`), the destination address of each client datagram is recorded
//!   (IP_PKTINFO / IPV6_PKTINFO) and used as the source of the replies.
//!   There are no per-client sockets, so nothing depends on the user id
//!   (pen 0.34.1 lost every datagram with `-u`, doc/pen-0.34.1.md, quirk Q5)
//!   and IPv6 listeners work (quirk Q6). Multiple replies per request are
//!   relayed; datagram boundaries are preserved; datagrams up to 65535 bytes.
//! * Each session holds a slot in the connection table (`connection N`,
//!   `servers` conn counts, USR1 statistics and the status page show it;
//!   `downfd` is -1 because the session has no socket of its own towards
//!   the client, `upfd` is its upstream socket; `close N` ends it) and
//!   counts as one connection of its server while it lives. Bytes are
//!   counted both ways, the first datagram and the replies included (pen
//!   counted neither, quirk Q22).
//! * **Idle timeout**: a session with no datagram in either direction for
//!   `idle_timeout` seconds (if set > 0, `-o "idle_timeout N"`) or else
//!   [`DEFAULT_IDLE_TIMEOUT`] (60 s) is closed and its slot freed; the
//!   client's next datagram opens a new session (new upstream port; with
//!   tracking still the same server). pen 0.34.1 had no timer
//!   (doc/pen-0.34.1.md, "UDP"). The setting is read continuously, so
//!   `idle_timeout N` at run time applies to live sessions within a second.
//! * **Bound**: at most `-x`/`conn_max` sessions (default 500). When the
//!   table is full, a datagram from a new client address evicts the least
//!   recently used session (the one idle longest).
//! * **Dead servers**: a server that answers with ICMP port unreachable
//!   makes the connected upstream socket report ECONNREFUSED. The server is
//!   then blacklisted (`blacklisting server N because of connect failure`,
//!   for `-b` seconds) and the session fails over like a refused TCP
//!   connect (next server by index, then the emergency server; not with
//!   `-s`); the last datagram the failed server did not answer is resent
//!   to the new server (each session keeps a copy of its latest
//!   unanswered datagram for this, at most 64 KiB per session). pen 0.34.1
//!   dropped the session without blacklisting (quirk Q38). With `-s`, or when
//!   no server is left, the session is closed; the client's next datagram
//!   starts a new one.
//! * `-l` logs every datagram from a client (the first one too), `-ddd`
//!   dumps datagrams both ways. `source` and `transparent` apply to the
//!   upstream sockets as to TCP connects. Unix-socket servers cannot be
//!   used in UDP mode (a connect to one fails like a refused connect).

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::logging;
use crate::pair::FilterFactory;
use crate::relay::Filter;
use crate::runtime::Shared;
use crate::selection::Attempt;
use crate::state::connections::PairCounters;
use crate::sys;
use crate::sys::epoll::{self, Epoll, Event};
use crate::sys::socket::{self, PeerAddr};
use crate::sys::udp::{self as udp_sys, LocalAddr};
use crate::upstream::{self, Connected, Lease, Transport};

/// Idle time after which a UDP session ends when `idle_timeout` is 0 (the
/// default).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Receive buffer: larger than any UDP payload.
const MAX_DATAGRAM: usize = udp_sys::RECV_BUFFER_LEN;

/// Datagrams read from the listener per wake-up, so busy clients cannot
/// starve the servers' replies (a session's socket gives one per wake-up).
const BATCH: usize = 64;

/// The loop wakes at least this often to notice changed settings.
const TICK: Duration = Duration::from_secs(1);

/// Ready descriptors taken per wait.
const EVENTS: usize = 256;

/// The listener's token; a session's is its key and the serial number of
/// the watch (`Relay::watches`), so that an event of a socket the session
/// no longer has (it moved, or ended and its key went to a new session in
/// the same round of events) is told apart.
const LISTENER: u64 = u64::MAX;

/// Why the UDP relay could not start.
#[derive(Debug)]
pub enum UdpError {
    /// The listener is not an IPv4/IPv6 socket (e.g. a Unix path).
    NotInet,
    /// Inspecting or configuring the listening socket failed.
    Listener(io::Error),
    /// The relay thread could not be created.
    Thread(io::Error),
}

impl fmt::Display for UdpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UdpError::NotInet => {
                f.write_str("UDP mode (-U) needs an IPv4 or IPv6 listen address, not a Unix socket")
            }
            UdpError::Listener(e) => write!(f, "can't set up the UDP listener: {e}"),
            UdpError::Thread(e) => write!(f, "can't start the UDP relay thread: {e}"),
        }
    }
}

impl std::error::Error for UdpError {}

/// Starts the UDP relay thread on `listener` (a bound, non-blocking UDP
/// socket from `listeners::open(.., udp = true, ..)`). The thread runs until
/// the process exits. `filters` decides per session whether datagrams are
/// logged or dumped, as for TCP pairs.
pub fn spawn(
    shared: Arc<Shared>,
    listener: OwnedFd,
    filters: Arc<FilterFactory>,
) -> Result<std::thread::JoinHandle<()>, UdpError> {
    let local = match socket::local_addr(listener.as_fd()).map_err(UdpError::Listener)? {
        PeerAddr::Inet(a) => a,
        PeerAddr::Unix(_) => return Err(UdpError::NotInet),
    };
    if local.ip().is_unspecified() {
        udp_sys::enable_pktinfo(listener.as_fd(), local.is_ipv6()).map_err(UdpError::Listener)?;
    }
    let epoll = Epoll::new().map_err(UdpError::Listener)?;
    std::thread::Builder::new()
        .name("pen-udp".into())
        .spawn(move || {
            // The sessions' leases borrow the shared state this thread owns.
            Relay {
                shared: &shared,
                listener,
                epoll,
                filters,
                sessions: SessionTable::new(),
                out: Vec::new(),
                watches: 0,
            }
            .run()
        })
        .map_err(UdpError::Thread)
}

/// The session idle time in force: `idle_timeout` if set, else the default.
pub fn idle_timeout(idle_timeout_setting: u64) -> Duration {
    if idle_timeout_setting > 0 {
        Duration::from_secs(idle_timeout_setting)
    } else {
        DEFAULT_IDLE_TIMEOUT
    }
}

// ---------------------------------------------------------------------------
// The session table: pure bookkeeping, generic so it can be unit-tested.

struct Entry<S> {
    client: SocketAddr,
    last_active: Instant,
    session: S,
}

/// Sessions by client address and port, in reusable slots.
struct SessionTable<S> {
    slots: Vec<Option<Entry<S>>>,
    free: Vec<usize>,
    by_client: HashMap<SocketAddr, usize>,
}

impl<S> SessionTable<S> {
    fn new() -> SessionTable<S> {
        SessionTable {
            slots: Vec::new(),
            free: Vec::new(),
            by_client: HashMap::new(),
        }
    }

    fn len(&self) -> usize {
        self.by_client.len()
    }

    fn find(&self, client: &SocketAddr) -> Option<usize> {
        self.by_client.get(client).copied()
    }

    fn insert(&mut self, client: SocketAddr, now: Instant, session: S) -> usize {
        let entry = Entry {
            client,
            last_active: now,
            session,
        };
        let key = match self.free.pop() {
            Some(k) => {
                self.slots[k] = Some(entry);
                k
            }
            None => {
                self.slots.push(Some(entry));
                self.slots.len() - 1
            }
        };
        self.by_client.insert(client, key);
        key
    }

    fn remove(&mut self, key: usize) -> Option<Entry<S>> {
        let e = self.slots.get_mut(key)?.take()?;
        self.by_client.remove(&e.client);
        self.free.push(key);
        Some(e)
    }

    fn get_mut(&mut self, key: usize) -> Option<&mut Entry<S>> {
        self.slots.get_mut(key)?.as_mut()
    }

    fn iter(&self) -> impl Iterator<Item = (usize, &Entry<S>)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(k, e)| e.as_ref().map(|e| (k, e)))
    }

    /// The session idle longest (the eviction victim when the table is full).
    fn least_recently_used(&self) -> Option<usize> {
        self.iter()
            .min_by_key(|(_, e)| e.last_active)
            .map(|(k, _)| k)
    }

    /// Sessions silent for `idle` or longer at `now`.
    fn idle(&self, now: Instant, idle: Duration) -> Vec<usize> {
        self.iter()
            .filter(|(_, e)| now.saturating_duration_since(e.last_active) >= idle)
            .map(|(k, _)| k)
            .collect()
    }

    /// When the next session becomes idle, if there is any session.
    fn next_expiry(&self, idle: Duration) -> Option<Instant> {
        self.iter().map(|(_, e)| e.last_active + idle).min()
    }
}

// ---------------------------------------------------------------------------
// The relay.

/// One client session.
struct Session<'a> {
    /// Where the client's latest datagram was addressed (wildcard
    /// listeners only): the source address of the replies.
    local: Option<LocalAddr>,
    /// The connection slot, the server's count and the upstream socket.
    lease: Lease<'a>,
    attempt: Attempt,
    /// The last datagram sent to the server that it has not answered yet:
    /// resent to the next server when this one turns out to be down.
    unanswered: Unanswered,
    filter: Option<Box<dyn Filter + Send>>,
    /// The token its upstream socket is watched with (0: not watched).
    token: u64,
}

impl Session<'_> {
    /// The socket connected to the session's server.
    fn upstream(&self) -> Option<BorrowedFd<'_>> {
        self.lease.pair().server().map(AsFd::as_fd)
    }
}

struct Relay<'a> {
    shared: &'a Shared,
    listener: OwnedFd,
    /// Watches the listener and every session's upstream socket.
    epoll: Epoll,
    filters: Arc<FilterFactory>,
    sessions: SessionTable<Session<'a>>,
    /// Filter output buffer, reused.
    out: Vec<u8>,
    /// Watches added so far (modulo u32::MAX), the serial in a token.
    watches: u32,
}

/// Why a session ended (for the debug channel).
#[derive(Clone, Copy, Debug)]
enum SessionEnd {
    Idle,
    Evicted,
    Closed,
    NoServer,
    Error,
}

fn is_refused(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ECONNREFUSED)
}

impl Relay<'_> {
    fn run(&mut self) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut events = vec![Event::empty(); EVENTS];
        if let Err(e) = self.epoll.add(self.listener.as_fd(), epoll::IN, LISTENER) {
            logging::message(&format!("UDP relay: can't watch the listener: {e}"));
            return;
        }
        // Idle sessions are looked for when the first of them may expire,
        // and at least every TICK, when the setting is read again.
        let mut next_check = Instant::now();
        loop {
            let now = Instant::now();
            if now >= next_check {
                let idle = idle_timeout(self.shared.lock().settings.idle_timeout);
                for key in self.sessions.idle(now, idle) {
                    self.close(key, SessionEnd::Idle);
                }
                // A session opened later expires after a whole idle time,
                // which is at least a TICK.
                next_check = self
                    .sessions
                    .next_expiry(idle)
                    .map_or(now + TICK, |t| t.min(now + TICK));
            }
            let timeout = next_check.saturating_duration_since(now);
            let ready = match self.epoll.wait(&mut events, Some(timeout)) {
                Ok(n) => n,
                Err(e) => {
                    logging::message(&format!("UDP relay: epoll_wait: {e}"));
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            for ev in &events[..ready] {
                match ev.token() {
                    LISTENER => self.listener_ready(&mut buf),
                    token => self.upstream_ready(token, ev.events(), &mut buf),
                }
            }
        }
    }

    /// Watches the upstream socket of session `key` (a new session, or
    /// one that moved to another server).
    fn watch(&mut self, key: usize) {
        // Serials below u32::MAX, so no token is the listener's.
        self.watches = (self.watches + 1) % u32::MAX;
        let token = (u64::from(self.watches) << 32) | (key as u32 as u64);
        let Some(e) = self.sessions.get_mut(key) else {
            return;
        };
        e.session.token = token;
        let Some(upstream) = e.session.upstream() else {
            return;
        };
        if let Err(err) = self.epoll.add(upstream, epoll::IN, token) {
            logging::debug(1, || {
                format!("UDP: can't watch the session of {}: {err}", e.client)
            });
            self.close(key, SessionEnd::Error);
        }
    }

    /// Stops watching the upstream socket of session `key`, before it
    /// closes.
    fn unwatch(&self, key: usize) {
        let upstream = self
            .sessions
            .slots
            .get(key)
            .and_then(Option::as_ref)
            .and_then(|e| e.session.upstream());
        if let Some(fd) = upstream {
            let _ = self.epoll.delete(fd);
        }
    }

    /// Datagrams from clients.
    fn listener_ready(&mut self, buf: &mut [u8]) {
        for _ in 0..BATCH {
            match udp_sys::recv_from(self.listener.as_fd(), buf) {
                Ok(r) => {
                    if r.truncated {
                        logging::debug(1, || {
                            format!("UDP: datagram from {} too long; dropped", r.peer)
                        });
                        continue;
                    }
                    self.client_datagram(r.peer, r.local, &buf[..r.len]);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    logging::debug(1, || format!("UDP: receive on the listener: {e}"));
                    break;
                }
            }
        }
    }

    fn client_datagram(&mut self, peer: SocketAddr, local: Option<LocalAddr>, data: &[u8]) {
        let now = Instant::now();
        let key = match self.sessions.find(&peer) {
            Some(k) => k,
            // A drain takes no new clients; the listener stays open only
            // for the existing sessions' replies.
            None if self.shared.draining() => {
                self.shared
                    .udp_dropped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return;
            }
            None => match self.open(peer, local, now) {
                Some(k) => k,
                None => return,
            },
        };
        let Some(e) = self.sessions.get_mut(key) else {
            return;
        };
        e.last_active = now;
        if local.is_some() {
            e.session.local = local;
        }
        let payload: &[u8] = match e.session.filter.as_mut() {
            None => data,
            Some(f) => {
                self.out.clear();
                match f.client_data(data, &mut self.out) {
                    Ok(()) => &self.out,
                    Err(reply) => {
                        let _ = udp_sys::send_to(
                            self.listener.as_fd(),
                            &reply,
                            &peer,
                            e.session.local.as_ref(),
                        );
                        self.close(key, SessionEnd::Closed);
                        return;
                    }
                }
            }
        };
        let Some(upstream) = e.session.upstream() else {
            return;
        };
        match socket::write(upstream, payload) {
            Ok(n) => {
                PairCounters::add(&e.session.lease.pair().counters.from_client, n);
                e.session.unanswered.remember(payload);
            }
            Err(err) if is_refused(&err) => {
                // An earlier datagram drew a port unreachable: this one was
                // not sent; it goes to the next server instead.
                e.session.unanswered.remember(payload);
                self.fail_over(key);
            }
            Err(err) => {
                logging::debug(2, || format!("UDP: datagram from {peer} dropped: {err}"));
            }
        }
    }

    /// A new session for `peer`: evict if full, register, select, connect.
    fn open(&mut self, peer: SocketAddr, local: Option<LocalAddr>, now: Instant) -> Option<usize> {
        let conn_max = self.shared.admission.conn_max().max(1);
        while self.sessions.len() >= conn_max {
            let victim = self.sessions.least_recently_used()?;
            self.close(victim, SessionEnd::Evicted);
        }
        let client = PeerAddr::Inet(peer);
        self.shared
            .accepted
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let Some(admitted) = upstream::admit(
            self.shared.balancer(),
            &client,
            None,
            Transport::Datagram,
            sys::now_unix(),
        ) else {
            logging::debug(1, || format!("UDP: no free connection slot for {peer}"));
            return None;
        };
        let connected = admitted.connect(&self.shared.admission, None, |b, t| {
            (t, upstream::server_host(b, t))
        });
        let Some(Connected {
            lease,
            attempt,
            value: (target, server_host),
        }) = connected
        else {
            logging::debug(1, || {
                format!("no server for UDP client {peer}; datagram dropped")
            });
            return None;
        };
        let filter = (self.filters)(self.shared, &client, &server_host);
        logging::debug(2, || {
            format!("UDP session for {peer} on server {}", target.code())
        });
        let key = self.sessions.insert(
            peer,
            now,
            Session {
                local,
                lease,
                attempt,
                unanswered: Unanswered::default(),
                filter,
                token: 0,
            },
        );
        self.watch(key);
        // Closed again if it could not be watched.
        self.sessions.get_mut(key).map(|_| key)
    }

    /// The upstream socket of the session that `token` names is readable
    /// (or failed). One datagram per event: the watch is level-triggered,
    /// so another one waiting is reported again, and a reply, the usual
    /// case, costs no read that finds nothing.
    fn upstream_ready(&mut self, token: u64, events: u32, buf: &mut [u8]) {
        let key = (token & u64::from(u32::MAX)) as usize;
        let Some(e) = self.sessions.get_mut(key) else {
            return;
        };
        // Stale: the session ended, or moved to another socket, earlier in
        // this round of events.
        if e.session.token != token {
            return;
        }
        let Some(upstream) = e.session.upstream() else {
            return;
        };
        if events & (epoll::IN | epoll::ERR) != 0 {
            match socket::read(upstream, buf) {
                Ok(n) => {
                    let data = &buf[..n];
                    e.last_active = Instant::now();
                    e.session.unanswered.answered();
                    // Counted as received from the server before it is
                    // passed on, so a client that has its reply never
                    // sees statistics without it.
                    PairCounters::add(&e.session.lease.pair().counters.from_server, n);
                    if let Some(f) = e.session.filter.as_mut() {
                        f.server_data(data);
                    }
                    if let Err(err) = reply(
                        self.listener.as_fd(),
                        &e.client,
                        e.session.local.as_ref(),
                        data,
                    ) {
                        logging::debug(2, || format!("UDP: reply to {} dropped: {err}", e.client));
                    }
                }
                Err(err)
                    if err.kind() == io::ErrorKind::WouldBlock
                        || err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if is_refused(&err) => {
                    self.fail_over(key);
                    return;
                }
                Err(err) => {
                    logging::debug(1, || format!("UDP: session for {}: {err}", e.client));
                    self.close(key, SessionEnd::Error);
                    return;
                }
            }
        }
        if events & epoll::HUP != 0 {
            // Shut down by `close N`.
            self.close(key, SessionEnd::Closed);
        }
    }

    /// The session's server answered with port unreachable: blacklist it,
    /// move the session to the next server and resend the datagram it did
    /// not answer. Closes the session when there is no next server.
    fn fail_over(&mut self, key: usize) {
        self.unwatch(key);
        let Some(e) = self.sessions.get_mut(key) else {
            return;
        };
        let client = e.client;
        let s = &mut e.session;
        let now = sys::now_unix();
        let (old, next) = {
            let mut b = self.shared.lock();
            let (failed, old) = s.lease.disconnect(&mut b);
            let refused = io::Error::from_raw_os_error(libc::ECONNREFUSED);
            let next =
                failed.and_then(|t| s.lease.fail_over(&mut b, &mut s.attempt, t, &refused, now));
            (old, next)
        };
        // The slot no longer names the old socket, so it may close now.
        drop(old);
        let moved = upstream::connect_with_failover(
            &mut s.lease,
            &mut s.attempt,
            next,
            &self.shared.admission,
            None,
            |_, t| t,
        );
        match moved {
            Some(t) => {
                logging::debug(2, || {
                    format!("UDP session for {client} moved to server {}", t.code())
                });
                if let (Some(d), Some(upstream)) = (s.unanswered.get(), s.upstream()) {
                    // Counted when it was first read from the client.
                    if let Err(err) = socket::write(upstream, d) {
                        logging::debug(2, || format!("UDP: resend for {client} failed: {err}"));
                    }
                }
                self.watch(key);
            }
            None => self.close(key, SessionEnd::NoServer),
        }
    }

    /// Ends a session: its lease frees the connection slot and moves its
    /// counters into the totals, then its upstream socket closes.
    fn close(&mut self, key: usize, why: SessionEnd) {
        self.unwatch(key);
        let Some(e) = self.sessions.remove(key) else {
            return;
        };
        drop(e.session);
        logging::debug(2, || {
            format!("UDP session for {} ended ({why:?})", e.client)
        });
    }
}

/// Sends a reply from the listening socket `fd`, from the address the
/// client wrote to; if that address is gone, lets the kernel choose.
fn reply(
    fd: BorrowedFd<'_>,
    client: &SocketAddr,
    local: Option<&LocalAddr>,
    data: &[u8],
) -> io::Result<usize> {
    match udp_sys::send_to(fd, data, client, local) {
        Err(e) if local.is_some() && e.raw_os_error() == Some(libc::EINVAL) => {
            udp_sys::send_to(fd, data, client, None)
        }
        r => r,
    }
}

/// A session's latest datagram to its server while it is unanswered. The
/// buffer outlives the answer, so a conversation allocates it once.
#[derive(Default)]
struct Unanswered {
    datagram: Vec<u8>,
    waiting: bool,
}

impl Unanswered {
    /// Keeps a copy of `data`, reusing the buffer.
    fn remember(&mut self, data: &[u8]) {
        self.datagram.clear();
        self.datagram.extend_from_slice(data);
        self.waiting = true;
    }

    fn answered(&mut self) {
        self.waiting = false;
    }

    fn get(&self) -> Option<&[u8]> {
        self.waiting.then_some(&self.datagram[..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn sessions_are_keyed_by_address_and_port() {
        let t0 = Instant::now();
        let mut t = SessionTable::new();
        let a = t.insert(addr("127.0.0.1:1000"), t0, "a");
        let b = t.insert(addr("127.0.0.1:1001"), t0, "b");
        assert_ne!(a, b);
        assert_eq!(t.find(&addr("127.0.0.1:1000")), Some(a));
        assert_eq!(t.find(&addr("127.0.0.1:1001")), Some(b));
        assert_eq!(t.find(&addr("127.0.0.2:1000")), None);
        assert_eq!(t.len(), 2);
        assert_eq!(t.remove(a).map(|e| e.session), Some("a"));
        assert_eq!(t.find(&addr("127.0.0.1:1000")), None);
        assert!(t.remove(a).is_none());
        // The freed slot is reused.
        assert_eq!(t.insert(addr("127.0.0.3:1"), t0, "c"), a);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn least_recently_used_is_the_longest_idle() {
        let t0 = Instant::now();
        let mut t = SessionTable::new();
        let a = t.insert(addr("127.0.0.1:1"), t0, ());
        let b = t.insert(addr("127.0.0.2:1"), t0 + Duration::from_secs(1), ());
        let c = t.insert(addr("127.0.0.3:1"), t0 + Duration::from_secs(2), ());
        assert_eq!(t.least_recently_used(), Some(a));
        t.get_mut(a).unwrap().last_active = t0 + Duration::from_secs(3);
        assert_eq!(t.least_recently_used(), Some(b));
        t.remove(b);
        assert_eq!(t.least_recently_used(), Some(c));
        t.remove(a);
        t.remove(c);
        assert_eq!(t.least_recently_used(), None);
    }

    #[test]
    fn idle_sessions_and_next_expiry() {
        let t0 = Instant::now();
        let idle = Duration::from_secs(60);
        let mut t = SessionTable::new();
        assert_eq!(t.next_expiry(idle), None);
        let a = t.insert(addr("[::1]:1"), t0, ());
        let b = t.insert(addr("[::1]:2"), t0 + Duration::from_secs(30), ());
        assert_eq!(t.next_expiry(idle), Some(t0 + idle));
        assert!(t.idle(t0 + Duration::from_secs(59), idle).is_empty());
        assert_eq!(t.idle(t0 + idle, idle), vec![a]);
        let mut both = t.idle(t0 + Duration::from_secs(90), idle);
        both.sort_unstable();
        assert_eq!(both, vec![a.min(b), a.max(b)]);
    }

    #[test]
    fn idle_timeout_setting_overrides_the_default() {
        assert_eq!(idle_timeout(0), DEFAULT_IDLE_TIMEOUT);
        assert_eq!(idle_timeout(5), Duration::from_secs(5));
    }

    #[test]
    fn remember_reuses_its_buffer() {
        let mut slot = Unanswered::default();
        assert_eq!(slot.get(), None);
        slot.remember(b"first datagram");
        let capacity = slot.datagram.capacity();
        slot.answered();
        assert_eq!(slot.get(), None);
        slot.remember(b"2nd");
        assert_eq!(slot.get(), Some(&b"2nd"[..]));
        assert_eq!(slot.datagram.capacity(), capacity);
        // An empty datagram is one too.
        slot.remember(b"");
        assert_eq!(slot.get(), Some(&b""[..]));
    }
}
