//! The programs under test as child processes: the `pen` balancer (killed
//! when its handle drops), the companions, daemons known by PID, signals.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::Duration;

use super::fs::TempDir;
use super::net::{free_port, free_udp_port, is_listening, is_udp_bound};
use super::wait::{wait_file_contains, wait_for, wait_until, DEADLINE};

/// A program under test. By default the binary cargo built; when the
/// environment names a directory in [`BINDIR_VAR`] (an installed tree such
/// as `make install DESTDIR=...` made, or the static build's), the program
/// of that name there, so the tests also run through the installed links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Program {
    /// Its installed name.
    pub name: &'static str,
    built: &'static str,
}

/// The environment variable naming a directory to take the programs from.
pub const BINDIR_VAR: &str = "PEN_TEST_BINDIR";

impl Program {
    const fn new(name: &'static str, built: &'static str) -> Program {
        Program { name, built }
    }

    /// The path the tests run.
    pub fn path(self) -> &'static Path {
        static INSTALLED: OnceLock<Option<PathBuf>> = OnceLock::new();
        static PATHS: OnceLock<Vec<PathBuf>> = OnceLock::new();
        let Some(dir) = INSTALLED.get_or_init(|| std::env::var_os(BINDIR_VAR).map(PathBuf::from))
        else {
            return Path::new(self.built);
        };
        let paths = PATHS.get_or_init(|| PROGRAMS.iter().map(|p| dir.join(p.name)).collect());
        paths
            .iter()
            .find(|p| p.file_name() == Some(OsStr::new(self.name)))
            .expect("every program is in PROGRAMS")
    }
}

impl AsRef<OsStr> for Program {
    fn as_ref(&self) -> &OsStr {
        self.path().as_os_str()
    }
}

impl std::fmt::Display for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.path().display().fmt(f)
    }
}

/// The balancer.
pub const PEN: Program = Program::new("pen", env!("CARGO_BIN_EXE_pen"));
/// The control client.
pub const PENCTL: Program = Program::new("penctl", env!("CARGO_BIN_EXE_penctl"));
/// The web server log shipper.
pub const PENLOG: Program = Program::new("penlog", env!("CARGO_BIN_EXE_penlog"));
/// The log collecting daemon.
pub const PENLOGD: Program = Program::new("penlogd", env!("CARGO_BIN_EXE_penlogd"));
/// The offline log merger.
pub const MERGELOGS: Program = Program::new("mergelogs", env!("CARGO_BIN_EXE_mergelogs"));
/// All five, `pen` first.
pub const PROGRAMS: [Program; 5] = [PEN, PENCTL, PENLOG, PENLOGD, MERGELOGS];

/// A child process, killed and reaped when dropped if it still runs.
pub struct ChildGuard(pub Child);

impl ChildGuard {
    /// Spawns `command`.
    pub fn spawn(command: &mut Command) -> ChildGuard {
        ChildGuard(command.spawn().expect("spawn a child process"))
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Its exit status if it has exited (reaping it), without waiting.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.0.try_wait().expect("look at a child's status")
    }

    /// Waits for the child to exit; panics, naming `what`, after `within`.
    pub fn wait_exit(&mut self, within: Duration, what: &str) -> ExitStatus {
        wait_for(within, &format!("{what} to exit"), || self.exited())
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A daemon that is not our child, known by the PID from its pid file:
/// killed by that PID when dropped if it is still alive.
pub struct DaemonGuard(pub u32);

impl Drop for DaemonGuard {
    fn drop(&mut self) {
        if process_alive(self.0) {
            let _ = Command::new("kill")
                .args(["-KILL", &self.0.to_string()])
                .status();
        }
    }
}

/// Whether process `pid` exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses.
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// Waits until process `pid` is gone (exited, or a zombie).
pub fn wait_gone(pid: u32) {
    wait_until(DEADLINE, &format!("process {pid} to exit"), || {
        !process_alive(pid)
    });
}

/// Sends signal `sig` (a name such as `HUP`) to process `pid`.
pub fn send_signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{sig} {pid} failed");
}

/// Resident set size of process `pid` in KiB (0 if unknown).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Runs `command` to completion with `input` on its stdin (then EOF),
/// collecting its output; panics (killing it) if it runs past `within`.
pub fn run_command(command: &mut Command, input: Vec<u8>, within: Duration) -> Output {
    let mut child = ChildGuard::spawn(
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let mut stdin = child.0.stdin.take().expect("stdin pipe");
    let stdout = child.0.stdout.take().expect("stdout pipe");
    let stderr = child.0.stderr.take().expect("stderr pipe");
    // Threads keep the pipes flowing: a child blocked on a full pipe would
    // never exit.
    let writer = thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let drain = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut data = Vec::new();
            let _ = pipe.read_to_end(&mut data);
            data
        })
    };
    let out = drain(Box::new(stdout));
    let err = drain(Box::new(stderr));
    let status = child.wait_exit(within, &format!("{command:?}"));
    let _ = writer.join();
    Output {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

/// Runs `program ARGS` to completion (bounded by [`DEADLINE`]).
pub fn run(program: impl AsRef<OsStr>, args: &[&str]) -> Output {
    run_command(Command::new(program).args(args), Vec::new(), DEADLINE)
}

/// Runs pen to completion (for command-line errors): (status, stdout, stderr).
pub fn run_pen(args: &[&str]) -> (Option<i32>, String, String) {
    let out = run(PEN, args);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A running pen (`-f`, stdout and stderr in files), killed when dropped.
pub struct Pen {
    child: ChildGuard,
    /// The port it listens on (0 when started with [`Pen::spawn`]).
    pub port: u16,
    dir: TempDir,
}

impl Pen {
    /// Starts `pen -f ARGS` and waits until TCP `port` listens.
    pub fn start(port: u16, args: &[&str]) -> Pen {
        Pen::start_program(PEN, port, args)
    }

    /// Starts `program -f ARGS` (pen, or another build of it) and waits
    /// until TCP `port` listens.
    pub fn start_program(program: impl AsRef<OsStr>, port: u16, args: &[&str]) -> Pen {
        let mut pen = Pen::spawn_program(program, args);
        pen.port = port;
        pen.expect_ready("listen on TCP", || is_listening(port));
        pen
    }

    /// Starts `pen -f -U ARGS` and waits until UDP `port` is bound.
    pub fn start_udp(port: u16, args: &[&str]) -> Pen {
        let mut full = vec!["-U"];
        full.extend_from_slice(args);
        let mut pen = Pen::spawn(&full);
        pen.port = port;
        pen.expect_ready("bind UDP", || is_udp_bound(port));
        pen
    }

    /// `pen -f EXTRA 127.0.0.1:PORT BACKENDS` on a free port, listening.
    pub fn serve(extra: &[&str], backends: &[String]) -> Pen {
        Pen::serve_program(PEN, extra, backends)
    }

    /// `program -f EXTRA 127.0.0.1:PORT BACKENDS` on a free port, listening.
    pub fn serve_program(program: impl AsRef<OsStr>, extra: &[&str], backends: &[String]) -> Pen {
        let port = free_port();
        let args = listen_args(extra, port, backends);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Pen::start_program(program, port, &args)
    }

    /// `pen -f -U EXTRA 127.0.0.1:PORT BACKENDS` on a free UDP port, bound.
    pub fn serve_udp(extra: &[&str], backends: &[String]) -> Pen {
        let port = free_udp_port("127.0.0.1");
        let args = listen_args(extra, port, backends);
        Pen::start_udp(port, &args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// Spawns `pen -f ARGS` without waiting for anything.
    pub fn spawn(args: &[&str]) -> Pen {
        Pen::spawn_program(PEN, args)
    }

    /// Spawns `program -f ARGS` without waiting for anything.
    pub fn spawn_program(program: impl AsRef<OsStr>, args: &[&str]) -> Pen {
        Pen::spawn_command(&mut Command::new(program), args)
    }

    /// Spawns `command -f ARGS`, where `command` runs pen (through a
    /// wrapper that execs it, such as `ip netns exec`, so that its PID is
    /// pen's), without waiting for anything.
    pub fn spawn_command(command: &mut Command, args: &[&str]) -> Pen {
        let dir = TempDir::new("pen");
        let out = std::fs::File::create(dir.join("stdout")).expect("create stdout file");
        let err = std::fs::File::create(dir.join("stderr")).expect("create stderr file");
        let child = ChildGuard::spawn(
            command
                .arg("-f")
                .args(args)
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err),
        );
        Pen {
            child,
            port: 0,
            dir,
        }
    }

    /// Waits until `ready` holds (Ok) or pen exits first (Err, its exit code).
    pub fn wait_ready(&mut self, mut ready: impl FnMut() -> bool) -> Result<(), Option<i32>> {
        let mut exit = None;
        wait_until(DEADLINE, "pen to get ready or exit", || {
            exit = self.child.exited();
            exit.is_some() || ready()
        });
        match exit {
            Some(status) => Err(status.code()),
            None => Ok(()),
        }
    }

    /// [`Pen::wait_ready`], panicking with pen's stderr if pen exits.
    fn expect_ready(&mut self, what: &str, ready: impl FnMut() -> bool) {
        if let Err(code) = self.wait_ready(ready) {
            panic!(
                "pen exited ({code:?}) instead of getting ready to {what} on port {}: {}",
                self.port,
                self.stderr()
            );
        }
    }

    /// Everything pen wrote to stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.join("stdout")).unwrap_or_default()
    }

    /// Everything pen wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr")).unwrap_or_default()
    }

    /// Waits until stdout contains `needle`; all of stdout.
    pub fn wait_stdout(&self, needle: &str, within: Duration) -> String {
        wait_file_contains(&self.dir.join("stdout"), needle, within)
    }

    /// Waits until stderr contains `needle`; all of stderr.
    pub fn wait_stderr(&self, needle: &str, within: Duration) -> String {
        wait_file_contains(&self.dir.join("stderr"), needle, within)
    }

    /// pen's process id.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// CPU time (user + system) pen has used, in clock ticks (1/100 s).
    pub fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .expect("read pen's /proc stat");
        // Fields after the command name, which is in parentheses: state is
        // the first; utime and stime are fields 14 and 15 of the whole line.
        let rest = &stat[stat.rfind(')').expect("a command name") + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
    }

    /// Sends signal `sig` (a name such as `HUP`) to pen.
    pub fn signal(&self, sig: &str) {
        send_signal(self.pid(), sig);
    }

    /// Waits for pen to exit; its exit code (None: killed by a signal).
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        self.child.wait_exit(within, "pen").code()
    }

    /// Number of threads of the pen process.
    pub fn threads(&self) -> usize {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read pen's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .and_then(|n| n.trim().parse().ok())
            .expect("a Threads: line")
    }

    /// Number of open descriptors of the pen process.
    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("read pen's /proc fd directory")
            .count()
    }
}

/// `EXTRA 127.0.0.1:PORT BACKENDS` as one argument list.
fn listen_args(extra: &[&str], port: u16, backends: &[String]) -> Vec<String> {
    let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    args.push(format!("127.0.0.1:{port}"));
    args.extend(backends.iter().cloned());
    args
}
