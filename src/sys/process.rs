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

/// Takes ownership of descriptor `raw`, inherited from the process that
/// started this one (`PEN_READY_FD`), and makes it close-on-exec.
pub fn adopt_fd(raw: i32) -> io::Result<OwnedFd> {
    // SAFETY: F_GETFD only reads the flags of `raw`; EBADF if it is not open.
    unsafe { syscall!(fcntl(raw, libc::F_GETFD))? };
    // SAFETY: open, and handed to this process alone by its starter.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: a plain flag change on our descriptor.
    unsafe { syscall!(fcntl(raw, libc::F_SETFD, libc::FD_CLOEXEC))? };
    Ok(fd)
}

/// Sends SIGKILL to process `pid`.
pub fn kill(pid: u32) {
    // SAFETY: plain integers; a stale pid only yields ESRCH.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
}

/// The most descriptors [`spawn_with_fds`] passes on.
pub const MAX_PASSED_FDS: usize = 8;

/// Starts `path` with `argv` and `env` (plus `LISTEN_PID=` the new
/// process's own pid, as socket activation wants), with `fds` moved to
/// descriptors 3, 4, ... and every other descriptor of this process
/// closed by exec (they are all close-on-exec). Returns the child's pid
/// once the exec succeeded, or the exec's error (the child has then
/// exited with status 127 and been reaped).
///
/// Between fork and exec the child only makes async-signal-safe calls:
/// everything it needs is allocated before the fork.
pub fn spawn_with_fds(
    path: &CStr,
    argv: &[CString],
    env: &[CString],
    fds: &[std::os::fd::BorrowedFd<'_>],
) -> io::Result<u32> {
    if fds.len() > MAX_PASSED_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "too many descriptors",
        ));
    }
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut env_ptrs: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
    // The child's LISTEN_PID goes here; then the terminating null.
    let pid_slot = env_ptrs.len();
    env_ptrs.push(std::ptr::null());
    env_ptrs.push(std::ptr::null());
    let mut raw = [-1 as libc::c_int; MAX_PASSED_FDS];
    for (r, fd) in raw.iter_mut().zip(fds) {
        *r = fd.as_raw_fd();
    }
    let n = fds.len();
    // The exec's errno comes back through this pipe; exec closes it.
    let (err_read, err_write) = pipe()?;
    // SAFETY: fork has no arguments. The child below only calls
    // async-signal-safe functions (fcntl, dup2, sigprocmask, getpid, execve,
    // write, _exit) on memory allocated before the fork.
    let pid = unsafe { syscall!(fork())? };
    if pid == 0 {
        // SAFETY: see the fork above; each call takes plain integers or
        // pointers to the child's own copies of the buffers built above.
        unsafe {
            let mut moved = [-1 as libc::c_int; MAX_PASSED_FDS];
            // First above 3+n, so that no dup2 below overwrites a source.
            for i in 0..n {
                moved[i] = libc::fcntl(raw[i], libc::F_DUPFD_CLOEXEC, (3 + n) as libc::c_int);
                if moved[i] < 0 {
                    child_failed(err_write.as_raw_fd());
                }
            }
            for (i, fd) in moved.iter().enumerate().take(n) {
                // dup2's copy is not close-on-exec.
                if libc::dup2(*fd, (3 + i) as libc::c_int) < 0 {
                    child_failed(err_write.as_raw_fd());
                }
            }
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            let mut listen_pid = [0u8; 32];
            format_listen_pid(&mut listen_pid, libc::getpid() as u32);
            let mut envp = env_ptrs;
            envp[pid_slot] = listen_pid.as_ptr().cast();
            libc::execve(path.as_ptr(), argv_ptrs.as_ptr(), envp.as_ptr());
            child_failed(err_write.as_raw_fd());
        }
    }
    drop(err_write);
    let mut errno = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        // SAFETY: the buffer's tail is valid for 4 - got bytes.
        let r = unsafe {
            libc::read(
                err_read.as_raw_fd(),
                errno[got..].as_mut_ptr().cast(),
                4 - got,
            )
        };
        if r > 0 {
            got += r as usize;
        } else if r == 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            break;
        }
    }
    if got == 4 {
        let _ = wait(pid as u32, true);
        return Err(io::Error::from_raw_os_error(i32::from_ne_bytes(errno)));
    }
    Ok(pid as u32)
}

/// In a forked child: reports errno through `fd` and exits 127.
fn child_failed(fd: libc::c_int) -> ! {
    // SAFETY: errno is the thread's own; write and _exit are
    // async-signal-safe and take a valid buffer.
    unsafe {
        let e = (*libc::__errno_location()).to_ne_bytes();
        libc::write(fd, e.as_ptr().cast(), 4);
        libc::_exit(127)
    }
}

/// Writes `LISTEN_PID=<pid>` and a NUL into `buf` without allocating.
fn format_listen_pid(buf: &mut [u8; 32], pid: u32) {
    let prefix = b"LISTEN_PID=";
    buf[..prefix.len()].copy_from_slice(prefix);
    let mut digits = [0u8; 10];
    let mut len = 0;
    let mut p = pid;
    loop {
        digits[len] = b'0' + (p % 10) as u8;
        len += 1;
        p /= 10;
        if p == 0 {
            break;
        }
    }
    for i in 0..len {
        buf[prefix.len() + i] = digits[len - 1 - i];
    }
    buf[prefix.len() + len] = 0;
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Status(i32),
    Signal(i32),
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Status(s) => write!(f, "exit status {s}"),
            Exit::Signal(s) => write!(f, "signal {s}"),
        }
    }
}

/// Reaps child `pid`: `Ok(None)` if it still runs and `block` is false.
pub fn wait(pid: u32, block: bool) -> io::Result<Option<Exit>> {
    let mut status: libc::c_int = 0;
    let flags = if block { 0 } else { libc::WNOHANG };
    loop {
        // SAFETY: status is a live local for waitpid to fill.
        match unsafe { syscall!(waitpid(pid as libc::pid_t, &mut status, flags)) } {
            Ok(0) => return Ok(None),
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(Some(if libc::WIFEXITED(status) {
        Exit::Status(libc::WEXITSTATUS(status))
    } else {
        Exit::Signal(libc::WTERMSIG(status))
    }))
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
    fn listen_pid_is_formatted_without_allocating() {
        for (pid, text) in [
            (0, "0"),
            (7, "7"),
            (4194304, "4194304"),
            (u32::MAX, "4294967295"),
        ] {
            let mut buf = [0xffu8; 32];
            format_listen_pid(&mut buf, pid);
            let s = CStr::from_bytes_until_nul(&buf).unwrap();
            assert_eq!(s.to_str().unwrap(), format!("LISTEN_PID={text}"));
        }
    }

    #[test]
    fn a_missing_program_is_an_error_and_a_real_one_runs() {
        let argv = [CString::new("x").unwrap()];
        let e = spawn_with_fds(c"/nonexistent/pen", &argv, &[], &[]).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
        let argv = [
            CString::new("sh").unwrap(),
            CString::new("-c").unwrap(),
            CString::new("test \"$LISTEN_PID\" = $$ && test -S /dev/fd/3").unwrap(),
        ];
        let (a, _b) = crate::sys::socket::socketpair().unwrap();
        use std::os::fd::AsFd;
        let pid = spawn_with_fds(c"/bin/sh", &argv, &[], &[a.as_fd()]).unwrap();
        assert_eq!(wait(pid, true).unwrap(), Some(Exit::Status(0)));
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
