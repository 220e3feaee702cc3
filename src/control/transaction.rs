//! Running commands as a transaction. Each command is checked and applied
//! to a copy of the balancer state and of the process facts; whatever
//! touches the outside world is prepared (a log file opened, a listener
//! bound, a `write` file written beside its target) and kept as an
//! [`Effect`]. Only when every command of the batch succeeded does
//! [`Transaction::commit`] re-apply the setting changes to the running
//! state, under its lock and without I/O, and install the effects. A batch
//! that fails is dropped: its prepared files and sockets close, and
//! nothing that runs has changed.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use super::command::{escape, invalid, Command, CommandError, ProbeText, ServerSetting};
use super::config;
use super::queries;
use super::settings::mode_line;
use super::Origin;
use crate::addr::{self, Host, ListenAddr, Proto};
use crate::geoip;
use crate::listeners;
use crate::logging;
use crate::request_log;
use crate::runtime::{AcceptorRequest, ProcessInfo, Shared};
use crate::settings::{AcceptProxy, Settings};
use crate::state::servers::{Health, SlotMetrics, Target};
use crate::state::Balancer;

/// Maximum `include` nesting (a file including itself would loop forever).
const MAX_INCLUDE_DEPTH: u32 = 8;

/// The reply to `send_proxy`/`accept_proxy` under `-U`.
const UDP_PROXY: &str = "the PROXY protocol is for TCP; pen runs in UDP mode (-U)";

/// Something a command does outside the balancer state, prepared and
/// waiting for the commit.
enum Effect {
    /// Replace (or with `None`, stop) the request log.
    RequestLog(Option<request_log::Sink>),
    /// Replace the listening socket(s).
    Listen(Vec<OwnedFd>),
    /// Serve the metrics endpoint on this socket, or close it.
    Metrics(Option<OwnedFd>),
    /// Change a process fact (`listen`, `log`, `web_stats` names).
    Info(InfoChange),
    /// `close N`.
    Close(usize),
    /// `exit`.
    Exit,
    /// `drain [SECONDS]`.
    Drain(Option<u64>),
    /// Move a `write` file, complete beside its target, into place.
    Rename(PendingFile),
    /// Write the status page to the `-w` file.
    WebStatsPage { path: PathBuf, html: String },
    /// Put a GeoIP database, read and checked, in use.
    GeoIp(geoip::Loaded),
    /// `no geoip_db`.
    NoGeoIp,
}

#[derive(Clone)]
enum InfoChange {
    Listen { spec: String, from_command: bool },
    LogTarget(Option<String>),
    WebStats(Option<PathBuf>),
    MetricsListen(Option<String>),
    DsrIf(String),
}

impl InfoChange {
    fn apply(&self, info: &mut ProcessInfo) {
        match self {
            InfoChange::Listen { spec, from_command } => {
                info.listen = Some(spec.clone());
                info.listen_from_command |= *from_command;
            }
            InfoChange::LogTarget(t) => info.log_target = t.clone(),
            InfoChange::WebStats(p) => info.web_stats = p.clone(),
            InfoChange::MetricsListen(spec) => info.metrics_listen = spec.clone(),
            InfoChange::DsrIf(name) => info.dsr_if = Some(name.clone()),
        }
    }
}

pub(super) struct Transaction<'a> {
    shared: &'a Shared,
    origin: Origin,
    now: i64,
    /// The balancer as the batch leaves it so far.
    staged: Balancer,
    /// The process facts as the batch leaves them so far.
    info: ProcessInfo,
    /// The setting changes, to re-apply to the running state.
    replay: Vec<Command>,
    effects: Vec<Effect>,
    /// `ssl_*` changes, checked (a new acceptor built) but not installed.
    #[cfg(feature = "tls")]
    tls: Option<crate::tls::TlsChanges>,
}

impl<'a> Transaction<'a> {
    pub(super) fn begin(shared: &'a Shared, origin: Origin) -> Transaction<'a> {
        let staged = shared.lock().clone();
        let info = shared.info().clone();
        Transaction {
            shared,
            origin,
            now: crate::sys::now_unix(),
            staged,
            info,
            replay: Vec::new(),
            effects: Vec::new(),
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// A settings command: applied to the copy now, replayed at the commit.
    fn setting(&mut self, cmd: &Command) -> String {
        let reply = apply_setting(&mut self.staged, cmd, self.now).unwrap_or_default();
        self.replay.push(cmd.clone());
        reply
    }

    fn change_info(&mut self, change: InfoChange) {
        change.apply(&mut self.info);
        self.effects.push(Effect::Info(change));
    }

    /// Checks and stages one command; its reply.
    pub(super) fn run(&mut self, cmd: &Command, depth: u32) -> Result<String, CommandError> {
        if let Command::Flag(f, true) = cmd {
            if f.row().name == "transparent" {
                crate::sys::socket::probe_transparent().map_err(|e| {
                    invalid(format!(
                    "transparent: the kernel refuses IP_TRANSPARENT ({e}); it needs CAP_NET_ADMIN"
                ))
                })?;
            }
        }
        if let Command::Number(n, Some(v)) = cmd {
            if n.row().name == "health_check" && *v > 0 && self.info.udp {
                return Err(invalid(
                    "health_check: health checks are not supported in UDP mode (-U)",
                ));
            }
        }
        let b = &self.staged;
        Ok(match cmd {
            Command::Mode => queries::mode_reply(self.setting(cmd), self.shared),
            Command::Flag(..)
            | Command::Number(..)
            | Command::ConsistentHash
            | Command::ProbeText(..)
            | Command::NoProbeText(_)
            | Command::FastClose(_)
            | Command::SendProxy(None)
            | Command::AcceptProxy(None)
            | Command::Server(..)
            | Command::Acl(..)
            | Command::NoAcl(_)
            | Command::Source(_)
            | Command::NoSource
            | Command::DsrIp(_)
            | Command::Poll => self.setting(cmd),
            Command::DsrIf(name) => self.dsr_if(name.as_deref())?,
            Command::Dsr => queries::dsr_reply(b)?,
            Command::Pid
            | Command::Control
            | Command::Listen(None)
            | Command::Log(None)
            | Command::MetricsListen(None) => {
                queries::info_reply(&self.info, cmd).unwrap_or_default()
            }
            Command::Idlers(n) => {
                if let Some(n) = n {
                    if *n > 0 && self.info.udp {
                        return Err(invalid(
                            "idlers: idle upstream connections are for TCP; pen runs in UDP mode (-U)",
                        ));
                    }
                    self.setting(cmd);
                }
                format!(
                    "Idlers: {}/{}\n",
                    self.shared.idlers.len(),
                    self.staged.settings.idlers
                )
            }
            Command::SendProxy(Some(v)) => {
                if v.is_some() && self.info.udp {
                    return Err(invalid(UDP_PROXY));
                }
                self.setting(cmd)
            }
            Command::AcceptProxy(Some(a)) => {
                if *a != AcceptProxy::Off && self.info.udp {
                    return Err(invalid(UDP_PROXY));
                }
                self.setting(cmd)
            }
            Command::Metrics => crate::metrics::render(self.shared),
            Command::Drain(secs) => {
                if self.origin != Origin::ControlPort {
                    return Err(invalid("drain: only on the control port (or send SIGQUIT)"));
                }
                self.effects.push(Effect::Drain(*secs));
                let secs = secs.unwrap_or(b.settings.drain_timeout);
                format!("draining: exit when the last connection ends, or in {secs} s\n")
            }
            Command::MetricsListen(Some(spec)) => self.metrics_listen(spec)?,
            Command::NoMetricsListen => {
                if self.info.metrics_listen.is_some() {
                    self.effects.push(Effect::Metrics(None));
                    self.change_info(InfoChange::MetricsListen(None));
                }
                String::new()
            }
            Command::Servers => queries::servers_reply(b),
            Command::Health => queries::health_reply(b, self.now),
            Command::Recent(secs) => queries::recent_reply(b, *secs, self.now),
            Command::Connection(n) => queries::connection_reply(b, *n),
            Command::Socket(n) => queries::socket_reply(b, *n),
            Command::Listen(Some(spec)) => self.listen(spec)?,
            Command::Log(Some(target)) => self.log(target)?,
            Command::NoLog => {
                self.effects.push(Effect::RequestLog(None));
                self.change_info(InfoChange::LogTarget(None));
                String::new()
            }
            Command::WebStats(path) => {
                if let Some(p) = path {
                    self.change_info(InfoChange::WebStats(Some(PathBuf::from(p))));
                }
                self.info
                    .web_stats
                    .as_ref()
                    .map(|p| format!("{}\n", p.display()))
                    .unwrap_or_default()
            }
            Command::NoWebStats => {
                self.change_info(InfoChange::WebStats(None));
                String::new()
            }
            // Unlike pen, the page is returned even without `-w`.
            Command::Status => {
                let html = crate::stats::html_report(b, self.now);
                if let Some(path) = self.info.web_stats.clone() {
                    self.effects.push(Effect::WebStatsPage {
                        path,
                        html: html.clone(),
                    });
                }
                html
            }
            Command::Close(n) => {
                if *n < 0 || *n as usize >= b.conns.capacity() {
                    return Ok(format!("Connection {n} out of range\n"));
                }
                if b.conns.get(*n as usize).is_none() {
                    // pen "closes" unused slots and corrupts its counter
                    // (doc/pen-0.34.1.md, quirk Q16).
                    return Err(invalid(format!("close: connection {n} is not in use")));
                }
                self.effects.push(Effect::Close(*n as usize));
                format!("Forcibly closing connection {n}\n")
            }
            Command::Exit => {
                if !self.info.exit_enabled {
                    return Ok("Exit is not enabled; restart with -X flag\n".into());
                }
                self.effects.push(Effect::Exit);
                String::new()
            }
            Command::Include(path) => self.include(path, depth)?,
            Command::Write(path) => self.write(path.as_deref())?,
            Command::Tls(name, args) => self.tls(name, args)?,
            Command::GeoipDb(Some(path)) => {
                let loaded = geoip::load(path, true)
                    .map_err(|e| invalid(format!("geoip_db {}: {e}", path.display())))?;
                self.install_geoip(loaded);
                String::new()
            }
            Command::GeoipDb(None) => queries::geoip_reply(&b.geoip),
            Command::NoGeoipDb => {
                self.staged.geoip.clear();
                self.effects.push(Effect::NoGeoIp);
                String::new()
            }
            Command::Country(ip) => {
                self.ensure_geoip()
                    .map_err(|e| invalid(format!("country: {e}")))?;
                queries::country_reply(&self.staged.geoip, *ip)
            }
        })
    }

    fn install_geoip(&mut self, loaded: geoip::Loaded) {
        self.staged.geoip.install(loaded.clone());
        self.effects.push(Effect::GeoIp(loaded));
    }

    /// With no database loaded yet, loads Debian's default files that
    /// exist (as Debian's pen does); an error if there is still none.
    fn ensure_geoip(&mut self) -> Result<(), String> {
        if !self.staged.geoip.is_empty() {
            return Ok(());
        }
        if self.staged.geoip.no_defaults {
            return Err("no GeoIP database (no geoip_db is in effect)".into());
        }
        let mut why = Vec::new();
        for path in [geoip::DEFAULT_V4, geoip::DEFAULT_V6] {
            match geoip::load(Path::new(path), false) {
                Ok(loaded) => self.install_geoip(loaded),
                Err(e) => why.push(format!("{path}: {e}")),
            }
        }
        if self.staged.geoip.is_empty() {
            return Err(format!(
                "no GeoIP database; load one with geoip_db PATH ({})",
                why.join("; ")
            ));
        }
        Ok(())
    }

    /// Checks what only the whole batch decides: country ACL entries need
    /// a database (given by any line of the batch, or Debian's default).
    pub(super) fn finish(&mut self) -> Result<(), CommandError> {
        if let Some(n) = self.staged.acls.first_with_country() {
            self.ensure_geoip()
                .map_err(|e| invalid(format!("acl {n}: country entries never match: {e}")))?;
        }
        Ok(())
    }

    /// `listen ADDR`: at start-up it names the listener (and the first
    /// positional argument is then not a backend, as in pen); at run time
    /// the new listener is bound now and replaces the old one at the
    /// commit. Unlike pen, a bind failure keeps the old listener.
    fn listen(&mut self, spec: &str) -> Result<String, CommandError> {
        let udp = self.info.udp;
        let proto = if udp { Proto::Udp } else { Proto::Tcp };
        let addr: ListenAddr =
            addr::parse_listen(spec, proto).map_err(|e| invalid(format!("listen: {e}")))?;
        if self.origin != Origin::Startup {
            if self.shared.draining() {
                return Err(invalid(
                    "listen: pen is draining; its listeners stay closed",
                ));
            }
            if udp {
                return Err(invalid(
                    "listen: changing the UDP listener at run time is not supported; restart pen",
                ));
            }
            if self.info.dsr_if.is_some() {
                return Err(invalid(
                    "listen: in direct server return mode the VIP is set at start-up; restart pen",
                ));
            }
            let backlog = self.staged.settings.listen_queue;
            let fd = listeners::open(&addr, false, backlog)
                .map_err(|e| invalid(listeners::bind_error(spec, &e)))?;
            self.effects.push(Effect::Listen(vec![fd]));
        }
        self.change_info(InfoChange::Listen {
            spec: spec.to_string(),
            from_command: self.origin == Origin::Startup,
        });
        Ok(format!("{spec}\n"))
    }

    /// `dsr_if [IFNAME]`: names the interface at start-up (pen opens it
    /// with the listeners). At run time only the interface in use is
    /// taken, as a no-op, so that a `write` file can be read back on
    /// SIGHUP; pen 0.34.1 crashed (doc/pen-0.34.1.md, quirk Q11).
    fn dsr_if(&mut self, name: Option<&str>) -> Result<String, CommandError> {
        let Some(name) = name else {
            return Ok(self
                .info
                .dsr_if
                .as_ref()
                .map(|i| format!("{i}\n"))
                .unwrap_or_default());
        };
        if self.origin == Origin::Startup {
            self.change_info(InfoChange::DsrIf(name.to_string()));
        } else if self.info.dsr_if.as_deref() != Some(name) {
            return Err(invalid(
                "dsr_if: direct server return is set up at start-up only; restart pen to change it",
            ));
        }
        Ok(String::new())
    }

    /// `metrics_listen [HOST:]PORT`: the endpoint is bound now (at start-up
    /// too, before privileges are dropped) and served from the commit on.
    /// The address it already serves is kept as it is, so that a reload
    /// of the same file does not try to bind it twice.
    fn metrics_listen(&mut self, spec: &str) -> Result<String, CommandError> {
        let addr = addr::parse_listen(spec, Proto::Tcp)
            .map_err(|e| invalid(format!("metrics_listen: {e}")))?;
        if self.info.metrics_listen.as_deref() != Some(spec) {
            let backlog = self.staged.settings.listen_queue;
            let inherited = (self.origin == Origin::Startup)
                .then(|| {
                    self.shared
                        .inherited_metrics
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .take()
                })
                .flatten();
            let opened = match inherited {
                Some(fd) => Ok(fd),
                None => listeners::open(&addr, false, backlog),
            };
            let fd = opened.map_err(|e| {
                invalid(format!(
                    "metrics_listen: {}",
                    listeners::bind_error(spec, &e)
                ))
            })?;
            self.effects.push(Effect::Metrics(Some(fd)));
            self.change_info(InfoChange::MetricsListen(Some(spec.to_string())));
        }
        Ok(format!("{spec}\n"))
    }

    /// `log TARGET`. At start-up the target is only recorded: it is opened
    /// after chroot and the privilege drop, as pen does.
    fn log(&mut self, target: &str) -> Result<String, CommandError> {
        if self.origin != Origin::Startup {
            let sink = request_log::open(target).map_err(CommandError::Invalid)?;
            self.effects.push(Effect::RequestLog(Some(sink)));
        }
        self.change_info(InfoChange::LogTarget(Some(target.to_string())));
        Ok(format!("{target}\n"))
    }

    fn include(&mut self, path: &Path, depth: u32) -> Result<String, CommandError> {
        if depth >= MAX_INCLUDE_DEPTH {
            return Err(invalid(format!(
                "include {}: nested too deeply",
                path.display()
            )));
        }
        let text = config::read_file(path)
            .and_then(|b| {
                String::from_utf8(b)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
            })
            .map_err(|e| invalid(format!("include: can't read {}: {e}", path.display())))?;
        let mut out = String::new();
        for (i, line) in text.lines().enumerate() {
            let at = |e: CommandError| invalid(format!("{}:{}: {}", path.display(), i + 1, e));
            if let Some(c) = super::parse(line).map_err(at)? {
                out.push_str(&self.run(&c, depth + 1)?);
            }
        }
        Ok(out)
    }

    /// `write [FILE]`: the file is written beside its target now, from the
    /// state as the batch leaves it, and renamed into place at the commit.
    fn write(&mut self, path: Option<&Path>) -> Result<String, CommandError> {
        let target = match path {
            Some(p) => p.to_path_buf(),
            None => self
                .info
                .config_file
                .clone()
                .ok_or_else(|| invalid("write: no file given and no -F file"))?,
        };
        let text = config::render(&self.staged, &self.info, &target);
        let tmp = target.with_extension("pen-tmp");
        std::fs::write(&tmp, text).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            invalid(format!("write: can't write {}: {e}", target.display()))
        })?;
        self.effects.push(Effect::Rename(PendingFile {
            tmp: Some(tmp),
            target,
        }));
        Ok(String::new())
    }

    #[cfg(not(feature = "tls"))]
    fn tls(&mut self, name: &str, _args: &[String]) -> Result<String, CommandError> {
        Err(invalid(format!(
            "{name}: this pen was built without TLS support; rebuild with `make TLS=1`"
        )))
    }

    #[cfg(feature = "tls")]
    fn tls(&mut self, name: &str, args: &[String]) -> Result<String, CommandError> {
        let command = super::command::parse_tls_command(name, args)?;
        let tls = &self.shared.tls_state;
        let changes = self.tls.get_or_insert_with(|| tls.begin());
        tls.stage(changes, &command)
            .map_err(|e| invalid(e.to_string()))?;
        Ok(String::new())
    }

    /// Makes the whole batch take effect.
    pub(super) fn commit(self) {
        let Transaction {
            shared,
            now,
            replay,
            effects,
            #[cfg(feature = "tls")]
            tls,
            ..
        } = self;
        #[cfg(feature = "tls")]
        if let Some(changes) = tls {
            shared.tls_state.commit(changes);
        }
        if !replay.is_empty() {
            let mut b = shared.lock();
            for cmd in &replay {
                apply_setting(&mut b, cmd, now);
            }
            logging::set_level(b.settings.debug);
            shared.sync_limits(&b);
        }
        shared.wake_dsr();
        crate::health::start_if_enabled(shared);
        crate::idlers::start_if_wanted(shared);
        // A server or setting may have changed: the idlers follow.
        shared.idlers.wake();
        for effect in effects {
            match effect {
                Effect::RequestLog(sink) => request_log::install(sink),
                Effect::Listen(fds) => shared.request(AcceptorRequest::Listen(fds)),
                Effect::Metrics(fd) => shared.request(AcceptorRequest::Metrics(fd)),
                Effect::Info(change) => change.apply(&mut shared.info()),
                Effect::Close(n) => close_connection(shared, n),
                Effect::Exit => shared.request(AcceptorRequest::Exit),
                Effect::Drain(secs) => shared.request(AcceptorRequest::Drain(secs)),
                Effect::Rename(file) => file.move_into_place(),
                Effect::GeoIp(loaded) => shared.lock().geoip.install(loaded),
                Effect::NoGeoIp => shared.lock().geoip.clear(),
                Effect::WebStatsPage { path, html } => {
                    if let Err(e) = crate::stats::write_atomically(&path, &html) {
                        logging::message(&format!("Can't write to {}: {e}", path.display()));
                    }
                }
            }
        }
    }
}

/// A `write` file complete beside its target; removed if the batch fails.
struct PendingFile {
    tmp: Option<PathBuf>,
    target: PathBuf,
}

impl PendingFile {
    fn move_into_place(mut self) {
        let Some(tmp) = self.tmp.take() else { return };
        if let Err(e) = std::fs::rename(&tmp, &self.target) {
            let _ = std::fs::remove_file(&tmp);
            logging::message(&format!(
                "write: can't write {}: {e}",
                self.target.display()
            ));
        }
    }
}

impl Drop for PendingFile {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

/// `close N`: shuts the pair's sockets down; its thread then ends it.
fn close_connection(shared: &Shared, n: usize) {
    let b = shared.lock();
    if let Some(c) = b.conns.get(n) {
        c.pair.shut_down();
    }
}

/// The setting a `health_check_send`/`health_check_expect` command changes.
fn probe_text(s: &mut Settings, kind: ProbeText) -> &mut Option<String> {
    match kind {
        ProbeText::Send => &mut s.health_check_send,
        ProbeText::Expect => &mut s.health_check_expect,
    }
}

/// Applies `server N ...` settings to the table.
fn apply_server(b: &mut Balancer, n: usize, settings: &[ServerSetting], now: i64) {
    let slot = b.servers.ensure_slot(n);
    let was = (slot.host.clone(), slot.port);
    for s in settings {
        let t = Target::Backend(n);
        if let ServerSetting::Blacklist(secs) = s {
            b.blacklist_for(t, *secs, now);
            continue;
        }
        let slot = &mut b.servers.backends[n];
        match s {
            ServerSetting::Acl(a) => slot.acl = *a,
            ServerSetting::Address(h) => {
                if matches!(h, Host::Unix(_)) {
                    slot.port = addr::UNIX_BACKEND_PORT;
                }
                slot.host = h.clone();
                // Another server: what the probes knew was about the old one.
                slot.health = Health::default();
            }
            ServerSetting::Port(p) => {
                if !matches!(slot.host, Host::Unix(_)) {
                    slot.port = *p;
                    slot.health = Health::default();
                }
            }
            ServerSetting::Max(m) => slot.max_conns = *m,
            ServerSetting::Hard(h) => slot.hard_limit = *h,
            ServerSetting::Weight(w) => slot.weight = *w,
            ServerSetting::Prio(p) => slot.prio = *p,
            ServerSetting::Blacklist(_) => {}
        }
    }
    // A slot given another address is another server to the metrics: it
    // starts a new label set, counting from zero.
    let slot = &b.servers.backends[n];
    if (&slot.host, slot.port) != (&was.0, was.1) {
        let live = crate::stats::live_by_server(b)[n];
        let slot = &mut b.servers.backends[n];
        let (sent, received) = crate::metrics::slot_totals(slot, live);
        slot.metrics = SlotMetrics {
            sent_base: sent,
            received_base: received,
            ..SlotMetrics::default()
        };
    }
}

/// Applies a command that only changes (or reads) the balancer state and
/// returns its reply; `None` for a command that needs the process. Pure:
/// a commit re-applies exactly these to the running state.
pub fn apply_setting(b: &mut Balancer, cmd: &Command, now: i64) -> Option<String> {
    Some(match cmd {
        Command::Flag(f, on) => {
            (f.row().set)(&mut b.settings, *on);
            String::new()
        }
        Command::Number(n, v) => {
            let row = n.row();
            if let Some(v) = *v {
                (row.set)(b, v);
            }
            (row.reply)((row.get)(b))
        }
        Command::ConsistentHash => {
            b.settings.hash = true;
            b.settings.consistent_hash = true;
            String::new()
        }
        Command::ProbeText(kind, text) => {
            let slot = probe_text(&mut b.settings, *kind);
            if let Some(t) = text {
                *slot = Some(t.clone());
            }
            slot.as_deref()
                .map(|t| format!("{}\n", escape(t)))
                .unwrap_or_default()
        }
        Command::NoProbeText(kind) => {
            *probe_text(&mut b.settings, *kind) = None;
            String::new()
        }
        Command::FastClose(fc) => {
            b.settings.fastclose = *fc;
            String::new()
        }
        Command::SendProxy(Some(v)) => {
            b.settings.send_proxy = *v;
            String::new()
        }
        Command::SendProxy(None) => {
            format!("{}\n", b.settings.send_proxy.map_or("off", |v| v.name()))
        }
        Command::AcceptProxy(Some(a)) => {
            b.settings.accept_proxy = *a;
            String::new()
        }
        Command::AcceptProxy(None) => format!(
            "{}\nrefused {}\n",
            b.settings.accept_proxy.words(),
            b.proxy_refused
        ),
        Command::Mode => mode_line(&b.settings),
        Command::Server(n, settings) => {
            apply_server(b, *n, settings, now);
            String::new()
        }
        Command::Acl(n, e) => {
            if let Some(a) = b.acls.get_mut(*n) {
                a.push(*e);
            }
            String::new()
        }
        Command::NoAcl(n) => {
            if let Some(a) = b.acls.get_mut(*n) {
                a.clear();
            }
            String::new()
        }
        Command::Source(ip) => {
            b.settings.source = Some(*ip);
            String::new()
        }
        Command::NoSource => {
            b.settings.source = None;
            String::new()
        }
        Command::Idlers(n) => {
            if let Some(n) = n {
                b.settings.idlers = *n;
            }
            String::new()
        }
        Command::DsrIp(ip) => {
            if let Some(ip) = ip {
                b.settings.dsr_ip = Some(*ip);
            }
            b.settings
                .dsr_ip
                .map(|ip| format!("{ip}\n"))
                .unwrap_or_default()
        }
        Command::Poll => String::new(),
        Command::Servers
        | Command::DsrIf(_)
        | Command::Dsr
        | Command::Health
        | Command::Recent(_)
        | Command::Connection(_)
        | Command::Socket(_)
        | Command::Pid
        | Command::Control
        | Command::Listen(_)
        | Command::Log(_)
        | Command::NoLog
        | Command::WebStats(_)
        | Command::NoWebStats
        | Command::Status
        | Command::Close(_)
        | Command::Exit
        | Command::Include(_)
        | Command::Write(_)
        | Command::Metrics
        | Command::Drain(_)
        | Command::MetricsListen(_)
        | Command::NoMetricsListen
        | Command::Tls(..)
        | Command::GeoipDb(_)
        | Command::NoGeoipDb
        | Command::Country(_) => return None,
    })
}
