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
    release_unused_stack();
    std::ptr::null_mut()
}

/// Stack left in place below the caller's frame by
/// [`release_unused_stack`], for the calls that follow it.
#[cfg(target_env = "gnu")]
const STACK_MARGIN: usize = 4 * 1024;

/// Gives back the touched pages of the calling thread's stack below the
/// caller's frame; call it last thing before the thread ends. glibc keeps
/// the stacks of ended threads for reuse (up to 40 MiB of them) and frees
/// all but the 16 KiB under its own last frame, so each kept stack would
/// hold ~12 KiB: ~3.7 MB for the 310 stacks of 128 KiB it keeps after a
/// burst of pairs, and RSS that creeps up with the peak thread count. musl
/// unmaps a thread's stack when it ends: nothing to do there.
#[cfg(target_env = "gnu")]
#[inline(never)]
pub fn release_unused_stack() {
    let mut probe = 0u8;
    let here = std::hint::black_box(&mut probe as *mut u8 as usize);
    // SAFETY: the attribute object is filled by pthread_getattr_np for the
    // calling thread and destroyed after use. The pages given back lie in
    // this thread's own stack, below this frame minus STACK_MARGIN: no
    // frame lives there (the madvise call needs a few bytes, well within
    // the margin), and a page touched again reads as zeros, like fresh
    // stack, so a signal handler running there later is unaffected.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return;
        }
        let mut low: *mut c_void = std::ptr::null_mut();
        let mut size = 0usize;
        let rc = libc::pthread_attr_getstack(&attr, &mut low, &mut size);
        libc::pthread_attr_destroy(&mut attr);
        if rc != 0 {
            return;
        }
        let page = 4096;
        let low = low as usize;
        let end = here.saturating_sub(STACK_MARGIN) & !(page - 1);
        if end > low && here < low + size {
            libc::madvise(low as *mut c_void, end - low, libc::MADV_DONTNEED);
        }
    }
}

/// musl unmaps a thread's stack when it ends: nothing to do.
#[cfg(not(target_env = "gnu"))]
pub fn release_unused_stack() {}

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

    /// Whether the page holding `addr` is resident.
    fn resident(addr: usize) -> bool {
        let page = addr & !4095;
        let mut vec = 0u8;
        // SAFETY: mincore reads the residency of one mapped page (a page of
        // this thread's stack) into one byte.
        let rc = unsafe { libc::mincore(page as *mut c_void, 4096, &mut vec) };
        rc == 0 && vec & 1 == 1
    }

    #[test]
    fn deep_stack_pages_are_given_back_and_usable_again() {
        /// Recurses n frames of 512 bytes; the address of the deepest.
        #[inline(never)]
        fn deep(n: u32) -> usize {
            let buf = std::hint::black_box([n as u8; 512]);
            if n == 0 {
                buf.as_ptr() as usize
            } else {
                std::hint::black_box(deep(n - 1))
            }
        }
        let (tx, rx) = mpsc::channel();
        spawn(
            c"pen-test",
            128 * 1024,
            Box::new(move || {
                let bottom = deep(100);
                let before = resident(bottom);
                release_unused_stack();
                let after = resident(bottom);
                let again = deep(100);
                tx.send((before, after, again == bottom, resident(bottom)))
                    .unwrap();
            }),
        )
        .unwrap();
        let (before, after, same, used_again) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(before, "touched stack is resident");
        if cfg!(target_env = "gnu") {
            assert!(!after, "given back");
        }
        assert!(same && used_again, "and usable again");
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
