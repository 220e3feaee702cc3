//! UDP sockets for the UDP relay (`crate::udp`): datagrams with their
//! destination address (IP_PKTINFO / IPV6_PKTINFO), so replies leave a
//! wildcard listener from the address the client wrote to, and connected,
//! non-blocking upstream sockets.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::msg::{payload_as, recv_msg, ControlBuf};
use super::socket::{peer_from, set_int_option, sockaddr_from, PeerAddr};

/// A receive buffer this long holds any UDP payload (65507 bytes over IPv4,
/// 65527 over IPv6 without jumbograms), so no datagram is cut.
pub const RECV_BUFFER_LEN: usize = 65_536;

/// The local end a datagram was addressed to (from the packet-info control
/// message), used as the source of the replies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalAddr {
    /// For an IPv6 socket this is an IPv6 address even for IPv4 clients
    /// (IPv4-mapped), as the kernel reports it.
    pub ip: IpAddr,
    /// Interface the datagram came in on (only used for link-local IPv6).
    pub ifindex: u32,
}

/// One received datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    /// Bytes stored in the buffer.
    pub len: usize,
    /// The datagram was longer than the buffer and was cut.
    pub truncated: bool,
    pub peer: SocketAddr,
    /// Present when packet info was enabled with [`enable_pktinfo`].
    pub local: Option<LocalAddr>,
}

fn inet_from(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match peer_from(
        storage,
        size_of::<libc::sockaddr_storage>() as libc::socklen_t,
    ) {
        PeerAddr::Inet(a) => Some(a),
        PeerAddr::Unix(_) => None,
    }
}

/// Asks the kernel to report each datagram's destination address on the
/// listener `fd` of the given family (`ipv6` for an AF_INET6 socket, which
/// then reports IPv4 clients' destinations as IPv4-mapped addresses).
pub fn enable_pktinfo(fd: BorrowedFd<'_>, ipv6: bool) -> io::Result<()> {
    if ipv6 {
        set_int_option(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)
    } else {
        set_int_option(fd, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)
    }
}

/// Receives one datagram from the non-blocking socket `fd` with its sender
/// and, if enabled, its destination address.
pub fn recv_from(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Received> {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut name: libc::sockaddr_storage = unsafe { zeroed() };
    let msg = recv_msg(fd, buf, &mut name, 0)?;
    let peer = inet_from(&name).ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidData, "datagram from a non-IP address")
    })?;
    let mut local = None;
    msg.each_control(|level, kind, payload| {
        if level == libc::IPPROTO_IP && kind == libc::IP_PKTINFO {
            if let Some(info) = payload_as::<libc::in_pktinfo>(payload) {
                local = Some(LocalAddr {
                    ip: IpAddr::V4(Ipv4Addr::from(info.ipi_spec_dst.s_addr.to_ne_bytes())),
                    ifindex: info.ipi_ifindex as u32,
                });
            }
        } else if level == libc::IPPROTO_IPV6 && kind == libc::IPV6_PKTINFO {
            if let Some(info) = payload_as::<libc::in6_pktinfo>(payload) {
                local = Some(LocalAddr {
                    ip: IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)),
                    ifindex: info.ipi6_ifindex,
                });
            }
        }
    });
    Ok(Received {
        len: msg.len.min(buf.len()),
        truncated: msg.flags & libc::MSG_TRUNC != 0,
        peer,
        local,
    })
}

fn is_link_local(ip: &Ipv6Addr) -> bool {
    ip.segments()[0] & 0xffc0 == 0xfe80
}

/// Sends `buf` as one datagram from the unconnected socket `fd` to `peer`,
/// from the address `local` if given (else the kernel picks the source).
pub fn send_to(
    fd: BorrowedFd<'_>,
    buf: &[u8],
    peer: &SocketAddr,
    local: Option<&LocalAddr>,
) -> io::Result<usize> {
    let (mut name, name_len) = sockaddr_from(peer);
    let mut iov = libc::iovec {
        iov_base: buf.as_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    let mut control: ControlBuf = [0; 8];
    // SAFETY: msghdr is plain old data; all-zero is a valid value.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = name_len;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some(l) = local {
        let (level, ty, payload_len) = match l.ip {
            IpAddr::V4(_) => (
                libc::IPPROTO_IP,
                libc::IP_PKTINFO,
                size_of::<libc::in_pktinfo>(),
            ),
            IpAddr::V6(_) => (
                libc::IPPROTO_IPV6,
                libc::IPV6_PKTINFO,
                size_of::<libc::in6_pktinfo>(),
            ),
        };
        msg.msg_control = control.as_mut_ptr().cast();
        // SAFETY: CMSG_SPACE is a pure size computation.
        msg.msg_controllen = unsafe { libc::CMSG_SPACE(payload_len as u32) } as _;
        // SAFETY: msg_control points at `control`, which is larger than
        // CMSG_SPACE(in6_pktinfo) and aligned for cmsghdr, so the first
        // header and its payload lie inside it.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = level;
            (*cmsg).cmsg_type = ty;
            (*cmsg).cmsg_len = libc::CMSG_LEN(payload_len as u32) as _;
            let data = libc::CMSG_DATA(cmsg);
            match l.ip {
                IpAddr::V4(ip) => {
                    let info = libc::in_pktinfo {
                        ipi_ifindex: 0,
                        ipi_spec_dst: libc::in_addr {
                            s_addr: u32::from_ne_bytes(ip.octets()),
                        },
                        ipi_addr: libc::in_addr { s_addr: 0 },
                    };
                    std::ptr::write_unaligned(data.cast(), info);
                }
                IpAddr::V6(ip) => {
                    // Let routing pick the interface unless the source is
                    // link-local, which is only meaningful with one.
                    let info = libc::in6_pktinfo {
                        ipi6_addr: libc::in6_addr {
                            s6_addr: ip.octets(),
                        },
                        ipi6_ifindex: if is_link_local(&ip) { l.ifindex } else { 0 },
                    };
                    std::ptr::write_unaligned(data.cast(), info);
                }
            }
        }
    }
    // SAFETY: every pointer in msg refers to a live local (name, iov -> buf,
    // control) with the length given next to it; `fd` is borrowed.
    let n = unsafe { syscall!(sendmsg(fd.as_raw_fd(), &msg, libc::MSG_NOSIGNAL))? };
    Ok(n as usize)
}

/// A non-blocking UDP socket connected to `remote`, so the kernel delivers
/// only that server's datagrams to it and reports its ICMP errors
/// (ECONNREFUSED for port unreachable) on the next send or receive.
/// `bind` is the local address to use (`source`, or the client's address
/// with `transparent`, which needs IP_TRANSPARENT).
pub fn connect(
    remote: &SocketAddr,
    bind: Option<IpAddr>,
    transparent: bool,
) -> io::Result<OwnedFd> {
    let family = match remote {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: plain socket(2) call with constant arguments.
    let fd = unsafe {
        syscall!(socket(
            family,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0
        ))?
    };
    // SAFETY: socket succeeded; we are the only owner of the new descriptor.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    if transparent {
        set_int_option(sock.as_fd(), libc::SOL_IP, libc::IP_TRANSPARENT, 1)?;
    }
    if let Some(ip) = bind {
        let (sa, len) = sockaddr_from(&SocketAddr::new(ip, 0));
        // SAFETY: sa/len describe a valid sockaddr.
        unsafe { syscall!(bind(fd, (&sa as *const libc::sockaddr_storage).cast(), len))? };
    }
    let (sa, len) = sockaddr_from(remote);
    // SAFETY: sa/len describe a valid sockaddr for the socket's family; a
    // UDP connect only records the peer and never blocks.
    unsafe {
        syscall!(connect(
            sock.as_raw_fd(),
            (&sa as *const libc::sockaddr_storage).cast(),
            len
        ))?
    };
    Ok(sock)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn pktinfo_reports_the_destination_of_a_wildcard_listener() {
        let listener = UdpSocket::bind("0.0.0.0:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        enable_pktinfo(listener.as_fd(), false).unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = UdpSocket::bind("127.0.0.3:0").unwrap();
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        client.connect(("127.0.0.9", port)).unwrap();
        client.send(b"ping").unwrap();
        let mut buf = [0u8; 64];
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let got = loop {
            match recv_from(listener.as_fd(), &mut buf) {
                Ok(r) => break r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(std::time::Instant::now() < deadline);
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(&buf[..got.len], b"ping");
        assert!(!got.truncated);
        assert_eq!(got.peer, client.local_addr().unwrap());
        let local = got.local.unwrap();
        assert_eq!(local.ip, "127.0.0.9".parse::<IpAddr>().unwrap());
        // The reply leaves from 127.0.0.9: the connected client accepts it.
        send_to(listener.as_fd(), b"pong", &got.peer, Some(&local)).unwrap();
        let n = client.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"pong");
    }

    #[test]
    fn truncation_is_reported() {
        let listener = UdpSocket::bind("127.0.0.1:0").unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .send_to(b"0123456789", listener.local_addr().unwrap())
            .unwrap();
        let mut buf = [0u8; 4];
        let got = recv_from(listener.as_fd(), &mut buf).unwrap();
        assert_eq!(got.len, 4);
        assert!(got.truncated);
        assert_eq!(got.local, None);
    }

    #[test]
    fn connected_socket_reports_port_unreachable() {
        let gone = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = gone.local_addr().unwrap();
        drop(gone);
        let s = connect(&addr, None, false).unwrap();
        super::super::socket::write(s.as_fd(), b"x").unwrap();
        let revents = super::super::poll::wait_one(
            s.as_fd(),
            super::super::poll::IN,
            Some(std::time::Duration::from_secs(5)),
        )
        .unwrap();
        assert_ne!(revents & super::super::poll::ERR, 0);
        let mut buf = [0u8; 8];
        let e = super::super::socket::read(s.as_fd(), &mut buf).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ECONNREFUSED));
    }

    #[test]
    fn shutdown_wakes_poll_with_hangup_and_reads_would_block() {
        // The relay ends a session on POLLHUP (`close N` shuts the upstream
        // socket down); a read must not return 0 forever, since 0 is a valid
        // empty datagram for UDP.
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        let s = connect(&peer.local_addr().unwrap(), None, false).unwrap();
        super::super::socket::shutdown(s.as_fd(), super::super::socket::Shutdown::Both);
        let revents = super::super::poll::wait_one(
            s.as_fd(),
            super::super::poll::IN,
            Some(std::time::Duration::from_secs(5)),
        )
        .unwrap();
        assert_ne!(revents & super::super::poll::HUP, 0);
        let mut buf = [0u8; 8];
        let e = super::super::socket::read(s.as_fd(), &mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    }
}
