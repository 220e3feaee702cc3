//! The services database (`pen smtp mailhost:smtp`).

use std::ffi::CString;

extern "C" {
    // glibc's reentrant variant; the libc crate does not declare it.
    fn getservbyname_r(
        name: *const libc::c_char,
        proto: *const libc::c_char,
        result_buf: *mut libc::servent,
        buf: *mut libc::c_char,
        buflen: libc::size_t,
        result: *mut *mut libc::servent,
    ) -> libc::c_int;
}

/// Looks a service name up for `proto` ("tcp" or "udp"); returns the port.
pub fn service_port(name: &str, proto: &str) -> Option<u16> {
    let cname = CString::new(name).ok()?;
    let cproto = CString::new(proto).ok()?;
    // SAFETY: servent is plain old data.
    let mut ent: libc::servent = unsafe { std::mem::zeroed() };
    let mut buf = [0 as libc::c_char; 1024];
    let mut result: *mut libc::servent = std::ptr::null_mut();
    // SAFETY: all pointers refer to live locals; the buffer length is passed.
    let rc = unsafe {
        getservbyname_r(
            cname.as_ptr(),
            cproto.as_ptr(),
            &mut ent,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return None;
    }
    Some(u16::from_be(ent.s_port as u16))
}
