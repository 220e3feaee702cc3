//! The legacy GeoIP Country binary format (`GeoIP.dat`, `GeoIPv6.dat`).
//!
//! The file starts with a binary trie: node N is two 3-byte little-endian
//! records at byte 6·N, the left one taken for a 0 bit of the address (most
//! significant bit first), the right one for a 1 bit. A record below
//! `COUNTRY_BEGIN` is the next node; one at or above it is an answer,
//! `record - COUNTRY_BEGIN` indexing the fixed country table (0, `--`, is
//! "unknown"). The file ends with a structure trailer found by scanning back
//! from the end for `FF FF FF`: the next byte is the edition (values of 106
//! and above are older numbers, 105 too high). Country editions keep no
//! segment count there: the trie is walked for 32 bits (IPv4) or 128 bits
//! (the V6 edition).

use std::net::IpAddr;

use super::{corrupt, CountryCode, Coverage, GeoIpError};

const COUNTRY_BEGIN: u32 = 16_776_960;
const LARGE_COUNTRY_BEGIN: u32 = 16_515_072;
const RECORD_LENGTH: usize = 3;
const NODE_LENGTH: usize = 2 * RECORD_LENGTH;
/// The trailer's `FF FF FF` starts within this many tries back from the end.
const STRUCTURE_INFO_MAX_SIZE: usize = 20;

const COUNTRY_EDITION: u8 = 1;
const COUNTRY_EDITION_V6: u8 = 12;
const LARGE_COUNTRY_EDITION: u8 = 17;
const LARGE_COUNTRY_EDITION_V6: u8 = 18;

/// The country table of the format, two characters per id.
const COUNTRY_CODES: &[u8] = concat!(
    "--APEUADAEAFAGAIALAMCWAOAQARASATAUAWAZBABBBDBEBFBGBHBIBJBMBNBOBR",
    "BSBTBVBWBYBZCACCCDCFCGCHCICKCLCMCNCOCRCUCVCXCYCZDEDJDKDMDODZECEE",
    "EGEHERESETFIFJFKFMFOFRSXGAGBGDGEGFGHGIGLGMGNGPGQGRGSGTGUGWGYHKHM",
    "HNHRHTHUIDIEILINIOIQIRISITJMJOJPKEKGKHKIKMKNKPKRKWKYKZLALBLCLILK",
    "LRLSLTLULVLYMAMCMDMGMHMKMLMMMNMOMPMQMRMSMTMUMVMWMXMYMZNANCNENFNG",
    "NINLNONPNRNUNZOMPAPEPFPGPHPKPLPMPNPRPSPTPWPYQARERORURWSASBSCSDSE",
    "SGSHSISJSKSLSMSNSOSRSTSVSYSZTCTDTFTGTHTJTKTMTNTOTLTRTTTVTWTZUAUG",
    "UMUSUYUZVAVCVEVGVIVNVUWFWSYEYTRSZAZMMEZWA1A2O1AXGGIMJEBLMFBQSSO1",
)
.as_bytes();
const COUNTRY_COUNT: u32 = (COUNTRY_CODES.len() / 2) as u32;

pub(super) struct Legacy {
    bytes: Vec<u8>,
    /// Bytes of the trie: everything before the trailer.
    tree_len: usize,
    /// Records at or above this are answers.
    begin: u32,
    v6: bool,
    edition: u8,
}

/// The edition byte after the trailer's `FF FF FF`, and where that starts.
fn find_trailer(b: &[u8]) -> Option<(usize, u8)> {
    let mut at = b.len().checked_sub(3)?;
    for _ in 0..STRUCTURE_INFO_MAX_SIZE {
        if b[at..at + 3] == [0xff, 0xff, 0xff] {
            let edition = *b.get(at + 3)?;
            let edition = if edition >= 106 {
                edition - 105
            } else {
                edition
            };
            return Some((at, edition));
        }
        at = at.checked_sub(1)?;
    }
    None
}

impl Legacy {
    pub(super) fn new(bytes: Vec<u8>) -> Result<Legacy, GeoIpError> {
        let (tree_len, edition) = find_trailer(&bytes).ok_or(GeoIpError::UnknownFormat)?;
        let (begin, v6) = match edition {
            COUNTRY_EDITION => (COUNTRY_BEGIN, false),
            COUNTRY_EDITION_V6 => (COUNTRY_BEGIN, true),
            LARGE_COUNTRY_EDITION => (LARGE_COUNTRY_BEGIN, false),
            LARGE_COUNTRY_EDITION_V6 => (LARGE_COUNTRY_BEGIN, true),
            other => return Err(GeoIpError::NotCountryEdition(other)),
        };
        let db = Legacy {
            bytes,
            tree_len,
            begin,
            v6,
            edition,
        };
        db.check()?;
        Ok(db)
    }

    fn bits(&self) -> u32 {
        if self.v6 {
            128
        } else {
            32
        }
    }

    fn node_count(&self) -> usize {
        self.tree_len / NODE_LENGTH
    }

    /// Record `side` (0 left, 1 right) of `node`, if the node is in the trie.
    fn record(&self, node: usize, side: usize) -> Option<u32> {
        if node >= self.node_count() {
            return None;
        }
        let at = node * NODE_LENGTH + side * RECORD_LENGTH;
        let r = self.bytes.get(at..at + RECORD_LENGTH)?;
        Some(u32::from(r[0]) | u32::from(r[1]) << 8 | u32::from(r[2]) << 16)
    }

    /// Walks every node reachable within the address length once: each
    /// pointer must name a node inside the trie, each answer a country of
    /// the table, and no path may be longer than the address.
    fn check(&self) -> Result<(), GeoIpError> {
        let nodes = self.node_count();
        if nodes == 0 {
            return Err(corrupt("no search tree before the trailer"));
        }
        let mut seen = vec![0u64; nodes / 64 + 1];
        let mut stack: Vec<(usize, u32)> = vec![(0, 0)];
        seen[0] |= 1;
        while let Some((node, depth)) = stack.pop() {
            for side in 0..2 {
                let r = self
                    .record(node, side)
                    .ok_or_else(|| corrupt(format!("node {node} is outside the file")))?;
                if r >= self.begin {
                    if r - self.begin >= COUNTRY_COUNT {
                        return Err(corrupt(format!(
                            "node {node} names country id {}, beyond the table",
                            r - self.begin
                        )));
                    }
                    continue;
                }
                let next = r as usize;
                if next >= nodes {
                    return Err(corrupt(format!(
                        "node {node} points to node {next}, outside the file ({nodes} nodes)"
                    )));
                }
                if depth + 1 >= self.bits() {
                    return Err(corrupt(format!(
                        "the tree is deeper than {} bits at node {node}",
                        self.bits()
                    )));
                }
                if seen[next / 64] & (1 << (next % 64)) == 0 {
                    seen[next / 64] |= 1 << (next % 64);
                    stack.push((next, depth + 1));
                }
            }
        }
        Ok(())
    }

    pub(super) fn coverage(&self) -> Coverage {
        if self.v6 {
            Coverage::V6
        } else {
            Coverage::V4
        }
    }

    pub(super) fn country(&self, ip: IpAddr) -> Option<CountryCode> {
        let (bits, len) = match (ip, self.v6) {
            (IpAddr::V4(a), false) => (u128::from(u32::from(a)) << 96, 32),
            (IpAddr::V6(a), true) => (u128::from(a), 128),
            _ => return None,
        };
        let mut node = 0usize;
        for i in 0..len {
            let side = ((bits >> (127 - i)) & 1) as usize;
            let r = self.record(node, side)?;
            if r >= self.begin {
                return country_code(r - self.begin);
            }
            node = r as usize;
        }
        None
    }

    pub(super) fn describe(&self) -> String {
        format!(
            "legacy GeoIP Country{} Edition (edition {})",
            if self.v6 { " V6" } else { "" },
            self.edition
        )
    }
}

/// The code of a country id; 0 (`--`) and ids beyond the table are unknown.
fn country_code(id: u32) -> Option<CountryCode> {
    if id == 0 || id >= COUNTRY_COUNT {
        return None;
    }
    let at = 2 * id as usize;
    CountryCode::from_bytes(&COUNTRY_CODES[at..at + 2])
}

/// The id of `code` in the country table (for writing test databases).
#[cfg(test)]
pub(crate) fn country_id(code: &str) -> Option<u32> {
    (1..COUNTRY_COUNT).find(|&id| country_code(id).is_some_and(|c| c.to_string() == code))
}
