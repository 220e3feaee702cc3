//! Opening the listening sockets (doc/pen-0.34.1.md, "Listen addresses") and
//! the `listen` command.

use std::io;
use std::os::fd::OwnedFd;

use crate::addr::ListenAddr;
use crate::sys::socket::{self, Kind};

/// Opens a listener for `addr`: TCP (or UDP in `-U` mode) with
/// SO_REUSEADDR and SO_KEEPALIVE, or a Unix stream socket.
/// TCP listeners get TCP_NODELAY, which accepted sockets inherit: the
/// relay writes what it reads at once, so Nagle's algorithm could only
/// delay replies (a reply read in two parts would wait for the client's
/// delayed ACK).
pub fn open(addr: &ListenAddr, udp: bool, backlog: i32) -> io::Result<OwnedFd> {
    match addr {
        ListenAddr::Inet(a) => {
            let kind = if udp { Kind::Datagram } else { Kind::Stream };
            // No SO_REUSEPORT: a second process must not be able to bind
            // the same port silently (UDP replies leave from this socket).
            let fd = socket::bind_inet(a, kind, backlog, false)?;
            if !udp {
                use std::os::fd::AsFd;
                socket::set_nodelay(fd.as_fd())?;
            }
            Ok(fd)
        }
        ListenAddr::Unix(path) => socket::listen_unix(path, backlog),
    }
}

/// A clear message for a listener that could not be opened.
pub fn bind_error(spec: &str, e: &io::Error) -> String {
    format!("can't listen on {spec}: {e}")
}
