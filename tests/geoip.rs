//! Country ACLs: databases written by the test code in both formats,
//! `geoip_db`, `country`, `acl N permit|deny country CC` on live traffic,
//! refused files, and agreement with Debian's `geoiplookup` and
//! `mmdblookup` where they are installed (lookups only: no traffic leaves
//! the machine).

mod common;
use common::geoip_writer::{self, LOOPBACK_NETS};
use common::*;
use std::io::Read;
use std::net::Ipv4Addr;
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;

const DEBIAN_V4: &str = "/usr/share/GeoIP/GeoIP.dat";

fn have(program: &str) -> bool {
    Command::new(program).arg("--version").output().is_ok()
}

/// `count` pseudo-random public unicast IPv4 addresses.
fn public_addresses(count: usize) -> Vec<Ipv4Addr> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::new();
    while out.len() < count {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let a = Ipv4Addr::from((x >> 16) as u32);
        let o = a.octets();
        let reserved = o[0] == 0
            || o[0] == 10
            || o[0] == 127
            || o[0] >= 224
            || (o[0] == 100 && (64..128).contains(&o[1]))
            || (o[0] == 169 && o[1] == 254)
            || (o[0] == 172 && (16..32).contains(&o[1]))
            || (o[0] == 192 && o[1] == 168);
        if !reserved {
            out.push(a);
        }
    }
    out
}

/// The code in a `geoiplookup` line: `GeoIP Country Edition: SE, Sweden`,
/// or `--` for `IP Address not found`.
fn geoiplookup_code(line: &str) -> String {
    match line.split_once(": ").map(|(_, r)| r) {
        Some(r) if r.len() > 2 && r.as_bytes()[2] == b',' => r[..2].to_string(),
        _ => "--".to_string(),
    }
}

/// Runs `lookup` for each address on a few threads.
fn in_parallel(addrs: &[String], lookup: fn(&str) -> String) -> Vec<String> {
    let chunks: Vec<Vec<String>> = addrs
        .chunks(addrs.len().div_ceil(8))
        .map(|c| c.to_vec())
        .collect();
    let handles: Vec<_> = chunks
        .into_iter()
        .map(|c| std::thread::spawn(move || c.iter().map(|a| lookup(a)).collect::<Vec<_>>()))
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().expect("lookup thread"))
        .collect()
}

/// Asserts that `db` gives the codes `theirs` for `addrs`; how many had one.
fn agree(db: &pen::geoip::Database, addrs: &[String], theirs: &[String]) -> usize {
    let mut found = 0;
    for (a, want) in addrs.iter().zip(theirs) {
        let ours = db
            .country(a.parse().unwrap())
            .map_or_else(|| "--".to_string(), |c| c.to_string());
        assert_eq!(&ours, want, "{a}");
        if want != "--" {
            found += 1;
        }
    }
    found
}

#[test]
fn debian_geoip_dat_agrees_with_geoiplookup() {
    if !Path::new(DEBIAN_V4).exists() || !have("geoiplookup") {
        eprintln!("skipped: needs {DEBIAN_V4} and geoiplookup (geoip-database, geoip-bin)");
        return;
    }
    let db = pen::geoip::Database::open(Path::new(DEBIAN_V4)).expect("Debian's GeoIP.dat loads");
    let addrs: Vec<String> = public_addresses(2000)
        .iter()
        .map(|a| a.to_string())
        .collect();
    let theirs = in_parallel(&addrs, |a| {
        let out = run("geoiplookup", &["-f", DEBIAN_V4, a]);
        geoiplookup_code(String::from_utf8_lossy(&out.stdout).trim())
    });
    let found = agree(&db, &addrs, &theirs);
    // The database really answered (not a run of "not found" on both sides).
    assert!(found > 1000, "only {found} addresses had a country");
}

/// The example databases in each format, written to `dir`.
fn example_databases(dir: &TempDir) -> Vec<String> {
    let files = [
        ("v4.dat", geoip_writer::legacy(LOOPBACK_NETS, false)),
        ("v6tree.mmdb", geoip_writer::mmdb(LOOPBACK_NETS, 6, 28)),
        ("v4tree.mmdb", geoip_writer::mmdb(LOOPBACK_NETS, 4, 32)),
    ];
    files
        .into_iter()
        .map(|(name, bytes)| {
            let path = dir.join(name);
            std::fs::write(&path, bytes).expect("write a database");
            path.display().to_string()
        })
        .collect()
}

/// pen with a control port, the abuse server and backend A, the database
/// `db` and ACL 1 `deny country SE`, ACL 2 `permit country SE`.
struct Setup {
    pen: Pen,
    cport: u16,
    _a: Backend,
    _abuse: Backend,
}

fn start_with(db: &str, client_acl: &str) -> Setup {
    let a = Backend::start("A", Behaviour::Name);
    let abuse = Backend::start("ABUSE", Behaviour::Name);
    let port = free_port();
    let cport = free_port();
    let control = format!("127.0.0.1:{cport}");
    let listen = format!("127.0.0.1:{port}");
    let pen = Pen::start(
        port,
        &[
            "-u",
            "root",
            "-C",
            &control,
            "-B",
            &abuse.spec(),
            "-o",
            &format!("geoip_db {db}"),
            "-o",
            "acl 1 deny country SE",
            "-o",
            "acl 2 permit country se",
            "-o",
            &format!("client_acl {client_acl}"),
            &listen,
            &a.spec(),
        ],
    );
    wait_for_port(cport);
    Setup {
        pen,
        cport,
        _a: a,
        _abuse: abuse,
    }
}

#[test]
fn country_acls_send_clients_to_the_abuse_server_in_every_format() {
    let dir = TempDir::new("geoip");
    for db in example_databases(&dir) {
        let s = start_with(&db, "1");
        let port = s.pen.port;
        assert_eq!(ctl(s.cport, "country 127.0.0.2"), "SE\n", "{db}");
        assert_eq!(ctl(s.cport, "country 127.0.0.3"), "US\n", "{db}");
        assert_eq!(ctl(s.cport, "country 192.0.2.1"), "--\n", "{db}");
        // deny country SE: .2 is denied, .3 (US) is let in.
        assert_eq!(ask("127.0.0.2", port), "ABUSE", "{db}");
        assert_eq!(ask("127.0.0.3", port), "A", "{db}");
        // permit country SE: the other way round.
        assert_eq!(ctl(s.cport, "client_acl 2"), "2\n");
        assert_eq!(ask("127.0.0.2", port), "A", "{db}");
        assert_eq!(ask("127.0.0.3", port), "ABUSE", "{db}");
    }
}

#[test]
fn geoip_db_lists_write_saves_and_files_restore() {
    let dir = TempDir::new("geoip-write");
    let dbs = example_databases(&dir);
    let s = start_with(&dbs[1], "1");
    let listing = ctl(s.cport, "geoip_db");
    assert!(
        listing.starts_with(&format!("{} (IPv4 and IPv6): MaxMind DB", dbs[1])),
        "{listing}"
    );
    // A legacy IPv4 file replaces the mmdb for IPv4 clients only.
    assert_eq!(ctl(s.cport, &format!("geoip_db {}", dbs[0])), "");
    let listing = ctl(s.cport, "geoip_db");
    assert_eq!(listing.lines().count(), 2, "{listing}");
    let saved = dir.join("saved.cfg");
    assert_eq!(ctl(s.cport, &format!("write {}", saved.display())), "");
    let text = std::fs::read_to_string(&saved).unwrap();
    assert!(text.contains("acl 1 deny country SE\n"), "{text}");
    assert!(text.contains("acl 2 permit country SE\n"), "{text}");
    // The file covering both families first, so reading it back in order
    // restores the same state.
    let want = format!("geoip_db {}\ngeoip_db {}\n", dbs[1], dbs[0]);
    assert!(text.ends_with(&want), "{text}");
    // The written file starts a pen with the same ACLs and databases.
    let port = free_port();
    let cport = free_port();
    let control = format!("127.0.0.1:{cport}");
    let listen = format!("127.0.0.1:{port}");
    let saved_arg = saved.display().to_string();
    let _again = Pen::start(
        port,
        &[
            "-u",
            "root",
            "-C",
            &control,
            "-F",
            &saved_arg,
            &listen,
            "127.0.0.1:9",
        ],
    );
    wait_for_port(cport);
    assert_eq!(ctl(cport, "geoip_db"), ctl(s.cport, "geoip_db"));
    assert_eq!(ctl(cport, "country 127.0.0.2"), "SE\n");
}

#[test]
fn bad_files_are_refused_and_the_previous_database_stays() {
    let dir = TempDir::new("geoip-bad");
    let dbs = example_databases(&dir);
    let s = start_with(&dbs[1], "1");
    let good = geoip_writer::mmdb(LOOPBACK_NETS, 6, 24);
    let legacy = geoip_writer::legacy(LOOPBACK_NETS, false);
    let mut wild = legacy.clone();
    wild[0..3].copy_from_slice(&[0, 0, 0x10]);
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("text", b"not a database\n".to_vec()),
        ("truncated.mmdb", good[..good.len() - 30].to_vec()),
        ("half.mmdb", good[..good.len() / 2].to_vec()),
        ("truncated.dat", legacy[..legacy.len() - 2].to_vec()),
        ("wild-pointer.dat", wild),
        ("noise", random_bytes(7, 100_000)),
    ];
    for (name, bytes) in bad {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        let reply = ctl(s.cport, &format!("geoip_db {}", path.display()));
        assert!(
            reply.starts_with(&format!("error: geoip_db {}: ", path.display())),
            "{name}: {reply}"
        );
        assert_eq!(ctl(s.cport, "country 127.0.0.2"), "SE\n", "{name}");
    }
    let missing = dir.join("missing.mmdb");
    let reply = ctl(s.cport, &format!("geoip_db {}", missing.display()));
    assert!(reply.contains("No such file"), "{reply}");
    assert!(ctl(s.cport, "country nonsense").starts_with("error: country: "));
    // Still serving with the database it had.
    assert_eq!(ask("127.0.0.2", s.pen.port), "ABUSE");
    assert_eq!(ask("127.0.0.3", s.pen.port), "A");
}

#[test]
fn hup_reloads_the_database_file_and_keeps_it_when_broken() {
    let dir = TempDir::new("geoip-hup");
    let db = dir.join("db.mmdb");
    std::fs::write(&db, geoip_writer::mmdb(LOOPBACK_NETS, 6, 24)).unwrap();
    let s = start_with(&db.display().to_string(), "1");
    assert_eq!(ctl(s.cport, "country 127.0.0.3"), "US\n");
    // The file is replaced by one that says 127/8 is GB: HUP picks it up.
    std::fs::write(&db, geoip_writer::mmdb(&[("127.0.0.0/8", "GB")], 6, 24)).unwrap();
    s.pen.signal("HUP");
    wait_until(DEADLINE, "HUP to reload the database", || {
        ctl(s.cport, "country 127.0.0.3") == "GB\n"
    });
    // A broken file on HUP: the error is logged, the database stays.
    std::fs::write(&db, b"broken").unwrap();
    s.pen.signal("HUP");
    s.pen
        .wait_stderr("the database loaded before stays in use", DEADLINE);
    assert_eq!(ctl(s.cport, "country 127.0.0.3"), "GB\n");
}

#[test]
fn country_entries_without_a_database_are_refused() {
    let p = free_port().to_string();
    let (code, _o, err) = run_pen(&[
        "-o",
        "no geoip_db",
        "-o",
        "acl 1 permit country SE",
        &p,
        "127.0.0.1:80",
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("acl 1: country entries never match: no GeoIP database"),
        "{err}"
    );
    // In a file, the database may come after the ACL (as `write` puts it).
    let dir = TempDir::new("geoip-order");
    let db = dir.join("db.dat");
    std::fs::write(&db, geoip_writer::legacy(LOOPBACK_NETS, false)).unwrap();
    let cfg = dir.file(
        "pen.cfg",
        &format!(
            "no geoip_db\nacl 1 deny country SE\nclient_acl 1\ngeoip_db {}\n",
            db.display()
        ),
    );
    let port = free_port();
    let a = Backend::start("A", Behaviour::Name);
    let listen = format!("127.0.0.1:{port}");
    let cfg_arg = cfg.display().to_string();
    let _pen = Pen::start(port, &["-F", &cfg_arg, &listen, &a.spec()]);
    assert_eq!(ask("127.0.0.3", port), "A");
    assert_eq!(ask("127.0.0.2", port), "");
    // The same file without the database line is refused, naming the line.
    let bad = dir.file(
        "bad.cfg",
        "no geoip_db\nacl 1 deny country SE\nclient_acl 1\n",
    );
    let bad_arg = bad.display().to_string();
    let (code, _o, err) = run_pen(&["-F", &bad_arg, &free_port().to_string(), "127.0.0.1:80"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("bad.cfg:2: acl 1: country entries never match"),
        "{err}"
    );
}

#[test]
fn generated_mmdb_agrees_with_mmdblookup() {
    if !have("mmdblookup") {
        eprintln!("skipped: needs mmdblookup (mmdb-bin)");
        return;
    }
    let dir = TempDir::new("geoip-mmdblookup");
    let nets = [
        ("127.0.0.0/8", "US"),
        ("127.0.0.2/32", "SE"),
        ("10.0.0.0/8", "DE"),
        ("2001:db8::/32", "FR"),
        ("2001:db8:1::/48", "GB"),
    ];
    for (rs, v) in [(24, 6), (28, 6), (32, 6), (24, 4)] {
        let path = dir.join(format!("t{rs}-{v}.mmdb"));
        let family: Vec<_> = nets
            .iter()
            .copied()
            .filter(|(n, _)| v == 6 || !n.contains(':'))
            .collect();
        std::fs::write(&path, geoip_writer::mmdb(&family, v, rs)).unwrap();
        let db = pen::geoip::Database::open(&path).expect("loads");
        let mut probes = vec!["127.0.0.2", "127.0.0.3", "10.9.9.9", "192.0.2.1"];
        if v == 6 {
            probes.extend(["2001:db8::1", "2001:db8:1::1", "2001:db9::1"]);
        }
        for a in probes {
            let out = run(
                "mmdblookup",
                &[
                    "--file",
                    &path.display().to_string(),
                    "--ip",
                    a,
                    "country",
                    "iso_code",
                ],
            );
            let text = String::from_utf8_lossy(&out.stdout);
            let theirs = text
                .split('"')
                .nth(1)
                .map_or_else(|| "--".to_string(), str::to_string);
            let ours = db
                .country(a.parse().unwrap())
                .map_or_else(|| "--".to_string(), |c| c.to_string());
            assert_eq!(ours, theirs, "{} {a}: {text}", path.display());
        }
    }
}

#[test]
fn debian_geoipv6_dat_agrees_with_geoiplookup6() {
    const DEBIAN_V6: &str = "/usr/share/GeoIP/GeoIPv6.dat";
    if !Path::new(DEBIAN_V6).exists() || !have("geoiplookup6") {
        eprintln!("skipped: needs {DEBIAN_V6} and geoiplookup6 (geoip-database, geoip-bin)");
        return;
    }
    let db = pen::geoip::Database::open(Path::new(DEBIAN_V6)).expect("Debian's GeoIPv6.dat loads");
    // Addresses in 2001::/16 to 2a0f::/16, where the registries allocate.
    let mut x: u64 = 0x1234_5678_9abc_def1;
    let addrs: Vec<String> = (0..400)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let first =
                [0x2001u16, 0x2400, 0x2600, 0x2800, 0x2a00, 0x2a01, 0x2a02][(x % 7) as usize];
            let second = (x >> 8) as u16 & 0x0fff;
            format!("{first:x}:{second:x}:{:x}::1", (x >> 32) as u16)
        })
        .collect();
    let theirs = in_parallel(&addrs, |a| {
        let out = run("geoiplookup6", &["-f", "/usr/share/GeoIP/GeoIPv6.dat", a]);
        geoiplookup_code(String::from_utf8_lossy(&out.stdout).trim())
    });
    let found = agree(&db, &addrs, &theirs);
    assert!(found > 40, "only {found} addresses had a country");
}

#[test]
fn ipv6_clients_are_matched_by_the_ipv6_database() {
    if !ipv6_loopback() {
        eprintln!("skipped: ::1 is not available");
        return;
    }
    let dir = TempDir::new("geoip-v6");
    let v6 = dir.join("v6.dat");
    std::fs::write(&v6, geoip_writer::legacy(&[("::1/128", "SE")], true)).unwrap();
    let v4 = dir.join("v4.dat");
    std::fs::write(&v4, geoip_writer::legacy(LOOPBACK_NETS, false)).unwrap();
    let a = Backend::start("A", Behaviour::Name);
    let abuse = Backend::start("ABUSE", Behaviour::Name);
    let port = free_port();
    let (g4, g6) = (
        format!("geoip_db {}", v4.display()),
        format!("geoip_db {}", v6.display()),
    );
    let _pen = Pen::start(
        port,
        &[
            "-B",
            &abuse.spec(),
            "-o",
            &g4,
            "-o",
            &g6,
            "-o",
            "acl 1 deny country SE",
            "-o",
            "client_acl 1",
            &format!("::1:{port}"),
            &a.spec(),
        ],
    );
    let mut s = TcpStream::connect(("::1", port)).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut got = String::new();
    s.read_to_string(&mut got).unwrap();
    assert_eq!(got, "ABUSE");
}
