//! The `pen` process: start-up in pen's order (doc/pen-0.34.1.md,
//! "Start-up order"), the control port handlers, signal actions, and shutdown.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::acceptor::{self, Handlers};
use crate::addr::{self, Host, ListenAddr, Proto};
use crate::cli::{self, CommandLine, Invocation, Step};
use crate::control::{self, Origin, MAX_CONTROL_CLIENTS};
use crate::filters::PairFilter;
use crate::logging;
use crate::pair::{self, FilterFactory};
use crate::relay::Filter;
use crate::runtime::{ProcessInfo, Shared};
use crate::state::servers::MAX_SERVERS;
use crate::state::Balancer;
use crate::sys;
use crate::sys::socket::PeerAddr;
use crate::upstream::Permit;
use crate::workers::WorkerPool;

/// Stack size of pair threads: small, since an idle pair's RSS is mostly
/// its touched stack pages.
const PAIR_STACK: usize = 128 * 1024;
/// Parked pair threads exit after this long without work.
const PARKED_THREAD_LIFETIME: Duration = Duration::from_secs(5);

/// Mirrors the `abort_on_error` setting for the fatal-error path.
static ABORT_ON_ERROR: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A start-up failure: printed as `pen: MESSAGE`, exit status 1.
#[derive(Debug)]
pub struct Fatal(pub String);

impl std::fmt::Display for Fatal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn fatal(m: impl Into<String>) -> Fatal {
    Fatal(m.into())
}

/// Runs `pen` with `args` (without the program name); the exit status.
pub fn main(args: &[String]) -> i32 {
    let cl = match cli::parse(args) {
        Ok(Invocation::Help) => {
            print!("{}", cli::usage());
            return 0;
        }
        Ok(Invocation::Version) => {
            print!("{}", cli::version());
            return 0;
        }
        Ok(Invocation::Run(cl)) => cl,
        Err(e) => {
            eprintln!("pen: {e}");
            return 1;
        }
    };
    match run(*cl) {
        Ok(()) => 0,
        Err(e) => {
            let _ = std::io::stdout().flush();
            eprintln!("pen: {e}");
            if logging::is_syslog() {
                logging::message(&e.0);
            }
            if ABORT_ON_ERROR.load(Ordering::Relaxed) {
                // `abort_on_error`: dump core instead of exiting 1.
                std::process::abort();
            }
            1
        }
    }
}

fn step_error(step: &str, e: impl std::fmt::Display) -> Fatal {
    fatal(format!("{step}: {e}"))
}

/// Applies the command-line steps in order (`-o` replies to stdout).
fn apply_steps(shared: &Shared, steps: &[Step]) -> Result<(), Fatal> {
    for step in steps {
        match step {
            Step::MoreDebug => {
                let mut b = shared.lock();
                b.settings.debug += 1;
                logging::set_level(b.settings.debug);
            }
            Step::Quiet(cmd) | Step::Command(cmd) => {
                let parsed =
                    control::parse(cmd).map_err(|e| step_error(&format!("-o '{cmd}'"), e))?;
                if let Some(c) = parsed {
                    let reply = control::execute(shared, &c, Origin::Startup)
                        .map_err(|e| step_error(&format!("-o '{cmd}'"), e))?;
                    if matches!(step, Step::Command(_)) {
                        print!("{reply}");
                    }
                }
            }
        }
    }
    Ok(())
}

fn process_info(cl: &CommandLine) -> ProcessInfo {
    ProcessInfo {
        control: cl.control.clone(),
        config_file: cl.config_file.as_ref().map(PathBuf::from),
        foreground: cl.foreground,
        udp: cl.udp,
        exit_enabled: cl.exit_enabled,
        pid_file: cl.pid_file.clone(),
        user: cl.user.clone(),
        chroot: cl.chroot.clone(),
        emergency: cl.emergency.clone(),
        abuse: cl.abuse.clone(),
        started_at: sys::now_unix(),
        ..ProcessInfo::default()
    }
}

/// Builds the server table from the positional backends (overwriting slots
/// 0..N-1, doc/pen-0.34.1.md, "Start-up order", step 8) and the emergency and
/// abuse servers.
fn build_servers(
    shared: &Shared,
    cl: &CommandLine,
    backends: &[String],
    listen_port: u16,
    dsr_any_port: bool,
) -> Result<(), Fatal> {
    if backends.len() > MAX_SERVERS {
        return Err(fatal(format!(
            "{} servers given: at most {MAX_SERVERS}",
            backends.len()
        )));
    }
    let proto = if cl.udp { Proto::Udp } else { Proto::Tcp };
    let parse = |s: &str| {
        // DSR with a bare VIP (every port): a server without a port shows
        // port 0, as in pen; its frames keep their own ports.
        if dsr_any_port {
            let spec = addr::parse_backend(s, 1, proto).map_err(|e| fatal(e.to_string()))?;
            let defaulted = addr::parse_backend(s, 2, proto).is_ok_and(|d| d.port == 2);
            return Ok(addr::BackendSpec {
                port: if defaulted { 0 } else { spec.port },
                ..spec
            });
        }
        addr::parse_backend(s, listen_port, proto).map_err(|e| {
            if s.contains("::") && !s.starts_with('[') {
                fatal(format!("{e} (write IPv6 servers in brackets: [{s}])"))
            } else {
                fatal(e.to_string())
            }
        })
    };
    let specs: Vec<_> = backends
        .iter()
        .map(|s| parse(s))
        .collect::<Result<_, _>>()?;
    let emergency = cl.emergency.as_deref().map(parse).transpose()?;
    let abuse = cl.abuse.as_deref().map(parse).transpose()?;
    let mut b = shared.lock();
    for (i, spec) in specs.iter().enumerate() {
        b.servers.set_from_spec(i, spec);
    }
    b.servers.emergency = emergency
        .as_ref()
        .map(crate::state::servers::Backend::from_spec);
    b.servers.abuse = abuse
        .as_ref()
        .map(crate::state::servers::Backend::from_spec);
    if logging::level() >= 1 {
        for (i, s) in b.servers.backends.iter().enumerate() {
            logging::message(&format!(
                "{i:2} {}:{}:{}:{}:{}:{}",
                s.host, s.port, s.max_conns, s.hard_limit, s.weight, s.prio
            ));
        }
    }
    Ok(())
}

fn open_control(spec: &str, backlog: i32) -> Result<OwnedFd, Fatal> {
    let addr =
        addr::parse_listen(spec, Proto::Tcp).map_err(|e| fatal(format!("-C {spec}: {e}")))?;
    let fd = crate::listeners::open(&addr, false, backlog)
        .map_err(|e| fatal(crate::listeners::bind_error(spec, &e)))?;
    if let ListenAddr::Unix(path) = &addr {
        // The control port has no authentication: owner-only access.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| fatal(format!("-C {spec}: can't restrict permissions: {e}")))?;
    }
    Ok(fd)
}

fn run(cl: CommandLine) -> Result<(), Fatal> {
    // First, before any thread starts: the variables are removed here.
    let mut inherited = crate::upgrade::take_inherited(cl.udp).map_err(fatal)?;
    let executable = crate::upgrade::Executable::current();
    for n in &cl.notices {
        eprintln!("{n}");
    }
    let pool = WorkerPool::new(PAIR_STACK, PARKED_THREAD_LIFETIME);
    let shared = Shared::new(Balancer::default(), process_info(&cl), pool)
        .map_err(|e| fatal(format!("can't create the wake pipe: {e}")))?;
    *shared
        .inherited_metrics
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = inherited.metrics.take();
    apply_steps(&shared, &cl.steps)?;
    if let Some(path) = &cl.config_file {
        let replies =
            control::config::read_and_apply(&shared, std::path::Path::new(path), Origin::Startup)
                .map_err(|e| fatal(e.to_string()))?;
        print!("{replies}");
    }
    let _ = std::io::stdout().flush();
    ABORT_ON_ERROR.store(shared.lock().settings.abort_on_error, Ordering::Relaxed);
    // A `listen` command named the listener: LISTEN is swallowed
    // (doc/pen-0.34.1.md, quirk Q19).
    let (listen_spec, backends) = {
        let info = shared.info();
        if info.listen_from_command {
            (info.listen.clone().unwrap_or_default(), cl.backends.clone())
        } else {
            match &cl.listen {
                Some(l) => (l.clone(), cl.backends.clone()),
                None => return Err(fatal(cli::CliError::NoListen.to_string())),
            }
        }
    };
    // Direct server return: LISTEN is VIP[:PORT], served from a packet
    // socket opened here, with the listeners, before privileges drop.
    let dsr_if = shared.info().dsr_if.clone();
    let (listen_addr, dsr) = match dsr_if {
        Some(interface) => {
            let vip = crate::dsr::parse_vip(&listen_spec)
                .map_err(|e| fatal(format!("listen address '{listen_spec}': {e}")))?;
            build_servers(
                &shared,
                &cl,
                &backends,
                vip.port.unwrap_or(0),
                vip.port.is_none(),
            )?;
            let port =
                crate::dsr::open(&interface, vip, cl.udp).map_err(|e| fatal(e.to_string()))?;
            (None, Some(port))
        }
        None => {
            let proto = if cl.udp { Proto::Udp } else { Proto::Tcp };
            let listen_addr = addr::parse_listen(&listen_spec, proto)
                .map_err(|e| fatal(format!("listen address '{listen_spec}': {e}")))?;
            build_servers(&shared, &cl, &backends, listen_addr.port(), false)?;
            (Some(listen_addr), None)
        }
    };
    shared.info().listen = Some(listen_spec.clone());
    let backlog = shared.lock().settings.listen_queue;
    // Signals are caught before anything can see that we are up (an open
    // port, or the daemon's parent returning): a TERM sent right after that
    // must stop pen cleanly (exit 0, pid file removed), not kill it. The
    // acceptor acts on a signal recorded before its loop starts. A daemon
    // installs them after detaching (so the waiting parent keeps the
    // default actions), as the first of the steps that report to it.
    let install_signals = || {
        sys::signal::install(Arc::clone(shared.wake_write_fd()))
            .map_err(|e| fatal(format!("can't install signal handlers: {e}")))
    };
    if cl.foreground {
        install_signals()?;
    }
    let control = match (inherited.control.take(), &cl.control) {
        (Some(inherited), _) => Some(inherited),
        (None, Some(spec)) if sys::process::getuid() == 0 && cl.user.is_none() => {
            let _ = spec;
            logging::message(
                "Won't open control port running as root; use -u to run as different user",
            );
            None
        }
        (None, Some(spec)) => Some(open_control(spec, backlog)?),
        (None, None) => None,
    };
    // An inherited listener (socket activation, an upgrade) is used as it
    // is: LISTEN still gives the default port of the servers.
    let listener = match (inherited.listen.take(), &listen_addr) {
        (_, None) => None,
        (Some(l), Some(_)) => Some(l),
        (None, Some(a)) => Some(
            crate::listeners::open(a, cl.udp, backlog)
                .map_err(|e| fatal(crate::listeners::bind_error(&listen_spec, &e)))?,
        ),
    };
    // doc/pen-0.34.1.md, "Start-up order", step 9: the TLS context, after the
    // listeners.
    #[cfg(feature = "tls")]
    cl.tls
        .settings()
        .map_err(crate::tls::TlsSetupError::Start)
        .and_then(|command_line| shared.tls_state.start(&command_line, cl.tls.any()))
        .map_err(|e| fatal(e.to_string()))?;
    // Resolve the user while /etc/passwd is still reachable (before -j).
    let account = cl
        .user
        .as_deref()
        .map(crate::daemon::lookup_user)
        .transpose()
        .map_err(|e| fatal(e.to_string()))?;
    crate::daemon::raise_fd_limit();
    crate::daemon::raise_core_limit();
    // Every socket is open: detach now, so the steps that can still fail
    // report to the waiting parent and the init script sees the exit status.
    let mut cl = cl;
    if !cl.foreground && cl.chroot.is_none() {
        absolutize_paths(&shared, &mut cl);
    }
    let report = if cl.foreground {
        None
    } else {
        if !sys::syslog::available() {
            eprintln!(
                "pen: warning: no system logger at {}: as a daemon, pen's messages and USR1 \
                 statistics will be lost; run in the foreground with -f, write statistics \
                 with -w FILE, or scrape the `metrics` command",
                sys::syslog::SOCKET
            );
        }
        sys::syslog::open(c"pen");
        Some(crate::daemon::detach().map_err(|e| fatal(e.to_string()))?)
    };
    let daemon_signals = if cl.foreground {
        Ok(())
    } else {
        install_signals()
    };
    let started = daemon_signals.and_then(|()| finish_startup(&shared, &cl, account.as_ref()));
    let pid_file = match started {
        Ok(p) => p,
        Err(e) => {
            if let Some(r) = report {
                r.failed(&format!("pen: {e}"));
                std::process::exit(1);
            }
            return Err(e);
        }
    };
    if let Some(r) = report {
        r.ready();
        logging::use_syslog(true);
    }
    let no_servers = {
        let mut b = shared.lock();
        b.running = true;
        shared.sync_limits(&b);
        b.servers
            .backends
            .iter()
            .all(|s| matches!(s.host, Host::Unset))
            && b.servers.emergency.is_none()
    };
    if no_servers && cl.config_file.is_none() {
        logging::warning(
            "no backend servers: every client will be refused until servers are added \
             (give them after LISTEN, in a -F file, or with `server N address A port P`)",
        );
    }
    crate::health::start_if_enabled(&shared);
    crate::idlers::start_if_wanted(&shared);
    let mut handlers = Service {
        shared: Arc::clone(&shared),
        filters: Arc::new(make_filter),
        control_clients: Arc::default(),
        control_reserve: control.as_ref().and_then(|_| control_reserve()),
        executable,
    };
    // UDP mode: one relay thread serves the UDP listener (see crate::udp);
    // the acceptor keeps only the control socket and the signals.
    // DSR mode: the DSR thread serves the packet socket (see crate::dsr).
    let listeners = match (listener, dsr) {
        (_, Some(port)) => {
            crate::dsr::spawn(Arc::clone(&shared), port).map_err(|e| fatal(e.to_string()))?;
            Vec::new()
        }
        (Some(listener), None) if cl.udp => {
            crate::udp::spawn(Arc::clone(&shared), listener, Arc::clone(&handlers.filters))
                .map_err(|e| fatal(e.to_string()))?;
            Vec::new()
        }
        (listener, None) => listener.into_iter().collect(),
    };
    // An upgrade's old process waits for this before it drains.
    if let Some(ready) = inherited.ready.take() {
        crate::upgrade::report_ready(ready);
    }
    let stop = acceptor::run(&shared, listeners, control, &mut handlers);
    logging::debug(1, || format!("Quitting ({stop:?})"));
    // After an upgrade the pid file names the new process.
    if let Some(p) = pid_file.filter(|_| !HANDED_OVER.load(Ordering::Relaxed)) {
        p.remove();
    }
    let _ = std::io::stdout().flush();
    Ok(())
}

/// SIGHUP: reads the GeoIP database files in use again, as the request log
/// is reopened (outside the lock). A file that cannot be read, or no longer
/// checks out, keeps the database loaded before; the error is logged.
fn reload_geoip(shared: &Shared) {
    let files: Vec<(PathBuf, bool)> = shared
        .lock()
        .geoip
        .files()
        .iter()
        .map(|l| (l.path.clone(), l.from_command))
        .collect();
    for (path, from_command) in files {
        match crate::geoip::load(&path, from_command) {
            Ok(loaded) => shared.lock().geoip.install(loaded),
            Err(e) => logging::message(&format!(
                "geoip_db {}: {e}; the database loaded before stays in use",
                path.display()
            )),
        }
    }
}

/// The daemon changes directory to `/`; relative file names given on the
/// command line keep meaning what they meant where pen was started.
fn absolutize_paths(shared: &Shared, cl: &mut CommandLine) {
    let abs = |p: &str| {
        std::path::absolute(p)
            .map(|a| a.display().to_string())
            .unwrap_or_else(|_| p.to_string())
    };
    if let Some(p) = cl.pid_file.as_mut() {
        *p = abs(p);
    }
    let mut info = shared.info();
    if let Some(t) = info.log_target.as_mut() {
        if !crate::request_log::is_network_target(t) {
            *t = abs(t);
        }
    }
    if let Some(w) = info.web_stats.as_mut() {
        *w = PathBuf::from(abs(&w.display().to_string()));
    }
    if let Some(f) = info.config_file.as_mut() {
        *f = PathBuf::from(abs(&f.display().to_string()));
    }
}

/// chroot, privilege drop, request log, pid file: in pen's order
/// (doc/pen-0.34.1.md, "Privileges and chroot"), after the sockets are open.
fn finish_startup(
    shared: &Shared,
    cl: &CommandLine,
    account: Option<&crate::daemon::Account>,
) -> Result<Option<crate::daemon::PidFile>, Fatal> {
    if let Some(dir) = &cl.chroot {
        crate::daemon::enter_chroot(std::path::Path::new(dir)).map_err(|e| fatal(e.to_string()))?;
    }
    if let Some(acct) = account {
        crate::daemon::drop_privileges(acct).map_err(|e| fatal(e.to_string()))?;
    }
    let target = shared.info().log_target.clone();
    if let Some(t) = target {
        crate::request_log::install(Some(crate::request_log::open(&t).map_err(fatal)?));
    }
    cl.pid_file
        .as_deref()
        .map(|p| crate::daemon::write_pid_file(std::path::Path::new(p)))
        .transpose()
        .map_err(|e| fatal(e.to_string()))
}

/// Decides whether a pair's bytes must be seen, and how.
fn make_filter(shared: &Shared, peer: &PeerAddr, server: &Host) -> Option<Box<dyn Filter + Send>> {
    let log = crate::request_log::request_log_enabled();
    let (dump, http) = {
        let b = shared.lock();
        (
            (logging::level() >= 3).then_some(b.settings.ascii),
            b.settings.http,
        )
    };
    if !log && dump.is_none() && !http {
        return None;
    }
    let client = match peer {
        PeerAddr::Inet(a) => crate::state::clients::canonical_ip(a.ip()).to_string(),
        PeerAddr::Unix(p) => p.display().to_string(),
    };
    // Every client of a pen with -E speaks TLS.
    let scheme = http.then_some(if shared.tls() {
        crate::http::Scheme::Https
    } else {
        crate::http::Scheme::Http
    });
    Some(Box::new(PairFilter::new(
        client,
        server.to_string(),
        log,
        dump,
        scheme,
    )))
}

/// Metrics handlers currently running (apart from the control port's, so
/// that scrapers cannot crowd out penctl).
static METRICS_ACTIVE: AtomicUsize = AtomicUsize::new(0);

/// Serves a metrics connection on a short-lived thread; beyond
/// [`MAX_CONTROL_CLIENTS`] of them the connection is closed at once.
fn spawn_metrics_handler(serve: impl FnOnce() + Send + 'static) {
    let active = &METRICS_ACTIVE;
    if active.fetch_add(1, Ordering::AcqRel) >= MAX_CONTROL_CLIENTS {
        active.fetch_sub(1, Ordering::AcqRel);
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("pen-metrics".into())
        .stack_size(256 * 1024)
        .spawn(move || {
            serve();
            active.fetch_sub(1, Ordering::AcqRel);
            sys::thread::release_unused_stack();
        });
    if spawned.is_err() {
        active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// SIGUSR2: an upgrade is under way (one at a time).
static UPGRADING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// The new process serves: this one drains and leaves the pid file and any
/// Unix socket file to it.
static HANDED_OVER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// How long a new process may take to serve before the upgrade is given up.
const UPGRADE_DEADLINE: Duration = Duration::from_secs(10);

/// A control connection to serve.
type ControlJob = Box<dyn FnOnce() + Send>;

struct Service {
    shared: Arc<Shared>,
    filters: Arc<FilterFactory>,
    control_clients: Arc<control::ControlClients>,
    /// The standing control thread, started with the control port, for
    /// when no thread can be started for a connection.
    control_reserve: Option<std::sync::mpsc::Sender<ControlJob>>,
    /// What SIGUSR2 starts.
    executable: Option<crate::upgrade::Executable>,
}

/// Starts the standing control thread: it serves, one at a time, the
/// connections no thread could be started for.
fn control_reserve() -> Option<std::sync::mpsc::Sender<ControlJob>> {
    let (tx, rx) = std::sync::mpsc::channel::<ControlJob>();
    let spawned = std::thread::Builder::new()
        .name("pen-control-reserve".into())
        .stack_size(256 * 1024)
        .spawn(move || {
            for job in rx {
                job();
            }
        });
    match spawned {
        Ok(_) => Some(tx),
        Err(e) => {
            logging::message(&format!("can't start the standing control thread: {e}"));
            None
        }
    }
}

impl Handlers for Service {
    fn client(&mut self, permit: Permit, fd: OwnedFd, peer: PeerAddr) {
        self.shared.accepted.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::clone(&self.shared);
        let filters = Arc::clone(&self.filters);
        let job = Box::new(move |local: &mut crate::workers::WorkerLocal| {
            pair::serve(&shared, local, permit, fd, peer, &*filters);
        });
        if let Err(e) = self.shared.pool.dispatch(job) {
            // The job was dropped, closing the client socket and giving
            // back the permit.
            logging::causes::NO_PAIR_THREAD
                .message(|| format!("can't start a thread for a client: {e}; client closed"));
            let mut b = self.shared.lock();
            b.counters.refuse(crate::state::Refusal::Thread);
        }
    }

    fn control(&mut self, fd: OwnedFd, peer: PeerAddr) {
        let Some(seat) = self.control_clients.admit(fd) else {
            logging::debug(1, || "control port busy: connection closed".into());
            return;
        };
        let shared = Arc::clone(&self.shared);
        let job: ControlJob = Box::new(move || {
            control::serve_control_port(&shared, seat.conn(), &peer);
        });
        // The job reaches the new thread through a channel, so that it is
        // still here for the standing thread if no thread can be started.
        let (job_tx, job_rx) = std::sync::mpsc::sync_channel::<ControlJob>(1);
        let spawned = std::thread::Builder::new()
            .name("pen-control".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                if let Ok(job) = job_rx.recv() {
                    job();
                }
                sys::thread::release_unused_stack();
            });
        match spawned {
            Ok(_) => {
                let _ = job_tx.send(job);
            }
            Err(e) => {
                // Out of threads (the pairs took them all): the standing
                // control thread serves the connection, so the control port
                // still answers.
                logging::causes::NO_CONTROL_THREAD.message(|| {
                    format!("can't start a thread for a control connection: {e}; queued for the standing one")
                });
                if let Some(reserve) = &self.control_reserve {
                    let _ = reserve.send(job);
                }
            }
        }
    }

    fn metrics(&mut self, fd: OwnedFd, peer: PeerAddr) {
        let shared = Arc::clone(&self.shared);
        spawn_metrics_handler(move || {
            control::serve_metrics(&shared, fd, &peer);
        });
    }

    fn hangup(&mut self) {
        if let Err(e) = crate::request_log::reopen_request_log() {
            logging::message(&e);
        }
        reload_geoip(&self.shared);
        let path = self.shared.info().config_file.clone();
        if let Some(path) = path {
            if let Err(e) = control::config::read_and_apply(&self.shared, &path, Origin::Reload) {
                logging::message(&format!(
                    "config reload failed, running configuration kept: {e}"
                ));
            }
        }
    }

    fn upgrade(
        &mut self,
        listeners: &[OwnedFd],
        control: Option<&OwnedFd>,
        metrics: Option<&OwnedFd>,
    ) {
        use std::os::fd::AsFd;
        let Some(listener) = listeners.first() else {
            logging::message("upgrade (USR2): not available in UDP mode; still serving");
            return;
        };
        let Some(exe) = &self.executable else {
            logging::message("upgrade (USR2): can't tell the path pen was started from");
            return;
        };
        if UPGRADING.swap(true, Ordering::AcqRel) {
            logging::message("upgrade (USR2): one is already under way");
            return;
        }
        let path = exe.path().display().to_string();
        let started = match crate::upgrade::start(
            exe,
            listener.as_fd(),
            control.map(|c| c.as_fd()),
            metrics.map(|m| m.as_fd()),
        ) {
            Ok(s) => s,
            Err(e) => {
                logging::message(&format!("upgrade: can't start {path}: {e}; still serving"));
                UPGRADING.store(false, Ordering::Release);
                return;
            }
        };
        let pid = started.pid;
        logging::message(&format!("upgrade: started {path} as process {pid}"));
        let shared = Arc::clone(&self.shared);
        let waiter = std::thread::Builder::new()
            .name("pen-upgrade".into())
            .stack_size(128 * 1024)
            .spawn(move || match started.wait_ready(UPGRADE_DEADLINE) {
                Ok(()) => {
                    HANDED_OVER.store(true, Ordering::Release);
                    logging::message(&format!("upgrade: process {pid} serves; draining this one"));
                    shared.request(crate::runtime::AcceptorRequest::HandedOver);
                }
                Err(e) => {
                    logging::message(&format!("upgrade failed: {e}; still serving"));
                    UPGRADING.store(false, Ordering::Release);
                }
            });
        if let Err(e) = waiter {
            // Without a waiter nobody would drain this process: the new one
            // is stopped, and this one serves on.
            logging::message(&format!(
                "upgrade: can't start a thread: {e}; still serving"
            ));
            crate::sys::process::kill(pid);
            let _ = crate::sys::process::wait(pid, true);
            UPGRADING.store(false, Ordering::Release);
        }
    }

    fn statistics(&mut self) {
        if let Some(Err(e)) = crate::stats::write_web_stats(&self.shared) {
            logging::message(&format!("Can't write web stats: {e}"));
        }
        let report = crate::stats::text_report(&self.shared.lock(), sys::now_unix());
        if logging::is_syslog() {
            for line in report.lines() {
                logging::message(line);
            }
        } else {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(report.as_bytes());
            let _ = out.flush();
        }
    }
}
