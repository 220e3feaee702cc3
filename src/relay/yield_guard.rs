//! The conversation yield and its guard.
//!
//! A pair in a conversation (request, reply, request...) calls sched_yield
//! before it waits: the other end's answer usually comes while other pairs'
//! threads run, which turns many of this thread's sleep-and-wake-up cycles
//! (a costly cross-CPU wake-up each) into a poll() that returns at once
//! (measured in bench/README.md). [`Turns`] tells a conversation from a
//! pair with one exchange, which does not yield.
//!
//! Beside a CPU-bound neighbour a yield hands it a whole time slice per
//! message, where a thread that sleeps in poll() and is woken by its data
//! preempts it. The [`YieldGuard`] notices slow yields that recur and
//! pauses yielding, for every pair that shares the guard (all pairs of the
//! process), for a while.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// A yield that took longer than this (µs) handed the core to something
/// that does not block soon: a CPU-bound process here, which the scheduler
/// lets run for its whole slice (1.5 to 4 ms) before it returns to the
/// yielder. Other pairs' threads give the core back within microseconds.
const SLOW_YIELD_US: u64 = 1_500;
/// How long (µs) pairs stop yielding once slow yields recur. Short, so a
/// neighbour that has gone costs little; long enough that a CPU-bound
/// neighbour costs a few delayed messages every quarter second instead of
/// a slice per message (measured in bench/README.md).
const YIELD_PAUSE_US: u64 = 250_000;
/// A slow yield that starts within this time (µs) after an earlier one
/// ended means the core is being handed away again and again.
const SLOW_AGAIN_WITHIN_US: u64 = 50_000;

/// Where the guard reads the time.
pub trait Clock {
    /// Microseconds since an origin of the clock's choosing (not 0 after
    /// a slow yield, which takes more than [`SLOW_YIELD_US`]).
    fn now_us(&self) -> u64;
}

/// The monotonic clock (a vDSO read), counted from the guard's creation.
#[derive(Clone, Copy, Debug)]
pub struct MonotonicClock {
    origin: Instant,
}

impl Default for MonotonicClock {
    fn default() -> MonotonicClock {
        MonotonicClock {
            origin: Instant::now(),
        }
    }
}

impl Clock for MonotonicClock {
    fn now_us(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX)
    }
}

/// Decides whether a pair's thread yields: one value shared by the pairs
/// of a process (behind `&`; atomics, no lock), since a CPU-bound
/// neighbour slows every pair's yields and one pause should spare them all.
#[derive(Debug, Default)]
pub struct YieldGuard<C = MonotonicClock> {
    clock: C,
    /// [`Clock`] time before which no pair yields.
    paused_until: AtomicU64,
    /// When the latest slow yield ended ([`Clock`] time; 0: none yet).
    last_slow_end: AtomicU64,
}

impl YieldGuard {
    pub fn new() -> YieldGuard {
        YieldGuard::default()
    }
}

impl<C: Clock> YieldGuard<C> {
    pub fn with_clock(clock: C) -> YieldGuard<C> {
        YieldGuard {
            clock,
            paused_until: AtomicU64::new(0),
            last_slow_end: AtomicU64::new(0),
        }
    }

    #[cfg(test)]
    pub(super) fn clock(&self) -> &C {
        &self.clock
    }

    /// sched_yield, unless slow yields showed a CPU-bound neighbour on this
    /// core: yielding to it would delay every message by a time slice.
    /// Whether it yielded.
    pub fn conversation_yield(&self) -> bool {
        let start = self.clock.now_us();
        if start < self.paused_until.load(Ordering::Relaxed) {
            return false;
        }
        std::thread::yield_now();
        let took = self.clock.now_us().saturating_sub(start);
        if took <= SLOW_YIELD_US {
            return true;
        }
        let previous = self
            .last_slow_end
            .fetch_max(start.saturating_add(took), Ordering::Relaxed);
        if let Some(until) = pause_after(start, took, previous) {
            self.paused_until.fetch_max(until, Ordering::Relaxed);
        }
        true
    }
}

/// Until when yields pause after one that started at `start_us` and took
/// `took_us`, given when the previous slow yield ended (0: none); `None`
/// when yielding goes on.
///
/// Only a slow yield that *began after* an earlier slow one had ended
/// pauses: beside a CPU-bound neighbour every yield is slow, one after the
/// other. A one-off stall of the whole core (a hypervisor pause, a burst of
/// kernel work) makes every yield in flight slow at once, but all of them
/// began before the first of them ended; pausing for those turned the next
/// quarter second's yields into sleeps, with latency outliers of tens of
/// milliseconds (bench/README.md).
fn pause_after(start_us: u64, took_us: u64, previous_slow_end: u64) -> Option<u64> {
    if took_us <= SLOW_YIELD_US || previous_slow_end == 0 || start_us < previous_slow_end {
        return None;
    }
    (start_us - previous_slow_end <= SLOW_AGAIN_WITHIN_US).then(|| {
        start_us
            .saturating_add(took_us)
            .saturating_add(YIELD_PAUSE_US)
    })
}

/// Which way the last bytes moved.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Turn {
    Up,
    Down,
}

/// How often a pair's traffic changed direction: from the second change on
/// (request, reply, request) the pair is in a conversation.
#[derive(Default)]
pub(super) struct Turns {
    count: u32,
    last: Option<Turn>,
}

impl Turns {
    /// Notes which directions poll found ready; only one-way readiness
    /// shows a direction.
    pub(super) fn note(&mut self, up_ready: bool, down_ready: bool) {
        if up_ready == down_ready {
            return;
        }
        let turn = if up_ready { Turn::Up } else { Turn::Down };
        if self.last.is_some_and(|t| t != turn) {
            self.count = self.count.saturating_add(1);
        }
        self.last = Some(turn);
    }

    pub(super) fn conversation(&self) -> bool {
        self.count >= 2
    }
}

/// Yields in a row that did not pay, after which a pair rests. After 4,
/// redis without pipelining rested too often and lost the yield's gain
/// (bench/README.md); 16 keeps it and still rests pipelined traffic.
const MISSES_BEFORE_REST: u8 = 16;
/// Waits a resting pair does without yielding before it tries again.
const REST_WAITS: u16 = 64;

/// Whether one pair's yields pay. A yield pays when the other end's answer
/// arrived while other threads ran, so the poll after it finds a direction
/// ready at once; one that does not is a thread switch on top of the sleep.
/// Pipelined traffic (redis with `-P 16`) missed so often that yielding
/// cost it CPU (bench/README.md): after many misses in a row the pair
/// stops yielding for a while, then tries again.
#[derive(Default)]
pub(super) struct YieldRecord {
    misses: u8,
    /// Waits left without yielding.
    rest: u16,
}

impl YieldRecord {
    /// Whether to try a yield before this wait (a resting pair counts its
    /// waits down).
    pub(super) fn wants_yield(&mut self) -> bool {
        if self.rest > 0 {
            self.rest -= 1;
            return false;
        }
        true
    }

    /// Records whether the poll after a yield found something ready.
    pub(super) fn note(&mut self, paid: bool) {
        if paid {
            self.misses = 0;
            return;
        }
        self.misses += 1;
        if self.misses >= MISSES_BEFORE_REST {
            self.misses = 0;
            self.rest = REST_WAITS;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::Mutex;

    /// Returns the readings it was given, in order; counts the reads.
    #[derive(Default)]
    struct ScriptedClock {
        readings: Mutex<VecDeque<u64>>,
    }

    impl ScriptedClock {
        fn push(&self, readings: &[u64]) {
            self.readings.lock().unwrap().extend(readings);
        }
        fn unread(&self) -> usize {
            self.readings.lock().unwrap().len()
        }
    }

    impl Clock for ScriptedClock {
        fn now_us(&self) -> u64 {
            self.readings
                .lock()
                .unwrap()
                .pop_front()
                .expect("the test scripted fewer clock readings than were taken")
        }
    }

    /// Calls the guard at `start_us` with a yield that takes `took_us`;
    /// whether it yielded (a yield reads the clock before and after, a
    /// paused guard only before).
    fn yields(guard: &YieldGuard<ScriptedClock>, start_us: u64, took_us: u64) -> bool {
        guard.clock.push(&[start_us, start_us + took_us]);
        guard.conversation_yield();
        match guard.clock.unread() {
            0 => true,
            1 => {
                guard.clock.readings.lock().unwrap().clear();
                false
            }
            n => panic!("{n} clock readings left"),
        }
    }

    fn guard() -> YieldGuard<ScriptedClock> {
        YieldGuard::with_clock(ScriptedClock::default())
    }

    /// How many of `waits` waits yield, each yield paying or not as `pays`
    /// says.
    fn yielding(record: &mut YieldRecord, waits: usize, pays: bool) -> usize {
        let mut yielded = 0;
        for _ in 0..waits {
            if record.wants_yield() {
                yielded += 1;
                record.note(pays);
            }
        }
        yielded
    }

    #[test]
    fn yields_that_pay_go_on() {
        let mut r = YieldRecord::default();
        assert_eq!(yielding(&mut r, 1000, true), 1000);
    }

    #[test]
    fn yields_that_miss_rest_and_try_again() {
        let mut r = YieldRecord::default();
        let cycle = usize::from(MISSES_BEFORE_REST) + usize::from(REST_WAITS);
        assert_eq!(
            yielding(&mut r, usize::from(MISSES_BEFORE_REST), false),
            usize::from(MISSES_BEFORE_REST)
        );
        assert_eq!(yielding(&mut r, usize::from(REST_WAITS), false), 0);
        // Then a few tries per rest, for as long as they miss.
        assert_eq!(
            yielding(&mut r, 10 * cycle, false),
            10 * usize::from(MISSES_BEFORE_REST)
        );
        // Resting, a pair does not yield whatever would happen; after the
        // rest, yields that pay go on.
        yielding(&mut r, usize::from(MISSES_BEFORE_REST), false);
        assert_eq!(yielding(&mut r, usize::from(REST_WAITS), true), 0);
        assert_eq!(yielding(&mut r, 100, true), 100);
    }

    #[test]
    fn an_occasional_miss_does_not_rest() {
        let mut r = YieldRecord::default();
        for _ in 0..100 {
            for _ in 0..MISSES_BEFORE_REST - 1 {
                assert!(r.wants_yield());
                r.note(false);
            }
            assert!(r.wants_yield());
            r.note(true);
        }
    }

    #[test]
    fn quick_yields_never_pause() {
        let g = guard();
        for i in 0..100 {
            assert!(yields(&g, 10_000 + i * 1_000, 1_500));
        }
    }

    #[test]
    fn one_slow_yield_does_not_pause() {
        let g = guard();
        assert!(yields(&g, 10_000, 4_000));
        assert!(yields(&g, 14_100, 100));
    }

    #[test]
    fn recurring_slow_yields_pause_yielding_for_a_quarter_second() {
        let g = guard();
        assert!(yields(&g, 10_000, 3_000));
        // Began after the first ended, within 50 ms: a neighbour.
        assert!(yields(&g, 13_100, 3_000));
        let end = 16_100;
        assert!(!yields(&g, end + 1, 0));
        assert!(!yields(&g, end + YIELD_PAUSE_US - 1, 0));
        assert!(yields(&g, end + YIELD_PAUSE_US, 10));
    }

    #[test]
    fn slow_yields_of_one_stall_do_not_pause() {
        let g = guard();
        // Several threads' yields caught by the same stall: each began
        // before the first of them ended.
        assert!(yields(&g, 10_000, 20_000));
        assert!(yields(&g, 10_050, 19_950));
        assert!(yields(&g, 29_000, 1_000 + SLOW_YIELD_US));
        assert!(yields(&g, 31_000, 100));
    }

    #[test]
    fn slow_yields_far_apart_never_pause() {
        let g = guard();
        assert!(yields(&g, 10_000, 5_000));
        assert!(yields(&g, 15_000 + SLOW_AGAIN_WITHIN_US + 1, 5_000));
        assert!(yields(&g, 200_000, 100));
    }

    #[test]
    fn a_pause_spares_every_thread_sharing_the_guard() {
        let g = guard();
        assert!(yields(&g, 10_000, 3_000));
        assert!(yields(&g, 13_000, 3_000));
        std::thread::scope(|s| {
            s.spawn(|| assert!(!yields(&g, 20_000, 0)));
        });
    }

    #[test]
    fn monotonic_clock_counts_from_its_creation() {
        let c = MonotonicClock::default();
        let a = c.now_us();
        assert!(a < 10_000_000);
        assert!(c.now_us() >= a);
    }

    #[test]
    fn turns_count_changes_of_direction() {
        let mut t = Turns::default();
        t.note(true, false);
        t.note(true, false);
        t.note(true, true);
        t.note(false, false);
        assert!(!t.conversation());
        t.note(false, true);
        assert!(!t.conversation());
        t.note(true, false);
        assert!(t.conversation());
    }

    #[test]
    fn quick_yields_do_not_pause_yielding() {
        assert_eq!(pause_after(10_000, 0, 9_000), None);
        assert_eq!(pause_after(10_000, 300, 9_000), None);
        assert_eq!(pause_after(10_000, 1_500, 9_000), None);
    }

    #[test]
    fn a_first_slow_yield_does_not_pause() {
        assert_eq!(pause_after(10_000, 4_000, 0), None);
    }

    #[test]
    fn slow_yields_caught_by_one_stall_do_not_pause() {
        // Began before the previous slow yield ended: the same stall.
        assert_eq!(pause_after(10_000, 5_000, 14_000), None);
        assert_eq!(pause_after(10_000, 5_000, 15_000), None);
    }

    #[test]
    fn a_slow_yield_soon_after_another_pauses_from_its_end() {
        assert_eq!(
            pause_after(20_000, 3_000, 19_900),
            Some(20_000 + 3_000 + 250_000)
        );
        assert_eq!(
            pause_after(20_000, 1_501, 20_000),
            Some(20_000 + 1_501 + 250_000)
        );
    }

    #[test]
    fn slow_yields_far_apart_do_not_pause() {
        assert_eq!(pause_after(400_000, 5_000, 100_000), None);
        assert_eq!(pause_after(150_001, 5_000, 100_000), None);
        assert!(pause_after(150_000, 5_000, 100_000).is_some());
    }

    #[test]
    fn pause_arithmetic_saturates() {
        assert_eq!(
            pause_after(u64::MAX - 10, 5_000, u64::MAX - 20),
            Some(u64::MAX)
        );
    }
}
