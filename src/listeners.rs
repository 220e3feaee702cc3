//! Opening the listening sockets (spec cli.md §4) and the `listen` command.

use std::io;
use std::os::fd::OwnedFd;

use crate::addr::{self, ListenAddr, Proto};
use crate::control::{CommandError, Origin};
use crate::runtime::{AcceptorRequest, Shared};
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

/// `listen ADDR`: at start-up it names the listener (and the first
/// positional argument is then not used as a backend, as in pen); at run
/// time the new listener replaces the old one, existing connections stay.
/// Unlike pen, a bind failure keeps the old listener instead of exiting.
pub fn listen_command(shared: &Shared, spec: &str, origin: Origin) -> Result<String, CommandError> {
    let udp = shared.info().udp;
    let proto = if udp { Proto::Udp } else { Proto::Tcp };
    let addr = addr::parse_listen(spec, proto)
        .map_err(|e| CommandError::Invalid(format!("listen: {e}")))?;
    if origin == Origin::Startup {
        let mut info = shared.info();
        info.listen = Some(spec.to_string());
        info.listen_from_command = true;
        return Ok(format!("{spec}\n"));
    }
    if udp {
        return Err(CommandError::Invalid(
            "listen: changing the UDP listener at run time is not supported; restart pen".into(),
        ));
    }
    let backlog = shared.lock().settings.listen_queue;
    let fd =
        open(&addr, false, backlog).map_err(|e| CommandError::Invalid(bind_error(spec, &e)))?;
    shared.request(AcceptorRequest::Listen(vec![fd]));
    shared.info().listen = Some(spec.to_string());
    Ok(format!("{spec}\n"))
}
