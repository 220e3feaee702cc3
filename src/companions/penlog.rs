//! penlog: forwards a web server's access log lines, read on stdin, to
//! penlogd as UDP datagrams (doc/pen-0.34.1.md, "penlog").
//!
//! Intended use: Apache `CustomLog "|penlog loghost 10000" common`.

use std::ffi::OsString;
use std::io::{self, BufRead};
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};

use super::{parse_args, usage_error, Parsed, EXIT_FAILURE, EXIT_OK};
use crate::request_log::codec::WEB_LINE_PIECE_MAX;

const PROG: &str = "penlog";

const USAGE: &str = "\
Usage: penlog SERVER PORT [MY_IP]

Send each line read on standard input, newline included, as one UDP
datagram to penlogd at SERVER (host name, IPv4 or IPv6 address) and PORT.
Lines longer than 1023 bytes are sent in 1023-byte pieces.

  MY_IP      local address to send from; penlogd recognises the web server
             by this address, so it must be the address pen uses for it
  --help     print this help and exit
  --version  print the version and exit
";

/// Runs penlog with `args` (without the program name); returns the exit
/// status.
pub fn run(args: Vec<OsString>) -> i32 {
    let mut opts = getopts::Options::new();
    let matches = match parse_args(PROG, USAGE, &mut opts, args) {
        Parsed::Run(m) => m,
        Parsed::Exit(status) => return status,
    };
    let (server, port, my_ip) = match matches.free.as_slice() {
        [server, port] => (server, port, None),
        [server, port, my_ip] => (server, port, Some(my_ip)),
        [] | [_] => return usage_error(PROG, "SERVER and PORT are required"),
        _ => return usage_error(PROG, "too many arguments"),
    };
    let port: u16 = match port.parse() {
        Ok(p) if p != 0 => p,
        _ => return usage_error(PROG, &format!("'{port}' is not a port number (1-65535)")),
    };
    let (socket, destination) = match open_socket(server, port, my_ip.map(String::as_str)) {
        Ok(pair) => pair,
        Err(msg) => {
            eprintln!("{PROG}: {msg}");
            return EXIT_FAILURE;
        }
    };
    match forward_lines(io::stdin().lock(), &socket, destination) {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("{PROG}: cannot read standard input: {e}");
            EXIT_FAILURE
        }
    }
}

/// Resolves the destination and binds a socket of the same family, to
/// `my_ip` if given.
fn open_socket(
    server: &str,
    port: u16,
    my_ip: Option<&str>,
) -> Result<(UdpSocket, SocketAddr), String> {
    let destinations: Vec<SocketAddr> = (server, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve '{server}': {e}"))?
        .collect();
    let (local, destination) = match my_ip {
        Some(my_ip) => {
            let local = (my_ip, 0)
                .to_socket_addrs()
                .map_err(|e| format!("cannot resolve '{my_ip}': {e}"))?
                .next()
                .ok_or_else(|| format!("'{my_ip}' has no address"))?;
            let destination = destinations
                .iter()
                .find(|d| d.is_ipv4() == local.is_ipv4())
                .copied()
                .ok_or_else(|| {
                    let family = if local.is_ipv4() { "IPv4" } else { "IPv6" };
                    format!("'{server}' has no {family} address to match '{my_ip}'")
                })?;
            (local, destination)
        }
        None => {
            let destination = *destinations
                .first()
                .ok_or_else(|| format!("'{server}' has no address"))?;
            let local: SocketAddr = if destination.is_ipv4() {
                (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            (local, destination)
        }
    };
    let socket =
        UdpSocket::bind(local).map_err(|e| format!("cannot bind to {}: {e}", local.ip()))?;
    Ok((socket, destination))
}

/// Sends every piece of input as one datagram until end of input. Send
/// errors are reported on stderr when they start or change, then ignored
/// (losing a log line must not stop the web server's logging).
fn forward_lines(
    mut input: impl BufRead,
    socket: &UdpSocket,
    destination: SocketAddr,
) -> io::Result<()> {
    // At most WEB_LINE_PIECE_MAX bytes go into one datagram; longer lines
    // are sent in pieces (man/penlog.1).
    let mut piece = Vec::with_capacity(WEB_LINE_PIECE_MAX);
    let mut last_error: Option<io::ErrorKind> = None;
    while read_piece(&mut input, &mut piece, WEB_LINE_PIECE_MAX)? > 0 {
        match socket.send_to(&piece, destination) {
            Ok(_) => last_error = None,
            Err(e) => {
                if last_error != Some(e.kind()) {
                    eprintln!("{PROG}: cannot send to {destination}: {e}");
                }
                last_error = Some(e.kind());
            }
        }
    }
    Ok(())
}

/// Reads the next piece of input into `piece`: up to and including the next
/// newline, but at most `max` bytes (like `fgets` with a `max + 1` buffer).
/// Returns the piece's length, 0 at end of input.
pub fn read_piece(input: &mut impl BufRead, piece: &mut Vec<u8>, max: usize) -> io::Result<usize> {
    piece.clear();
    while piece.len() < max {
        let available = match input.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            break;
        }
        let room = max - piece.len();
        let window = &available[..available.len().min(room)];
        let (take, complete) = match window.iter().position(|&b| b == b'\n') {
            Some(nl) => (nl + 1, true),
            None => (window.len(), false),
        };
        piece.extend_from_slice(&window[..take]);
        input.consume(take);
        if complete {
            break;
        }
    }
    Ok(piece.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(input: &[u8], max: usize) -> Vec<Vec<u8>> {
        // A tiny BufReader capacity exercises refills in the middle of lines.
        let mut reader = io::BufReader::with_capacity(7, input);
        let mut out = Vec::new();
        let mut piece = Vec::new();
        while read_piece(&mut reader, &mut piece, max).unwrap() > 0 {
            out.push(piece.clone());
        }
        out
    }

    #[test]
    fn lines_keep_their_newline() {
        assert_eq!(
            pieces(b"a b\nccc\n", WEB_LINE_PIECE_MAX),
            vec![b"a b\n".to_vec(), b"ccc\n".to_vec()]
        );
    }

    #[test]
    fn last_line_without_newline_is_sent() {
        assert_eq!(
            pieces(b"x\ny", WEB_LINE_PIECE_MAX),
            vec![b"x\n".to_vec(), b"y".to_vec()]
        );
    }

    #[test]
    fn long_lines_are_split_like_fgets() {
        // 10 bytes + newline with room for 4: "abcd" "efgh" "ij\n".
        assert_eq!(
            pieces(b"abcdefghij\nk\n", 4),
            vec![
                b"abcd".to_vec(),
                b"efgh".to_vec(),
                b"ij\n".to_vec(),
                b"k\n".to_vec()
            ]
        );
        // Exactly max bytes before the newline: the newline comes alone.
        assert_eq!(pieces(b"abcd\n", 4), vec![b"abcd".to_vec(), b"\n".to_vec()]);
    }

    #[test]
    fn usage_states_the_piece_size() {
        let size = WEB_LINE_PIECE_MAX.to_string();
        assert_eq!(USAGE.matches(size.as_str()).count(), 2, "{USAGE}");
    }

    #[test]
    fn empty_input_sends_nothing() {
        assert!(pieces(b"", WEB_LINE_PIECE_MAX).is_empty());
    }
}
