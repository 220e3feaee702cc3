//! Raw Ethernet frames on one interface (`AF_PACKET`), for direct server
//! return (`crate::dsr`): opening the socket, reading frames with the
//! kernel's notes on them, and sending frames as they are.

use std::ffi::CString;
use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::msg::{payload_as, recv_msg};
use super::socket::set_int_option;

/// The interface a packet socket is bound to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interface {
    pub index: i32,
    /// Its Ethernet address: the source of every frame we send.
    pub mac: [u8; 6],
}

/// One frame read by [`recv`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Bytes stored in the buffer.
    pub len: usize,
    /// The frame was longer than the buffer and was cut.
    pub truncated: bool,
    /// A frame this host sent, seen on its way out.
    pub outgoing: bool,
    /// The sender left the layer-4 checksum to the hardware (a frame from
    /// a local stack over veth): the checksum field is not final.
    pub checksum_not_ready: bool,
    /// The frame carried an 802.1Q tag, which the kernel removed.
    pub vlan_tagged: bool,
}

/// The packet socket's receive buffer: some thousands of frames.
const RECEIVE_BUFFER: libc::c_int = 4 << 20;

/// `ETH_P_ALL` in network order, as `socket` and `bind` want it.
fn all_protocols() -> u16 {
    (libc::ETH_P_ALL as u16).to_be()
}

/// Opens a non-blocking packet socket that sees every frame on interface
/// `name`. Needs CAP_NET_RAW: without it, the error is `PermissionDenied`.
pub fn open(name: &str) -> io::Result<(OwnedFd, Interface)> {
    let proto = libc::c_int::from(all_protocols());
    // SAFETY: plain socket(2) call with constant arguments.
    let raw = unsafe {
        syscall!(socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            proto
        ))?
    };
    // SAFETY: socket succeeded, so `raw` is an open descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let c_name = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in interface name"))?;
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "bad interface name",
        ));
    }
    // SAFETY: c_name is a live NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    if index == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    // The request's type is c_ulong in glibc and c_int in musl (libc::Ioctl).
    let request = libc::SIOCGIFHWADDR as libc::Ioctl;
    // SAFETY: SIOCGIFHWADDR fills the ifreq we pass, which lives for the
    // call and names the interface (NUL-terminated: zeroed, name shorter).
    unsafe { syscall!(ioctl(fd.as_raw_fd(), request, &mut req))? };
    // SAFETY: SIOCGIFHWADDR succeeded, so the union holds the hardware address.
    let hw = unsafe { req.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (d, s) in mac.iter_mut().zip(hw.sa_data.iter()) {
        *d = *s as u8;
    }
    // The checksum state of each frame comes with it (PACKET_AUXDATA).
    set_int_option(fd.as_fd(), libc::SOL_PACKET, libc::PACKET_AUXDATA, 1)?;
    // Room for bursts while the thread waits for a core: beyond rmem_max
    // with CAP_NET_ADMIN, else as far as rmem_max allows (best effort).
    if set_int_option(
        fd.as_fd(),
        libc::SOL_SOCKET,
        libc::SO_RCVBUFFORCE,
        RECEIVE_BUFFER,
    )
    .is_err()
    {
        let _ = set_int_option(
            fd.as_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            RECEIVE_BUFFER,
        );
    }
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = all_protocols();
    sll.sll_ifindex = index as i32;
    // SAFETY: passes a live sockaddr_ll and its size.
    unsafe {
        syscall!(bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t
        ))?
    };
    Ok((
        fd,
        Interface {
            index: index as i32,
            mac,
        },
    ))
}

/// Reads one frame from the non-blocking packet socket `fd` into `buf`.
pub fn recv(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Frame> {
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut from: libc::sockaddr_ll = unsafe { zeroed() };
    // MSG_TRUNC: the length returned is the frame's, even when it was cut.
    let msg = recv_msg(fd, buf, &mut from, libc::MSG_TRUNC)?;
    let mut status = 0u32;
    let mut vlan_tagged = false;
    msg.each_control(|level, kind, payload| {
        if level == libc::SOL_PACKET && kind == libc::PACKET_AUXDATA {
            if let Some(aux) = payload_as::<libc::tpacket_auxdata>(payload) {
                status = aux.tp_status;
                vlan_tagged =
                    aux.tp_status & libc::TP_STATUS_VLAN_VALID != 0 || aux.tp_vlan_tci != 0;
            }
        }
    });
    Ok(Frame {
        len: msg.len.min(buf.len()),
        truncated: msg.len > buf.len(),
        outgoing: from.sll_pkttype == libc::PACKET_OUTGOING,
        checksum_not_ready: status & libc::TP_STATUS_CSUMNOTREADY != 0,
        vlan_tagged,
    })
}

/// Sends `frame` (Ethernet header included) as it is on the interface the
/// packet socket `fd` is bound to.
pub fn send(fd: BorrowedFd<'_>, frame: &[u8]) -> io::Result<usize> {
    // SAFETY: passes a live buffer and its length; `fd` is borrowed.
    let n = unsafe { syscall!(send(fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0))? };
    Ok(n as usize)
}

/// Frames the kernel dropped because the packet socket `fd`'s receive
/// buffer was full, since the last call (reading resets the count).
pub fn take_drops(fd: BorrowedFd<'_>) -> io::Result<u64> {
    // SAFETY: tpacket_stats is plain old data; all-zero is a valid value.
    let mut stats: libc::tpacket_stats = unsafe { zeroed() };
    let mut len = size_of::<libc::tpacket_stats>() as libc::socklen_t;
    // SAFETY: passes a live tpacket_stats and its size for the kernel to
    // fill; `fd` is borrowed, so it stays open for the call.
    unsafe {
        syscall!(getsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            (&mut stats as *mut libc::tpacket_stats).cast(),
            &mut len
        ))?
    };
    Ok(u64::from(stats.tp_drops))
}
