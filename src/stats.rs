//! Statistics: the USR1 report on stdout (our stable, parseable format),
//! the HTML status page (doc/pen-0.34.1.md, "HTML status page") for
//! `-w`/`web_stats` and `status`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::runtime::Shared;
use crate::state::clients::client_text;
use crate::state::connections::PairCounters;
use crate::state::servers::Target;
use crate::state::Balancer;

/// Live byte counters of the pairs on each server: (from clients, from server).
pub fn live_by_server(b: &Balancer) -> Vec<(u64, u64)> {
    let mut live = vec![(0u64, 0u64); b.servers.len()];
    for (_, c) in b.conns.iter() {
        if let Target::Backend(i) = c.server {
            if let Some(l) = live.get_mut(i) {
                l.0 += PairCounters::get(&c.pair.counters.from_client);
                l.1 += PairCounters::get(&c.pair.counters.from_server);
            }
        }
    }
    live
}

/// The USR1 report: a header line, then one `key=value` line per server,
/// tracked client and active connection. Documented in pen(1); keep stable.
pub fn text_report(b: &Balancer, now: i64) -> String {
    let mut o = String::new();
    let clients = b.clients.active().count();
    let _ = writeln!(
        o,
        "pen-stats time={now} servers={} clients={clients} connections={} clients_max={} conn_max={}",
        b.servers.len(),
        b.conns.used(),
        b.clients.capacity(),
        b.conns.capacity()
    );
    let live = live_by_server(b);
    let bt = b.settings.blacklist_time;
    for (i, s) in b.servers.backends.iter().enumerate() {
        let (status, until) = match s.blacklisted_until(now, bt) {
            Some(t) => ("blacklisted", t),
            None if !s.is_configured() => ("unset", 0),
            None => ("up", 0),
        };
        let _ = writeln!(
            o,
            "server index={i} addr={} port={} status={status} blacklisted_until={until} conns={} max={} hard={} weight={} prio={} sent={} received={}",
            s.host.to_string().replace(' ', "_"),
            s.port,
            s.conns,
            s.max_conns,
            s.hard_limit,
            s.weight,
            s.prio,
            s.sent + live[i].0,
            s.received + live[i].1
        );
    }
    for (i, c) in b.clients.active() {
        let addr = client_text(c);
        let _ = writeln!(
            o,
            "client index={i} addr={} last_seen={} age={} server={} connects={} sent={} received={}",
            if addr.is_empty() { "unix" } else { &addr },
            c.last_seen,
            now - c.last_seen,
            c.server.code(),
            c.connects,
            c.sent,
            c.received
        );
    }
    for (i, c) in b.conns.iter() {
        let _ = writeln!(
            o,
            "connection index={i} client={} server={} state={} client_fd={} server_fd={} age={} sent={} received={}",
            c.client,
            c.server.code(),
            c.state,
            c.client_fd,
            c.server_fd,
            now - c.since,
            PairCounters::get(&c.pair.counters.from_client),
            PairCounters::get(&c.pair.counters.from_server)
        );
    }
    o
}

const HEAD_CELL: &str = "<td bgcolor=\"#80f080\">";

fn header_row(o: &mut String, names: &[&str]) {
    o.push_str("<tr>\n");
    for n in names {
        let _ = writeln!(o, "{HEAD_CELL}{n}</td>");
    }
    o.push_str("</tr>\n");
}

fn row(o: &mut String, cells: &[String]) {
    o.push_str("<tr>\n");
    for c in cells {
        let _ = writeln!(o, "<td>{c}</td>");
    }
    o.push_str("</tr>\n");
}

/// The HTML status page in pen's layout (doc/pen-0.34.1.md,
/// "HTML status page").
pub fn html_report(b: &Balancer, now: i64) -> String {
    let mut o = String::new();
    o.push_str("<html>\n<head>\n<title>Pen status page</title>\n</head>\n");
    o.push_str("<body bgcolor=\"#ffffff\"><h1>Pen status page</h1>\n");
    let current = match b.current {
        Target::Backend(i) => i as i64,
        t => t.code(),
    };
    let _ = writeln!(
        o,
        "Time {}, {} servers, {current} current<p>",
        crate::sys::time::timestamp(now),
        b.servers.len()
    );
    o.push_str("<table bgcolor=\"#c0c0c0\">\n");
    header_row(
        &mut o,
        &[
            "server",
            "address",
            "status",
            "port",
            "connections",
            "max soft",
            "max hard",
            "sent",
            "received",
            "weight",
            "prio",
        ],
    );
    let live = live_by_server(b);
    for (i, s) in b.servers.backends.iter().enumerate() {
        row(
            &mut o,
            &[
                i.to_string(),
                s.host.to_string(),
                s.failed_at.to_string(),
                s.port.to_string(),
                s.conns.to_string(),
                s.max_conns.to_string(),
                s.hard_limit.to_string(),
                (s.sent + live[i].0).to_string(),
                (s.received + live[i].1).to_string(),
                s.weight.to_string(),
                s.prio.to_string(),
            ],
        );
    }
    let _ = writeln!(
        o,
        "</table>\n<h2>Active clients</h2>Max number of clients: {}<p><table bgcolor=\"#c0c0c0\">",
        b.clients.capacity()
    );
    header_row(
        &mut o,
        &[
            "client",
            "address",
            "age(secs)",
            "last server",
            "connects",
            "sent",
            "received",
        ],
    );
    for (i, c) in b.clients.active() {
        row(
            &mut o,
            &[
                i.to_string(),
                client_text(c),
                (now - c.last_seen).to_string(),
                c.server.code().to_string(),
                c.connects.to_string(),
                c.sent.to_string(),
                c.received.to_string(),
            ],
        );
    }
    let _ = writeln!(
        o,
        "</table>\n<h2>Active connections</h2>Number of connections: {} max, {} used, 0 last<p><table bgcolor=\"#c0c0c0\">",
        b.conns.capacity(),
        b.conns.used()
    );
    header_row(
        &mut o,
        &[
            "connection",
            "downfd",
            "upfd",
            "pending data down",
            "pending data up",
            "client",
            "server",
        ],
    );
    for (i, c) in b.conns.iter() {
        row(
            &mut o,
            &[
                i.to_string(),
                c.client_fd.to_string(),
                c.server_fd.to_string(),
                "0".into(),
                "0".into(),
                c.client.to_string(),
                c.server.code().to_string(),
            ],
        );
    }
    o.push_str("</table>\n</body>\n</html>\n");
    o
}

/// Writes `text` to `path` atomically (temp file in the same directory,
/// then rename), so a reader never sees a half-written page.
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::rename(&tmp, path))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
}

/// Rewrites the `-w` file, if one is configured.
pub fn write_web_stats(shared: &Shared) -> Option<std::io::Result<()>> {
    let path = shared.info().web_stats.clone()?;
    let html = html_report(&shared.lock(), crate::sys::now_unix());
    Some(write_atomically(&path, &html))
}
