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
    job: Mutex<Option<Job>>,
}

struct Idle {
    /// Parked threads not yet given a job, most recently parked last.
    slots: Vec<Arc<Slot>>,
    /// Threads alive (busy or parked).
    threads: usize,
}

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
        let parked = {
            let mut idle = lock(&self.idle);
            let slot = idle.slots.pop();
            if slot.is_none() {
                idle.threads += 1;
            }
            slot
        };
        if let Some(slot) = parked {
            *lock(&slot.job) = Some(job);
            slot.thread.unpark();
            return Ok(());
        }
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
            job: Mutex::new(None),
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
            if let Some(j) = lock(&me.job).take() {
                return Some(j);
            }
            let now = Instant::now();
            if now < deadline {
                thread::park_timeout(deadline - now);
                continue;
            }
            let mut idle = lock(&self.idle);
            if let Some(pos) = idle.slots.iter().position(|s| Arc::ptr_eq(s, me)) {
                idle.slots.remove(pos);
                idle.threads -= 1;
                return None;
            }
            drop(idle);
            // Claimed just now: the job is on its way (dispatch unparks us).
            thread::park_timeout(Duration::from_millis(10));
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
            // Give the thread time to park before the next dispatch.
            thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(pool.threads(), 1);
        for _ in 0..100 {
            if pool.threads() == 0 {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!("parked thread did not exit");
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
