//! Process plumbing shared by `pen` and `penlogd`: user lookup, chroot,
//! privilege drop, PID file, detaching from the terminal and resource limits
//! (doc/pen-0.34.1.md, "Daemon mode and the debug channel", "PID file",
//! "Privileges and chroot").
//!
//! Deliberate differences from pen 0.34.1: the chroot is followed by
//! `chdir("/")` and supplementary groups are reset (doc/pen-0.34.1.md,
//! quirk Q29), and the process that detaches waits until the daemon reports
//! that start-up succeeded, so an init script sees start-up errors
//! (doc/pen-0.34.1.md, quirk Q26).

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use crate::sys::process::{self, Forked, Resource};

/// Why a daemon start-up step failed.
#[derive(Debug)]
pub enum DaemonError {
    /// The user name is not in the password database.
    UnknownUser { user: String },
    /// The password database could not be read.
    UserLookup { user: String, source: io::Error },
    /// `chroot(dir)` failed.
    Chroot { dir: PathBuf, source: io::Error },
    /// `chdir("/")` inside the new root failed.
    ChdirToRoot { dir: PathBuf, source: io::Error },
    /// Setting the supplementary groups of `user` failed.
    InitGroups { user: String, source: io::Error },
    /// `setgid` failed.
    SetGid {
        user: String,
        gid: u32,
        source: io::Error,
    },
    /// `setuid` failed.
    SetUid {
        user: String,
        uid: u32,
        source: io::Error,
    },
    /// The ids after the drop are not the ones asked for.
    PrivilegesKept { user: String, uid: u32, euid: u32 },
    /// The PID file could not be written.
    PidFile { path: PathBuf, source: io::Error },
    /// `fork`, `pipe`, `setsid` or similar failed while detaching.
    Detach {
        step: &'static str,
        source: io::Error,
    },
}

impl fmt::Display for DaemonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DaemonError::UnknownUser { user } => write!(f, "unknown user '{user}'"),
            DaemonError::UserLookup { user, source } => {
                write!(f, "cannot look up user '{user}': {source}")
            }
            DaemonError::Chroot { dir, source } => {
                write!(f, "cannot chroot to '{}': {source}", dir.display())
            }
            DaemonError::ChdirToRoot { dir, source } => {
                write!(
                    f,
                    "cannot change to / inside chroot '{}': {source}",
                    dir.display()
                )
            }
            DaemonError::InitGroups { user, source } => {
                write!(f, "cannot set the groups of user '{user}': {source}")
            }
            DaemonError::SetGid { user, gid, source } => {
                write!(f, "cannot set group id {gid} of user '{user}': {source}")
            }
            DaemonError::SetUid { user, uid, source } => {
                write!(f, "cannot set user id {uid} of user '{user}': {source}")
            }
            DaemonError::PrivilegesKept { user, uid, euid } => write!(
                f,
                "privileges not dropped to user '{user}': still running as uid {uid}, euid {euid}"
            ),
            DaemonError::PidFile { path, source } => {
                write!(f, "cannot write pid file '{}': {source}", path.display())
            }
            DaemonError::Detach { step, source } => {
                write!(f, "cannot detach from the terminal ({step}): {source}")
            }
        }
    }
}

impl std::error::Error for DaemonError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DaemonError::UnknownUser { .. } | DaemonError::PrivilegesKept { .. } => None,
            DaemonError::UserLookup { source, .. }
            | DaemonError::Chroot { source, .. }
            | DaemonError::ChdirToRoot { source, .. }
            | DaemonError::InitGroups { source, .. }
            | DaemonError::SetGid { source, .. }
            | DaemonError::SetUid { source, .. }
            | DaemonError::PidFile { source, .. }
            | DaemonError::Detach { source, .. } => Some(source),
        }
    }
}

/// A user account to run as (from the password database).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
}

/// Looks up `name` in the password database. Do this before
/// [`enter_chroot`]: the database is usually not inside the jail.
pub fn lookup_user(name: &str) -> Result<Account, DaemonError> {
    match process::getpwnam(name) {
        Ok(Some(entry)) => Ok(Account {
            name: entry.name,
            uid: entry.uid,
            gid: entry.gid,
        }),
        Ok(None) => Err(DaemonError::UnknownUser {
            user: name.to_string(),
        }),
        Err(source) => Err(DaemonError::UserLookup {
            user: name.to_string(),
            source,
        }),
    }
}

/// Changes the root directory to `dir` and the working directory to the new
/// root, so that no directory outside the jail stays reachable
/// (doc/pen-0.34.1.md, quirk Q29; pen 0.34.1 skipped the chdir).
pub fn enter_chroot(dir: &Path) -> Result<(), DaemonError> {
    process::chroot(dir).map_err(|source| DaemonError::Chroot {
        dir: dir.to_path_buf(),
        source,
    })?;
    std::env::set_current_dir("/").map_err(|source| DaemonError::ChdirToRoot {
        dir: dir.to_path_buf(),
        source,
    })
}

/// Gives up root for good: supplementary groups of the account, then the
/// group id, then the user id (pen 0.34.1 kept root's supplementary groups,
/// doc/pen-0.34.1.md, quirk Q29, and penlogd even kept the group, quirk Q39).
/// Afterwards checks that neither the real nor the effective user id is still
/// the old one.
///
/// After a chroot the supplementary groups come from the jail's group file
/// (usually absent: then only the primary group remains).
pub fn drop_privileges(acct: &Account) -> Result<(), DaemonError> {
    // A pen started by an upgrade (SIGUSR2) of one that had dropped its
    // privileges already runs as the user, and may no longer change groups.
    if acct.uid != 0 && process::getuid() == acct.uid && process::geteuid() == acct.uid {
        return Ok(());
    }
    process::initgroups(&acct.name, acct.gid).map_err(|source| DaemonError::InitGroups {
        user: acct.name.clone(),
        source,
    })?;
    process::setgid(acct.gid).map_err(|source| DaemonError::SetGid {
        user: acct.name.clone(),
        gid: acct.gid,
        source,
    })?;
    process::setuid(acct.uid).map_err(|source| DaemonError::SetUid {
        user: acct.name.clone(),
        uid: acct.uid,
        source,
    })?;
    let (uid, euid) = (process::getuid(), process::geteuid());
    if uid != acct.uid || euid != acct.uid {
        return Err(DaemonError::PrivilegesKept {
            user: acct.name.clone(),
            uid,
            euid,
        });
    }
    Ok(())
}

/// A PID file this process wrote; see [`write_pid_file`].
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
}

/// Writes the process id in decimal **without** a trailing newline (as pen
/// 0.34.1 does, doc/pen-0.34.1.md, "PID file"), replacing any existing file.
pub fn write_pid_file(path: &Path) -> Result<PidFile, DaemonError> {
    let err = |source| DaemonError::PidFile {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::create(path).map_err(err)?;
    file.write_all(std::process::id().to_string().as_bytes())
        .map_err(err)?;
    file.sync_all().map_err(err)?;
    Ok(PidFile {
        path: path.to_path_buf(),
    })
}

impl PidFile {
    /// The path the PID file was written to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the file, ignoring errors (after a privilege drop the
    /// directory may no longer be writable). Called on clean exit.
    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Marks in the start-up pipe: the daemon is running / start-up failed
/// (followed by the message).
const REPORT_READY: u8 = b'R';
const REPORT_FAILED: u8 = b'F';

/// The daemon's channel back to the process that started it; see [`detach`].
/// Exactly one of [`StartupReport::ready`] or [`StartupReport::failed`] must
/// be called. Dropping it unused makes the waiting parent exit 1.
#[derive(Debug)]
pub struct StartupReport {
    pipe: File,
    /// Opened before any chroot so that `ready` works inside an empty jail.
    dev_null: OwnedFd,
}

/// Detaches from the terminal.
///
/// Forks. The **parent** never returns: it blocks until the child reports,
/// then exits 0 if the child said ready, or prints the child's message on
/// stderr and exits 1 (also when the child ends without reporting). The
/// **child** starts a new session, changes to `/`, and gets `Ok`; stdio
/// stays connected until [`StartupReport::ready`], so start-up errors can
/// still be printed.
///
/// `Err` is only returned in the original process, before or at the fork.
/// If the child cannot finish detaching it reports that to the parent and
/// exits 1 itself. Call this while the process has a single thread.
pub fn detach() -> Result<StartupReport, DaemonError> {
    let detach_err = |step| move |source| DaemonError::Detach { step, source };
    let dev_null = process::open_dev_null().map_err(detach_err("open /dev/null"))?;
    let (read_end, write_end) = process::pipe().map_err(detach_err("pipe"))?;
    // Anything buffered would otherwise be written twice, by both processes.
    let _ = io::stdout().flush();
    let _ = io::stderr().flush();
    match process::fork().map_err(detach_err("fork"))? {
        Forked::Parent(_child) => {
            drop(write_end);
            wait_for_startup_report(File::from(read_end))
        }
        Forked::Child => {
            drop(read_end);
            let report = StartupReport {
                pipe: File::from(write_end),
                dev_null,
            };
            let finish = process::setsid()
                .map_err(detach_err("setsid"))
                .and_then(|()| std::env::set_current_dir("/").map_err(detach_err("chdir /")));
            match finish {
                Ok(()) => Ok(report),
                Err(e) => {
                    report.failed(&e.to_string());
                    process::exit_immediately(1)
                }
            }
        }
    }
}

/// The parent's side of [`detach`]: relay the child's verdict as exit status.
fn wait_for_startup_report(mut pipe: File) -> ! {
    let mut report = Vec::new();
    // read_to_end retries on EINTR; it ends when the child closes its end
    // (after reporting, or by exiting).
    let status = match pipe.read_to_end(&mut report) {
        Ok(_) => match report.split_first() {
            Some((&REPORT_READY, _)) => 0,
            Some((&REPORT_FAILED, msg)) => {
                eprintln!("{}", String::from_utf8_lossy(msg));
                1
            }
            _ => {
                eprintln!("the daemon process ended during start-up without reporting");
                1
            }
        },
        Err(e) => {
            eprintln!("cannot read the daemon's start-up report: {e}");
            1
        }
    };
    std::process::exit(status)
}

impl StartupReport {
    /// Start-up succeeded: points stdin, stdout and stderr at `/dev/null`
    /// and tells the waiting parent to exit 0.
    pub fn ready(mut self) {
        let _ = io::stdout().flush();
        let _ = io::stderr().flush();
        // Best effort: a failure leaves stdio on the terminal, which is
        // harmless, while refusing to start would not be.
        let _ = process::redirect_stdio(&self.dev_null);
        let _ = self.pipe.write_all(&[REPORT_READY]);
    }

    /// Start-up failed: sends `msg` to the parent, which prints it on stderr
    /// and exits 1. The caller should exit 1 afterwards.
    pub fn failed(mut self, msg: &str) {
        let mut report = Vec::with_capacity(msg.len() + 1);
        report.push(REPORT_FAILED);
        report.extend_from_slice(msg.as_bytes());
        let _ = self.pipe.write_all(&report);
    }
}

/// Raises the soft core-file size limit to the hard limit, as pen does at
/// start (doc/pen-0.34.1.md, "Daemon mode and the debug channel"). Best effort.
pub fn raise_core_limit() {
    let _ = process::raise_soft_limit_to_hard(Resource::CoreSize);
}

/// Raises the soft open-files limit to the hard limit (a proxy holds two
/// sockets per connection). Best effort.
pub fn raise_fd_limit() {
    let _ = process::raise_soft_limit_to_hard(Resource::OpenFiles);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_account_is_found() {
        let root = lookup_user("root").unwrap();
        assert_eq!(
            root,
            Account {
                name: "root".into(),
                uid: 0,
                gid: 0
            }
        );
    }

    #[test]
    fn unknown_user_is_an_error_naming_the_user() {
        let err = lookup_user("no-such-user-pen-test").unwrap_err();
        assert!(matches!(err, DaemonError::UnknownUser { .. }));
        assert_eq!(err.to_string(), "unknown user 'no-such-user-pen-test'");
    }

    #[test]
    fn pid_file_holds_the_pid_without_newline_and_is_removed() {
        let dir = std::env::temp_dir().join(format!("pen-daemon-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("test.pid");
        let pid_file = write_pid_file(&path).unwrap();
        assert_eq!(pid_file.path(), path.as_path());
        let content = std::fs::read_to_string(&path).unwrap();
        assert_eq!(content, std::process::id().to_string());
        pid_file.remove();
        assert!(!path.exists());
        pid_file.remove(); // second removal is harmless
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn pid_file_error_names_the_path() {
        let err = write_pid_file(Path::new("/nonexistent-dir-pen/x.pid")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("/nonexistent-dir-pen/x.pid"), "{text}");
    }

    #[test]
    fn raising_limits_is_harmless() {
        raise_core_limit();
        raise_fd_limit();
    }
}
