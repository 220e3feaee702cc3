//! The balancer's state: settings, server table, client table, ACLs and the
//! connection table, kept together behind one `Mutex` by the runtime. Pure
//! data: nothing here touches a socket, so critical sections stay short.

use std::net::IpAddr;
use std::os::fd::RawFd;

use crate::addr::Host;
use crate::connections::{state, Connection, PairCounters};
use crate::select::Attempt;
use crate::sys::socket::PeerAddr;
use std::sync::Arc;

use crate::acl::AclTable;
use crate::clients::ClientTable;
use crate::connections::ConnectionTable;
use crate::servers::{ServerTable, Target};

/// A client taken in by [`Balancer::admit`].
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

/// `tcp_fastclose` (spec protocols.md §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FastClose {
    #[default]
    Off,
    /// Close the pair as soon as the server side sent EOF.
    Up,
    /// Close the pair as soon as the client side sent EOF.
    Down,
    Both,
}

impl FastClose {
    pub fn name(self) -> &'static str {
        match self {
            FastClose::Off => "off",
            FastClose::Up => "up",
            FastClose::Down => "down",
            FastClose::Both => "both",
        }
    }
}

/// Run-time settings: everything a penctl command can change.
#[derive(Clone, Debug)]
pub struct Settings {
    pub hash: bool,
    pub roundrobin: bool,
    pub stubborn: bool,
    pub weight: bool,
    pub prio: bool,
    pub http: bool,
    pub ascii: bool,
    pub tcp_nodelay: bool,
    pub keepalive: bool,
    pub transparent: bool,
    pub abort_on_error: bool,
    /// `-b`: seconds a failed server stays blacklisted.
    pub blacklist_time: i64,
    /// `-t`: connect timeout in seconds.
    pub connect_timeout: i64,
    /// `-T`: seconds a client is remembered (0 = forever).
    pub tracking_time: i64,
    pub debug: u32,
    pub client_acl: usize,
    pub control_acl: usize,
    /// Seconds of silence after which a pair is closed (0 = never).
    pub idle_timeout: u64,
    /// Maximum upstream connects in progress at once.
    pub pending_max: usize,
    pub fastclose: FastClose,
    /// Local address for upstream connections (`source`).
    pub source: Option<IpAddr>,
    /// `-m`: accepts per readiness event.
    pub multi_accept: usize,
    /// `-q`: listen backlog.
    pub listen_queue: i32,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            hash: false,
            roundrobin: false,
            stubborn: false,
            weight: false,
            prio: false,
            http: false,
            ascii: false,
            tcp_nodelay: false,
            keepalive: false,
            transparent: false,
            abort_on_error: false,
            blacklist_time: 30,
            // The real default is 3 s; pen's man page says 5 (spec cli.md §3.1).
            connect_timeout: 3,
            tracking_time: 0,
            debug: 0,
            client_acl: 0,
            control_acl: 0,
            idle_timeout: 0,
            pending_max: 100,
            fastclose: FastClose::Off,
            source: None,
            multi_accept: 100,
            listen_queue: 500,
        }
    }
}

pub const DEFAULT_CLIENTS_MAX: usize = 2048;
pub const DEFAULT_CONN_MAX: usize = 500;

/// Everything the selection rules and the control commands work on.
#[derive(Debug)]
pub struct Balancer {
    pub settings: Settings,
    pub servers: ServerTable,
    pub clients: ClientTable,
    pub acls: AclTable,
    pub conns: ConnectionTable,
    /// Round-robin cursor; starts at 0 and is advanced before use, so the
    /// first new client goes to server 1 (spec selection.md §4.1).
    pub rr_last: usize,
    /// The most recently tried server (status page "current").
    pub current: Target,
    /// Set once start-up is over: from then on `clients_max`/`conn_max`
    /// only grow the tables; before, any size is taken (pen's tables do
    /// not exist yet during option parsing, spec cli.md §3 `-c`).
    pub running: bool,
}

impl Default for Balancer {
    fn default() -> Balancer {
        Balancer {
            settings: Settings::default(),
            servers: ServerTable::default(),
            clients: ClientTable::new(DEFAULT_CLIENTS_MAX),
            acls: AclTable::default(),
            conns: ConnectionTable::new(DEFAULT_CONN_MAX),
            rr_last: 0,
            current: Target::Backend(0),
            running: false,
        }
    }
}

impl Settings {
    /// The local address for an upstream socket to `server`, and whether
    /// IP_TRANSPARENT is needed for it: `source` wins over `transparent`
    /// (spec protocols.md §4); either applies only when its address family
    /// matches the server's (pen: IPv4 only for transparent).
    pub fn upstream_bind(&self, server: &Host, client: Option<IpAddr>) -> (Option<IpAddr>, bool) {
        let same_family = |ip: &IpAddr| match server {
            Host::Ip(s) => s.is_ipv4() == ip.is_ipv4(),
            _ => false,
        };
        match (self.source, self.transparent) {
            (Some(src), _) => (Some(src).filter(same_family), false),
            (None, true) => {
                let bind = client.map(crate::clients::canonical_ip).filter(same_family);
                (bind, bind.is_some())
            }
            (None, false) => (None, false),
        }
    }
}

impl Balancer {
    /// A new client (TCP connection or UDP session): track it, take a
    /// connection slot and choose its first server (spec selection.md §3).
    /// `None` when the connection table is full.
    pub fn admit(
        &mut self,
        peer: &PeerAddr,
        client_fd: RawFd,
        counters: &Arc<PairCounters>,
        now: i64,
    ) -> Option<Admitted> {
        let client = self.clients.store(peer, now, self.settings.tracking_time);
        let conn = self.conns.insert(Connection {
            state: state::CONNECTING,
            client,
            server: Target::None,
            client_fd,
            server_fd: -1,
            counters: Arc::clone(counters),
            since: now,
        })?;
        let (attempt, target) = Attempt::start(self, client, now);
        if let (Some(t), Some(c)) = (target, self.conns.get_mut(conn)) {
            c.server = t;
        }
        Some(Admitted {
            client,
            conn,
            attempt,
            target,
        })
    }

    /// An upstream connection to `t` is up for connection slot `conn_id`.
    pub fn mark_connected(&mut self, conn_id: usize, t: Target, server_fd: RawFd) {
        if let Some(s) = self.servers.get_mut(t) {
            s.conns += 1;
        }
        if let Some(c) = self.conns.get_mut(conn_id) {
            c.state = state::CONNECTED;
            c.server = t;
            c.server_fd = server_fd;
        }
    }

    /// A connection to `t` for client slot `client` ended (or moved on):
    /// it no longer counts for the server, and its bytes (`up` read from
    /// the client, `down` read from the server) join the totals.
    pub fn settle(&mut self, t: Target, client: usize, up: u64, down: u64) {
        if let Some(s) = self.servers.get_mut(t) {
            s.conns = s.conns.saturating_sub(1);
            s.sent += up;
            s.received += down;
        }
        if let Some(c) = self.clients.get_mut(client) {
            c.received += up;
            c.sent += down;
        }
    }

    /// Connecting to `t` failed: blacklist it (with pen's messages) and
    /// choose the next server of the attempt, if any.
    pub fn connect_failed(
        &mut self,
        attempt: &mut Attempt,
        t: Target,
        error: &std::io::Error,
        now: i64,
    ) -> Option<Target> {
        let why = if error.kind() == std::io::ErrorKind::TimedOut {
            "connect timeout"
        } else {
            // pen prints strerror's text, without Rust's "(os error N)".
            let text = error.to_string();
            let text = text.split(" (os error").next().unwrap_or(&text);
            crate::log::message(&format!("Connect failed: {text}"));
            "connect failure"
        };
        self.blacklist(t, now);
        crate::log::message(&format!(
            "blacklisting server {} because of {why}",
            t.code()
        ));
        attempt.failover(self, now)
    }

    /// Marks `t` as failed now (spec selection.md §9).
    pub fn blacklist(&mut self, t: Target, now: i64) {
        if let Some(s) = self.servers.get_mut(t) {
            s.failed_at = now;
        }
    }

    /// `server N blacklist T`: blacklisted for exactly T more seconds
    /// (0 lifts it).
    pub fn blacklist_for(&mut self, t: Target, seconds: i64, now: i64) {
        let bt = self.settings.blacklist_time;
        if let Some(s) = self.servers.get_mut(t) {
            s.failed_at = if seconds <= 0 { 0 } else { now + seconds - bt };
        }
    }
}
