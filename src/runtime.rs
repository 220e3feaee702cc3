//! What the threads share: the balancer state behind its `Mutex`, the
//! worker pool, the acceptor's wake pipe and the admission limits the
//! acceptor takes clients in under (`-x`, `pending_max`).

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use crate::idle_pool::IdlePool;
use crate::relay::YieldGuard;
use crate::state::Balancer;
use crate::sys::pipe;
use crate::upstream::Admission;
use crate::workers::WorkerPool;

/// Facts about the process that commands report (`listen`, `control`,
/// `pid`, the `write` header) and that change rarely.
#[derive(Clone, Debug, Default)]
pub struct ProcessInfo {
    /// The listen specification as given (`listen` reply).
    pub listen: Option<String>,
    /// A `listen` command at start-up named the listener (doc/pen-0.34.1.md,
    /// "Start-up order", step 7: LISTEN is then swallowed).
    pub listen_from_command: bool,
    /// `-C` as given.
    pub control: Option<String>,
    /// `-F`, the default target of `write`.
    pub config_file: Option<PathBuf>,
    pub foreground: bool,
    pub udp: bool,
    pub exit_enabled: bool,
    pub pid_file: Option<String>,
    pub user: Option<String>,
    pub chroot: Option<String>,
    pub emergency: Option<String>,
    pub abuse: Option<String>,
    /// Request log target as given (`log` reply).
    pub log_target: Option<String>,
    /// HTML status file (`-w`, `web_stats`).
    pub web_stats: Option<PathBuf>,
    /// The metrics endpoint's address as given (`metrics_listen`).
    pub metrics_listen: Option<String>,
    /// `dsr_if`: the interface of direct server return, set at start-up.
    pub dsr_if: Option<String>,
    /// When the process started (UNIX time, `pen_start_time_seconds`).
    pub started_at: i64,
}

/// Requests from other threads to the acceptor.
#[derive(Debug)]
pub enum AcceptorRequest {
    /// Replace the listening socket(s) (`listen ADDR` at run time).
    Listen(Vec<OwnedFd>),
    /// Serve the metrics endpoint on this socket, or close it
    /// (`metrics_listen`).
    Metrics(Option<OwnedFd>),
    /// `drain [SECONDS]`: stop taking clients, exit once the live ones end
    /// (or after SECONDS, `drain_timeout` when `None`).
    Drain(Option<u64>),
    /// SIGUSR2: the new process serves; close the control and metrics
    /// sockets (the new process has its own copies) and drain as for
    /// `drain`.
    HandedOver,
    /// `exit` (with `-X`).
    Exit,
}

/// State shared by the acceptor, the pair threads and control handlers.
pub struct Shared {
    balancer: Mutex<Balancer>,
    pub info: Mutex<ProcessInfo>,
    pub pool: Arc<WorkerPool>,
    /// Pairs and pending connects, under mirrors of `conn_max` and
    /// `pending_max` readable without the lock.
    pub admission: Arc<Admission>,
    /// Whether the pairs' threads yield: shared, so that slow yields seen
    /// by any pair pause yielding in all of them.
    pub yield_guard: YieldGuard,
    /// Clients accepted (`pen_clients_accepted_total`): counted by the
    /// acceptor and the UDP relay, without the lock.
    pub accepted: AtomicU64,
    /// Set once a drain began (SIGQUIT, `drain`): no new clients.
    pub draining: AtomicBool,
    /// Datagrams of clients without a session dropped while draining.
    pub udp_dropped: AtomicU64,
    /// Mirrors whether `accept_proxy` is on, so that a new pair asks the
    /// lock only when it must read a PROXY header.
    pub accept_proxy_on: AtomicBool,
    requests: Mutex<Vec<AcceptorRequest>>,
    /// Shared with `admission` and the signal handler, which wake the
    /// acceptor through it.
    wake_write: Arc<OwnedFd>,
    wake_read: OwnedFd,
    /// TLS settings and the acceptor in use (`-E`, `ssl_*`).
    #[cfg(feature = "tls")]
    pub tls_state: crate::tls::TlsState,
    /// Whether the health prober's thread runs (started the first time
    /// `health_check` is on once pen runs).
    pub prober_started: AtomicBool,
    /// The idle upstream connections `idlers N` keeps.
    pub idlers: IdlePool,
    /// Whether their maintainer's thread runs (started the first time
    /// `idlers` is above 0 once pen runs).
    pub idlers_started: AtomicBool,
    /// A metrics socket inherited at start-up (an upgrade, socket
    /// activation): `metrics_listen` at start-up serves it instead of
    /// binding.
    pub inherited_metrics: Mutex<Option<OwnedFd>>,
    /// The write end of the direct server return thread's wake pipe, set
    /// when that thread runs: woken when servers or settings change.
    pub dsr_wake: OnceLock<OwnedFd>,
    /// This value's own `Arc`, for threads started from a borrowed one.
    me: Weak<Shared>,
}

impl Shared {
    pub fn new(
        balancer: Balancer,
        info: ProcessInfo,
        pool: Arc<WorkerPool>,
    ) -> std::io::Result<Arc<Shared>> {
        let (wake_read, wake_write) = pipe::pipe()?;
        let wake_write = Arc::new(wake_write);
        let admission = Admission::new(
            balancer.conns.capacity(),
            balancer.settings.pending_max,
            Arc::clone(&wake_write),
        );
        Ok(Arc::new_cyclic(|me| Shared {
            balancer: Mutex::new(balancer),
            info: Mutex::new(info),
            pool,
            admission: Arc::new(admission),
            yield_guard: YieldGuard::new(),
            accepted: AtomicU64::new(0),
            draining: AtomicBool::new(false),
            udp_dropped: AtomicU64::new(0),
            accept_proxy_on: AtomicBool::new(false),
            requests: Mutex::new(Vec::new()),
            wake_write,
            wake_read,
            #[cfg(feature = "tls")]
            tls_state: crate::tls::TlsState::default(),
            prober_started: AtomicBool::new(false),
            idlers: IdlePool::default(),
            idlers_started: AtomicBool::new(false),
            inherited_metrics: Mutex::new(None),
            dsr_wake: OnceLock::new(),
            me: me.clone(),
        }))
    }

    /// An owning handle to this value (`None` only while it is dropped).
    pub fn arc(&self) -> Option<Arc<Shared>> {
        self.me.upgrade()
    }

    /// Starts the background thread `name` running `body` unless `started`
    /// says it runs already (the health prober, the idlers' maintainer:
    /// started lazily, then kept). Whether it runs.
    pub fn start_once(&self, started: &AtomicBool, name: &str, body: fn(&Shared)) -> bool {
        if started.swap(true, Ordering::AcqRel) {
            return true;
        }
        let Some(owned) = self.arc() else {
            started.store(false, Ordering::Release);
            return false;
        };
        let spawned = std::thread::Builder::new()
            .name(name.into())
            .stack_size(256 * 1024)
            .spawn(move || body(&owned));
        if let Err(e) = spawned {
            started.store(false, Ordering::Release);
            crate::logging::message(&format!("can't start the {name} thread: {e}"));
            return false;
        }
        true
    }

    /// The balancer state. Never hold the guard across a connect, a read or
    /// a write. A thread that panicked while holding it leaves consistent
    /// plain data, so poisoning is ignored.
    pub fn lock(&self) -> MutexGuard<'_, Balancer> {
        self.balancer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The balancer state's lock itself, for the connection leases that
    /// borrow it (`upstream::Lease`); everything else uses [`Self::lock`].
    pub fn balancer(&self) -> &Mutex<Balancer> {
        &self.balancer
    }

    pub fn info(&self) -> MutexGuard<'_, ProcessInfo> {
        self.info.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Refreshes the lock-free mirrors after a command changed the limits.
    pub fn sync_limits(&self, b: &Balancer) {
        self.admission
            .set_limits(b.conns.capacity(), b.settings.pending_max.max(1));
        self.accept_proxy_on.store(
            b.settings.accept_proxy != crate::settings::AcceptProxy::Off,
            std::sync::atomic::Ordering::Relaxed,
        );
        self.wake_acceptor();
    }

    pub fn wake_acceptor(&self) {
        pipe::wake(self.wake_write.as_raw_fd());
    }

    /// Tells the direct server return thread, if it runs, to look at the
    /// servers and settings again now.
    pub fn wake_dsr(&self) {
        if let Some(fd) = self.dsr_wake.get() {
            pipe::wake(fd.as_raw_fd());
        }
    }

    pub fn wake_fd(&self) -> &OwnedFd {
        &self.wake_read
    }

    pub fn wake_write_fd(&self) -> &Arc<OwnedFd> {
        &self.wake_write
    }

    pub fn request(&self, r: AcceptorRequest) {
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(r);
        self.wake_acceptor();
    }

    pub fn take_requests(&self) -> Vec<AcceptorRequest> {
        std::mem::take(&mut *self.requests.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Whether a drain began.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Whether clients talk TLS to this pen (`-E`): the scheme the
    /// `X-Forwarded-Proto` header reports (doc/pen-0.34.1.md,
    /// "X-Forwarded-For").
    pub fn tls(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.tls_state.enabled();
        #[cfg(not(feature = "tls"))]
        return false;
    }
}
