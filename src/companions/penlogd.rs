//! penlogd: merges pen's request records and the web servers' access log
//! lines in real time (doc/pen-0.34.1.md, "penlogd").
//!
//! pen sends `+ CLIENT SERVER REQUEST` datagrams (doc/pen-0.34.1.md,
//! "penlogd datagrams"); each web server sends its access log lines through
//! penlog. penlogd keeps the last N pen records and, for every web line,
//! substitutes the real client address of the newest record from the same
//! server (the datagram's source address) with the same request.
//!
//! Differences from pen 0.34.1 (doc/pen-0.34.1.md, quirk Q39): the record ring
//! starts empty (no matches on uninitialised entries), datagrams of any size
//! are handled, IPv6 works and `-a` selects the address to listen on, `-u` also
//! sets the group and supplementary groups, the chroot changes directory into
//! the jail, start-up errors reach the terminal before the parent exits, and
//! usage errors exit 2.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{parse_args, parse_number, usage_error, Diagnostics, Parsed, EXIT_FAILURE, EXIT_OK};
use crate::daemon::{self, Account, StartupReport};
use crate::request_log::codec::{self, Host, RequestRecord, RECORD_MARK};
use crate::sys::signal::{self, Signal};
use crate::sys::{syslog, udp};

const PROG: &str = "penlogd";

/// Default number of pen records remembered (`-n`).
pub const DEFAULT_CACHE_SIZE: usize = 1000;

/// How many leading bytes of the web server's request must agree with the
/// stored pen request (pen 0.34.1 compares at most 100; doc/pen-0.34.1.md,
/// "penlogd").
pub const REQUEST_COMPARE_LEN: usize = 100;

/// Receive timeout, so that signal flags are looked at even if a signal
/// arrives just before `recv` blocks.
const RECV_TIMEOUT: Duration = Duration::from_secs(1);

const USAGE: &str = "\
Usage:
  penlogd [options] port

  -a addr   listen on addr (default 0.0.0.0; :: for IPv6 and IPv4)
  -b        flush output after every line (always done; accepted for compatibility)
  -d        debugging on (repeat for more)
  -f        stay in foreground
  -j dir    run in chroot
  -l file   append log to file (default: standard output)
  -n N      number of pen log entries to cache [1000]
  -p file   write pid to file
  -u user   run as alternative user
  --help    print this help and exit
  --version print the version and exit
";

/// The command line, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `-d` count.
    pub debug_level: u32,
    /// `-f`.
    pub foreground: bool,
    /// `-j`.
    pub chroot_dir: Option<PathBuf>,
    /// `-l`; `None` is standard output.
    pub log_file: Option<PathBuf>,
    /// `-n`.
    pub cache_size: usize,
    /// `-p`.
    pub pid_file: Option<PathBuf>,
    /// `-u`.
    pub user: Option<String>,
    /// `-a`; `None` is 0.0.0.0 as in pen 0.34.1.
    pub listen_host: Option<String>,
    /// The positional PORT.
    pub port: u16,
}

/// Checks the parsed options; `Err` is a usage error message.
fn config_from(matches: &getopts::Matches) -> Result<Config, String> {
    let port = match matches.free.as_slice() {
        [] => return Err("PORT is required".into()),
        [port] => match port.parse::<u16>() {
            Ok(p) if p != 0 => p,
            _ => return Err(format!("'{port}' is not a port number (1-65535)")),
        },
        _ => return Err("too many arguments (only PORT is expected)".into()),
    };
    let cache_size = match matches.opt_str("n") {
        None => DEFAULT_CACHE_SIZE,
        Some(n) => match parse_number::<usize>('n', &n, "a positive number")? {
            0 => return Err("-n: the cache needs at least 1 entry".into()),
            n => n,
        },
    };
    Ok(Config {
        debug_level: u32::try_from(matches.opt_count("d")).unwrap_or(u32::MAX),
        foreground: matches.opt_present("f"),
        chroot_dir: matches.opt_str("j").map(PathBuf::from),
        log_file: matches.opt_str("l").map(PathBuf::from),
        cache_size,
        pid_file: matches.opt_str("p").map(PathBuf::from),
        user: matches.opt_str("u"),
        listen_host: matches.opt_str("a"),
        port,
    })
}

/// Runs penlogd with `args` (without the program name); returns the exit
/// status.
pub fn run(args: Vec<OsString>) -> i32 {
    let mut opts = getopts::Options::new();
    opts.optopt("a", "", "listen address", "ADDR");
    opts.optflag("b", "", "flush every line");
    opts.optflagmulti("d", "", "debugging");
    opts.optflag("f", "", "stay in foreground");
    opts.optopt("j", "", "chroot", "DIR");
    opts.optopt("l", "", "log file", "FILE");
    opts.optopt("n", "", "cache size", "N");
    opts.optopt("p", "", "pid file", "FILE");
    opts.optopt("u", "", "user", "USER");
    let matches = match parse_args(PROG, USAGE, &mut opts, args) {
        Parsed::Run(m) => m,
        Parsed::Exit(status) => return status,
    };
    let config = match config_from(&matches) {
        Ok(c) => c,
        Err(msg) => return usage_error(PROG, &msg),
    };
    let mut diag = Diagnostics::new(PROG, config.debug_level);
    diag.timestamps = true;
    match start(&config, &mut diag) {
        Ok(Some(mut daemon)) => {
            daemon.serve(&diag);
            daemon.shut_down(&diag);
            EXIT_OK
        }
        Ok(None) => EXIT_FAILURE,
        Err(msg) => {
            diag.error(&msg);
            EXIT_FAILURE
        }
    }
}

/// Everything the receive loop needs.
struct Daemon {
    socket: UdpSocket,
    output: Output,
    ring: RecordRing,
    pid_file: Option<daemon::PidFile>,
}

/// Start-up. Errors before detaching are returned (printed by the caller);
/// errors after detaching are sent to the waiting parent and give `Ok(None)`.
fn start(config: &Config, diag: &mut Diagnostics) -> Result<Option<Daemon>, String> {
    let socket = bind(config)?;
    // Before the chroot: the password database is outside the jail.
    let account = config
        .user
        .as_deref()
        .map(daemon::lookup_user)
        .transpose()
        .map_err(|e| e.to_string())?;
    if config.foreground {
        return setup(config, socket, account.as_ref(), diag).map(Some);
    }
    // Before the chroot, so that the connection to /dev/log is made.
    syslog::open(c"penlogd");
    let report = daemon::detach().map_err(|e| e.to_string())?;
    finish_detached(config, socket, account.as_ref(), diag, report)
}

/// The detached child's part of start-up, ending with the report to the
/// parent.
fn finish_detached(
    config: &Config,
    socket: UdpSocket,
    account: Option<&Account>,
    diag: &mut Diagnostics,
    report: StartupReport,
) -> Result<Option<Daemon>, String> {
    let mut daemon = match setup(config, socket, account, diag) {
        Ok(d) => d,
        Err(msg) => {
            syslog::send(syslog::Priority::Err, &msg);
            report.failed(&format!("{PROG}: {msg}"));
            return Ok(None);
        }
    };
    // pen 0.34.1's penlogd kept its standard output when forking, so
    // `penlogd 10000 > access_log` works without -f; keep that by writing
    // to a copy of it, as ready() points descriptor 1 at /dev/null.
    if let Output::Stdout(ref mut out) = daemon.output {
        match io::stdout().as_fd().try_clone_to_owned() {
            Ok(fd) => *out = Some(File::from(fd)),
            Err(e) => {
                let msg = format!("cannot keep standard output: {e}");
                report.failed(&format!("{PROG}: {msg}"));
                daemon.shut_down(diag);
                return Ok(None);
            }
        }
    }
    report.ready();
    diag.to_syslog = true;
    Ok(Some(daemon))
}

/// Binds the UDP socket (`-a` address or 0.0.0.0) with a receive timeout.
fn bind(config: &Config) -> Result<UdpSocket, String> {
    let address: SocketAddr = match &config.listen_host {
        None => (Ipv4Addr::UNSPECIFIED, config.port).into(),
        Some(host) => (host.as_str(), config.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve listen address '{host}': {e}"))?
            .next()
            .ok_or_else(|| format!("listen address '{host}' has no address"))?,
    };
    let socket =
        UdpSocket::bind(address).map_err(|e| format!("cannot listen on UDP {address}: {e}"))?;
    socket
        .set_read_timeout(Some(RECV_TIMEOUT))
        .map_err(|e| format!("cannot set a receive timeout: {e}"))?;
    Ok(socket)
}

/// Chroot, privilege drop, output file, PID file, signal handlers — in
/// pen's order (doc/pen-0.34.1.md, "Privileges and chroot"), so the log and PID
/// files are resolved inside the jail and created as the `-u` user.
fn setup(
    config: &Config,
    socket: UdpSocket,
    account: Option<&Account>,
    diag: &Diagnostics,
) -> Result<Daemon, String> {
    if let Some(dir) = &config.chroot_dir {
        daemon::enter_chroot(dir).map_err(|e| e.to_string())?;
    }
    if let Some(account) = account {
        daemon::drop_privileges(account).map_err(|e| e.to_string())?;
    }
    let output = match &config.log_file {
        None => Output::Stdout(None),
        Some(path) => Output::File {
            file: open_log(path)
                .map_err(|e| format!("cannot open log file '{}': {e}", path.display()))?,
            path: path.clone(),
        },
    };
    let pid_file = match &config.pid_file {
        None => None,
        Some(path) => Some(daemon::write_pid_file(path).map_err(|e| e.to_string())?),
    };
    // HUP reopens the log, TERM and INT end the loop; USR1 keeps its
    // default action.
    if let Err(e) = signal::install_only(&[Signal::Term, Signal::Int, Signal::Hup]) {
        if let Some(p) = &pid_file {
            p.remove();
        }
        return Err(format!("cannot install signal handlers: {e}"));
    }
    diag.debug(
        1,
        &format!(
            "listening on UDP {}, remembering {} pen records",
            socket
                .local_addr()
                .map_or_else(|_| "?".to_string(), |a| a.to_string()),
            config.cache_size
        ),
    );
    Ok(Daemon {
        socket,
        output,
        ring: RecordRing::new(config.cache_size),
        pid_file,
    })
}

fn open_log(path: &Path) -> io::Result<File> {
    OpenOptions::new().append(true).create(true).open(path)
}

impl Daemon {
    /// Receives datagrams until SIGTERM/SIGINT.
    fn serve(&mut self, diag: &Diagnostics) {
        // Datagrams larger than the codec::DATAGRAM_MAX bytes pen sends are
        // read whole and handled like any other (pen 0.34.1 overflowed its
        // buffer by one, doc/pen-0.34.1.md, quirk Q39).
        let mut buf = vec![0u8; udp::RECV_BUFFER_LEN];
        let mut last_write_error: Option<io::ErrorKind> = None;
        loop {
            let signals = signal::take_pending();
            if signals.contains(Signal::Term) || signals.contains(Signal::Int) {
                break;
            }
            if signals.contains(Signal::Hup) {
                self.output.reopen(diag);
            }
            let (len, source) = match self.socket.recv_from(&mut buf) {
                Ok(received) => received,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) =>
                {
                    continue
                }
                Err(e) => {
                    diag.warning(&format!("receive error: {e}"));
                    // Avoid spinning on a persistent error.
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            let Some(line) = handle_datagram(&mut self.ring, source.ip(), &buf[..len], diag) else {
                continue;
            };
            match self.output.write_line(&line) {
                Ok(()) => last_write_error = None,
                Err(e) => {
                    if last_write_error != Some(e.kind()) {
                        diag.warning(&format!("cannot write log: {e}"));
                    }
                    last_write_error = Some(e.kind());
                }
            }
        }
    }

    fn shut_down(&mut self, diag: &Diagnostics) {
        diag.debug(1, "exiting");
        let _ = self.output.flush();
        if let Some(pid_file) = &self.pid_file {
            pid_file.remove();
        }
    }
}

/// Where merged lines go.
enum Output {
    /// Standard output, or a copy of it kept across detaching.
    Stdout(Option<File>),
    /// The `-l` file, reopened on SIGHUP.
    File { path: PathBuf, file: File },
}

impl Output {
    /// Writes one line (given with its newline) and flushes it, so the log
    /// is current (pen 0.34.1 buffered unless `-b`).
    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        match self {
            Output::Stdout(Some(file)) | Output::File { file, .. } => file.write_all(line),
            Output::Stdout(None) => {
                let mut out = io::stdout().lock();
                out.write_all(line)?;
                out.flush()
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::Stdout(None) => io::stdout().flush(),
            _ => Ok(()),
        }
    }

    /// SIGHUP: reopen the `-l` file (after log rotation); standard output
    /// is left alone. If the file cannot be opened the old one is kept.
    fn reopen(&mut self, diag: &Diagnostics) {
        if let Output::File { path, file } = self {
            match open_log(path) {
                Ok(new_file) => {
                    *file = new_file;
                    diag.debug(1, &format!("reopened {}", path.display()));
                }
                Err(e) => diag.warning(&format!(
                    "cannot reopen log file '{}', still writing to the old one: {e}",
                    path.display()
                )),
            }
        }
    }
}

/// The last N pen records, newest last.
#[derive(Debug)]
pub struct RecordRing {
    records: VecDeque<RequestRecord>,
    capacity: usize,
}

impl RecordRing {
    /// An empty ring remembering at most `capacity` (≥ 1) records.
    pub fn new(capacity: usize) -> Self {
        RecordRing {
            records: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Adds a record, forgetting the oldest when full.
    pub fn push(&mut self, record: RequestRecord) {
        if self.records.len() == self.capacity {
            self.records.pop_front();
        }
        self.records.push_back(record);
    }

    /// The newest record from `server` whose request starts with the first
    /// [`REQUEST_COMPARE_LEN`] bytes of `request`. Records are not consumed.
    /// An empty request matches nothing.
    pub fn find(&self, server: IpAddr, request: &[u8]) -> Option<&RequestRecord> {
        if request.is_empty() {
            return None;
        }
        let wanted = &request[..request.len().min(REQUEST_COMPARE_LEN)];
        let server = Host::Ip(server);
        self.records
            .iter()
            .rev()
            .find(|r| r.server == server && r.request.starts_with(wanted))
    }

    /// Number of records held.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when no record is held.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// Handles one datagram from `source`: a pen record (starting with `+`) is
/// remembered; a web log line is returned, newline-terminated, with its
/// first field replaced by the real client when a record matches. `None`
/// when there is nothing to write.
pub fn handle_datagram(
    ring: &mut RecordRing,
    source: IpAddr,
    data: &[u8],
    diag: &Diagnostics,
) -> Option<Vec<u8>> {
    let line = data.strip_suffix(b"\n").unwrap_or(data);
    if line.first() == Some(&RECORD_MARK) {
        match codec::decode_datagram(line) {
            Ok(record) => {
                diag.debug(2, &format!("pen record: {}", String::from_utf8_lossy(line)));
                ring.push(record);
            }
            Err(why) => diag.debug(
                1,
                &format!(
                    "discarding bogus pen line ({why}): {}",
                    String::from_utf8_lossy(line)
                ),
            ),
        }
        return None;
    }
    let Some(request) = quoted_request(line) else {
        diag.debug(
            1,
            &format!(
                "discarding web line without a quoted request: {}",
                String::from_utf8_lossy(line)
            ),
        );
        return None;
    };
    let server = source.to_canonical();
    let mut out = Vec::with_capacity(line.len() + 48);
    match (
        ring.find(server, request),
        line.iter().position(|&b| b == b' '),
    ) {
        (Some(record), Some(first_space)) => {
            diag.debug(
                2,
                &format!(
                    "{server}: client {} for {}",
                    String::from_utf8_lossy(&record.client),
                    String::from_utf8_lossy(request)
                ),
            );
            out.extend_from_slice(&record.client);
            out.extend_from_slice(&line[first_space..]);
        }
        _ => {
            diag.debug(
                2,
                &format!(
                    "{server}: no pen record for {}",
                    String::from_utf8_lossy(request)
                ),
            );
            out.extend_from_slice(line);
        }
    }
    out.push(b'\n');
    Some(out)
}

/// The text between the first and the second `"` of a web log line.
pub fn quoted_request(line: &[u8]) -> Option<&[u8]> {
    let open = line.iter().position(|&b| b == b'"')?;
    let after = &line[open + 1..];
    let close = after.iter().position(|&b| b == b'"')?;
    Some(&after[..close])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quiet() -> Diagnostics {
        Diagnostics::new(PROG, 0)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn feed(ring: &mut RecordRing, source: &str, data: &str) -> Option<String> {
        handle_datagram(ring, ip(source), data.as_bytes(), &quiet())
            .map(|l| String::from_utf8(l).unwrap())
    }

    #[test]
    fn spec_example_substitutes_only_matching_server_and_request() {
        let mut ring = RecordRing::new(10);
        assert_eq!(
            feed(
                &mut ring,
                "127.0.0.1",
                "+ 127.0.0.9 127.0.0.2 GET /x HTTP/1.0\n"
            ),
            None
        );
        let web = "127.0.0.1 - - [26/Nov/2026:09:00:00 +0000] \"GET /x HTTP/1.0\" 200 5\n";
        assert_eq!(
            feed(&mut ring, "127.0.0.2", web).unwrap(),
            "127.0.0.9 - - [26/Nov/2026:09:00:00 +0000] \"GET /x HTTP/1.0\" 200 5\n"
        );
        let other_request =
            "127.0.0.1 - - [26/Nov/2026:09:00:00 +0000] \"GET /y HTTP/1.0\" 200 5\n";
        assert_eq!(
            feed(&mut ring, "127.0.0.2", other_request).unwrap(),
            other_request
        );
        assert_eq!(feed(&mut ring, "127.0.0.3", web).unwrap(), web);
    }

    #[test]
    fn newest_record_wins_and_records_are_not_consumed() {
        let mut ring = RecordRing::new(10);
        feed(
            &mut ring,
            "127.0.0.1",
            "+ 10.0.0.1 127.0.0.2 GET / HTTP/1.1\n",
        );
        feed(
            &mut ring,
            "127.0.0.1",
            "+ 10.0.0.2 127.0.0.2 GET / HTTP/1.1\n",
        );
        let web = "1.2.3.4 - - [x] \"GET / HTTP/1.1\" 200 1\n";
        for _ in 0..2 {
            assert!(feed(&mut ring, "127.0.0.2", web)
                .unwrap()
                .starts_with("10.0.0.2 - - "));
        }
    }

    #[test]
    fn ring_forgets_the_oldest_record() {
        let mut ring = RecordRing::new(2);
        feed(
            &mut ring,
            "127.0.0.1",
            "+ 10.0.0.1 127.0.0.2 GET /a HTTP/1.1\n",
        );
        feed(
            &mut ring,
            "127.0.0.1",
            "+ 10.0.0.2 127.0.0.2 GET /b HTTP/1.1\n",
        );
        feed(
            &mut ring,
            "127.0.0.1",
            "+ 10.0.0.3 127.0.0.2 GET /c HTTP/1.1\n",
        );
        assert_eq!(ring.len(), 2);
        let web_a = "h - - [x] \"GET /a HTTP/1.1\" 200 1\n";
        assert_eq!(feed(&mut ring, "127.0.0.2", web_a).unwrap(), web_a);
        let web_b = "h - - [x] \"GET /b HTTP/1.1\" 200 1\n";
        assert!(feed(&mut ring, "127.0.0.2", web_b)
            .unwrap()
            .starts_with("10.0.0.2 "));
    }

    #[test]
    fn requests_compare_on_the_first_100_bytes() {
        let long_path = "a".repeat(150);
        let mut ring = RecordRing::new(4);
        let record = format!("+ 10.0.0.1 127.0.0.2 GET /{long_path} HTTP/1.1\n");
        feed(&mut ring, "127.0.0.1", &record);
        let web = format!("h - - [x] \"GET /{long_path} HTTP/1.1\" 200 1\n");
        assert!(feed(&mut ring, "127.0.0.2", &web)
            .unwrap()
            .starts_with("10.0.0.1 "));
        // The stored request may be longer than the logged one (prefix rule).
        let short = "h - - [x] \"GET /aaa\" 200 1\n";
        assert!(feed(&mut ring, "127.0.0.2", short)
            .unwrap()
            .starts_with("10.0.0.1 "));
    }

    #[test]
    fn empty_request_matches_nothing() {
        let mut ring = RecordRing::new(4);
        feed(
            &mut ring,
            "127.0.0.1",
            "+ 10.0.0.1 127.0.0.2 GET / HTTP/1.1\n",
        );
        let web = "h - - [x] \"\" 400 0\n";
        assert_eq!(feed(&mut ring, "127.0.0.2", web).unwrap(), web);
    }

    #[test]
    fn ipv6_and_v4_mapped_sources_match() {
        let mut ring = RecordRing::new(4);
        feed(&mut ring, "::1", "+ 2001:db8::7 ::1 GET /six HTTP/1.1\n");
        feed(
            &mut ring,
            "::1",
            "+ 10.0.0.4 127.0.0.2 GET /four HTTP/1.1\n",
        );
        let six = "::1 - - [x] \"GET /six HTTP/1.1\" 200 1\n";
        assert_eq!(
            feed(&mut ring, "::1", six).unwrap(),
            "2001:db8::7 - - [x] \"GET /six HTTP/1.1\" 200 1\n"
        );
        // A dual-stack socket sees IPv4 senders as ::ffff:a.b.c.d.
        let four = "h - - [x] \"GET /four HTTP/1.1\" 200 1\n";
        assert!(feed(&mut ring, "::ffff:127.0.0.2", four)
            .unwrap()
            .starts_with("10.0.0.4 "));
    }

    #[test]
    fn bogus_pen_records_are_discarded() {
        // The reasons are tested with the codec (crate::request_log::codec).
        let mut ring = RecordRing::new(4);
        for bad in [
            "+\n",
            "+ 10.0.0.1\n",
            "+ 10.0.0.1 bogus GET / HTTP/1.0\n",
            "+ 10.0.0.1 127.0.0.2 \r\n",
        ] {
            assert_eq!(feed(&mut ring, "127.0.0.1", bad), None, "{bad}");
        }
        assert!(ring.is_empty());
    }

    #[test]
    fn pen_record_fields() {
        let mut ring = RecordRing::new(4);
        feed(
            &mut ring,
            "127.0.0.1",
            "+ 10.0.0.1  127.0.0.2  GET /x HTTP/1.0\r\n",
        );
        let r = ring.find(ip("127.0.0.2"), b"GET /x HTTP/1.0").unwrap();
        assert_eq!(r.client, b"10.0.0.1");
        assert_eq!(r.server, Host::Ip(ip("127.0.0.2")));
        assert_eq!(r.request, b"GET /x HTTP/1.0");
    }

    #[test]
    fn web_lines_without_quotes_are_dropped_and_lines_get_a_newline() {
        let mut ring = RecordRing::new(4);
        assert_eq!(feed(&mut ring, "127.0.0.2", "no quotes here\n"), None);
        assert_eq!(feed(&mut ring, "127.0.0.2", "one \" quote\n"), None);
        assert_eq!(
            feed(&mut ring, "127.0.0.2", "h \"GET /\" 1").unwrap(),
            "h \"GET /\" 1\n"
        );
    }

    #[test]
    fn oversized_and_binary_datagrams_are_harmless() {
        let mut ring = RecordRing::new(4);
        let mut big = vec![b'+'; 1];
        big.extend(std::iter::repeat_n(b'\xff', 5000));
        assert_eq!(
            handle_datagram(&mut ring, ip("127.0.0.1"), &big, &quiet()),
            None
        );
        let mut web = b"h \"".to_vec();
        web.extend(std::iter::repeat_n(b'\x00', 3000));
        web.push(b'"');
        assert!(handle_datagram(&mut ring, ip("127.0.0.1"), &web, &quiet()).is_some());
    }

    fn config(args: &[&str]) -> Result<Config, String> {
        let mut opts = getopts::Options::new();
        for o in ["a", "j", "l", "n", "p", "u"] {
            opts.optopt(o, "", "", "");
        }
        opts.optflag("b", "", "");
        opts.optflag("f", "", "");
        opts.optflagmulti("d", "", "");
        config_from(&opts.parse(args).unwrap())
    }

    #[test]
    fn command_line_is_checked() {
        let c = config(&["-dd", "-f", "-n", "5", "-a", "::1", "10000"]).unwrap();
        assert_eq!(c.debug_level, 2);
        assert!(c.foreground);
        assert_eq!(c.cache_size, 5);
        assert_eq!(c.listen_host.as_deref(), Some("::1"));
        assert_eq!(c.port, 10000);
        assert_eq!(config(&["10000"]).unwrap().cache_size, DEFAULT_CACHE_SIZE);
        assert!(config(&[]).is_err());
        assert!(config(&["0"]).is_err());
        assert!(config(&["70000"]).is_err());
        assert!(config(&["1", "2"]).is_err());
        assert!(config(&["-n", "0", "1"]).is_err());
        assert!(config(&["-n", "x", "1"]).is_err());
    }
}
