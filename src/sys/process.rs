//! Process-level libc calls used to become a daemon and to give up root:
//! fork, setsid, stdio redirection, user lookup, group/user ids, chroot,
//! resource limits and a close-on-exec pipe. The policy (in which order, with
//! which error messages) lives in `crate::daemon`.

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Which side of a `fork()` the caller is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    /// The original process; carries the child's process id.
    Parent(u32),
    /// The new process.
    Child,
}

/// Forks the process. Only safe to use meaningfully while the process has a
/// single thread (the child gets a copy of the calling thread only).
pub fn fork() -> io::Result<Forked> {
    // SAFETY: fork has no pointer arguments; the callers (daemon start-up)
    // run before any thread is spawned.
    let pid = unsafe { syscall!(fork())? };
    if pid == 0 {
        Ok(Forked::Child)
    } else {
        Ok(Forked::Parent(pid as u32))
    }
}

/// Starts a new session (detaches from the controlling terminal).
pub fn setsid() -> io::Result<()> {
    // SAFETY: setsid has no arguments.
    unsafe { syscall!(setsid())? };
    Ok(())
}

/// Opens `/dev/null` for reading and writing, close-on-exec.
pub fn open_dev_null() -> io::Result<OwnedFd> {
    let path = c"/dev/null";
    // SAFETY: path is a valid NUL-terminated string; flags are constants.
    let fd = unsafe { syscall!(open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC))? };
    // SAFETY: open succeeded, so fd is a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Makes descriptors 0, 1 and 2 copies of `target` (typically `/dev/null`).
pub fn redirect_stdio(target: &OwnedFd) -> io::Result<()> {
    for std_fd in 0..=2 {
        // SAFETY: both descriptors are plain integers; dup2 replaces std_fd
        // atomically and the duplicate is not close-on-exec, as stdio should be.
        unsafe { syscall!(dup2(target.as_raw_fd(), std_fd))? };
    }
    Ok(())
}

/// The fields of a password database entry that privilege dropping needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    /// The login name as stored in the database.
    pub name: String,
    /// Numeric user id.
    pub uid: u32,
    /// Numeric primary group id.
    pub gid: u32,
}

/// Looks `name` up in the password database (`getpwnam_r`). `Ok(None)` when
/// there is no such user.
pub fn getpwnam(name: &str) -> io::Result<Option<PasswdEntry>> {
    let c_name = CString::new(name).map_err(|_| {
        io::Error::new(io::ErrorKind::InvalidInput, "user name contains a NUL byte")
    })?;
    let mut buf_len = 1024usize;
    // Bounded retries: the buffer grows on ERANGE up to 1 MiB.
    while buf_len <= 1 << 20 {
        let mut buf = vec![0 as libc::c_char; buf_len];
        // SAFETY: an all-zero passwd is a valid (if meaningless) value that
        // getpwnam_r overwrites.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer refers to a live local of the stated size;
        // the strings written into buf stay valid while buf lives.
        let rc = unsafe {
            libc::getpwnam_r(
                c_name.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE {
            buf_len *= 4;
            continue;
        }
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        if result.is_null() {
            return Ok(None);
        }
        // SAFETY: getpwnam_r succeeded and pointed result at pwd, whose
        // pw_name is a NUL-terminated string inside buf (still alive).
        let stored_name = unsafe { CStr::from_ptr(pwd.pw_name) };
        return Ok(Some(PasswdEntry {
            name: stored_name.to_string_lossy().into_owned(),
            uid: pwd.pw_uid,
            gid: pwd.pw_gid,
        }));
    }
    Err(io::Error::from_raw_os_error(libc::ERANGE))
}

/// Sets the supplementary groups to those `user` belongs to, plus `gid`.
pub fn initgroups(user: &str, gid: u32) -> io::Result<()> {
    let c_user = CString::new(user).map_err(|_| {
        io::Error::new(io::ErrorKind::InvalidInput, "user name contains a NUL byte")
    })?;
    // SAFETY: c_user is a valid NUL-terminated string.
    unsafe { syscall!(initgroups(c_user.as_ptr(), gid))? };
    Ok(())
}

/// Sets real, effective and saved group id (as root).
pub fn setgid(gid: u32) -> io::Result<()> {
    // SAFETY: plain integer argument.
    unsafe { syscall!(setgid(gid))? };
    Ok(())
}

/// Sets real, effective and saved user id (as root).
pub fn setuid(uid: u32) -> io::Result<()> {
    // SAFETY: plain integer argument.
    unsafe { syscall!(setuid(uid))? };
    Ok(())
}

/// The real user id.
pub fn getuid() -> u32 {
    // SAFETY: getuid cannot fail and has no arguments.
    unsafe { libc::getuid() }
}

/// The effective user id.
pub fn geteuid() -> u32 {
    // SAFETY: geteuid cannot fail and has no arguments.
    unsafe { libc::geteuid() }
}

/// The real group id.
pub fn getgid() -> u32 {
    // SAFETY: getgid cannot fail and has no arguments.
    unsafe { libc::getgid() }
}

/// The effective group id.
pub fn getegid() -> u32 {
    // SAFETY: getegid cannot fail and has no arguments.
    unsafe { libc::getegid() }
}

/// Changes the root directory (does not change the working directory).
pub fn chroot(dir: &Path) -> io::Result<()> {
    let c_dir = path_to_cstring(dir.as_os_str())?;
    // SAFETY: c_dir is a valid NUL-terminated string.
    unsafe { syscall!(chroot(c_dir.as_ptr()))? };
    Ok(())
}

/// A resource limit that can be raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// Maximum size of a core file (`RLIMIT_CORE`).
    CoreSize,
    /// Maximum number of open file descriptors (`RLIMIT_NOFILE`).
    OpenFiles,
}

/// The type getrlimit takes its resource as: glibc has its own enum type,
/// musl a plain int.
#[cfg(target_env = "gnu")]
type RawResource = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
type RawResource = libc::c_int;

impl Resource {
    fn raw(self) -> RawResource {
        match self {
            Resource::CoreSize => libc::RLIMIT_CORE,
            Resource::OpenFiles => libc::RLIMIT_NOFILE,
        }
    }
}

/// Raises the soft limit of `resource` to its hard limit. Returns the new
/// soft limit (`u64::MAX` for unlimited).
pub fn raise_soft_limit_to_hard(resource: Resource) -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: lim is a live local rlimit for getrlimit to fill.
    unsafe { syscall!(getrlimit(resource.raw(), &mut lim))? };
    if lim.rlim_cur != lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: lim is a valid rlimit with soft <= hard.
        unsafe { syscall!(setrlimit(resource.raw(), &lim))? };
    }
    Ok(lim.rlim_cur)
}

/// Creates a blocking, close-on-exec pipe: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds is a live array of two ints for pipe2 to fill.
    unsafe { syscall!(pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC))? };
    // SAFETY: pipe2 succeeded, so both descriptors are open and unowned.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Terminates the process immediately without running exit handlers or
/// flushing stdio buffers (used by a forked child that must not flush
/// buffers inherited from its parent).
pub fn exit_immediately(status: i32) -> ! {
    // SAFETY: _exit never returns and is always safe to call.
    unsafe { libc::_exit(status) }
}

fn path_to_cstring(path: &OsStr) -> io::Result<CString> {
    CString::new(path.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_in_the_password_database() {
        let root = getpwnam("root").unwrap().unwrap();
        assert_eq!(root.uid, 0);
        assert_eq!(root.gid, 0);
        assert_eq!(root.name, "root");
    }

    #[test]
    fn unknown_user_is_none() {
        assert_eq!(getpwnam("no-such-user-pen-test").unwrap(), None);
    }

    #[test]
    fn nul_in_user_name_is_an_error() {
        assert!(getpwnam("ro\0ot").is_err());
    }

    #[test]
    fn pipe_carries_bytes() {
        use std::io::{Read, Write};
        let (r, w) = pipe().unwrap();
        let mut w = std::fs::File::from(w);
        w.write_all(b"ok").unwrap();
        drop(w);
        let mut s = String::new();
        std::fs::File::from(r).read_to_string(&mut s).unwrap();
        assert_eq!(s, "ok");
    }
}
