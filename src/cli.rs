//! The command line (doc/pen-0.34.1.md, "Command line"). Options are pen's
//! getopt string
//! `B:C:F:O:S:T:b:c:e:i:j:l:m:o:p:q:t:u:w:x:DHNPQWXUadfhnrsE:K:G:A:ZRL:`,
//! intermixed with positional arguments as glibc's getopt allows.
//!
//! Differences from pen 0.34.1: usage errors (unknown option, missing or bad
//! argument, no LISTEN) print one line on stderr and exit 1 instead of
//! printing the usage and exiting 0; numbers must be whole numbers instead
//! of whatever `atoi` makes of them.

use std::fmt;

/// A setting given by a command-line flag, applied in command-line order
/// together with `-o` commands (doc/pen-0.34.1.md, "Start-up order", step 1).
/// Each is expressed as the penctl command it is equivalent to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// A flag's equivalent command; its reply (if any) is not printed.
    Quiet(String),
    /// An `-o`/`-O` command; its reply goes to stdout.
    Command(String),
    /// `-d`: raise the debug level by one.
    MoreDebug,
}

/// TLS options, kept as given; checked when the TLS context is built.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsArgs {
    pub cert: Option<String>,
    pub key: Option<String>,
    pub ca_file: Option<String>,
    pub ca_dir: Option<String>,
    pub require_client_cert: bool,
    pub compat: bool,
    pub protocol: Option<String>,
}

impl TlsArgs {
    pub fn any(&self) -> bool {
        *self != TlsArgs::default()
    }

    /// The TLS settings these options give (the `ssl_*` ones at their
    /// defaults); fails only on an unknown `-L` value.
    #[cfg(feature = "tls")]
    pub fn settings(&self) -> Result<crate::tls::TlsSettings, crate::tls::TlsError> {
        use std::path::PathBuf;
        Ok(crate::tls::TlsSettings {
            cert: self.cert.as_ref().map(PathBuf::from),
            key: self.key.as_ref().map(PathBuf::from),
            ca_file: self.ca_file.as_ref().map(PathBuf::from),
            ca_dir: self.ca_dir.as_ref().map(PathBuf::from),
            require_client_cert: self.require_client_cert,
            compat: self.compat,
            min_version: match &self.protocol {
                Some(p) => crate::tls::parse_protocol(p)?,
                None => crate::tls::MinVersion::Any,
            },
            ..crate::tls::TlsSettings::default()
        })
    }
}

/// Everything the command line says.
#[derive(Clone, Debug, Default)]
pub struct CommandLine {
    pub steps: Vec<Step>,
    /// LISTEN, if given (the first positional argument).
    pub listen: Option<String>,
    /// The other positional arguments.
    pub backends: Vec<String>,
    pub foreground: bool,
    pub udp: bool,
    pub exit_enabled: bool,
    pub control: Option<String>,
    pub config_file: Option<String>,
    pub pid_file: Option<String>,
    pub user: Option<String>,
    pub chroot: Option<String>,
    pub emergency: Option<String>,
    pub abuse: Option<String>,
    /// `-c`, `-x` as given (for the `write` header line).
    pub clients_max: Option<usize>,
    pub conn_max: Option<usize>,
    pub tls: TlsArgs,
    /// Notices to print on stderr (obsolete options), in order.
    pub notices: Vec<String>,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Invocation {
    Run(Box<CommandLine>),
    Help,
    Version,
}

/// A command-line error; printed as one line, exit status 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliError {
    Getopt(String),
    BadNumber {
        opt: char,
        value: String,
        what: &'static str,
    },
    NoListen,
    Unsupported {
        opt: char,
        why: &'static str,
    },
    BadProtocol(String),
    NoTls(char),
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Getopt(m) => write!(f, "{m} (try 'pen --help')"),
            CliError::BadNumber { opt, value, what } => {
                write!(f, "option -{opt}: '{value}' is not {what}")
            }
            CliError::NoListen => write!(f, "no listen address given (usage: pen [options] [host:]port backend ...; try 'pen --help')"),
            CliError::Unsupported { opt, why } => write!(f, "option -{opt} is not supported: {why}"),
            CliError::BadProtocol(p) => write!(
                f,
                "option -L: protocol version {p} not known (ssl23, ssl2, ssl3, tls1, tls1.0, tls1.1, tls1.2, tls1.3)"
            ),
            CliError::NoTls(opt) => write!(
                f,
                "option -{opt}: this pen was built without TLS support; rebuild with `make TLS=1`"
            ),
        }
    }
}

impl std::error::Error for CliError {}

fn options() -> getopts::Options {
    let mut o = getopts::Options::new();
    o.parsing_style(getopts::ParsingStyle::FloatingFrees);
    for (c, hint) in [
        ("B", "host:port"),
        ("C", "[host:]port|path"),
        ("F", "file"),
        ("O", "command"),
        ("S", "N"),
        ("T", "sec"),
        ("b", "sec"),
        ("c", "N"),
        ("e", "host[:port]"),
        ("i", "name"),
        ("j", "dir"),
        ("l", "file|host:port"),
        ("m", "N"),
        ("o", "command"),
        ("p", "file"),
        ("q", "N"),
        ("t", "sec"),
        ("u", "user"),
        ("w", "file"),
        ("x", "N"),
        ("E", "certfile"),
        ("K", "keyfile"),
        ("G", "cafile"),
        ("A", "cadir"),
        ("L", "protocol"),
    ] {
        o.optmulti(c, "", "", hint);
    }
    for c in [
        "D", "H", "N", "P", "Q", "W", "X", "U", "a", "d", "f", "h", "n", "r", "s", "Z", "R",
    ] {
        o.optflagmulti(c, "", "");
    }
    o.optflag("", "help", "");
    o.optflag("", "version", "");
    o
}

fn number(opt: char, value: &str, min: i64) -> Result<i64, CliError> {
    let what = if min > 0 {
        "a whole number of at least 1"
    } else {
        "a whole number"
    };
    match value.trim().parse::<i64>() {
        Ok(n) if n >= min => Ok(n),
        _ => Err(CliError::BadNumber {
            opt,
            value: value.to_string(),
            what,
        }),
    }
}

fn getopt_message(e: &getopts::Fail) -> String {
    match e {
        getopts::Fail::UnrecognizedOption(o) => {
            if o.trim_start_matches('-').chars().count() > 1 {
                format!("unrecognized option '--{}'", o.trim_start_matches('-'))
            } else {
                format!("invalid option -- '{}'", o.trim_start_matches('-'))
            }
        }
        getopts::Fail::ArgumentMissing(o) => {
            format!(
                "option requires an argument -- '{}'",
                o.trim_start_matches('-')
            )
        }
        other => other.to_string(),
    }
}

/// Parses `args` (without the program name).
pub fn parse(args: &[String]) -> Result<Invocation, CliError> {
    let m = options()
        .parse(args)
        .map_err(|e| CliError::Getopt(getopt_message(&e)))?;
    if m.opt_present("help") {
        return Ok(Invocation::Help);
    }
    if m.opt_present("version") {
        return Ok(Invocation::Version);
    }
    let mut cl = CommandLine::default();
    // Gather every occurrence with its position so settings apply in order.
    let mut ordered: Vec<(usize, char, Option<String>)> = Vec::new();
    for c in "BCFOSTbceijlmopqtuwxEKGAL".chars() {
        for (pos, v) in m.opt_strs_pos(&c.to_string()) {
            ordered.push((pos, c, Some(v)));
        }
    }
    for c in "DHNPQWXUadfhnrsZR".chars() {
        for pos in m.opt_positions(&c.to_string()) {
            ordered.push((pos, c, None));
        }
    }
    ordered.sort_by_key(|(pos, _, _)| *pos);
    for (_, c, v) in ordered {
        let v = v.unwrap_or_default();
        let quiet = |s: String| Step::Quiet(s);
        match c {
            'B' => cl.abuse = Some(v),
            'C' => cl.control = Some(v),
            'F' => cl.config_file = Some(v),
            'O' | 'o' => cl.steps.push(Step::Command(v)),
            'S' => cl.notices.push("As of 0.28.1 the server table is expanded dynamically,\nmaking the -S option obsolete".into()),
            'D' => cl.notices.push("Pen 0.26.0 removed the delayed forward feature,\nmaking the -D option obsolete".into()),
            'Q' => cl.notices.push("Since Pen 0.26.0, kqueue is already the default on supported systems,\nmaking the -Q option obsolete".into()),
            'n' => cl.notices.push("Pen 0.26.0 and up uses only nonblocking sockets,\nmaking the -n option obsolete".into()),
            'T' => cl.steps.push(quiet(format!("tracking {}", number('T', &v, 0)?))),
            'b' => cl.steps.push(quiet(format!("blacklist {}", number('b', &v, 0)?))),
            't' => cl.steps.push(quiet(format!("timeout {}", number('t', &v, 1)?))),
            // 0 keeps the default, as in pen (doc/pen-0.34.1.md,
            // "Command line").
            'c' => {
                let n = number('c', &v, 0)? as usize;
                if n > 0 {
                    cl.clients_max = Some(n);
                    cl.steps.push(quiet(format!("clients_max {n}")));
                }
            }
            'x' => {
                let n = number('x', &v, 0)? as usize;
                if n > 0 {
                    cl.conn_max = Some(n);
                    cl.steps.push(quiet(format!("conn_max {n}")));
                }
            }
            'm' => {
                let mut n = number('m', &v, i64::MIN)?;
                if n < 1 {
                    cl.notices.push("multi_accept bumped to 1".into());
                    n = 1;
                }
                cl.steps.push(quiet(format!("multi_accept {n}")));
            }
            'q' => {
                let mut n = number('q', &v, i64::MIN)?;
                if n < 50 {
                    cl.notices.push("listen_queue bumped to 50".into());
                    n = 50;
                }
                cl.steps.push(quiet(format!("listen_queue {n}")));
            }
            'e' => cl.emergency = Some(v),
            'i' => {
                return Err(CliError::Unsupported {
                    opt: 'i',
                    why: "installing a Windows service is only possible on Windows",
                })
            }
            'N' => {
                return Err(CliError::Unsupported {
                    opt: 'N',
                    why: "pen 0.34.1 lists it but never implemented it; use -h for hash selection",
                })
            }
            'j' => cl.chroot = Some(v),
            'l' => cl.steps.push(quiet(format!("log {v}"))),
            'p' => cl.pid_file = Some(v),
            'u' => cl.user = Some(v),
            'w' => cl.steps.push(quiet(format!("web_stats {v}"))),
            'H' => cl.steps.push(quiet("http".into())),
            // Our acceptor always uses poll(); -P asks for exactly that.
            'P' => {}
            'W' => cl.steps.push(quiet("weight".into())),
            'X' => cl.exit_enabled = true,
            'U' => cl.udp = true,
            'a' => cl.steps.push(quiet("ascii".into())),
            'd' => cl.steps.push(Step::MoreDebug),
            'f' => cl.foreground = true,
            'h' => cl.steps.push(quiet("hash".into())),
            'r' => cl.steps.push(quiet("roundrobin".into())),
            's' => cl.steps.push(quiet("stubborn".into())),
            'E' | 'K' | 'G' | 'A' | 'Z' | 'R' | 'L' if !cfg!(feature = "tls") => {
                return Err(CliError::NoTls(c));
            }
            'E' => cl.tls.cert = Some(v),
            'K' => cl.tls.key = Some(v),
            'G' => cl.tls.ca_file = Some(v),
            'A' => cl.tls.ca_dir = Some(v),
            'Z' => cl.tls.compat = true,
            'R' => cl.tls.require_client_cert = true,
            'L' => {
                const KNOWN: [&str; 8] = ["ssl23", "ssl2", "ssl3", "tls1", "tls1.0", "tls1.1", "tls1.2", "tls1.3"];
                if !KNOWN.contains(&v.as_str()) {
                    return Err(CliError::BadProtocol(v));
                }
                cl.tls.protocol = Some(v);
            }
            _ => {}
        }
    }
    let mut free = m.free.into_iter();
    cl.listen = free.next();
    cl.backends = free.collect();
    Ok(Invocation::Run(Box::new(cl)))
}

/// The usage text (`pen --help`): pen's, with the options we add.
const USAGE_HEAD: &str = "usage:
  pen [-C addr:port] [-X] [-b sec] [-c N] [-e host[:port]] \\
	  [-t sec] [-x N] [-w file] [-UHPWadfhrs] \\
          [-o option] \\
	  [-E certfile] [-K keyfile] \\
	  [-G cacertfile] [-A cacertdir] \\
	  [-Z] [-R] [-L protocol] \\
	  [host:]port h1[:p1[:maxc1[:hard1[:weight1[:prio1]]]]] [h2[:p2[:maxc2[:hard2[:weight2[:prio2]]]]]] ...

  -B host:port abuse server for naughty clients
  -C port   control port ([host:]port or /path/to/socket)
  -T sec    tracking time in seconds (0 = forever) [0]
  -H	add X-Forwarded-For header in http requests
  -U	use udp protocol support
  -O option	use option in penctl format
  -P	use poll() (always the case in this pen)
  -W    use weight for server selection
  -X	enable 'exit' command for control port
  -a	debugging dumps in ascii format
  -b sec    blacklist time in seconds [30]
  -c N      max number of clients [2048]
  -d	debugging on (repeat -d for more)
  -e host:port emergency server of last resort
  -f	stay in foreground
  -h	use hash for initial server selection
  -j dir    run in chroot
  -F file   name of configuration file
  -l file   logging on (file, or host:port of a penlogd)
  -m N      max accepts per poll wake-up [100]
  -q N      listen queue length [500]
  -r	bypass client tracking in server selection
  -s	stubborn selection, i.e. don't fail over
  -t sec    connect timeout in seconds [3]
  -u user   run as alternative user
  -p file   write pid to file
  -x N      max number of simultaneous connections [500]
  -w file   save statistics in HTML format in a file
  -o option use option in penctl format
";

/// The TLS options of the usage text.
const USAGE_TLS: &str = "  -E certfile   use the given certificate in PEM format
  -K keyfile    use the given key in PEM format (may be contained in cert)
  -G cacertfile file containing the CA's certificate
  -A cacertdir  directory containing CA certificates in hashed format
  -Z	    use SSL compatibility mode
  -R	    require valid peer certificate
  -L protocol   minimum protocol: ssl23 (default), ssl2, ssl3, tls1 (all: what
                OpenSSL allows), tls1.0, tls1.1, tls1.2, tls1.3
";

const USAGE_TAIL: &str = "  --help    this text
  --version print the version

example:
  pen smtp mailhost1:smtp mailhost2:25 mailhost3
";

/// Said before the TLS options by a build that has no TLS.
const USAGE_NO_TLS: &str = "  (the TLS options -E -K -G -A -Z -R -L need a TLS build: this pen was\n   built without TLS support; rebuild with `make TLS=1`)\n";

/// The `pen --help` text.
pub fn usage() -> String {
    let no_tls = if crate::FEATURES.contains(&"tls") {
        ""
    } else {
        USAGE_NO_TLS
    };
    format!("{USAGE_HEAD}{no_tls}{USAGE_TLS}{USAGE_TAIL}")
}

/// The `pen --version` text.
pub fn version() -> String {
    let features = if crate::FEATURES.is_empty() {
        "none (built without TLS support; rebuild with `make TLS=1` for it)".to_string()
    } else {
        crate::FEATURES.join(" ")
    };
    format!(
        "pen {} (Rust reimplementation of pen 0.34.1)\nfeatures: {features}\n",
        env!("CARGO_PKG_VERSION")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn run(s: &str) -> CommandLine {
        match parse(&args(s)).unwrap() {
            Invocation::Run(cl) => *cl,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn random_command_lines_never_panic() {
        let vocab = [
            "-b",
            "-t",
            "-x",
            "-c",
            "-m",
            "-q",
            "-o",
            "-dd",
            "-fr",
            "-W",
            "-L",
            "-E",
            "--",
            "--help",
            "x",
            "0",
            "-1",
            "80",
            "127.0.0.1:80",
            "-",
            "-bx",
            "--bogus",
            "-T",
            "99999999999999999999",
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let n = (x % 6) as usize;
            let mut y = x;
            let argv: Vec<String> = (0..n)
                .map(|_| {
                    y = y.rotate_left(7) ^ 0x5bd1_e995;
                    vocab[(y % vocab.len() as u64) as usize].to_string()
                })
                .collect();
            let _ = parse(&argv);
        }
    }

    #[test]
    fn intermixed_and_grouped() {
        let cl = run("10000 -F cfg -fr a:1 -dd b:2");
        assert_eq!(cl.listen.as_deref(), Some("10000"));
        assert_eq!(cl.backends, vec!["a:1", "b:2"]);
        assert!(cl.foreground);
        assert_eq!(cl.config_file.as_deref(), Some("cfg"));
        assert_eq!(
            cl.steps,
            vec![
                Step::Quiet("roundrobin".into()),
                Step::MoreDebug,
                Step::MoreDebug
            ]
        );
    }

    #[test]
    fn steps_keep_command_line_order() {
        let cl = run("-o prio -b 7 -W -o nohash 80");
        assert_eq!(
            cl.steps,
            vec![
                Step::Command("prio".into()),
                Step::Quiet("blacklist 7".into()),
                Step::Quiet("weight".into()),
                Step::Command("nohash".into()),
            ]
        );
    }

    #[test]
    fn attached_arguments() {
        let cl = run("-b30 -t1 80");
        assert_eq!(
            cl.steps,
            vec![
                Step::Quiet("blacklist 30".into()),
                Step::Quiet("timeout 1".into())
            ]
        );
    }

    #[test]
    fn errors() {
        assert!(matches!(parse(&args("-Y 80")), Err(CliError::Getopt(_))));
        assert!(matches!(parse(&args("80 -b")), Err(CliError::Getopt(_))));
        assert!(matches!(
            parse(&args("-t 0 80")),
            Err(CliError::BadNumber { opt: 't', .. })
        ));
        assert!(matches!(
            parse(&args("-b x 80")),
            Err(CliError::BadNumber { opt: 'b', .. })
        ));
        assert!(matches!(
            parse(&args("-x -1 80")),
            Err(CliError::BadNumber { opt: 'x', .. })
        ));
        assert!(matches!(
            parse(&args("-N 80")),
            Err(CliError::Unsupported { opt: 'N', .. })
        ));
        assert!(matches!(
            parse(&args("-i x 80")),
            Err(CliError::Unsupported { opt: 'i', .. })
        ));
        assert_eq!(
            parse(&args("-Y 80")).unwrap_err().to_string(),
            "invalid option -- 'Y' (try 'pen --help')"
        );
    }

    #[test]
    fn help_and_version() {
        assert!(matches!(parse(&args("--help")), Ok(Invocation::Help)));
        assert!(matches!(parse(&args("--version")), Ok(Invocation::Version)));
    }

    #[test]
    fn zero_table_sizes_keep_the_defaults() {
        let cl = run("-c 0 -x 0 80");
        assert_eq!(cl.clients_max, None);
        assert_eq!(cl.conn_max, None);
        assert!(cl.steps.is_empty());
        let cl = run("-c 7 -x 9 80");
        assert_eq!(cl.clients_max, Some(7));
        assert_eq!(cl.conn_max, Some(9));
        assert!(matches!(
            parse(&args("-c -1 80")),
            Err(CliError::BadNumber { opt: 'c', .. })
        ));
    }

    #[test]
    fn bumps() {
        let cl = run("-m 0 -q 10 80");
        assert_eq!(
            cl.notices,
            vec!["multi_accept bumped to 1", "listen_queue bumped to 50"]
        );
    }
}
