//! The request log (`-l`, spec operations.md §3): a file or a penlogd
//! socket that pairs write one line to per client chunk.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

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
/// `host:port` (spec operations.md §3); otherwise a file.
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

/// The request part of a log line: the chunk up to the first CR or LF.
fn first_request_line(chunk: &[u8]) -> &[u8] {
    let end = chunk
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(chunk.len());
    &chunk[..end]
}

/// The file line `CLIENT UNIXTIME SERVER REQUEST` (at most 100 request
/// bytes, bytes >= 0x80 replaced by '.').
pub fn file_line(client: &str, now: i64, server: &str, chunk: &[u8]) -> Vec<u8> {
    let req = first_request_line(&chunk[..chunk.len().min(100)]);
    let mut line = format!("{client} {now} {server} ").into_bytes();
    line.extend(req.iter().map(|&b| if b >= 0x80 { b'.' } else { b }));
    line.push(b'\n');
    line
}

/// The penlogd datagram `+ CLIENT SERVER REQUEST\n`, at most 1024 bytes.
pub fn net_line(client: &str, server: &str, chunk: &[u8]) -> Vec<u8> {
    let mut line = format!("+ {client} {server} ").into_bytes();
    let room = 1024usize.saturating_sub(line.len() + 1);
    let req = first_request_line(chunk);
    line.extend_from_slice(&req[..req.len().min(room)]);
    line.push(b'\n');
    line
}

/// Logs one chunk read from a client. Each line is written at once (pen
/// buffered 4 KiB, quirks.md Q30).
pub fn log_request(client: &str, server: &str, chunk: &[u8]) {
    let mut s = sink();
    match s.as_mut() {
        None => {}
        Some(Sink::File { file, .. }) => {
            let line = file_line(client, crate::sys::now_unix(), server, chunk);
            let _ = file.write_all(&line);
            if crate::logging::level() >= 3 {
                let _ = std::io::stderr().lock().write_all(&line);
            }
        }
        Some(Sink::Penlogd { socket, to }) => {
            let _ = socket.send_to(&net_line(client, server, chunk), *to);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_line_format() {
        assert_eq!(
            file_line(
                "127.0.0.5",
                1795684273,
                "127.0.0.1",
                b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
            ),
            b"127.0.0.5 1795684273 127.0.0.1 GET /a HTTP/1.1\n".to_vec()
        );
        assert_eq!(
            file_line(
                "127.0.0.6",
                1,
                "127.0.0.1",
                b"HEAD /g?q=\xe9\x01 HTTP/1.1\r\n"
            ),
            b"127.0.0.6 1 127.0.0.1 HEAD /g?q=.\x01 HTTP/1.1\n".to_vec()
        );
        assert_eq!(
            file_line("127.0.0.1", 2, "127.0.0.1", b"\r\n"),
            b"127.0.0.1 2 127.0.0.1 \n".to_vec()
        );
        let long = vec![b'a'; 300];
        assert_eq!(
            file_line("c", 3, "s", &long).len(),
            "c 3 s ".len() + 100 + 1
        );
    }

    #[test]
    fn net_line_format() {
        assert_eq!(
            net_line("127.0.0.7", "127.0.0.1", b"GET /net HTTP/1.1\r\n\r\n"),
            b"+ 127.0.0.7 127.0.0.1 GET /net HTTP/1.1\n".to_vec()
        );
        assert_eq!(net_line("c", "s", &vec![b'x'; 5000]).len(), 1024);
    }
}
