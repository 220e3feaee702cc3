//! Loopback networking for the tests: free and refused ports, socket state
//! read from /proc (so that looking does not make the test a client of
//! pen), and TCP clients from distinct 127.x.y.z addresses.

use std::io::{BufRead, BufReader, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::wait::{wait_until, DEADLINE};

/// Socket address on 127.0.0.1.
pub fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// How many ports each of the two blocks below the ephemeral range holds.
const PORT_BLOCK: usize = 2000;

/// Ports of a block just below the kernel's ephemeral range, which bind(0)
/// (every listener and client socket the tests open) and outgoing
/// connections draw from: nothing else takes a port there between a test
/// choosing it and using it. The block lies `skip` ports below the range.
/// Each call continues where the last one (in this process) left off, from
/// a start that differs between processes, so that concurrent test runs
/// seldom try the same ports.
fn below_ephemeral_range(next: &'static AtomicUsize, skip: usize) -> impl Iterator<Item = u16> {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<usize>().ok())
        .unwrap_or(32768);
    let start = std::process::id() as usize;
    (0..PORT_BLOCK).map_while(move |_| {
        let below = skip + (start + next.fetch_add(1, Ordering::Relaxed)) % PORT_BLOCK + 1;
        ephemeral_low
            .checked_sub(below)
            .and_then(|p| u16::try_from(p).ok())
            .filter(|&p| p >= 1024)
    })
}

/// Ports for listeners: the block right below the ephemeral range.
fn listen_ports() -> impl Iterator<Item = u16> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    below_ephemeral_range(&NEXT, 0)
}

/// Ports that stay closed: the block below [`listen_ports`], which only the
/// test given a port opens (to bring a server back).
fn closed_ports() -> impl Iterator<Item = u16> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    below_ephemeral_range(&NEXT, PORT_BLOCK)
}

/// A TCP port on 127.0.0.1 for pen to listen on: free, and no other test
/// is given it.
pub fn free_port() -> u16 {
    listen_ports()
        .find(|&port| TcpListener::bind(("127.0.0.1", port)).is_ok())
        .unwrap_or_else(|| {
            TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("bind a TCP port on 127.0.0.1")
                .port()
        })
}

/// A UDP port on address `ip` for pen to bind: free, and no other test is
/// given it.
pub fn free_udp_port(ip: &str) -> u16 {
    let ip: IpAddr = ip.parse().expect("an IP address");
    listen_ports()
        .find(|&port| UdpSocket::bind((ip, port)).is_ok())
        .unwrap_or_else(|| {
            UdpSocket::bind((ip, 0))
                .and_then(|s| s.local_addr())
                .expect("bind a UDP port")
                .port()
        })
}

/// Whether the IPv6 loopback address ::1 can be used.
pub fn ipv6_loopback() -> bool {
    TcpListener::bind("[::1]:0").is_ok()
}

/// A closed TCP port: connecting to it is refused, and stays refused.
pub fn refused_port() -> u16 {
    closed_ports()
        .find(|&port| {
            matches!(TcpStream::connect(local(port)),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused)
        })
        .unwrap_or_else(free_port)
}

/// `127.0.0.1:PORT` with no UDP socket bound to PORT, and none to come:
/// datagrams sent there draw ICMP port unreachable.
pub fn unreachable_udp_spec() -> String {
    let port = closed_ports()
        .find(|&port| !is_udp_bound(port))
        .unwrap_or_else(|| free_udp_port("127.0.0.1"));
    format!("127.0.0.1:{port}")
}

/// One socket of /proc/net/{tcp,udp}[6].
struct ProcSocket {
    local: SocketAddr,
    remote: SocketAddr,
    /// The kernel's state number (0x0A = TCP LISTEN).
    state: u8,
    /// Bytes sent but not yet acknowledged by the peer.
    tx_queue: u64,
    /// Bytes received but not yet read by the owner.
    rx_queue: u64,
}

/// Which sockets of a /proc/net table to look at.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scan {
    /// Only the listening TCP sockets, which the kernel lists first: the
    /// rest of the table (possibly thousands of closing sockets, expensive
    /// to list) is not read.
    Listening,
    /// All sockets.
    All,
}

/// Whether /proc/net/`table`, or else its IPv6 twin, has a socket with
/// `port` at either end for which `matches` holds. (Listing the IPv6 table
/// walks every IPv4 socket too: it is read only when needed.)
fn proc_socket_exists(
    table: &str,
    port: u16,
    scan: Scan,
    matches: impl Fn(&ProcSocket) -> bool,
) -> bool {
    [table.to_string(), format!("{table}6")]
        .iter()
        .any(|t| proc_table(t, port, scan).iter().any(&matches))
}

/// The sockets of /proc/net/`table` with `port` at either end.
fn proc_table(table: &str, port: u16, scan: Scan) -> Vec<ProcSocket> {
    let hex_port = format!(":{port:04X}");
    let mut found = Vec::new();
    let Ok(file) = std::fs::File::open(format!("/proc/net/{table}")) else {
        return found;
    };
    for line in BufReader::with_capacity(1 << 16, file).lines().skip(1) {
        let Ok(line) = line else { break };
        let mut cols = line.split_whitespace().skip(1);
        let (Some(local), Some(remote), Some(state)) = (cols.next(), cols.next(), cols.next())
        else {
            continue;
        };
        if scan == Scan::Listening && state != "0A" {
            break;
        }
        if local.ends_with(&hex_port) || remote.ends_with(&hex_port) {
            found.extend(parse_proc_socket(&line));
        }
    }
    found
}

/// `sl local_address rem_address st tx_queue:rx_queue ...`.
fn parse_proc_socket(line: &str) -> Option<ProcSocket> {
    let cols: Vec<&str> = line.split_whitespace().collect();
    let (tx, rx) = cols.get(4)?.split_once(':')?;
    Some(ProcSocket {
        local: parse_proc_addr(cols.get(1)?)?,
        remote: parse_proc_addr(cols.get(2)?)?,
        state: u8::from_str_radix(cols.get(3)?, 16).ok()?,
        tx_queue: u64::from_str_radix(tx, 16).ok()?,
        rx_queue: u64::from_str_radix(rx, 16).ok()?,
    })
}

/// `HEXADDR:HEXPORT`; the address is 32-bit words in host byte order, and
/// an IPv4-mapped IPv6 address comes back as IPv4.
fn parse_proc_addr(text: &str) -> Option<SocketAddr> {
    let (addr, port) = text.split_once(':')?;
    let mut bytes = Vec::with_capacity(16);
    for i in (0..addr.len()).step_by(8) {
        let word = u32::from_str_radix(addr.get(i..i + 8)?, 16).ok()?;
        bytes.extend_from_slice(&word.to_ne_bytes());
    }
    let ip = match bytes.len() {
        4 => IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])),
        16 => {
            let v6 = Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?);
            v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, u16::from_str_radix(port, 16).ok()?))
}

/// Whether a TCP socket listens on `port`.
pub fn is_listening(port: u16) -> bool {
    proc_socket_exists("tcp", port, Scan::Listening, |s| {
        s.local.port() == port && s.state == 0x0A
    })
}

/// Whether a UDP socket is bound to `port`.
pub fn is_udp_bound(port: u16) -> bool {
    proc_socket_exists("udp", port, Scan::All, |s| s.local.port() == port)
}

/// Waits until something listens on TCP `port`.
pub fn wait_for_port(port: u16) {
    wait_until(DEADLINE, &format!("a listener on port {port}"), || {
        is_listening(port)
    });
}

/// Waits until a UDP socket is bound to `port`.
pub fn wait_for_udp_port(port: u16) {
    wait_until(DEADLINE, &format!("UDP port {port} to be bound"), || {
        is_udp_bound(port)
    });
}

/// Waits until the peer of `stream` (a process on this machine) has read
/// every byte sent on it: the next write reaches the peer in a read of its
/// own.
pub fn wait_peer_read(stream: &TcpStream) {
    let me = stream.local_addr().expect("local address");
    let peer = stream.peer_addr().expect("peer address");
    wait_until(DEADLINE, &format!("{peer} to read what {me} sent"), || {
        // Each end is in the IPv4 table, or (IPv6, or a dual-stack socket)
        // in the IPv6 one, which is read only when needed.
        let (mut unacked, mut unread) = (None, None);
        for table in ["tcp", "tcp6"] {
            for s in proc_table(table, me.port(), Scan::All) {
                if s.local == me && s.remote == peer {
                    unacked = Some(s.tx_queue);
                } else if s.local == peer && s.remote == me {
                    unread = Some(s.rx_queue);
                }
            }
            if unacked.is_some() && unread.is_some() {
                break;
            }
        }
        unacked == Some(0) && unread == Some(0)
    });
}

/// Connects from `src` (a 127.x.y.z address, so tests can play distinct
/// clients) to `to`; a blocking stream with a 10 s read timeout.
pub fn connect_from(src: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let src: IpAddr = src.parse().expect("a source IP address");
    // std cannot bind before connecting; the crate's own sys layer can.
    let opts = pen::sys::socket::ConnectOptions {
        bind: Some(src),
        ..Default::default()
    };
    let fd = pen::sys::socket::connect_inet(&to, &opts, Duration::from_secs(5))?;
    let s = TcpStream::from(fd);
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(DEADLINE))?;
    Ok(s)
}

/// Connects from `src` to pen on `port` and reads until EOF: the name of
/// the backend reached (empty if pen closed the connection).
pub fn ask(src: &str, port: u16) -> String {
    let Ok(mut s) = connect_from(src, local(port)) else {
        return String::new();
    };
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// Connects from `src` to pen on `port` and reads the `len`-byte name of a
/// backend that holds the connection; the open stream and the name.
pub fn ask_and_hold(src: &str, port: u16, len: usize) -> (TcpStream, String) {
    let mut s = connect_from(src, local(port)).expect("connect to pen");
    let mut name = vec![0u8; len];
    s.read_exact(&mut name).expect("read the backend's name");
    (s, String::from_utf8_lossy(&name).into_owned())
}

/// Sends one command to pen's control port on 127.0.0.1 and reads the
/// reply to EOF.
pub fn ctl(port: u16, cmd: &str) -> String {
    let mut s = TcpStream::connect(local(port)).expect("connect to the control port");
    s.set_read_timeout(Some(DEADLINE))
        .expect("set a read timeout");
    std::io::Write::write_all(&mut s, format!("{cmd}\n").as_bytes()).expect("send the command");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read the reply");
    out
}
