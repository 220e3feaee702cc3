//! Socket creation, accept and connect over libc, for what std::net cannot
//! do: listen backlogs, socket options before bind/connect, non-blocking
//! connect with a timeout, accept4 straight into non-blocking mode.

use std::ffi::OsStr;
use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::poll;

/// The address of an accepted peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerAddr {
    Inet(SocketAddr),
    /// A Unix-socket peer; normally unnamed (empty path).
    Unix(PathBuf),
}

impl PeerAddr {
    /// The IP address, or `None` for Unix-socket peers.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            PeerAddr::Inet(a) => Some(a.ip()),
            PeerAddr::Unix(_) => None,
        }
    }
}

pub(crate) fn sockaddr_from(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

fn sockaddr_un_from(path: &Path) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: sockaddr_un is plain old data; all-zero is a valid value.
    let mut sun: libc::sockaddr_un = unsafe { zeroed() };
    sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() >= sun.sun_path.len() || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "Unix socket path too long or contains a NUL byte",
        ));
    }
    for (dst, src) in sun.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    let len = size_of::<libc::sa_family_t>() + bytes.len() + 1;
    Ok((sun, len as libc::socklen_t))
}

pub(crate) fn peer_from(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> PeerAddr {
    match storage.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin: &libc::sockaddr_in =
                unsafe { &*(storage as *const _ as *const libc::sockaddr_in) };
            PeerAddr::Inet(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6: &libc::sockaddr_in6 =
                unsafe { &*(storage as *const _ as *const libc::sockaddr_in6) };
            PeerAddr::Inet(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => {
            // AF_UNIX (or unknown): take the path bytes, if any.
            // SAFETY: the storage is large enough for a sockaddr_un.
            let sun: &libc::sockaddr_un =
                unsafe { &*(storage as *const _ as *const libc::sockaddr_un) };
            let off = size_of::<libc::sa_family_t>();
            let n = (len as usize).saturating_sub(off).min(sun.sun_path.len());
            let raw: Vec<u8> = sun.sun_path[..n]
                .iter()
                .map(|c| *c as u8)
                .take_while(|b| *b != 0)
                .collect();
            PeerAddr::Unix(PathBuf::from(OsStr::from_bytes(&raw)))
        }
    }
}

fn new_socket(family: libc::c_int, ty: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call with constant arguments.
    let fd = unsafe {
        syscall!(socket(
            family,
            ty | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0
        ))?
    };
    // SAFETY: socket succeeded; we are the only owner of the new descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn family_of(addr: &SocketAddr) -> libc::c_int {
    match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    }
}

/// Sets an integer socket option.
pub fn set_int_option(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: passes a pointer to a live c_int and its size; `fd` is
    // borrowed, so it stays open for the call.
    unsafe {
        syscall!(setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t
        ))?
    };
    Ok(())
}

pub fn set_nodelay(fd: BorrowedFd<'_>) -> io::Result<()> {
    set_int_option(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)
}

/// Kind of socket for [`bind_inet`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Stream,
    Datagram,
}

/// Creates a non-blocking IPv4/IPv6 socket bound to `addr` (SO_REUSEADDR),
/// and for streams listening with `backlog`.
pub fn bind_inet(
    addr: &SocketAddr,
    kind: Kind,
    backlog: i32,
    reuse_port: bool,
) -> io::Result<OwnedFd> {
    let ty = match kind {
        Kind::Stream => libc::SOCK_STREAM,
        Kind::Datagram => libc::SOCK_DGRAM,
    };
    let sock = new_socket(family_of(addr), ty)?;
    set_int_option(sock.as_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    if reuse_port {
        set_int_option(sock.as_fd(), libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    }
    if kind == Kind::Stream {
        // pen sets SO_KEEPALIVE on listeners; Linux passes it on to accepted sockets.
        set_int_option(sock.as_fd(), libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1)?;
    }
    let fd = sock.as_raw_fd();
    let (sa, len) = sockaddr_from(addr);
    // SAFETY: sa/len describe a valid sockaddr for this family.
    unsafe { syscall!(bind(fd, (&sa as *const libc::sockaddr_storage).cast(), len))? };
    if kind == Kind::Stream {
        // SAFETY: plain listen(2) on our socket.
        unsafe { syscall!(listen(fd, backlog))? };
    }
    Ok(sock)
}

/// Creates a non-blocking Unix stream listener at `path`, removing a stale
/// socket file first (as pen does).
pub fn listen_unix(path: &Path, backlog: i32) -> io::Result<OwnedFd> {
    let (sun, len) = sockaddr_un_from(path)?;
    let _ = std::fs::remove_file(path);
    let sock = new_socket(libc::AF_UNIX, libc::SOCK_STREAM)?;
    let fd = sock.as_raw_fd();
    // SAFETY: sun/len describe a valid sockaddr_un.
    unsafe { syscall!(bind(fd, (&sun as *const libc::sockaddr_un).cast(), len))? };
    // SAFETY: plain listen(2) on our socket.
    unsafe { syscall!(listen(fd, backlog))? };
    Ok(sock)
}

/// What an inherited socket is (systemd socket activation, `LISTEN_FDS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InheritedKind {
    /// SOCK_STREAM (else SOCK_DGRAM or something else).
    pub stream: bool,
    pub datagram: bool,
    /// SO_ACCEPTCONN: a stream socket that is listening.
    pub listening: bool,
}

fn int_option(fd: libc::c_int, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut v: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: v/len are a valid out-buffer for an int option.
    unsafe {
        syscall!(getsockopt(
            fd,
            level,
            name,
            (&mut v as *mut libc::c_int).cast(),
            &mut len
        ))?
    };
    Ok(v)
}

/// Takes ownership of descriptor `raw`, inherited from the process that
/// started this one, after checking that it is an open socket: sets it
/// close-on-exec and non-blocking, and says what kind of socket it is.
/// Each number must be adopted at most once (the caller's list is unique).
pub fn adopt_inherited(raw: i32) -> io::Result<(OwnedFd, InheritedKind)> {
    // SAFETY: F_GETFD only reads the flags of `raw`; EBADF if it is not open.
    unsafe { syscall!(fcntl(raw, libc::F_GETFD))? };
    let ty = int_option(raw, libc::SOL_SOCKET, libc::SO_TYPE).map_err(|e| {
        if e.raw_os_error() == Some(libc::ENOTSOCK) {
            io::Error::new(io::ErrorKind::InvalidInput, "not a socket")
        } else {
            e
        }
    })?;
    let listening = int_option(raw, libc::SOL_SOCKET, libc::SO_ACCEPTCONN)? != 0;
    // SAFETY: `raw` is open (F_GETFD succeeded) and, by the activation
    // protocol, given to this process alone; nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: plain flag changes on our descriptor.
    unsafe { syscall!(fcntl(raw, libc::F_SETFD, libc::FD_CLOEXEC))? };
    // SAFETY: as above.
    let fl = unsafe { syscall!(fcntl(raw, libc::F_GETFL))? };
    // SAFETY: as above.
    unsafe { syscall!(fcntl(raw, libc::F_SETFL, fl | libc::O_NONBLOCK))? };
    Ok((
        fd,
        InheritedKind {
            stream: ty == libc::SOCK_STREAM,
            datagram: ty == libc::SOCK_DGRAM,
            listening,
        },
    ))
}

/// Accepts one connection in non-blocking, close-on-exec mode.
pub fn accept(listener: BorrowedFd<'_>) -> io::Result<(OwnedFd, PeerAddr)> {
    // SAFETY: sockaddr_storage is plain old data.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: storage/len are a valid out-buffer for the peer address.
    let fd = unsafe {
        syscall!(accept4(
            listener.as_raw_fd(),
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            &mut len,
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC
        ))?
    };
    // SAFETY: accept4 returned a new descriptor that we now own.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok((sock, peer_from(&storage, len)))
}

/// The local address of a socket.
pub fn local_addr(fd: BorrowedFd<'_>) -> io::Result<PeerAddr> {
    // SAFETY: sockaddr_storage is plain old data.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: storage/len are a valid out-buffer.
    unsafe {
        syscall!(getsockname(
            fd.as_raw_fd(),
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            &mut len
        ))?
    };
    Ok(peer_from(&storage, len))
}

/// Options for an upstream connection.
#[derive(Clone, Debug, Default)]
pub struct ConnectOptions {
    /// Local address to bind before connecting (`source`).
    pub bind: Option<IpAddr>,
    /// Set IP_TRANSPARENT so `bind` may be a foreign (client) address.
    pub transparent: bool,
    pub keepalive: bool,
    pub nodelay: bool,
}

fn wait_connected(sock: OwnedFd, timeout: Duration) -> io::Result<OwnedFd> {
    let revents = poll::wait_one(sock.as_fd(), poll::OUT, Some(timeout))?;
    if revents == 0 {
        return Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"));
    }
    if revents & (poll::ERR | poll::HUP) == 0 {
        // Writable without error: connected (no SO_ERROR round trip needed).
        return Ok(sock);
    }
    let mut err: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: err/len are a valid out-buffer for SO_ERROR.
    unsafe {
        syscall!(getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut err as *mut libc::c_int).cast(),
            &mut len
        ))?
    };
    if err != 0 {
        return Err(io::Error::from_raw_os_error(err));
    }
    Err(io::Error::from_raw_os_error(libc::ECONNREFUSED))
}

/// Connects a non-blocking TCP socket to `addr` within `timeout`. The
/// returned socket stays non-blocking.
pub fn connect_inet(
    addr: &SocketAddr,
    opts: &ConnectOptions,
    timeout: Duration,
) -> io::Result<OwnedFd> {
    let sock = new_socket(family_of(addr), libc::SOCK_STREAM)?;
    if opts.keepalive {
        set_int_option(sock.as_fd(), libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1)?;
    }
    if opts.nodelay {
        set_int_option(sock.as_fd(), libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)?;
    }
    if opts.transparent {
        set_int_option(sock.as_fd(), libc::SOL_IP, libc::IP_TRANSPARENT, 1)?;
    }
    let fd = sock.as_raw_fd();
    if let Some(ip) = opts.bind {
        let (sa, len) = sockaddr_from(&SocketAddr::new(ip, 0));
        // SAFETY: sa/len describe a valid sockaddr.
        unsafe { syscall!(bind(fd, (&sa as *const libc::sockaddr_storage).cast(), len))? };
    }
    let (sa, len) = sockaddr_from(addr);
    // SAFETY: sa/len describe a valid sockaddr for the socket's family.
    match unsafe {
        syscall!(connect(
            fd,
            (&sa as *const libc::sockaddr_storage).cast(),
            len
        ))
    } {
        Ok(_) => Ok(sock),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => wait_connected(sock, timeout),
        Err(e) => Err(e),
    }
}

/// Connects a non-blocking Unix stream socket to `path`.
pub fn connect_unix(path: &Path, timeout: Duration) -> io::Result<OwnedFd> {
    let (sun, len) = sockaddr_un_from(path)?;
    let sock = new_socket(libc::AF_UNIX, libc::SOCK_STREAM)?;
    // SAFETY: sun/len describe a valid sockaddr_un.
    match unsafe {
        syscall!(connect(
            sock.as_raw_fd(),
            (&sun as *const libc::sockaddr_un).cast(),
            len
        ))
    } {
        Ok(_) => Ok(sock),
        Err(e)
            if e.raw_os_error() == Some(libc::EINPROGRESS)
                || e.raw_os_error() == Some(libc::EAGAIN) =>
        {
            wait_connected(sock, timeout)
        }
        Err(e) => Err(e),
    }
}

/// Which half of a connection to shut down.
#[derive(Clone, Copy, Debug)]
pub enum Shutdown {
    Write,
    Both,
}

/// shutdown(2); errors (e.g. ENOTCONN after a reset) are ignored.
pub fn shutdown(fd: BorrowedFd<'_>, how: Shutdown) {
    let how = match how {
        Shutdown::Write => libc::SHUT_WR,
        Shutdown::Both => libc::SHUT_RDWR,
    };
    // SAFETY: `fd` is borrowed, so it is open for the call.
    unsafe {
        libc::shutdown(fd.as_raw_fd(), how);
    }
}

/// read(2) into `buf`.
pub fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is a live mutable slice of the given length; `fd` is
    // borrowed, so it is open for the call.
    let n = unsafe { syscall!(read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()))? };
    Ok(n as usize)
}

/// read(2) into the spare capacity of `buf` (at most `max` bytes), which
/// grows by what was read: a buffer that only lives for one read need not
/// be zeroed first (a memset of the whole read size, 48,000 bytes on the
/// copy path, per read).
pub fn read_into(fd: BorrowedFd<'_>, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
    buf.reserve(max);
    let spare = buf.spare_capacity_mut();
    let want = spare.len().min(max);
    // SAFETY: the pointer and length describe spare capacity of `buf`,
    // which read(2) only writes to; `fd` is borrowed, so it is open.
    let n = unsafe { syscall!(read(fd.as_raw_fd(), spare.as_mut_ptr().cast(), want))? } as usize;
    // SAFETY: read(2) initialised the first `n` (<= `want`) spare bytes.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

/// recv(2) with MSG_PEEK: copies waiting bytes into `buf` and leaves them
/// queued.
pub fn peek(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is a live mutable slice of the given length; `fd` is
    // borrowed, so it is open for the call.
    let n = unsafe {
        syscall!(recv(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_PEEK
        ))?
    };
    Ok(n as usize)
}

/// Writes all of `bytes` to a non-blocking socket, waiting for room until
/// `deadline` (then `TimedOut`).
pub fn write_all_until(fd: BorrowedFd<'_>, mut bytes: &[u8], deadline: Instant) -> io::Result<()> {
    // Each round writes at least one byte or waits, and waits end at the
    // deadline.
    while !bytes.is_empty() {
        match write(fd, bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() || poll::wait_one(fd, poll::OUT, Some(left))? == 0 {
                    return Err(io::ErrorKind::TimedOut.into());
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// send(2) with MSG_NOSIGNAL, so a reset peer gives EPIPE, not SIGPIPE.
pub fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: buf is a live slice of the given length; `fd` is borrowed, so
    // it is open for the call.
    let n = unsafe {
        syscall!(send(
            fd.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_NOSIGNAL
        ))?
    };
    Ok(n as usize)
}

/// Checks that IP_TRANSPARENT may be set (it needs CAP_NET_ADMIN).
pub fn probe_transparent() -> io::Result<()> {
    let sock = new_socket(libc::AF_INET, libc::SOCK_STREAM)?;
    set_int_option(sock.as_fd(), libc::SOL_IP, libc::IP_TRANSPARENT, 1)
}

/// A connected pair of Unix stream sockets, non-blocking and close-on-exec
/// (socketpair(2)).
pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds is a valid array of two ints for socketpair to fill.
    unsafe {
        syscall!(socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr()
        ))?
    };
    // SAFETY: socketpair succeeded, so both descriptors are open and owned
    // by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}
