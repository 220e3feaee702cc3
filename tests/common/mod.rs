//! Test helpers: spawn the real `pen` binary, std-only backends that answer
//! with their name or echo, and clients from distinct 127.x.y.z addresses.
//!
//! Names that must not resolve are written with an empty label
//! (`no..such.host`): glibc rejects those itself, so no test sends a DNS
//! query off the machine.
#![allow(dead_code)]

pub mod pki;

use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

pub const PEN: &str = env!("CARGO_BIN_EXE_pen");

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory under the target dir for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("pen-test-{}-{name}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Socket address on 127.0.0.1.
pub fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A running pen, killed when dropped.
pub struct Pen {
    pub child: Child,
    pub port: u16,
    pub dir: PathBuf,
}

impl Pen {
    /// Starts `pen -f ARGS` and waits until `port` accepts connections.
    pub fn start(port: u16, args: &[&str]) -> Pen {
        let mut pen = Pen::spawn(args);
        pen.port = port;
        wait_for_port(port);
        pen
    }

    /// Spawns pen with stdout/stderr going to files in a temp dir.
    pub fn spawn(args: &[&str]) -> Pen {
        let dir = temp_dir("pen");
        let out = std::fs::File::create(dir.join("stdout")).unwrap();
        let err = std::fs::File::create(dir.join("stderr")).unwrap();
        let mut full = vec!["-f"];
        full.extend_from_slice(args);
        let child = Command::new(PEN)
            .args(&full)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn pen");
        Pen {
            child,
            port: 0,
            dir,
        }
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.join("stdout")).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// Waits for the process to exit; its status code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Number of threads of the pen process.
    pub fn threads(&self) -> usize {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// Number of open descriptors of the pen process.
    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .count()
    }

    /// Waits until `stdout` contains `needle`.
    pub fn wait_stdout(&self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let s = self.stdout();
            if s.contains(needle) || Instant::now() > deadline {
                return s;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Pen {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Keep pen's stdout/stderr for a failing test to look at.
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Runs pen to completion (for command-line errors): (status, stdout, stderr).
pub fn run_pen(args: &[&str]) -> (Option<i32>, String, String) {
    let mut child = Command::new(PEN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(_st) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            return (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return (None, String::new(), "timed out".into());
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Whether a line of /proc/net/`table` (and its IPv6 twin) has local port
/// `port` and, if given, socket state `state` (read from /proc, so that
/// checking does not itself become a client of the balancer).
fn proc_net_has(table: &str, port: u16, state: Option<&str>) -> bool {
    let want = format!(":{port:04X}");
    [table.to_string(), format!("{table}6")].iter().any(|t| {
        std::fs::read_to_string(format!("/proc/net/{t}"))
            .unwrap_or_default()
            .lines()
            .skip(1)
            .any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                cols.len() > 3 && cols[1].ends_with(&want) && state.is_none_or(|st| cols[3] == st)
            })
    })
}

/// Whether a TCP socket listens on `port`.
pub fn is_listening(port: u16) -> bool {
    proc_net_has("tcp", port, Some("0A"))
}

/// Whether a UDP socket is bound to `port`.
pub fn is_udp_bound(port: u16) -> bool {
    proc_net_has("udp", port, None)
}

/// Polls `check` every 10 ms for up to 10 s; whether it came to hold.
pub fn poll_until(mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
    true
}

/// [`poll_until`], panicking naming `what` if `check` never holds.
pub fn wait_until(what: &str, check: impl FnMut() -> bool) {
    assert!(poll_until(check), "timed out waiting for {what}");
}

/// Waits (bounded) until a UDP socket is bound to `port`.
pub fn wait_for_udp_port(port: u16) {
    wait_until(&format!("UDP port {port} to be bound"), || {
        is_udp_bound(port)
    });
}

/// Waits until something listens on `port`.
pub fn wait_for_port(port: u16) {
    wait_until(&format!("a listener on port {port}"), || is_listening(port));
}

pub fn wait_for_addr(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listens on {addr}");
}

/// Connects from `src` (a 127.x.y.z address, so tests can play distinct
/// clients) to `to`; a blocking stream with a 10 s read timeout.
pub fn connect_from(src: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let src: IpAddr = src.parse().unwrap();
    // std cannot bind before connecting; the crate's own sys layer can.
    let opts = pen::sys::socket::ConnectOptions {
        bind: Some(src),
        ..Default::default()
    };
    let fd = pen::sys::socket::connect_inet(&to, &opts, Duration::from_secs(5))?;
    let s = TcpStream::from(fd);
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(s)
}

/// Connects from `src`, reads until EOF: the name of the backend reached
/// (empty if pen closed the connection).
pub fn ask(src: &str, port: u16) -> String {
    let mut s = match connect_from(src, local(port)) {
        Ok(s) => s,
        Err(_) => return String::new(),
    };
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// What a test backend does with each connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Write the name and close.
    Name,
    /// Write the name, then hold the connection until the client closes.
    NameAndHold,
    /// Echo everything until EOF, then close.
    Echo,
}

/// A backend on 127.0.0.1 that answers each connection in its own thread.
pub struct Backend {
    pub port: u16,
    pub name: String,
    pub accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Backend {
    pub fn start(name: &str, behaviour: Behaviour) -> Backend {
        Backend::start_on(TcpListener::bind("127.0.0.1:0").unwrap(), name, behaviour)
    }

    pub fn start_on(listener: TcpListener, name: &str, behaviour: Behaviour) -> Backend {
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (n, st, acc) = (name.to_string(), Arc::clone(&stop), Arc::clone(&accepted));
        listener.set_nonblocking(true).unwrap();
        thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((c, _)) => {
                        acc.fetch_add(1, Ordering::SeqCst);
                        let n = n.clone();
                        thread::spawn(move || serve(c, &n, behaviour));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Backend {
            port,
            name: name.to_string(),
            accepted,
            stop,
        }
    }

    pub fn spec(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn serve(mut c: TcpStream, name: &str, behaviour: Behaviour) {
    let _ = c.set_nonblocking(false);
    let _ = c.set_read_timeout(Some(Duration::from_secs(30)));
    match behaviour {
        Behaviour::Name => {
            let _ = c.write_all(name.as_bytes());
        }
        Behaviour::NameAndHold => {
            let _ = c.write_all(name.as_bytes());
            let mut buf = [0u8; 1024];
            while let Ok(n) = c.read(&mut buf) {
                if n == 0 {
                    break;
                }
            }
        }
        Behaviour::Echo => {
            let mut buf = vec![0u8; 65536];
            loop {
                match c.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if c.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = c.shutdown(Shutdown::Write);
        }
    }
}

/// A closed port: connecting to it is refused, and stays refused. It lies
/// below the kernel's ephemeral range, which bind(0) (every listener the
/// tests open) and outgoing connections draw from, so a test running in
/// parallel cannot take it over the way it can take a port freed by
/// [`free_port`]. Each call returns another port.
pub fn refused_port() -> u16 {
    static NEXT_BELOW: AtomicUsize = AtomicUsize::new(0);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<usize>().ok())
        .unwrap_or(32768);
    for _ in 0..1000 {
        let below = NEXT_BELOW.fetch_add(1, Ordering::Relaxed) % 4000 + 1;
        let Some(port) = ephemeral_low
            .checked_sub(below)
            .and_then(|p| u16::try_from(p).ok())
            .filter(|&p| p >= 1024)
        else {
            break;
        };
        if matches!(TcpStream::connect(local(port)), Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused)
        {
            return port;
        }
    }
    free_port()
}

/// Deterministic pseudo-random bytes (xorshift), no crates needed.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Reads `path` until it contains `needle` or time runs out.
pub fn wait_file_contains(path: &Path, needle: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let s = std::fs::read_to_string(path).unwrap_or_default();
        if s.contains(needle) || Instant::now() > deadline {
            return s;
        }
        thread::sleep(Duration::from_millis(20));
    }
}
