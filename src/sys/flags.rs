//! Signal handlers that only set a flag. The program polls its flags from
//! its main loop (with a receive timeout or similar), so no work happens in
//! signal context.

use std::io;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

/// Highest signal number (exclusive) a flag can be attached to; covers the
/// standard and real-time signals on Linux.
const SIGNAL_SLOTS: usize = 65;

/// For each signal number, the flag its handler sets (null: none).
static FLAGS: [AtomicPtr<AtomicBool>; SIGNAL_SLOTS] =
    [const { AtomicPtr::new(ptr::null_mut()) }; SIGNAL_SLOTS];

extern "C" fn set_flag(sig: libc::c_int) {
    // Only atomic loads and stores here: async-signal-safe.
    let Some(slot) = usize::try_from(sig).ok().and_then(|i| FLAGS.get(i)) else {
        return;
    };
    let flag = slot.load(Ordering::SeqCst);
    if !flag.is_null() {
        // SAFETY: the pointer was made from a &'static AtomicBool in
        // on_signal, so it is valid for the rest of the program.
        unsafe { (*flag).store(true, Ordering::SeqCst) };
    }
}

/// Installs a handler for signal `sig` that stores `true` into `flag`.
/// The handler is installed without `SA_RESTART`, so a blocking system call
/// in progress (e.g. a `recv`) returns `EINTR` and the caller gets to look
/// at the flag promptly. Installing again for the same signal replaces the
/// flag.
pub fn on_signal(sig: i32, flag: &'static AtomicBool) -> io::Result<()> {
    let Some(slot) = usize::try_from(sig).ok().and_then(|i| FLAGS.get(i)) else {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    };
    slot.store(ptr::from_ref(flag).cast_mut(), Ordering::SeqCst);
    // SAFETY: an all-zero sigaction is a valid value that is filled in below.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = set_flag as extern "C" fn(libc::c_int) as libc::sighandler_t;
    action.sa_flags = 0;
    // SAFETY: action.sa_mask is a live sigset_t inside a local.
    unsafe { syscall!(sigemptyset(&mut action.sa_mask))? };
    // SAFETY: action is fully initialised and the handler only touches
    // atomics; the old action is not wanted (null).
    unsafe { syscall!(sigaction(sig, &action, ptr::null_mut()))? };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    static USR2_SEEN: AtomicBool = AtomicBool::new(false);

    #[test]
    fn raised_signal_sets_the_flag() {
        on_signal(libc::SIGUSR2, &USR2_SEEN).unwrap();
        // SAFETY: raise sends a signal to this thread, whose handler was
        // just installed and only sets an atomic flag.
        unsafe { libc::raise(libc::SIGUSR2) };
        assert!(USR2_SEEN.load(Ordering::SeqCst));
    }

    #[test]
    fn out_of_range_signal_is_rejected() {
        static NEVER: AtomicBool = AtomicBool::new(false);
        assert!(on_signal(1000, &NEVER).is_err());
        assert!(on_signal(-1, &NEVER).is_err());
    }
}
