//! The `metrics` command and the `metrics_listen` endpoint's body: the
//! Prometheus text exposition format, version 0.0.4 (man/penctl.1,
//! `metrics`). Counters only grow: they live in the running state, which
//! reloads change but never replace, and a server slot given another
//! address starts a new label set (`state::servers::SlotMetrics`).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use crate::addr::Host;
use crate::runtime::Shared;
use crate::state::servers::Backend;
use crate::state::{Balancer, DsrCounters, Refusal};

/// The media type of the format, for the HTTP endpoint.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// One server slot's values, copied out under the lock.
struct ServerRow {
    index: usize,
    address: String,
    conns: u32,
    connections: u64,
    sent: u64,
    received: u64,
    failures: u64,
    blacklisted: bool,
    health_down: bool,
}

/// A per-server family: name, type, help, and its value in a row.
type ServerFamily = (
    &'static str,
    &'static str,
    &'static str,
    fn(&ServerRow) -> u64,
);

/// What the lock is held for: copying numbers, no formatting.
struct Snapshot {
    servers: Vec<ServerRow>,
    refused: Vec<(Refusal, u64)>,
    used: usize,
    dsr: Option<DsrCounters>,
}

/// The `address` label: `host:port`, `[v6]:port`, or a Unix socket's path.
fn address(s: &Backend) -> String {
    match &s.host {
        Host::Ip(std::net::IpAddr::V6(ip)) => format!("[{ip}]:{}", s.port),
        Host::Ip(ip) => format!("{ip}:{}", s.port),
        Host::Unix(p) => p.display().to_string(),
        Host::Unset => String::new(),
    }
}

/// The byte totals of slot `s` as the metrics count them (`sent`, `received`
/// plus the live pairs' bytes), for a slot re-pointed now.
pub fn slot_totals(s: &Backend, live: (u64, u64)) -> (u64, u64) {
    (s.sent + live.0, s.received + live.1)
}

fn snapshot(b: &Balancer, now: i64) -> Snapshot {
    let live = crate::stats::live_by_server(b);
    let servers = b
        .servers
        .backends
        .iter()
        .enumerate()
        .filter(|(_, s)| !matches!(s.host, Host::Unset))
        .map(|(i, s)| {
            let (sent, received) = slot_totals(s, live[i]);
            ServerRow {
                index: i,
                address: address(s),
                conns: s.conns,
                connections: s.metrics.connections,
                sent: sent.saturating_sub(s.metrics.sent_base),
                received: received.saturating_sub(s.metrics.received_base),
                failures: s.metrics.connect_failures,
                blacklisted: s.is_blacklisted(now, b.settings.blacklist_time),
                health_down: b.settings.health_check > 0 && s.health.down,
            }
        })
        .collect();
    Snapshot {
        servers,
        refused: Refusal::ALL
            .iter()
            .map(|&r| (r, b.counters.refused(r)))
            .collect(),
        used: b.conns.used(),
        dsr: b.dsr.clone(),
    }
}

/// A label value with `\`, `"` and newlines escaped, as the format asks.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Open descriptors of this process (`/proc/self/fd`, less the one that
/// reading it uses); 0 where /proc is not mounted (a jail).
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count().saturating_sub(1))
}

fn family(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// The whole exposition text.
pub fn render(shared: &Shared) -> String {
    let now = crate::sys::now_unix();
    let snap = snapshot(&shared.lock(), now);
    let (udp, started_at) = {
        let info = shared.info();
        (info.udp, info.started_at)
    };
    let mut o = String::with_capacity(2048 + 600 * snap.servers.len());
    let per_server: [ServerFamily; 7] = [
        (
            "pen_server_connections",
            "gauge",
            "Connections to the server now.",
            |r| u64::from(r.conns),
        ),
        (
            "pen_server_connections_total",
            "counter",
            "Connections made to the server.",
            |r| r.connections,
        ),
        (
            "pen_server_sent_bytes_total",
            "counter",
            "Bytes relayed from clients to the server.",
            |r| r.sent,
        ),
        (
            "pen_server_received_bytes_total",
            "counter",
            "Bytes relayed from the server to clients.",
            |r| r.received,
        ),
        (
            "pen_server_connect_failures_total",
            "counter",
            "Connects to the server that failed (refused or timed out).",
            |r| r.failures,
        ),
        (
            "pen_server_blacklisted",
            "gauge",
            "1 while the server is blacklisted, else 0.",
            |r| u64::from(r.blacklisted),
        ),
        (
            "pen_server_health_down",
            "gauge",
            "1 while health checks hold the server down, else 0.",
            |r| u64::from(r.health_down),
        ),
    ];
    for (name, kind, help, value) in per_server {
        family(&mut o, name, kind, help);
        for r in &snap.servers {
            let _ = writeln!(
                o,
                "{name}{{server=\"{}\",address=\"{}\"}} {}",
                r.index,
                label(&r.address),
                value(r)
            );
        }
    }
    family(
        &mut o,
        "pen_clients_refused_total",
        "counter",
        "Clients closed without a server, by reason.",
    );
    for (why, n) in &snap.refused {
        let _ = writeln!(
            o,
            "pen_clients_refused_total{{reason=\"{}\"}} {n}",
            why.label()
        );
    }
    // Direct server return's families, only in that mode.
    if let Some(d) = &snap.dsr {
        family(
            &mut o,
            "pen_dsr_frames_total",
            "counter",
            "Frames for the VIP in direct server return mode, by what became of them.",
        );
        for (outcome, n) in [
            ("forwarded", d.forwarded),
            ("no_server", d.no_server),
            ("no_mac", d.no_mac),
            ("unsendable", d.unsendable),
            ("queue_full", d.queue_full),
        ] {
            let _ = writeln!(o, "pen_dsr_frames_total{{outcome=\"{outcome}\"}} {n}");
        }
        for (name, help, n) in [
            (
                "pen_dsr_tarpitted_total",
                "TCP SYNs answered by the tarpit (tarpit_acl).",
                d.tarpitted,
            ),
            (
                "pen_dsr_arp_replies_total",
                "ARP requests answered for the VIP and tarpit addresses.",
                d.arp_replies,
            ),
        ] {
            family(&mut o, name, "counter", help);
            let _ = writeln!(o, "{name} {n}");
        }
    }
    let (pairs, sessions) = if udp { (0, snap.used) } else { (snap.used, 0) };
    // Families of one unlabelled sample: name, type, help, value.
    let singles: [(&str, &str, &str, i64); 8] = [
        (
            "pen_clients_accepted_total",
            "counter",
            "Clients accepted (TCP connections, new UDP sessions).",
            shared.accepted.load(Ordering::Relaxed) as i64,
        ),
        (
            "pen_udp_dropped_datagrams_total",
            "counter",
            "Datagrams of clients without a session dropped during a drain.",
            shared.udp_dropped.load(Ordering::Relaxed) as i64,
        ),
        (
            "pen_pairs",
            "gauge",
            "TCP connection pairs now.",
            pairs as i64,
        ),
        (
            "pen_udp_sessions",
            "gauge",
            "UDP sessions now.",
            sessions as i64,
        ),
        (
            "pen_worker_threads",
            "gauge",
            "Pair threads alive, busy or parked.",
            shared.pool.threads() as i64,
        ),
        (
            "pen_open_fds",
            "gauge",
            "Open file descriptors.",
            open_fds() as i64,
        ),
        (
            "pen_draining",
            "gauge",
            "1 while pen drains (SIGQUIT, drain): no new clients, exit when the live ones end.",
            i64::from(shared.draining()),
        ),
        (
            "pen_start_time_seconds",
            "gauge",
            "Start time of the process since the Unix epoch, in seconds.",
            started_at,
        ),
    ];
    for (name, kind, help, v) in singles {
        family(&mut o, name, kind, help);
        let _ = writeln!(o, "{name} {v}");
    }
    family(
        &mut o,
        "pen_build_info",
        "gauge",
        "The version and the optional features of this build; always 1.",
    );
    let _ = writeln!(
        o,
        "pen_build_info{{version=\"{}\",features=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        crate::FEATURES.join(",")
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn addresses_name_host_and_port() {
        let mut s = Backend::unset();
        s.port = 80;
        s.host = Host::Ip("::1".parse().unwrap());
        assert_eq!(address(&s), "[::1]:80");
        s.host = Host::Ip("10.0.0.1".parse().unwrap());
        assert_eq!(address(&s), "10.0.0.1:80");
        s.host = Host::Unix("/run/app.sock".into());
        assert_eq!(address(&s), "/run/app.sock");
    }
}
