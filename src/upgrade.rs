//! Sockets inherited at start-up, and the binary upgrade that passes them
//! on (SIGUSR2). Both follow systemd's socket activation convention:
//! `LISTEN_PID` (the pid meant to use them), `LISTEN_FDS` (how many, from
//! descriptor 3), `LISTEN_FDNAMES` (colon-separated names: `listen`,
//! `control`). An upgrade adds `PEN_READY_FD`, a pipe on which the new
//! process says that it serves.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::sys;

/// The environment variables of the protocol, removed once read so that
/// programs pen starts do not see them.
const VARIABLES: [&str; 4] = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "PEN_READY_FD"];

/// The first inherited descriptor (after stdin, stdout and stderr).
const FIRST_FD: i32 = 3;

/// What an inherited socket is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Listen,
    Control,
    Metrics,
}

/// Assigns a role to each of `count` inherited descriptors from their
/// names: `control` is the control port, `metrics` the metrics endpoint,
/// any other name (systemd's default is the unit's name) the listener, of
/// which there is one.
pub fn roles(count: usize, names: Option<&str>) -> Result<Vec<Role>, String> {
    let names: Vec<&str> = names.map(|n| n.split(':').collect()).unwrap_or_default();
    if !names.is_empty() && names.len() != count {
        return Err(format!(
            "LISTEN_FDNAMES names {} sockets but LISTEN_FDS is {count}",
            names.len()
        ));
    }
    let roles: Vec<Role> = (0..count)
        .map(|i| match names.get(i) {
            Some(&"control") => Role::Control,
            Some(&"metrics") => Role::Metrics,
            _ => Role::Listen,
        })
        .collect();
    for (role, what) in [
        (Role::Listen, "listening"),
        (Role::Control, "control"),
        (Role::Metrics, "metrics"),
    ] {
        let n = roles.iter().filter(|r| **r == role).count();
        if n > 1 {
            return Err(format!(
                "LISTEN_FDS passes {n} {what} sockets; pen uses one (name them with LISTEN_FDNAMES: listen, control)"
            ));
        }
    }
    Ok(roles)
}

/// The sockets (and readiness pipe) a starter handed to this process.
#[derive(Debug, Default)]
pub struct Inherited {
    pub listen: Option<OwnedFd>,
    pub control: Option<OwnedFd>,
    pub metrics: Option<OwnedFd>,
    /// `PEN_READY_FD`: written once pen serves.
    pub ready: Option<OwnedFd>,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Reads and removes the variables, and adopts the descriptors meant for
/// this process (`LISTEN_PID` equal to its pid). `udp`: the listener must
/// be a datagram socket, else a listening stream socket.
pub fn take_inherited(udp: bool) -> Result<Inherited, String> {
    let pid = var("LISTEN_PID");
    let fds = var("LISTEN_FDS");
    let names = var("LISTEN_FDNAMES");
    let ready = var("PEN_READY_FD");
    for v in VARIABLES {
        std::env::remove_var(v);
    }
    let mut inherited = Inherited::default();
    let mine = pid.as_deref().and_then(|p| p.trim().parse::<u32>().ok()) == Some(sys::getpid());
    if !mine {
        return Ok(inherited);
    }
    if let Some(r) = ready {
        let raw: i32 = r
            .parse()
            .map_err(|_| format!("PEN_READY_FD={r}: not a descriptor number"))?;
        inherited.ready =
            Some(sys::process::adopt_fd(raw).map_err(|e| format!("PEN_READY_FD={r}: {e}"))?);
    }
    let Some(fds) = fds else {
        return Ok(inherited);
    };
    let count: usize = fds
        .trim()
        .parse()
        .ok()
        .filter(|n| *n <= 64)
        .ok_or_else(|| format!("LISTEN_FDS={fds}: not a number of descriptors"))?;
    for (i, role) in roles(count, names.as_deref())?.into_iter().enumerate() {
        let raw = FIRST_FD + i as i32;
        let (fd, kind) = sys::socket::adopt_inherited(raw)
            .map_err(|e| format!("inherited descriptor {raw} (LISTEN_FDS): {e}"))?;
        let (ok, want) = match role {
            Role::Listen if udp => (kind.datagram, "a UDP socket (-U)"),
            _ => (kind.stream && kind.listening, "a listening stream socket"),
        };
        if !ok {
            return Err(format!(
                "inherited descriptor {raw} (LISTEN_FDS, {role:?}) is not {want}"
            ));
        }
        match role {
            Role::Listen => inherited.listen = Some(fd),
            Role::Control => inherited.control = Some(fd),
            Role::Metrics => inherited.metrics = Some(fd),
        }
    }
    Ok(inherited)
}

/// The program to start on an upgrade: the path pen was started from
/// (made absolute at start-up; the file there may since have been
/// replaced) and its whole command line.
#[derive(Debug, Clone)]
pub struct Executable {
    path: PathBuf,
    argv: Vec<OsString>,
}

impl Executable {
    /// The path the new copy is started from.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// This process's `argv[0]`, resolved as exec would, and its arguments.
    pub fn current() -> Option<Executable> {
        let argv: Vec<OsString> = std::env::args_os().collect();
        let argv0 = argv.first()?;
        let path = if argv0.as_bytes().contains(&b'/') {
            std::path::absolute(argv0).ok()?
        } else {
            search_path(argv0)?
        };
        Some(Executable { path, argv })
    }
}

fn search_path(name: &OsStr) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .and_then(|p| std::path::absolute(p).ok())
}

fn cstring(s: impl Into<Vec<u8>>) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte"))
}

/// A new copy of pen, started but not yet known to serve.
pub struct Started {
    pub pid: u32,
    ready: OwnedFd,
}

/// Starts `exe` with `listen`, `control` and `metrics` (those given) as
/// descriptors 3, 4, ...
pub fn start(
    exe: &Executable,
    listen: BorrowedFd<'_>,
    control: Option<BorrowedFd<'_>>,
    metrics: Option<BorrowedFd<'_>>,
) -> io::Result<Started> {
    let (ready_read, ready_write) = sys::process::pipe()?;
    let mut fds = vec![listen];
    let mut names = vec!["listen"];
    for (fd, name) in [(control, "control"), (metrics, "metrics")] {
        if let Some(fd) = fd {
            fds.push(fd);
            names.push(name);
        }
    }
    let mut env = Vec::new();
    for (k, v) in std::env::vars_os() {
        if VARIABLES.iter().any(|x| OsStr::new(x) == k) {
            continue;
        }
        let mut kv = k.into_vec();
        kv.push(b'=');
        kv.extend(v.into_vec());
        env.push(cstring(kv)?);
    }
    env.push(cstring(format!("LISTEN_FDS={}", fds.len()))?);
    env.push(cstring(format!("LISTEN_FDNAMES={}", names.join(":")))?);
    env.push(cstring(format!(
        "PEN_READY_FD={}",
        FIRST_FD as usize + fds.len()
    ))?);
    fds.push(ready_write.as_fd());
    let argv = exe
        .argv
        .iter()
        .map(|a| cstring(a.as_bytes()))
        .collect::<io::Result<Vec<_>>>()?;
    let path = cstring(exe.path.as_os_str().as_bytes())?;
    let pid = sys::process::spawn_with_fds(&path, &argv, &env, &fds)?;
    Ok(Started {
        pid,
        ready: ready_read,
    })
}

impl Started {
    /// Waits until the new process says it serves (`Ok`), or fails: it
    /// exited or closed the pipe first, or `deadline` passed (then it is
    /// killed). The error says why.
    pub fn wait_ready(self, deadline: Duration) -> Result<(), String> {
        let until = Instant::now() + deadline;
        let mut byte = [0u8; 1];
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                sys::process::kill(self.pid);
                let _ = sys::process::wait(self.pid, true);
                return Err(format!(
                    "process {} not ready within {} s; killed",
                    self.pid,
                    deadline.as_secs()
                ));
            }
            match sys::poll::wait_one(self.ready.as_fd(), sys::poll::IN, Some(left)) {
                Ok(0) => continue,
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("waiting for process {}: {e}", self.pid)),
            }
        }
        use std::io::Read;
        match std::fs::File::from(self.ready).read(&mut byte) {
            Ok(1) => {
                // A daemon's first process exits once the daemon runs.
                let _ = sys::process::wait(self.pid, false);
                Ok(())
            }
            _ => {
                let how = match sys::process::wait(self.pid, true) {
                    Ok(Some(exit)) => exit.to_string(),
                    _ => "an unknown status".into(),
                };
                Err(format!(
                    "process {} ended ({how}) before it was ready",
                    self.pid
                ))
            }
        }
    }
}

/// Says on `ready` that this process serves.
pub fn report_ready(ready: OwnedFd) {
    use std::io::Write;
    let _ = std::fs::File::from(ready).write_all(b"R");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_give_roles() {
        assert_eq!(roles(1, None).unwrap(), vec![Role::Listen]);
        assert_eq!(
            roles(2, Some("listen:control")).unwrap(),
            vec![Role::Listen, Role::Control]
        );
        assert_eq!(
            roles(2, Some("control:pen.socket")).unwrap(),
            vec![Role::Control, Role::Listen]
        );
        assert!(roles(2, None).unwrap_err().contains("2 listening sockets"));
        assert!(roles(2, Some("listen"))
            .unwrap_err()
            .contains("LISTEN_FDNAMES"));
        assert!(roles(2, Some("control:control")).is_err());
        assert_eq!(
            roles(3, Some("listen:control:metrics")).unwrap(),
            vec![Role::Listen, Role::Control, Role::Metrics]
        );
    }
}
