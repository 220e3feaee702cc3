//! recvmsg(2) with the sender's address and ancillary data, shared by the
//! UDP receive (packet info, `sys::udp`) and the packet socket (auxiliary
//! data, `sys::packet`): one place sets up the `msghdr` and walks the
//! control messages, checking each payload's length before it is read.

use libc::c_int;
use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, BorrowedFd};

/// Room for the one control message pen asks for on a socket (an
/// in6_pktinfo, the largest), as u64s so the buffer is aligned for
/// `cmsghdr`.
pub(super) type ControlBuf = [u64; 8];

/// Types whose every bit pattern is a valid value, so the kernel may fill
/// them and a payload's bytes may be read as one.
///
/// # Safety
/// Implement only for plain C structs of integers and byte arrays.
pub(super) unsafe trait Plain: Copy {}

// SAFETY: each is a libc struct of integers and integer arrays only.
unsafe impl Plain for libc::sockaddr_storage {}
// SAFETY: as above.
unsafe impl Plain for libc::sockaddr_ll {}
// SAFETY: as above.
unsafe impl Plain for libc::in_pktinfo {}
// SAFETY: as above.
unsafe impl Plain for libc::in6_pktinfo {}
// SAFETY: as above.
unsafe impl Plain for libc::tpacket_auxdata {}

/// What [`recv_msg`] received besides the bytes.
pub(super) struct Message {
    /// The length the kernel reported: with `MSG_TRUNC` in the flags of a
    /// packet socket's receive, the whole frame's, even if it was cut.
    pub len: usize,
    /// `msg_flags` (`MSG_TRUNC`: the message did not fit the buffer).
    pub flags: c_int,
    control: ControlBuf,
    control_len: usize,
}

/// Receives one message from the non-blocking socket `fd` into `buf`, its
/// sender's address into `name` (the socket family's address type).
pub(super) fn recv_msg<A: Plain>(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    name: &mut A,
    flags: c_int,
) -> io::Result<Message> {
    let mut control: ControlBuf = [0; 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain old data; all-zero is a valid value.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_name = (name as *mut A).cast();
    msg.msg_namelen = size_of::<A>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of::<ControlBuf>() as _;
    // SAFETY: every pointer in msg refers to a live value (name: a Plain
    // type, any bytes valid; iov -> buf; control) with its length next to
    // it; `fd` is borrowed, so it stays open for the call.
    let n = unsafe { syscall!(recvmsg(fd.as_raw_fd(), &mut msg, flags))? } as usize;
    Ok(Message {
        len: n,
        flags: msg.msg_flags,
        control,
        control_len: (msg.msg_controllen as usize).min(size_of::<ControlBuf>()),
    })
}

impl Message {
    /// Calls `each` with the level, type and payload of every control
    /// message received.
    pub fn each_control(&self, mut each: impl FnMut(c_int, c_int, &[u8])) {
        let start = self.control.as_ptr().cast::<u8>();
        // SAFETY: msghdr is plain old data; all-zero is a valid value.
        let mut msg: libc::msghdr = unsafe { zeroed() };
        msg.msg_control = start as *mut libc::c_void;
        msg.msg_controllen = self.control_len as _;
        // SAFETY: msg_control/msg_controllen describe the part of our
        // buffer that recvmsg filled; CMSG_FIRSTHDR/NXTHDR stay within it
        // (they return null past its end).
        let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
        while !cmsg.is_null() {
            // SAFETY: cmsg is non-null and points at a header inside the
            // buffer, aligned (the buffer is u64s).
            let hdr = unsafe { &*cmsg };
            // SAFETY: CMSG_DATA of a header inside the buffer points at its
            // payload, at or after the header and inside the allocation.
            let data = unsafe { libc::CMSG_DATA(cmsg) };
            let offset = data as usize - start as usize;
            let header_len = data as usize - cmsg as usize;
            // The kernel's cmsg_len covers header and payload; never read
            // past what recvmsg filled, whatever it says.
            let len = (hdr.cmsg_len as usize)
                .saturating_sub(header_len)
                .min(self.control_len.saturating_sub(offset));
            // SAFETY: `len` bytes from `data` lie inside the filled part of
            // `self.control`, which lives as long as `&self`.
            let payload = unsafe { std::slice::from_raw_parts(data, len) };
            each(hdr.cmsg_level, hdr.cmsg_type, payload);
            // SAFETY: msg and cmsg are valid as above.
            cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
        }
    }
}

/// A control message's payload as a `T`, if it is long enough (payloads
/// need not be aligned for `T`).
pub(super) fn payload_as<T: Plain>(payload: &[u8]) -> Option<T> {
    if payload.len() < size_of::<T>() {
        return None;
    }
    // SAFETY: the slice holds at least size_of::<T>() bytes, and any bytes
    // are a valid T (Plain); read_unaligned needs no alignment.
    Some(unsafe { std::ptr::read_unaligned(payload.as_ptr().cast::<T>()) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsFd;

    #[test]
    fn a_short_payload_is_not_read() {
        let short = [0u8; 3];
        assert!(payload_as::<libc::in_pktinfo>(&short).is_none());
        let exact = [7u8; size_of::<libc::in_pktinfo>()];
        let info = payload_as::<libc::in_pktinfo>(&exact).expect("long enough");
        assert_eq!(info.ipi_ifindex, i32::from_ne_bytes([7; 4]));
    }

    #[test]
    fn packet_info_arrives_as_one_control_message() {
        let rx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        super::super::udp::enable_pktinfo(rx.as_fd(), false).expect("IP_PKTINFO");
        let tx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        tx.send_to(b"hello", rx.local_addr().expect("address"))
            .expect("send");
        // SAFETY: sockaddr_storage is plain old data; all-zero is valid.
        let mut name: libc::sockaddr_storage = unsafe { zeroed() };
        let mut buf = [0u8; 16];
        let msg = recv_msg(rx.as_fd(), &mut buf, &mut name, 0).expect("recvmsg");
        assert_eq!((msg.len, &buf[..5]), (5, &b"hello"[..]));
        let mut seen = Vec::new();
        msg.each_control(|level, kind, payload| seen.push((level, kind, payload.len())));
        assert_eq!(seen.len(), 1, "{seen:?}");
        let (level, kind, len) = seen[0];
        assert_eq!((level, kind), (libc::IPPROTO_IP, libc::IP_PKTINFO));
        assert!(len >= size_of::<libc::in_pktinfo>(), "{len}");
    }
}
