//! The request log (`-l`, doc/pen-0.34.1.md, "Request log"): a file or a
//! penlogd socket that pairs write one line to per client chunk.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

pub mod codec;

/// An open request log: a file, or a socket to penlogd.
pub enum Sink {
    File { path: PathBuf, file: File },
    Penlogd { socket: UdpSocket, to: SocketAddr },
}

static REQUEST_LOG: Mutex<Option<Sink>> = Mutex::new(None);

fn sink() -> std::sync::MutexGuard<'static, Option<Sink>> {
    REQUEST_LOG.lock().unwrap_or_else(|p| p.into_inner())
}

/// Mirrors whether a sink is set, so a new pair can ask without a lock.
static REQUEST_LOG_ON: AtomicBool = AtomicBool::new(false);

/// Whether request logging is on (pairs then inspect their bytes).
pub fn request_log_enabled() -> bool {
    REQUEST_LOG_ON.load(Ordering::Relaxed)
}

/// A target with a `:` that does not start with `/` is a penlogd
/// `host:port` (doc/pen-0.34.1.md, "Request log"); otherwise a file.
pub fn is_network_target(target: &str) -> bool {
    target.contains(':') && !target.starts_with('/')
}

/// Opens a request log target (files for append).
pub fn open(target: &str) -> Result<Sink, String> {
    if is_network_target(target) {
        let to = crate::addr::parse_listen(target, crate::addr::Proto::Udp)
            .map_err(|e| format!("log: bad penlogd address '{target}': {e}"))?;
        let to = match to {
            crate::addr::ListenAddr::Inet(a) => a,
            crate::addr::ListenAddr::Unix(_) => {
                return Err(format!("log: bad penlogd address '{target}'"))
            }
        };
        let local: SocketAddr = if to.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket =
            UdpSocket::bind(local).map_err(|e| format!("log: can't create socket: {e}"))?;
        let _ = socket.set_nonblocking(true);
        return Ok(Sink::Penlogd { socket, to });
    }
    let path = PathBuf::from(target);
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .open(&path)
        .map_err(|e| format!("Can't open logfile {target}: {e}"))?;
    Ok(Sink::File { path, file })
}

/// Makes `sink` the request log (`None` stops logging).
pub fn install(new: Option<Sink>) {
    let on = new.is_some();
    *sink() = new;
    REQUEST_LOG_ON.store(on, Ordering::Relaxed);
}

/// SIGHUP: close and reopen a log file (after `mv pen.log pen.log.1`).
pub fn reopen_request_log() -> Result<(), String> {
    let mut s = sink();
    if let Some(Sink::File { path, .. }) = s.as_ref() {
        let path = path.clone();
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| format!("Can't open logfile {}: {e}", path.display()))?;
        *s = Some(Sink::File { path, file });
    }
    Ok(())
}

/// Logs one chunk read from a client. Each line is written at once (pen
/// buffered 4 KiB, doc/pen-0.34.1.md, quirk Q30).
pub fn log_request(client: &str, server: &str, chunk: &[u8]) {
    let mut s = sink();
    match s.as_mut() {
        None => {}
        Some(Sink::File { file, .. }) => {
            let line = codec::encode_file_line(client, crate::sys::now_unix(), server, chunk);
            let _ = file.write_all(&line);
            if crate::logging::level() >= 3 {
                let _ = std::io::stderr().lock().write_all(&line);
            }
        }
        Some(Sink::Penlogd { socket, to }) => {
            let _ = socket.send_to(&codec::encode_datagram(client, server, chunk), *to);
        }
    }
}
