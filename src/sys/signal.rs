//! Signal handlers that only record the signal and wake the acceptor's
//! poll loop through its self-pipe (doc/pen-0.34.1.md, "Signals": the work is
//! done by the loop, not in the handler). penlogd uses them too, without the
//! self-pipe.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

/// The self-pipe's write end, kept open for the rest of the process, so the
/// number in [`WAKE_FD`] always names it.
static WAKE: OnceLock<Arc<OwnedFd>> = OnceLock::new();
/// [`WAKE`]'s descriptor as the handler reads it (a plain atomic load is
/// async-signal-safe); -1 until [`install`].
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);
static PENDING: AtomicU32 = AtomicU32::new(0);

/// The signals pen acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Hup,
    Usr1,
    Term,
    Int,
    /// Graceful drain (not in pen 0.34.1).
    Quit,
    /// Binary upgrade (not in pen 0.34.1).
    Usr2,
}

impl Signal {
    const ALL: [Signal; 6] = [
        Signal::Hup,
        Signal::Usr1,
        Signal::Term,
        Signal::Int,
        Signal::Quit,
        Signal::Usr2,
    ];

    fn number(self) -> libc::c_int {
        match self {
            Signal::Hup => libc::SIGHUP,
            Signal::Usr1 => libc::SIGUSR1,
            Signal::Term => libc::SIGTERM,
            Signal::Int => libc::SIGINT,
            Signal::Quit => libc::SIGQUIT,
            Signal::Usr2 => libc::SIGUSR2,
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

/// The calling thread's `errno`, put back when dropped.
struct SavedErrno(libc::c_int);

impl SavedErrno {
    fn save() -> SavedErrno {
        // SAFETY: __errno_location returns the calling thread's errno slot,
        // valid for the thread's life; reading it is async-signal-safe.
        SavedErrno(unsafe { *libc::__errno_location() })
    }
}

impl Drop for SavedErrno {
    fn drop(&mut self) {
        // SAFETY: as in `save`: the calling thread's own errno slot.
        unsafe { *libc::__errno_location() = self.0 };
    }
}

extern "C" fn on_signal(sig: libc::c_int) {
    // The handler interrupts a thread anywhere, possibly between a failed
    // call and its read of errno; the write(2) below must not change what
    // that thread reads.
    let _errno = SavedErrno::save();
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

/// Installs the handlers; `wake` is the write end of the acceptor's
/// self-pipe, which this module keeps open from now on (the first one given,
/// if called again). Handlers are installed without SA_RESTART so poll()
/// returns.
pub fn install(wake: Arc<OwnedFd>) -> io::Result<()> {
    let wake = WAKE.get_or_init(|| wake);
    WAKE_FD.store(wake.as_raw_fd(), Ordering::SeqCst);
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

    /// The tests share the process's pending set: one at a time.
    static PENDING_SET: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
        PENDING_SET.lock().unwrap_or_else(|p| p.into_inner())
    }

    #[test]
    fn a_raised_signal_is_pending_once() {
        let _one = one_at_a_time();
        take_pending();
        install_only(&[Signal::Usr1]).unwrap();
        // SAFETY: raise sends SIGUSR1 to this thread; its handler, just
        // installed, only sets an atomic bit (no wake descriptor is set).
        unsafe { libc::raise(libc::SIGUSR1) };
        let pending = take_pending();
        assert!(pending.contains(Signal::Usr1));
        assert!(!pending.contains(Signal::Hup));
        assert!(take_pending().is_empty());
    }

    fn errno() -> libc::c_int {
        // SAFETY: the calling thread's own errno slot.
        unsafe { *libc::__errno_location() }
    }

    fn set_errno(value: libc::c_int) {
        // SAFETY: the calling thread's own errno slot.
        unsafe { *libc::__errno_location() = value };
    }

    #[test]
    fn saved_errno_is_put_back() {
        set_errno(libc::EINTR);
        {
            let _saved = SavedErrno::save();
            // A failing call, as the handler's write(2) can be.
            // SAFETY: closing -1 only fails with EBADF.
            assert_eq!(unsafe { libc::close(-1) }, -1);
            assert_eq!(errno(), libc::EBADF);
        }
        assert_eq!(errno(), libc::EINTR);
    }

    #[test]
    fn the_handler_leaves_errno_alone() {
        let _one = one_at_a_time();
        // No handler is installed in the unit tests; point the wake-up at a
        // number that is certainly not open, so the handler's write fails.
        WAKE_FD.store(i32::MAX, Ordering::SeqCst);
        set_errno(libc::EAGAIN);
        on_signal(libc::SIGUSR1);
        assert_eq!(errno(), libc::EAGAIN);
        WAKE_FD.store(-1, Ordering::SeqCst);
        assert!(take_pending().contains(Signal::Usr1));
    }
}
