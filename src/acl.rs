//! Access control lists: ten numbered lists of permit/deny entries that the
//! control port (`control_acl`), the listener (`client_acl`) and individual
//! servers (`server N acl A`) check client addresses against.
//!
//! Parsing follows the `acl N ...` control command and the evaluation follows
//! pen's (doc/pen-0.34.1.md, "ACLs"), with one deliberate difference, see
//! [`AclEntry`]. Entries are written back by `write` in the format produced by
//! the [`fmt::Display`] impl of [`AclEntry`] (doc/pen-0.34.1.md,
//! "The write file"). Country entries look the client up in the GeoIP
//! databases passed to [`Acl::permits`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::geoip::{CountryCode, GeoIp};

/// Number of ACLs; valid ACL numbers are `0..ACL_COUNT`.
pub const ACL_COUNT: usize = 10;

/// What a matching entry decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclAction {
    /// Let the client in.
    Permit,
    /// Turn the client away.
    Deny,
}

impl AclAction {
    fn opposite(self) -> AclAction {
        match self {
            AclAction::Permit => AclAction::Deny,
            AclAction::Deny => AclAction::Permit,
        }
    }
}

impl fmt::Display for AclAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AclAction::Permit => "permit",
            AclAction::Deny => "deny",
        })
    }
}

/// One ACL entry.
///
/// Deliberate difference from pen 0.34.1 (doc/pen-0.34.1.md, quirk Q21): pen
/// compares `(client & mask) == address` with the address exactly as entered,
/// so `permit 127.0.0.1 255.0.0.0` can never match anything. We store the
/// address already masked (`address & mask`, likewise for IPv6 prefixes), so
/// that entry matches all of 127.0.0.0/8, which is what its author meant.
/// Entries whose address had no bits outside the mask behave exactly as in
/// pen. Build entries with [`AclEntry::v4`] / [`AclEntry::v6`] or
/// [`parse_entry`] to get the masking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclEntry {
    /// Matches IPv4 clients with `client & mask == addr` (`addr` is masked).
    V4 {
        /// Permit or deny.
        action: AclAction,
        /// Network address, already masked with `mask`.
        addr: Ipv4Addr,
        /// Net mask; need not be contiguous.
        mask: Ipv4Addr,
    },
    /// Matches IPv6 clients whose first `prefix_len` bits equal `addr`'s.
    V6 {
        /// Permit or deny.
        action: AclAction,
        /// Network address, bits beyond `prefix_len` cleared.
        addr: Ipv6Addr,
        /// Prefix length, 0..=128.
        prefix_len: u8,
    },
    /// Matches clients of either family whose country, from the GeoIP
    /// database of their family, is `code`. Never matches a client the
    /// database has no answer for, or when no database is loaded (as pen).
    Country {
        /// Permit or deny.
        action: AclAction,
        /// Upper-case country code.
        code: CountryCode,
    },
}

impl AclEntry {
    /// An IPv4 entry; `addr` is masked with `mask`.
    pub fn v4(action: AclAction, addr: Ipv4Addr, mask: Ipv4Addr) -> AclEntry {
        AclEntry::V4 {
            action,
            addr: Ipv4Addr::from(u32::from(addr) & u32::from(mask)),
            mask,
        }
    }

    /// An IPv6 entry; `prefix_len` is capped at 128 and the address bits
    /// beyond the prefix are cleared.
    pub fn v6(action: AclAction, addr: Ipv6Addr, prefix_len: u8) -> AclEntry {
        let prefix_len = prefix_len.min(128);
        AclEntry::V6 {
            action,
            addr: Ipv6Addr::from(u128::from(addr) & prefix_mask(prefix_len)),
            prefix_len,
        }
    }

    /// The entry's permit/deny.
    pub fn action(&self) -> AclAction {
        match *self {
            AclEntry::V4 { action, .. }
            | AclEntry::V6 { action, .. }
            | AclEntry::Country { action, .. } => action,
        }
    }

    /// Whether the entry covers `client`, whose country is looked up (once
    /// per check) by `country`. IPv4-mapped IPv6 clients must already have
    /// been converted to IPv4.
    fn matches(&self, client: IpAddr, country: &mut impl FnMut() -> Option<CountryCode>) -> bool {
        match (*self, client) {
            (AclEntry::Country { code, .. }, _) => country() == Some(code),
            (AclEntry::V4 { addr, mask, .. }, IpAddr::V4(c)) => {
                let mask = u32::from(mask);
                u32::from(c) & mask == u32::from(addr) & mask
            }
            (
                AclEntry::V6 {
                    addr, prefix_len, ..
                },
                IpAddr::V6(c),
            ) => {
                let mask = prefix_mask(prefix_len);
                u128::from(c) & mask == u128::from(addr) & mask
            }
            _ => false,
        }
    }
}

/// The `write` format of an entry, without the leading `acl N `:
/// `permit 10.0.0.0 255.0.0.0` or `deny ::/128` (doc/pen-0.34.1.md,
/// "The write file"), so that `acl N <entry>` parses back to the same entry.
impl fmt::Display for AclEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AclEntry::V4 { action, addr, mask } => write!(f, "{action} {addr} {mask}"),
            AclEntry::V6 {
                action,
                addr,
                prefix_len,
            } => write!(f, "{action} {addr}/{prefix_len}"),
            AclEntry::Country { action, code } => write!(f, "{action} country {code}"),
        }
    }
}

fn prefix_mask(prefix_len: u8) -> u128 {
    match prefix_len {
        0 => 0,
        n if n >= 128 => u128::MAX,
        n => u128::MAX << (128 - u32::from(n)),
    }
}

/// Why an `acl` command or an ACL number was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AclError {
    /// The ACL number is not one of 0..9.
    NumberOutOfRange(String),
    /// The first word is neither `permit` nor `deny` (empty: missing).
    ExpectedPermitDeny(String),
    /// Nothing after `permit`/`deny`.
    MissingAddress,
    /// The IPv4 address is not in a form `inet_aton` accepts.
    BogusAddress(String),
    /// The IPv4 mask is not in a form `inet_aton` accepts.
    BogusMask(String),
    /// The address contains `:` but is not an IPv6 address.
    NotIpv6(String),
    /// The `/LEN` part is not a number in 0..=128.
    BogusPrefixLength(String),
    /// `country` without a code.
    MissingCountry,
    /// The country code is not two letters or digits.
    BogusCountry(String),
}

impl fmt::Display for AclError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AclError::NumberOutOfRange(n) => {
                write!(f, "acl {n} outside 0..{}", ACL_COUNT - 1)
            }
            AclError::ExpectedPermitDeny(w) if w.is_empty() => {
                f.write_str("acl: expected permit|deny")
            }
            AclError::ExpectedPermitDeny(w) => {
                write!(f, "acl: expected permit|deny, not '{w}'")
            }
            AclError::MissingAddress => f.write_str("acl: missing address after permit|deny"),
            AclError::BogusAddress(a) => write!(f, "acl: bogus address '{a}'"),
            AclError::BogusMask(m) => write!(f, "acl: bogus mask '{m}'"),
            AclError::NotIpv6(a) => write!(f, "acl: {a} is not an ipv6 address"),
            AclError::BogusPrefixLength(l) => {
                write!(f, "acl: bogus prefix length '{l}' (expected 0..128)")
            }
            AclError::MissingCountry => f.write_str("acl: expected country"),
            AclError::BogusCountry(c) => {
                write!(
                    f,
                    "acl: bogus country code '{c}' (expected two letters, like SE)"
                )
            }
        }
    }
}

impl std::error::Error for AclError {}

/// One access control list: entries in insertion order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acl {
    entries: Vec<AclEntry>,
}

impl Acl {
    /// The entries in insertion (= evaluation) order.
    pub fn entries(&self) -> &[AclEntry] {
        &self.entries
    }

    /// Appends an entry (`acl N ...`).
    pub fn push(&mut self, e: AclEntry) {
        self.entries.push(e);
    }

    /// Removes all entries (`no acl N`); the list then permits everybody.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Whether the list has a `country` entry.
    pub fn has_country(&self) -> bool {
        self.entries
            .iter()
            .any(|e| matches!(e, AclEntry::Country { .. }))
    }

    /// Whether `client` is let in; `geoip` answers country entries. `None`
    /// is a Unix-socket client, which is always permitted. No allocation.
    ///
    /// Pen's rule (doc/pen-0.34.1.md, "ACLs"): the first entry of the client's
    /// family that covers it decides; if none does, the verdict is the
    /// opposite of the *last* entry's action, whatever that entry's family
    /// (doc/pen-0.34.1.md, quirk Q21: kept, scripts rely on it); an empty list
    /// permits. IPv4-mapped IPv6 clients (`::ffff:a.b.c.d`, from a dual-stack
    /// listener) are matched as the IPv4 address they are, so IPv4 entries
    /// cover them and IPv6 entries do not.
    pub fn permits(&self, client: Option<IpAddr>, geoip: &GeoIp) -> bool {
        let Some(client) = client else {
            return true;
        };
        let client = match client {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            },
            v4 => v4,
        };
        let mut looked_up = None;
        let mut country = || *looked_up.get_or_insert_with(|| geoip.country(client));
        let verdict = match self
            .entries
            .iter()
            .find(|e| e.matches(client, &mut country))
        {
            Some(e) => e.action(),
            None => match self.entries.last() {
                Some(last) => last.action().opposite(),
                None => AclAction::Permit,
            },
        };
        verdict == AclAction::Permit
    }
}

/// The ten ACLs, numbered 0..9.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclTable {
    acls: [Acl; ACL_COUNT],
}

impl AclTable {
    /// ACL `n`, or `None` if `n` is not 0..9.
    pub fn get(&self, n: usize) -> Option<&Acl> {
        self.acls.get(n)
    }

    /// ACL `n` for changing, or `None` if `n` is not 0..9.
    pub fn get_mut(&mut self, n: usize) -> Option<&mut Acl> {
        self.acls.get_mut(n)
    }

    /// The number of the first ACL with a `country` entry.
    pub fn first_with_country(&self) -> Option<usize> {
        self.acls.iter().position(Acl::has_country)
    }
}

/// Parses an ACL number, `0` to `9` (leading zeros allowed, as pen's `atoi`).
pub fn parse_acl_number(s: &str) -> Result<usize, AclError> {
    if s.is_empty() || s.len() > 8 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AclError::NumberOutOfRange(format!("'{s}'")));
    }
    match s.parse::<usize>() {
        Ok(n) if n < ACL_COUNT => Ok(n),
        _ => Err(AclError::NumberOutOfRange(s.to_string())),
    }
}

/// Parses the words after `acl N` (doc/pen-0.34.1.md, "ACLs"):
///
/// * `permit|deny ADDR [MASK]`: IPv4; both in any form `inet_aton` accepts
///   (`10.1` is 10.0.0.1, `0x7f.1` is 127.0.0.1, `010` is octal 8); MASK
///   defaults to 255.255.255.255 and need not be contiguous;
/// * `permit|deny IPV6[/LEN]`: used when ADDR contains `:`; LEN is 0..=128,
///   default 128;
/// * `permit|deny country CC`: CC is two letters or digits, upper-cased
///   (pen compared the two characters as typed, so `se` never matched).
///
/// Words after those are ignored, as pen does.
pub fn parse_entry(words: &[&str]) -> Result<AclEntry, AclError> {
    let action = match words.first().copied() {
        Some("permit") => AclAction::Permit,
        Some("deny") => AclAction::Deny,
        other => return Err(AclError::ExpectedPermitDeny(other.unwrap_or("").into())),
    };
    let Some(&address) = words.get(1) else {
        return Err(AclError::MissingAddress);
    };
    if address == "country" {
        let text = words.get(2).ok_or(AclError::MissingCountry)?;
        let code =
            CountryCode::parse(text).ok_or_else(|| AclError::BogusCountry(text.to_string()))?;
        return Ok(AclEntry::Country { action, code });
    }
    if address.contains(':') {
        let (addr_text, prefix_len) = match address.split_once('/') {
            Some((a, len)) => (a, parse_prefix_len(len)?),
            None => (address, 128),
        };
        let addr: Ipv6Addr = addr_text
            .parse()
            .map_err(|_| AclError::NotIpv6(addr_text.to_string()))?;
        return Ok(AclEntry::v6(action, addr, prefix_len));
    }
    let addr = inet_aton(address).ok_or_else(|| AclError::BogusAddress(address.to_string()))?;
    let mask = match words.get(2) {
        Some(&m) => inet_aton(m).ok_or_else(|| AclError::BogusMask(m.to_string()))?,
        None => Ipv4Addr::BROADCAST,
    };
    Ok(AclEntry::v4(action, addr, mask))
}

/// Pen takes `atoi` of LEN, so `::1/` became `::1/0` (everything!) and 200
/// was accepted; we insist on 0..=128.
fn parse_prefix_len(s: &str) -> Result<u8, AclError> {
    if s.is_empty() || s.len() > 3 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AclError::BogusPrefixLength(s.to_string()));
    }
    match s.parse::<u8>() {
        Ok(n) if n <= 128 => Ok(n),
        _ => Err(AclError::BogusPrefixLength(s.to_string())),
    }
}

/// IPv4 text as glibc's `inet_aton` reads it: one to four parts separated
/// by `.`, each decimal, octal (leading `0`) or hex (`0x`); the last part
/// fills the remaining bytes (`a`: 32 bits, `a.b`: 8+24, `a.b.c`: 8+8+16).
fn inet_aton(s: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() > 4 {
        return None;
    }
    let mut values = Vec::with_capacity(parts.len());
    for part in &parts {
        values.push(inet_aton_part(part)?);
    }
    let (last, leading) = values.split_last()?;
    let mut addr: u32 = 0;
    for (i, &v) in leading.iter().enumerate() {
        if v > 0xff {
            return None;
        }
        addr |= v << (24 - 8 * i);
    }
    let last_bits = 32 - 8 * leading.len() as u32;
    if last_bits < 32 && *last >= 1u32 << last_bits {
        return None;
    }
    Some(Ipv4Addr::from(addr | last))
}

/// One number of an `inet_aton` address; at least one digit, fits 32 bits.
fn inet_aton_part(part: &str) -> Option<u32> {
    let (digits, radix) =
        if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
            (hex, 16)
        } else if part.len() > 1 && part.starts_with('0') {
            (&part[1..], 8)
        } else {
            (part, 10)
        };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u32::from_str_radix(digits, radix).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geoip::{Database, Loaded};
    use std::sync::Arc;

    /// `permits` without GeoIP databases.
    trait Allows {
        fn allows(&self, client: Option<IpAddr>) -> bool;
    }

    impl Allows for Acl {
        fn allows(&self, client: Option<IpAddr>) -> bool {
            self.permits(client, &GeoIp::default())
        }
    }

    fn entry(line: &str) -> AclEntry {
        let words: Vec<&str> = line.split_whitespace().collect();
        parse_entry(&words).unwrap()
    }

    fn acl(lines: &[&str]) -> Acl {
        let mut a = Acl::default();
        for l in lines {
            a.push(entry(l));
        }
        a
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    fn parse_err(line: &str) -> AclError {
        let words: Vec<&str> = line.split_whitespace().collect();
        parse_entry(&words).unwrap_err()
    }

    #[test]
    fn empty_acl_permits_everybody() {
        let a = Acl::default();
        assert!(a.allows(ip("127.0.0.1")));
        assert!(a.allows(ip("::1")));
        assert!(a.allows(None));
    }

    #[test]
    fn spec_example_single_deny_permits_everyone_else() {
        let a = acl(&["deny 127.0.0.2"]);
        assert!(!a.allows(ip("127.0.0.2")));
        assert!(a.allows(ip("127.0.0.1")));
        assert!(a.allows(ip("127.0.0.3")));
        assert!(a.allows(ip("10.9.8.7")));
    }

    #[test]
    fn spec_example_no_match_takes_opposite_of_last_entry() {
        let a = acl(&["deny 127.0.0.2", "permit 127.0.0.3"]);
        assert!(!a.allows(ip("127.0.0.2")));
        assert!(a.allows(ip("127.0.0.3")));
        assert!(!a.allows(ip("127.0.0.1")));
    }

    #[test]
    fn first_matching_entry_wins() {
        let a = acl(&[
            "deny 10.1.2.3",
            "permit 10.0.0.0 255.0.0.0",
            "deny 0.0.0.0 0.0.0.0",
        ]);
        assert!(!a.allows(ip("10.1.2.3")));
        assert!(a.allows(ip("10.1.2.4")));
        assert!(!a.allows(ip("11.0.0.1")));
    }

    #[test]
    fn unix_clients_are_always_permitted() {
        let a = acl(&["deny 0.0.0.0 0.0.0.0", "deny ::/0"]);
        assert!(!a.allows(ip("1.2.3.4")));
        assert!(a.allows(None));
    }

    #[test]
    fn masks() {
        let a = acl(&["permit 192.168.0.0 255.255.0.0"]);
        assert!(a.allows(ip("192.168.200.1")));
        assert!(!a.allows(ip("192.169.0.1")));
        // Non-contiguous masks work bit by bit, as in pen.
        let a = acl(&["permit 10.0.5.0 255.0.255.0"]);
        assert!(a.allows(ip("10.77.5.9")));
        assert!(!a.allows(ip("10.77.6.9")));
        // 0.0.0.0 mask matches every IPv4 client.
        let a = acl(&["deny 0.0.0.0 0.0.0.0", "permit ::1"]);
        assert!(!a.allows(ip("203.0.113.9")));
    }

    #[test]
    fn address_is_masked_unlike_pen() {
        // doc/pen-0.34.1.md, quirk Q21: pen never matched this entry; we match
        // 127/8.
        let e = entry("permit 127.0.0.1 255.0.0.0");
        assert_eq!(e.to_string(), "permit 127.0.0.0 255.0.0.0");
        let a = acl(&["permit 127.0.0.1 255.0.0.0"]);
        assert!(a.allows(ip("127.3.2.1")));
        assert!(!a.allows(ip("128.0.0.1")));
        let e = entry("deny 2001:db8::1/32");
        assert_eq!(e.to_string(), "deny 2001:db8::/32");
    }

    #[test]
    fn ipv6_prefixes() {
        let a = acl(&["permit 2001:db8:1:2::/64"]);
        assert!(a.allows(ip("2001:db8:1:2::55")));
        assert!(a.allows(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")));
        assert!(!a.allows(ip("2001:db8:1:3::1")));

        let a = acl(&["deny ::1/128"]);
        assert!(!a.allows(ip("::1")));
        assert!(a.allows(ip("::2")));

        let a = acl(&["deny ::1"]);
        assert_eq!(a.entries()[0].to_string(), "deny ::1/128");
        assert!(!a.allows(ip("::1")));

        let a = acl(&["deny ::/0", "permit 127.0.0.1"]);
        assert!(!a.allows(ip("fe80::1")));
        assert!(!a.allows(ip("2001:db8::1")));
        assert!(a.allows(ip("127.0.0.1")));
        // IPv4 client: ::/0 is not its family, falls through to last entry.
        assert!(!a.allows(ip("127.0.0.2")));

        let a = acl(&["permit fe80::/10"]);
        assert!(a.allows(ip("febf::1")));
        assert!(!a.allows(ip("fec0::1")));
    }

    #[test]
    fn mixed_families() {
        // An IPv6 entry never matches an IPv4 client and vice versa, but
        // the last entry still decides the fallback whatever its family.
        let a = acl(&["permit 10.0.0.0 255.0.0.0", "deny ::1"]);
        assert!(a.allows(ip("10.1.1.1")));
        assert!(a.allows(ip("192.0.2.1"))); // opposite of last (deny)
        assert!(!a.allows(ip("::1")));
        assert!(a.allows(ip("::2")));

        let a = acl(&["deny ::1", "permit 10.0.0.0 255.0.0.0"]);
        assert!(!a.allows(ip("192.0.2.1")));
        assert!(!a.allows(ip("::2"))); // opposite of last (permit)
        assert!(!a.allows(ip("::1")));
    }

    #[test]
    fn ipv4_mapped_clients_match_as_ipv4() {
        let a = acl(&["permit 127.0.0.0 255.0.0.0", "deny ::/0"]);
        assert!(a.allows(ip("::ffff:127.0.0.9")));
        assert!(!a.allows(ip("::1")));
        let a = acl(&["deny 127.0.0.2"]);
        assert!(!a.allows(ip("::ffff:127.0.0.2")));
        assert!(a.allows(ip("::ffff:127.0.0.3")));
        // IPv4-compatible (deprecated ::a.b.c.d) addresses stay IPv6.
        let a = acl(&["deny 0.0.0.0 0.0.0.0"]);
        assert!(a.allows(ip("::127.0.0.1")));
    }

    #[test]
    fn clear_makes_acl_permit_again() {
        let mut a = acl(&["deny 0.0.0.0 0.0.0.0"]);
        assert!(!a.allows(ip("1.1.1.1")));
        a.clear();
        assert!(a.entries().is_empty());
        assert!(a.allows(ip("1.1.1.1")));
    }

    #[test]
    fn table_bounds() {
        let mut t = AclTable::default();
        assert!(t.get(0).is_some());
        assert!(t.get(9).is_some());
        assert!(t.get(10).is_none());
        assert!(t.get_mut(10).is_none());
        t.get_mut(3).unwrap().push(entry("deny 1.2.3.4"));
        assert_eq!(t.get(3).unwrap().entries().len(), 1);
        assert!(t.get(4).unwrap().entries().is_empty());
    }

    #[test]
    fn acl_numbers() {
        for n in 0..10 {
            assert_eq!(parse_acl_number(&n.to_string()), Ok(n));
        }
        assert_eq!(parse_acl_number("03"), Ok(3));
        assert_eq!(
            parse_acl_number("12").unwrap_err().to_string(),
            "acl 12 outside 0..9"
        );
        assert!(parse_acl_number("10").is_err());
        assert!(parse_acl_number("-1").is_err());
        assert!(parse_acl_number("").is_err());
        assert!(parse_acl_number("x").is_err());
        assert!(parse_acl_number(" 1").is_err());
        assert!(parse_acl_number("99999999999999999999999").is_err());
    }

    #[test]
    fn inet_aton_forms() {
        let cases = [
            ("10.1", Some("10.0.0.1")),
            ("127.1", Some("127.0.0.1")),
            ("1.2.3", Some("1.2.0.3")),
            ("1.2.65535", Some("1.2.255.255")),
            ("1.16777215", Some("1.255.255.255")),
            ("4294967295", Some("255.255.255.255")),
            ("0x7f.1", Some("127.0.0.1")),
            ("0X1F", Some("0.0.0.31")),
            ("0xffffffff", Some("255.255.255.255")),
            ("010", Some("0.0.0.8")),
            ("0377.0377.0377.0377", Some("255.255.255.255")),
            ("00000000012", Some("0.0.0.10")),
            ("0", Some("0.0.0.0")),
            ("0.0.0.0", Some("0.0.0.0")),
            ("192.168.1.2", Some("192.168.1.2")),
            ("0x", None),
            ("0x.1", None),
            ("08", None),
            ("0xg", None),
            ("00x1", None),
            ("1.2.3.4.5", None),
            ("4294967296", None),
            ("1.16777216", None),
            ("1.2.65536", None),
            ("1.2.3.256", None),
            ("256.1", None),
            ("0400.0.0.0", None),
            ("1.2.3.", None),
            (".1.2", None),
            ("1..2", None),
            ("", None),
            ("-1", None),
            ("+1", None),
            ("99999999999999999999", None),
            ("localhost", None),
        ];
        for (text, want) in cases {
            let got = inet_aton(text);
            let want = want.map(|w| w.parse::<Ipv4Addr>().unwrap());
            assert_eq!(got, want, "inet_aton({text:?})");
        }
    }

    #[test]
    fn shorthand_in_entries() {
        assert_eq!(
            entry("permit 0x7f.1 0xff.0").to_string(),
            "permit 127.0.0.0 255.0.0.0"
        );
        assert_eq!(
            entry("deny 127.1").to_string(),
            "deny 127.0.0.1 255.255.255.255"
        );
    }

    #[test]
    fn parse_errors() {
        assert_eq!(
            parse_entry(&[]),
            Err(AclError::ExpectedPermitDeny(String::new()))
        );
        assert_eq!(
            parse_err("PERMIT 1.2.3.4"),
            AclError::ExpectedPermitDeny("PERMIT".into())
        );
        assert_eq!(
            parse_err("allow 1.2.3.4").to_string(),
            "acl: expected permit|deny, not 'allow'"
        );
        assert_eq!(parse_err("permit"), AclError::MissingAddress);
        assert_eq!(
            parse_err("permit 300.0.0.0").to_string(),
            "acl: bogus address '300.0.0.0'"
        );
        assert_eq!(
            parse_err("permit 10.0.0.0 300.0.0.0").to_string(),
            "acl: bogus mask '300.0.0.0'"
        );
        assert_eq!(
            parse_err("deny host.example").to_string(),
            "acl: bogus address 'host.example'"
        );
        assert_eq!(
            parse_err("deny fe80::1%eth0").to_string(),
            "acl: fe80::1%eth0 is not an ipv6 address"
        );
        assert_eq!(parse_err("deny 1:2:3"), AclError::NotIpv6("1:2:3".into()));
        assert_eq!(
            parse_err("deny ::1/"),
            AclError::BogusPrefixLength(String::new())
        );
        assert_eq!(
            parse_err("deny ::1/129").to_string(),
            "acl: bogus prefix length '129' (expected 0..128)"
        );
        assert!(matches!(
            parse_err("deny ::1/-1"),
            AclError::BogusPrefixLength(_)
        ));
        assert!(matches!(
            parse_err("deny ::1/1a"),
            AclError::BogusPrefixLength(_)
        ));
        assert!(matches!(
            parse_err("deny ::1/64/2"),
            AclError::BogusPrefixLength(_)
        ));
        assert_eq!(parse_err("deny country"), AclError::MissingCountry);
        assert_eq!(
            parse_err("deny country").to_string(),
            "acl: expected country"
        );
        assert_eq!(
            parse_err("deny country SWE").to_string(),
            "acl: bogus country code 'SWE' (expected two letters, like SE)"
        );
        assert_eq!(
            parse_err("deny country S"),
            AclError::BogusCountry("S".into())
        );
        assert_eq!(
            parse_err("deny country --"),
            AclError::BogusCountry("--".into())
        );
    }

    #[test]
    fn trailing_words_are_ignored_as_in_pen() {
        assert_eq!(
            entry("permit 10.0.0.0 255.0.0.0 extra words"),
            entry("permit 10.0.0.0 255.0.0.0")
        );
        assert_eq!(entry("permit ::1/64 extra"), entry("permit ::1/64"));
    }

    #[test]
    fn prefix_lengths_0_64_128() {
        for (len, inside, outside) in [
            (0u8, "ffff::1", None),
            (64, "2001:db8::ffff", Some("2001:db8:0:1::")),
            (128, "2001:db8::1", Some("2001:db8::2")),
        ] {
            // Last entry permits, so a non-matching client is denied.
            let a = acl(&[&format!("permit 2001:db8::1/{len}"), "permit 0.0.0.0"]);
            assert!(a.allows(ip(inside)), "/{len} {inside}");
            if let Some(o) = outside {
                assert!(!a.allows(ip(o)), "/{len} {o}");
            }
        }
    }

    #[test]
    fn display_round_trips() {
        let lines = [
            "permit 10.0.0.0 255.0.0.0",
            "deny 127.0.0.2 255.255.255.255",
            "permit 10.0.5.0 255.0.255.0",
            "deny 0.0.0.0 0.0.0.0",
            "deny ::/128",
            "permit ::/0",
            "permit 2001:db8::/32",
            "deny fe80::1:2/128",
            "permit ::ffff:10.0.0.0/104",
            "deny country SE",
            "permit country A1",
        ];
        for line in lines {
            let e = entry(line);
            assert_eq!(e.to_string(), line);
            let again = format!("acl 4 {e}");
            let words: Vec<&str> = again.split_whitespace().collect();
            assert_eq!(parse_acl_number(words[1]), Ok(4));
            assert_eq!(parse_entry(&words[2..]), Ok(e));
        }
        // Shorthand and unmasked input normalise, then round-trip.
        for line in [
            "permit 10.1",
            "deny 2001:DB8:0:0::7/48",
            "permit 127.0.0.1 255.0.0.0",
        ] {
            let e = entry(line);
            assert_eq!(entry(&e.to_string()), e, "{line}");
        }
    }

    fn geoip(nets: &[(&str, &str)], v6: bool) -> GeoIp {
        let mut g = GeoIp::default();
        g.install(Loaded {
            path: "/test".into(),
            db: Arc::new(
                Database::from_bytes(crate::geoip::writer::mmdb(nets, if v6 { 6 } else { 4 }, 24))
                    .unwrap(),
            ),
            from_command: true,
        });
        g
    }

    #[test]
    fn country_entries() {
        let g = geoip(crate::geoip::writer::LOOPBACK_NETS, true);
        let a = acl(&["deny country se"]);
        assert_eq!(a.entries()[0].to_string(), "deny country SE");
        assert!(a.has_country());
        assert!(!a.permits(ip("127.0.0.2"), &g));
        assert!(!a.permits(ip("::ffff:127.0.0.2"), &g));
        assert!(a.permits(ip("127.0.0.3"), &g));
        // Unknown country: no match; the opposite of the last entry.
        assert!(a.permits(ip("192.0.2.1"), &g));
        let a = acl(&["permit country SE", "permit 10.0.0.0 255.0.0.0"]);
        assert!(a.permits(ip("127.0.0.2"), &g));
        assert!(!a.permits(ip("127.0.0.3"), &g));
        assert!(a.permits(ip("10.1.1.1"), &g));
        // Without a database a country entry never matches (as pen).
        assert!(!a.permits(ip("127.0.0.2"), &GeoIp::default()));
        let a = acl(&["deny country US", "deny 127.0.0.2"]);
        assert!(!a.permits(ip("127.0.0.3"), &g));
        assert!(!a.permits(ip("127.0.0.2"), &g));
        assert!(a.permits(ip("::1"), &g));
        // Country entries of any family order: IPv6 clients too.
        let g6 = geoip(&[("2001:db8::/32", "FR")], true);
        let a = acl(&["deny country FR"]);
        assert!(!a.permits(ip("2001:db8::7"), &g6));
        assert!(a.permits(ip("2001:db9::7"), &g6));
        let mut t = AclTable::default();
        assert_eq!(t.first_with_country(), None);
        t.get_mut(4).unwrap().push(entry("deny country CN"));
        assert_eq!(t.first_with_country(), Some(4));
    }
}
