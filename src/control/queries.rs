//! Replies that report state (`man/penctl.1`): `servers`, `recent`,
//! `connection`, `socket` and the other read-only commands. They read
//! the state under the lock and never change it.

use super::command::{invalid, CommandError};
use super::settings::mode_line;
use super::Command;
use crate::geoip::{Coverage, GeoIp};
use crate::runtime::{ProcessInfo, Shared};
use crate::state::clients::client_text;
use crate::state::Balancer;

/// A read-only command answered straight from the running state, without
/// a transaction; `None` for every other command.
pub(super) fn answer(shared: &Shared, cmd: &Command) -> Option<String> {
    let now = crate::sys::now_unix();
    Some(match cmd {
        Command::Servers => servers_reply(&shared.lock()),
        Command::Dsr => match dsr_reply(&shared.lock()) {
            Ok(r) => r,
            Err(_) => return None,
        },
        Command::Health => health_reply(&shared.lock(), now),
        Command::Recent(secs) => recent_reply(&shared.lock(), *secs, now),
        Command::Connection(n) => connection_reply(&shared.lock(), *n),
        Command::Socket(n) => socket_reply(&shared.lock(), *n),
        Command::Mode => mode_reply(mode_line(&shared.lock().settings), shared),
        Command::Number(n, None) => {
            let row = n.row();
            (row.reply)((row.get)(&shared.lock()))
        }
        Command::Pid
        | Command::Control
        | Command::Listen(None)
        | Command::Log(None)
        | Command::MetricsListen(None) => info_reply(&shared.info(), cmd)?,
        Command::Metrics => crate::metrics::render(shared),
        _ => return None,
    })
}

/// The `mode` reply: pen's line, plus the word `draining` during a drain
/// (not in pen 0.34.1).
pub(super) fn mode_reply(line: String, shared: &Shared) -> String {
    if shared.draining() {
        format!("{} draining\n", line.trim_end())
    } else {
        line
    }
}

/// Replies that come from the process facts; `None` for other commands.
pub(super) fn info_reply(info: &ProcessInfo, cmd: &Command) -> Option<String> {
    let line = |v: &Option<String>| v.as_ref().map(|v| format!("{v}\n")).unwrap_or_default();
    Some(match cmd {
        Command::Pid => format!("{}\n", crate::sys::getpid()),
        Command::Control => line(&info.control),
        Command::Listen(None) => line(&info.listen),
        Command::Log(None) => line(&info.log_target),
        Command::MetricsListen(None) => line(&info.metrics_listen),
        _ => return None,
    })
}

/// `geoip_db` without a file: the databases in use, one line each.
pub(super) fn geoip_reply(g: &GeoIp) -> String {
    g.files()
        .iter()
        .map(|l| {
            let families = match l.db.coverage() {
                Coverage::V4 => "IPv4",
                Coverage::V6 => "IPv6",
                Coverage::Both => "IPv4 and IPv6",
            };
            format!("{} ({families}): {}\n", l.path.display(), l.db.describe())
        })
        .collect()
}

/// `country ADDRESS`: the code country ACL entries would match, or `--`.
pub(super) fn country_reply(g: &GeoIp, ip: std::net::IpAddr) -> String {
    match g.country(ip) {
        Some(c) => format!("{c}\n"),
        None => "--\n".to_string(),
    }
}

/// The server lines of `servers` (doc/pen-0.34.1.md, "Control commands"), with
/// live counters.
pub fn servers_reply(b: &Balancer) -> String {
    let live = crate::stats::live_by_server(b);
    let mut out = String::new();
    for (i, s) in b.servers.backends.iter().enumerate() {
        out.push_str(&format!(
            "{} addr {} port {} conn {} max {} hard {} weight {} prio {} sx {} rx {}\n",
            i,
            s.host,
            s.port,
            s.conns,
            s.max_conns,
            s.hard_limit,
            s.weight,
            s.prio,
            s.sent + live[i].0,
            s.received + live[i].1
        ));
        // In DSR mode, `sx` counts the bytes of the frames forwarded.
        if b.dsr.is_some() {
            out.insert_str(out.len() - 1, &format!(" frames {}", s.frames));
        }
    }
    out
}

/// The `dsr` reply: what direct server return did with the frames it saw
/// (man/penctl.1); an error when it is off.
pub(super) fn dsr_reply(b: &Balancer) -> Result<String, CommandError> {
    let Some(c) = &b.dsr else {
        return Err(invalid(
            "dsr: direct server return is off (start pen with -o 'dsr_if IFNAME')",
        ));
    };
    let tarpit = match b.settings.tarpit_acl {
        n if n >= 0 => format!("acl {n}"),
        _ => "off".to_string(),
    };
    Ok(format!(
        "{}\nforwarded {}\ndropped_no_server {}\ndropped_no_mac {}\ndropped_unsendable {}\n\
         dropped_queue_full {}\ntarpit {tarpit} tarpitted {}\narp_replies {}\n",
        c.description,
        c.forwarded,
        c.no_server,
        c.no_mac,
        c.unsendable,
        c.queue_full,
        c.tarpitted,
        c.arp_replies
    ))
}

/// The `health` reply: one line per server with the health checks' view
/// of it (`state unchecked` while they are off).
pub(super) fn health_reply(b: &Balancer, now: i64) -> String {
    let checking = b.settings.health_check > 0;
    let mut out = String::new();
    for (i, s) in b.servers.backends.iter().enumerate() {
        let h = &s.health;
        let state = match (checking, h.down) {
            (false, _) => "unchecked",
            (true, false) => "up",
            (true, true) => "down",
        };
        let (last, age) = match h.last {
            Some((result, at)) => (result.name(), (now - at).max(0).to_string()),
            None => ("none", "-".to_string()),
        };
        out.push_str(&format!(
            "{i} addr {} port {} state {state} passes {} fails {} last {last} age {age} downs {} ups {}\n",
            s.host, s.port, h.passes, h.fails, h.downs, h.ups
        ));
    }
    out
}

pub(super) fn recent_reply(b: &Balancer, seconds: i64, now: i64) -> String {
    let mut out = String::new();
    for (_, c) in b.clients.active() {
        if now - c.last_seen <= seconds {
            out.push_str(&format!(
                "{} connects {} sx {} rx {}\n",
                client_text(c),
                c.connects,
                c.sent,
                c.received
            ));
        }
    }
    out
}

pub(super) fn connection_reply(b: &Balancer, n: i64) -> String {
    if n < 0 || n as usize >= b.conns.capacity() {
        return format!("Connection {n} out of range\n");
    }
    match b.conns.get(n as usize) {
        Some(c) => format!(
            "Connection {n}:\nstate = {}\ndownfd = {}, upfd = {}\nclient = {}, server = {}\npend = 0\n",
            c.state,
            c.client_fd,
            c.server_fd,
            c.client,
            c.server.code()
        ),
        None => format!("Connection {n}:\nstate = 0\ndownfd = -1, upfd = -1\nclient = 0, server = 0\npend = 0\n"),
    }
}

pub(super) fn socket_reply(b: &Balancer, fd: i64) -> String {
    let owner = b
        .conns
        .iter()
        .find(|(_, c)| i64::from(c.client_fd) == fd || i64::from(c.server_fd) == fd)
        .map_or(-1, |(i, _)| i as i64);
    format!("Socket {fd} belongs to connection {owner}\n")
}
