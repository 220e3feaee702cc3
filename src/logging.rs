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

/// One cause of a message that can repeat at the rate clients arrive (a
/// refused client, a paused accept): said at most once per `interval`, and
/// each time it is said it counts the occurrences held back since. What is
/// still held back an interval later is said by [`flush_held`].
#[derive(Debug)]
pub struct RateLimit {
    /// What the count is of, for [`flush_held`].
    cause: &'static str,
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
    pub const fn per_second(cause: &'static str) -> RateLimit {
        RateLimit::new(cause, Duration::from_secs(1))
    }

    pub const fn new(cause: &'static str, interval: Duration) -> RateLimit {
        RateLimit {
            cause,
            interval,
            state: Mutex::new(Held {
                said: None,
                count: 0,
            }),
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One occurrence at `now` (the clock is the caller's): `Some(n)` when
    /// it is to be said, `n` being the occurrences held back since it was
    /// last said; `None` when it is held back.
    pub fn occurred(&self, now: Instant) -> Option<u64> {
        let mut held = self.held();
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

    /// The occurrences held back, once the interval since the message was
    /// last said is over at `now` (they count as said then).
    pub fn overdue(&self, now: Instant) -> Option<u64> {
        let mut held = self.held();
        let said = held.said?;
        if held.count == 0 || now.saturating_duration_since(said) < self.interval {
            return None;
        }
        held.said = Some(now);
        Some(std::mem::take(&mut held.count))
    }

    /// When occurrences held back are due to be said.
    fn due(&self) -> Option<Instant> {
        let held = self.held();
        (held.count > 0).then_some(held.said? + self.interval)
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

/// The causes said at most once a second: [`flush_held`] goes through them.
pub mod causes {
    use super::RateLimit;

    /// accept() fails at the descriptor limit each time its pause ends.
    pub static ACCEPT_PAUSED: RateLimit = RateLimit::per_second("accept paused");
    /// Out of descriptors, memory or local ports: every upstream connect
    /// fails for as long as that lasts.
    pub static CLIENT_REFUSED: RateLimit =
        RateLimit::per_second("client refused for a local shortage");
    /// At the thread limit every new client is refused.
    pub static NO_PAIR_THREAD: RateLimit =
        RateLimit::per_second("can't start a thread for a client");
    /// At the thread limit every control connection waits for the standing
    /// control thread.
    pub static NO_CONTROL_THREAD: RateLimit =
        RateLimit::per_second("can't start a thread for a control connection");
    /// Out of descriptors, every new bulk direction copies.
    pub static NO_PIPE: RateLimit = RateLimit::per_second("can't make a splice pipe");

    /// Direct server return: the interface refuses frames (too large,
    /// buffers full).
    pub static DSR_SEND: RateLimit = RateLimit::per_second("can't send a frame");

    pub(super) static ALL: [&RateLimit; 6] = [
        &ACCEPT_PAUSED,
        &CLIENT_REFUSED,
        &NO_PAIR_THREAD,
        &NO_CONTROL_THREAD,
        &NO_PIPE,
        &DSR_SEND,
    ];
}

/// Says the counts of every cause held back for an interval, so a burst
/// is counted even when nothing follows it.
pub fn flush_held() {
    let now = Instant::now();
    for limit in causes::ALL {
        if let Some(n) = limit.overdue(now) {
            message(&format!("{}: {n} more since last said", limit.cause));
        }
    }
}

/// How long until [`flush_held`] has something to say; `None`: nothing
/// is held back.
pub fn next_flush() -> Option<Duration> {
    let now = Instant::now();
    causes::ALL
        .iter()
        .filter_map(|l| l.due())
        .min()
        .map(|t| t.saturating_duration_since(now))
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
        let limit = RateLimit::per_second("test");
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
        let limit = RateLimit::new("test", Duration::from_millis(100));
        let t0 = Instant::now() + Duration::from_secs(10);
        assert_eq!(limit.occurred(t0), Some(0));
        assert_eq!(limit.occurred(t0 - Duration::from_secs(5)), None);
        assert_eq!(limit.occurred(t0 + Duration::from_millis(100)), Some(1));
    }

    #[test]
    fn what_is_held_back_is_overdue_an_interval_after_it_was_said() {
        let limit = RateLimit::per_second("test");
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        assert_eq!(limit.overdue(at(0)), None);
        assert_eq!(limit.due(), None);
        assert_eq!(limit.occurred(at(0)), Some(0));
        assert_eq!(limit.due(), None);
        assert_eq!(limit.occurred(at(300)), None);
        assert_eq!(limit.occurred(at(400)), None);
        assert_eq!(limit.due(), Some(at(1000)));
        assert_eq!(limit.overdue(at(999)), None);
        assert_eq!(limit.overdue(at(1000)), Some(2));
        assert_eq!(limit.overdue(at(5000)), None);
        // Flushed counts as said: the next occurrence waits an interval.
        assert_eq!(limit.occurred(at(1500)), None);
        assert_eq!(limit.occurred(at(2000)), Some(1));
    }

    #[test]
    fn causes_are_limited_separately() {
        let (a, b) = (RateLimit::per_second("a"), RateLimit::per_second("b"));
        let now = Instant::now();
        assert_eq!(a.occurred(now), Some(0));
        assert_eq!(b.occurred(now), Some(0));
        assert_eq!(a.occurred(now), None);
    }
}
