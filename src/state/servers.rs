//! The server table: regular backends plus the emergency (`-e`) and abuse
//! (`-B`) servers (doc/pen-0.34.1.md, "Server table"). Pure data, no sockets.

use crate::addr::{BackendSpec, Host};

/// The most regular server slots (indices 0 to `MAX_SERVERS - 1`). pen had
/// no bound, but every connection's selection walks every slot, gaps
/// included: 65,536 slots made each connection cost 5.5 times the CPU.
pub const MAX_SERVERS: usize = 1024;

/// Which server a connection or client refers to. pen prints these as the
/// index, -1 (emergency), -2 (abuse) and -3 (none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Backend(usize),
    Emergency,
    Abuse,
    None,
}

impl Target {
    /// pen's numeric code for this target.
    pub fn code(self) -> i64 {
        match self {
            Target::Backend(i) => i as i64,
            Target::Emergency => -1,
            Target::Abuse => -2,
            Target::None => -3,
        }
    }
}

/// What one health probe found (`health_check`, man/penctl.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeResult {
    Passed,
    /// The connect failed (refused, unreachable, no such socket).
    ConnectFailed,
    /// No connect, or not the whole expected reply, within the timeout.
    Timeout,
    /// The probe text could not be sent.
    SendFailed,
    /// The server closed before the whole expected reply.
    Closed,
    /// The reply does not begin with the expected text.
    Mismatch,
}

impl ProbeResult {
    /// The word `health` and the log show.
    pub fn name(self) -> &'static str {
        match self {
            ProbeResult::Passed => "ok",
            ProbeResult::ConnectFailed => "connect-failed",
            ProbeResult::Timeout => "timeout",
            ProbeResult::SendFailed => "send-failed",
            ProbeResult::Closed => "closed",
            ProbeResult::Mismatch => "mismatch",
        }
    }
}

/// A server's up or down change, from [`Health::record`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    Down,
    Up,
}

/// A server's active health state. A server starts up; it goes down after
/// `fall` failed probes in a row and up again after `rise` passed ones.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Health {
    pub down: bool,
    /// Probes passed / failed in a row (one of them is 0).
    pub passes: u32,
    pub fails: u32,
    /// The last probe's result and its UNIX time.
    pub last: Option<(ProbeResult, i64)>,
    /// Transitions so far.
    pub downs: u64,
    pub ups: u64,
}

impl Health {
    /// Counts one probe's result; the transition it causes, if any.
    pub fn record(
        &mut self,
        result: ProbeResult,
        now: i64,
        fall: u32,
        rise: u32,
    ) -> Option<Transition> {
        self.last = Some((result, now));
        if result == ProbeResult::Passed {
            self.fails = 0;
            self.passes = self.passes.saturating_add(1);
            if self.down && self.passes >= rise {
                self.down = false;
                self.ups += 1;
                return Some(Transition::Up);
            }
        } else {
            self.passes = 0;
            self.fails = self.fails.saturating_add(1);
            if !self.down && self.fails >= fall {
                self.down = true;
                self.downs += 1;
                return Some(Transition::Down);
            }
        }
        None
    }
}

/// One server slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    pub host: Host,
    pub port: u16,
    /// Soft limit (`maxc`); 0 = unlimited.
    pub max_conns: u32,
    /// Hard limit for clients whose last server this is; see `selection`.
    pub hard_limit: u32,
    pub weight: u32,
    pub prio: u32,
    /// ACL number checked against each client (0 = the empty ACL, permits all).
    pub acl: usize,
    /// Established connections (pen's `c`).
    pub conns: u32,
    /// UNIX time of the last failure (pen's `status`); the server is
    /// blacklisted while `now - failed_at < blacklist_time`.
    pub failed_at: i64,
    /// Bytes relayed to the server / read from it, by connections that have
    /// finished (live connections add their own counters when reported).
    pub sent: u64,
    pub received: u64,
    /// Frames forwarded to the server by direct server return (their
    /// bytes are in `sent`).
    pub frames: u64,
    /// Active health checks' view of it (ignored while they are off).
    pub health: Health,
    /// The slot's counters for the metrics, since it got its address.
    pub metrics: SlotMetrics,
}

/// What the metrics count for one server slot (`metrics`, man/penctl.1).
/// They only grow; a slot given another address starts afresh, as a new
/// label set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlotMetrics {
    /// Upstream connections made.
    pub connections: u64,
    /// Connects that failed (refused, timed out).
    pub connect_failures: u64,
    /// The slot's byte totals (`sent`, `received` plus live pairs) when it
    /// got its address; the metrics count from there.
    pub sent_base: u64,
    pub received_base: u64,
}

impl Backend {
    /// A slot that was never configured.
    pub fn unset() -> Backend {
        Backend {
            host: Host::Unset,
            port: 0,
            max_conns: 0,
            hard_limit: 0,
            weight: 0,
            prio: 0,
            acl: 0,
            conns: 0,
            failed_at: 0,
            sent: 0,
            received: 0,
            frames: 0,
            health: Health::default(),
            metrics: SlotMetrics::default(),
        }
    }

    /// A slot built from a specification; the `acl` is kept by the caller
    /// when overwriting a slot (doc/pen-0.34.1.md, "Start-up order", step 8).
    pub fn from_spec(spec: &BackendSpec) -> Backend {
        Backend {
            host: spec.host.clone(),
            port: spec.port,
            max_conns: spec.max_conns,
            hard_limit: spec.hard_limit,
            weight: spec.weight,
            prio: spec.prio,
            ..Backend::unset()
        }
    }

    /// Has an address and a port, so a connection can be attempted.
    pub fn is_configured(&self) -> bool {
        self.port != 0 && !matches!(self.host, Host::Unset)
    }

    pub fn is_blacklisted(&self, now: i64, blacklist_time: i64) -> bool {
        now - self.failed_at < blacklist_time
    }

    /// When the current blacklisting ends (UNIX time), if it is in force.
    pub fn blacklisted_until(&self, now: i64, blacklist_time: i64) -> Option<i64> {
        self.is_blacklisted(now, blacklist_time)
            .then_some(self.failed_at + blacklist_time)
    }
}

/// All server slots.
#[derive(Clone, Debug, Default)]
pub struct ServerTable {
    pub backends: Vec<Backend>,
    pub emergency: Option<Backend>,
    pub abuse: Option<Backend>,
}

impl ServerTable {
    pub fn len(&self) -> usize {
        self.backends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.backends.is_empty()
    }

    pub fn get(&self, t: Target) -> Option<&Backend> {
        match t {
            Target::Backend(i) => self.backends.get(i),
            Target::Emergency => self.emergency.as_ref(),
            Target::Abuse => self.abuse.as_ref(),
            Target::None => None,
        }
    }

    pub fn get_mut(&mut self, t: Target) -> Option<&mut Backend> {
        match t {
            Target::Backend(i) => self.backends.get_mut(i),
            Target::Emergency => self.emergency.as_mut(),
            Target::Abuse => self.abuse.as_mut(),
            Target::None => None,
        }
    }

    /// Makes slot `n` exist (the table only grows; gaps stay unset).
    pub fn ensure_slot(&mut self, n: usize) -> &mut Backend {
        if self.backends.len() <= n {
            self.backends.resize(n + 1, Backend::unset());
        }
        &mut self.backends[n]
    }

    /// Overwrites slot `n` from a command-line specification, keeping its ACL.
    pub fn set_from_spec(&mut self, n: usize, spec: &BackendSpec) {
        let slot = self.ensure_slot(n);
        let acl = slot.acl;
        *slot = Backend::from_spec(spec);
        slot.acl = acl;
    }
}

#[cfg(test)]
mod health_tests {
    use super::*;

    #[test]
    fn falls_after_fall_failures_and_rises_after_rise_passes() {
        let mut h = Health::default();
        let fail = ProbeResult::ConnectFailed;
        assert_eq!(h.record(fail, 1, 3, 2), None);
        assert_eq!(h.record(ProbeResult::Passed, 2, 3, 2), None);
        assert_eq!(h.record(fail, 3, 3, 2), None);
        assert_eq!(h.record(ProbeResult::Timeout, 4, 3, 2), None);
        assert_eq!(h.record(fail, 5, 3, 2), Some(Transition::Down));
        assert!(h.down);
        assert_eq!(h.record(fail, 6, 3, 2), None);
        assert_eq!(h.record(ProbeResult::Passed, 7, 3, 2), None);
        assert_eq!(h.record(ProbeResult::Mismatch, 8, 3, 2), None);
        assert_eq!(h.record(ProbeResult::Passed, 9, 3, 2), None);
        assert_eq!(
            h.record(ProbeResult::Passed, 10, 3, 2),
            Some(Transition::Up)
        );
        assert_eq!(h.record(ProbeResult::Passed, 11, 3, 2), None);
        assert_eq!(
            (h.down, h.passes, h.fails, h.downs, h.ups),
            (false, 3, 0, 1, 1)
        );
        assert_eq!(h.last, Some((ProbeResult::Passed, 11)));
    }
}

#[cfg(test)]
mod clock_tests {
    //! Blacklisting (`-b`, man/pen.1) counts whole seconds of pen's clock;
    //! these tests give that clock as `now` instead of waiting for it. The
    //! one end-to-end test of the timer is tests/selection.rs,
    //! `blacklisting_expires`.
    use super::*;

    fn failed_at(second: i64) -> Backend {
        Backend {
            failed_at: second,
            ..Backend::unset()
        }
    }

    #[test]
    fn blacklisting_lasts_exactly_the_blacklist_time() {
        let s = failed_at(1000);
        // -b 1: only the second of the failure.
        assert!(s.is_blacklisted(1000, 1));
        assert!(!s.is_blacklisted(1001, 1));
        // -b 30, the default: up to and including second 1029.
        assert!(s.is_blacklisted(1029, 30));
        assert!(!s.is_blacklisted(1030, 30));
    }

    #[test]
    fn blacklisted_until_is_the_first_second_in_service_again() {
        let s = failed_at(1000);
        assert_eq!(s.blacklisted_until(1000, 1), Some(1001));
        assert_eq!(s.blacklisted_until(1001, 1), None);
        assert_eq!(s.blacklisted_until(1015, 30), Some(1030));
        assert_eq!(s.blacklisted_until(1030, 30), None);
    }

    #[test]
    fn zero_blacklist_time_never_blacklists() {
        assert!(!failed_at(1000).is_blacklisted(1000, 0));
        assert_eq!(failed_at(1000).blacklisted_until(1000, 0), None);
    }

    #[test]
    fn a_server_that_never_failed_is_in_service() {
        // failed_at 0 is the epoch, long past on any real clock.
        assert!(!Backend::unset().is_blacklisted(1_700_000_000, 30));
    }
}
