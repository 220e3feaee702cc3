//! Several pen instances in front of the same servers, in the namespaced
//! test network (tests/netns/testnet.sh): spread by ECMP routing
//! (contrib/ecmp/), taking over from each other by VRRP (keepalived, with
//! contrib/keepalived/keepalived.conf), and both at once
//! (keepalived-ecmp.conf). With `hash consistent` they agree on every
//! client without sharing any state. Two ignored tests measure the
//! failover times that README.md quotes.
//!
//! The network: client 192.0.2.10 (and more addresses to play many
//! clients), lb1 192.0.2.2 and lb2 192.0.2.3 (a pen each, servers in
//! different orders), be1..be3 192.0.2.21..23 (python servers that answer
//! with their name and the address of the pen that connected).

mod common;

use common::netns::TestNet;
use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

const HOSTS: [&str; 6] = ["client", "lb1", "lb2", "be1", "be2", "be3"];
const LB1: &str = "192.0.2.2";
const LB2: &str = "192.0.2.3";
/// The backends: host, address.
const BACKENDS: [(&str, &str); 3] = [
    ("be1", "192.0.2.21"),
    ("be2", "192.0.2.22"),
    ("be3", "192.0.2.23"),
];
const BACKEND_PORT: u16 = 8080;
/// Each pen's control port, in its own namespace.
const CONTROL: &str = "127.0.0.1:10080";

/// A backend: writes "NAME PEER" (PEER: the pen that connected) and closes.
const BACKEND: &str = r#"
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[2], int(sys.argv[3])))
s.listen(128)
while True:
    c, a = s.accept()
    c.sendall(("%s %s\n" % (sys.argv[1], a[0])).encode())
    c.close()
"#;

/// Clients: `ROUNDS` rounds of one connection from each source address to
/// VIP:PORT, each printed as "SOURCE NAME PEER" or "SOURCE error WHY".
const CLIENTS: &str = r#"
import socket, sys
vip, port, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for _ in range(rounds):
    for src in sys.argv[4:]:
        try:
            s = socket.socket()
            s.settimeout(3)
            s.bind((src, 0))
            s.connect((vip, port))
            data = b""
            while True:
                d = s.recv(100)
                if not d:
                    break
                data += d
            s.close()
            print(src, data.decode().strip() or "closed", flush=True)
        except OSError as e:
            print(src, "error", e, flush=True)
"#;

/// The failover probe: sends PID signal SIG (KILL: pen dies, STOP: it
/// hangs), then connects to VIP:PORT from SOURCE (0.2 s per attempt) until
/// a connection succeeds; prints "SECONDS NAME PEER", the time from the
/// signal to that connection's reply.
const FAILOVER: &str = r#"
import os, signal, socket, sys, time
vip, port, src, pid, sig = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
os.kill(pid, getattr(signal, "SIG" + sig))
start = time.monotonic()
while time.monotonic() - start < 10:
    try:
        s = socket.socket()
        s.settimeout(0.2)
        s.bind((src, 0))
        s.connect((vip, port))
        data = s.recv(100).decode().strip()
        s.close()
        if data:
            print("%.3f %s" % (time.monotonic() - start, data), flush=True)
            sys.exit(0)
    except OSError:
        time.sleep(0.01)
print("never")
"#;

/// `n` client addresses 192.0.2.101, .102, ...
fn client_addresses(n: u8) -> Vec<String> {
    (0..n).map(|i| format!("192.0.2.{}", 101 + i)).collect()
}

/// The network with its fixed addresses, or None (skipped).
fn network() -> Option<TestNet> {
    let net = TestNet::up(&HOSTS)?;
    net.addr("client", &["192.0.2.10/24"]);
    net.addr("lb1", &[&format!("{LB1}/24")]);
    net.addr("lb2", &[&format!("{LB2}/24")]);
    for (host, addr) in BACKENDS {
        net.addr(host, &[&format!("{addr}/24")]);
    }
    Some(net)
}

/// Gives the client `sources` as extra addresses.
fn add_clients(net: &TestNet, sources: &[String]) {
    let cidrs: Vec<String> = sources.iter().map(|a| format!("{a}/24")).collect();
    net.addr(
        "client",
        &cidrs.iter().map(String::as_str).collect::<Vec<_>>(),
    );
}

/// Starts the three backends and waits until they listen.
fn start_backends(net: &TestNet) -> Vec<ChildGuard> {
    let port = BACKEND_PORT.to_string();
    let guards = BACKENDS
        .iter()
        .map(|(host, addr)| {
            let mut command = net.command(host, "python3");
            command
                .args(["-c", BACKEND, host, addr, &port])
                .stdin(Stdio::null())
                .stdout(Stdio::null());
            ChildGuard::spawn(&mut command)
        })
        .collect();
    for (host, _) in BACKENDS {
        net.wait_listening(host, BACKEND_PORT);
    }
    guards
}

/// The backends as pen's server arguments, in the order of `hosts`.
fn servers(hosts: &[&str]) -> Vec<String> {
    hosts
        .iter()
        .map(|h| {
            let (_, addr) = BACKENDS.iter().find(|(host, _)| host == h).unwrap();
            format!("{addr}:{BACKEND_PORT}")
        })
        .collect()
}

/// lb1's servers in order, and lb2's in another.
fn lb1_servers() -> Vec<String> {
    servers(&["be1", "be2", "be3"])
}
fn lb2_servers() -> Vec<String> {
    servers(&["be3", "be1", "be2"])
}

/// Starts pen in `host` with `hash consistent`, listening on `listen`
/// (VIP:80), and waits until it listens.
fn start_pen(net: &TestNet, host: &str, listen: &str, servers: &[String]) -> Pen {
    let mut args = vec!["-u", "root", "-C", CONTROL, "-o", "hash consistent", listen];
    args.extend(servers.iter().map(String::as_str));
    let mut pen = Pen::spawn_command(&mut net.command(host, PEN), &args);
    if let Err(code) = pen.wait_ready(|| net.listening(host, 80)) {
        panic!("pen in {host} exited ({code:?}): {}", pen.stderr());
    }
    pen
}

/// Sends `cmd` to the control port of the pen in `host`; the reply.
fn penctl(net: &TestNet, host: &str, cmd: &str) -> String {
    let penctl = PENCTL.path().to_str().expect("a UTF-8 path");
    let out = net.run(host, penctl, &[CONTROL, cmd]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What one connection got: the backend and the pen instance (its address).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Reply {
    backend: String,
    via: String,
}

/// `rounds` connections from each of `sources` to VIP:80 (all sources, then
/// again); (source, reply) in order. Panics if any fails.
fn connect_all(
    net: &TestNet,
    vip: &str,
    sources: &[String],
    rounds: usize,
) -> Vec<(String, Reply)> {
    let count = rounds.to_string();
    let mut args = vec!["-c", CLIENTS, vip, "80", &count];
    args.extend(sources.iter().map(String::as_str));
    let out = net.run("client", "python3", &args);
    let text = String::from_utf8_lossy(&out.stdout);
    let replies: Vec<(String, Reply)> = text
        .lines()
        .map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words[..] {
                [src, backend, via] if backend != "error" => (
                    src.to_string(),
                    Reply {
                        backend: backend.to_string(),
                        via: via.to_string(),
                    },
                ),
                _ => panic!("a connection failed: {line}"),
            }
        })
        .collect();
    assert_eq!(replies.len(), sources.len() * rounds);
    replies
}

/// Each source's backends and the instances that served it.
fn by_source(
    replies: &[(String, Reply)],
) -> BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> {
    let mut map: BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> = BTreeMap::new();
    for (src, reply) in replies {
        let entry = map.entry(src.clone()).or_default();
        entry.0.insert(reply.backend.clone());
        entry.1.insert(reply.via.clone());
    }
    map
}

/// Each source's one backend; panics if a source reached two.
fn placement(replies: &[(String, Reply)]) -> BTreeMap<String, String> {
    by_source(replies)
        .into_iter()
        .map(|(src, (backends, vias))| {
            assert_eq!(
                backends.len(),
                1,
                "{src} reached {backends:?} (through {vias:?})"
            );
            (src, backends.into_iter().next().unwrap())
        })
        .collect()
}

/// ECMP: the client routes the VIP over lb1 and lb2 (contrib/ecmp's
/// script, L4 hash), both hold it on lo. 400 connections from 100 client
/// addresses are spread over both instances, and each address reaches the
/// same backend every time, through either. Then be2 is taken out of both
/// (through their control ports; it has another slot in each): only its
/// clients move, and each to one backend, the same through both.
#[test]
fn ecmp_spreads_clients_and_both_instances_agree() {
    let Some(net) = network() else {
        return;
    };
    let vip = "203.0.113.1";
    let sources = client_addresses(100);
    add_clients(&net, &sources);
    net.vip("lb1", &[vip]);
    net.vip("lb2", &[vip]);
    let route = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/ecmp/ecmp-route.sh");
    net.run("client", "sh", &[route, vip, LB1, LB2]);
    let routes = net.run("client", "ip", &["route", "show", vip]);
    let routes = String::from_utf8_lossy(&routes.stdout);
    assert!(
        routes.contains(&format!("via {LB1}")) && routes.contains(&format!("via {LB2}")),
        "{routes}"
    );
    let _backends = start_backends(&net);
    let listen = format!("{vip}:80");
    let _lb1 = start_pen(&net, "lb1", &listen, &lb1_servers());
    let _lb2 = start_pen(&net, "lb2", &listen, &lb2_servers());

    let before = connect_all(&net, vip, &sources, 4);
    let through = |via: &str, replies: &[(String, Reply)]| {
        replies.iter().filter(|(_, r)| r.via == via).count()
    };
    let (one, two) = (through(LB1, &before), through(LB2, &before));
    println!("ECMP: lb1 served {one}, lb2 {two} of 400 connections");
    assert_eq!(one + two, 400, "{before:?}");
    assert!(one >= 100 && two >= 100, "lb1 {one}, lb2 {two}");
    let both = by_source(&before)
        .values()
        .filter(|(_, vias)| vias.len() == 2)
        .count();
    println!("ECMP: {both} of 100 client addresses were served by both instances");
    assert!(both >= 50, "only {both} addresses reached both instances");
    let placed = placement(&before);
    for (host, _) in BACKENDS {
        let n = placed.values().filter(|b| *b == host).count();
        assert!(n >= 10, "{host} got {n} of 100 clients: {placed:?}");
    }

    // be2 leaves both: slot 1 in lb1, slot 2 in lb2.
    assert_eq!(penctl(&net, "lb1", "server 1 blacklist 3600"), "");
    assert_eq!(penctl(&net, "lb2", "server 2 blacklist 3600"), "");
    let after = connect_all(&net, vip, &sources, 4);
    let moved = by_source(&after)
        .iter()
        .filter(|(src, (_, vias))| placed[*src] == "be2" && vias.len() == 2)
        .count();
    let now = placement(&after);
    for (src, was) in &placed {
        assert_ne!(now[src], "be2", "{src} still reaches be2");
        if was != "be2" {
            assert_eq!(&now[src], was, "{src} moved off a backend that stayed");
        }
    }
    println!("ECMP: {moved} moved clients were served by both instances afterwards");
    assert!(moved >= 5, "too few moved clients reached both instances");
}

/// keepalived started by a test in a namespace: `-n`, the parent in the
/// foreground, `-P`, one VRRP child. Dropping it sends the parent SIGTERM
/// (which drops the VIP and stops the child) and waits; what still runs
/// after that is killed by PID.
struct Keepalived {
    parent: ChildGuard,
    vrrp: u32,
}

impl Keepalived {
    /// Starts keepalived (`program`) in `host` with configuration `cfg`, config id
    /// `host`, its pid files and log in `dir`.
    fn start(net: &TestNet, program: &str, host: &str, cfg: &Path, dir: &TempDir) -> Keepalived {
        let log = std::fs::File::create(dir.join(format!("keepalived-{host}.log")))
            .expect("create keepalived's log");
        let parent_pid = dir.arg(&format!("keepalived-{host}.pid"));
        let vrrp_pid = dir.join(format!("vrrp-{host}.pid"));
        let mut command = net.command(host, program);
        command
            .args(["-n", "-l", "-D", "-G", "-P", "-i", host, "-f"])
            .arg(cfg)
            .args(["-p", &parent_pid, "-r"])
            .arg(&vrrp_pid)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone a file handle"))
            .stderr(log);
        let mut parent = ChildGuard::spawn(&mut command);
        let vrrp = wait_for(DEADLINE, "keepalived's VRRP child", || {
            if let Some(status) = parent.exited() {
                panic!("keepalived in {host} exited: {status}");
            }
            std::fs::read_to_string(&vrrp_pid).ok()?.trim().parse().ok()
        });
        Keepalived { parent, vrrp }
    }
}

impl Keepalived {
    /// Tells keepalived to stop (SIGTERM), without waiting.
    fn terminate(&mut self) {
        if let Ok(None) = self.parent.0.try_wait() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &self.parent.pid().to_string()])
                .status();
        }
    }
}

impl Drop for Keepalived {
    fn drop(&mut self) {
        self.terminate();
        poll_until(DEADLINE, || self.parent.exited().is_some());
        // DaemonGuard kills it by PID if it outlived its parent.
        drop(DaemonGuard(self.vrrp));
    }
}

/// keepalived (on PATH, or where Debian installs it), or None after one
/// line saying it is not installed.
fn keepalived_program() -> Option<&'static str> {
    let found = ["keepalived", "/usr/sbin/keepalived"]
        .into_iter()
        .find(|p| {
            std::process::Command::new(p)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok()
        });
    if found.is_none() {
        println!("skipping: keepalived is not installed (apt-get install keepalived)");
    }
    found
}

/// Two pens under keepalived with one of the recipes in
/// contrib/keepalived/, the backends, and the network.
struct VrrpSite {
    // Dropped in this order: keepalived, pens, backends, scratch, network.
    keepalived: Vec<Keepalived>,
    pens: BTreeMap<&'static str, Pen>,
    /// The address the pens listen on.
    vip: &'static str,
    _backends: Vec<ChildGuard>,
    dir: TempDir,
    net: TestNet,
}

/// The VIP of contrib/keepalived/keepalived.conf.
const VRRP_VIP: &str = "192.0.2.100";

impl VrrpSite {
    /// keepalived.conf: lb1 and lb2 share VIP 192.0.2.100, both pens
    /// listen on it all the time.
    fn up(sources: &[String]) -> Option<VrrpSite> {
        VrrpSite::start(sources, "keepalived.conf", VRRP_VIP, |net| {
            for lb in ["lb1", "lb2"] {
                // The standby's pen binds the VIP before it holds it.
                net.sysctl(lb, &["net.ipv4.ip_nonlocal_bind=1"]);
            }
        })
    }

    /// Clients `sources`, pens listening on `vip`:80 after `prepare`, and
    /// keepalived with `recipe`.
    fn start(
        sources: &[String],
        recipe: &str,
        vip: &'static str,
        prepare: impl FnOnce(&TestNet),
    ) -> Option<VrrpSite> {
        let program = keepalived_program()?;
        let net = network()?;
        add_clients(&net, sources);
        prepare(&net);
        let backends = start_backends(&net);
        let listen = format!("{vip}:80");
        let mut pens = BTreeMap::new();
        pens.insert("lb1", start_pen(&net, "lb1", &listen, &lb1_servers()));
        pens.insert("lb2", start_pen(&net, "lb2", &listen, &lb2_servers()));
        let dir = TempDir::new("vrrp");
        let keepalived = ["lb1", "lb2"]
            .iter()
            .map(|lb| {
                let cfg = keepalived_config(&dir, recipe, lb);
                Keepalived::start(&net, program, lb, &cfg, &dir)
            })
            .collect();
        Some(VrrpSite {
            keepalived,
            pens,
            vip,
            _backends: backends,
            dir,
            net,
        })
    }

    /// Stops both keepalived processes (both at once: each takes a while).
    fn stop_keepalived(&mut self) {
        for k in &mut self.keepalived {
            k.terminate();
        }
        self.keepalived.clear();
    }

    /// The instance that holds keepalived.conf's VIP, once one does.
    fn master(&self) -> &'static str {
        wait_for(
            Duration::from_secs(15),
            "an instance to hold the VIP",
            || {
                ["lb1", "lb2"]
                    .into_iter()
                    .find(|lb| self.net.holds(lb, VRRP_VIP))
            },
        )
    }

    /// The transitions `lb`'s notify script logged so far.
    fn transitions(&self, lb: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("vrrp-{lb}.log"))).unwrap_or_default()
    }

    /// Sends the pen in `lb` signal `sig` (KILL or STOP; by its PID, from
    /// the client's namespace) and probes the pens' VIP from `src` until a
    /// connection succeeds: the seconds from the signal to the reply, and
    /// the reply.
    fn fail_over(&self, lb: &str, sig: &str, src: &str) -> (f64, Reply) {
        let pid = self.pens[lb].pid().to_string();
        let out = self.net.run(
            "client",
            "python3",
            &["-c", FAILOVER, self.vip, "80", src, &pid, sig],
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let words: Vec<&str> = text.split_whitespace().collect();
        match words[..] {
            [seconds, backend, via] => (
                seconds.parse().expect("seconds"),
                Reply {
                    backend: backend.to_string(),
                    via: via.to_string(),
                },
            ),
            _ => panic!("no connection after the failover: {text}"),
        }
    }
}

impl Drop for VrrpSite {
    fn drop(&mut self) {
        self.stop_keepalived();
    }
}

fn other(lb: &str) -> &'static str {
    if lb == "lb1" {
        "lb2"
    } else {
        "lb1"
    }
}

fn address_of(lb: &str) -> &'static str {
    if lb == "lb1" {
        LB1
    } else {
        LB2
    }
}

/// contrib/keepalived/`recipe` with the scripts (copied into `dir`:
/// keepalived runs only scripts that no one but root can change) and the
/// logs in `dir`, and this build's penctl; written to `dir`, its path.
fn keepalived_config(dir: &TempDir, recipe: &str, lb: &str) -> PathBuf {
    let contrib = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/keepalived");
    for script in ["check_pen.sh", "notify_pen.sh"] {
        // Copied once for both instances: the first keepalived may already
        // be running the script, and writing over a running file fails
        // (ETXTBSY).
        if !dir.join(script).exists() {
            std::fs::copy(contrib.join(script), dir.join(script)).expect("copy a script");
        }
    }
    let recipe = std::fs::read_to_string(contrib.join(recipe)).expect("read the recipe");
    let check = "/etc/keepalived/check_pen.sh 127.0.0.1:10080";
    let notify = "/etc/keepalived/notify_pen.sh /var/log/pen-vrrp.log";
    assert!(recipe.contains(check) && recipe.contains(notify));
    let cfg = recipe
        .replace(
            check,
            &format!("{} {CONTROL} {PENCTL}", dir.arg("check_pen.sh")),
        )
        .replace(
            notify,
            &format!(
                "{} {}",
                dir.arg("notify_pen.sh"),
                dir.arg(&format!("vrrp-{lb}.log"))
            ),
        );
    dir.file(&format!("keepalived-{lb}.conf"), &cfg)
}

/// VRRP: 50 clients connect to the VIP through the instance keepalived
/// made master. Its pen is killed: within 3 s the other instance holds the
/// VIP and serves new connections, and every client reaches the backend it
/// had (consistent hashing, no shared state). keepalived's notify script
/// logged the transitions.
#[test]
fn vrrp_moves_the_vip_and_clients_keep_their_backend() {
    let sources = client_addresses(50);
    let Some(mut site) = VrrpSite::up(&sources) else {
        return;
    };
    let master = site.master();
    let standby = other(master);
    let before = connect_all(&site.net, VRRP_VIP, &sources, 1);
    assert!(
        before.iter().all(|(_, r)| r.via == address_of(master)),
        "{before:?}"
    );
    let placed = placement(&before);

    let (seconds, reply) = site.fail_over(master, "KILL", &sources[0]);
    println!("VRRP: {master}'s pen killed, {standby} served after {seconds:.3} s");
    assert!(seconds < 3.0, "the failover took {seconds} s");
    assert_eq!(reply.via, address_of(standby));
    assert!(site.net.holds(standby, VRRP_VIP));
    wait_until(
        Duration::from_secs(3),
        "the failed instance to drop the VIP",
        || !site.net.holds(master, VRRP_VIP),
    );

    let after = connect_all(&site.net, VRRP_VIP, &sources, 1);
    assert!(after.iter().all(|(_, r)| r.via == address_of(standby)));
    assert_eq!(placement(&after), placed, "clients changed backends");

    let log = site.transitions(master);
    assert!(
        log.contains("is now MASTER") && log.contains("is now FAULT"),
        "{log}"
    );
    assert!(site.transitions(standby).contains("is now MASTER"));
    // Stopped by SIGTERM, keepalived gives the VIP up.
    site.stop_keepalived();
    assert!(!site.net.holds(standby, VRRP_VIP));
}

/// The VIP behind ECMP.
const ECMP_VIP: &str = "203.0.113.1";
/// The next hops of contrib/keepalived/keepalived-ecmp.conf: lb1's, lb2's.
const HOPS: [&str; 2] = ["192.0.2.4", "192.0.2.5"];

/// contrib/keepalived/keepalived-ecmp.conf: both pens hold the VIP on lo,
/// each host its next hop, and the client routes the VIP via both.
fn ecmp_over_vrrp(sources: &[String]) -> Option<VrrpSite> {
    let site = VrrpSite::start(sources, "keepalived-ecmp.conf", ECMP_VIP, |net| {
        net.vip("lb1", &[ECMP_VIP]);
        net.vip("lb2", &[ECMP_VIP]);
    })?;
    let net = &site.net;
    wait_until(
        Duration::from_secs(15),
        "each instance to hold its next hop",
        || net.holds("lb1", HOPS[0]) && net.holds("lb2", HOPS[1]),
    );
    let route = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/ecmp/ecmp-route.sh");
    net.run("client", "sh", &[route, ECMP_VIP, HOPS[0], HOPS[1]]);
    Some(site)
}

/// Whether the client's next hop `hop` leads to `lb`: `lb` holds it and
/// its gratuitous ARP has reached the client.
fn hop_leads_to(net: &TestNet, hop: &str, lb: &str) -> bool {
    let out = net.run("client", "ip", &["neigh", "show", hop]);
    net.holds(lb, hop) && String::from_utf8_lossy(&out.stdout).contains(&net.mac(lb))
}

/// ECMP over VRRP next hops (contrib/keepalived/keepalived-ecmp.conf):
/// the client's route to the VIP goes via 192.0.2.4 (lb1's) and 192.0.2.5
/// (lb2's), both instances serve. lb1's pen is killed: within 3 s its
/// next hop leads to lb2, every new connection succeeds through lb2, and
/// every client reaches the backend it had.
#[test]
fn ecmp_over_vrrp_next_hops_survives_a_dead_instance() {
    let sources = client_addresses(50);
    let Some(site) = ecmp_over_vrrp(&sources) else {
        return;
    };
    let net = &site.net;
    let before = connect_all(net, ECMP_VIP, &sources, 4);
    for lb in [LB1, LB2] {
        let n = before.iter().filter(|(_, r)| r.via == lb).count();
        assert!(n >= 50, "{lb} served {n} of 200");
    }
    let placed = placement(&before);

    assert!(!hop_leads_to(net, HOPS[0], "lb2"));
    let killed = Instant::now();
    site.pens["lb1"].signal("KILL");
    wait_until(
        Duration::from_secs(3),
        "lb1's next hop to lead to lb2",
        || hop_leads_to(net, HOPS[0], "lb2"),
    );
    println!(
        "ECMP over VRRP: lb1's pen killed, its next hop led to lb2 after {:.3} s",
        killed.elapsed().as_secs_f64()
    );
    let after = connect_all(net, ECMP_VIP, &sources, 4);
    assert!(after.iter().all(|(_, r)| r.via == LB2), "{after:?}");
    assert_eq!(placement(&after), placed, "clients changed backends");
}

/// The ECMP over VRRP figures of README.md, by hand (see
/// [`vrrp_failover_figures`]): five times, lb1's pen is killed, the time
/// until its next hop leads to lb2 and the share of 50 clients that kept
/// their backend; then it comes back and takes its next hop back.
#[test]
#[ignore = "a measurement (about half a minute), for the README"]
fn ecmp_over_vrrp_failover_figures() {
    let sources = client_addresses(50);
    let Some(mut site) = ecmp_over_vrrp(&sources) else {
        return;
    };
    let listen = format!("{ECMP_VIP}:80");
    let (mut times, mut kept, mut total) = (Vec::new(), 0, 0);
    for _ in 0..5 {
        let placed = placement(&connect_all(&site.net, ECMP_VIP, &sources, 4));
        let killed = Instant::now();
        site.pens["lb1"].signal("KILL");
        wait_until(DEADLINE, "lb1's next hop to lead to lb2", || {
            hop_leads_to(&site.net, HOPS[0], "lb2")
        });
        let seconds = killed.elapsed().as_secs_f64();
        let now = placement(&connect_all(&site.net, ECMP_VIP, &sources, 4));
        kept += placed.iter().filter(|(src, b)| now[*src] == **b).count();
        total += placed.len();
        println!("ECMP over VRRP: lb1's next hop led to lb2 after {seconds:.3} s");
        times.push(seconds);
        site.pens.remove("lb1");
        site.pens
            .insert("lb1", start_pen(&site.net, "lb1", &listen, &lb1_servers()));
        wait_until(DEADLINE, "lb1 to take its next hop back", || {
            hop_leads_to(&site.net, HOPS[0], "lb1")
        });
    }
    times.sort_by(f64::total_cmp);
    println!(
        "ECMP over VRRP: failover median {:.2} s (min {:.2}, max {:.2}); {kept} of {total} clients kept their backend",
        times[2], times[0], times[4]
    );
}

/// The figures of README.md's "Running several instances", by hand:
///   cargo test --test multi_instance -- --ignored --nocapture
/// Five failovers after the active pen is killed and five after it is
/// stopped (hangs), alternating between lb1 and lb2: the time from the
/// signal to the first successful new connection through the VIP, and the
/// share of 50 clients that kept their backend.
#[test]
#[ignore = "a measurement (about a minute), for the README"]
fn vrrp_failover_figures() {
    let sources = client_addresses(50);
    let Some(mut site) = VrrpSite::up(&sources) else {
        return;
    };
    let listen = format!("{VRRP_VIP}:80");
    for sig in ["KILL", "STOP"] {
        let (mut times, mut kept, mut total) = (Vec::new(), 0, 0);
        for round in 0..5 {
            let master = site.master();
            let standby = other(master);
            let placed = placement(&connect_all(&site.net, VRRP_VIP, &sources, 1));
            let transitions = site.transitions(master).lines().count();
            let (seconds, reply) = site.fail_over(master, sig, &sources[round]);
            assert_eq!(reply.via, address_of(standby));
            let now = placement(&connect_all(&site.net, VRRP_VIP, &sources, 1));
            kept += placed.iter().filter(|(src, b)| now[*src] == **b).count();
            total += placed.len();
            println!("{sig} {master}: {standby} served after {seconds:.3} s");
            times.push(seconds);
            // The pen comes back, and its keepalived with it, as backup
            // (nopreempt: the VIP stays where it is).
            if sig == "KILL" {
                let servers = if master == "lb1" {
                    lb1_servers()
                } else {
                    lb2_servers()
                };
                site.pens.remove(master);
                site.pens
                    .insert(master, start_pen(&site.net, master, &listen, &servers));
            } else {
                site.pens[master].signal("CONT");
            }
            wait_until(DEADLINE, "the failed instance to be a backup again", || {
                let log = site.transitions(master);
                log.lines().count() > transitions
                    && log
                        .lines()
                        .last()
                        .is_some_and(|l| l.contains("is now BACKUP"))
            });
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{sig}: failover median {:.2} s (min {:.2}, max {:.2}); {kept} of {total} clients kept their backend",
            times[2], times[0], times[4]
        );
    }
}
