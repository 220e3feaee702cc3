//! The debug channel, a leaf that every layer may use (doc/pen-0.34.1.md,
//! "Daemon mode and the debug channel"): in the foreground, lines on stderr
//! prefixed with a local timestamp; in daemon mode, syslog. Fatal errors are
//! printed without timestamp by `main`.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

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

/// One cause of a message that can repeat at the rate clients arrive (a
/// refused client, a paused accept): said at most once per `interval`, and
/// each time it is said it counts the occurrences held back since.
#[derive(Debug)]
pub struct RateLimit {
    interval: Duration,
    state: Mutex<Held>,
}

#[derive(Debug)]
struct Held {
    /// When the message was last said.
    said: Option<Instant>,
    /// Occurrences not said since then.
    count: u64,
}

impl RateLimit {
    /// A cause said at most once per second.
    pub const fn per_second() -> RateLimit {
        RateLimit::new(Duration::from_secs(1))
    }

    pub const fn new(interval: Duration) -> RateLimit {
        RateLimit {
            interval,
            state: Mutex::new(Held {
                said: None,
                count: 0,
            }),
        }
    }

    /// One occurrence at `now` (the clock is the caller's): `Some(n)` when
    /// it is to be said, `n` being the occurrences held back since it was
    /// last said; `None` when it is held back.
    pub fn occurred(&self, now: Instant) -> Option<u64> {
        let mut held = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match held.said {
            Some(t) if now.saturating_duration_since(t) < self.interval => {
                held.count += 1;
                None
            }
            _ => {
                held.said = Some(now);
                Some(std::mem::take(&mut held.count))
            }
        }
    }

    /// [`message`] for one occurrence, unless the cause was said within
    /// the interval; the text is made only when it is said.
    pub fn message(&self, msg: impl FnOnce() -> String) {
        match self.occurred(Instant::now()) {
            Some(0) => message(&msg()),
            Some(n) => message(&format!("{} ({n} more since last said)", msg())),
            None => {}
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_is_said_once_per_interval_with_the_count_held_back() {
        let limit = RateLimit::per_second();
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        assert_eq!(limit.occurred(at(0)), Some(0));
        for ms in [1, 10, 500, 999] {
            assert_eq!(limit.occurred(at(ms)), None);
        }
        assert_eq!(limit.occurred(at(1000)), Some(4));
        assert_eq!(limit.occurred(at(1500)), None);
        // Quiet for a long time: said at once, with what was held back.
        assert_eq!(limit.occurred(at(60_000)), Some(1));
        assert_eq!(limit.occurred(at(61_000)), Some(0));
    }

    #[test]
    fn a_clock_going_back_holds_the_message_back() {
        let limit = RateLimit::new(Duration::from_millis(100));
        let t0 = Instant::now() + Duration::from_secs(10);
        assert_eq!(limit.occurred(t0), Some(0));
        assert_eq!(limit.occurred(t0 - Duration::from_secs(5)), None);
        assert_eq!(limit.occurred(t0 + Duration::from_millis(100)), Some(1));
    }

    #[test]
    fn causes_are_limited_separately() {
        let (a, b) = (RateLimit::per_second(), RateLimit::per_second());
        let now = Instant::now();
        assert_eq!(a.occurred(now), Some(0));
        assert_eq!(b.occurred(now), Some(0));
        assert_eq!(a.occurred(now), None);
    }
}
