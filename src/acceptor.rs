//! The acceptor: one poll() loop over the wake pipe (index 0), the
//! listening socket(s), the control socket and the metrics endpoint. It
//! hands each client to a pair thread and each control or metrics
//! connection to a short-lived handler, and
//! acts on signals the handlers recorded. It never reads or writes a
//! client's bytes, so nothing a client or a control client does can stall it.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::logging;
use crate::runtime::{AcceptorRequest, Shared};
use crate::sys;
use crate::sys::pipe;
use crate::sys::poll::{self, PollFd};
use crate::sys::signal::{self, Signal};
use crate::sys::socket::{self, PeerAddr};
use crate::upstream::Permit;

/// What the loop calls out to.
pub trait Handlers {
    /// A client was accepted under `permit`: hand both to a pair thread.
    fn client(&mut self, permit: Permit, fd: OwnedFd, peer: PeerAddr);
    /// A control connection was accepted.
    fn control(&mut self, fd: OwnedFd, peer: PeerAddr);
    /// A connection to the metrics endpoint was accepted.
    fn metrics(&mut self, fd: OwnedFd, peer: PeerAddr);
    fn hangup(&mut self);
    fn statistics(&mut self);
    /// SIGUSR2: start a new copy of pen on these sockets (no listeners in
    /// UDP mode, where the UDP thread holds the listener).
    fn upgrade(
        &mut self,
        listeners: &[OwnedFd],
        control: Option<&OwnedFd>,
        metrics: Option<&OwnedFd>,
    );
}

/// Why the loop ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Stop {
    Signal,
    ExitCommand,
    /// A drain ended: the last pair or UDP session finished.
    Drained,
    /// A drain ended at its timeout with connections still live.
    DrainTimeout,
}

/// While draining, how often the live connections are counted again (UDP
/// sessions end without waking the acceptor).
const DRAIN_CHECK: Duration = Duration::from_millis(50);

/// Pairs (from before their accept) and UDP sessions still live.
fn live_connections(shared: &Shared) -> usize {
    shared.admission.active().max(shared.lock().conns.used())
}

/// The sockets besides the listeners, served by short-lived handlers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Service {
    Control,
    Metrics,
}

/// Runs until SIGTERM/SIGINT, the `exit` command, or the end of a drain
/// (SIGQUIT, `drain`): the listeners close at once, so the kernel refuses
/// new clients, and the loop goes on serving the control port and the
/// metrics until the live connections end or the drain times out.
pub fn run(
    shared: &Arc<Shared>,
    mut listeners: Vec<OwnedFd>,
    mut control: Option<OwnedFd>,
    handlers: &mut dyn Handlers,
) -> Stop {
    let multi_accept = shared.lock().settings.multi_accept.max(1);
    let admission = &shared.admission;
    // After EMFILE and friends, stop accepting briefly instead of spinning.
    let mut backoff_until: Option<Instant> = None;
    let mut metrics: Option<OwnedFd> = None;
    let mut drain_until: Option<Instant> = None;
    // A descriptor kept for the control port: given up to accept an
    // administrator at the descriptor limit, taken again when one is free.
    let mut spare: Option<OwnedFd> = None;
    loop {
        if spare.is_none() {
            spare = control.as_ref().and_then(|c| c.try_clone().ok());
        }
        // A pause that is over is forgotten, or poll() would be asked to
        // wait for it 0 ms, again and again, while a limit holds.
        if backoff_until.is_some_and(|t| Instant::now() >= t) {
            backoff_until = None;
        }
        let paused = backoff_until.is_some();
        let may = admission.may_accept() && !paused;
        // While draining, every pair that ends wakes the loop.
        admission.set_waiting(!may || drain_until.is_some());
        // Re-check after saying we wait, so a pair that finished in
        // between either wakes us or is counted here.
        let may = may || (admission.may_accept() && !paused);
        let mut fds = Vec::with_capacity(2 + listeners.len());
        fds.push(PollFd::new(shared.wake_fd().as_fd(), poll::IN));
        for l in &listeners {
            fds.push(PollFd::new(l.as_fd(), if may { poll::IN } else { 0 }));
        }
        if let Some(c) = &control {
            fds.push(PollFd::new(c.as_fd(), if paused { 0 } else { poll::IN }));
        }
        if let Some(m) = &metrics {
            fds.push(PollFd::new(m.as_fd(), if paused { 0 } else { poll::IN }));
        }
        let now = Instant::now();
        let timeout = [
            backoff_until.map(|t| t.saturating_duration_since(now)),
            drain_until.map(|t| t.saturating_duration_since(now).min(DRAIN_CHECK)),
            // To say the counts of messages held back by their rate limits.
            logging::next_flush(),
        ]
        .into_iter()
        .flatten()
        .min();
        let polled = poll::poll(&mut fds, timeout);
        logging::flush_held();
        if let Err(e) = polled {
            logging::message(&format!("poll: {e}"));
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        if fds[0].revents() != 0 {
            pipe::drain(shared.wake_fd());
        }
        let sigs = signal::take_pending();
        if sigs.contains(Signal::Term) || sigs.contains(Signal::Int) {
            return Stop::Signal;
        }
        if sigs.contains(Signal::Hup) {
            handlers.hangup();
        }
        if sigs.contains(Signal::Usr1) {
            handlers.statistics();
        }
        // A draining pen has no listeners to pass on.
        if sigs.contains(Signal::Usr2) && drain_until.is_none() {
            handlers.upgrade(&listeners, control.as_ref(), metrics.as_ref());
        }
        let mut drain = sigs.contains(Signal::Quit).then_some(None);
        let mut exit = false;
        let mut replaced = false;
        for r in shared.take_requests() {
            match r {
                AcceptorRequest::Exit => exit = true,
                // A drain keeps its listeners closed.
                AcceptorRequest::Listen(_) if drain_until.is_some() => {}
                AcceptorRequest::Listen(new) => {
                    listeners = new;
                    replaced = true;
                }
                AcceptorRequest::Drain(secs) => drain = Some(secs.or(drain.flatten())),
                AcceptorRequest::HandedOver => {
                    control = None;
                    metrics = None;
                    spare = None;
                    drain = Some(drain.flatten());
                    replaced = true;
                }
                AcceptorRequest::Metrics(new) => {
                    metrics = new;
                    replaced = true;
                }
            }
        }
        if exit {
            return Stop::ExitCommand;
        }
        if let Some(secs) = drain {
            let secs = secs.unwrap_or_else(|| shared.lock().settings.drain_timeout);
            let until = Instant::now() + Duration::from_secs(secs);
            if drain_until.is_none() {
                listeners.clear();
                shared
                    .draining
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                replaced = true;
                logging::message(&format!(
                    "draining: listeners closed; exiting when the last of {} connections ends, or in {secs} s",
                    live_connections(shared)
                ));
            }
            drain_until = Some(drain_until.map_or(until, |t| t.min(until)));
        }
        if let Some(until) = drain_until {
            let live = live_connections(shared);
            if live == 0 {
                logging::message("drained: every connection ended; exiting");
                return Stop::Drained;
            }
            if Instant::now() >= until {
                logging::message(&format!(
                    "drain timeout: exiting with {live} connections still open"
                ));
                return Stop::DrainTimeout;
            }
        }
        if replaced {
            continue;
        }
        for (i, l) in listeners.iter().enumerate() {
            if fds[1 + i].revents() == 0 {
                continue;
            }
            for _ in 0..multi_accept {
                // The permit comes first: at a limit the client stays in the
                // listen queue. One not used for a client is given back.
                let Some(permit) = admission.try_acquire() else {
                    break;
                };
                match socket::accept(l.as_fd()) {
                    Ok((fd, peer)) => handlers.client(permit, fd, peer),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if sys::is_local_shortage(&e) => {
                        logging::causes::ACCEPT_PAUSED
                            .message(|| format!("accept: {e}; pausing 100 ms"));
                        backoff_until = Some(Instant::now() + Duration::from_millis(100));
                        break;
                    }
                    // ECONNABORTED, EPROTO, EINTR...: that client is gone.
                    Err(_) => continue,
                }
            }
        }
        let mut next = 1 + listeners.len();
        let services: [(&Option<OwnedFd>, Service); 2] =
            [(&control, Service::Control), (&metrics, Service::Metrics)];
        for (socket, service) in services {
            let Some(s) = socket else { continue };
            let ready = fds[next].revents() != 0;
            next += 1;
            if !ready {
                continue;
            }
            let mut accepted = socket::accept(s.as_fd());
            // The administrator gets the spare descriptor at the limit.
            if service == Service::Control
                && matches!(&accepted, Err(e) if sys::is_local_shortage(e))
                && spare.take().is_some()
            {
                accepted = socket::accept(s.as_fd());
            }
            match accepted {
                Ok((fd, peer)) if service == Service::Control => handlers.control(fd, peer),
                Ok((fd, peer)) => handlers.metrics(fd, peer),
                Err(e) if sys::is_local_shortage(&e) => {
                    logging::causes::ACCEPT_PAUSED
                        .message(|| format!("accept: {e}; pausing 100 ms"));
                    backoff_until = Some(Instant::now() + Duration::from_millis(100));
                }
                Err(_) => {}
            }
        }
    }
}
