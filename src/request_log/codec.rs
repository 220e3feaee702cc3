//! The request log's two wire formats, written by pen (`-l`) and read back
//! by the companions (man/pen.1, REQUEST LOG):
//!
//! - the file line `CLIENT UNIXTIME SERVER REQUEST`, which mergelogs reads
//!   (man/mergelogs.1);
//! - the penlogd datagram `+ CLIENT SERVER REQUEST`, which penlogd receives
//!   on the same port as the web servers' access log lines that penlog sends
//!   (man/penlogd.1, man/penlog.1).
//!
//! Both decode to one [`RequestRecord`]. Decoding never panics: truncated,
//! oversized and non-UTF-8 input is refused with a [`Malformed`] reason.
//! Leaf module: it uses std only.

use std::fmt;
use std::net::IpAddr;

/// pen writes at most this many bytes of a request into a file line
/// (man/pen.1, REQUEST LOG; pen 0.34.1 kept the first 100). mergelogs takes
/// a request of exactly this length as possibly cut short.
pub const FILE_REQUEST_MAX: usize = 100;

/// Longest penlogd datagram pen sends, newline included (man/pen.1, REQUEST
/// LOG): pen 0.34.1 formatted it into a 1024-byte buffer.
pub const DATAGRAM_MAX: usize = 1024;

/// Longest piece of a web server's log line penlog sends as one datagram
/// (man/penlog.1): pen 0.34.1's penlog read its input with fgets into a
/// buffer of [`DATAGRAM_MAX`] bytes, which leaves room for one byte less.
pub const WEB_LINE_PIECE_MAX: usize = DATAGRAM_MAX - 1;

/// First byte of a datagram from pen; whatever else penlogd receives is a
/// web server's access log line (man/penlogd.1).
pub const RECORD_MARK: u8 = b'+';

/// Digits of the longest UNIXTIME a file line may carry (`i64::MAX` has 19).
const TIME_DIGITS_MAX: usize = 19;

// ---------------------------------------------------------------------------
// Encoding (pen).

/// The request part of a chunk read from a client: up to the first CR or LF.
fn first_request_line(chunk: &[u8]) -> &[u8] {
    let end = chunk
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(chunk.len());
    &chunk[..end]
}

/// The file line `CLIENT UNIXTIME SERVER REQUEST\n` for a chunk read from a
/// client: at most [`FILE_REQUEST_MAX`] request bytes, bytes >= 0x80
/// replaced by '.'.
pub fn encode_file_line(client: &str, time: i64, server: &str, chunk: &[u8]) -> Vec<u8> {
    let req = first_request_line(&chunk[..chunk.len().min(FILE_REQUEST_MAX)]);
    let mut line = format!("{client} {time} {server} ").into_bytes();
    line.extend(req.iter().map(|&b| if b >= 0x80 { b'.' } else { b }));
    line.push(b'\n');
    line
}

/// The penlogd datagram `+ CLIENT SERVER REQUEST\n` for a chunk read from a
/// client, at most [`DATAGRAM_MAX`] bytes (the request is cut to fit).
pub fn encode_datagram(client: &str, server: &str, chunk: &[u8]) -> Vec<u8> {
    let mut line = format!("{} {client} {server} ", char::from(RECORD_MARK)).into_bytes();
    let room = DATAGRAM_MAX.saturating_sub(line.len() + 1);
    let req = first_request_line(chunk);
    line.extend_from_slice(&req[..req.len().min(room)]);
    line.push(b'\n');
    line
}

// ---------------------------------------------------------------------------
// Decoding (penlogd, mergelogs).

/// A server as a record or a command line names it: an address compares by
/// value (`::1` equals `0:0::1`, `::ffff:127.0.0.2` equals `127.0.0.2`), any
/// other name as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Ip(IpAddr),
    Name(Vec<u8>),
}

impl Host {
    /// The host for a textual server name or address.
    pub fn new(text: &[u8]) -> Self {
        match std::str::from_utf8(text)
            .ok()
            .and_then(|s| s.parse::<IpAddr>().ok())
        {
            Some(ip) => Host::Ip(ip.to_canonical()),
            None => Host::Name(text.to_vec()),
        }
    }
}

/// One request pen logged, read back from a file line or a datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// The real client as pen wrote it (empty in a file line for a client
    /// of a Unix socket).
    pub client: Vec<u8>,
    /// The backend (web server) pen sent the request to.
    pub server: Host,
    /// The request line as pen logged it (a file line keeps at most
    /// [`FILE_REQUEST_MAX`] bytes).
    pub request: Vec<u8>,
}

/// A decoded file line: when pen logged the request, and the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileLine {
    /// UNIXTIME, seconds since the epoch.
    pub time: i64,
    pub record: RequestRecord,
}

/// Why a line is not a record; the messages name the missing part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// File line: nothing after the client.
    NoTimeField,
    /// File line: UNIXTIME is not 1 to 19 decimal digits.
    BadTime,
    /// File line: nothing after the time.
    NoServerField,
    /// File line: the server field is empty.
    EmptyServerField,
    /// Datagram: does not start with [`RECORD_MARK`].
    NoRecordMark,
    /// Datagram: nothing after the mark.
    NoClient,
    /// Datagram: nothing after the client.
    NoServer,
    /// Datagram: the server is not an IP address.
    BadServerAddress,
    /// Datagram: no request after the server.
    NoRequest,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Malformed::NoTimeField => "no time field",
            Malformed::BadTime => "time is not a number of seconds",
            Malformed::NoServerField => "no server field",
            Malformed::EmptyServerField => "empty server field",
            Malformed::NoRecordMark => "no leading '+'",
            Malformed::NoClient => "no client address",
            Malformed::NoServer => "no server address",
            Malformed::BadServerAddress => "bogus server address",
            Malformed::NoRequest => "no request",
        })
    }
}

impl std::error::Error for Malformed {}

/// Decodes a file line (without its newline or a trailing CR). Fields are
/// separated by single spaces, as pen writes them; the client and the
/// request may be empty.
pub fn decode_file_line(line: &[u8]) -> Result<FileLine, Malformed> {
    let mut fields = line.splitn(4, |&b| b == b' ');
    let client = fields.next().unwrap_or_default();
    let time = fields.next().ok_or(Malformed::NoTimeField)?;
    let server = fields.next().ok_or(Malformed::NoServerField)?;
    let request = fields.next().unwrap_or_default();
    let time = decimal_seconds(time).ok_or(Malformed::BadTime)?;
    if server.is_empty() {
        return Err(Malformed::EmptyServerField);
    }
    Ok(FileLine {
        time,
        record: RequestRecord {
            client: client.to_vec(),
            server: Host::new(server),
            request: request.to_vec(),
        },
    })
}

/// 1 to [`TIME_DIGITS_MAX`] ASCII digits (no sign) that fit an i64.
fn decimal_seconds(text: &[u8]) -> Option<i64> {
    if text.is_empty() || text.len() > TIME_DIGITS_MAX || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// Decodes a datagram from pen (without its newline). Fields are separated
/// by runs of spaces; the request is the rest of the datagram, less a
/// trailing CR. The server must be an IP address, as penlogd compares it
/// with the address web log lines come from. A record without a request is
/// refused, as pen's penlogd did: it could match no web line and would only
/// push a real record out of penlogd's memory.
pub fn decode_datagram(line: &[u8]) -> Result<RequestRecord, Malformed> {
    let rest = line
        .strip_prefix(&[RECORD_MARK])
        .ok_or(Malformed::NoRecordMark)?;
    let (client, rest) = next_field(rest).ok_or(Malformed::NoClient)?;
    let (server, rest) = next_field(rest).ok_or(Malformed::NoServer)?;
    let server = match Host::new(server) {
        Host::Ip(ip) => Host::Ip(ip),
        Host::Name(_) => return Err(Malformed::BadServerAddress),
    };
    let request = trim_leading_spaces(rest);
    let request = request.strip_suffix(b"\r").unwrap_or(request);
    if request.is_empty() {
        return Err(Malformed::NoRequest);
    }
    Ok(RequestRecord {
        client: client.to_vec(),
        server,
        request: request.to_vec(),
    })
}

fn trim_leading_spaces(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| b != b' ').unwrap_or(s.len());
    &s[start..]
}

/// The next space-delimited field and what follows it.
fn next_field(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let s = trim_leading_spaces(s);
    if s.is_empty() {
        return None;
    }
    let end = s.iter().position(|&b| b == b' ').unwrap_or(s.len());
    Some((&s[..end], &s[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Host {
        Host::Ip(s.parse().unwrap())
    }

    /// The file line as mergelogs reads it: without its newline.
    fn decode_written_file_line(line: &[u8]) -> Result<FileLine, Malformed> {
        decode_file_line(line.strip_suffix(b"\n").unwrap())
    }

    /// The datagram as penlogd reads it: without its newline.
    fn decode_sent_datagram(datagram: &[u8]) -> Result<RequestRecord, Malformed> {
        decode_datagram(datagram.strip_suffix(b"\n").unwrap())
    }

    #[test]
    fn file_line_format() {
        assert_eq!(
            encode_file_line(
                "127.0.0.5",
                1795684273,
                "127.0.0.1",
                b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
            ),
            b"127.0.0.5 1795684273 127.0.0.1 GET /a HTTP/1.1\n".to_vec()
        );
        assert_eq!(
            encode_file_line(
                "127.0.0.6",
                1,
                "127.0.0.1",
                b"HEAD /g?q=\xe9\x01 HTTP/1.1\r\n"
            ),
            b"127.0.0.6 1 127.0.0.1 HEAD /g?q=.\x01 HTTP/1.1\n".to_vec()
        );
        assert_eq!(
            encode_file_line("127.0.0.1", 2, "127.0.0.1", b"\r\n"),
            b"127.0.0.1 2 127.0.0.1 \n".to_vec()
        );
        let long = vec![b'a'; 300];
        assert_eq!(
            encode_file_line("c", 3, "s", &long).len(),
            "c 3 s ".len() + 100 + 1
        );
    }

    #[test]
    fn datagram_format() {
        assert_eq!(
            encode_datagram("127.0.0.7", "127.0.0.1", b"GET /net HTTP/1.1\r\n\r\n"),
            b"+ 127.0.0.7 127.0.0.1 GET /net HTTP/1.1\n".to_vec()
        );
        assert_eq!(encode_datagram("c", "s", &vec![b'x'; 5000]).len(), 1024);
    }

    #[test]
    fn file_lines_round_trip() {
        let line = encode_file_line(
            "10.1.1.1",
            1_795_683_600,
            "127.0.0.2",
            b"GET /x HTTP/1.0\r\n",
        );
        assert_eq!(
            decode_written_file_line(&line),
            Ok(FileLine {
                time: 1_795_683_600,
                record: RequestRecord {
                    client: b"10.1.1.1".to_vec(),
                    server: ip("127.0.0.2"),
                    request: b"GET /x HTTP/1.0".to_vec(),
                },
            })
        );
        // A Unix socket client, a Unix socket server, an empty request.
        let line = encode_file_line("", 0, "/run/web.sock", b"\n");
        let decoded = decode_written_file_line(&line).unwrap();
        assert_eq!(decoded.time, 0);
        assert!(decoded.record.client.is_empty());
        assert_eq!(decoded.record.server, Host::Name(b"/run/web.sock".to_vec()));
        assert!(decoded.record.request.is_empty());
        // The stored request is what pen kept: cut, high bytes as dots,
        // inner spaces intact.
        let mut chunk = b"GET /\xff a b ".to_vec();
        chunk.extend(vec![b'z'; 300]);
        let line = encode_file_line("::1", 5, "::1", &chunk);
        let request = decode_written_file_line(&line).unwrap().record.request;
        assert_eq!(request.len(), FILE_REQUEST_MAX);
        assert!(request.starts_with(b"GET /. a b zz"));
    }

    #[test]
    fn datagrams_round_trip() {
        let datagram = encode_datagram("2001:db8::7", "0:0::1", b"GET /six HTTP/1.1\r\n");
        assert_eq!(
            decode_sent_datagram(&datagram),
            Ok(RequestRecord {
                client: b"2001:db8::7".to_vec(),
                server: ip("::1"),
                request: b"GET /six HTTP/1.1".to_vec(),
            })
        );
        // Bytes >= 0x80 travel as they are; a long request is cut to fit.
        let mut chunk = b"GET /\xe9".to_vec();
        chunk.extend(vec![b'q'; 5000]);
        let datagram = encode_datagram("10.0.0.1", "127.0.0.2", &chunk);
        assert_eq!(datagram.len(), DATAGRAM_MAX);
        let record = decode_sent_datagram(&datagram).unwrap();
        assert!(record.request.starts_with(b"GET /\xe9qq"));
        assert_eq!(
            record.request.len(),
            DATAGRAM_MAX - "+ 10.0.0.1 127.0.0.2 \n".len()
        );
        // An IPv4-mapped server is the IPv4 address.
        let record = decode_datagram(b"+ c ::ffff:127.0.0.2 GET /").unwrap();
        assert_eq!(record.server, ip("127.0.0.2"));
    }

    #[test]
    fn datagram_fields_may_be_separated_by_runs_of_spaces() {
        let r = decode_datagram(b"+ 10.0.0.1  127.0.0.2  GET /x HTTP/1.0\r").unwrap();
        assert_eq!(r.client, b"10.0.0.1");
        assert_eq!(r.server, ip("127.0.0.2"));
        assert_eq!(r.request, b"GET /x HTTP/1.0");
    }

    /// Checks that `decode` refuses each input for the reason given.
    fn assert_refused<T: fmt::Debug + PartialEq>(
        decode: fn(&[u8]) -> Result<T, Malformed>,
        cases: &[(&[u8], Malformed)],
    ) {
        for &(bad, why) in cases {
            assert_eq!(decode(bad), Err(why), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn malformed_datagrams_are_refused_with_a_reason() {
        let cases: [(&[u8], Malformed); 12] = [
            (b"", Malformed::NoRecordMark),
            (b"GET / HTTP/1.0", Malformed::NoRecordMark),
            (b"+", Malformed::NoClient),
            (b"+   ", Malformed::NoClient),
            (b"+ 10.0.0.1", Malformed::NoServer),
            (b"+ 10.0.0.1 ", Malformed::NoServer),
            (
                b"+ 10.0.0.1 not-an-address GET /",
                Malformed::BadServerAddress,
            ),
            (
                b"+ 10.0.0.1 127.0.0.\xff GET /",
                Malformed::BadServerAddress,
            ),
            (b"+ 10.0.0.1 127.0.0.2", Malformed::NoRequest),
            (b"+ 10.0.0.1 127.0.0.2 ", Malformed::NoRequest),
            (b"+ 10.0.0.1 127.0.0.2  \r", Malformed::NoRequest),
            // pen writes an empty client for a Unix socket client; the
            // server then stands where the client should and the request
            // where the server should.
            (b"+  127.0.0.2 GET /", Malformed::BadServerAddress),
        ];
        assert_refused(decode_datagram, &cases);
        assert_eq!(Malformed::NoRecordMark.to_string(), "no leading '+'");
        assert_eq!(
            Malformed::BadServerAddress.to_string(),
            "bogus server address"
        );
    }

    #[test]
    fn malformed_file_lines_are_refused_with_a_reason() {
        let cases: [(&[u8], Malformed); 11] = [
            (b"", Malformed::NoTimeField),
            (b"junk", Malformed::NoTimeField),
            (b"10.1.1.1 1795683600", Malformed::NoServerField),
            (b"10.1.1.1 soon 127.0.0.2 GET /", Malformed::BadTime),
            (b"10.1.1.1 -5 127.0.0.2 GET /", Malformed::BadTime),
            (b"10.1.1.1  127.0.0.2 GET /", Malformed::BadTime),
            (
                b"10.1.1.1 17956836\xff0 127.0.0.2 GET /",
                Malformed::BadTime,
            ),
            // 20 digits, and 19 digits beyond i64::MAX.
            (b"c 12345678901234567890 s r", Malformed::BadTime),
            (b"c 9999999999999999999 s r", Malformed::BadTime),
            (b"10.1.1.1 1795683600  GET /", Malformed::EmptyServerField),
            (b"10.1.1.1 1795683600 ", Malformed::EmptyServerField),
        ];
        assert_refused(decode_file_line, &cases);
        assert_eq!(
            decode_file_line(b"c 9223372036854775807 s r").map(|l| l.time),
            Ok(i64::MAX)
        );
        assert_eq!(
            Malformed::BadTime.to_string(),
            "time is not a number of seconds"
        );
    }

    #[test]
    fn huge_and_binary_input_does_not_panic() {
        let mut huge = vec![RECORD_MARK];
        huge.extend(std::iter::repeat_n(b'\xff', 100_000));
        assert_eq!(decode_datagram(&huge), Err(Malformed::NoServer));
        let mut huge = b"+ ".to_vec();
        huge.extend(std::iter::repeat_n(b'c', 100_000));
        huge.extend_from_slice(b" ::1 ");
        huge.extend(std::iter::repeat_n(b'\x00', 100_000));
        let record = decode_datagram(&huge).unwrap();
        assert_eq!(record.client.len(), 100_000);
        assert_eq!(record.request.len(), 100_000);
        let mut huge = std::iter::repeat_n(b'\x80', 100_000).collect::<Vec<u8>>();
        huge.extend_from_slice(b" 7");
        assert_eq!(decode_file_line(&huge), Err(Malformed::NoServerField));
        huge.push(b' ');
        huge.extend(std::iter::repeat_n(b'\x80', 100_000));
        huge.extend_from_slice(b" \r\n");
        let line = decode_file_line(&huge).unwrap();
        assert_eq!(line.time, 7);
        assert_eq!(line.record.client.len(), 100_000);
        assert_eq!(line.record.server, Host::Name(vec![b'\x80'; 100_000]));
        assert_eq!(line.record.request, b"\r\n");
        // Every prefix of a valid line, cut anywhere.
        let file_line = encode_file_line("10.0.0.1", 17, "::1", b"GET / HTTP/1.1\r\n");
        let datagram = encode_datagram("10.0.0.1", "::1", b"GET / HTTP/1.1\r\n");
        for cut in 0..file_line.len().max(datagram.len()) {
            let _ = decode_file_line(&file_line[..cut.min(file_line.len())]);
            let _ = decode_datagram(&datagram[..cut.min(datagram.len())]);
        }
        // Encoding huge or odd chunks stays within the limits.
        let chunk = vec![b'\xff'; 1 << 20];
        assert_eq!(
            encode_file_line("c", 0, "s", &chunk).len(),
            "c 0 s ".len() + 101
        );
        let long_names = "n".repeat(2 * DATAGRAM_MAX);
        let datagram = encode_datagram(&long_names, &long_names, &chunk);
        assert!(datagram.ends_with(b" \n"));
        assert!(encode_datagram("c", "s", b"").ends_with(b"s \n"));
    }

    #[test]
    fn hosts_compare_by_value() {
        assert_eq!(Host::new(b"0:0::1"), Host::new(b"::1"));
        assert_eq!(Host::new(b"::ffff:10.0.0.1"), Host::new(b"10.0.0.1"));
        assert_eq!(Host::new(b"web1"), Host::Name(b"web1".to_vec()));
        assert_eq!(Host::new(b"\xff"), Host::Name(b"\xff".to_vec()));
    }
}
