//! The balancer's state: settings, server table, client table, ACLs and the
//! connection table, kept together behind one `Mutex` by the runtime. Pure
//! data: nothing here touches a socket, so critical sections stay short.
//!
//! * `servers`: the server table (`ServerTable`, `Backend`, `Target`);
//! * `clients`: the client table that tracking remembers clients in;
//! * `connections`: the connection table and each pair's shared handle.

pub mod clients;
pub mod connections;
pub mod servers;

use std::os::fd::RawFd;

use crate::settings::{Settings, DEFAULT_CLIENTS_MAX, DEFAULT_CONN_MAX};
use crate::sys::socket::PeerAddr;
use connections::{state, Connection, Pair};
use std::sync::Arc;

use crate::acl::AclTable;
use crate::geoip::GeoIp;
use clients::ClientTable;
use connections::ConnectionTable;
use servers::{ServerTable, Target};

/// Everything the selection rules and the control commands work on.
#[derive(Clone, Debug)]
pub struct Balancer {
    pub settings: Settings,
    pub servers: ServerTable,
    pub clients: ClientTable,
    pub acls: AclTable,
    /// The GeoIP databases that country ACL entries use.
    pub geoip: GeoIp,
    pub conns: ConnectionTable,
    /// Round-robin cursor; starts at 0 and is advanced before use, so the
    /// first new client goes to server 1 (doc/pen-0.34.1.md, "Round robin").
    pub rr_last: usize,
    /// The most recently tried server (status page "current").
    pub current: Target,
    /// Set once start-up is over: from then on `clients_max`/`conn_max`
    /// only grow the tables; before, any size is taken (pen's tables do
    /// not exist yet during option parsing, doc/pen-0.34.1.md, "Command line"
    /// `-c`).
    pub running: bool,
    /// Clients closed by `accept_proxy`: no valid PROXY header in time, or
    /// not permitted to send one.
    pub proxy_refused: u64,
    /// Process-wide counters for the metrics; they live in the running
    /// state, so reloads keep them.
    pub counters: Counters,
    /// Direct server return's counters; `None` when it is off.
    pub dsr: Option<DsrCounters>,
}

/// Why a client was refused (`pen_clients_refused_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `client_acl` denied it.
    Acl,
    /// A limit: the connection table, or every server it could use at its
    /// `max`/`hard` limit.
    Limit,
    /// No server would take it (none configured, all blacklisted or failed).
    NoServer,
    /// No thread could be started for it.
    Thread,
}

impl Refusal {
    pub const ALL: [Refusal; 4] = [
        Refusal::Acl,
        Refusal::Limit,
        Refusal::NoServer,
        Refusal::Thread,
    ];

    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Acl => "acl",
            Refusal::Limit => "limit",
            Refusal::NoServer => "no_server",
            Refusal::Thread => "thread",
        }
    }
}

/// Counters that only grow, counted under the lock where the events happen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Refused clients, by [`Refusal`] in [`Refusal::ALL`] order.
    pub refused: [u64; 4],
}

impl Counters {
    pub fn refuse(&mut self, why: Refusal) {
        self.refused[why as usize] += 1;
    }

    pub fn refused(&self, why: Refusal) -> u64 {
        self.refused[why as usize]
    }
}

/// What direct server return did with the frames it saw (`dsr` reply,
/// man/penctl.1). The per-server counts are in the server table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DsrCounters {
    /// The interface, its Ethernet address and the VIP, as the `dsr`
    /// reply's first line says them.
    pub description: String,
    pub forwarded: u64,
    /// Dropped: no server usable.
    pub no_server: u64,
    /// Dropped: the chosen server's Ethernet address is not known yet.
    pub no_mac: u64,
    /// Dropped: the interface would not take the frame (larger than its
    /// MTU, buffers full).
    pub unsendable: u64,
    /// Dropped by the kernel before pen read them: the packet socket's
    /// buffer was full (pen did not keep up).
    pub queue_full: u64,
    /// SYNs answered by the tarpit.
    pub tarpitted: u64,
    /// ARP requests answered (for the VIP and for tarpit addresses).
    pub arp_replies: u64,
}

impl Default for Balancer {
    fn default() -> Balancer {
        Balancer {
            settings: Settings::default(),
            servers: ServerTable::default(),
            clients: ClientTable::new(DEFAULT_CLIENTS_MAX),
            acls: AclTable::default(),
            geoip: GeoIp::default(),
            conns: ConnectionTable::new(DEFAULT_CONN_MAX),
            rr_last: 0,
            current: Target::Backend(0),
            running: false,
            proxy_refused: 0,
            counters: Counters::default(),
            dsr: None,
        }
    }
}

impl Balancer {
    /// A new client (TCP connection or UDP session): track it and take a
    /// connection slot; `(client slot, connection slot)`, or `None` when the
    /// connection table is full. `selection::admit` chooses its server.
    pub fn track(
        &mut self,
        peer: &PeerAddr,
        client_fd: RawFd,
        pair: &Arc<Pair>,
        now: i64,
    ) -> Option<(usize, usize)> {
        let client = self.clients.store(peer, now, self.settings.tracking_time);
        let conn = self.conns.insert(Connection {
            state: state::CONNECTING,
            client,
            server: Target::None,
            client_fd,
            server_fd: -1,
            pair: Arc::clone(pair),
            since: now,
        })?;
        Some((client, conn))
    }

    /// An upstream connection to `t` is up for connection slot `conn_id`.
    pub fn mark_connected(&mut self, conn_id: usize, t: Target, server_fd: RawFd) {
        if let Some(s) = self.servers.get_mut(t) {
            s.conns += 1;
            s.metrics.connections += 1;
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

    /// Connecting to `t` failed: blacklist it, with pen's messages. The
    /// caller then asks its `Attempt` for the next server.
    pub fn connect_failed(&mut self, t: Target, error: &std::io::Error, now: i64) {
        let why = if error.kind() == std::io::ErrorKind::TimedOut {
            "connect timeout"
        } else {
            // pen prints strerror's text, without Rust's "(os error N)".
            let text = error.to_string();
            let text = text.split(" (os error").next().unwrap_or(&text);
            crate::logging::message(&format!("Connect failed: {text}"));
            "connect failure"
        };
        self.blacklist(t, now);
        if let Some(s) = self.servers.get_mut(t) {
            s.metrics.connect_failures += 1;
        }
        crate::logging::message(&format!(
            "blacklisting server {} because of {why}",
            t.code()
        ));
    }

    /// Marks `t` as failed now (doc/pen-0.34.1.md,
    /// "Blacklisting and connect timeout").
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
