//! The debug channel, a leaf that every layer may use (doc/pen-0.34.1.md,
//! "Daemon mode and the debug channel"): in the foreground, lines on stderr
//! prefixed with a local timestamp; in daemon mode, syslog. Fatal errors are
//! printed without timestamp by `main`.

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

/// A problem pen runs on with, at every debug level: on stderr, or in
/// syslog at priority warning.
pub fn warning(msg: &str) {
    if is_syslog() {
        sys::syslog::send(sys::syslog::Priority::Warning, msg);
    } else {
        message(&format!("warning: {msg}"));
    }
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

/// A data dump line at debug level 3 (doc/pen-0.34.1.md,
/// "Debug levels and dumps").
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
