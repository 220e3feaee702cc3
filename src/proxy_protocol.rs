//! The PROXY protocol header, versions 1 (a text line) and 2 (binary), as
//! HAProxy's specification `doc/proxy-protocol.txt` defines them: the
//! encoder for `send_proxy`, the parser for `accept_proxy`, and the reader
//! that takes a header off a socket without taking a byte past it. Pure:
//! the reader's I/O comes in through [`HeaderSource`].

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The version 2 signature, the header's first 12 bytes.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The version 1 line's first bytes.
const V1_PREFIX: &[u8] = b"PROXY ";
/// The longest version 1 line, CRLF included (the specification's worst case).
pub const V1_MAX_LEN: usize = 107;
/// The version 2 header before its address block.
const V2_FIXED_LEN: usize = 16;
/// The longest version 2 header taken: the largest address block (Unix,
/// 216 bytes) with room for TLVs. Longer ones are refused.
pub const V2_MAX_LEN: usize = 2048;

/// A header's version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

impl Version {
    pub fn name(self) -> &'static str {
        match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
        }
    }
}

/// The two ends of the proxied connection: the client, and the address it
/// connected to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Addresses {
    pub source: SocketAddr,
    pub destination: SocketAddr,
}

/// A parsed header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub version: Version,
    /// `None`: the sender gave no usable addresses (v1 `UNKNOWN`, v2
    /// `LOCAL`, or a family other than TCP over IPv4/IPv6); the real
    /// connection's ends stand.
    pub addresses: Option<Addresses>,
}

/// Why a header was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Neither `PROXY ` nor the version 2 signature.
    NoHeader,
    /// A version 1 line that does not follow the specification.
    BadLine(&'static str),
    /// No CRLF within the longest line allowed.
    LineTooLong,
    /// A version 2 header with an unknown version, command or family, or
    /// an address block too short for its family.
    BadBinary(&'static str),
    /// A version 2 length beyond [`V2_MAX_LEN`].
    TooLong(usize),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::NoHeader => write!(f, "no PROXY protocol header"),
            ParseError::BadLine(why) => write!(f, "bad PROXY v1 line: {why}"),
            ParseError::LineTooLong => {
                write!(f, "PROXY v1 line without CRLF in {V1_MAX_LEN} bytes")
            }
            ParseError::BadBinary(why) => write!(f, "bad PROXY v2 header: {why}"),
            ParseError::TooLong(n) => {
                write!(f, "PROXY v2 header of {n} bytes (at most {V2_MAX_LEN})")
            }
        }
    }
}

/// Parses the header at the start of `buf`: `Ok(None)` while `buf` is a
/// valid beginning of a header that is not complete yet; otherwise the
/// header and its length in bytes (what follows is the client's data).
pub fn parse(buf: &[u8]) -> Result<Option<(Header, usize)>, ParseError> {
    let n = buf.len().min(V2_SIGNATURE.len());
    if !buf.is_empty() && buf[..n] == V2_SIGNATURE[..n] {
        return parse_v2(buf);
    }
    let n = buf.len().min(V1_PREFIX.len());
    if buf[..n] == V1_PREFIX[..n] {
        return parse_v1(buf);
    }
    Err(ParseError::NoHeader)
}

fn parse_v1(buf: &[u8]) -> Result<Option<(Header, usize)>, ParseError> {
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        // Only printable ASCII may come before the CRLF; a CR must be the
        // last byte so far (its LF may follow).
        let body = window.strip_suffix(b"\r").unwrap_or(window);
        if !body.iter().all(|b| (0x20..0x7f).contains(b)) {
            return Err(ParseError::BadLine("a byte that is not printable ASCII"));
        }
        if window.len() >= V1_MAX_LEN {
            return Err(ParseError::LineTooLong);
        }
        return Ok(None);
    };
    let line = &buf[..end];
    if !line.iter().all(|b| (0x20..0x7f).contains(b)) {
        return Err(ParseError::BadLine("a byte that is not printable ASCII"));
    }
    // Printable ASCII, so valid UTF-8.
    let line = std::str::from_utf8(line).map_err(|_| ParseError::BadLine("not ASCII"))?;
    let fields: Vec<&str> = line.split(' ').collect();
    let header = |addresses| {
        Ok(Some((
            Header {
                version: Version::V1,
                addresses,
            },
            end + 2,
        )))
    };
    match fields.get(1).copied() {
        // The rest of the line is ignored (the specification says so).
        Some("UNKNOWN") => header(None),
        Some(proto @ ("TCP4" | "TCP6")) => {
            let [_, _, src, dst, sport, dport] = fields[..] else {
                return Err(ParseError::BadLine("not six fields"));
            };
            let v4 = proto == "TCP4";
            let source = SocketAddr::new(v1_ip(src, v4)?, v1_port(sport)?);
            let destination = SocketAddr::new(v1_ip(dst, v4)?, v1_port(dport)?);
            header(Some(Addresses {
                source,
                destination,
            }))
        }
        _ => Err(ParseError::BadLine("protocol is not TCP4, TCP6 or UNKNOWN")),
    }
}

fn v1_ip(text: &str, v4: bool) -> Result<IpAddr, ParseError> {
    // std's parsers refuse leading zeros in IPv4 numbers, as the
    // specification asks.
    if v4 {
        text.parse::<Ipv4Addr>()
            .map(IpAddr::V4)
            .map_err(|_| ParseError::BadLine("bad IPv4 address"))
    } else {
        text.parse::<Ipv6Addr>()
            .map(IpAddr::V6)
            .map_err(|_| ParseError::BadLine("bad IPv6 address"))
    }
}

fn v1_port(text: &str) -> Result<u16, ParseError> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    if !digits || (text.len() > 1 && text.starts_with('0')) {
        return Err(ParseError::BadLine("bad port"));
    }
    text.parse()
        .map_err(|_| ParseError::BadLine("port out of range"))
}

fn parse_v2(buf: &[u8]) -> Result<Option<(Header, usize)>, ParseError> {
    if buf.len() > V2_SIGNATURE.len() && buf[12] >> 4 != 2 {
        return Err(ParseError::BadBinary("version is not 2"));
    }
    if buf.len() > 12 && buf[12] & 0x0f > 1 {
        return Err(ParseError::BadBinary("command is neither LOCAL nor PROXY"));
    }
    if buf.len() > 13 && (buf[13] >> 4 > 3 || buf[13] & 0x0f > 2) {
        return Err(ParseError::BadBinary("unknown family or transport"));
    }
    if buf.len() < V2_FIXED_LEN {
        return Ok(None);
    }
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let total = V2_FIXED_LEN + len;
    if total > V2_MAX_LEN {
        return Err(ParseError::TooLong(total));
    }
    if buf.len() < total {
        return Ok(None);
    }
    let local = buf[12] & 0x0f == 0;
    let block = &buf[V2_FIXED_LEN..total];
    let need = match buf[13] >> 4 {
        1 => 12,
        2 => 36,
        3 => 216,
        _ => 0,
    };
    if !local && block.len() < need {
        return Err(ParseError::BadBinary(
            "address block shorter than its family",
        ));
    }
    let port = |at: usize| u16::from_be_bytes([block[at], block[at + 1]]);
    // Only TCP over IPv4/IPv6 names a client pen can use; for the rest the
    // real connection's ends stand (the specification's UNSPEC fallback).
    let addresses = match (local, buf[13]) {
        (false, 0x11) => {
            let ip =
                |at: usize| IpAddr::from([block[at], block[at + 1], block[at + 2], block[at + 3]]);
            Some(Addresses {
                source: SocketAddr::new(ip(0), port(8)),
                destination: SocketAddr::new(ip(4), port(10)),
            })
        }
        (false, 0x21) => {
            let ip = |at: usize| {
                let mut o = [0u8; 16];
                o.copy_from_slice(&block[at..at + 16]);
                IpAddr::from(o)
            };
            Some(Addresses {
                source: SocketAddr::new(ip(0), port(32)),
                destination: SocketAddr::new(ip(16), port(34)),
            })
        }
        _ => None,
    };
    Ok(Some((
        Header {
            version: Version::V2,
            addresses,
        },
        total,
    )))
}

/// Both ends as one family: IPv4 when both are IPv4 (or IPv4-mapped),
/// otherwise IPv6 with IPv4 mapped.
fn same_family(a: &Addresses) -> (IpAddr, IpAddr) {
    match (
        a.source.ip().to_canonical(),
        a.destination.ip().to_canonical(),
    ) {
        (s @ IpAddr::V4(_), d @ IpAddr::V4(_)) => (s, d),
        (s, d) => (IpAddr::V6(as_v6(s)), IpAddr::V6(as_v6(d))),
    }
}

fn as_v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// The header that announces `addresses`; `None` (a Unix-socket client):
/// v1 `PROXY UNKNOWN`, v2 `LOCAL` with no address.
pub fn encode(version: Version, addresses: Option<&Addresses>) -> Vec<u8> {
    match version {
        Version::V1 => encode_v1(addresses),
        Version::V2 => encode_v2(addresses),
    }
}

fn encode_v1(addresses: Option<&Addresses>) -> Vec<u8> {
    let Some(a) = addresses else {
        return b"PROXY UNKNOWN\r\n".to_vec();
    };
    let (src, dst) = same_family(a);
    let proto = if src.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {proto} {src} {dst} {} {}\r\n",
        a.source.port(),
        a.destination.port()
    )
    .into_bytes()
}

fn encode_v2(addresses: Option<&Addresses>) -> Vec<u8> {
    let mut out = Vec::with_capacity(V2_FIXED_LEN + 36);
    out.extend_from_slice(&V2_SIGNATURE);
    let Some(a) = addresses else {
        // LOCAL, UNSPEC, no address block.
        out.extend_from_slice(&[0x20, 0x00, 0, 0]);
        return out;
    };
    match same_family(a) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.extend_from_slice(&[0x21, 0x11, 0, 12]);
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        (s, d) => {
            out.extend_from_slice(&[0x21, 0x21, 0, 36]);
            out.extend_from_slice(&as_v6(s).octets());
            out.extend_from_slice(&as_v6(d).octets());
        }
    }
    out.extend_from_slice(&a.source.port().to_be_bytes());
    out.extend_from_slice(&a.destination.port().to_be_bytes());
    out
}

/// A client socket as the header reader sees it.
pub trait HeaderSource {
    /// Copies waiting bytes into `buf` without taking them (MSG_PEEK);
    /// `Ok(0)` at end of stream, `WouldBlock` when nothing is waiting.
    fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Takes exactly `buf.len()` bytes, which a peek has shown are there.
    fn take(&mut self, buf: &mut [u8]) -> io::Result<()>;
    /// Waits until bytes arrive; `TimedOut` when the deadline has passed.
    fn wait(&mut self) -> io::Result<()>;
}

/// Why no header could be read.
#[derive(Debug)]
pub enum ReadError {
    Invalid(ParseError),
    /// The client closed before a whole header.
    Closed,
    Io(io::Error),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Invalid(e) => write!(f, "{e}"),
            ReadError::Closed => write!(f, "closed before a whole PROXY header"),
            ReadError::Io(e) if e.kind() == io::ErrorKind::TimedOut => {
                write!(f, "no whole PROXY header before the timeout")
            }
            ReadError::Io(e) => write!(f, "{e}"),
        }
    }
}

/// How much a peek looks at: the smallest TCP segment every host takes,
/// which the specification sizes headers to fit in.
const PEEK_LEN: usize = 536;

/// Reads one header from `src` and nothing after it: each round peeks at
/// what has arrived and takes either the whole header or, while it is
/// incomplete, the bytes seen so far (all of them belong to the header).
/// A header that arrives at once costs one peek and one read.
pub fn read_header(src: &mut dyn HeaderSource) -> Result<Header, ReadError> {
    let mut taken: Vec<u8> = Vec::new();
    let mut buf = [0u8; PEEK_LEN];
    // Every round but a waiting one takes at least one byte, and the
    // parser refuses more than V2_MAX_LEN, so this ends.
    loop {
        let n = match src.peek(&mut buf) {
            Ok(0) => return Err(ReadError::Closed),
            Ok(n) => n.min(buf.len()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                src.wait().map_err(ReadError::Io)?;
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ReadError::Io(e)),
        };
        let before = taken.len();
        taken.extend_from_slice(&buf[..n]);
        match parse(&taken) {
            Ok(Some((header, len))) => {
                let mut rest = vec![0u8; len - before];
                src.take(&mut rest).map_err(ReadError::Io)?;
                return Ok(header);
            }
            Ok(None) => src.take(&mut buf[..n]).map_err(ReadError::Io)?,
            Err(e) => return Err(ReadError::Invalid(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    fn addrs(src: &str, dst: &str) -> Addresses {
        Addresses {
            source: src.parse().unwrap(),
            destination: dst.parse().unwrap(),
        }
    }

    #[test]
    fn v1_lines_are_exact() {
        let a = addrs("192.168.0.1:56324", "192.168.0.11:443");
        assert_eq!(
            encode(Version::V1, Some(&a)),
            b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
        );
        let a = addrs("[::1]:40000", "[2001:db8::11]:8080");
        assert_eq!(
            encode(Version::V1, Some(&a)),
            b"PROXY TCP6 ::1 2001:db8::11 40000 8080\r\n"
        );
        assert_eq!(encode(Version::V1, None), b"PROXY UNKNOWN\r\n");
        // IPv4-mapped ends (a dual-stack listener) are sent as IPv4.
        let a = addrs("[::ffff:10.0.0.1]:1", "[::ffff:10.0.0.2]:2");
        assert_eq!(
            encode(Version::V1, Some(&a)),
            b"PROXY TCP4 10.0.0.1 10.0.0.2 1 2\r\n"
        );
        // Mixed families become IPv6.
        let a = addrs("10.0.0.1:1", "[::1]:2");
        assert_eq!(
            encode(Version::V1, Some(&a)),
            b"PROXY TCP6 ::ffff:10.0.0.1 ::1 1 2\r\n"
        );
    }

    #[test]
    fn v2_bytes_are_exact() {
        let sig = b"\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0A";
        let a = addrs("127.0.0.2:40000", "127.0.0.1:8080");
        let mut want = sig.to_vec();
        want.extend_from_slice(&[0x21, 0x11, 0x00, 0x0C]);
        want.extend_from_slice(&[127, 0, 0, 2, 127, 0, 0, 1]);
        want.extend_from_slice(&[0x9C, 0x40, 0x1F, 0x90]);
        assert_eq!(encode(Version::V2, Some(&a)), want);

        let a = addrs("[::1]:1", "[2001:db8::2]:65535");
        let mut want = sig.to_vec();
        want.extend_from_slice(&[0x21, 0x21, 0x00, 0x24]);
        want.extend_from_slice(&[0; 15]);
        want.push(1);
        want.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        want.extend_from_slice(&[0; 11]);
        want.push(2);
        want.extend_from_slice(&[0x00, 0x01, 0xFF, 0xFF]);
        assert_eq!(encode(Version::V2, Some(&a)), want);

        let mut want = sig.to_vec();
        want.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
        assert_eq!(encode(Version::V2, None), want);
    }

    #[test]
    fn encoded_headers_parse_back() {
        for a in [
            Some(addrs("1.2.3.4:5", "6.7.8.9:10")),
            Some(addrs("[fe80::1]:65535", "[::]:0")),
            None,
        ] {
            for v in [Version::V1, Version::V2] {
                let mut bytes = encode(v, a.as_ref());
                let len = bytes.len();
                bytes.extend_from_slice(b"GET / HTTP/1.0\r\n\r\n");
                let (h, n) = parse(&bytes).unwrap().unwrap();
                assert_eq!(n, len);
                assert_eq!(h.version, v);
                assert_eq!(h.addresses, a);
                // Every proper prefix is incomplete, never an error.
                for cut in 0..len {
                    assert_eq!(parse(&bytes[..cut]), Ok(None), "{v:?} cut {cut}");
                }
            }
        }
    }

    #[test]
    fn v1_unknown_ignores_the_rest_of_its_line() {
        let line = b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
        assert_eq!(line.len(), V1_MAX_LEN);
        let (h, n) = parse(line).unwrap().unwrap();
        assert_eq!((h.addresses, n), (None, V1_MAX_LEN));
    }

    #[test]
    fn bad_v1_lines_are_refused() {
        for line in [
            &b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"[..],
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX",
            b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
            b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
            b"PROXY TCP4 ::1 ::1 1 2\r\n",
            b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY \x00TCP4\r\n",
            b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
            b"GET / HTTP/1.0\r\n",
        ] {
            assert!(parse(line).is_err(), "{:?}", String::from_utf8_lossy(line));
        }
        let long = [b"PROXY UNKNOWN ".as_slice(), &[b'x'; 100]].concat();
        assert_eq!(parse(&long), Err(ParseError::LineTooLong));
    }

    #[test]
    fn bad_v2_headers_are_refused() {
        let good = encode(Version::V2, Some(&addrs("1.2.3.4:5", "6.7.8.9:10")));
        let with = |at: usize, byte: u8| {
            let mut b = good.clone();
            b[at] = byte;
            parse(&b)
        };
        assert!(with(3, b'X').is_err(), "signature");
        assert!(with(12, 0x11).is_err(), "version 1");
        assert!(with(12, 0x22).is_err(), "command 2");
        assert!(with(13, 0x41).is_err(), "family 4");
        assert!(with(13, 0x13).is_err(), "transport 3");
        // An IPv6 family with an IPv4-sized block.
        assert!(with(13, 0x21).is_err());
        // A length beyond what is taken, refused before the bytes arrive.
        let mut b = good[..16].to_vec();
        b[14] = 0xFF;
        b[15] = 0xFF;
        assert_eq!(parse(&b), Err(ParseError::TooLong(16 + 65535)));
        // LOCAL with an address block: the block is skipped, not used.
        let mut b = good.clone();
        b[12] = 0x20;
        assert_eq!(parse(&b).unwrap().unwrap().0.addresses, None);
        // A Unix or UDP family: accepted, the real ends stand.
        let mut b = V2_SIGNATURE.to_vec();
        b.extend_from_slice(&[0x21, 0x31, 0x00, 216]);
        b.extend_from_slice(&[0; 216]);
        assert_eq!(
            parse(&b).unwrap().unwrap(),
            (
                Header {
                    version: Version::V2,
                    addresses: None
                },
                232
            )
        );
        assert_eq!(with(13, 0x12).unwrap().unwrap().0.addresses, None);
        // TLVs after the addresses are skipped with the header.
        let mut b = good.clone();
        b[15] = 12 + 5;
        b.extend_from_slice(&[0x04, 0x00, 0x02, b'h', b'i', b'G']);
        let (h, n) = parse(&b).unwrap().unwrap();
        assert_eq!((h.addresses.is_some(), n), (true, 33));
    }

    #[test]
    fn hostile_input_never_panics() {
        // Every prefix of assorted inputs, and pseudo-random bytes behind
        // a valid signature.
        let mut seed: u32 = 12345;
        let mut next = || {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (seed >> 16) as u8
        };
        for round in 0..2000 {
            let mut b: Vec<u8> = if round % 2 == 0 {
                V2_SIGNATURE.to_vec()
            } else {
                b"PROXY ".to_vec()
            };
            let extra = usize::from(next()) % 300;
            for _ in 0..extra {
                b.push(next());
            }
            for cut in 0..=b.len() {
                let _ = parse(&b[..cut]);
            }
        }
    }

    /// A socket fed in chunks: each wait delivers the next chunk.
    struct Chunks {
        arrived: VecDeque<u8>,
        pending: VecDeque<Vec<u8>>,
        waits: usize,
        max_waits: usize,
    }

    impl Chunks {
        fn new(chunks: Vec<Vec<u8>>, max_waits: usize) -> Chunks {
            Chunks {
                arrived: VecDeque::new(),
                pending: chunks.into(),
                waits: 0,
                max_waits,
            }
        }
    }

    impl HeaderSource for Chunks {
        fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.arrived.is_empty() {
                return if self.pending.is_empty() && self.waits > 0 {
                    Ok(0)
                } else {
                    Err(io::ErrorKind::WouldBlock.into())
                };
            }
            let n = buf.len().min(self.arrived.len());
            for (i, b) in self.arrived.iter().take(n).enumerate() {
                buf[i] = *b;
            }
            Ok(n)
        }
        fn take(&mut self, buf: &mut [u8]) -> io::Result<()> {
            assert!(buf.len() <= self.arrived.len(), "took more than peeked");
            for b in buf.iter_mut() {
                *b = self.arrived.pop_front().unwrap();
            }
            Ok(())
        }
        fn wait(&mut self) -> io::Result<()> {
            self.waits += 1;
            if self.waits > self.max_waits {
                return Err(io::ErrorKind::TimedOut.into());
            }
            if let Some(c) = self.pending.pop_front() {
                self.arrived.extend(c);
            }
            Ok(())
        }
    }

    #[test]
    fn reader_takes_the_header_and_nothing_more() {
        for v in [Version::V1, Version::V2] {
            let header = encode(v, Some(&addrs("[::1]:1234", "[::1]:80")));
            let mut all = header.clone();
            all.extend_from_slice(b"DATA");
            // At once, and byte by byte.
            for chunk in [all.len(), 1, 7] {
                let chunks: Vec<Vec<u8>> = all.chunks(chunk).map(<[u8]>::to_vec).collect();
                let mut src = Chunks::new(chunks, 1000);
                let h = read_header(&mut src).unwrap();
                assert_eq!(h.addresses.unwrap().source.port(), 1234);
                // What is left is exactly the data (and what has not
                // arrived yet).
                let mut rest: Vec<u8> = src.arrived.iter().copied().collect();
                rest.extend(src.pending.iter().flatten());
                assert_eq!(rest, b"DATA", "{v:?} in chunks of {chunk}");
            }
        }
    }

    #[test]
    fn reader_refuses_garbage_slowness_and_early_close() {
        let mut src = Chunks::new(vec![b"GET / HTTP/1.0\r\n\r\n".to_vec()], 10);
        assert!(matches!(
            read_header(&mut src),
            Err(ReadError::Invalid(ParseError::NoHeader))
        ));
        // Garbage is refused at its first byte, whatever follows.
        let mut src = Chunks::new(vec![b"X".to_vec()], 10);
        assert!(matches!(read_header(&mut src), Err(ReadError::Invalid(_))));
        let line = b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n";
        let chunks: Vec<Vec<u8>> = line.chunks(1).map(<[u8]>::to_vec).collect();
        let mut src = Chunks::new(chunks, 5);
        assert!(
            matches!(read_header(&mut src), Err(ReadError::Io(e)) if e.kind() == io::ErrorKind::TimedOut)
        );
        let mut src = Chunks::new(vec![line[..10].to_vec()], 5);
        assert!(matches!(read_header(&mut src), Err(ReadError::Closed)));
    }
}
