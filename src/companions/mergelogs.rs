//! mergelogs: puts the real client addresses from pen's request log into
//! the web servers' access logs, offline (doc/pen-0.34.1.md, "mergelogs").
//!
//! Differences from pen 0.34.1: all times are UTC (doc/pen-0.34.1.md,
//! quirk Q18: pen converted through local time with an uninitialised DST flag);
//! malformed lines are reported on stderr instead of skipped silently; `-c`
//! honours the jitter window too; a pen request cut at pen's 100-byte limit
//! matches a longer request it begins; `[IPv6]:LOGFILE` names an IPv6 server;
//! debug output goes to stderr, not syslog; usage errors exit 2.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{
    days_from_civil, days_in_month, format_clf_utc, parse_args, parse_number, usage_error,
    Diagnostics, Parsed, EXIT_FAILURE, EXIT_OK, MONTHS,
};
use crate::request_log::codec::{self, FileLine, Host, FILE_REQUEST_MAX};

const PROG: &str = "mergelogs";

/// Default `-j`: pen 0.34.1 uses 600 s (its usage text claims 2).
pub const DEFAULT_JITTER: i64 = 600;

/// Lines longer than this are skipped as malformed (bounds memory use).
const MAX_LINE: usize = 64 * 1024;

const USAGE: &str = "\
Usage: mergelogs -p penlog [-c] [-d] [-j jitter] [-t seconds] \\
        server1:logfile1 [server2:logfile2 ...]

  -c                Do not use penlog cache (rescan pen's log for every line)
  -d                Debugging (repeat for more)
  -p penlog         Log file from pen
  -j jitter         Jitter in seconds [600]
  -t seconds        Subtract from pen's timestamps
  server:logfile    Web server address (as in pen's log) and its access log;
                    write an IPv6 address in brackets: [::1]:logfile
  --help            Print this help and exit
  --version         Print the version and exit
";

/// The command line, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `-p`.
    pub pen_log: PathBuf,
    /// `-j`, seconds.
    pub jitter: i64,
    /// `-t`, seconds subtracted from pen's timestamps.
    pub pen_time_offset: i64,
    /// False with `-c`.
    pub use_cache: bool,
    /// `-d` count.
    pub debug_level: u32,
    /// The `SERVER:LOGFILE` arguments.
    pub servers: Vec<ServerArg>,
}

/// One `SERVER:LOGFILE` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerArg {
    /// The server address as written (brackets removed).
    pub server: String,
    /// Its access log.
    pub log_file: PathBuf,
}

/// Splits `SERVER:LOGFILE` (or `[IPV6]:LOGFILE`).
pub fn parse_server_arg(arg: &str) -> Option<ServerArg> {
    let (server, log_file) = match arg.strip_prefix('[') {
        Some(rest) => rest.split_once("]:")?,
        None => arg.split_once(':')?,
    };
    if server.is_empty() || log_file.is_empty() {
        return None;
    }
    Some(ServerArg {
        server: server.to_string(),
        log_file: PathBuf::from(log_file),
    })
}

fn config_from(matches: &getopts::Matches) -> Result<Config, String> {
    let pen_log = matches
        .opt_str("p")
        .ok_or("-p PENLOG (pen's log file) is required")?;
    let jitter = match matches.opt_str("j") {
        None => DEFAULT_JITTER,
        Some(j) => {
            let j: i64 = parse_number('j', &j, "a number of seconds")?;
            if j < 0 {
                return Err("-j: the jitter cannot be negative".into());
            }
            j
        }
    };
    let pen_time_offset = match matches.opt_str("t") {
        None => 0,
        Some(t) => parse_number('t', &t, "a number of seconds")?,
    };
    if matches.free.is_empty() {
        return Err("at least one SERVER:LOGFILE is required".into());
    }
    let servers = matches
        .free
        .iter()
        .map(|arg| {
            parse_server_arg(arg)
                .ok_or_else(|| format!("bogus server argument '{arg}' (expected SERVER:LOGFILE)"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Config {
        pen_log: PathBuf::from(pen_log),
        jitter,
        pen_time_offset,
        use_cache: !matches.opt_present("c"),
        debug_level: u32::try_from(matches.opt_count("d")).unwrap_or(u32::MAX),
        servers,
    })
}

/// Runs mergelogs with `args` (without the program name); returns the exit
/// status.
pub fn run(args: Vec<OsString>) -> i32 {
    let mut opts = getopts::Options::new();
    opts.optopt("p", "", "pen's log file", "PENLOG");
    opts.optopt("j", "", "jitter", "SECONDS");
    opts.optopt("t", "", "pen time offset", "SECONDS");
    opts.optflag("c", "", "no cache");
    opts.optflagmulti("d", "", "debugging");
    let matches = match parse_args(PROG, USAGE, &mut opts, args) {
        Parsed::Run(m) => m,
        Parsed::Exit(status) => return status,
    };
    let config = match config_from(&matches) {
        Ok(c) => c,
        Err(msg) => return usage_error(PROG, &msg),
    };
    let diag = Diagnostics::new(PROG, config.debug_level);
    match run_config(&config, &diag) {
        Ok(()) => EXIT_OK,
        Err(MergeError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => EXIT_FAILURE,
        Err(e) => {
            diag.error(&e.to_string());
            EXIT_FAILURE
        }
    }
}

/// Why merging stopped.
#[derive(Debug)]
pub enum MergeError {
    /// A file could not be opened.
    Open {
        what: String,
        path: PathBuf,
        source: io::Error,
    },
    /// A file could not be read.
    Read { path: PathBuf, source: io::Error },
    /// Standard output could not be written.
    Output(io::Error),
}

impl std::fmt::Display for MergeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MergeError::Open { what, path, source } => {
                write!(f, "cannot open {what} '{}': {source}", path.display())
            }
            MergeError::Read { path, source } => {
                write!(f, "cannot read '{}': {source}", path.display())
            }
            MergeError::Output(e) => write!(f, "cannot write output: {e}"),
        }
    }
}

impl std::error::Error for MergeError {}

fn open(what: &str, path: &Path) -> Result<BufReader<File>, MergeError> {
    File::open(path)
        .map(BufReader::new)
        .map_err(|source| MergeError::Open {
            what: what.to_string(),
            path: path.to_path_buf(),
            source,
        })
}

fn run_config(config: &Config, diag: &Diagnostics) -> Result<(), MergeError> {
    let pen_reader = LineReader::new(open("pen log", &config.pen_log)?, config.pen_log.clone());
    let mut pen = PenLog::new(pen_reader, config, diag.clone());
    let mut web_logs = Vec::with_capacity(config.servers.len());
    for arg in &config.servers {
        let what = format!("log file of server {}", arg.server);
        let reader = LineReader::new(open(&what, &arg.log_file)?, arg.log_file.clone());
        web_logs.push(WebLog::new(&arg.server, reader));
    }
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    merge(&mut pen, &mut web_logs, &mut out, diag)?;
    out.flush().map_err(MergeError::Output)
}

/// Writes the web logs' lines, oldest current line first, with the client
/// address from pen's log (or the server's own address when none matches).
pub fn merge<R: BufRead + Seek, W: Write>(
    pen: &mut PenLog<R>,
    web_logs: &mut [WebLog<R>],
    out: &mut W,
    diag: &Diagnostics,
) -> Result<(), MergeError> {
    for log in web_logs.iter_mut() {
        log.advance(diag)?;
    }
    loop {
        // The oldest current line; on equal times the earlier argument.
        let oldest = web_logs
            .iter()
            .enumerate()
            .filter_map(|(i, log)| log.current.as_ref().map(|line| (line.time, i)))
            .min();
        let Some((_, index)) = oldest else {
            return Ok(());
        };
        let log = &mut web_logs[index];
        let Some(line) = log.current.take() else {
            return Ok(());
        };
        let client = pen.best_client(&log.server_key, &line.request, line.time)?;
        match &client {
            Some(c) => diag.debug(
                2,
                &format!(
                    "{}: {} -> client {}",
                    log.server_text,
                    String::from_utf8_lossy(&line.request),
                    String::from_utf8_lossy(c)
                ),
            ),
            None => diag.debug(
                2,
                &format!(
                    "{}: no pen record for {}",
                    log.server_text,
                    String::from_utf8_lossy(&line.request)
                ),
            ),
        }
        let client = client.as_deref().unwrap_or(log.server_text.as_bytes());
        write_merged(out, client, &line).map_err(MergeError::Output)?;
        log.advance(diag)?;
    }
}

/// Output format (doc/pen-0.34.1.md, "mergelogs"):
/// `CLIENT B1[DD/Mon/YYYY:HH:MM:SS +0000]B2"REQUEST"B3`.
fn write_merged<W: Write>(out: &mut W, client: &[u8], line: &WebLine) -> io::Result<()> {
    out.write_all(client)?;
    out.write_all(b" ")?;
    out.write_all(&line.before_time)?;
    out.write_all(b"[")?;
    out.write_all(format_clf_utc(line.time).as_bytes())?;
    out.write_all(b"]")?;
    out.write_all(&line.before_request)?;
    out.write_all(b"\"")?;
    out.write_all(&line.request)?;
    out.write_all(b"\"")?;
    out.write_all(&line.after_request)?;
    out.write_all(b"\n")
}

/// Reads lines of a file, bounded in length, counting them for messages.
pub struct LineReader<R> {
    reader: R,
    path: PathBuf,
    line_no: u64,
}

/// One line read by [`LineReader::next_line`].
enum Line {
    /// A line (without its newline or a trailing CR).
    Text,
    /// A line longer than [`MAX_LINE`]; its content was discarded.
    TooLong,
}

impl<R: BufRead> LineReader<R> {
    /// Wraps `reader`; `path` names it in messages.
    pub fn new(reader: R, path: PathBuf) -> Self {
        LineReader {
            reader,
            path,
            line_no: 0,
        }
    }

    /// Reads the next line into `buf`. `None` at end of file.
    fn next_line(&mut self, buf: &mut Vec<u8>) -> Result<Option<Line>, MergeError> {
        buf.clear();
        let mut too_long = false;
        let mut read_any = false;
        loop {
            let available = match self.reader.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(MergeError::Read {
                        path: self.path.clone(),
                        source,
                    })
                }
            };
            if available.is_empty() {
                break;
            }
            read_any = true;
            let (take, done) = match available.iter().position(|&b| b == b'\n') {
                Some(nl) => (nl + 1, true),
                None => (available.len(), false),
            };
            if !too_long {
                buf.extend_from_slice(&available[..take]);
                if buf.len() > MAX_LINE + 2 {
                    too_long = true;
                    buf.clear();
                }
            }
            self.reader.consume(take);
            if done {
                break;
            }
        }
        if !read_any {
            return Ok(None);
        }
        self.line_no += 1;
        if too_long {
            return Ok(Some(Line::TooLong));
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
        }
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        Ok(Some(Line::Text))
    }

    /// Reports a skipped line on stderr.
    fn skip_message(&self, diag: &Diagnostics, why: impl fmt::Display) {
        diag.warning(&format!(
            "{}:{}: skipping malformed line ({why})",
            self.path.display(),
            self.line_no
        ));
    }
}

impl<R: BufRead + Seek> LineReader<R> {
    fn rewind(&mut self) -> Result<(), MergeError> {
        self.reader
            .seek(SeekFrom::Start(0))
            .map_err(|source| MergeError::Read {
                path: self.path.clone(),
                source,
            })?;
        self.line_no = 0;
        Ok(())
    }
}

/// A web server's access log line, split for rewriting (doc/pen-0.34.1.md,
/// "mergelogs").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebLine {
    /// The original first field (the address the server saw).
    pub client: Vec<u8>,
    /// Text between the first field's space and `[` (e.g. `- - `).
    pub before_time: Vec<u8>,
    /// The timestamp, seconds since the epoch.
    pub time: i64,
    /// Text between `]` and the opening `"` (e.g. a space).
    pub before_request: Vec<u8>,
    /// The quoted request, as written (escapes kept).
    pub request: Vec<u8>,
    /// Everything after the closing `"` (e.g. ` 200 5`).
    pub after_request: Vec<u8>,
}

/// Parses a Common/Combined Log Format line (without newline).
pub fn parse_web_line(line: &[u8]) -> Result<WebLine, &'static str> {
    let space = line
        .iter()
        .position(|&b| b == b' ')
        .ok_or("no space after the client field")?;
    let client = &line[..space];
    if client.is_empty() {
        return Err("empty client field");
    }
    let rest = &line[space + 1..];
    let open_bracket = rest
        .iter()
        .position(|&b| b == b'[')
        .ok_or("no '[' before the time")?;
    let after_open = &rest[open_bracket + 1..];
    let close_bracket = after_open
        .iter()
        .position(|&b| b == b']')
        .ok_or("no ']' after the time")?;
    let time = parse_clf_time(&after_open[..close_bracket])?;
    let after_time = &after_open[close_bracket + 1..];
    let open_quote = after_time
        .iter()
        .position(|&b| b == b'"')
        .ok_or("no quoted request")?;
    let quoted = &after_time[open_quote + 1..];
    let close_quote = closing_quote(quoted).ok_or("request not terminated by '\"'")?;
    Ok(WebLine {
        client: client.to_vec(),
        before_time: rest[..open_bracket].to_vec(),
        time,
        before_request: after_time[..open_quote].to_vec(),
        request: quoted[..close_quote].to_vec(),
        after_request: quoted[close_quote + 1..].to_vec(),
    })
}

/// Index of the first `"` not escaped by a backslash (Apache writes a `"`
/// inside the request as `\"`).
fn closing_quote(s: &[u8]) -> Option<usize> {
    let mut escaped = false;
    for (i, &b) in s.iter().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' => escaped = true,
            b'"' => return Some(i),
            _ => {}
        }
    }
    None
}

/// Converts `DD/Mon/YYYY:HH:MM:SS ±HHMM` to seconds since the epoch, applying
/// the zone offset (UTC throughout, doc/pen-0.34.1.md, quirk Q18).
pub fn parse_clf_time(text: &[u8]) -> Result<i64, &'static str> {
    const BAD: &str = "time not in DD/Mon/YYYY:HH:MM:SS +HHMM form";
    let text = std::str::from_utf8(text).map_err(|_| BAD)?;
    let (date_time, zone) = text.split_once(' ').ok_or(BAD)?;
    let mut parts = date_time.splitn(4, ':');
    let (Some(date), Some(hour), Some(minute), Some(second)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(BAD);
    };
    let mut date_parts = date.splitn(3, '/');
    let (Some(day), Some(month), Some(year)) =
        (date_parts.next(), date_parts.next(), date_parts.next())
    else {
        return Err(BAD);
    };
    let day: u32 = digits(day, 1, 2).ok_or(BAD)?;
    let month = MONTHS
        .iter()
        .position(|m| m.eq_ignore_ascii_case(month))
        .ok_or("unknown month")? as u32
        + 1;
    let year: i64 = digits(year, 4, 4).ok_or(BAD)?;
    let hour: i64 = digits(hour, 2, 2).ok_or(BAD)?;
    let minute: i64 = digits(minute, 2, 2).ok_or(BAD)?;
    let second: i64 = digits(second, 2, 2).ok_or(BAD)?;
    if day == 0 || day > days_in_month(year, month) || hour > 23 || minute > 59 || second > 60 {
        return Err("time field out of range");
    }
    let (sign, zone_digits) = match zone.as_bytes().first() {
        Some(b'+') => (1, &zone[1..]),
        Some(b'-') => (-1, &zone[1..]),
        _ => return Err(BAD),
    };
    let zone_value: i64 = digits(zone_digits, 4, 4).ok_or(BAD)?;
    let (zone_hours, zone_minutes) = (zone_value / 100, zone_value % 100);
    if zone_hours > 23 || zone_minutes > 59 {
        return Err("time zone out of range");
    }
    let local = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    Ok(local - sign * (zone_hours * 3600 + zone_minutes * 60))
}

/// Parses `min..=max` ASCII digits (no sign).
fn digits<T: std::str::FromStr>(s: &str, min: usize, max: usize) -> Option<T> {
    if s.len() < min || s.len() > max || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// One access log and its current (next to be written) line.
pub struct WebLog<R> {
    server_text: String,
    server_key: Host,
    reader: LineReader<R>,
    current: Option<WebLine>,
    buf: Vec<u8>,
}

impl<R: BufRead> WebLog<R> {
    /// The access log of `server` (as pen names it).
    pub fn new(server: &str, reader: LineReader<R>) -> Self {
        WebLog {
            server_text: server.to_string(),
            server_key: Host::new(server.as_bytes()),
            reader,
            current: None,
            buf: Vec::new(),
        }
    }

    /// Reads the next well-formed line into `current` (None at the end).
    fn advance(&mut self, diag: &Diagnostics) -> Result<(), MergeError> {
        self.current = None;
        while let Some(kind) = self.reader.next_line(&mut self.buf)? {
            match kind {
                Line::TooLong => self.reader.skip_message(diag, "too long"),
                Line::Text if self.buf.is_empty() => {}
                Line::Text => match parse_web_line(&self.buf) {
                    Ok(line) => {
                        self.current = Some(line);
                        return Ok(());
                    }
                    Err(why) => self.reader.skip_message(diag, why),
                },
            }
        }
        Ok(())
    }
}

/// Decodes a line of pen's request log, `time_offset` (`-t`) subtracted
/// from its time.
pub fn parse_pen_line(line: &[u8], time_offset: i64) -> Result<FileLine, codec::Malformed> {
    let mut line = codec::decode_file_line(line)?;
    line.time = line.time.saturating_sub(time_offset);
    Ok(line)
}

/// Whether pen's logged request stands for the web server's request: equal,
/// or cut at pen's limit ([`FILE_REQUEST_MAX`] bytes) and the beginning of it.
pub fn request_matches(pen_request: &[u8], web_request: &[u8]) -> bool {
    pen_request == web_request
        || (pen_request.len() == FILE_REQUEST_MAX && web_request.starts_with(pen_request))
}

/// pen's request log, searched for the record behind each web line.
pub struct PenLog<R> {
    reader: LineReader<R>,
    buf: Vec<u8>,
    jitter: i64,
    time_offset: i64,
    use_cache: bool,
    /// Cached mode: records around the current time, in file order.
    window: VecDeque<FileLine>,
    /// Cached mode: the first record not yet in the window (read ahead).
    lookahead: Option<FileLine>,
    at_end: bool,
    /// Uncached mode: malformed lines are reported on the first pass only.
    passes: u64,
    diag: Diagnostics,
}

impl<R: BufRead + Seek> PenLog<R> {
    /// Uses `config`'s jitter, offset and cache mode.
    pub fn new(reader: LineReader<R>, config: &Config, diag: Diagnostics) -> Self {
        PenLog {
            reader,
            buf: Vec::new(),
            jitter: config.jitter,
            time_offset: config.pen_time_offset,
            use_cache: config.use_cache,
            window: VecDeque::new(),
            lookahead: None,
            at_end: false,
            passes: 0,
            diag,
        }
    }

    /// The next well-formed record of the file, `None` at its end.
    fn next_record(&mut self, report: bool) -> Result<Option<FileLine>, MergeError> {
        while let Some(kind) = self.reader.next_line(&mut self.buf)? {
            match kind {
                Line::TooLong if report => self.reader.skip_message(&self.diag, "too long"),
                Line::TooLong => {}
                Line::Text => match parse_pen_line(&self.buf, self.time_offset) {
                    Ok(record) => return Ok(Some(record)),
                    Err(why) if report => self.reader.skip_message(&self.diag, why),
                    Err(_) => {}
                },
            }
        }
        Ok(None)
    }

    /// The client of the record from `server` with a matching request whose
    /// time is closest to `time`, at most the jitter away (the first such
    /// record in the file on a tie).
    pub fn best_client(
        &mut self,
        server: &Host,
        request: &[u8],
        time: i64,
    ) -> Result<Option<Vec<u8>>, MergeError> {
        let jitter = self.jitter;
        let is_candidate = |l: &FileLine| {
            l.record.server == *server
                && l.time.abs_diff(time) <= jitter.unsigned_abs()
                && request_matches(&l.record.request, request)
        };
        let mut best: Option<(u64, Vec<u8>)> = None;
        let mut consider = |l: &FileLine| {
            if is_candidate(l) {
                let distance = l.time.abs_diff(time);
                if best.as_ref().is_none_or(|(d, _)| distance < *d) {
                    best = Some((distance, l.record.client.clone()));
                }
            }
        };
        if self.use_cache {
            self.slide_window(time)?;
            self.window.iter().for_each(&mut consider);
        } else {
            self.reader.rewind()?;
            let report = self.passes == 0;
            self.passes += 1;
            while let Some(record) = self.next_record(report)? {
                consider(&record);
            }
        }
        Ok(best.map(|(_, client)| client))
    }

    /// Cached mode: reads records up to `time + jitter` and forgets those
    /// older than `time - 2 * jitter` (one extra jitter keeps records for
    /// web logs whose lines are slightly out of time order).
    fn slide_window(&mut self, time: i64) -> Result<(), MergeError> {
        let horizon = time.saturating_add(self.jitter);
        loop {
            if self.lookahead.is_none() && !self.at_end {
                self.lookahead = self.next_record(true)?;
                self.at_end = self.lookahead.is_none();
            }
            match self.lookahead.take() {
                Some(record) if record.time <= horizon => self.window.push_back(record),
                other => {
                    self.lookahead = other;
                    break;
                }
            }
        }
        let keep_from = time.saturating_sub(self.jitter.saturating_mul(2));
        while self.window.front().is_some_and(|r| r.time < keep_from) {
            self.window.pop_front();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    const T0: i64 = 1_795_683_600; // 26/Nov/2026:09:00:00 UTC

    fn quiet() -> Diagnostics {
        Diagnostics::new(PROG, 0)
    }

    #[test]
    fn clf_time_applies_the_zone_offset() {
        assert_eq!(parse_clf_time(b"26/Nov/2026:09:00:00 +0000"), Ok(T0));
        assert_eq!(parse_clf_time(b"26/Nov/2026:10:30:00 +0130"), Ok(T0));
        assert_eq!(parse_clf_time(b"26/Nov/2026:04:00:00 -0500"), Ok(T0));
        assert_eq!(parse_clf_time(b"01/Jan/1970:00:00:00 +0000"), Ok(0));
        assert_eq!(
            parse_clf_time(b"29/Feb/2024:00:00:00 +0000"),
            Ok(1_709_164_800)
        );
    }

    #[test]
    fn bad_clf_times_are_rejected() {
        for bad in [
            "26/Nov/2026:09:00:00",
            "26/Nov/2026:09:00 +0000",
            "26/Foo/2026:09:00:00 +0000",
            "32/Jan/2026:09:00:00 +0000",
            "29/Feb/2025:09:00:00 +0000",
            "26/Nov/2026:24:00:00 +0000",
            "26/Nov/2026:09:60:00 +0000",
            "26/Nov/2026:09:00:00 0000",
            "26/Nov/2026:09:00:00 +00",
            "26/Nov/26:09:00:00 +0000",
            "",
            "\u{e9}\u{e9}/Nov/2026:09:00:00 +0000",
        ] {
            assert!(parse_clf_time(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn combined_log_line_is_split() {
        let line = br#"127.0.0.2 - frank [26/Nov/2026:09:00:09 +0000] "GET /a\"b HTTP/1.0" 404 1 "ref" "agent""#;
        let w = parse_web_line(line).unwrap();
        assert_eq!(w.client, b"127.0.0.2");
        assert_eq!(w.before_time, b"- frank ");
        assert_eq!(w.time, T0 + 9);
        assert_eq!(w.before_request, b" ");
        assert_eq!(w.request, br#"GET /a\"b HTTP/1.0"#);
        assert_eq!(w.after_request, br#" 404 1 "ref" "agent""#);
    }

    #[test]
    fn malformed_web_lines_are_rejected() {
        for bad in [
            "garbage",
            " - - [26/Nov/2026:09:00:00 +0000] \"GET / HTTP/1.0\" 200 1",
            "h - - 26/Nov/2026:09:00:00 +0000 \"GET / HTTP/1.0\" 200 1",
            "h - - [26/Nov/2026:09:00:00 +0000 \"GET / HTTP/1.0\" 200 1",
            "h - - [26/Nov/2026:09:00:00 +0000] GET / HTTP/1.0 200 1",
            "h - - [26/Nov/2026:09:00:00 +0000] \"GET / HTTP/1.0 200 1",
            "h - - [yesterday] \"GET / HTTP/1.0\" 200 1",
        ] {
            assert!(parse_web_line(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn pen_lines_are_parsed() {
        let l = parse_pen_line(b"10.1.1.1 1795683600 127.0.0.2 GET /x HTTP/1.0", 0).unwrap();
        assert_eq!(l.record.client, b"10.1.1.1");
        assert_eq!(l.time, T0);
        assert_eq!(l.record.server, Host::Ip("127.0.0.2".parse().unwrap()));
        assert_eq!(l.record.request, b"GET /x HTTP/1.0");
        let unix = parse_pen_line(b" 1795683600 ::1 ", 3600).unwrap();
        assert!(unix.record.client.is_empty());
        assert_eq!(unix.time, T0 - 3600);
        assert!(unix.record.request.is_empty());
        assert!(parse_pen_line(b"10.1.1.1 soon 127.0.0.2 GET /", 0).is_err());
        assert!(parse_pen_line(b"10.1.1.1 1795683600", 0).is_err());
        assert!(parse_pen_line(b"", 0).is_err());
    }

    #[test]
    fn server_arguments() {
        let a = parse_server_arg("127.0.0.2:/var/log/a.log").unwrap();
        assert_eq!(a.server, "127.0.0.2");
        assert_eq!(a.log_file, PathBuf::from("/var/log/a.log"));
        let b = parse_server_arg("[::1]:b.log").unwrap();
        assert_eq!(b.server, "::1");
        assert_eq!(b.log_file, PathBuf::from("b.log"));
        assert!(parse_server_arg("nocolon").is_none());
        assert!(parse_server_arg(":file").is_none());
        assert!(parse_server_arg("host:").is_none());
        assert!(parse_server_arg("[::1]b.log").is_none());
    }

    #[test]
    fn truncated_pen_requests_match_longer_requests() {
        let long = format!("GET /{} HTTP/1.1", "x".repeat(200));
        let cut = &long.as_bytes()[..FILE_REQUEST_MAX];
        assert!(request_matches(cut, long.as_bytes()));
        assert!(!request_matches(b"GET /x", b"GET /xy"));
        assert!(request_matches(b"GET /x", b"GET /x"));
    }

    fn config(use_cache: bool, jitter: i64) -> Config {
        Config {
            pen_log: PathBuf::from("pen.log"),
            jitter,
            pen_time_offset: 0,
            use_cache,
            debug_level: 0,
            servers: Vec::new(),
        }
    }

    fn merge_text(pen_log: &str, logs: &[(&str, &str)], use_cache: bool, jitter: i64) -> String {
        let reader = LineReader::new(
            Cursor::new(pen_log.as_bytes().to_vec()),
            PathBuf::from("pen.log"),
        );
        let mut pen = PenLog::new(reader, &config(use_cache, jitter), quiet());
        let mut web: Vec<_> = logs
            .iter()
            .map(|(server, text)| {
                WebLog::new(
                    server,
                    LineReader::new(
                        Cursor::new(text.as_bytes().to_vec()),
                        PathBuf::from(*server),
                    ),
                )
            })
            .collect();
        let mut out = Vec::new();
        merge(&mut pen, &mut web, &mut out, &quiet()).unwrap();
        String::from_utf8(out).unwrap()
    }

    const SPEC_PEN_LOG: &str = "\
10.1.1.1 1795683600 127.0.0.2 GET /x HTTP/1.0
10.1.1.2 1795683601 127.0.0.3 GET /z HTTP/1.0
10.1.1.3 1795683605 127.0.0.2 GET /x HTTP/1.0
";
    const SPEC_SERVER2: &str = "\
127.0.0.1 - - [26/Nov/2026:09:00:04 +0000] \"GET /x HTTP/1.0\" 200 5
127.0.0.1 - - [26/Nov/2026:09:00:00 +0000] \"GET /x HTTP/1.0\" 200 5
127.0.0.1 - frank [26/Nov/2026:09:00:09 +0000] \"GET /nomatch HTTP/1.0\" 404 1 \"ref\" \"agent\"
";
    const SPEC_SERVER3: &str =
        "127.0.0.1 - - [26/Nov/2026:09:00:01 +0000] \"GET /z HTTP/1.0\" 200 5\n";
    const SPEC_OUTPUT: &str = "\
10.1.1.2 - - [26/Nov/2026:09:00:01 +0000] \"GET /z HTTP/1.0\" 200 5
10.1.1.3 - - [26/Nov/2026:09:00:04 +0000] \"GET /x HTTP/1.0\" 200 5
10.1.1.1 - - [26/Nov/2026:09:00:00 +0000] \"GET /x HTTP/1.0\" 200 5
127.0.0.2 - frank [26/Nov/2026:09:00:09 +0000] \"GET /nomatch HTTP/1.0\" 404 1 \"ref\" \"agent\"
";

    #[test]
    fn spec_example_cached_and_uncached() {
        for use_cache in [true, false] {
            let out = merge_text(
                SPEC_PEN_LOG,
                &[("127.0.0.2", SPEC_SERVER2), ("127.0.0.3", SPEC_SERVER3)],
                use_cache,
                DEFAULT_JITTER,
            );
            assert_eq!(out, SPEC_OUTPUT, "use_cache={use_cache}");
        }
    }

    #[test]
    fn records_outside_the_jitter_do_not_match() {
        let pen = "10.1.1.1 1795683600 127.0.0.2 GET /x HTTP/1.0\n";
        let web = "h - - [26/Nov/2026:09:00:10 +0000] \"GET /x HTTP/1.0\" 200 5\n";
        for use_cache in [true, false] {
            assert!(merge_text(pen, &[("127.0.0.2", web)], use_cache, 10).starts_with("10.1.1.1 "));
            assert!(merge_text(pen, &[("127.0.0.2", web)], use_cache, 9).starts_with("127.0.0.2 "));
        }
    }

    #[test]
    fn window_keeps_records_for_slightly_unordered_web_logs() {
        // The web log goes 100 s back; the record is still found.
        let pen = "\
10.0.0.1 1795683600 127.0.0.2 GET /a HTTP/1.0
10.0.0.2 1795683700 127.0.0.2 GET /b HTTP/1.0
";
        let web = "\
h - - [26/Nov/2026:09:01:40 +0000] \"GET /b HTTP/1.0\" 200 5
h - - [26/Nov/2026:09:00:00 +0000] \"GET /a HTTP/1.0\" 200 5
";
        let out = merge_text(pen, &[("127.0.0.2", web)], true, 60);
        let clients: Vec<&str> = out.lines().map(|l| l.split(' ').next().unwrap()).collect();
        assert_eq!(clients, ["10.0.0.2", "10.0.0.1"]);
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let pen = "junk\n10.1.1.1 1795683600 127.0.0.2 GET /x HTTP/1.0\n";
        let web =
            "not a log line\n\nh - - [26/Nov/2026:09:00:00 +0000] \"GET /x HTTP/1.0\" 200 5\r\n";
        let out = merge_text(pen, &[("127.0.0.2", web)], true, 600);
        assert_eq!(
            out,
            "10.1.1.1 - - [26/Nov/2026:09:00:00 +0000] \"GET /x HTTP/1.0\" 200 5\n"
        );
    }

    #[test]
    fn web_times_in_other_zones_are_written_in_utc() {
        let web = "h - - [26/Nov/2026:10:00:00 +0100] \"GET /x HTTP/1.0\" 200 5\n";
        let out = merge_text("", &[("s", web)], true, 600);
        assert_eq!(
            out,
            "s - - [26/Nov/2026:09:00:00 +0000] \"GET /x HTTP/1.0\" 200 5\n"
        );
    }

    #[test]
    fn ipv6_servers_compare_by_value() {
        let pen = "2001:db8::1 1795683600 0:0::1 GET /x HTTP/1.0\n";
        let web = "h - - [26/Nov/2026:09:00:00 +0000] \"GET /x HTTP/1.0\" 200 5\n";
        assert!(merge_text(pen, &[("::1", web)], true, 600).starts_with("2001:db8::1 - - "));
    }

    #[test]
    fn overlong_lines_are_skipped() {
        let mut web = "h".repeat(MAX_LINE + 10);
        web.push('\n');
        web.push_str("h - - [26/Nov/2026:09:00:00 +0000] \"GET /x HTTP/1.0\" 200 5\n");
        let out = merge_text("", &[("s", &web)], true, 600);
        assert_eq!(out.lines().count(), 1);
    }
}
