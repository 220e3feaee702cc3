//! The MaxMind DB format (`.mmdb`), as GeoLite2-Country and DB-IP Country
//! Lite use it.
//!
//! Layout: a binary search tree of `node_count` nodes, each two records of
//! `record_size` bits (24, 28 or 32; big-endian, the 28-bit form sharing its
//! middle byte), then 16 zero bytes, then the data section, then
//! `"\xAB\xCD\xEFMaxMind.com"` and the metadata map. A record below
//! `node_count` is a node, equal to it means "no data", above it points
//! `record - node_count - 16` bytes into the data section. An IPv6 tree
//! keeps IPv4 addresses under `::/96`. Data values start with a control
//! byte: type in the top 3 bits (0: extended, the next byte + 7), size in
//! the low 5 (29..31: one to three more size bytes); type 1 is a pointer.
//!
//! Each distinct answer is decoded once, when the file is loaded; a lookup
//! only walks the tree and binary-searches those answers.

use std::net::IpAddr;

use super::{corrupt, CountryCode, Coverage, GeoIpError};

const METADATA_MARKER: &[u8] = b"\xAB\xCD\xEFMaxMind.com";
/// The metadata starts within this many bytes of the end.
const METADATA_MAX_SIZE: usize = 128 * 1024;
const DATA_SEPARATOR: usize = 16;
/// Maps and arrays nested deeper than this are refused.
const MAX_DEPTH: u32 = 32;
/// Values decoded while loading one file, at most: garbage sizes end here.
const DECODE_BUDGET: u64 = 50_000_000;

const T_POINTER: u8 = 1;
const T_STRING: u8 = 2;
const T_DOUBLE: u8 = 3;
const T_BYTES: u8 = 4;
const T_UINT16: u8 = 5;
const T_UINT32: u8 = 6;
const T_MAP: u8 = 7;
const T_INT32: u8 = 8;
const T_UINT64: u8 = 9;
const T_UINT128: u8 = 10;
const T_ARRAY: u8 = 11;
const T_BOOLEAN: u8 = 14;
const T_FLOAT: u8 = 15;

/// Where the metadata map starts (just after the last marker).
fn metadata_start(b: &[u8]) -> Option<usize> {
    let from = b.len().saturating_sub(METADATA_MAX_SIZE);
    b[from..]
        .windows(METADATA_MARKER.len())
        .rposition(|w| w == METADATA_MARKER)
        .map(|i| from + i + METADATA_MARKER.len())
}

pub(super) fn is_mmdb(b: &[u8]) -> bool {
    metadata_start(b).is_some()
}

/// A decoded control byte.
enum Item {
    /// A pointer to `target`; the pointer itself ends at `next`.
    Pointer { target: usize, next: usize },
    /// A value of `kind` whose payload starts at `payload`.
    Value {
        kind: u8,
        size: usize,
        payload: usize,
    },
}

/// Reads values from one section (the data section or the metadata), with
/// every offset checked and the work bounded by a budget.
struct Decoder<'a> {
    data: &'a [u8],
    budget: u64,
}

impl<'a> Decoder<'a> {
    fn byte(&self, at: usize) -> Result<u8, GeoIpError> {
        self.data
            .get(at)
            .copied()
            .ok_or_else(|| corrupt(format!("data offset {at} beyond the section")))
    }

    fn be(&self, at: usize, n: usize) -> Result<usize, GeoIpError> {
        let mut v = 0usize;
        for i in 0..n {
            v = v << 8 | usize::from(self.byte(at + i)?);
        }
        Ok(v)
    }

    fn spend(&mut self) -> Result<(), GeoIpError> {
        if self.budget == 0 {
            return Err(corrupt("data section too large or looping"));
        }
        self.budget -= 1;
        Ok(())
    }

    fn item(&self, at: usize) -> Result<Item, GeoIpError> {
        let c = self.byte(at)?;
        let mut p = at + 1;
        let mut kind = c >> 5;
        if kind == T_POINTER {
            let ss = (c >> 3) & 3;
            let vvv = usize::from(c & 7);
            let (target, len) = match ss {
                0 => ((vvv << 8) | self.be(p, 1)?, 1),
                1 => (((vvv << 16) | self.be(p, 2)?) + 2048, 2),
                2 => (((vvv << 24) | self.be(p, 3)?) + 526_336, 3),
                _ => (self.be(p, 4)?, 4),
            };
            return Ok(Item::Pointer {
                target,
                next: p + len,
            });
        }
        if kind == 0 {
            let ext = self.byte(p)?;
            p += 1;
            kind = ext
                .checked_add(7)
                .filter(|k| (8..=15).contains(k))
                .ok_or_else(|| {
                    corrupt(format!("unknown extended type {ext} at data offset {at}"))
                })?;
        }
        let size = match c & 0x1f {
            s @ 0..=28 => usize::from(s),
            29 => {
                p += 1;
                29 + self.be(p - 1, 1)?
            }
            30 => {
                p += 2;
                285 + self.be(p - 2, 2)?
            }
            _ => {
                p += 3;
                65_821 + self.be(p - 3, 3)?
            }
        };
        Ok(Item::Value {
            kind,
            size,
            payload: p,
        })
    }

    /// The value at `at`, following one pointer (a pointer to a pointer is
    /// invalid in the format).
    fn resolve(&self, at: usize) -> Result<(u8, usize, usize), GeoIpError> {
        let item = match self.item(at)? {
            Item::Pointer { target, .. } => match self.item(target)? {
                Item::Pointer { .. } => {
                    return Err(corrupt(format!("pointer to a pointer at data offset {at}")))
                }
                v => v,
            },
            v => v,
        };
        match item {
            Item::Value {
                kind,
                size,
                payload,
            } => Ok((kind, size, payload)),
            Item::Pointer { .. } => Err(corrupt("pointer where a value was expected")),
        }
    }

    /// Where the value at `at` ends (a pointer is not followed).
    fn skip(&mut self, at: usize, depth: u32) -> Result<usize, GeoIpError> {
        self.spend()?;
        if depth > MAX_DEPTH {
            return Err(corrupt(format!(
                "values nested too deeply at data offset {at}"
            )));
        }
        let (kind, size, payload) = match self.item(at)? {
            Item::Pointer { next, .. } => return Ok(next),
            Item::Value {
                kind,
                size,
                payload,
            } => (kind, size, payload),
        };
        let max = match kind {
            T_MAP | T_ARRAY => {
                let per = if kind == T_MAP { 2 } else { 1 };
                let mut p = payload;
                for _ in 0..size {
                    for _ in 0..per {
                        p = self.skip(p, depth + 1)?;
                    }
                }
                return Ok(p);
            }
            T_BOOLEAN => {
                if size > 1 {
                    return Err(corrupt(format!("boolean of {size} at data offset {at}")));
                }
                return Ok(payload);
            }
            T_STRING | T_BYTES => usize::MAX,
            T_DOUBLE => 8,
            T_FLOAT => 4,
            T_UINT16 => 2,
            T_UINT32 | T_INT32 => 4,
            T_UINT64 => 8,
            T_UINT128 => 16,
            other => {
                return Err(corrupt(format!(
                    "type {other} inside a record at data offset {at}"
                )))
            }
        };
        let fixed = matches!(kind, T_DOUBLE | T_FLOAT);
        if size > max || (fixed && size != max) {
            return Err(corrupt(format!(
                "type {kind} of size {size} at data offset {at}"
            )));
        }
        let end = payload + size;
        if end > self.data.len() {
            return Err(corrupt(format!(
                "value at data offset {at} runs past the section"
            )));
        }
        Ok(end)
    }

    fn string(&self, at: usize) -> Result<&'a [u8], GeoIpError> {
        match self.resolve(at)? {
            (T_STRING, size, payload) => self.data.get(payload..payload + size).ok_or_else(|| {
                corrupt(format!("string at data offset {at} runs past the section"))
            }),
            (kind, ..) => Err(corrupt(format!(
                "type {kind} where a string was expected at data offset {at}"
            ))),
        }
    }

    fn uint(&self, at: usize) -> Result<u64, GeoIpError> {
        match self.resolve(at)? {
            (T_UINT16 | T_UINT32 | T_UINT64 | T_UINT128, size, payload) if size <= 8 => {
                Ok(self.be(payload, size)? as u64)
            }
            (kind, size, _) => Err(corrupt(format!(
                "type {kind} of size {size} where a number was expected at data offset {at}"
            ))),
        }
    }

    /// The value of `key` in the map at `at`, if there.
    fn map_get(&mut self, at: usize, key: &[u8]) -> Result<Option<usize>, GeoIpError> {
        let (kind, size, mut p) = self.resolve(at)?;
        if kind != T_MAP {
            return Err(corrupt(format!(
                "type {kind} where a map was expected at data offset {at}"
            )));
        }
        for _ in 0..size {
            self.spend()?;
            let k = self.string(p)?;
            p = self.skip(p, 1)?;
            if k == key {
                return Ok(Some(p));
            }
            p = self.skip(p, 1)?;
        }
        Ok(None)
    }

    /// `record[a][b]` as a country code; `None` when absent or not a code.
    fn code_at(
        &mut self,
        record: usize,
        a: &[u8],
        b: &[u8],
    ) -> Result<Option<CountryCode>, GeoIpError> {
        let Some(inner) = self.map_get(record, a)? else {
            return Ok(None);
        };
        let Some(code) = self.map_get(inner, b)? else {
            return Ok(None);
        };
        Ok(CountryCode::from_bytes(self.string(code)?))
    }

    /// The country of the record at `at`: `country.iso_code`, or else
    /// `registered_country.iso_code` (networks that GeoLite2 and DB-IP
    /// know only by their registration).
    fn country(&mut self, at: usize) -> Result<Option<CountryCode>, GeoIpError> {
        self.skip(at, 0)?;
        match self.code_at(at, b"country", b"iso_code")? {
            Some(c) => Ok(Some(c)),
            None => self.code_at(at, b"registered_country", b"iso_code"),
        }
    }
}

pub(super) struct Mmdb {
    bytes: Vec<u8>,
    node_count: u32,
    record_size: u32,
    ip_version: u64,
    /// Where IPv4 lookups start: the record reached by 96 zero bits in an
    /// IPv6 tree, the root in an IPv4 tree.
    ipv4_start: u32,
    /// Where the data section ends (the metadata marker).
    data_end: usize,
    /// The answer of each data record that has one, by record value.
    answers: Vec<(u32, CountryCode)>,
    database_type: String,
}

impl Mmdb {
    pub(super) fn new(bytes: Vec<u8>) -> Result<Mmdb, GeoIpError> {
        let meta_start = metadata_start(&bytes).ok_or(GeoIpError::UnknownFormat)?;
        let data_end = meta_start - METADATA_MARKER.len();
        let mut meta = Decoder {
            data: &bytes[meta_start..],
            budget: 100_000,
        };
        let field = |meta: &mut Decoder, key: &str| {
            meta.map_get(0, key.as_bytes())?
                .ok_or_else(|| corrupt(format!("metadata lacks {key}")))
        };
        let major = field(&mut meta, "binary_format_major_version")?;
        let major = meta.uint(major)?;
        if major != 2 {
            return Err(corrupt(format!("binary format version {major}, not 2")));
        }
        let node_count = field(&mut meta, "node_count")?;
        let node_count = meta.uint(node_count)?;
        let record_size = field(&mut meta, "record_size")?;
        let record_size = meta.uint(record_size)?;
        let ip_version = field(&mut meta, "ip_version")?;
        let ip_version = meta.uint(ip_version)?;
        let database_type = match meta.map_get(0, b"database_type")? {
            Some(at) => String::from_utf8_lossy(meta.string(at)?)
                .chars()
                .filter(|c| c.is_ascii_graphic() || *c == ' ')
                .take(64)
                .collect(),
            None => String::from("?"),
        };
        if !matches!(record_size, 24 | 28 | 32) {
            return Err(corrupt(format!("record size {record_size}")));
        }
        if !matches!(ip_version, 4 | 6) {
            return Err(corrupt(format!("ip_version {ip_version}")));
        }
        let tree_len = node_count
            .checked_mul(record_size * 2 / 8)
            .filter(|&l| l as usize + DATA_SEPARATOR <= data_end)
            .ok_or_else(|| corrupt(format!("{node_count} nodes do not fit in the file")))?;
        if node_count == 0 || node_count >= u64::from(u32::MAX) - DATA_SEPARATOR as u64 {
            return Err(corrupt(format!("node count {node_count}")));
        }
        let mut db = Mmdb {
            bytes,
            node_count: node_count as u32,
            record_size: record_size as u32,
            ip_version,
            ipv4_start: 0,
            data_end,
            answers: Vec::new(),
            database_type,
        };
        if ip_version == 6 {
            let mut r = 0u32;
            for _ in 0..96 {
                if r >= db.node_count {
                    break;
                }
                r = db
                    .record(r, 0)
                    .ok_or_else(|| corrupt("IPv4 subtree outside the file"))?;
            }
            db.ipv4_start = r;
        }
        let data_start = tree_len as usize + DATA_SEPARATOR;
        let leaves = db.check()?;
        let mut data = Decoder {
            data: &db.bytes[data_start..data_end],
            budget: DECODE_BUDGET,
        };
        let mut answers = Vec::new();
        for r in leaves {
            let at = (r - db.node_count) as usize - DATA_SEPARATOR;
            if let Some(code) = data.country(at)? {
                answers.push((r, code));
            }
        }
        db.answers = answers;
        Ok(db)
    }

    fn bits(&self) -> u32 {
        if self.ip_version == 6 {
            128
        } else {
            32
        }
    }

    /// Record `side` (0 left, 1 right) of `node`.
    fn record(&self, node: u32, side: u32) -> Option<u32> {
        if node >= self.node_count {
            return None;
        }
        let node_len = self.record_size as usize / 4;
        let at = node as usize * node_len;
        let b = self.bytes.get(at..at + node_len)?;
        let be = |s: &[u8]| s.iter().fold(0u32, |v, &x| v << 8 | u32::from(x));
        Some(match (self.record_size, side) {
            (24, 0) => be(&b[0..3]),
            (24, _) => be(&b[3..6]),
            (28, 0) => u32::from(b[3] & 0xf0) << 20 | be(&b[0..3]),
            (28, _) => u32::from(b[3] & 0x0f) << 24 | be(&b[4..7]),
            (_, 0) => be(&b[0..4]),
            (_, _) => be(&b[4..8]),
        })
    }

    /// Walks every reachable node once: pointers must stay in the tree and
    /// data pointers in the data section. The distinct data records, sorted.
    fn check(&self) -> Result<Vec<u32>, GeoIpError> {
        let n = self.node_count as usize;
        let data_len = self.data_len();
        let mut seen = vec![0u64; n / 64 + 1];
        let mut stack: Vec<(u32, u32)> = vec![(0, 0)];
        seen[0] |= 1;
        let mut leaves = Vec::new();
        while let Some((node, depth)) = stack.pop() {
            for side in 0..2 {
                let r = self
                    .record(node, side)
                    .ok_or_else(|| corrupt(format!("node {node} is outside the file")))?;
                if r > self.node_count {
                    let off = (r - self.node_count) as usize;
                    if off < DATA_SEPARATOR || off - DATA_SEPARATOR >= data_len {
                        return Err(corrupt(format!(
                            "node {node} points to data outside the data section"
                        )));
                    }
                    leaves.push(r);
                } else if r < self.node_count {
                    if depth + 1 >= self.bits() {
                        return Err(corrupt(format!(
                            "the tree is deeper than {} bits at node {node}",
                            self.bits()
                        )));
                    }
                    let i = r as usize;
                    if seen[i / 64] & (1 << (i % 64)) == 0 {
                        seen[i / 64] |= 1 << (i % 64);
                        stack.push((r, depth + 1));
                    }
                }
            }
        }
        leaves.sort_unstable();
        leaves.dedup();
        Ok(leaves)
    }

    fn data_len(&self) -> usize {
        let tree_len = self.node_count as usize * (self.record_size as usize / 4);
        self.data_end.saturating_sub(tree_len + DATA_SEPARATOR)
    }

    pub(super) fn coverage(&self) -> Coverage {
        if self.ip_version == 6 {
            Coverage::Both
        } else {
            Coverage::V4
        }
    }

    pub(super) fn country(&self, ip: IpAddr) -> Option<CountryCode> {
        let (start, bits, len) = match ip {
            IpAddr::V4(a) => (self.ipv4_start, u128::from(u32::from(a)) << 96, 32),
            IpAddr::V6(a) if self.ip_version == 6 => (0, u128::from(a), 128),
            IpAddr::V6(_) => return None,
        };
        let mut r = start;
        for i in 0..len {
            if r >= self.node_count {
                break;
            }
            r = self.record(r, ((bits >> (127 - i)) & 1) as u32)?;
        }
        if r <= self.node_count {
            return None;
        }
        self.answers
            .binary_search_by_key(&r, |&(k, _)| k)
            .ok()
            .map(|i| self.answers[i].1)
    }

    pub(super) fn describe(&self) -> String {
        format!(
            "MaxMind DB {} (IPv{} tree, {}-bit records)",
            self.database_type, self.ip_version, self.record_size
        )
    }
}
