//! The debug channel (spec operations.md §1): in the foreground, lines on
//! stderr prefixed with a local timestamp; in daemon mode, syslog.
//! Fatal errors are printed without timestamp by `main`.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use crate::sys;

static LEVEL: AtomicU32 = AtomicU32::new(0);
static TO_SYSLOG: AtomicBool = AtomicBool::new(false);

/// The current debug level (`-d`, `debug N`).
pub fn level() -> u32 {
    LEVEL.load(Ordering::Relaxed)
}

pub fn set_level(n: u32) {
    LEVEL.store(n, Ordering::Relaxed);
}

/// Sends further messages to syslog instead of stderr (daemon mode).
pub fn use_syslog(on: bool) {
    TO_SYSLOG.store(on, Ordering::Relaxed);
}

pub fn is_syslog() -> bool {
    TO_SYSLOG.load(Ordering::Relaxed)
}

/// A message pen prints at every debug level (blacklisting notices,
/// refused control port, ...).
pub fn message(msg: &str) {
    if is_syslog() {
        syslog_line(msg);
        return;
    }
    let line = format!("{}: {}\n", sys::time::timestamp(sys::now_unix()), msg);
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// A message shown from debug level `min` on.
pub fn debug(min: u32, msg: impl FnOnce() -> String) {
    if level() >= min {
        message(&msg());
    }
}

fn syslog_line(msg: &str) {
    sys::syslog::send(sys::syslog::Priority::Debug, msg);
}

// ---------------------------------------------------------------------------
// The request log (`-l`, spec operations.md §3).

use std::fs::{File, OpenOptions};
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::Mutex;

use crate::control::CommandError;
use crate::reqlog;
use crate::runtime::Shared;

enum Sink {
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
fn open_sink(target: &str) -> Result<Sink, String> {
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

/// Sets (or with `None` stops) the request log.
pub fn set_request_log(shared: &Shared, target: Option<&str>) -> Result<String, CommandError> {
    match target {
        None => {
            *sink() = None;
            REQUEST_LOG_ON.store(false, Ordering::Relaxed);
            shared.info().log_target = None;
            Ok(String::new())
        }
        Some(t) => {
            let s = open_sink(t).map_err(CommandError::Invalid)?;
            *sink() = Some(s);
            REQUEST_LOG_ON.store(true, Ordering::Relaxed);
            shared.info().log_target = Some(t.to_string());
            Ok(format!("{t}\n"))
        }
    }
}

/// `log [TARGET]`. At start-up the target is only recorded: it is opened
/// after chroot and the privilege drop, as pen does (spec cli.md §6 step 11).
pub fn log_command(
    shared: &Shared,
    target: Option<&str>,
    origin: crate::control::Origin,
) -> Result<String, CommandError> {
    match target {
        Some(t) if origin == crate::control::Origin::Startup => {
            shared.info().log_target = Some(t.to_string());
            Ok(format!("{t}\n"))
        }
        Some(t) => set_request_log(shared, Some(t)),
        None => Ok(shared
            .info()
            .log_target
            .as_ref()
            .map(|t| format!("{t}\n"))
            .unwrap_or_default()),
    }
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
/// buffered 4 KiB, quirks.md Q30).
pub fn log_request(client: &str, server: &str, chunk: &[u8]) {
    let mut s = sink();
    match s.as_mut() {
        None => {}
        Some(Sink::File { file, .. }) => {
            let line = reqlog::encode_file_line(client, crate::sys::now_unix(), server, chunk);
            let _ = file.write_all(&line);
            if level() >= 3 {
                let _ = std::io::stderr().lock().write_all(&line);
            }
        }
        Some(Sink::Penlogd { socket, to }) => {
            let _ = socket.send_to(&reqlog::encode_datagram(client, server, chunk), *to);
        }
    }
}

/// A data dump line at debug level 3 (spec operations.md §9).
pub fn dump(chunk: &[u8], ascii: bool) {
    let mut line = format!("{}: ", chunk.len()).into_bytes();
    for &b in chunk {
        if ascii {
            line.push(if b.is_ascii_graphic() || b.is_ascii_whitespace() {
                b
            } else {
                b'.'
            });
        } else {
            line.extend_from_slice(format!("{b:02x} ").as_bytes());
        }
    }
    line.push(b'\n');
    let _ = std::io::stderr().lock().write_all(&line);
}
