//! Waiting for observable state with a deadline: the only place the tests
//! poll, so no test needs a bare sleep to synchronise with pen.

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

/// Upper bound for anything a test waits for on a healthy machine.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// How often a condition is looked at again while waiting.
const POLL: Duration = Duration::from_millis(10);

/// Polls `check` until it holds or `within` has passed; whether it held.
pub fn poll_until(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(POLL);
    }
}

/// Polls `check` until it holds; panics naming `what` after `within`.
pub fn wait_until(within: Duration, what: &str, check: impl FnMut() -> bool) {
    assert!(poll_until(within, check), "timed out waiting for {what}");
}

/// Polls `probe` until it yields a value; panics naming `what` after `within`.
pub fn wait_for<T>(within: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let mut found = None;
    wait_until(within, what, || {
        found = probe();
        found.is_some()
    });
    found.expect("wait_until returned, so the probe gave a value")
}

/// Reads `path` until it contains `needle`; its content (panics after `within`).
pub fn wait_file_contains(path: &Path, needle: &str, within: Duration) -> String {
    let mut text = String::new();
    let found = poll_until(within, || {
        text = std::fs::read_to_string(path).unwrap_or_default();
        text.contains(needle)
    });
    assert!(
        found,
        "{} never contained {needle:?}: {text:?}",
        path.display()
    );
    text
}

/// The UNIX time in whole seconds, as pen reads its clock (`time(2)`).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Waits until the UNIX clock reads `second` or later (at most that many
/// seconds away plus [`DEADLINE`]): for pen's timers, which count whole
/// seconds of its clock.
pub fn wait_unix_time(second: i64) {
    let ahead = u64::try_from(second - unix_now()).unwrap_or(0);
    wait_until(
        Duration::from_secs(ahead) + DEADLINE,
        &format!("the clock to reach UNIX time {second}"),
        || unix_now() >= second,
    );
}
