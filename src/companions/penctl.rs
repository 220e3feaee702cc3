//! `penctl TARGET COMMAND [ARGS...]`: sends one command to pen's control
//! port and copies the reply to stdout (doc/pen-0.34.1.md, "penctl").
//!
//! As pen's penctl: TARGET is `host:port` (split at the last colon, so
//! `::1:10080` works) or a Unix socket path (contains `/`); the words are
//! joined with single spaces and a newline. Differences: a reply that starts
//! with `error: ` (a command pen refused) exits 1 so that scripts can tell
//! (pen's penctl exited 0 whatever pen answered); a usage error exits 2
//! (pen's penctl printed the usage and exited 0); a TARGET without a port
//! says what was expected; and waiting is bounded: connecting gives up
//! after 10 s and an unanswered command after 30 s, with a message saying
//! the balancer could not be reached.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use super::{parse_args, usage_error, Parsed, EXIT_FAILURE, EXIT_OK};
use crate::addr::{self, Proto};

const USAGE: &str = "usage: penctl host:port|/path/to/socket command [args...]

Sends one control command to a running pen and prints its reply.
Examples:
  penctl localhost:10080 servers
  penctl /run/pen.ctl server 1 blacklist 60
";

const MAX_LINE: usize = 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

trait Channel: Read + Write {}
impl Channel for TcpStream {}
impl Channel for UnixStream {}

/// Why `target` is not a control address, saying what was expected.
fn not_a_target(target: &str, words: &[String]) -> String {
    let expected = "expected host:port or /path/to/socket first";
    if target.parse::<u16>().is_ok() {
        return format!(
            "'{target}' is not a control address: {expected} (for port {target} on this machine write 127.0.0.1:{target})"
        );
    }
    if let Some(t) = words.iter().find(|w| w.contains(':') || w.contains('/')) {
        return format!(
            "'{target}' is not a control address: {expected}, then the command (penctl {t} {target} ...)"
        );
    }
    format!("'{target}' is not a control address: {expected}")
}

/// Whether pen refused the command: its error replies start so.
fn is_error_reply(reply: &[u8]) -> bool {
    reply.starts_with(b"error: ")
}

fn connect(target: &str) -> Result<Box<dyn Channel>, String> {
    if target.contains('/') {
        let s = UnixStream::connect(target).map_err(|e| {
            format!("error connecting to server {target}: {e} (is pen running with -C {target}?)")
        })?;
        let _ = s.set_read_timeout(Some(REPLY_TIMEOUT));
        let _ = s.set_write_timeout(Some(REPLY_TIMEOUT));
        return Ok(Box::new(s));
    }
    let Some(i) = target.rfind(':') else {
        return Err("no port given".into());
    };
    let (host, port) = (&target[..i], &target[i + 1..]);
    let port = addr::parse_port(port, Proto::Tcp).map_err(|e| e.to_string())?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let ip = if host.is_empty() {
        std::net::IpAddr::from([127, 0, 0, 1])
    } else {
        addr::resolve_host(host).map_err(|e| format!("getaddrinfo: {e}"))?
    };
    let sa = SocketAddr::new(ip, port);
    let s = TcpStream::connect_timeout(&sa, CONNECT_TIMEOUT).map_err(|e| {
        format!("error connecting to server {sa}: {e} (is pen running with a control port there?)")
    })?;
    let _ = s.set_read_timeout(Some(REPLY_TIMEOUT));
    let _ = s.set_write_timeout(Some(REPLY_TIMEOUT));
    Ok(Box::new(s))
}

/// Runs penctl with `args` (without the program name); the exit status.
pub fn run(args: Vec<OsString>) -> i32 {
    let mut opts = getopts::Options::new();
    // Command words such as "-1" must not be taken for options.
    opts.parsing_style(getopts::ParsingStyle::StopAtFirstFree);
    let m = match parse_args("penctl", USAGE, &mut opts, args) {
        Parsed::Run(m) => m,
        Parsed::Exit(code) => return code,
    };
    if m.free.len() < 2 {
        return usage_error(
            "penctl",
            "expected a target (host:port or /path) and a command",
        );
    }
    let mut line = m.free[1..].join(" ");
    line.push('\n');
    if line.len() >= MAX_LINE {
        eprintln!("penctl: Overlong argument list");
        return EXIT_FAILURE;
    }
    if !m.free[0].contains(['/', ':']) {
        eprintln!("penctl: {}", not_a_target(&m.free[0], &m.free[1..]));
        return EXIT_FAILURE;
    }
    let mut chan = match connect(&m.free[0]) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("penctl: {e}");
            return EXIT_FAILURE;
        }
    };
    if let Err(e) = chan.write_all(line.as_bytes()) {
        eprintln!("penctl: error writing to socket: {e}");
        return EXIT_FAILURE;
    }
    let mut reply = Vec::new();
    if let Err(e) = chan.read_to_end(&mut reply) {
        eprintln!("penctl: error reading from socket: {e}");
        return EXIT_FAILURE;
    }
    let mut out = io::stdout().lock();
    if out.write_all(&reply).and_then(|_| out.flush()).is_err() {
        eprintln!("penctl: error writing to stdout");
        return EXIT_FAILURE;
    }
    if is_error_reply(&reply) {
        EXIT_FAILURE
    } else {
        EXIT_OK
    }
}
