//! Threads started with pthread_create directly, for the pair threads:
//! std's threads also map a signal stack with its guard page, two more
//! memory mappings per thread, and `vm.max_map_count` (65,530 by default)
//! bounds the mappings of a process. A stack overflow on such a thread
//! still hits the stack's guard page; with no signal stack to report it
//! on, the process dies of SIGSEGV (std would print a line and abort).

use std::ffi::c_void;
use std::io;
use std::panic::{self, AssertUnwindSafe};

/// What a thread runs.
pub type Main = Box<dyn FnOnce() + Send>;

extern "C" fn start(arg: *mut c_void) -> *mut c_void {
    // SAFETY: `arg` is the `Box<Main>` that `spawn` leaked for this thread,
    // handed over exactly once.
    let main = unsafe { Box::from_raw(arg.cast::<Main>()) };
    // Unwinding must not cross the C frame; the caller's own catch_unwind
    // normally stops it first.
    let _ = panic::catch_unwind(AssertUnwindSafe(main));
    std::ptr::null_mut()
}

/// Starts a detached thread named `name` (at most 15 bytes) with a stack
/// of `stack_size` bytes (at least PTHREAD_STACK_MIN) running `main`. On
/// failure `main` is dropped and the error returned.
pub fn spawn(name: &std::ffi::CStr, stack_size: usize, main: Main) -> io::Result<()> {
    let arg = Box::into_raw(Box::new(main)).cast::<c_void>();
    // SAFETY: the attribute object is initialised before use and destroyed
    // after; `start` takes ownership of `arg` only when the thread was
    // created, and it is taken back here otherwise.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        let rc = libc::pthread_attr_init(&mut attr);
        if rc != 0 {
            drop(Box::from_raw(arg.cast::<Main>()));
            return Err(io::Error::from_raw_os_error(rc));
        }
        let mut rc =
            libc::pthread_attr_setstacksize(&mut attr, stack_size.max(libc::PTHREAD_STACK_MIN));
        if rc == 0 {
            rc = libc::pthread_attr_setdetachstate(&mut attr, libc::PTHREAD_CREATE_DETACHED);
        }
        // pthread_t is an integer in glibc and a pointer in musl; all zero
        // is a placeholder for either, overwritten by pthread_create.
        let mut thread: libc::pthread_t = std::mem::zeroed();
        if rc == 0 {
            rc = libc::pthread_create(&mut thread, &attr, start, arg);
        }
        libc::pthread_attr_destroy(&mut attr);
        if rc != 0 {
            drop(Box::from_raw(arg.cast::<Main>()));
            return Err(io::Error::from_raw_os_error(rc));
        }
        libc::pthread_setname_np(thread, name.as_ptr());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn runs_the_closure_with_thread_locals_and_parking() {
        let (tx, rx) = mpsc::channel();
        spawn(
            c"pen-test",
            64 * 1024,
            Box::new(move || {
                thread_local!(static N: std::cell::Cell<u32> = const { std::cell::Cell::new(1) });
                N.with(|n| n.set(n.get() + 1));
                std::thread::park_timeout(Duration::from_millis(1));
                let name = std::fs::read_to_string("/proc/thread-self/comm").unwrap_or_default();
                tx.send((N.with(|n| n.get()), name)).unwrap();
            }),
        )
        .unwrap();
        let (n, name) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(n, 2);
        assert_eq!(name.trim(), "pen-test");
    }

    #[test]
    fn a_panicking_thread_ends_alone() {
        let (tx, rx) = mpsc::channel::<()>();
        spawn(
            c"pen-test",
            64 * 1024,
            Box::new(move || {
                let _tx = tx;
                panic!("on purpose");
            }),
        )
        .unwrap();
        // The sender is dropped while unwinding: the channel closes.
        assert!(rx.recv_timeout(Duration::from_secs(5)).is_err());
    }
}
