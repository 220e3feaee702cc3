//! Run-time settings: everything a penctl command can change, with pen's
//! defaults. A leaf: plain data that every layer may read.

use std::net::IpAddr;

use crate::addr::Host;
use crate::proxy_protocol::Version;

/// `tcp_fastclose` (doc/pen-0.34.1.md, "Socket options").
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
    /// `hash consistent`: rendezvous hashing instead of pen's modulo hash
    /// (only while `hash` is on; see `selection::by_rendezvous`).
    pub consistent_hash: bool,
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
    /// Seconds a drain (SIGQUIT, `drain`) waits for live pairs and UDP
    /// sessions before pen exits anyway.
    pub drain_timeout: u64,
    /// Maximum upstream connects in progress at once.
    pub pending_max: usize,
    pub fastclose: FastClose,
    /// Local address for upstream connections (`source`).
    pub source: Option<IpAddr>,
    /// `-m`: accepts per readiness event.
    pub multi_accept: usize,
    /// `-q`: listen backlog.
    pub listen_queue: i32,
    /// A pair in a conversation yields the CPU before it waits for the
    /// other end's answer (an addition of this pen; bench/README.md).
    pub relay_yield: bool,
    /// `idlers N`: idle upstream connections to keep ready (0 = none).
    pub idlers: usize,
    /// `health_check`: seconds between probes of each server (0 = off).
    pub health_check: u64,
    /// What a probe sends, and the start of the reply it expects.
    pub health_check_send: Option<String>,
    pub health_check_expect: Option<String>,
    /// Failed probes in a row that take a server down; passed ones that
    /// bring it back.
    pub health_check_fall: u32,
    pub health_check_rise: u32,
    /// `send_proxy`: the PROXY header each upstream connection starts with.
    pub send_proxy: Option<Version>,
    /// `accept_proxy`: each client must start with a PROXY header.
    pub accept_proxy: AcceptProxy,
    /// `dsr_ip`: the source address of direct server return's ARP
    /// requests (0.0.0.0 when unset).
    pub dsr_ip: Option<std::net::Ipv4Addr>,
    /// `tarpit_acl`: SYNs to addresses this ACL permits get the tarpit's
    /// answer in DSR mode; -1 is off.
    pub tarpit_acl: i64,
}

/// `accept_proxy on [N]` / `accept_proxy off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AcceptProxy {
    #[default]
    Off,
    /// On; with an ACL, only clients whose real address it permits may
    /// send a header, the others are refused.
    On { acl: Option<usize> },
}

impl AcceptProxy {
    /// The command's argument words, as `write` saves them.
    pub fn words(self) -> String {
        match self {
            AcceptProxy::Off => "off".into(),
            AcceptProxy::On { acl: None } => "on".into(),
            AcceptProxy::On { acl: Some(n) } => format!("on {n}"),
        }
    }
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            hash: false,
            consistent_hash: false,
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
            // The real default is 3 s; pen's man page says 5
            // (doc/pen-0.34.1.md, quirk Q4).
            connect_timeout: 3,
            tracking_time: 0,
            debug: 0,
            client_acl: 0,
            control_acl: 0,
            idle_timeout: 0,
            drain_timeout: 30,
            pending_max: 100,
            fastclose: FastClose::Off,
            source: None,
            multi_accept: 100,
            listen_queue: 500,
            relay_yield: true,
            idlers: 0,
            health_check: 0,
            health_check_send: None,
            health_check_expect: None,
            health_check_fall: 3,
            health_check_rise: 2,
            send_proxy: None,
            accept_proxy: AcceptProxy::Off,
            dsr_ip: None,
            tarpit_acl: -1,
        }
    }
}

pub const DEFAULT_CLIENTS_MAX: usize = 2048;
pub const DEFAULT_CONN_MAX: usize = 500;

impl Settings {
    /// `-t` as a duration: what a connect, a probe or a PROXY header may
    /// take (at least a second).
    pub fn connect_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.connect_timeout.max(1) as u64)
    }

    /// The local address for an upstream socket to `server`, and whether
    /// IP_TRANSPARENT is needed for it: `source` wins over `transparent`
    /// (doc/pen-0.34.1.md, "Socket options"); either applies only when its
    /// address family matches the server's (pen: IPv4 only for transparent).
    pub fn upstream_bind(&self, server: &Host, client: Option<IpAddr>) -> (Option<IpAddr>, bool) {
        let same_family = |ip: &IpAddr| match server {
            Host::Ip(s) => s.is_ipv4() == ip.is_ipv4(),
            _ => false,
        };
        match (self.source, self.transparent) {
            (Some(src), _) => (Some(src).filter(same_family), false),
            (None, true) => {
                let bind = client.map(crate::addr::canonical_ip).filter(same_family);
                (bind, bind.is_some())
            }
            (None, false) => (None, false),
        }
    }
}
