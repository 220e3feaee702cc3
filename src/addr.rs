//! Address syntax: LISTEN and `-C` arguments, backend specifications, ports
//! and service names (doc/pen-0.34.1.md, "Listen addresses",
//! "Backend specifications").

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use crate::sys::netdb;

/// Transport protocol, for service-name lookups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// Errors in addresses and backend specifications.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddrError {
    BadPort(String),
    PortOutOfRange(String),
    UnknownHost(String),
    BadField {
        spec: String,
        field: &'static str,
        value: String,
    },
    TooManyFields(String),
    NeedsPort(String),
    Empty,
}

impl fmt::Display for AddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddrError::BadPort(p) => write!(f, "bad port '{p}': not a number or a known service name"),
            AddrError::PortOutOfRange(p) => write!(f, "port {p} out of range (1-65535)"),
            AddrError::UnknownHost(h) => write!(f, "unknown or invalid address '{h}'"),
            AddrError::BadField { spec, field, value } => {
                write!(f, "bad {field} '{value}' in server specification '{spec}' (expected a whole number >= 0)")
            }
            AddrError::TooManyFields(s) => write!(
                f,
                "too many fields in server specification '{s}' (host:port:maxc:hard:weight:prio)"
            ),
            AddrError::NeedsPort(s) => write!(
                f,
                "server '{s}' needs an explicit port: the listener is a Unix socket and has no port to default to"
            ),
            AddrError::Empty => write!(f, "empty address"),
        }
    }
}

impl std::error::Error for AddrError {}

/// The port of a Unix-socket backend, which has none: pen reports 1
/// whatever port it was given (doc/pen-0.34.1.md, "Backend specifications"),
/// and so do we.
pub const UNIX_BACKEND_PORT: u16 = 1;

/// Where to listen: an IP socket address or a Unix socket path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenAddr {
    Inet(SocketAddr),
    Unix(PathBuf),
}

impl ListenAddr {
    /// The port that backends without an explicit port default to (0 for
    /// Unix listeners, as in pen).
    pub fn port(&self) -> u16 {
        match self {
            ListenAddr::Inet(a) => a.port(),
            ListenAddr::Unix(_) => 0,
        }
    }
}

/// Parses a port: a service name from the services database for `proto`,
/// or a decimal number 1..65535.
pub fn parse_port(text: &str, proto: Proto) -> Result<u16, AddrError> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return match text.parse::<u32>() {
            Ok(p) if (1..=65535).contains(&p) => Ok(p as u16),
            _ => Err(AddrError::PortOutOfRange(text.to_string())),
        };
    }
    if text.is_empty() {
        return Err(AddrError::BadPort(text.to_string()));
    }
    netdb::service_port(text, proto.name()).ok_or_else(|| AddrError::BadPort(text.to_string()))
}

/// Resolves a host name or literal address; the first result wins, as in pen.
pub fn resolve_host(host: &str) -> Result<IpAddr, AddrError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ip);
    }
    // Fuzzing (`cargo fuzz`, fuzz/README.md) must not wait on DNS: only
    // literal addresses resolve there.
    if host.is_empty() || host.contains('\0') || cfg!(fuzzing) {
        return Err(AddrError::UnknownHost(host.to_string()));
    }
    (host, 0)
        .to_socket_addrs()
        .ok()
        .and_then(|mut it| it.next())
        .map(|a| a.ip())
        .ok_or_else(|| AddrError::UnknownHost(host.to_string()))
}

/// Parses a LISTEN / `-C` / `listen` argument (doc/pen-0.34.1.md,
/// "Listen addresses"): a path if it contains `/`; otherwise `[host:]port`,
/// split at the LAST colon so IPv6 literals are written without brackets
/// (`::1:8080`). Unlike pen we also accept the bracketed form `[::1]:8080`.
pub fn parse_listen(text: &str, proto: Proto) -> Result<ListenAddr, AddrError> {
    if text.is_empty() {
        return Err(AddrError::Empty);
    }
    if text.contains('/') {
        return Ok(ListenAddr::Unix(PathBuf::from(text)));
    }
    let (host, port) = match text.rfind(':') {
        None => ("", text),
        Some(i) => (&text[..i], &text[i + 1..]),
    };
    let port = parse_port(port, proto)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let ip = if host.is_empty() {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        resolve_host(host)?
    };
    Ok(ListenAddr::Inet(SocketAddr::new(ip, port)))
}

/// The host part of a backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Host {
    /// A slot never given an address (`server 5 ...` creates gaps).
    Unset,
    Ip(IpAddr),
    Unix(PathBuf),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // pen prints "(unknown address family 0" with no closing
            // parenthesis (doc/pen-0.34.1.md, quirk Q14); we close it.
            Host::Unset => write!(f, "(unknown address family 0)"),
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Unix(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Parses the host of `server N address A`: host name, IPv4, IPv6 (with or
/// without brackets) or a Unix path.
pub fn parse_host(text: &str) -> Result<Host, AddrError> {
    if text.contains('/') {
        return Ok(Host::Unix(PathBuf::from(text)));
    }
    let t = text
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(text);
    resolve_host(t).map(Host::Ip)
}

/// A parsed `host[:port[:maxc[:hard[:weight[:prio]]]]]` (doc/pen-0.34.1.md,
/// "Backend specifications").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendSpec {
    pub host: Host,
    pub port: u16,
    pub max_conns: u32,
    pub hard_limit: u32,
    pub weight: u32,
    pub prio: u32,
}

/// Parses a backend specification. Missing fields take pen's defaults: port
/// = `default_port` (the listen port), maxc, hard, weight and prio 0. An
/// empty field also means "default". Unlike pen, a field that does not parse
/// is an error instead of silently resetting it and every later field.
pub fn parse_backend(
    spec: &str,
    default_port: u16,
    proto: Proto,
) -> Result<BackendSpec, AddrError> {
    if spec.is_empty() {
        return Err(AddrError::Empty);
    }
    let (host_text, rest) = if let Some(inner) = spec.strip_prefix('[') {
        match inner.find(']') {
            Some(i) => (
                &inner[..i],
                inner[i + 1..].strip_prefix(':').unwrap_or(&inner[i + 1..]),
            ),
            None => (inner, ""),
        }
    } else {
        match spec.find(':') {
            Some(i) => (&spec[..i], &spec[i + 1..]),
            None => (spec, ""),
        }
    };
    let host = if host_text.contains('/') {
        Host::Unix(PathBuf::from(host_text))
    } else {
        Host::Ip(resolve_host(host_text)?)
    };
    let fields: Vec<&str> = if rest.is_empty() {
        Vec::new()
    } else {
        rest.split(':').collect()
    };
    if fields.len() > 5 {
        return Err(AddrError::TooManyFields(spec.to_string()));
    }
    let field = |i: usize| fields.get(i).copied().filter(|f| !f.is_empty());
    let port = match (&host, field(0)) {
        (Host::Unix(_), _) => UNIX_BACKEND_PORT,
        (_, Some(p)) => parse_port(p, proto)?,
        _ if default_port == 0 => return Err(AddrError::NeedsPort(spec.to_string())),
        _ => default_port,
    };
    let number = |i: usize, name: &'static str| -> Result<u32, AddrError> {
        match field(i) {
            None => Ok(0),
            Some(v) => v.parse::<u32>().map_err(|_| AddrError::BadField {
                spec: spec.to_string(),
                field: name,
                value: v.to_string(),
            }),
        }
    };
    Ok(BackendSpec {
        host,
        port,
        max_conns: number(1, "maxc")?,
        hard_limit: number(2, "hard")?,
        weight: number(3, "weight")?,
        prio: number(4, "prio")?,
    })
}

/// IPv4-mapped IPv6 addresses (from dual-stack listeners) count as IPv4.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    #[test]
    fn listen_forms() {
        assert_eq!(
            parse_listen("8080", Proto::Tcp).unwrap(),
            ListenAddr::Inet("0.0.0.0:8080".parse().unwrap())
        );
        assert_eq!(
            parse_listen("127.0.0.1:8080", Proto::Tcp).unwrap(),
            ListenAddr::Inet("127.0.0.1:8080".parse().unwrap())
        );
        assert_eq!(
            parse_listen("::1:8080", Proto::Tcp).unwrap(),
            ListenAddr::Inet("[::1]:8080".parse().unwrap())
        );
        assert_eq!(
            parse_listen(":::8080", Proto::Tcp).unwrap(),
            ListenAddr::Inet(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 8080))
        );
        assert_eq!(
            parse_listen("[::1]:8080", Proto::Tcp).unwrap(),
            ListenAddr::Inet("[::1]:8080".parse().unwrap())
        );
        assert_eq!(
            parse_listen("/tmp/x.sock", Proto::Tcp).unwrap(),
            ListenAddr::Unix("/tmp/x.sock".into())
        );
        assert_eq!(parse_listen("smtp", Proto::Tcp).unwrap().port(), 25);
    }

    #[test]
    fn listen_errors() {
        assert!(matches!(
            parse_listen("0", Proto::Tcp),
            Err(AddrError::PortOutOfRange(_))
        ));
        assert!(matches!(
            parse_listen("70000", Proto::Tcp),
            Err(AddrError::PortOutOfRange(_))
        ));
        assert!(matches!(
            parse_listen("nosuchservice", Proto::Tcp),
            Err(AddrError::BadPort(_))
        ));
        assert!(matches!(
            parse_listen("80abc", Proto::Tcp),
            Err(AddrError::BadPort(_))
        ));
        assert!(matches!(
            parse_listen("no..such.host:80", Proto::Tcp),
            Err(AddrError::UnknownHost(_))
        ));
        assert!(parse_listen("", Proto::Tcp).is_err());
    }

    #[test]
    fn backend_defaults() {
        let b = parse_backend("127.0.0.1", 8080, Proto::Tcp).unwrap();
        assert_eq!(b.host, Host::Ip("127.0.0.1".parse().unwrap()));
        assert_eq!(
            (b.port, b.max_conns, b.hard_limit, b.weight, b.prio),
            (8080, 0, 0, 0, 0)
        );
        let b = parse_backend("127.0.0.1:40002:5:7:3:2", 8080, Proto::Tcp).unwrap();
        assert_eq!(
            (b.port, b.max_conns, b.hard_limit, b.weight, b.prio),
            (40002, 5, 7, 3, 2)
        );
        let b = parse_backend("127.0.0.1::9", 8080, Proto::Tcp).unwrap();
        assert_eq!((b.port, b.max_conns), (8080, 9));
        assert_eq!(
            parse_backend("localhost:smtp", 1, Proto::Tcp).unwrap().port,
            25
        );
    }

    #[test]
    fn backend_ipv6_and_unix() {
        let b = parse_backend("[::1]:81:1", 8080, Proto::Tcp).unwrap();
        assert_eq!(b.host, Host::Ip("::1".parse().unwrap()));
        assert_eq!((b.port, b.max_conns), (81, 1));
        let b = parse_backend("[::1]", 8080, Proto::Tcp).unwrap();
        assert_eq!(b.port, 8080);
        let b = parse_backend("/run/x.sock", 0, Proto::Tcp).unwrap();
        assert_eq!(b.host, Host::Unix("/run/x.sock".into()));
        assert_eq!(b.port, 1);
        let b = parse_backend("/run/x.sock:80:5", 0, Proto::Tcp).unwrap();
        assert_eq!((b.port, b.max_conns), (1, 5));
    }

    #[test]
    fn backend_errors() {
        assert!(matches!(
            parse_backend("127.0.0.1:40001:abc:5", 80, Proto::Tcp),
            Err(AddrError::BadField { field: "maxc", .. })
        ));
        assert!(matches!(
            parse_backend("127.0.0.1:40001:-1:5", 80, Proto::Tcp),
            Err(AddrError::BadField { .. })
        ));
        assert!(matches!(
            parse_backend("::1", 80, Proto::Tcp),
            Err(AddrError::UnknownHost(_))
        ));
        assert!(matches!(
            parse_backend("127.0.0.1:1:2:3:4:5:6", 80, Proto::Tcp),
            Err(AddrError::TooManyFields(_))
        ));
        assert!(matches!(
            parse_backend("127.0.0.1:bogus", 80, Proto::Tcp),
            Err(AddrError::BadPort(_))
        ));
        assert!(matches!(
            parse_backend("127.0.0.1", 0, Proto::Tcp),
            Err(AddrError::NeedsPort(_))
        ));
        assert!(matches!(
            parse_backend("bad..host", 80, Proto::Tcp),
            Err(AddrError::UnknownHost(_))
        ));
    }
}
