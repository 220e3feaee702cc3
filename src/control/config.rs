//! The `-F` configuration file: penctl commands, one per line
//! (doc/pen-0.34.1.md, "Configuration file"), read at start-up and on SIGHUP,
//! and written by `write` (doc/pen-0.34.1.md, "The write file").
//!
//! Differences from pen 0.34.1: the whole file is parsed before anything is
//! applied, so a file with an error changes nothing; at start-up that is a
//! fatal error naming the file and line (pen warned and ran on). `write`
//! always saves weight and prio (pen lost them unless that mode was on,
//! doc/pen-0.34.1.md, quirk Q35) and also saves settings pen forgot
//! (idle_timeout, pending_max, keepalive, transparent, source), so reading the
//! file back restores the same state.

use std::fmt;
use std::path::Path;

use super::command::CommandError;
use super::settings::{self, flag_line, number_line, Flag, Number};
use super::{Command, Origin};
use crate::runtime::{ProcessInfo, Shared};
use crate::settings::{DEFAULT_CLIENTS_MAX, DEFAULT_CONN_MAX};
use crate::state::Balancer;

/// A configuration file that cannot be used.
#[derive(Debug)]
pub enum ConfigError {
    Read {
        path: String,
        error: std::io::Error,
    },
    Line {
        path: String,
        line: usize,
        error: CommandError,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, error } => {
                write!(f, "can't read config file '{path}': {error}")
            }
            ConfigError::Line { path, line, error } => write!(f, "{path}:{line}: {error}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The largest `-F` or `include` file read: far more than any real
/// configuration, and a bound on what a mistaken path can cost.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The bytes of a `-F` or `include` file: a regular file of at most
/// [`MAX_CONFIG_BYTES`]. A FIFO would block the reader for as long as no
/// one writes, and a device such as /dev/zero never ends; they, and
/// directories, are refused without being read.
pub fn read_file(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::{Error, ErrorKind, Read};
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        // Opening a FIFO for reading would wait for a writer.
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(Error::new(ErrorKind::InvalidInput, "not a regular file"));
    }
    let too_big = || {
        Error::new(
            ErrorKind::InvalidData,
            format!("larger than {} KiB", MAX_CONFIG_BYTES / 1024),
        )
    };
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(too_big());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_CONFIG_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(too_big());
    }
    Ok(bytes)
}

/// Reads and parses every line of `path`.
pub fn load(path: &Path) -> Result<Vec<(usize, Command)>, ConfigError> {
    let name = path.display().to_string();
    let bytes = read_file(path).map_err(|error| ConfigError::Read {
        path: name.clone(),
        error,
    })?;
    parse_text(&name, &bytes)
}

/// Parses the content of a configuration file; `name` names it in errors.
/// Every command with its line number.
pub fn parse_text(name: &str, bytes: &[u8]) -> Result<Vec<(usize, Command)>, ConfigError> {
    let text = String::from_utf8_lossy(bytes);
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        match super::parse(line) {
            Ok(Some(cmd)) => out.push((i + 1, cmd)),
            Ok(None) => {}
            Err(error) => {
                return Err(ConfigError::Line {
                    path: name.to_string(),
                    line: i + 1,
                    error,
                })
            }
        }
    }
    Ok(out)
}

/// Reads `path` and runs it as one transaction: nothing changes if any
/// line is bad or fails, and the error names that line. The replies are
/// returned (pen prints them at start-up).
pub fn read_and_apply(shared: &Shared, path: &Path, origin: Origin) -> Result<String, ConfigError> {
    let cmds = load(path)?;
    super::run_batch(shared, &cmds, origin).map_err(|f| ConfigError::Line {
        path: path.display().to_string(),
        line: f.line,
        error: f.error,
    })
}

/// What `write` saves, in pen's order (`man/penctl.1`): names of the
/// settings table, and the commands that are not in it.
const PEN_WRITE_ORDER: &[&str] = &[
    "ascii",
    "blacklist",
    "client_acl",
    "control_acl",
    "debug",
    "hash",
    "http",
    "log",
    "roundrobin",
    "server",
    "stubborn",
    "tcp_fastclose",
    "tcp_nodelay",
    "timeout",
    "tracking",
    "web_stats",
    "weight",
    "prio",
];

fn quoted(s: &str) -> String {
    format!("'{s}'")
}

/// The `write` file content (doc/pen-0.34.1.md, "The write file").
pub fn render(b: &Balancer, info: &ProcessInfo, target: &Path) -> String {
    let s = &b.settings;
    let mut o = String::new();
    o.push_str(&format!(
        "# Generated by pen {}\n",
        crate::sys::time::timestamp(crate::sys::now_unix())
    ));
    let mut h = String::from("# pen");
    if info.udp {
        h.push_str(" -U");
    }
    if info.foreground {
        h.push_str(" -f");
    }
    if info.exit_enabled {
        h.push_str(" -X");
    }
    if b.clients.capacity() != DEFAULT_CLIENTS_MAX {
        h.push_str(&format!(" -c {}", b.clients.capacity()));
    }
    if let Some(e) = &info.emergency {
        h.push_str(&format!(" -e {e}"));
    }
    if let Some(a) = &info.abuse {
        h.push_str(&format!(" -B {a}"));
    }
    if let Some(j) = &info.chroot {
        h.push_str(&format!(" -j {}", quoted(j)));
    }
    if let Some(p) = &info.pid_file {
        h.push_str(&format!(" -p {}", quoted(p)));
    }
    if let Some(u) = &info.user {
        h.push_str(&format!(" -u {}", quoted(u)));
    }
    if b.conns.capacity() != DEFAULT_CONN_MAX {
        h.push_str(&format!(" -x {}", b.conns.capacity()));
    }
    h.push_str(&format!(" -F {}", quoted(&target.display().to_string())));
    h.push_str(&format!(
        " -C {}",
        info.control.as_deref().unwrap_or("(null)")
    ));
    h.push_str(&format!(" {}\n", info.listen.as_deref().unwrap_or("")));
    o.push_str(&h);
    for n in 0..crate::acl::ACL_COUNT {
        o.push_str(&format!("no acl {n}\n"));
        if let Some(acl) = b.acls.get(n) {
            for e in acl.entries() {
                o.push_str(&format!("acl {n} {e}\n"));
            }
        }
    }
    for name in PEN_WRITE_ORDER {
        match *name {
            "log" => match &info.log_target {
                Some(t) => o.push_str(&format!("log {t}\n")),
                None => o.push_str("no log\n"),
            },
            "server" => {
                for (i, sv) in b.servers.backends.iter().enumerate() {
                    if !matches!(sv.host, crate::addr::Host::Unset) {
                        // A slot given an address but no port yet has
                        // port 0, which `server N port` refuses: leave it
                        // out, so that the file reads back (found by
                        // fuzz/, target config_file).
                        let port = match sv.port {
                            0 => String::new(),
                            p => format!(" port {p}"),
                        };
                        o.push_str(&format!(
                            "server {i} acl {} address {}{port} max {} hard {} weight {} prio {}\n",
                            sv.acl, sv.host, sv.max_conns, sv.hard_limit, sv.weight, sv.prio
                        ));
                    }
                }
            }
            "tcp_fastclose" => o.push_str(&format!("tcp_fastclose {}\n", s.fastclose.name())),
            "web_stats" => match &info.web_stats {
                Some(w) => o.push_str(&format!("web_stats {}\n", w.display())),
                None => o.push_str("no web_stats\n"),
            },
            setting => {
                if let Some(f) = Flag::by_name(setting) {
                    o.push_str(&flag_line(f.row(), s));
                } else if let Some(n) = Number::by_name(setting) {
                    o.push_str(&number_line(n.row(), b));
                }
            }
        }
    }
    // Beyond pen's list, so that the file restores everything.
    o.push_str(&settings::after_pen_list(b));
    for (name, text) in [
        ("health_check_send", &s.health_check_send),
        ("health_check_expect", &s.health_check_expect),
    ] {
        if let Some(t) = text {
            o.push_str(&format!("{name} {}\n", super::command::escape(t)));
        }
    }
    if s.idlers > 0 {
        o.push_str(&format!("idlers {}\n", s.idlers));
    }
    match s.source {
        Some(ip) => o.push_str(&format!("source {ip}\n")),
        None => o.push_str("no source\n"),
    }
    if let Some(v) = s.send_proxy {
        o.push_str(&format!("send_proxy {}\n", v.name()));
    }
    if s.accept_proxy != crate::settings::AcceptProxy::Off {
        o.push_str(&format!("accept_proxy {}\n", s.accept_proxy.words()));
    }
    if b.geoip.no_defaults {
        o.push_str("no geoip_db\n");
    }
    for l in b.geoip.files() {
        if l.from_command {
            o.push_str(&format!("geoip_db {}\n", l.path.display()));
        }
    }
    // New commands, only when set, so that the file stays pen's otherwise.
    if let Some(m) = &info.metrics_listen {
        o.push_str(&format!("metrics_listen {m}\n"));
    }
    // pen 0.34.1 saved neither, so its files lost DSR on a restart.
    if let Some(i) = &info.dsr_if {
        o.push_str(&format!("dsr_if {i}\n"));
    }
    if let Some(ip) = s.dsr_ip {
        o.push_str(&format!("dsr_ip {ip}\n"));
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::settings::{Save, FLAGS, NUMBERS};

    #[test]
    fn pen_list_rows_are_in_the_write_order() {
        let listed = |name: &str| PEN_WRITE_ORDER.contains(&name);
        for r in FLAGS {
            assert_eq!(listed(r.name), r.save == Save::PenList, "{}", r.name);
        }
        for r in NUMBERS {
            assert_eq!(listed(r.name), r.save == Save::PenList, "{}", r.name);
        }
    }
}
