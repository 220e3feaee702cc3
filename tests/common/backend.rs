//! Std-only backends for pen to balance over: TCP servers that answer with
//! their name, echo, or play a small scripted part, and a UDP server.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::wait::{wait_for, DEADLINE};

/// How long a [`Behaviour::LateReply`] backend waits after the client's EOF.
pub const LATE_REPLY_DELAY: Duration = Duration::from_millis(200);

/// What a test backend does with each connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Write the name and close.
    Name,
    /// Write the name, then hold the connection until the client closes.
    NameAndHold,
    /// Echo everything until EOF, then close.
    Echo,
    /// Echo the first N bytes, then close (even if the client never sends EOF).
    EchoUpTo(usize),
    /// Write the connection's peer address (pen's side of it) and close.
    Peer,
    /// Read until EOF, answer `late` [`LATE_REPLY_DELAY`] later, close.
    LateReply,
    /// Read one HTTP request line, answer `200 OK` with body `ok`, close.
    Http,
}

/// One connection a [`Backend`] accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Visit {
    /// Who connected (pen's upstream address).
    pub peer: IpAddr,
    /// The request line ([`Behaviour::Http`] only; empty otherwise).
    pub request: String,
}

/// What every backend can be told as: pen's `host:port` backend argument.
pub trait Spec {
    /// `host:port` as pen's command line wants it.
    fn spec(&self) -> String;
}

/// The backend arguments of `backends`, in order.
pub fn specs(backends: &[impl Spec]) -> Vec<String> {
    backends.iter().map(Spec::spec).collect()
}

/// `host:port` for pen's command line (IPv6 in brackets).
fn spec_of(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => a.to_string(),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}

/// A TCP backend on loopback serving each connection in its own thread;
/// it stops accepting when dropped.
pub struct Backend {
    pub port: u16,
    pub name: String,
    addr: SocketAddr,
    visits: Arc<Mutex<Vec<Visit>>>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl Backend {
    /// A backend on a free port of 127.0.0.1.
    pub fn start(name: &str, behaviour: Behaviour) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a backend port");
        Backend::start_on(listener, name, behaviour)
    }

    /// Backends `S0`..`S{n-1}` on 127.0.0.1.
    pub fn farm(n: usize, behaviour: Behaviour) -> Vec<Backend> {
        (0..n)
            .map(|i| Backend::start(&format!("S{i}"), behaviour))
            .collect()
    }

    /// A backend on `listener` (for a chosen address or port).
    pub fn start_on(listener: TcpListener, name: &str, behaviour: Behaviour) -> Backend {
        let addr = listener.local_addr().expect("backend address");
        let stop = Arc::new(AtomicBool::new(false));
        let visits = Arc::new(Mutex::new(Vec::new()));
        let (n, st, seen) = (name.to_string(), Arc::clone(&stop), Arc::clone(&visits));
        let acceptor = thread::spawn(move || {
            for c in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(c) = c else { continue };
                let (n, seen) = (n.clone(), Arc::clone(&seen));
                thread::spawn(move || serve(c, &n, behaviour, &seen));
            }
        });
        Backend {
            port: addr.port(),
            name: name.to_string(),
            addr,
            visits,
            stop,
            acceptor: Some(acceptor),
        }
    }

    /// The connections accepted so far.
    pub fn visits(&self) -> Vec<Visit> {
        self.visits.lock().expect("visits lock").clone()
    }

    /// Waits until at least `n` connections were recorded; all of them.
    pub fn wait_visits(&self, n: usize) -> Vec<Visit> {
        wait_for(DEADLINE, &format!("{n} visits to {}", self.name), || {
            Some(self.visits()).filter(|v| v.len() >= n)
        })
    }
}

impl Spec for Backend {
    fn spec(&self) -> String {
        spec_of(self.addr)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // A connection wakes the blocked accept(), which then sees `stop`;
        // joining makes the port closed when drop returns.
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake {
                SocketAddr::V4(_) => IpAddr::from([127, 0, 0, 1]),
                SocketAddr::V6(_) => IpAddr::from([0, 0, 0, 0, 0, 0, 0, 1]),
            });
        }
        if TcpStream::connect_timeout(&wake, Duration::from_secs(1)).is_ok() {
            if let Some(t) = self.acceptor.take() {
                let _ = t.join();
            }
        }
    }
}

/// Plays `behaviour` on one accepted connection, recording the visit.
fn serve(mut c: TcpStream, name: &str, behaviour: Behaviour, visits: &Mutex<Vec<Visit>>) {
    let _ = c.set_nonblocking(false);
    let _ = c.set_read_timeout(Some(Duration::from_secs(30)));
    let peer = c
        .peer_addr()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let record = |request: String| {
        visits
            .lock()
            .expect("visits lock")
            .push(Visit { peer, request });
    };
    if behaviour != Behaviour::Http {
        record(String::new());
    }
    let mut buf = vec![0u8; 65536];
    match behaviour {
        Behaviour::Name => {
            let _ = c.write_all(name.as_bytes());
        }
        Behaviour::NameAndHold => {
            let _ = c.write_all(name.as_bytes());
            while matches!(c.read(&mut buf), Ok(n) if n > 0) {}
        }
        Behaviour::Echo => {
            while let Ok(n @ 1..) = c.read(&mut buf) {
                if c.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = c.shutdown(Shutdown::Write);
        }
        Behaviour::EchoUpTo(limit) => {
            let mut done = 0;
            while done < limit {
                let want = (limit - done).min(buf.len());
                match c.read(&mut buf[..want]) {
                    Ok(n @ 1..) if c.write_all(&buf[..n]).is_ok() => done += n,
                    _ => break,
                }
            }
            let _ = c.shutdown(Shutdown::Both);
        }
        Behaviour::Peer => {
            let _ = c.write_all(peer.to_string().as_bytes());
        }
        Behaviour::LateReply => {
            let mut sink = Vec::new();
            let _ = c.read_to_end(&mut sink);
            // The delay is the scenario under test, not synchronisation: a
            // reply that comes well after the client's EOF was handled.
            thread::sleep(LATE_REPLY_DELAY);
            let _ = c.write_all(b"late");
        }
        Behaviour::Http => {
            let mut line = String::new();
            if let Ok(reader) = c.try_clone() {
                let _ = BufReader::new(reader).read_line(&mut line);
            }
            record(line.trim_end().to_string());
            let _ = c.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok");
        }
    }
}

/// Every datagram a [`UdpBackend`] got: (source address, payload).
type Seen = Arc<Mutex<Vec<(SocketAddr, Vec<u8>)>>>;

/// A UDP backend answering each datagram with `NAME|payload`; a payload
/// starting with `multi` gets three answers `NAME|1|payload` .. `NAME|3|..`.
/// Records the source address of every datagram it got.
pub struct UdpBackend {
    addr: SocketAddr,
    seen: Seen,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// The socket, kept after [`kill`](UdpBackend::kill) so that its port
    /// stays taken.
    sock: UdpSocket,
}

impl UdpBackend {
    /// A UDP backend on a free port of 127.0.0.1.
    pub fn start(name: &str) -> UdpBackend {
        UdpBackend::start_on("127.0.0.1:0", name)
    }

    /// UDP backends `S0`..`S{n-1}` on 127.0.0.1.
    pub fn farm(n: usize) -> Vec<UdpBackend> {
        (0..n)
            .map(|i| UdpBackend::start(&format!("S{i}")))
            .collect()
    }

    /// A UDP backend bound to `bind` (`host:port`).
    pub fn start_on(bind: &str, name: &str) -> UdpBackend {
        let sock = UdpSocket::bind(bind).expect("bind a UDP backend");
        // The receive timeout is how often the thread looks at `stop`.
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("set a receive timeout");
        let addr = sock.local_addr().expect("UDP backend address");
        let kept = sock.try_clone().expect("clone the UDP backend socket");
        let stop = Arc::new(AtomicBool::new(false));
        let seen: Seen = Arc::new(Mutex::new(Vec::new()));
        let (st, sn, n) = (Arc::clone(&stop), Arc::clone(&seen), name.to_string());
        let thread = thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !st.load(Ordering::SeqCst) {
                let Ok((len, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let data = buf[..len].to_vec();
                sn.lock().expect("seen lock").push((from, data.clone()));
                if data.starts_with(b"multi") {
                    for i in 1..=3 {
                        let mut r = format!("{n}|{i}|").into_bytes();
                        r.extend_from_slice(&data);
                        let _ = sock.send_to(&r, from);
                    }
                } else {
                    let mut r = format!("{n}|").into_bytes();
                    r.extend_from_slice(&data);
                    let _ = sock.send_to(&r, from);
                }
            }
        });
        UdpBackend {
            addr,
            seen,
            stop,
            thread: Some(thread),
            sock: kept,
        }
    }

    /// Number of datagrams received so far.
    pub fn received(&self) -> usize {
        self.seen.lock().expect("seen lock").len()
    }

    /// Source addresses of the datagrams whose payload starts with `prefix`.
    pub fn sources(&self, prefix: &str) -> Vec<SocketAddr> {
        self.seen
            .lock()
            .expect("seen lock")
            .iter()
            .filter(|(_, d)| d.starts_with(prefix.as_bytes()))
            .map(|(a, _)| *a)
            .collect()
    }

    /// Stops answering: later datagrams draw ICMP port unreachable, as
    /// from a closed port. The socket is connected to a peer that never
    /// sends (port 1) instead of closed, so that it takes no datagram
    /// from anyone else while its port stays taken: a closed ephemeral
    /// port could be bound by another test's socket in the meantime,
    /// which would swallow the datagrams meant to be refused.
    pub fn kill(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().expect("UDP backend thread");
        }
        let _ = self.sock.connect(("127.0.0.1", 1));
    }
}

impl Spec for UdpBackend {
    fn spec(&self) -> String {
        spec_of(self.addr)
    }
}

impl Drop for UdpBackend {
    fn drop(&mut self) {
        self.kill();
    }
}
