//! Signal handlers that only record the signal and wake the acceptor's
//! poll loop through its self-pipe (spec operations.md §2: the work is done
//! by the loop, not in the handler). penlogd uses them too, without the
//! self-pipe.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};

static WAKE_FD: AtomicI32 = AtomicI32::new(-1);
static PENDING: AtomicU32 = AtomicU32::new(0);

/// The signals pen acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Hup,
    Usr1,
    Term,
    Int,
}

impl Signal {
    const ALL: [Signal; 4] = [Signal::Hup, Signal::Usr1, Signal::Term, Signal::Int];

    fn number(self) -> libc::c_int {
        match self {
            Signal::Hup => libc::SIGHUP,
            Signal::Usr1 => libc::SIGUSR1,
            Signal::Term => libc::SIGTERM,
            Signal::Int => libc::SIGINT,
        }
    }

    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

/// A set of signals received since the last [`take_pending`].
#[derive(Clone, Copy, Debug, Default)]
pub struct SignalSet(u32);

impl SignalSet {
    pub fn contains(self, s: Signal) -> bool {
        self.0 & s.bit() != 0
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

extern "C" fn on_signal(sig: libc::c_int) {
    for s in Signal::ALL {
        if s.number() == sig {
            PENDING.fetch_or(s.bit(), Ordering::SeqCst);
        }
    }
    let fd = WAKE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        super::pipe::wake(fd);
    }
}

/// Installs the handlers; `wake_fd` is the write end of the acceptor's
/// self-pipe. Handlers are installed without SA_RESTART so poll() returns.
pub fn install(wake_fd: RawFd) -> io::Result<()> {
    WAKE_FD.store(wake_fd, Ordering::SeqCst);
    Signal::ALL.into_iter().try_for_each(set_handler)
}

/// Installs handlers for `signals` only, without a self-pipe: for a program
/// whose loop wakes up by itself (penlogd's receive timeout) and that leaves
/// the other signals at their default actions. A blocking call in progress
/// still returns EINTR (no SA_RESTART).
pub fn install_only(signals: &[Signal]) -> io::Result<()> {
    signals.iter().copied().try_for_each(set_handler)
}

fn set_handler(s: Signal) -> io::Result<()> {
    // SAFETY: sigaction is plain old data; zeroed means empty mask, no flags.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    act.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
    // SAFETY: act is fully initialised; on_signal only touches atomics and write(2).
    unsafe { syscall!(sigaction(s.number(), &act, std::ptr::null_mut()))? };
    Ok(())
}

/// Returns and clears the signals received so far.
pub fn take_pending() -> SignalSet {
    SignalSet(PENDING.swap(0, Ordering::SeqCst))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_raised_signal_is_pending_once() {
        install_only(&[Signal::Usr1]).unwrap();
        // SAFETY: raise sends SIGUSR1 to this thread; its handler, just
        // installed, only sets an atomic bit (no wake descriptor is set).
        unsafe { libc::raise(libc::SIGUSR1) };
        let pending = take_pending();
        assert!(pending.contains(Signal::Usr1));
        assert!(!pending.contains(Signal::Hup));
        assert!(take_pending().is_empty());
    }
}
