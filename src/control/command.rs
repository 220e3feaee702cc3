//! The penctl command grammar (doc/pen-0.34.1.md, "Control commands"): one
//! parser for `-o`/`-O`, `-F` files, `include`, SIGHUP reloads and the control
//! port.
//!
//! Differences from pen 0.34.1: arguments must be well-formed (pen's `atoi`
//! turned "abc" into 0); a command pen accepts but ignores or crashes on
//! (`dummy`, `peek`, `dsr_if` at run time, `block`, `delayed_forward`, a
//! missing argument) gets an error reply instead; error
//! replies are one line starting with `error: `.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use super::settings::{Flag, Number};
use crate::acl::{self, AclEntry};
use crate::addr::{self, Host, Proto};
use crate::proxy_protocol::Version;
use crate::settings::{AcceptProxy, FastClose};
use crate::state::servers::MAX_SERVERS;

/// The most idle upstream connections `idlers N` keeps.
pub const MAX_IDLERS: usize = 10_000;

/// A parsed command.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// A flag of the settings table (`hash`, `no hash`, ...).
    Flag(Flag, bool),
    /// A number of the settings table; `None` queries it.
    Number(Number, Option<i64>),
    /// `hash consistent`: rendezvous hashing (`no hash` ends it).
    ConsistentHash,
    /// `health_check_send`/`health_check_expect TEXT` (unescaped); `None`
    /// queries it.
    ProbeText(ProbeText, Option<String>),
    /// `no health_check_send`/`no health_check_expect`.
    NoProbeText(ProbeText),
    /// `health`: the health checks' view of every server.
    Health,
    FastClose(FastClose),
    /// `send_proxy v1|v2|off`; `None` queries it.
    SendProxy(Option<Option<Version>>),
    /// `accept_proxy on [N]|off`; `None` queries it.
    AcceptProxy(Option<AcceptProxy>),
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
    /// `idlers [N]`: `None` queries.
    Idlers(Option<usize>),
    /// `dsr_if [IFNAME]`: direct server return's interface (start-up
    /// only); `None` queries it.
    DsrIf(Option<String>),
    /// `dsr_ip [ADDRESS]`: the source address of DSR's ARP requests;
    /// `None` queries it.
    DsrIp(Option<std::net::Ipv4Addr>),
    /// `dsr`: direct server return's counters.
    Dsr,
    /// The metrics in Prometheus' text format.
    Metrics,
    /// `metrics_listen [HOST:]PORT`; `None` queries it.
    MetricsListen(Option<String>),
    NoMetricsListen,
    /// `drain [SECONDS]`.
    Drain(Option<u64>),
    /// Event back-end choice: `poll` (what we always use).
    Poll,
    /// `geoip_db PATH` loads a database; without PATH, lists those in use.
    GeoipDb(Option<PathBuf>),
    /// `no geoip_db`: no database, not even Debian's default ones.
    NoGeoipDb,
    /// `country ADDRESS`: the country code that ACLs would match.
    Country(IpAddr),
    /// TLS settings (`ssl_*`), kept as words; applied by the TLS layer.
    Tls(String, Vec<String>),
}

/// Which text of the health probes a command sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeText {
    Send,
    Expect,
}

impl ProbeText {
    pub fn name(self) -> &'static str {
        match self {
            ProbeText::Send => "health_check_send",
            ProbeText::Expect => "health_check_expect",
        }
    }

    fn by_name(name: &str) -> Option<ProbeText> {
        [ProbeText::Send, ProbeText::Expect]
            .into_iter()
            .find(|t| t.name() == name)
    }
}

/// A probe text as written in a command: `\r`, `\n` and `\\` stand for
/// CR, LF and a backslash; any other backslash is an error.
pub fn unescape(cmd: &str, text: &str) -> Result<String, CommandError> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                return Err(invalid(format!(
                    "{cmd}: unknown escape '\\{other}' (use \\r, \\n or \\\\)"
                )))
            }
            None => return Err(invalid(format!("{cmd}: the text ends with a lone '\\'"))),
        }
    }
    Ok(out)
}

/// The inverse of [`unescape`], for replies and `write`.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out
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
    /// A reply pen sends as it is (some without a newline, doc/pen-0.34.1.md,
    /// quirk Q31).
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

pub(super) fn invalid(m: impl Into<String>) -> CommandError {
    CommandError::Invalid(m.into())
}

fn int(cmd: &str, w: &str) -> Result<i64, CommandError> {
    w.parse::<i64>()
        .map_err(|_| invalid(format!("{cmd}: '{w}' is not a whole number")))
}

pub(super) fn int_in(cmd: &str, w: &str, min: i64, max: i64) -> Result<i64, CommandError> {
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

/// The first line of `input`, cut at the first CR or LF (doc/pen-0.34.1.md,
/// "Control connections").
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
    // `hash` is a flag that also takes one word; unlike pen, which ignored
    // words after a flag, a misspelt `hash consistent` is an error.
    match (first, arg) {
        ("hash", Some("consistent")) => return Ok(Some(Command::ConsistentHash)),
        ("hash", Some(other)) => {
            return Err(invalid(format!(
                "hash: unknown argument '{other}' (use 'hash' or 'hash consistent')"
            )))
        }
        _ => {}
    }
    if let Some(f) = Flag::by_name(first) {
        return Ok(Some(Command::Flag(f, true)));
    }
    if let Some(n) = Number::by_name(first) {
        let row = n.row();
        let v = match arg {
            None => None,
            Some(a) if row.clamp_low => Some(int_in(first, a, i64::MIN, row.max)?.max(row.min)),
            Some(a) => Some(int_in(first, a, row.min, row.max)?),
        };
        return Ok(Some(Command::Number(n, v)));
    }
    if let Some((_, why)) = NOT_IMPLEMENTED.iter().find(|(c, _)| *c == first) {
        return Err(invalid(format!("{first}: {why}")));
    }
    if let Some(kind) = ProbeText::by_name(first) {
        // The text is the rest of the line, spaces included.
        let line = first_line(line).trim_start_matches(' ');
        let rest = line[first.len()..].trim_start_matches(' ');
        let text = match rest {
            "" => None,
            t => Some(unescape(first, t)?),
        };
        return Ok(Some(Command::ProbeText(kind, text)));
    }
    let need = |what: &str| arg.ok_or_else(|| invalid(format!("{first}: missing {what}")));
    let cmd = match first {
        "no" => return parse_no(&w[1..]),
        "mode" => Command::Mode,
        "health" => Command::Health,
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
        "metrics" => Command::Metrics,
        "drain" => Command::Drain(
            arg.map(|a| int_in(first, a, 0, i32::MAX as i64))
                .transpose()?
                .map(|n| n as u64),
        ),
        "metrics_listen" => Command::MetricsListen(arg.map(String::from)),
        "close" => Command::Close(int(first, need("connection number")?)?),
        "exit" => Command::Exit,
        "include" => Command::Include(PathBuf::from(need("file name")?)),
        "write" => Command::Write(arg.map(PathBuf::from)),
        "source" => {
            let a = need("address")?;
            match addr::resolve_host(a) {
                Ok(ip) => Command::Source(ip),
                // pen's exact reply, without a newline (doc/pen-0.34.1.md,
                // quirk Q31).
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
        "send_proxy" => Command::SendProxy(match arg {
            None => None,
            Some("v1") => Some(Some(Version::V1)),
            Some("v2") => Some(Some(Version::V2)),
            Some("off") => Some(None),
            Some(a) => return Err(invalid(format!("send_proxy: '{a}' is not v1, v2 or off"))),
        }),
        "accept_proxy" => Command::AcceptProxy(match (arg, w.get(2)) {
            (None, _) => None,
            (Some("off"), None) => Some(AcceptProxy::Off),
            (Some("on"), None) => Some(AcceptProxy::On { acl: None }),
            (Some("on"), Some(n)) if w.len() == 3 => Some(AcceptProxy::On {
                acl: Some(acl::parse_acl_number(n).map_err(|e| invalid(e.to_string()))?),
            }),
            _ => return Err(invalid("accept_proxy: expected 'on', 'on ACL' or 'off'")),
        }),
        "idlers" => Command::Idlers(match arg {
            None => None,
            Some(a) => match usize::try_from(int(first, a)?) {
                Ok(n) if n <= MAX_IDLERS => Some(n),
                _ => return Err(invalid(format!("idlers: N must be from 0 to {MAX_IDLERS}"))),
            },
        }),
        "dsr_if" => Command::DsrIf(match arg {
            None => None,
            Some(i) if i.len() < 16 && !i.contains('/') => Some(i.to_string()),
            Some(i) => return Err(invalid(format!("dsr_if: '{i}' is not an interface name"))),
        }),
        "dsr_ip" => Command::DsrIp(match arg {
            None => None,
            Some(a) => Some(
                a.parse()
                    .map_err(|_| invalid(format!("dsr_ip: '{a}' is not an IPv4 address")))?,
            ),
        }),
        "dsr" => Command::Dsr,
        "poll" => Command::Poll,
        "geoip_db" => Command::GeoipDb(arg.map(PathBuf::from)),
        "country" => {
            let a = need("address")?;
            Command::Country(
                a.parse()
                    .map_err(|_| invalid(format!("country: '{a}' is not an IP address")))?,
            )
        }
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
    if let Some(f) = Flag::by_name(what) {
        return Ok(Some(Command::Flag(f, false)));
    }
    if let Some((_, why)) = NOT_IMPLEMENTED.iter().find(|(c, _)| *c == what) {
        return Err(invalid(format!("no {what}: {why}")));
    }
    if let Some(kind) = ProbeText::by_name(what) {
        return Ok(Some(Command::NoProbeText(kind)));
    }
    Ok(Some(match what {
        "log" => Command::NoLog,
        "web_stats" => Command::NoWebStats,
        "source" => Command::NoSource,
        "geoip_db" => Command::NoGeoipDb,
        "send_proxy" => Command::SendProxy(Some(None)),
        "accept_proxy" => Command::AcceptProxy(Some(AcceptProxy::Off)),
        "metrics_listen" => Command::NoMetricsListen,
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
    let n = int_in("server", n, 0, MAX_SERVERS as i64 - 1)? as usize;
    let mut settings = Vec::new();
    let mut rest = &w[1..];
    if rest.is_empty() {
        // pen created an empty slot ("unknown address family 0").
        return Err(invalid(format!(
            "server {n}: nothing to set (give KEY VALUE: acl, address, port, max, hard, weight, prio or blacklist)"
        )));
    }
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

/// Parses the words of an `ssl_*` command (doc/pen-0.34.1.md, "TLS"). Unlike
/// pen, an unknown `ssl_option` and a missing argument are error replies.
#[cfg(feature = "tls")]
pub(super) fn parse_tls_command(
    name: &str,
    args: &[String],
) -> Result<crate::tls::TlsCommand, CommandError> {
    use crate::tls::TlsCommand;
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
    use crate::tls::TlsCommand;

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
