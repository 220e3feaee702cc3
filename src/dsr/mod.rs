//! Direct server return (`-o 'dsr_if IFNAME'`, man/pen.1, DIRECT SERVER
//! RETURN; doc/pen-0.34.1.md, "DSR and tarpit").
//!
//! LISTEN is `VIP[:PORT]`. One thread (`pen-dsr`) reads every frame on the
//! interface from a packet socket and its own wake pipe:
//!
//! * ARP requests for the VIP (and for tarpit addresses) are answered with
//!   the interface's Ethernet address; the servers' Ethernet addresses are
//!   learnt by ARP ([`arp`]).
//! * A TCP frame (UDP with `-U`) sent to our Ethernet address for the VIP
//!   (and PORT, if given) goes out again to the server its client hashes to
//!   ([`table`]), changed only in its Ethernet addresses. The servers hold
//!   the VIP on a non-ARPing interface and answer the client directly, so
//!   pen sees one direction only. A frame whose sender left its checksum
//!   to the network card (a local stack over veth) gets the checksum the
//!   card would have written; pen 0.34.1 sent those on broken.
//! * With `tarpit_acl N`, a TCP SYN to another address that ACL N permits
//!   gets a forged SYN+ACK and nothing more ([`frame::tarpit_syn_ack`]).
//!
//! The thread keeps its own copy of what it needs from the state and
//! counts without the lock; every [`REFRESH`] (and at once when a command
//! changed something) it takes the lock briefly to publish the counters and
//! read the servers and settings again. The placement table is rebuilt when
//! the servers that may be used or their weights change (pen 0.34.1 built
//! it once).

pub mod arp;
pub mod frame;
pub mod table;

use std::collections::HashSet;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::acl::Acl;
use crate::geoip::GeoIp;
use crate::logging;
use crate::runtime::Shared;
use crate::state::{Balancer, DsrCounters};
use crate::sys::packet::{self, Interface};
use crate::sys::pipe;
use crate::sys::poll::{self, PollFd};
use arp::Neighbours;
use frame::{Mac, Parsed};
use table::Table;

/// How often the thread publishes its counters and reads the servers and
/// settings again (blacklistings end with time, without any command).
pub const REFRESH: Duration = Duration::from_millis(100);

/// Frames read per poll round at most (pen's `-m` is the batch size; this
/// bounds it so the refresh is never starved).
const MAX_BATCH: usize = 1024;

/// Large enough for any frame the kernel hands over, offloaded ones
/// included (those cannot be forwarded whole, but are counted).
const FRAME_BUFFER: usize = 65_536 + 64;

/// What LISTEN says in DSR mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vip {
    pub address: Ipv4Addr,
    /// Only frames for this port are forwarded; all ports when `None`.
    pub port: Option<u16>,
}

/// Reads LISTEN as `VIP[:PORT]`, an IPv4 address.
pub fn parse_vip(spec: &str) -> Result<Vip, String> {
    let (host, port) = match spec.split_once(':') {
        Some((h, p)) => {
            let port = p
                .parse::<u16>()
                .ok()
                .filter(|&p| p > 0)
                .ok_or_else(|| format!("'{p}' is not a port number (1-65535)"))?;
            (h, Some(port))
        }
        None => (spec, None),
    };
    let address = host
        .parse::<Ipv4Addr>()
        .map_err(|_| format!("'{host}' is not an IPv4 address (DSR needs VIP[:PORT])"))?;
    Ok(Vip { address, port })
}

/// Why direct server return could not start.
#[derive(Debug)]
pub enum DsrError {
    /// No CAP_NET_RAW.
    Permission(String),
    /// Opening or binding the packet socket failed otherwise.
    Open(String, io::Error),
    Thread(io::Error),
}

impl fmt::Display for DsrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DsrError::Permission(i) => write!(
                f,
                "dsr_if {i}: direct server return needs root or CAP_NET_RAW to read and send raw frames"
            ),
            DsrError::Open(i, e) => write!(f, "dsr_if {i}: can't use the interface: {e}"),
            DsrError::Thread(e) => write!(f, "can't start the DSR thread: {e}"),
        }
    }
}

impl std::error::Error for DsrError {}

/// The open packet socket, before the thread starts (it is opened with the
/// listeners, before privileges are dropped).
pub struct Port {
    fd: OwnedFd,
    interface: Interface,
    name: String,
    vip: Vip,
    udp: bool,
}

/// Opens the packet socket on interface `name`.
pub fn open(name: &str, vip: Vip, udp: bool) -> Result<Port, DsrError> {
    let (fd, interface) = packet::open(name).map_err(|e| {
        if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES)) {
            DsrError::Permission(name.to_string())
        } else {
            DsrError::Open(name.to_string(), e)
        }
    })?;
    Ok(Port {
        fd,
        interface,
        name: name.to_string(),
        vip,
        udp,
    })
}

pub fn mac_text(m: &Mac) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Starts the DSR thread; it runs until the process exits.
pub fn spawn(shared: Arc<Shared>, port: Port) -> Result<(), DsrError> {
    let (wake_read, wake_write) = pipe::pipe().map_err(DsrError::Thread)?;
    let description = format!(
        "interface {} address {} vip {} port {} protocol {}",
        port.name,
        mac_text(&port.interface.mac),
        port.vip.address,
        port.vip.port.map_or("any".to_string(), |p| p.to_string()),
        if port.udp { "udp" } else { "tcp" }
    );
    shared.lock().dsr = Some(DsrCounters {
        description,
        ..DsrCounters::default()
    });
    // Set once: a second DSR thread is never started.
    let _ = shared.dsr_wake.set(wake_write);
    std::thread::Builder::new()
        .name("pen-dsr".into())
        .spawn(move || Forwarder::new(&shared, port, wake_read).run())
        .map(|_| ())
        .map_err(DsrError::Thread)
}

/// What the thread reads from the state at each refresh.
#[derive(Default)]
struct Snapshot {
    /// Each server slot's IPv4 address (`None`: none, or not IPv4).
    addresses: Vec<Option<Ipv4Addr>>,
    configured: Vec<Option<u32>>,
    usable: Vec<Option<u32>>,
    roundrobin: bool,
    batch: usize,
    /// The source address of our ARP requests (`dsr_ip`; 0.0.0.0 unset).
    arp_source: Option<Ipv4Addr>,
    /// `tarpit_acl`'s ACL, and the databases its country entries use.
    tarpit: Option<(Acl, GeoIp)>,
    /// Addresses never tarpitted: the servers' and `dsr_ip`.
    in_use: HashSet<Ipv4Addr>,
}

impl Snapshot {
    fn take(b: &Balancer, now: i64) -> Snapshot {
        let mut s = Snapshot {
            roundrobin: b.settings.roundrobin,
            batch: b.settings.multi_accept.clamp(1, MAX_BATCH),
            arp_source: b.settings.dsr_ip,
            ..Snapshot::default()
        };
        for i in 0..b.servers.len() {
            let server = crate::selection::dsr_server(b, i, now);
            let weight = b.servers.backends[i].weight;
            s.addresses.push(server.map(|(ip, _)| ip));
            s.configured.push(server.map(|_| weight));
            s.usable
                .push(server.and_then(|(_, ok)| ok.then_some(weight)));
        }
        s.in_use = s.addresses.iter().flatten().copied().collect();
        if let Some(ip) = b.settings.dsr_ip {
            s.in_use.insert(ip);
        }
        s.tarpit = usize::try_from(b.settings.tarpit_acl)
            .ok()
            .and_then(|n| b.acls.get(n))
            .map(|acl| (acl.clone(), b.geoip.clone()));
        s
    }

    /// Whether a SYN or an ARP request for `ip` gets the tarpit's answer.
    fn tarpits(&self, ip: Ipv4Addr, vip: Ipv4Addr) -> bool {
        let Some((acl, geoip)) = &self.tarpit else {
            return false;
        };
        ip != vip
            && !ip.is_unspecified()
            && !self.in_use.contains(&ip)
            && acl.permits(Some(IpAddr::V4(ip)), geoip)
    }
}

/// Counts kept by the thread between two publications.
#[derive(Default)]
struct Tally {
    /// Frames and bytes by server slot.
    per_server: Vec<(u64, u64)>,
    forwarded: u64,
    no_server: u64,
    no_mac: u64,
    unsendable: u64,
    queue_full: u64,
    tarpitted: u64,
    arp_replies: u64,
}

impl Tally {
    fn forwarded(&mut self, server: usize, bytes: usize) {
        if self.per_server.len() <= server {
            self.per_server.resize(server + 1, (0, 0));
        }
        self.per_server[server].0 += 1;
        self.per_server[server].1 += bytes as u64;
        self.forwarded += 1;
    }

    /// Adds the counts to the state and starts afresh.
    fn publish(&mut self, b: &mut Balancer) {
        for (i, &(frames, bytes)) in self.per_server.iter().enumerate() {
            if let Some(s) = b.servers.backends.get_mut(i) {
                s.frames += frames;
                s.sent += bytes;
            }
        }
        if let Some(c) = &mut b.dsr {
            c.forwarded += self.forwarded;
            c.no_server += self.no_server;
            c.no_mac += self.no_mac;
            c.unsendable += self.unsendable;
            c.queue_full += self.queue_full;
            c.tarpitted += self.tarpitted;
            c.arp_replies += self.arp_replies;
        }
        *self = Tally::default();
    }
}

struct Forwarder<'a> {
    shared: &'a Shared,
    port: Port,
    wake: OwnedFd,
    snapshot: Snapshot,
    table: Table,
    neighbours: Neighbours,
    tally: Tally,
}

impl<'a> Forwarder<'a> {
    fn new(shared: &'a Shared, port: Port, wake: OwnedFd) -> Forwarder<'a> {
        Forwarder {
            shared,
            port,
            wake,
            snapshot: Snapshot::default(),
            table: Table::default(),
            neighbours: Neighbours::default(),
            tally: Tally::default(),
        }
    }

    fn run(mut self) {
        let mut buf = vec![0u8; FRAME_BUFFER];
        self.refresh();
        let mut next_refresh = Instant::now() + REFRESH;
        loop {
            self.ask_neighbours();
            let now = Instant::now();
            let wake_at = self
                .neighbours
                .next_due()
                .map_or(next_refresh, |t| t.min(next_refresh));
            let mut fds = [
                PollFd::new(self.port.fd.as_fd(), poll::IN),
                PollFd::new(self.wake.as_fd(), poll::IN),
            ];
            if let Err(e) = poll::poll(&mut fds, Some(wake_at.saturating_duration_since(now))) {
                logging::message(&format!("DSR: poll: {e}"));
                std::thread::sleep(REFRESH);
                continue;
            }
            let mut refresh_now = false;
            if fds[1].revents() != 0 {
                pipe::drain(self.wake.as_fd());
                refresh_now = true;
            }
            if fds[0].revents() != 0 {
                for _ in 0..self.snapshot.batch {
                    match packet::recv(self.port.fd.as_fd(), &mut buf) {
                        Ok(f) if f.outgoing || f.vlan_tagged => {}
                        Ok(f) => self.frame(&mut buf[..f.len], f.truncated, f.checksum_not_ready),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            logging::message(&format!("DSR: reading frames: {e}"));
                            break;
                        }
                    }
                }
            }
            if refresh_now || Instant::now() >= next_refresh {
                self.refresh();
                next_refresh = Instant::now() + REFRESH;
            }
        }
    }

    /// Publishes the counters and reads the servers and settings again.
    fn refresh(&mut self) {
        let now = crate::sys::now_unix();
        if let Ok(drops) = packet::take_drops(self.port.fd.as_fd()) {
            self.tally.queue_full += drops;
        }
        {
            let mut b = self.shared.lock();
            self.tally.publish(&mut b);
            self.snapshot = Snapshot::take(&b, now);
        }
        let s = &self.snapshot;
        if self.table.update(&s.configured, &s.usable) {
            logging::debug(1, || "DSR: placement table rebuilt".to_string());
        }
        self.neighbours.track(s.addresses.iter().flatten().copied());
    }

    fn ask_neighbours(&mut self) {
        for ip in self.neighbours.due(Instant::now()) {
            let request = frame::arp_request(
                &self.port.interface.mac,
                self.snapshot.arp_source.unwrap_or(Ipv4Addr::UNSPECIFIED),
                ip,
            );
            logging::debug(2, || format!("DSR: asking who has {ip}"));
            self.send(&request);
        }
    }

    fn send(&mut self, frame: &[u8]) -> bool {
        match packet::send(self.port.fd.as_fd(), frame) {
            Ok(_) => true,
            Err(e) => {
                self.tally.unsendable += 1;
                logging::causes::DSR_SEND
                    .message(|| format!("DSR: can't send a frame of {} bytes: {e}", frame.len()));
                false
            }
        }
    }

    fn frame(&mut self, frame: &mut [u8], truncated: bool, checksum_not_ready: bool) {
        let ours = self.port.interface.mac;
        let vip = self.port.vip;
        match frame::parse(frame) {
            Parsed::Arp(a) => {
                self.neighbours.learn(a.sender_ip, a.sender_mac);
                let answer = a.operation == frame::ARP_REQUEST
                    && a.sender_ip != a.target_ip
                    && (a.target_ip == vip.address
                        || self.snapshot.tarpits(a.target_ip, vip.address));
                if answer && self.send(&frame::arp_reply(&a, &ours)) {
                    self.tally.arp_replies += 1;
                }
            }
            Parsed::Ipv4(p) => {
                if frame::destination_mac(frame) != Some(ours) {
                    return;
                }
                if p.destination != vip.address {
                    if p.is_tcp_syn() && self.snapshot.tarpits(p.destination, vip.address) {
                        if let Some(reply) = frame::tarpit_syn_ack(frame, &ours) {
                            if self.send(&reply) {
                                self.tally.tarpitted += 1;
                            }
                        }
                    }
                    return;
                }
                let protocol = if self.port.udp {
                    frame::PROTO_UDP
                } else {
                    frame::PROTO_TCP
                };
                // A later fragment has no ports: it follows the address.
                let wanted_port = match (vip.port, p.ports) {
                    (Some(want), Some((_, to))) => want == to,
                    _ => true,
                };
                if p.protocol != protocol || !wanted_port {
                    return;
                }
                let source_port = p.ports.map_or(0, |(from, _)| from);
                let at = table::slot(p.source, source_port, self.snapshot.roundrobin);
                let Some(server) = self.table.server(at) else {
                    self.tally.no_server += 1;
                    return;
                };
                let mac = self
                    .snapshot
                    .addresses
                    .get(server)
                    .copied()
                    .flatten()
                    .and_then(|ip| self.neighbours.mac(ip));
                let Some(mac) = mac else {
                    self.tally.no_mac += 1;
                    return;
                };
                if truncated {
                    self.tally.unsendable += 1;
                    return;
                }
                frame::readdress(frame, &mac, &ours);
                if checksum_not_ready {
                    frame::fill_l4_checksum(frame);
                }
                if self.send(frame) {
                    self.tally.forwarded(server, frame.len());
                }
            }
            Parsed::Other => {}
        }
    }
}
