//! The pool of connection-pair threads. A finished pair's thread parks and
//! takes the next job instead of exiting, so a new connection usually costs
//! one wake-up of a parked thread, not a thread spawn. Parked threads exit
//! after an idle period, so the thread count returns to its idle value.
//!
//! Idle threads are reused last-parked-first: under steady load the same
//! few threads (warm caches, touched stacks) do the work and the rest time
//! out, instead of every thread being woken in turn and kept alive. A job
//! goes straight into the slot of the thread chosen for it, so it never
//! waits behind a long-lived pair.
//!
//! After thousands of pairs close at once, as many threads expire at about
//! the same moment: each retires in constant time under the pool's lock
//! (its slot is marked, and the list is compacted once half of it is
//! retired), and the last one gives the freed heap back to the kernel.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use crate::relay::Pipes;
use crate::sys;

/// Per-thread state kept across the pairs a thread serves.
#[derive(Default)]
pub struct WorkerLocal {
    pub pipes: Pipes,
}

pub type Job = Box<dyn FnOnce(&mut WorkerLocal) + Send>;

/// A parked thread and the job handed to it.
struct Slot {
    thread: thread::Thread,
    state: Mutex<SlotState>,
}

#[derive(Default)]
struct SlotState {
    job: Option<Job>,
    /// The thread timed out and is exiting: never give it a job.
    retired: bool,
}

struct Idle {
    /// Parked threads not yet given a job, most recently parked last, and
    /// `retired` slots of threads that have expired since.
    slots: Vec<Arc<Slot>>,
    retired: usize,
    /// Threads alive (busy or parked).
    threads: usize,
}

/// Retired slots tolerated in the list before it is compacted, however
/// short the list.
const RETIRED_SLACK: usize = 64;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Threads that run pair jobs.
pub struct WorkerPool {
    idle: Mutex<Idle>,
    stack_size: usize,
    idle_for: Duration,
}

impl WorkerPool {
    pub fn new(stack_size: usize, idle_for: Duration) -> Arc<WorkerPool> {
        Arc::new(WorkerPool {
            idle: Mutex::new(Idle {
                slots: Vec::new(),
                retired: 0,
                threads: 0,
            }),
            stack_size,
            idle_for,
        })
    }

    /// Number of threads alive (busy or parked).
    pub fn threads(&self) -> usize {
        lock(&self.idle).threads
    }

    /// Runs `job` on a parked thread, or a new one. On failure to create a
    /// thread the job is dropped (closing its sockets) and the error returned.
    pub fn dispatch(self: &Arc<Self>, job: Job) -> io::Result<()> {
        let mut job = Some(job);
        let parked = {
            let mut idle = lock(&self.idle);
            let mut chosen = None;
            while let Some(slot) = idle.slots.pop() {
                let mut state = lock(&slot.state);
                if state.retired {
                    drop(state);
                    idle.retired -= 1;
                    continue;
                }
                state.job = job.take();
                drop(state);
                chosen = Some(slot);
                break;
            }
            if chosen.is_none() {
                idle.threads += 1;
            }
            chosen
        };
        if let Some(slot) = parked {
            slot.thread.unpark();
            return Ok(());
        }
        let Some(job) = job else {
            return Ok(());
        };
        let pool = Arc::clone(self);
        // Two memory mappings per thread instead of std's four (see
        // sys::thread): vm.max_map_count bounds the number of pairs.
        let spawned = sys::thread::spawn(
            c"pen-pair",
            self.stack_size,
            Box::new(move || pool.run(job)),
        );
        if let Err(e) = spawned {
            lock(&self.idle).threads -= 1;
            return Err(e);
        }
        Ok(())
    }

    fn run(self: Arc<Self>, first: Job) {
        let me = Arc::new(Slot {
            thread: thread::current(),
            state: Mutex::new(SlotState::default()),
        });
        let mut local = WorkerLocal::default();
        let mut job = Some(first);
        while let Some(j) = job.take() {
            // A panicking job must not take the thread's bookkeeping with it.
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| j(&mut local)));
            if r.is_err() {
                local = WorkerLocal::default();
            }
            job = self.park(&me);
        }
    }

    /// Waits for the next job; `None` (and the thread is no longer counted)
    /// after the idle period.
    fn park(&self, me: &Arc<Slot>) -> Option<Job> {
        lock(&self.idle).slots.push(Arc::clone(me));
        let deadline = Instant::now() + self.idle_for;
        loop {
            if let Some(j) = lock(&me.state).job.take() {
                return Some(j);
            }
            let now = Instant::now();
            if now < deadline {
                thread::park_timeout(deadline - now);
                continue;
            }
            // Same lock order as dispatch: the pool, then the slot.
            let mut idle = lock(&self.idle);
            let mut state = lock(&me.state);
            if let Some(j) = state.job.take() {
                return Some(j);
            }
            state.retired = true;
            drop(state);
            idle.threads -= 1;
            idle.retired += 1;
            if idle.retired > RETIRED_SLACK && idle.retired * 2 > idle.slots.len() {
                idle.slots.retain(|s| !lock(&s.state).retired);
                idle.retired = 0;
            }
            let last = idle.threads == 0;
            drop(idle);
            if last {
                // Every pair is gone and has been for the idle period.
                sys::memory::release_free_heap();
            }
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn reuses_parked_threads_and_expires_them() {
        let pool = WorkerPool::new(64 * 1024, Duration::from_millis(300));
        let (tx, rx) = mpsc::channel();
        for i in 0..3 {
            let tx = tx.clone();
            pool.dispatch(Box::new(move |_| tx.send(i).unwrap()))
                .unwrap();
            rx.recv_timeout(Duration::from_secs(5)).unwrap();
            // The thread parks before the next dispatch, so that one
            // reuses it.
            wait_for(|| lock(&pool.idle).slots.len() == 1, "the thread parked");
        }
        assert_eq!(pool.threads(), 1);
        wait_for(|| pool.threads() == 0, "the parked thread exited");
    }

    /// Polls `done` until it holds, failing after 10 s.
    fn wait_for(done: impl Fn() -> bool, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting: {what}");
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Many threads expiring together: the retired slots are skipped and
    /// compacted away, the count returns to zero, and the pool still works.
    #[test]
    fn mass_expiry_leaves_a_working_pool() {
        let n = 3 * RETIRED_SLACK;
        let pool = WorkerPool::new(64 * 1024, Duration::from_millis(200));
        let (started_tx, started_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let go_rx = Arc::new(Mutex::new(go_rx));
        for _ in 0..n {
            let started = started_tx.clone();
            let go = Arc::clone(&go_rx);
            pool.dispatch(Box::new(move |_| {
                started.send(()).unwrap();
                let _ = lock(&go).recv_timeout(Duration::from_secs(10));
            }))
            .unwrap();
        }
        for _ in 0..n {
            started_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        }
        assert_eq!(pool.threads(), n);
        drop(go_tx);
        wait_for(|| pool.threads() == 0, "every thread expired");
        assert!(lock(&pool.idle).slots.len() <= RETIRED_SLACK, "compacted");
        let (tx, rx) = mpsc::channel();
        pool.dispatch(Box::new(move |_| tx.send(7).unwrap()))
            .unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), 7);
        assert_eq!(pool.threads(), 1);
    }

    #[test]
    fn long_job_does_not_block_others() {
        let pool = WorkerPool::new(64 * 1024, Duration::from_secs(5));
        let (block_tx, block_rx) = mpsc::channel::<()>();
        let (tx, rx) = mpsc::channel();
        pool.dispatch(Box::new(move |_| {
            let _ = block_rx.recv_timeout(Duration::from_secs(10));
        }))
        .unwrap();
        for i in 0..10 {
            let tx = tx.clone();
            pool.dispatch(Box::new(move |_| tx.send(i).unwrap()))
                .unwrap();
        }
        let mut got: Vec<i32> = (0..10)
            .map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap())
            .collect();
        got.sort();
        assert_eq!(got, (0..10).collect::<Vec<_>>());
        drop(block_tx);
    }
}
