//! Both readers against databases written by the test writer, and against
//! truncated, corrupted and hostile files.

use super::writer::{self, enc, LOOPBACK_NETS};
use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn code(db: &Database, a: &str) -> String {
    db.country(ip(a))
        .map_or_else(|| "--".to_string(), |c| c.to_string())
}

fn all_formats() -> Vec<(String, Vec<u8>)> {
    let mut v = vec![
        (
            "legacy v4".to_string(),
            writer::legacy(LOOPBACK_NETS, false),
        ),
        ("legacy v6".to_string(), writer::legacy(LOOPBACK_NETS, true)),
    ];
    for rs in [24, 28, 32] {
        for ipv in [4, 6] {
            v.push((
                format!("mmdb v{ipv} /{rs}"),
                writer::mmdb(LOOPBACK_NETS, ipv, rs),
            ));
        }
    }
    v
}

#[test]
fn country_codes_parse_and_print() {
    assert_eq!(CountryCode::parse("se").unwrap().to_string(), "SE");
    assert_eq!(CountryCode::parse("A1").unwrap().to_string(), "A1");
    for bad in ["", "S", "SWE", "S-", "\u{e9}e", "--"] {
        assert!(CountryCode::parse(bad).is_none(), "{bad}");
    }
}

#[test]
fn writer_ids_match_the_legacy_table() {
    for c in ["EU", "CN", "DE", "FR", "GB", "SE", "US"] {
        assert!(legacy::country_id(c).is_some(), "{c}");
    }
    assert_eq!(legacy::country_id("SE"), Some(191));
    assert_eq!(legacy::country_id("US"), Some(225));
}

#[test]
fn loopback_example_in_every_format() {
    for (name, bytes) in all_formats() {
        let db = Database::from_bytes(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let v6_legacy = name == "legacy v6";
        if v6_legacy {
            assert_eq!(db.coverage(), Coverage::V6);
            // The V6 edition answers IPv6 addresses only.
            assert_eq!(code(&db, "127.0.0.2"), "--", "{name}");
            assert_eq!(code(&db, "::127.0.0.2"), "SE", "{name}");
            assert_eq!(code(&db, "::127.0.0.3"), "US", "{name}");
            continue;
        }
        assert_eq!(code(&db, "127.0.0.2"), "SE", "{name}");
        assert_eq!(code(&db, "127.0.0.3"), "US", "{name}");
        assert_eq!(code(&db, "127.255.255.255"), "US", "{name}");
        assert_eq!(code(&db, "10.1.2.3"), "DE", "{name}");
        assert_eq!(code(&db, "128.0.0.1"), "--", "{name}");
        assert_eq!(code(&db, "0.0.0.0"), "--", "{name}");
        // IPv4-mapped clients are looked up as IPv4.
        assert_eq!(code(&db, "::ffff:127.0.0.2"), "SE", "{name}");
        assert_eq!(code(&db, "2001:db8::1"), "--", "{name}");
    }
}

#[test]
fn mmdb_ipv6_networks_and_registered_country() {
    let nets = [
        ("2001:db8::/32", "FR"),
        ("2001:db8:1::/48", "r:GB"),
        ("127.0.0.0/8", "US"),
    ];
    let db = Database::from_bytes(writer::mmdb(&nets, 6, 28)).unwrap();
    assert_eq!(db.coverage(), Coverage::Both);
    assert_eq!(code(&db, "2001:db8::1"), "FR");
    assert_eq!(code(&db, "2001:db8:1::5"), "GB");
    assert_eq!(code(&db, "2001:db9::1"), "--");
    assert_eq!(code(&db, "::127.0.0.1"), "US");
    assert_eq!(code(&db, "127.0.0.1"), "US");
    assert!(
        db.describe().contains("Pen-Test-Country"),
        "{}",
        db.describe()
    );
}

#[test]
fn geoip_set_uses_the_database_of_each_family() {
    let v4 = Loaded {
        path: "/a".into(),
        db: Arc::new(Database::from_bytes(writer::legacy(LOOPBACK_NETS, false)).unwrap()),
        from_command: true,
    };
    let v6 = Loaded {
        path: "/b".into(),
        db: Arc::new(
            Database::from_bytes(writer::legacy(&[("2001:db8::/32", "CN")], true)).unwrap(),
        ),
        from_command: true,
    };
    let both = Loaded {
        path: "/c".into(),
        db: Arc::new(Database::from_bytes(writer::mmdb(&[("::/1", "FR")], 6, 24)).unwrap()),
        from_command: true,
    };
    let mut g = GeoIp::default();
    assert!(g.is_empty());
    assert_eq!(g.country(ip("127.0.0.2")), None);
    g.install(v4);
    assert_eq!(g.country(ip("127.0.0.2")).unwrap().to_string(), "SE");
    assert_eq!(g.country(ip("2001:db8::1")), None);
    g.install(v6);
    assert_eq!(g.country(ip("2001:db8::1")).unwrap().to_string(), "CN");
    let paths: Vec<_> = g.files().iter().map(|l| l.path.clone()).collect();
    assert_eq!(paths, vec![PathBuf::from("/a"), PathBuf::from("/b")]);
    // An .mmdb covers both families; saved first.
    g.install(both.clone());
    assert_eq!(g.country(ip("127.0.0.2")).unwrap().to_string(), "FR");
    assert_eq!(g.files().len(), 1);
    let mut g2 = GeoIp::default();
    g2.install(both);
    g2.install(Loaded {
        path: "/a".into(),
        db: Arc::new(Database::from_bytes(writer::legacy(LOOPBACK_NETS, false)).unwrap()),
        from_command: true,
    });
    let paths: Vec<_> = g2.files().iter().map(|l| l.path.clone()).collect();
    assert_eq!(paths, vec![PathBuf::from("/c"), PathBuf::from("/a")]);
}

fn refused(bytes: Vec<u8>) -> String {
    match Database::from_bytes(bytes) {
        Ok(db) => panic!("accepted: {db:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn garbage_and_empty_files_are_refused() {
    assert!(refused(Vec::new()).contains("not a GeoIP database"));
    assert!(refused(b"hello world, this is text".to_vec()).contains("not a GeoIP database"));
    assert!(refused(vec![0xff; 3]).contains("not a GeoIP database"));
    // A legacy trailer of a City edition.
    let mut city = writer::legacy(LOOPBACK_NETS, false);
    *city.last_mut().unwrap() = 2;
    assert!(refused(city).contains("edition 2"));
    // The trailer alone: no tree.
    assert!(refused(vec![0xff, 0xff, 0xff, 1]).contains("corrupt"));
}

#[test]
fn truncated_files_are_refused() {
    for (name, bytes) in all_formats() {
        for cut in [1, 2, 5, 17, bytes.len() / 2, bytes.len() - 1] {
            if cut >= bytes.len() {
                continue;
            }
            let r = Database::from_bytes(bytes[..bytes.len() - cut].to_vec());
            assert!(r.is_err(), "{name} cut by {cut} accepted");
        }
    }
}

#[test]
fn legacy_pointers_outside_the_file_are_refused() {
    let mut b = writer::legacy(LOOPBACK_NETS, false);
    // Root's left record points far beyond the tree (but below COUNTRY_BEGIN).
    b[0..3].copy_from_slice(&[0x00, 0x00, 0x10]);
    let e = refused(b);
    assert!(e.contains("outside the file"), "{e}");
    // Country ids beyond the table: a Large Country edition trailer makes
    // the writer's answers ids of about 260,000.
    let mut b = writer::legacy(LOOPBACK_NETS, false);
    *b.last_mut().unwrap() = 17;
    assert!(refused(b).contains("beyond the table"));
}

#[test]
fn legacy_cycles_are_refused_or_bounded() {
    // Every record points back to the root: a loop. Lookups stop after
    // 32 (or 128) steps with no answer.
    for edition in [1, 12] {
        let mut b = vec![0u8; 6 * 4];
        b.extend_from_slice(&[0xff, 0xff, 0xff, edition]);
        let db = Database::from_bytes(b).unwrap();
        assert_eq!(code(&db, "1.2.3.4"), "--");
        assert_eq!(code(&db, "2001:db8::1"), "--");
    }
    // A chain longer than the address: node i points to i + 1.
    let mut b = Vec::new();
    for i in 1..=40u32 {
        b.extend_from_slice(&i.to_le_bytes()[..3]);
        b.extend_from_slice(&i.to_le_bytes()[..3]);
    }
    b.extend_from_slice(&[0xff, 0xff, 0xff, 1]);
    assert!(refused(b).contains("deeper"));
}

#[test]
fn mmdb_pointers_outside_the_data_section_are_refused() {
    let b = writer::mmdb(LOOPBACK_NETS, 4, 32);
    // Root's right record (0.0.0.0 has left) -> data way past the end.
    let mut bad = b.clone();
    bad[4..8].copy_from_slice(&0x7fff_fff0u32.to_be_bytes());
    assert!(refused(bad).contains("outside the data section"));
    // A record inside the 16-byte separator after the tree (1 node).
    let mut bad = mmdb_with_record(&[], &enc::map(&[]));
    bad[0..3].copy_from_slice(&[0, 0, 4]);
    assert!(refused(bad).contains("outside the data section"));
}

/// A database whose only answer is the record `data` (pointers in it are
/// relative to the data section start, which holds `prefix` first).
fn mmdb_with_record(prefix: &[u8], record: &[u8]) -> Vec<u8> {
    use enc::*;
    // One node: left -> data at `prefix.len()`, right -> empty.
    let node_count = 1u32;
    let mut out = Vec::new();
    out.extend_from_slice(&(node_count + 16 + prefix.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&node_count.to_be_bytes()[1..]);
    out.extend_from_slice(&[0; 16]);
    out.extend_from_slice(prefix);
    out.extend_from_slice(record);
    out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
    out.extend(map(&[
        (key("binary_format_major_version"), uint(5, 2)),
        (key("ip_version"), uint(5, 4)),
        (key("node_count"), uint(6, u64::from(node_count))),
        (key("record_size"), uint(5, 24)),
    ]));
    out
}

#[test]
fn mmdb_hand_made_records() {
    use enc::*;
    let country = |cc: &str| map(&[(key("country"), map(&[(key("iso_code"), string(cc))]))]);
    let db = Database::from_bytes(mmdb_with_record(&[], &country("SE"))).unwrap();
    assert_eq!(code(&db, "1.2.3.4"), "SE");
    assert_eq!(code(&db, "200.2.3.4"), "--");
    // Not a country code: no answer.
    let db = Database::from_bytes(mmdb_with_record(&[], &country("Sweden"))).unwrap();
    assert_eq!(code(&db, "1.2.3.4"), "--");
    // No country at all.
    let db = Database::from_bytes(mmdb_with_record(&[], &map(&[]))).unwrap();
    assert_eq!(code(&db, "1.2.3.4"), "--");
    // The record through a pointer, and a string through a pointer.
    let prefix = string("DE");
    let rec = map(&[(key("country"), map(&[(key("iso_code"), pointer(0))]))]);
    let db = Database::from_bytes(mmdb_with_record(&prefix, &rec)).unwrap();
    assert_eq!(code(&db, "1.2.3.4"), "DE");
    // Sizes of every width.
    let long = "x".repeat(70_000);
    let rec = map(&[
        (key("a"), string(&"y".repeat(40))),
        (key("b"), string(&"z".repeat(300))),
        (key("c"), string(&long)),
        (key("country"), map(&[(key("iso_code"), string("FR"))])),
    ]);
    let db = Database::from_bytes(mmdb_with_record(&[], &rec)).unwrap();
    assert_eq!(code(&db, "1.2.3.4"), "FR");
}

#[test]
fn mmdb_hostile_records_are_refused() {
    use enc::*;
    let cases: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
        // A map claiming 16 million pairs.
        ("huge map", vec![], {
            let mut m = ctrl(7, 16_000_000);
            m.extend(string("k"));
            m
        }),
        // A string longer than the section.
        ("long string", vec![], {
            let mut m = ctrl(7, 1);
            m.extend(key("country"));
            m.extend(ctrl(2, 60_000));
            m
        }),
        // A pointer to itself where the country map should be.
        (
            "self pointer",
            pointer(0),
            map(&[(key("country"), pointer(0))]),
        ),
        // A pointer past the end.
        (
            "wild pointer",
            vec![],
            map(&[(key("country"), pointer(100_000))]),
        ),
        // Maps nested 100 deep.
        ("deep nesting", vec![], {
            let mut m = Vec::new();
            for _ in 0..100 {
                m.extend(ctrl(7, 1));
                m.extend(key("k"));
            }
            m.extend(string("v"));
            m
        }),
        // An unknown extended type and a data cache container.
        ("extended type 200", vec![], vec![0x01, 200]),
        ("container", vec![], ctrl(12, 0)),
        // A uint16 of 9 bytes, a double of 3.
        ("wide uint", vec![], {
            let mut m = ctrl(5, 9);
            m.extend([0; 9]);
            m
        }),
        ("short double", vec![], {
            let mut m = ctrl(3, 3);
            m.extend([0; 3]);
            m
        }),
        // The country is a number, not a map.
        (
            "country not a map",
            vec![],
            map(&[(key("country"), uint(6, 5))]),
        ),
        // A key that is not a string.
        ("numeric key", vec![], map(&[(uint(6, 5), string("x"))])),
    ];
    for (name, prefix, rec) in cases {
        let r = Database::from_bytes(mmdb_with_record(&prefix, &rec));
        assert!(r.is_err(), "{name} accepted");
    }
}

#[test]
fn mmdb_bad_metadata_is_refused() {
    use enc::*;
    let base = writer::mmdb(LOOPBACK_NETS, 6, 24);
    let marker = b"\xAB\xCD\xEFMaxMind.com";
    let at = base
        .windows(marker.len())
        .rposition(|w| w == marker)
        .unwrap()
        + marker.len();
    let with_meta = |meta: Vec<u8>| {
        let mut b = base[..at].to_vec();
        b.extend(meta);
        b
    };
    let good = |extra: &[(&str, Vec<u8>)]| {
        let mut pairs = vec![
            (key("binary_format_major_version"), uint(5, 2)),
            (key("ip_version"), uint(5, 6)),
            (key("record_size"), uint(5, 24)),
        ];
        for (k, v) in extra {
            pairs.push((key(k), v.clone()));
        }
        map(&pairs)
    };
    for (name, meta) in [
        ("no node_count", good(&[])),
        (
            "node_count too big",
            good(&[("node_count", uint(6, 4_000_000_000))]),
        ),
        ("node_count 0", good(&[("node_count", uint(6, 0))])),
        ("node_count string", good(&[("node_count", string("9"))])),
        ("not a map", string("metadata")),
        ("empty", vec![]),
    ] {
        assert!(Database::from_bytes(with_meta(meta)).is_err(), "{name}");
    }
    let nodes = |n: u64| ("node_count", uint(6, n));
    let mut wrong_size = vec![
        (key("binary_format_major_version"), uint(5, 2)),
        (key("ip_version"), uint(5, 6)),
        (key("record_size"), uint(5, 20)),
    ];
    wrong_size.push((key(nodes(10).0), nodes(10).1));
    assert!(Database::from_bytes(with_meta(map(&wrong_size))).is_err());
    let wrong_version = vec![
        (key("binary_format_major_version"), uint(5, 3)),
        (key("ip_version"), uint(5, 6)),
        (key("record_size"), uint(5, 24)),
        (key("node_count"), uint(6, 10)),
    ];
    assert!(Database::from_bytes(with_meta(map(&wrong_version))).is_err());
}

/// Mutates bytes of every format at pseudo-random places, in a bounded
/// loop: loading must never panic, and a database that loads must answer
/// lookups without panicking.
#[test]
fn mutated_databases_never_panic() {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let probes = [
        "127.0.0.2",
        "127.0.0.3",
        "10.0.0.1",
        "255.255.255.255",
        "0.0.0.0",
        "::1",
        "::127.0.0.2",
        "2001:db8::1",
        "ffff::ffff",
    ];
    let start = std::time::Instant::now();
    for (name, bytes) in all_formats() {
        for round in 0..300 {
            let mut b = bytes.clone();
            let flips = 1 + next() % 4;
            for _ in 0..flips {
                let i = (next() % b.len() as u64) as usize;
                b[i] = next() as u8;
            }
            if round % 10 == 0 {
                let cut = (next() % b.len() as u64) as usize;
                b.truncate(cut);
            }
            if let Ok(db) = Database::from_bytes(b) {
                for p in probes {
                    let _ = db.country(ip(p));
                }
            }
            assert!(
                start.elapsed() < std::time::Duration::from_secs(60),
                "{name}: too slow"
            );
        }
    }
}
