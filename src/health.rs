//! Active health checks (`health_check S`, man/penctl.1): one thread
//! probes every server every S seconds, the probes spread evenly across the
//! interval, and marks a server down after `health_check_fall` failed
//! probes in a row and up again after `health_check_rise` passed ones
//! (`state::servers::Health`). Selection leaves down servers out.
//!
//! A probe connects as a client's connection would ([`Dial::probe`], Unix
//! paths included) within the connect timeout (`-t`), sends
//! `health_check_send` if set, and passes if the reply begins with
//! `health_check_expect` (if set) before that same timeout runs out. The
//! state lock is taken to read what to probe and to record the result,
//! never across the probe itself.
//!
//! Probes run one at a time, so a server that lets its probe time out
//! delays the next probes by up to the timeout; a prober that falls behind
//! takes up its rhythm again instead of catching up in a burst.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::addr::Host;
use crate::logging;
use crate::runtime::Shared;
use crate::state::servers::{ProbeResult, Target, Transition};
use crate::state::Balancer;
use crate::sys;
use crate::sys::poll;
use crate::sys::socket;
use crate::upstream::Dial;

/// The longest the prober sleeps before it reads the settings again, so
/// that a changed `health_check` applies within about a second.
const RECHECK: Duration = Duration::from_secs(1);

/// Starts the prober's thread once pen runs and `health_check` is on,
/// unless it runs already. Once started it stays, idle while checks are off.
pub fn start_if_enabled(shared: &Shared) {
    {
        let b = shared.lock();
        if !b.running || b.settings.health_check == 0 {
            return;
        }
    }
    shared.start_once(&shared.prober_started, "pen-health", run);
}

/// What one probe needs, copied out of the state.
struct Job {
    slot: usize,
    /// The address probed, to check that the slot still has it afterwards.
    host: Host,
    port: u16,
    dial: Dial,
    send: Option<String>,
    expect: Option<String>,
    timeout: Duration,
}

fn run(shared: &Shared) {
    let mut schedule = Schedule::default();
    loop {
        let next = schedule.next(&shared.lock(), Instant::now());
        match next {
            Ok(job) => {
                let result = probe(&job);
                record(shared, &job, result);
            }
            Err(wait) => std::thread::sleep(wait.min(RECHECK)),
        }
    }
}

/// When each server's next probe is due.
#[derive(Debug, Default)]
struct Schedule {
    /// The interval the due times were made for.
    interval: u64,
    /// By server slot.
    due: Vec<Option<Instant>>,
}

impl Schedule {
    /// The probe due now, or how long until one may be.
    fn next(&mut self, b: &Balancer, now: Instant) -> Result<Job, Duration> {
        let s = &b.settings;
        if s.health_check != self.interval {
            self.due.clear();
            self.interval = s.health_check;
        }
        if s.health_check == 0 {
            return Err(RECHECK);
        }
        let period = Duration::from_secs(s.health_check);
        let n = b.servers.len();
        self.due.resize(n, None);
        // Servers new to the schedule start spread across one interval.
        for (i, due) in self.due.iter_mut().enumerate() {
            due.get_or_insert_with(|| now + period.mul_f64(i as f64 / n as f64));
        }
        let slot = (0..n)
            .filter(|&i| b.servers.backends[i].is_configured())
            .min_by_key(|&i| self.due[i])
            .ok_or(RECHECK)?;
        let due = self.due[slot].unwrap_or(now);
        if due > now {
            return Err(due - now);
        }
        let mut following = due + period;
        if following <= now {
            following = now + period;
        }
        self.due[slot] = Some(following);
        let server = &b.servers.backends[slot];
        let dial = Dial::probe(b, Target::Backend(slot)).ok_or(Duration::ZERO)?;
        Ok(Job {
            slot,
            host: server.host.clone(),
            port: server.port,
            dial,
            send: s.health_check_send.clone(),
            expect: s.health_check_expect.clone(),
            timeout: s.connect_timeout(),
        })
    }
}

/// Probes one server, without the lock.
fn probe(job: &Job) -> ProbeResult {
    let deadline = Instant::now() + job.timeout;
    let socket = match job.dial.open() {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::TimedOut => return ProbeResult::Timeout,
        Err(_) => return ProbeResult::ConnectFailed,
    };
    if let Some(text) = &job.send {
        if let Err(failed) = send_all(&socket, text.as_bytes(), deadline) {
            return failed;
        }
    }
    match &job.expect {
        Some(text) => read_expected(&socket, text.as_bytes(), deadline),
        None => ProbeResult::Passed,
    }
}

/// What is left of the time until `deadline`; `None` once it has passed.
fn left(deadline: Instant) -> Option<Duration> {
    Some(deadline.saturating_duration_since(Instant::now())).filter(|d| !d.is_zero())
}

fn send_all(fd: &OwnedFd, mut bytes: &[u8], deadline: Instant) -> Result<(), ProbeResult> {
    while !bytes.is_empty() {
        let wait = left(deadline).ok_or(ProbeResult::Timeout)?;
        match socket::write(fd.as_fd(), bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                poll::wait_one(fd.as_fd(), poll::OUT, Some(wait))
                    .map_err(|_| ProbeResult::SendFailed)?;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(ProbeResult::SendFailed),
        }
    }
    Ok(())
}

/// Reads until the reply is as long as `expected` (then compares it), the
/// server closes, or the deadline passes.
fn read_expected(fd: &OwnedFd, expected: &[u8], deadline: Instant) -> ProbeResult {
    let mut got = Vec::with_capacity(expected.len());
    let mut chunk = [0u8; 512];
    while got.len() < expected.len() {
        let Some(wait) = left(deadline) else {
            return ProbeResult::Timeout;
        };
        let want = (expected.len() - got.len()).min(chunk.len());
        match socket::read(fd.as_fd(), &mut chunk[..want]) {
            Ok(0) => return ProbeResult::Closed,
            Ok(n) => {
                got.extend_from_slice(&chunk[..n]);
                if !expected.starts_with(&got) {
                    return ProbeResult::Mismatch;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if poll::wait_one(fd.as_fd(), poll::IN, Some(wait)).is_err() {
                    return ProbeResult::Closed;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return ProbeResult::Closed,
        }
    }
    ProbeResult::Passed
}

/// Counts a probe's result for its server (unless the slot was given
/// another address meanwhile) and logs a transition.
fn record(shared: &Shared, job: &Job, result: ProbeResult) {
    let now = sys::now_unix();
    let change = {
        let mut b = shared.lock();
        let (on, fall, rise) = (
            b.settings.health_check > 0,
            b.settings.health_check_fall,
            b.settings.health_check_rise,
        );
        match b.servers.backends.get_mut(job.slot) {
            Some(s) if on && s.host == job.host && s.port == job.port => s
                .health
                .record(result, now, fall, rise)
                .map(|t| (t, fall, rise)),
            _ => None,
        }
    };
    logging::debug(2, || {
        format!(
            "health check: server {} ({}:{}): {}",
            job.slot,
            job.host,
            job.port,
            result.name()
        )
    });
    let server = format!("server {} ({}:{})", job.slot, job.host, job.port);
    match change {
        Some((Transition::Down, fall, _)) => logging::message(&format!(
            "health check: {server} is down after {fall} failed probes in a row (last: {})",
            result.name()
        )),
        Some((Transition::Up, _, rise)) => logging::message(&format!(
            "health check: {server} is up again after {rise} passed probes in a row"
        )),
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    fn farm(ports: &[u16]) -> Balancer {
        let mut b = Balancer::default();
        for (i, &p) in ports.iter().enumerate() {
            let s = b.servers.ensure_slot(i);
            s.host = Host::Ip("127.0.0.1".parse().unwrap());
            s.port = p;
        }
        b.settings.health_check = 4;
        b
    }

    #[test]
    fn probes_are_spread_across_the_interval() {
        let b = farm(&[1, 2, 3, 4]);
        let mut sched = Schedule::default();
        let t0 = Instant::now();
        let job = sched
            .next(&b, t0)
            .unwrap_or_else(|_| panic!("slot 0 is due"));
        assert_eq!(job.slot, 0);
        // Slot 1 is due one second later (4 s / 4 servers).
        assert_eq!(sched.next(&b, t0).err(), Some(Duration::from_secs(1)));
        let later = t0 + Duration::from_secs(1);
        assert_eq!(sched.next(&b, later).ok().map(|j| j.slot), Some(1));
        let later = t0 + Duration::from_secs(3);
        assert_eq!(sched.next(&b, later).ok().map(|j| j.slot), Some(2));
        assert_eq!(sched.next(&b, later).ok().map(|j| j.slot), Some(3));
        assert!(sched.next(&b, later).is_err());
        // Slot 0 again one interval after its first probe.
        let later = t0 + Duration::from_secs(4);
        assert_eq!(sched.next(&b, later).ok().map(|j| j.slot), Some(0));
    }

    #[test]
    fn nothing_is_due_while_checks_are_off() {
        let mut b = farm(&[1]);
        b.settings.health_check = 0;
        assert_eq!(
            Schedule::default().next(&b, Instant::now()).err(),
            Some(RECHECK)
        );
    }

    fn job_for(port: u16, send: Option<&str>, expect: Option<&str>) -> Job {
        let mut b = farm(&[port]);
        b.settings.health_check_send = send.map(String::from);
        b.settings.health_check_expect = expect.map(String::from);
        b.settings.connect_timeout = 1;
        Schedule::default()
            .next(&b, Instant::now())
            .unwrap_or_else(|_| panic!("due"))
    }

    /// A one-connection server answering `reply` after reading `read` bytes.
    fn answer(read: usize, reply: &'static [u8]) -> (u16, std::thread::JoinHandle<Vec<u8>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut got = vec![0u8; read];
            c.read_exact(&mut got).unwrap();
            let _ = c.write_all(reply);
            got
        });
        (port, t)
    }

    #[test]
    fn send_and_expect() {
        let (port, t) = answer(6, b"PONG and more");
        assert_eq!(
            probe(&job_for(port, Some("PING\r\n"), Some("PONG"))),
            ProbeResult::Passed
        );
        assert_eq!(t.join().unwrap(), b"PING\r\n");
        let (port, _t) = answer(6, b"NOPE");
        assert_eq!(
            probe(&job_for(port, Some("PING\r\n"), Some("PONG"))),
            ProbeResult::Mismatch
        );
        let (port, _t) = answer(0, b"PO");
        assert_eq!(
            probe(&job_for(port, None, Some("PONG"))),
            ProbeResult::Closed
        );
    }

    #[test]
    fn connect_only_and_refused() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert_eq!(probe(&job_for(port, None, None)), ProbeResult::Passed);
        drop(l);
        assert_eq!(
            probe(&job_for(port, None, None)),
            ProbeResult::ConnectFailed
        );
    }

    #[test]
    fn unix_socket_servers_are_probed_at_their_path() {
        let dir = std::env::temp_dir().join(format!("pen-health-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let _ = std::fs::remove_file(&path);
        let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let mut b = farm(&[1]);
        b.servers.backends[0].host = Host::Unix(path.clone());
        let job = Schedule::default()
            .next(&b, Instant::now())
            .unwrap_or_else(|_| panic!("due"));
        assert_eq!(probe(&job), ProbeResult::Passed);
        drop(l);
        let _ = std::fs::remove_file(&path);
        assert_eq!(probe(&job), ProbeResult::ConnectFailed);
        let _ = std::fs::remove_dir(&dir);
    }

    #[test]
    fn a_silent_server_times_out() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let started = Instant::now();
        assert_eq!(probe(&job_for(port, None, Some("x"))), ProbeResult::Timeout);
        assert!(started.elapsed() < Duration::from_secs(3));
    }
}
