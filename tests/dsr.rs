//! Direct server return and the tarpit in a namespaced test network
//! (tests/netns/testnet.sh): a client, the balancer `lb` and backends that
//! hold the VIP on lo without answering ARP for it. Frames for the VIP
//! reach pen, which passes them on to a backend; the backend answers the
//! client directly.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::netns::TestNet;
use common::{wait_until, ChildGuard, Pen, TempDir, DEADLINE, PEN, PENCTL};

const VIP: &str = "192.0.2.100";
const LB: &str = "192.0.2.2";
const CLIENT: &str = "192.0.2.10";
/// The control port, on the balancer's own loopback.
const CONTROL: &str = "127.0.0.1:10000";

/// A backend: serves TCP port 80 (its name, a newline, then SIZE bytes)
/// and UDP port 53 on the VIP (its name, a space, then the query), and
/// writes each TCP connection's local address to LOG, which it creates
/// once it listens.
const BACKEND: &str = r#"
import socket, sys, threading
name, size, log = sys.argv[1], int(sys.argv[2]), sys.argv[3]
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(('0.0.0.0', 80)); t.listen(1024)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind((sys.argv[4], 53))
def udp():
    while True:
        q, a = u.recvfrom(2048)
        u.sendto(name.encode() + b' ' + q, a)
threading.Thread(target=udp, daemon=True).start()
out = open(log, 'a', buffering=1)
body = name.encode() + b'\n' + b'x' * size
while True:
    c, a = t.accept()
    out.write(c.getsockname()[0] + '\n')
    try:
        c.sendall(body)
    except OSError:
        pass
    c.close()
"#;

/// The client's tools. `wait`: connect to the VIP until one connection
/// works. `count N`: N connections, prints how many each backend answered
/// and the bytes received. `map SRC...`: one connection from each source
/// address, prints `SRC NAME` lines. `udp PORTS QUERIES`: QUERIES from each
/// of PORTS sockets, prints the number answered.
const CLIENT_TOOL: &str = r#"
import socket, sys, time, json
vip = sys.argv[1]
def ask(src=None):
    s = socket.socket(); s.settimeout(3)
    if src: s.bind((src, 0))
    s.connect((vip, 80))
    data = b''
    while True:
        d = s.recv(65536)
        if not d: break
        data += d
    s.close()
    return data.split(b'\n')[0].decode(), len(data)
cmd = sys.argv[2]
if cmd == 'wait':
    end = time.time() + 10
    while True:
        try:
            ask(); break
        except OSError:
            if time.time() > end: raise
            time.sleep(0.05)
elif cmd == 'count':
    names, total = {}, 0
    for i in range(int(sys.argv[3])):
        n, b = ask()
        names[n] = names.get(n, 0) + 1
        total += b
    print(json.dumps({'names': names, 'bytes': total}))
elif cmd == 'map':
    for src in sys.argv[3:]:
        print(src, ask(src)[0])
elif cmd == 'udp':
    ports, queries = int(sys.argv[3]), int(sys.argv[4])
    socks = []
    for i in range(ports):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
        s.bind(('0.0.0.0', 0)); socks.append(s)
    # Warm up: the first query may race the ARP learning.
    end = time.time() + 10
    while True:
        try:
            socks[0].sendto(b'warm', (vip, 53)); socks[0].recvfrom(2048); break
        except OSError:
            if time.time() > end: raise
    answered = 0
    for q in range(queries):
        for i, s in enumerate(socks):
            query = ('q%d.%d' % (i, q)).encode()
            s.sendto(query, (vip, 53))
            reply, frm = s.recvfrom(2048)
            if frm == (vip, 53) and reply.endswith(b' ' + query):
                answered += 1
    print(answered)
"#;

/// The network, its backends and their logs; torn down in that order.
struct Lab {
    _backends: Vec<ChildGuard>,
    logs: Vec<PathBuf>,
    _dir: TempDir,
    net: TestNet,
}

impl Lab {
    /// A client, `lb` and `n` backends `be1`.. at 192.0.2.21.., each
    /// sending `size` bytes after its name. `client_addrs` more addresses
    /// for the client.
    fn up(n: usize, size: usize, client_addrs: &[String]) -> Option<Lab> {
        let names: Vec<String> = (1..=n).map(|i| format!("be{i}")).collect();
        let mut hosts = vec!["client", "lb"];
        hosts.extend(names.iter().map(String::as_str));
        let net = TestNet::up(&hosts)?;
        let mut client = vec![format!("{CLIENT}/24")];
        client.extend(client_addrs.iter().map(|a| format!("{a}/24")));
        let client: Vec<&str> = client.iter().map(String::as_str).collect();
        net.addr("client", &client);
        net.addr("lb", &[&format!("{LB}/24")]);
        // The balancer must not route the VIP itself.
        net.sysctl("lb", &["net.ipv4.ip_forward=0"]);
        let dir = TempDir::new("dsr");
        let mut backends = Vec::new();
        let mut logs = Vec::new();
        for (i, name) in names.iter().enumerate() {
            net.addr(name, &[&format!("192.0.2.{}/24", 21 + i)]);
            net.vip(name, &[VIP]);
            let log = dir.path().join(format!("{name}.log"));
            let mut c = net.command(name, "python3");
            c.args(["-c", BACKEND, name, &size.to_string()])
                .arg(&log)
                .arg(VIP)
                .stdout(Stdio::null());
            backends.push(ChildGuard::spawn(&mut c));
            logs.push(log);
        }
        wait_until(DEADLINE, "the backends to listen", || {
            logs.iter().all(|l| l.exists())
        });
        Some(Lab {
            _backends: backends,
            logs,
            _dir: dir,
            net,
        })
    }

    /// Starts pen in `lb`: `pen -f -u root -C CONTROL ARGS`.
    fn pen(&self, args: &[&str]) -> Pen {
        let mut full = vec!["-u", "root", "-C", CONTROL];
        full.extend_from_slice(args);
        Pen::spawn_command(&mut self.net.command("lb", PEN.path()), &full)
    }

    /// A control command, run with penctl in `lb`.
    fn ctl(&self, cmd: &str) -> String {
        let mut c = self.net.command("lb", PENCTL.path());
        c.arg(CONTROL).args(cmd.split(' '));
        let out = common::run_command(&mut c, Vec::new(), DEADLINE);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn client(&self, args: &[&str]) -> String {
        let mut full = vec!["-c", CLIENT_TOOL, VIP];
        full.extend_from_slice(args);
        let out = self.net.run("client", "python3", &full);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Connections each backend has seen so far.
    fn connections(&self) -> Vec<usize> {
        self.logs
            .iter()
            .map(|l| {
                std::fs::read_to_string(l)
                    .unwrap_or_default()
                    .lines()
                    .count()
            })
            .collect()
    }

    /// A counter of `lb`'s eth0 (`rx_bytes`, ...).
    fn lb_counter(&self, name: &str) -> u64 {
        let path = format!("/sys/class/net/eth0/statistics/{name}");
        let out = self.net.run("lb", "cat", &[&path]);
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    }
}

/// The value after `key ` on the line starting with `line` in `text`.
fn field(text: &str, line: &str, key: &str) -> u64 {
    let l = text
        .lines()
        .find(|l| l.starts_with(line))
        .unwrap_or_else(|| panic!("no line '{line}' in:\n{text}"));
    let words: Vec<&str> = l.split(' ').collect();
    let at = words
        .iter()
        .position(|w| *w == key)
        .unwrap_or_else(|| panic!("no '{key}' in '{l}'"));
    words[at + 1].parse().unwrap()
}

fn names(json: &str) -> HashMap<String, u64> {
    // {"names": {"be1": 12, "be2": 30}, "bytes": N}
    let inner = json.split('{').nth(2).unwrap().split('}').next().unwrap();
    inner
        .split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let (k, v) = p.split_once(':').unwrap();
            (
                k.trim().trim_matches('"').to_string(),
                v.trim().parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn tcp_is_answered_by_the_backends_directly_in_proportion_to_weight() {
    // Each answer is 20 KB, so the answers dwarf what the client sends.
    let Some(lab) = Lab::up(2, 20_000, &[]) else {
        return;
    };
    let dir = TempDir::new("dsr-write");
    let saved = dir.path().join("saved.cfg");
    // -r: the source port joins the hash, so one client spreads.
    let mut pen = lab.pen(&[
        "-r",
        "-o",
        "dsr_if eth0",
        "-o",
        &format!("dsr_ip {LB}"),
        &format!("{VIP}:80"),
        "192.0.2.21:80:0:0:1",
        "192.0.2.22:80:0:0:3",
    ]);
    lab.client(&["wait"]);
    let rx_before = lab.lb_counter("rx_bytes");
    let out = lab.client(&["count", "400"]);
    let rx_after = lab.lb_counter("rx_bytes");
    let by_name = names(&out);
    let (one, three) = (by_name["be1"], by_name["be2"]);
    assert_eq!(one + three, 400, "{out}");
    // Weight 1 to 3: a quarter, give or take the randomness of the ports.
    assert!(
        (60..=140).contains(&one),
        "be1 answered {one} of 400: {out}"
    );
    // 8 MB went to the client; the balancer saw only what the client sent.
    let received: u64 = out
        .split("\"bytes\": ")
        .nth(1)
        .and_then(|b| b.trim().trim_end_matches('}').parse().ok())
        .unwrap_or_else(|| panic!("no byte count in {out}"));
    assert!(received >= 400 * 20_000, "{out}");
    assert!(
        rx_after - rx_before < received / 10,
        "lb received {} bytes while the client got {received}",
        rx_after - rx_before
    );
    // The backends saw connections to the VIP only.
    let logs: String = lab
        .logs
        .iter()
        .map(|l| std::fs::read_to_string(l).unwrap())
        .collect();
    assert!(logs.lines().all(|l| l == VIP), "{logs}");
    // The counters: frames and their bytes per server, nothing dropped.
    let servers = lab.ctl("servers");
    assert!(field(&servers, "0 addr", "frames") > 0, "{servers}");
    assert!(field(&servers, "1 addr", "frames") > field(&servers, "0 addr", "frames"));
    assert!(field(&servers, "1 addr", "sx") > 0, "{servers}");
    assert_eq!(field(&servers, "1 addr", "rx"), 0, "{servers}");
    let dsr = lab.ctl("dsr");
    assert!(dsr.starts_with("interface eth0 address "), "{dsr}");
    assert!(field(&dsr, "forwarded", "forwarded") > 0, "{dsr}");
    assert_eq!(field(&dsr, "dropped_no_server", "dropped_no_server"), 0);
    // `write` keeps DSR's settings.
    lab.ctl(&format!("write {}", saved.display()));
    wait_until(DEADLINE, "the written file", || saved.exists());
    let text = std::fs::read_to_string(&saved).unwrap();
    assert!(text.contains("\ndsr_if eth0\n"), "{text}");
    assert!(text.contains(&format!("\ndsr_ip {LB}\n")), "{text}");
    assert!(!text.contains("tarpit_acl"), "{text}");
    assert!(pen.wait_ready(|| true).is_ok(), "{}", pen.stderr());
}

#[test]
fn a_blacklisted_backend_gets_no_new_flows_and_other_clients_keep_their_server() {
    let sources: Vec<String> = (30..70).map(|i| format!("192.0.2.{i}")).collect();
    let Some(lab) = Lab::up(3, 0, &sources) else {
        return;
    };
    let _pen = lab.pen(&[
        "-o",
        "dsr_if eth0",
        VIP,
        "192.0.2.21",
        "192.0.2.22",
        "192.0.2.23",
    ]);
    lab.client(&["wait"]);
    let map = |lab: &Lab| -> HashMap<String, String> {
        let mut args = vec!["map"];
        args.extend(sources.iter().map(String::as_str));
        lab.client(&args)
            .lines()
            .map(|l| {
                let (a, b) = l.split_once(' ').unwrap();
                (a.to_string(), b.to_string())
            })
            .collect()
    };
    let before = map(&lab);
    for be in ["be1", "be2", "be3"] {
        assert!(
            before.values().any(|v| v == be),
            "{be} got no client: {before:?}"
        );
    }
    assert_eq!(lab.ctl("server 1 blacklist 60"), "");
    let during = map(&lab);
    for (src, server) in &during {
        assert_ne!(server, "be2", "{src} still went to be2");
        if before[src] != "be2" {
            assert_eq!(server, &before[src], "{src} moved though its server stayed");
        }
    }
    let be2_during = lab.connections()[1];
    // A run-time dsr_if is refused, and pen goes on serving.
    let refused = lab.ctl("dsr_if eth1");
    assert!(refused.starts_with("error: dsr_if: "), "{refused}");
    assert_eq!(refused.lines().count(), 1, "{refused}");
    assert_eq!(
        lab.ctl("dsr_if eth0"),
        "",
        "the interface in use is a no-op"
    );
    let listen = lab.ctl("listen 127.0.0.1:8080");
    assert!(listen.starts_with("error: listen: "), "{listen}");
    // Off the list: every client is back where it was.
    lab.ctl("server 1 blacklist 0");
    assert_eq!(map(&lab), before);
    assert_eq!(
        lab.connections()[1],
        be2_during + before.values().filter(|v| *v == "be2").count()
    );
}

#[test]
fn udp_queries_through_dsr_all_come_back_from_the_vip() {
    let Some(lab) = Lab::up(2, 0, &[]) else {
        return;
    };
    // -r: the source port joins the hash, so the ports spread.
    let _pen = lab.pen(&[
        "-U",
        "-r",
        "-o",
        "dsr_if eth0",
        &format!("{VIP}:53"),
        "192.0.2.21",
        "192.0.2.22",
    ]);
    // 50 client ports, 20 queries each: 1,000 queries, none lost.
    let answered = lab.client(&["udp", "50", "20"]);
    assert_eq!(answered.trim(), "1000");
    // The counters are published every 100 ms.
    let mut servers = String::new();
    wait_until(DEADLINE, "1,000 frames counted", || {
        servers = lab.ctl("servers");
        field(&servers, "0 addr", "frames") + field(&servers, "1 addr", "frames") >= 1000
    });
    assert!(
        field(&servers, "0 addr", "frames") > 0 && field(&servers, "1 addr", "frames") > 0,
        "{servers}"
    );
    // TCP is not forwarded in UDP mode.
    assert!(lab.connections().iter().all(|&c| c == 0));
}

#[test]
fn the_tarpit_holds_connections_to_unused_addresses_and_the_vip_still_serves() {
    let Some(lab) = Lab::up(2, 0, &[]) else {
        return;
    };
    // Set up from a -F file, as a `write` file would do it.
    let dir = TempDir::new("dsr-tarpit");
    let config = dir.file(
        "pen.cfg",
        "acl 1 permit 192.0.2.200\ntarpit_acl 1\ndsr_if eth0\n",
    );
    let config = config.display().to_string();
    let pen = lab.pen(&[
        "-F",
        &config,
        &format!("{VIP}:80"),
        "192.0.2.21",
        "192.0.2.22",
    ]);
    lab.client(&["wait"]);
    let served = lab.connections().iter().sum::<usize>();
    // connect() completes (the SYN+ACK's checksums are valid, or Linux
    // would drop it), then nothing more comes.
    let probe = r#"
import socket
s = socket.create_connection(('192.0.2.200', 22), 3)
s.settimeout(1.5)
try:
    d = s.recv(10); print('got', d)
except socket.timeout:
    print('held')
"#;
    let out = lab.net.run("client", "python3", &["-c", probe]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "held");
    // Nothing of it reached a backend; the VIP serves as before.
    assert_eq!(lab.connections().iter().sum::<usize>(), served);
    lab.client(&["wait"]);
    assert_eq!(lab.connections().iter().sum::<usize>(), served + 1);
    let dsr = lab.ctl("dsr");
    assert_eq!(field(&dsr, "tarpit", "tarpitted"), 1, "{dsr}");
    assert_eq!(field(&dsr, "tarpit", "acl"), 1, "{dsr}");
    assert_eq!(lab.ctl("tarpit_acl"), "tarpit_acl = 1");
    let metrics = lab.ctl("metrics");
    assert!(
        metrics.contains("\npen_dsr_tarpitted_total 1\n"),
        "{metrics}"
    );
    assert!(metrics.contains("\npen_dsr_frames_total{outcome=\"forwarded\"} "));
    // `write` saves the three settings; read back on SIGHUP, the
    // interface in use is no error.
    lab.ctl(&format!("write {config}"));
    let written = std::fs::read_to_string(&config).unwrap();
    for line in ["\ntarpit_acl 1\n", "\ndsr_if eth0\n"] {
        assert!(written.contains(line), "{line:?} not in {written}");
    }
    std::fs::write(&config, format!("{written}dsr_ip {LB}\n")).unwrap();
    pen.signal("HUP");
    wait_until(DEADLINE, "the reload to set dsr_ip", || {
        lab.ctl("dsr_ip") == format!("{LB}\n")
    });
    assert!(!pen.stderr().contains("error"), "{}", pen.stderr());
    lab.client(&["wait"]);
}

#[test]
fn without_cap_net_raw_pen_says_so_in_one_line_and_exits_non_zero() {
    // Root without CAP_NET_RAW (setpriv drops it); anyone else lacks it.
    let mut c = Command::new("setpriv");
    c.args(["--bounding-set", "-net_raw", "--inh-caps", "-net_raw"])
        .arg(PEN.path());
    let vip = format!("{VIP}:80");
    let mut pen = Pen::spawn_command(&mut c, &["-o", "dsr_if lo", &vip, "192.0.2.21"]);
    let code = pen.wait_exit(DEADLINE);
    assert_eq!(code, Some(1));
    let err = pen.stderr();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("CAP_NET_RAW"), "{err}");
}

#[test]
fn an_interface_that_does_not_exist_is_one_line_and_exit_1() {
    let (code, _, err) = common::run_pen(&[
        "-f",
        "-o",
        "dsr_if nosuch0",
        &format!("{VIP}:80"),
        "192.0.2.21",
    ]);
    assert_eq!(code, Some(1));
    assert_eq!(err.lines().count(), 1, "{err}");
    // Without CAP_NET_RAW the capability is what is missing first.
    assert!(err.contains("dsr_if nosuch0: "), "{err}");
}
