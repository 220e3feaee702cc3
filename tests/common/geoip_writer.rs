//! A minimal writer of country databases in both formats that pen reads
//! (legacy GeoIP Country `.dat` and MaxMind DB `.mmdb`), so that tests can
//! map loopback ranges to countries. Std only; also compiled into pen's
//! unit tests of `src/geoip/`.
#![allow(dead_code)]

use std::net::IpAddr;

/// Legacy country ids of the codes the tests use (the format's table).
const LEGACY_IDS: &[(&str, u32)] = &[
    ("EU", 2),
    ("CN", 48),
    ("DE", 56),
    ("FR", 74),
    ("GB", 77),
    ("SE", 191),
    ("US", 225),
];

/// A network (`127.0.0.0/8`, `::1/128`) and its country code.
pub type Net<'a> = (&'a str, &'a str);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Child {
    Node(usize),
    /// An answer: index into the codes, or `None` for "unknown".
    Leaf(Option<usize>),
}

/// A binary trie over `bits`-bit addresses; more specific networks win.
struct Trie {
    nodes: Vec<[Child; 2]>,
    codes: Vec<String>,
}

fn parse_net(net: &str, v6_tree: bool) -> (u128, u32) {
    let (a, len) = net.split_once('/').expect("network/len");
    let ip: IpAddr = a.parse().expect("address");
    let len: u32 = len.parse().expect("prefix length");
    match ip {
        IpAddr::V4(v4) if v6_tree => (u128::from(u32::from(v4)), 96 + len),
        IpAddr::V4(v4) => (u128::from(u32::from(v4)) << 96, len),
        IpAddr::V6(v6) => {
            assert!(v6_tree, "IPv6 network in an IPv4 database");
            (u128::from(v6), len)
        }
    }
}

impl Trie {
    fn build(nets: &[Net], v6_tree: bool) -> Trie {
        let mut t = Trie {
            nodes: vec![[Child::Leaf(None); 2]],
            codes: Vec::new(),
        };
        let mut parsed: Vec<(u128, u32, &str)> = nets
            .iter()
            .map(|(n, c)| {
                let (bits, len) = parse_net(n, v6_tree);
                (bits, len, *c)
            })
            .collect();
        parsed.sort_by_key(|p| p.1);
        for (bits, len, code) in parsed {
            assert!(len >= 1, "a /0 network is not supported by the writer");
            let ci = match t.codes.iter().position(|c| c == code) {
                Some(i) => i,
                None => {
                    t.codes.push(code.to_string());
                    t.codes.len() - 1
                }
            };
            let mut node = 0;
            for depth in 0..len {
                let side = ((bits >> (127 - depth)) & 1) as usize;
                if depth + 1 == len {
                    t.nodes[node][side] = Child::Leaf(Some(ci));
                    break;
                }
                node = match t.nodes[node][side] {
                    Child::Node(n) => n,
                    Child::Leaf(l) => {
                        t.nodes.push([Child::Leaf(l); 2]);
                        let n = t.nodes.len() - 1;
                        t.nodes[node][side] = Child::Node(n);
                        n
                    }
                };
            }
        }
        t
    }
}

/// A legacy GeoIP Country database (`v6`: the V6 edition, 128-bit walk).
pub fn legacy(nets: &[Net], v6: bool) -> Vec<u8> {
    const COUNTRY_BEGIN: u32 = 16_776_960;
    let t = Trie::build(nets, v6);
    let id = |c: &str| {
        LEGACY_IDS
            .iter()
            .find(|(k, _)| *k == c)
            .map(|(_, i)| *i)
            .unwrap_or_else(|| panic!("no legacy id for {c} in the writer"))
    };
    let mut out = Vec::new();
    for node in &t.nodes {
        for child in node {
            let r = match *child {
                Child::Node(n) => n as u32,
                Child::Leaf(None) => COUNTRY_BEGIN,
                Child::Leaf(Some(ci)) => COUNTRY_BEGIN + id(&t.codes[ci]),
            };
            out.extend_from_slice(&r.to_le_bytes()[..3]);
        }
    }
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(b"PEN-TEST 20260101 Build 1");
    out.extend_from_slice(&[0xff, 0xff, 0xff, if v6 { 12 } else { 1 }]);
    out
}

/// MaxMind DB data-section encoding.
pub mod enc {
    /// A control byte (and extended type and size bytes) for `kind`/`size`.
    pub fn ctrl(kind: u8, size: usize) -> Vec<u8> {
        let (first, ext) = if kind <= 7 {
            (kind << 5, None)
        } else {
            (0, Some(kind - 7))
        };
        let (low, extra): (u8, Vec<u8>) = if size < 29 {
            (size as u8, vec![])
        } else if size < 285 {
            (29, vec![(size - 29) as u8])
        } else if size < 65_821 {
            (30, ((size - 285) as u16).to_be_bytes().to_vec())
        } else {
            (31, ((size - 65_821) as u32).to_be_bytes()[1..].to_vec())
        };
        let mut out = vec![first | low];
        out.extend(ext);
        out.extend(extra);
        out
    }
    pub fn string(s: &str) -> Vec<u8> {
        let mut o = ctrl(2, s.len());
        o.extend_from_slice(s.as_bytes());
        o
    }
    /// An unsigned number of type `kind` (5, 6, 9 or 10), minimal bytes.
    pub fn uint(kind: u8, v: u64) -> Vec<u8> {
        let bytes: Vec<u8> = v
            .to_be_bytes()
            .iter()
            .copied()
            .skip_while(|&b| b == 0)
            .collect();
        let mut o = ctrl(kind, bytes.len());
        o.extend(bytes);
        o
    }
    pub fn map(pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
        let mut o = ctrl(7, pairs.len());
        for (k, v) in pairs {
            o.extend_from_slice(k);
            o.extend_from_slice(v);
        }
        o
    }
    pub fn array(items: &[Vec<u8>]) -> Vec<u8> {
        let mut o = ctrl(11, items.len());
        for i in items {
            o.extend_from_slice(i);
        }
        o
    }
    pub fn boolean(v: bool) -> Vec<u8> {
        ctrl(14, usize::from(v))
    }
    pub fn double(v: f64) -> Vec<u8> {
        let mut o = ctrl(3, 8);
        o.extend_from_slice(&v.to_be_bytes());
        o
    }
    pub fn float(v: f32) -> Vec<u8> {
        let mut o = ctrl(15, 4);
        o.extend_from_slice(&v.to_be_bytes());
        o
    }
    /// A pointer to data-section offset `p`, in its shortest form.
    pub fn pointer(p: usize) -> Vec<u8> {
        if p < 2048 {
            vec![0x20 | (p >> 8) as u8, p as u8]
        } else if p < 2048 + (1 << 19) {
            let q = p - 2048;
            vec![0x28 | (q >> 16) as u8, (q >> 8) as u8, q as u8]
        } else {
            let mut o = vec![0x38];
            o.extend_from_slice(&(p as u32).to_be_bytes());
            o
        }
    }
    pub fn key(s: &str) -> Vec<u8> {
        string(s)
    }
}

/// One country's record as GeoLite2 lays it out, with a few other types so
/// that the reader skips them. A code starting with `r:` is put only under
/// `registered_country`, as DB-IP Lite and GeoLite2 do for some networks.
fn mmdb_record(code: &str, iso_key_at: usize) -> Vec<u8> {
    use enc::*;
    let (country_key, code) = match code.strip_prefix("r:") {
        Some(c) => ("registered_country", c),
        None => ("country", code),
    };
    let names = map(&[(key("de"), string("Land")), (key("en"), string("Country"))]);
    map(&[
        (
            key("continent"),
            map(&[
                (key("code"), string("EU")),
                (key("geoname_id"), uint(6, 6255148)),
            ]),
        ),
        (
            key(country_key),
            map(&[
                (key("geoname_id"), uint(6, 2661886)),
                (key("is_in_european_union"), boolean(true)),
                // The key through a pointer to its first copy.
                (pointer(iso_key_at), string(code)),
                (key("names"), names),
            ]),
        ),
        (
            key("location"),
            array(&[double(59.3), float(18.0), uint(9, 1 << 40), uint(10, 7)]),
        ),
    ])
}

/// A MaxMind DB with an IPv4 (`ip_version` 4) or IPv6 (6) tree and
/// `record_size` 24, 28 or 32.
pub fn mmdb(nets: &[Net], ip_version: u16, record_size: u32) -> Vec<u8> {
    use enc::*;
    let t = Trie::build(nets, ip_version == 6);
    let node_count = t.nodes.len() as u32;
    // Data section: the "iso_code" key first (records point to it), then a
    // record per code.
    let mut data = key("iso_code");
    let mut offsets = Vec::new();
    for c in &t.codes {
        offsets.push(data.len());
        data.extend(mmdb_record(c, 0));
    }
    let mut out = Vec::new();
    for node in &t.nodes {
        let r: Vec<u32> = node
            .iter()
            .map(|child| match *child {
                Child::Node(n) => n as u32,
                Child::Leaf(None) => node_count,
                Child::Leaf(Some(ci)) => node_count + 16 + offsets[ci] as u32,
            })
            .collect();
        match record_size {
            24 => {
                out.extend_from_slice(&r[0].to_be_bytes()[1..]);
                out.extend_from_slice(&r[1].to_be_bytes()[1..]);
            }
            28 => {
                out.extend_from_slice(&r[0].to_be_bytes()[1..]);
                out.push(((r[0] >> 20) & 0xf0) as u8 | ((r[1] >> 24) & 0x0f) as u8);
                out.extend_from_slice(&r[1].to_be_bytes()[1..]);
            }
            32 => {
                out.extend_from_slice(&r[0].to_be_bytes());
                out.extend_from_slice(&r[1].to_be_bytes());
            }
            other => panic!("record size {other}"),
        }
    }
    out.extend_from_slice(&[0; 16]);
    out.extend(data);
    out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
    out.extend(map(&[
        (key("binary_format_major_version"), uint(5, 2)),
        (key("binary_format_minor_version"), uint(5, 0)),
        (key("build_epoch"), uint(9, 1_767_225_600)),
        (key("database_type"), string("Pen-Test-Country")),
        (key("description"), map(&[(key("en"), string("pen test"))])),
        (key("ip_version"), uint(5, u64::from(ip_version))),
        (key("languages"), array(&[string("en")])),
        (key("node_count"), uint(6, u64::from(node_count))),
        (key("record_size"), uint(5, u64::from(record_size))),
    ]));
    out
}

/// The networks of the example: 127.0.0.2 is SE, the rest of
/// 127/8 is US, and an IPv6 range.
pub const LOOPBACK_NETS: &[Net] = &[
    ("127.0.0.0/8", "US"),
    ("127.0.0.2/32", "SE"),
    ("10.0.0.0/8", "DE"),
];
