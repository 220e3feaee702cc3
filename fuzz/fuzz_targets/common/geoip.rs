//! The GeoIP targets: a database file loaded from the input, then looked
//! up as `acl ... country` entries do.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use pen::geoip::Database;

/// Loads `data` as a database file and looks up a few fixed addresses and
/// two taken from the file's first bytes.
pub fn load_and_look_up(data: &[u8]) {
    let Ok(db) = Database::from_bytes(data.to_vec()) else {
        return;
    };
    let _ = db.describe();
    let _ = db.coverage();
    let mut v6 = [0u8; 16];
    let n = data.len().min(16);
    v6[..n].copy_from_slice(&data[..n]);
    let ips = [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V4(Ipv4Addr::BROADCAST),
        IpAddr::V4(Ipv4Addr::new(v6[0], v6[1], v6[2], v6[3])),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::from(u128::MAX)),
        IpAddr::V6(Ipv6Addr::from(v6)),
        IpAddr::V6(Ipv4Addr::new(v6[3], v6[2], v6[1], v6[0]).to_ipv6_mapped()),
    ];
    for ip in ips {
        if let Some(cc) = db.country(ip) {
            assert_eq!(cc.to_string().len(), 2);
        }
    }
}
