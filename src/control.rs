//! penctl-format commands (spec control.md §4): one parser and one executor
//! for `-o`/`-O`, the `-F` file (and `include`), SIGHUP reloads and the
//! control port.
//!
//! Differences from pen 0.34.1: arguments must be well-formed (pen's `atoi`
//! turned "abc" into 0); a command pen accepts but ignores or crashes on
//! (`idlers N`, `dummy`, `peek`, `dsr_if`, `tarpit_acl N` for N >= 0, `block`,
//! `delayed_forward`, a missing argument) gets an error reply instead; error
//! replies are one line starting with `error: `.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use crate::acl::{self, AclEntry};
use crate::addr::{self, Host, Proto};
use crate::balancer::Balancer;
use crate::servers::Target;
use crate::settings::FastClose;

/// A parsed command.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// A mode flag (`hash`, `no hash`, ...).
    Flag(Flag, bool),
    /// A numeric setting; `None` queries it.
    Number(Numeric, Option<i64>),
    FastClose(FastClose),
    PendingMax(Option<i64>),
    Mode,
    Servers,
    Recent(i64),
    Connection(i64),
    Socket(i64),
    Pid,
    Control,
    Listen(Option<String>),
    Log(Option<String>),
    NoLog,
    WebStats(Option<String>),
    NoWebStats,
    Status,
    Server(usize, Vec<ServerSetting>),
    Acl(usize, AclEntry),
    NoAcl(usize),
    Close(i64),
    Exit,
    Include(PathBuf),
    Write(Option<PathBuf>),
    Source(IpAddr),
    NoSource,
    Idlers,
    TarpitAcl,
    /// Event back-end choice: `poll` (what we always use).
    Poll,
    /// TLS settings (`ssl_*`), kept as words; applied by the TLS layer.
    Tls(String, Vec<String>),
}

/// Boolean settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flag {
    Hash,
    Roundrobin,
    Stubborn,
    Weight,
    Prio,
    Http,
    Ascii,
    TcpNodelay,
    Keepalive,
    Transparent,
    AbortOnError,
}

impl Flag {
    fn from_word(w: &str) -> Option<Flag> {
        Some(match w {
            "hash" => Flag::Hash,
            "roundrobin" => Flag::Roundrobin,
            "stubborn" => Flag::Stubborn,
            "weight" => Flag::Weight,
            "prio" => Flag::Prio,
            "http" => Flag::Http,
            "ascii" => Flag::Ascii,
            "tcp_nodelay" => Flag::TcpNodelay,
            "keepalive" => Flag::Keepalive,
            "transparent" => Flag::Transparent,
            "abort_on_error" => Flag::AbortOnError,
            _ => return None,
        })
    }

    fn get(self, b: &Balancer) -> bool {
        let s = &b.settings;
        match self {
            Flag::Hash => s.hash,
            Flag::Roundrobin => s.roundrobin,
            Flag::Stubborn => s.stubborn,
            Flag::Weight => s.weight,
            Flag::Prio => s.prio,
            Flag::Http => s.http,
            Flag::Ascii => s.ascii,
            Flag::TcpNodelay => s.tcp_nodelay,
            Flag::Keepalive => s.keepalive,
            Flag::Transparent => s.transparent,
            Flag::AbortOnError => s.abort_on_error,
        }
    }

    fn set(self, b: &mut Balancer, on: bool) {
        let s = &mut b.settings;
        let field = match self {
            Flag::Hash => &mut s.hash,
            Flag::Roundrobin => &mut s.roundrobin,
            Flag::Stubborn => &mut s.stubborn,
            Flag::Weight => &mut s.weight,
            Flag::Prio => &mut s.prio,
            Flag::Http => &mut s.http,
            Flag::Ascii => &mut s.ascii,
            Flag::TcpNodelay => &mut s.tcp_nodelay,
            Flag::Keepalive => &mut s.keepalive,
            Flag::Transparent => &mut s.transparent,
            Flag::AbortOnError => &mut s.abort_on_error,
        };
        *field = on;
    }
}

/// Numeric settings whose reply is the current value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Numeric {
    Blacklist,
    Timeout,
    Tracking,
    Debug,
    ClientsMax,
    ConnMax,
    ClientAcl,
    ControlAcl,
    IdleTimeout,
    MultiAccept,
    ListenQueue,
}

impl Numeric {
    fn from_word(w: &str) -> Option<Numeric> {
        Some(match w {
            "blacklist" => Numeric::Blacklist,
            "timeout" => Numeric::Timeout,
            "tracking" => Numeric::Tracking,
            "debug" => Numeric::Debug,
            "clients_max" => Numeric::ClientsMax,
            "conn_max" => Numeric::ConnMax,
            "client_acl" => Numeric::ClientAcl,
            "control_acl" => Numeric::ControlAcl,
            "idle_timeout" => Numeric::IdleTimeout,
            "multi_accept" => Numeric::MultiAccept,
            "listen_queue" => Numeric::ListenQueue,
            _ => return None,
        })
    }

    /// The smallest accepted value.
    fn min(self) -> i64 {
        match self {
            Numeric::Timeout | Numeric::ClientsMax | Numeric::ConnMax | Numeric::MultiAccept => 1,
            Numeric::ListenQueue => 50,
            _ => 0,
        }
    }

    fn max(self) -> i64 {
        match self {
            Numeric::ClientAcl | Numeric::ControlAcl => (acl::ACL_COUNT - 1) as i64,
            Numeric::ClientsMax | Numeric::ConnMax => 1 << 24,
            _ => i32::MAX as i64,
        }
    }
}

/// One `KEY VALUE` of `server N ...`.
#[derive(Clone, Debug, PartialEq)]
pub enum ServerSetting {
    Acl(usize),
    Address(Host),
    Port(u16),
    Max(u32),
    Hard(u32),
    Weight(u32),
    Prio(u32),
    Blacklist(i64),
}

/// A command that could not be parsed or carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandError {
    /// pen's reply for an unknown first word.
    Unknown(String),
    Invalid(String),
    /// A reply pen sends as it is (some without a newline, quirks.md Q31).
    Verbatim(String),
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Unknown(w) => write!(f, "do_cmd: ignoring command starting with '{w}'"),
            CommandError::Invalid(m) | CommandError::Verbatim(m) => write!(f, "{}", m.trim_end()),
        }
    }
}

impl std::error::Error for CommandError {}

impl CommandError {
    /// The bytes sent back on the control port.
    pub fn reply(&self) -> String {
        match self {
            CommandError::Unknown(_) => format!("{self}\n"),
            CommandError::Invalid(m) => format!("error: {m}\n"),
            CommandError::Verbatim(m) => m.clone(),
        }
    }
}

fn invalid(m: impl Into<String>) -> CommandError {
    CommandError::Invalid(m.into())
}

fn int(cmd: &str, w: &str) -> Result<i64, CommandError> {
    w.parse::<i64>()
        .map_err(|_| invalid(format!("{cmd}: '{w}' is not a whole number")))
}

fn int_in(cmd: &str, w: &str, min: i64, max: i64) -> Result<i64, CommandError> {
    let n = int(cmd, w)?;
    if n < min || n > max {
        return Err(invalid(format!(
            "{cmd}: {n} is out of range ({min}..{max})"
        )));
    }
    Ok(n)
}

fn u32_arg(cmd: &str, w: &str) -> Result<u32, CommandError> {
    Ok(int_in(cmd, w, 0, u32::MAX as i64)? as u32)
}

/// The first line of `input`, cut at the first CR or LF (spec control.md §2).
pub fn first_line(input: &str) -> &str {
    let end = input.find(['\r', '\n']).unwrap_or(input.len());
    &input[..end]
}

/// Splits on spaces only (runs collapsed), as pen does; TAB is not a separator.
pub fn words(line: &str) -> Vec<&str> {
    line.split(' ').filter(|w| !w.is_empty()).collect()
}

const NOT_IMPLEMENTED: &[(&str, &str)] = &[
    ("block", "pen 0.34.1 lists it but never implemented it"),
    (
        "delayed_forward",
        "pen 0.34.1 lists it but never implemented it",
    ),
    ("dummy", "the built-in dummy responder is not supported"),
    ("peek", "pen 0.34.1 never finished this feature"),
    ("dsr_if", "direct server return (DSR) is not supported"),
    ("dsr_ip", "direct server return (DSR) is not supported"),
    ("select", "this pen always uses poll()"),
    ("epoll", "this pen always uses poll()"),
    ("kqueue", "You don't have kqueue"),
];

/// Parses one line; `Ok(None)` for empty lines and comments.
pub fn parse(line: &str) -> Result<Option<Command>, CommandError> {
    let w = words(first_line(line));
    let Some(&first) = w.first() else {
        return Ok(None);
    };
    if first.starts_with('#') {
        return Ok(None);
    }
    let arg = w.get(1).copied();
    if let Some(f) = Flag::from_word(first) {
        return Ok(Some(Command::Flag(f, true)));
    }
    if let Some(n) = Numeric::from_word(first) {
        let v = match arg {
            None => None,
            Some(a) => Some(int_in(first, a, n.min(), n.max())?),
        };
        return Ok(Some(Command::Number(n, v)));
    }
    if let Some((_, why)) = NOT_IMPLEMENTED.iter().find(|(c, _)| *c == first) {
        return Err(invalid(format!("{first}: {why}")));
    }
    let need = |what: &str| arg.ok_or_else(|| invalid(format!("{first}: missing {what}")));
    let cmd = match first {
        "no" => return parse_no(&w[1..]),
        "mode" => Command::Mode,
        "servers" => Command::Servers,
        "recent" => Command::Recent(match arg {
            Some(a) => int_in(first, a, 0, i64::MAX)?,
            None => 300,
        }),
        "connection" => Command::Connection(int(first, need("connection number")?)?),
        "socket" => Command::Socket(int(first, need("socket number")?)?),
        "pid" => Command::Pid,
        "control" => Command::Control,
        "listen" => Command::Listen(arg.map(String::from)),
        "log" => Command::Log(arg.map(String::from)),
        "web_stats" => Command::WebStats(arg.map(String::from)),
        "status" => Command::Status,
        "close" => Command::Close(int(first, need("connection number")?)?),
        "exit" => Command::Exit,
        "include" => Command::Include(PathBuf::from(need("file name")?)),
        "write" => Command::Write(arg.map(PathBuf::from)),
        "source" => {
            let a = need("address")?;
            match addr::resolve_host(a) {
                Ok(ip) => Command::Source(ip),
                // pen's exact reply, without a newline (quirks.md Q31).
                Err(_) => {
                    return Err(CommandError::Verbatim(format!(
                        "unable to set source address to '{a}'"
                    )))
                }
            }
        }
        "tcp_fastclose" => match arg {
            None => {
                return Err(CommandError::Verbatim(
                    "do_cmd: ignoring tcp_fastclose without argument\n".into(),
                ))
            }
            Some("up") => Command::FastClose(FastClose::Up),
            Some("down") => Command::FastClose(FastClose::Down),
            Some("both") => Command::FastClose(FastClose::Both),
            Some(_) => Command::FastClose(FastClose::Off),
        },
        "pending_max" => Command::PendingMax(match arg {
            Some(a) => Some(int_in(first, a, i64::MIN, i32::MAX as i64)?.max(1)),
            None => None,
        }),
        "idlers" => match arg {
            None => Command::Idlers,
            Some(a) if int(first, a)? <= 0 => Command::Idlers,
            Some(_) => {
                return Err(invalid(
                    "idlers: pre-connected idle connections are not supported",
                ))
            }
        },
        "tarpit_acl" => match arg {
            // -1, the default, switches tarpitting off: nothing to refuse.
            None | Some("-1") => Command::TarpitAcl,
            Some(_) => return Err(invalid(
                "tarpit_acl: tarpitting needs direct server return (DSR), which is not supported",
            )),
        },
        "poll" => Command::Poll,
        "server" => parse_server(&w[1..])?,
        "acl" => {
            let n =
                acl::parse_acl_number(need("ACL number")?).map_err(|e| invalid(e.to_string()))?;
            let entry = acl::parse_entry(&w[2..]).map_err(|e| invalid(e.to_string()))?;
            Command::Acl(n, entry)
        }
        w0 if w0.starts_with("ssl_") => {
            let args: Vec<String> = w[1..].iter().map(|s| s.to_string()).collect();
            // Checked now, so that a bad line in a file changes nothing.
            #[cfg(feature = "tls")]
            parse_tls_command(w0, &args)?;
            Command::Tls(w0.to_string(), args)
        }
        _ => return Err(CommandError::Unknown(first.to_string())),
    };
    Ok(Some(cmd))
}

fn parse_no(w: &[&str]) -> Result<Option<Command>, CommandError> {
    let Some(&what) = w.first() else {
        return Err(invalid("no: missing setting name"));
    };
    if let Some(f) = Flag::from_word(what) {
        return Ok(Some(Command::Flag(f, false)));
    }
    if let Some((_, why)) = NOT_IMPLEMENTED.iter().find(|(c, _)| *c == what) {
        return Err(invalid(format!("no {what}: {why}")));
    }
    Ok(Some(match what {
        "log" => Command::NoLog,
        "web_stats" => Command::NoWebStats,
        "source" => Command::NoSource,
        "acl" => {
            let n = w
                .get(1)
                .ok_or_else(|| invalid("no acl: missing ACL number"))?;
            Command::NoAcl(acl::parse_acl_number(n).map_err(|e| invalid(e.to_string()))?)
        }
        _ => return Err(CommandError::Unknown(format!("no {what}"))),
    }))
}

fn parse_server(w: &[&str]) -> Result<Command, CommandError> {
    let n = w
        .first()
        .ok_or_else(|| invalid("server: missing server number"))?;
    let n = int_in("server", n, 0, 65535)? as usize;
    let mut settings = Vec::new();
    let mut rest = &w[1..];
    while !rest.is_empty() {
        let key = rest[0];
        let v = rest
            .get(1)
            .copied()
            .ok_or_else(|| invalid(format!("server {n}: missing value for '{key}'")))?;
        let s = match key {
            "acl" => {
                ServerSetting::Acl(acl::parse_acl_number(v).map_err(|e| invalid(e.to_string()))?)
            }
            "address" => ServerSetting::Address(
                addr::parse_host(v).map_err(|e| invalid(format!("server {n}: {e}")))?,
            ),
            "port" => ServerSetting::Port(
                addr::parse_port(v, Proto::Tcp).map_err(|e| invalid(format!("server {n}: {e}")))?,
            ),
            "max" => ServerSetting::Max(u32_arg("server max", v)?),
            "hard" => ServerSetting::Hard(u32_arg("server hard", v)?),
            "weight" => ServerSetting::Weight(u32_arg("server weight", v)?),
            "prio" => ServerSetting::Prio(u32_arg("server prio", v)?),
            "blacklist" => ServerSetting::Blacklist(int("server blacklist", v)?),
            other => return Err(invalid(format!("server {n}: unknown setting '{other}'"))),
        };
        settings.push(s);
        rest = &rest[2..];
    }
    Ok(Command::Server(n, settings))
}

/// Applies `server N ...` settings to the table.
pub fn apply_server(b: &mut Balancer, n: usize, settings: &[ServerSetting], now: i64) {
    b.servers.ensure_slot(n);
    for s in settings {
        let t = Target::Backend(n);
        match s {
            ServerSetting::Blacklist(secs) => b.blacklist_for(t, *secs, now),
            _ => {
                let slot = &mut b.servers.backends[n];
                match s {
                    ServerSetting::Acl(a) => slot.acl = *a,
                    ServerSetting::Address(h) => {
                        if matches!(h, Host::Unix(_)) {
                            slot.port = addr::UNIX_BACKEND_PORT;
                        }
                        slot.host = h.clone();
                    }
                    ServerSetting::Port(p) => {
                        if !matches!(slot.host, Host::Unix(_)) {
                            slot.port = *p;
                        }
                    }
                    ServerSetting::Max(m) => slot.max_conns = *m,
                    ServerSetting::Hard(h) => slot.hard_limit = *h,
                    ServerSetting::Weight(w) => slot.weight = *w,
                    ServerSetting::Prio(p) => slot.prio = *p,
                    ServerSetting::Blacklist(_) => {}
                }
            }
        }
    }
}

/// The `mode` reply (spec control.md §4.1).
pub fn mode_line(b: &Balancer) -> String {
    let s = &b.settings;
    let f = |on: bool, name: &str| {
        if on {
            name.to_string()
        } else {
            format!("no {name}")
        }
    };
    format!(
        "{} {} {} {} {}\n",
        f(s.hash, "hash"),
        f(s.roundrobin, "roundrobin"),
        f(s.stubborn, "stubborn"),
        f(s.weight, "weight"),
        f(s.prio, "prio")
    )
}

/// Applies a settings-only command to the balancer state and returns its
/// reply; `None` when the command needs the runtime (sockets, files).
pub fn apply_setting(b: &mut Balancer, cmd: &Command, now: i64) -> Option<String> {
    Some(match cmd {
        Command::Flag(f, on) => {
            f.set(b, *on);
            String::new()
        }
        Command::Number(n, v) => {
            let s = &mut b.settings;
            if let Some(v) = *v {
                match n {
                    Numeric::Blacklist => s.blacklist_time = v,
                    Numeric::Timeout => s.connect_timeout = v,
                    Numeric::Tracking => s.tracking_time = v,
                    Numeric::Debug => {
                        s.debug = v as u32;
                        crate::logging::set_level(v as u32);
                    }
                    Numeric::ClientsMax if !b.running => b.clients.set_capacity(v as usize),
                    Numeric::ConnMax if !b.running => b.conns.set_capacity(v as usize),
                    Numeric::ClientsMax => b.clients.grow(v as usize),
                    Numeric::ConnMax => b.conns.grow(v as usize),
                    Numeric::ClientAcl => s.client_acl = v as usize,
                    Numeric::ControlAcl => s.control_acl = v as usize,
                    Numeric::IdleTimeout => s.idle_timeout = v as u64,
                    Numeric::MultiAccept => s.multi_accept = v as usize,
                    Numeric::ListenQueue => s.listen_queue = v as i32,
                }
            }
            let s = &b.settings;
            match n {
                Numeric::Blacklist => format!("{}\n", s.blacklist_time),
                Numeric::Timeout => format!("{}\n", s.connect_timeout),
                Numeric::Tracking => format!("{}\n", s.tracking_time),
                Numeric::Debug => format!("{}\n", s.debug),
                Numeric::ClientsMax => format!("{}\n", b.clients.capacity()),
                Numeric::ConnMax => format!("{}\n", b.conns.capacity()),
                Numeric::ClientAcl => format!("{}\n", s.client_acl),
                Numeric::ControlAcl => format!("{}\n", s.control_acl),
                Numeric::IdleTimeout => format!("Idle timeout: {} seconds\n", s.idle_timeout),
                Numeric::MultiAccept => format!("{}\n", s.multi_accept),
                Numeric::ListenQueue => format!("{}\n", s.listen_queue),
            }
        }
        Command::FastClose(fc) => {
            b.settings.fastclose = *fc;
            String::new()
        }
        Command::PendingMax(v) => {
            if let Some(v) = v {
                b.settings.pending_max = *v as usize;
            }
            String::new()
        }
        Command::Mode => mode_line(b),
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
        Command::Idlers => "Idlers: 0/0\n".to_string(),
        Command::TarpitAcl => "tarpit_acl = -1".to_string(),
        Command::Poll => String::new(),
        _ => return None,
    })
}

/// Whether a flag is on (for `write`).
pub fn flag_on(b: &Balancer, f: Flag) -> bool {
    f.get(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(b: &mut Balancer, line: &str) -> String {
        let cmd = parse(line).unwrap().unwrap();
        apply_setting(b, &cmd, 1000).unwrap()
    }

    /// Random lines of words from the command vocabulary, numbers and
    /// junk: parsing must never panic, and settings-only commands must
    /// apply without panicking either. (No `address`/`source`: their
    /// arguments would be resolved as host names.)
    #[test]
    fn random_lines_never_panic() {
        let vocab = [
            "server",
            "acl",
            "no",
            "permit",
            "deny",
            "port",
            "max",
            "hard",
            "weight",
            "prio",
            "blacklist",
            "listen",
            "log",
            "write",
            "include",
            "close",
            "connection",
            "tcp_fastclose",
            "idlers",
            "ssl_option",
            "country",
            "-1",
            "0",
            "9",
            "99999999999999999999",
            "127.0.0.1",
            "::1/200",
            "255.255.255.0",
            "\u{0}",
            "\u{fffd}",
            "up",
            "both",
            "mode",
            "hash",
            "timeout",
            "clients_max",
            "conn_max",
            "#",
            "",
        ];
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut b = Balancer::default();
        for _ in 0..20_000 {
            let n = (next() % 7) as usize;
            let line: Vec<&str> = (0..n)
                .map(|_| vocab[(next() % vocab.len() as u64) as usize])
                .collect();
            let line = line.join(" ");
            if let Ok(Some(cmd)) = parse(&line) {
                let _ = apply_setting(&mut b, &cmd, 1000);
            }
        }
    }

    #[test]
    fn framing() {
        assert_eq!(first_line("mode\nservers\n"), "mode");
        assert_eq!(first_line("mode\r\n"), "mode");
        assert_eq!(
            words("  server  1   max 3 "),
            vec!["server", "1", "max", "3"]
        );
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(parse("#comment").unwrap(), None);
        assert_eq!(parse("# comment").unwrap(), None);
    }

    #[test]
    fn mode_flags_and_reply() {
        let mut b = Balancer::default();
        assert_eq!(
            run(&mut b, "mode"),
            "no hash no roundrobin no stubborn no weight no prio\n"
        );
        for f in ["hash", "roundrobin", "stubborn", "weight", "prio"] {
            assert_eq!(run(&mut b, f), "");
        }
        assert_eq!(
            run(&mut b, "mode"),
            "hash roundrobin stubborn weight prio\n"
        );
        run(&mut b, "no hash");
        assert!(!b.settings.hash);
    }

    #[test]
    fn numeric_replies() {
        let mut b = Balancer::default();
        assert_eq!(run(&mut b, "blacklist"), "30\n");
        assert_eq!(run(&mut b, "timeout"), "3\n");
        assert_eq!(run(&mut b, "tracking"), "0\n");
        assert_eq!(run(&mut b, "clients_max"), "2048\n");
        assert_eq!(run(&mut b, "conn_max"), "500\n");
        assert_eq!(run(&mut b, "client_acl"), "0\n");
        assert_eq!(run(&mut b, "idle_timeout"), "Idle timeout: 0 seconds\n");
        assert_eq!(run(&mut b, "idlers"), "Idlers: 0/0\n");
        assert_eq!(run(&mut b, "tarpit_acl"), "tarpit_acl = -1");
        assert_eq!(run(&mut b, "blacklist 7"), "7\n");
        b.running = true;
        assert_eq!(run(&mut b, "clients_max 10"), "2048\n");
        assert_eq!(run(&mut b, "conn_max 600"), "600\n");
    }

    #[test]
    fn tarpit_acl_minus_one_is_the_default_not_an_error() {
        let mut b = Balancer::default();
        assert_eq!(run(&mut b, "tarpit_acl -1"), "tarpit_acl = -1");
        assert!(parse("tarpit_acl 3").is_err());
        assert!(parse("tarpit_acl 0").is_err());
    }

    #[test]
    fn unix_backends_report_port_1() {
        let mut b = Balancer::default();
        run(&mut b, "server 0 address 127.0.0.1 port 8080");
        run(&mut b, "server 0 address /run/app.sock");
        assert_eq!(b.servers.backends[0].port, 1);
        // A port means nothing to a Unix socket; pen keeps reporting 1.
        run(&mut b, "server 0 port 9090");
        assert_eq!(b.servers.backends[0].port, 1);
        assert!(servers_reply(&b).starts_with("0 addr /run/app.sock port 1 conn 0"));
        // An empty slot given a Unix path is usable (pen's port 1).
        run(&mut b, "server 3 address /run/other.sock");
        assert_eq!(b.servers.backends[3].port, 1);
        assert!(b.servers.backends[3].is_configured());
        // Back to an IP address: the port is kept (pen read a garbage port
        // out of the path's first bytes: 12148 for "/t...").
        run(&mut b, "server 0 address 127.0.0.2");
        assert_eq!(b.servers.backends[0].port, 1);
        run(&mut b, "server 0 port 81");
        assert_eq!(b.servers.backends[0].port, 81);
    }

    #[test]
    fn errors() {
        assert_eq!(
            parse("bogus").unwrap_err().reply(),
            "do_cmd: ignoring command starting with 'bogus'\n"
        );
        assert_eq!(
            parse("MODE").unwrap_err().reply(),
            "do_cmd: ignoring command starting with 'MODE'\n"
        );
        assert!(matches!(
            parse("blacklist abc"),
            Err(CommandError::Invalid(_))
        ));
        assert!(matches!(parse("timeout 0"), Err(CommandError::Invalid(_))));
        assert!(matches!(
            parse("client_acl 12"),
            Err(CommandError::Invalid(_))
        ));
        assert!(matches!(parse("idlers 3"), Err(CommandError::Invalid(_))));
        assert!(matches!(parse("dummy"), Err(CommandError::Invalid(_))));
        assert!(matches!(parse("no acl"), Err(CommandError::Invalid(_))));
        assert!(matches!(parse("source"), Err(CommandError::Invalid(_))));
        assert!(matches!(
            parse("server 1 weight"),
            Err(CommandError::Invalid(_))
        ));
        assert!(matches!(
            parse("server 1 colour red"),
            Err(CommandError::Invalid(_))
        ));
        assert!(matches!(parse("server x"), Err(CommandError::Invalid(_))));
    }

    #[test]
    fn server_settings_apply_in_any_order() {
        let mut b = Balancer::default();
        run(
            &mut b,
            "server 2 port 81 address 127.0.0.9 max 3 hard 4 weight 5 prio 6 acl 1",
        );
        assert_eq!(b.servers.len(), 3);
        let s = &b.servers.backends[2];
        assert_eq!(s.host, Host::Ip("127.0.0.9".parse().unwrap()));
        assert_eq!(
            (s.port, s.max_conns, s.hard_limit, s.weight, s.prio, s.acl),
            (81, 3, 4, 5, 6, 1)
        );
        assert!(!b.servers.backends[0].is_configured());
        run(&mut b, "server 2 blacklist 10");
        assert!(b.servers.backends[2].is_blacklisted(1005, 30));
        assert!(!b.servers.backends[2].is_blacklisted(1010, 30));
    }
}

/// Where a command came from; decides what `listen` and `exit` do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// `-o`/`-O` or the `-F` file before the acceptor runs.
    Startup,
    /// The `-F` file re-read on SIGHUP.
    Reload,
    /// The control port.
    ControlPort,
}

/// Maximum `include` nesting (a file including itself would loop forever).
const MAX_INCLUDE_DEPTH: u32 = 8;

/// The server lines of `servers` (spec control.md §4.3), with live counters.
pub fn servers_reply(b: &Balancer) -> String {
    let live = crate::stats::live_by_server(b);
    let mut out = String::new();
    for (i, s) in b.servers.backends.iter().enumerate() {
        out.push_str(&format!(
            "{} addr {} port {} conn {} max {} hard {} weight {} prio {} sx {} rx {}\n",
            i,
            s.host,
            s.port,
            s.conns,
            s.max_conns,
            s.hard_limit,
            s.weight,
            s.prio,
            s.sent + live[i].0,
            s.received + live[i].1
        ));
    }
    out
}

/// Text of a client address as pen prints it (empty for Unix clients).
pub fn client_text(c: &crate::clients::Client) -> String {
    match c.key {
        crate::clients::ClientKey::Ip(ip) => ip.to_string(),
        crate::clients::ClientKey::Unix => String::new(),
    }
}

fn recent_reply(b: &Balancer, seconds: i64, now: i64) -> String {
    let mut out = String::new();
    for (_, c) in b.clients.active() {
        if now - c.last_seen <= seconds {
            out.push_str(&format!(
                "{} connects {} sx {} rx {}\n",
                client_text(c),
                c.connects,
                c.sent,
                c.received
            ));
        }
    }
    out
}

fn connection_reply(b: &Balancer, n: i64) -> String {
    if n < 0 || n as usize >= b.conns.capacity() {
        return format!("Connection {n} out of range\n");
    }
    match b.conns.get(n as usize) {
        Some(c) => format!(
            "Connection {n}:\nstate = {}\ndownfd = {}, upfd = {}\nclient = {}, server = {}\npend = 0\n",
            c.state,
            c.client_fd,
            c.server_fd,
            c.client,
            c.server.code()
        ),
        None => format!("Connection {n}:\nstate = 0\ndownfd = -1, upfd = -1\nclient = 0, server = 0\npend = 0\n"),
    }
}

fn socket_reply(b: &Balancer, fd: i64) -> String {
    let owner = b
        .conns
        .iter()
        .find(|(_, c)| i64::from(c.client_fd) == fd || i64::from(c.server_fd) == fd)
        .map_or(-1, |(i, _)| i as i64);
    format!("Socket {fd} belongs to connection {owner}\n")
}

/// Executes one parsed command with access to the running process.
pub fn execute(
    shared: &crate::runtime::Shared,
    cmd: &Command,
    origin: Origin,
    depth: u32,
) -> Result<String, CommandError> {
    let now = crate::sys::now_unix();
    if let Command::Flag(Flag::Transparent, true) = cmd {
        crate::sys::socket::probe_transparent().map_err(|e| {
            invalid(format!(
                "transparent: the kernel refuses IP_TRANSPARENT ({e}); it needs CAP_NET_ADMIN"
            ))
        })?;
    }
    {
        let mut b = shared.lock();
        if let Some(reply) = apply_setting(&mut b, cmd, now) {
            shared.sync_limits(&b);
            return Ok(reply);
        }
    }
    match cmd {
        Command::Servers => Ok(servers_reply(&shared.lock())),
        Command::Recent(secs) => Ok(recent_reply(&shared.lock(), *secs, now)),
        Command::Connection(n) => Ok(connection_reply(&shared.lock(), *n)),
        Command::Socket(n) => Ok(socket_reply(&shared.lock(), *n)),
        Command::Pid => Ok(format!("{}\n", crate::sys::getpid())),
        Command::Control => Ok(shared
            .info()
            .control
            .as_ref()
            .map(|c| format!("{c}\n"))
            .unwrap_or_default()),
        Command::Listen(None) => Ok(shared
            .info()
            .listen
            .as_ref()
            .map(|c| format!("{c}\n"))
            .unwrap_or_default()),
        Command::Listen(Some(spec)) => crate::listeners::listen_command(shared, spec, origin),
        Command::Close(n) => {
            let b = shared.lock();
            if *n < 0 || *n as usize >= b.conns.capacity() {
                return Ok(format!("Connection {n} out of range\n"));
            }
            match b.conns.get(*n as usize) {
                Some(c) => {
                    c.pair.shut_down();
                    Ok(format!("Forcibly closing connection {n}\n"))
                }
                // pen "closes" unused slots and corrupts its counter (Q16).
                None => Err(invalid(format!("close: connection {n} is not in use"))),
            }
        }
        Command::Exit => {
            if !shared.info().exit_enabled {
                return Ok("Exit is not enabled; restart with -X flag\n".into());
            }
            shared.request(crate::runtime::AcceptorRequest::Exit);
            Ok(String::new())
        }
        Command::Include(path) => {
            if depth >= MAX_INCLUDE_DEPTH {
                return Err(invalid(format!(
                    "include {}: nested too deeply",
                    path.display()
                )));
            }
            let text = std::fs::read_to_string(path)
                .map_err(|e| invalid(format!("include: can't read {}: {e}", path.display())))?;
            let mut out = String::new();
            for (i, line) in text.lines().enumerate() {
                let parsed = parse(line)
                    .map_err(|e| invalid(format!("{}:{}: {}", path.display(), i + 1, e)))?;
                if let Some(c) = parsed {
                    out.push_str(&execute(shared, &c, origin, depth + 1)?);
                }
            }
            Ok(out)
        }
        Command::Write(path) => crate::config::write_command(shared, path.as_deref()),
        Command::Log(target) => crate::request_log::log_command(shared, target.as_deref(), origin),
        Command::NoLog => crate::request_log::set_request_log(shared, None),
        Command::WebStats(path) => crate::stats::web_stats_command(shared, path.as_deref()),
        Command::NoWebStats => {
            shared.info().web_stats = None;
            Ok(String::new())
        }
        Command::Status => crate::stats::status_command(shared),
        Command::Tls(name, args) => tls_command(shared, name, args, origin),
        _ => Ok(String::new()),
    }
}

/// Parses and executes one line; the reply, or the error reply.
pub fn run_line(shared: &crate::runtime::Shared, line: &str, origin: Origin) -> String {
    match parse(line) {
        Ok(None) => String::new(),
        Ok(Some(cmd)) => match execute(shared, &cmd, origin, 0) {
            Ok(r) => r,
            Err(e) => e.reply(),
        },
        Err(e) => e.reply(),
    }
}

#[cfg(not(feature = "tls"))]
fn tls_command(
    _shared: &crate::runtime::Shared,
    name: &str,
    _args: &[String],
    _origin: Origin,
) -> Result<String, CommandError> {
    Err(invalid(format!(
        "{name}: this pen was built without TLS support; rebuild with `make TLS=1`"
    )))
}

#[cfg(feature = "tls")]
fn tls_command(
    shared: &crate::runtime::Shared,
    name: &str,
    args: &[String],
    _origin: Origin,
) -> Result<String, CommandError> {
    let command = parse_tls_command(name, args)?;
    shared
        .tls_state
        .apply(&command)
        .map_err(|e| invalid(e.to_string()))
}

/// Parses the words of an `ssl_*` command (spec control.md §4.6). Unlike
/// pen, an unknown `ssl_option` and a missing argument are error replies.
#[cfg(feature = "tls")]
fn parse_tls_command(
    name: &str,
    args: &[String],
) -> Result<crate::tls_runtime::TlsCommand, CommandError> {
    use crate::tls_runtime::TlsCommand;
    let arg = args.first().map(String::as_str);
    let need = |what: &str| arg.ok_or_else(|| invalid(format!("{name}: missing {what}")));
    Ok(match name {
        "ssl_ciphers" => TlsCommand::Ciphers(arg.map(String::from)),
        "ssl_option" => TlsCommand::Option(
            crate::tls::parse_ssl_option(need("option")?).map_err(|e| invalid(e.to_string()))?,
        ),
        "ssl_sni_path" => TlsCommand::SniPath(PathBuf::from(need("directory")?)),
        "ssl_ocsp_response" => TlsCommand::OcspResponse(PathBuf::from(need("file name")?)),
        "ssl_client_renegotiation_interval" => TlsCommand::RenegotiationInterval(int_in(
            name,
            need("number of seconds")?,
            0,
            i32::MAX as i64,
        )? as u64),
        "ssl_handshake_timeout" => {
            TlsCommand::HandshakeTimeout(int_in(name, need("number of seconds")?, 1, 3600)? as u64)
        }
        _ => return Err(CommandError::Unknown(name.to_string())),
    })
}

#[cfg(all(test, feature = "tls"))]
mod tls_tests {
    use super::*;
    use crate::tls::SslOption;
    use crate::tls_runtime::TlsCommand;

    fn tls(line: &str) -> Result<TlsCommand, CommandError> {
        let words = words(line);
        let args: Vec<String> = words[1..].iter().map(|s| s.to_string()).collect();
        let parsed = parse_tls_command(words[0], &args);
        // parse() checks the same way, and keeps the words for execute().
        match parse(line) {
            Ok(Some(Command::Tls(name, kept))) => {
                assert!(parsed.is_ok());
                assert_eq!((name.as_str(), &kept), (words[0], &args));
            }
            Err(e) => assert_eq!(Err(e), parsed.clone().map(|_| ())),
            other => panic!("{line}: {other:?}"),
        }
        parsed
    }

    #[test]
    fn ssl_commands() {
        assert_eq!(
            tls("ssl_ciphers HIGH:!aNULL"),
            Ok(TlsCommand::Ciphers(Some("HIGH:!aNULL".into())))
        );
        assert_eq!(tls("ssl_ciphers"), Ok(TlsCommand::Ciphers(None)));
        assert_eq!(
            tls("ssl_option no_tlsv1.2"),
            Ok(TlsCommand::Option(SslOption::NoTlsv1_2))
        );
        assert_eq!(
            tls("ssl_sni_path /etc/pen/sni"),
            Ok(TlsCommand::SniPath("/etc/pen/sni".into()))
        );
        assert_eq!(
            tls("ssl_ocsp_response /etc/pen/ocsp.der"),
            Ok(TlsCommand::OcspResponse("/etc/pen/ocsp.der".into()))
        );
        assert_eq!(
            tls("ssl_client_renegotiation_interval 60"),
            Ok(TlsCommand::RenegotiationInterval(60))
        );
        assert_eq!(
            tls("ssl_handshake_timeout 2"),
            Ok(TlsCommand::HandshakeTimeout(2))
        );
    }

    #[test]
    fn ssl_command_errors() {
        let reply = |line: &str| tls(line).unwrap_err().reply();
        assert!(
            reply("ssl_option no_tlsv1.3").starts_with("error: unknown ssl_option 'no_tlsv1.3'")
        );
        assert_eq!(reply("ssl_option"), "error: ssl_option: missing option\n");
        assert_eq!(
            reply("ssl_sni_path"),
            "error: ssl_sni_path: missing directory\n"
        );
        assert_eq!(
            reply("ssl_ocsp_response"),
            "error: ssl_ocsp_response: missing file name\n"
        );
        assert!(reply("ssl_client_renegotiation_interval x").starts_with("error: "));
        assert!(reply("ssl_handshake_timeout 0").starts_with("error: "));
        assert_eq!(
            reply("ssl_bogus 1"),
            "do_cmd: ignoring command starting with 'ssl_bogus'\n"
        );
    }
}
