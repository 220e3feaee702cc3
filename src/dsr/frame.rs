//! Ethernet frames as direct server return reads and writes them: the
//! fields of ARP and IPv4/TCP/UDP frames it looks at, the ARP frames and
//! the tarpit's SYN+ACK it builds, and Internet checksums. Pure: bytes in,
//! bytes out.

use std::net::Ipv4Addr;

pub type Mac = [u8; 6];

pub const BROADCAST: Mac = [0xff; 6];
/// Ethernet header: destination, source, EtherType.
pub const ETH_HEADER: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
/// An ARP frame for IPv4 over Ethernet: header and 28-byte payload.
pub const ARP_FRAME_LEN: usize = ETH_HEADER + 28;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;
/// The tarpit's initial sequence number: pen's (doc/pen-0.34.1.md, "DSR
/// and tarpit").
pub const TARPIT_SEQUENCE: u32 = 42;

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn ipv4_at(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

fn mac_at(b: &[u8], at: usize) -> Mac {
    let mut m = [0; 6];
    m.copy_from_slice(&b[at..at + 6]);
    m
}

pub fn destination_mac(frame: &[u8]) -> Option<Mac> {
    (frame.len() >= ETH_HEADER).then(|| mac_at(frame, 0))
}

/// An ARP packet for IPv4 over Ethernet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arp {
    /// 1 request, 2 reply.
    pub operation: u16,
    pub sender_mac: Mac,
    pub sender_ip: Ipv4Addr,
    pub target_ip: Ipv4Addr,
}

pub const ARP_REQUEST: u16 = 1;
pub const ARP_REPLY: u16 = 2;

/// The layer-3/4 facts of an IPv4 frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4 {
    pub protocol: u8,
    pub source: Ipv4Addr,
    pub destination: Ipv4Addr,
    /// The TCP/UDP ports; `None` in a fragment after the first, which has
    /// no layer-4 header, or when the header is cut short.
    pub ports: Option<(u16, u16)>,
    /// TCP flags (0 for other protocols).
    pub tcp_flags: u8,
}

impl Ipv4 {
    /// A connection's first segment: SYN without ACK or RST.
    pub fn is_tcp_syn(&self) -> bool {
        self.protocol == PROTO_TCP && self.tcp_flags & (TCP_SYN | TCP_ACK | TCP_RST) == TCP_SYN
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    Arp(Arp),
    Ipv4(Ipv4),
    Other,
}

/// Where the IPv4 header starts and how long it is, when the frame holds a
/// complete one.
fn ipv4_header(frame: &[u8]) -> Option<usize> {
    if frame.len() < ETH_HEADER + 20 || be16(frame, 12) != ETHERTYPE_IPV4 {
        return None;
    }
    let ip = &frame[ETH_HEADER..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    (ip[0] >> 4 == 4 && ihl >= 20 && ip.len() >= ihl).then_some(ihl)
}

pub fn parse(frame: &[u8]) -> Parsed {
    if frame.len() < ETH_HEADER {
        return Parsed::Other;
    }
    match be16(frame, 12) {
        ETHERTYPE_ARP => parse_arp(frame).map_or(Parsed::Other, Parsed::Arp),
        ETHERTYPE_IPV4 => parse_ipv4(frame).map_or(Parsed::Other, Parsed::Ipv4),
        _ => Parsed::Other,
    }
}

fn parse_arp(frame: &[u8]) -> Option<Arp> {
    let a = frame.get(ETH_HEADER..ARP_FRAME_LEN)?;
    // Ethernet hardware, IPv4 protocol, address lengths 6 and 4.
    if be16(a, 0) != 1 || be16(a, 2) != ETHERTYPE_IPV4 || a[4] != 6 || a[5] != 4 {
        return None;
    }
    Some(Arp {
        operation: be16(a, 6),
        sender_mac: mac_at(a, 8),
        sender_ip: ipv4_at(a, 14),
        target_ip: ipv4_at(a, 24),
    })
}

fn parse_ipv4(frame: &[u8]) -> Option<Ipv4> {
    let ihl = ipv4_header(frame)?;
    let ip = &frame[ETH_HEADER..];
    let protocol = ip[9];
    let first_fragment = be16(ip, 6) & 0x1fff == 0;
    let l4 = &ip[ihl..];
    let ports = (first_fragment && l4.len() >= 4).then(|| (be16(l4, 0), be16(l4, 2)));
    let tcp_flags = if protocol == PROTO_TCP && first_fragment && l4.len() >= 14 {
        l4[13]
    } else {
        0
    };
    Some(Ipv4 {
        protocol,
        source: ipv4_at(ip, 12),
        destination: ipv4_at(ip, 16),
        ports,
        tcp_flags,
    })
}

/// Sets the Ethernet addresses of `frame`, the only change direct server
/// return makes to a forwarded frame.
pub fn readdress(frame: &mut [u8], destination: &Mac, source: &Mac) {
    frame[0..6].copy_from_slice(destination);
    frame[6..12].copy_from_slice(source);
}

/// The one's complement sum of `data` as 16-bit big-endian words (an odd
/// last byte padded with zero), added to `sum`, not yet folded.
fn add_words(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for w in &mut chunks {
        sum = sum.wrapping_add(u32::from(u16::from_be_bytes([w[0], w[1]])));
    }
    if let [last] = chunks.remainder() {
        sum = sum.wrapping_add(u32::from(*last) << 8);
    }
    sum
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The Internet checksum (RFC 1071) of `data`: the complement of the one's
/// complement sum. Over data that holds its own correct checksum it is 0.
pub fn checksum(data: &[u8]) -> u16 {
    !fold(add_words(0, data))
}

/// The TCP/UDP checksum of `segment` (its checksum field included as it
/// stands) with the IPv4 pseudo-header.
fn l4_checksum(source: Ipv4Addr, destination: Ipv4Addr, protocol: u8, segment: &[u8]) -> u16 {
    let mut sum = add_words(0, &source.octets());
    sum = add_words(sum, &destination.octets());
    sum = sum.wrapping_add(u32::from(protocol));
    sum = sum.wrapping_add(segment.len() as u32);
    !fold(add_words(sum, segment))
}

/// Computes the TCP or UDP checksum of an IPv4 frame in place: for frames
/// whose sender left it to the network card (a local stack over veth), so
/// the backend gets what a card would have put on the wire. Whether the
/// frame was a complete, unfragmented TCP or UDP packet it could fill in.
pub fn fill_l4_checksum(frame: &mut [u8]) -> bool {
    let Some(ihl) = ipv4_header(frame) else {
        return false;
    };
    let ip = &frame[ETH_HEADER..];
    let total = usize::from(be16(ip, 2));
    // Fragments are checksummed as a whole; only the reassembled packet has it.
    let fragmented = be16(ip, 6) & 0x3fff != 0;
    if fragmented || total < ihl || total > ip.len() {
        return false;
    }
    let (protocol, source, destination) = (ip[9], ipv4_at(ip, 12), ipv4_at(ip, 16));
    let field = match protocol {
        PROTO_TCP if total - ihl >= 20 => 16,
        PROTO_UDP if total - ihl >= 8 => 6,
        _ => return false,
    };
    let at = ETH_HEADER + ihl;
    let segment = &mut frame[at..ETH_HEADER + total];
    segment[field..field + 2].copy_from_slice(&[0, 0]);
    let mut sum = l4_checksum(source, destination, protocol, segment);
    // In UDP, 0 means "no checksum"; a computed 0 is sent as all ones.
    if protocol == PROTO_UDP && sum == 0 {
        sum = 0xffff;
    }
    segment[field..field + 2].copy_from_slice(&sum.to_be_bytes());
    true
}

fn arp_frame(
    destination: &Mac,
    operation: u16,
    sender: (&Mac, Ipv4Addr),
    target: (&Mac, Ipv4Addr),
) -> [u8; ARP_FRAME_LEN] {
    let mut f = [0u8; ARP_FRAME_LEN];
    f[0..6].copy_from_slice(destination);
    f[6..12].copy_from_slice(sender.0);
    f[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    let a = &mut f[ETH_HEADER..];
    a[0..2].copy_from_slice(&1u16.to_be_bytes());
    a[2..4].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    a[4] = 6;
    a[5] = 4;
    a[6..8].copy_from_slice(&operation.to_be_bytes());
    a[8..14].copy_from_slice(sender.0);
    a[14..18].copy_from_slice(&sender.1.octets());
    a[18..24].copy_from_slice(target.0);
    a[24..28].copy_from_slice(&target.1.octets());
    f
}

/// The broadcast question "who has `target`?", asked from `our_ip`
/// (0.0.0.0 without `dsr_ip`: an ARP probe, which hosts answer too).
pub fn arp_request(our_mac: &Mac, our_ip: Ipv4Addr, target: Ipv4Addr) -> [u8; ARP_FRAME_LEN] {
    arp_frame(
        &BROADCAST,
        ARP_REQUEST,
        (our_mac, our_ip),
        (&[0; 6], target),
    )
}

/// The answer to `request`: its target address is at `our_mac`.
pub fn arp_reply(request: &Arp, our_mac: &Mac) -> [u8; ARP_FRAME_LEN] {
    arp_frame(
        &request.sender_mac,
        ARP_REPLY,
        (our_mac, request.target_ip),
        (&request.sender_mac, request.sender_ip),
    )
}

/// The tarpit's answer to the TCP SYN in `syn`: a SYN+ACK from the address
/// the SYN was sent to, sequence number 42, acknowledging the SYN, with a
/// zero window (the client may send nothing) and valid checksums. `None`
/// unless `syn` holds a complete IPv4 TCP header.
pub fn tarpit_syn_ack(syn: &[u8], our_mac: &Mac) -> Option<[u8; ETH_HEADER + 40]> {
    let ihl = ipv4_header(syn)?;
    let ip = &syn[ETH_HEADER..];
    let tcp = ip.get(ihl..ihl + 20)?;
    if ip[9] != PROTO_TCP {
        return None;
    }
    let (client, address) = (ipv4_at(ip, 12), ipv4_at(ip, 16));
    let mut f = [0u8; ETH_HEADER + 40];
    f[0..6].copy_from_slice(&syn[6..12]);
    f[6..12].copy_from_slice(our_mac);
    f[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    {
        let h = &mut f[ETH_HEADER..ETH_HEADER + 20];
        h[0] = 0x45;
        h[2..4].copy_from_slice(&40u16.to_be_bytes());
        h[6] = 0x40; // don't fragment
        h[8] = 64; // TTL
        h[9] = PROTO_TCP;
        h[12..16].copy_from_slice(&address.octets());
        h[16..20].copy_from_slice(&client.octets());
        let sum = checksum(h);
        h[10..12].copy_from_slice(&sum.to_be_bytes());
    }
    let t = &mut f[ETH_HEADER + 20..];
    t[0..2].copy_from_slice(&tcp[2..4]);
    t[2..4].copy_from_slice(&tcp[0..2]);
    t[4..8].copy_from_slice(&TARPIT_SEQUENCE.to_be_bytes());
    t[8..12].copy_from_slice(&be32(tcp, 4).wrapping_add(1).to_be_bytes());
    t[12] = 5 << 4; // header of 5 words, no options
    t[13] = TCP_SYN | TCP_ACK;
    let sum = l4_checksum(address, client, PROTO_TCP, t);
    t[16..18].copy_from_slice(&sum.to_be_bytes());
    Some(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    const CLIENT_MAC: Mac = [0x02, 0, 0, 0, 0, 0x10];
    const OUR_MAC: Mac = [0x02, 0, 0, 0, 0, 0x02];

    /// A client's SYN to 192.0.2.200:80 from 192.0.2.10:40000, sequence
    /// 0x01020304, with an MSS option (header of 6 words).
    fn syn() -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&OUR_MAC);
        f.extend_from_slice(&CLIENT_MAC);
        f.extend_from_slice(&hex("0800 4500 002c 1234 4000 4006 0000 c000020a c00002c8
             9c40 0050 01020304 00000000 6002 faf0 0000 0000 020405b4"));
        let sum = checksum(&f[14..34]);
        f[24..26].copy_from_slice(&sum.to_be_bytes());
        assert!(fill_l4_checksum(&mut f));
        f
    }

    #[test]
    fn the_ipv4_header_checksum_matches_the_textbook_example() {
        // The header of RFC 1071-style worked examples: checksum 0xb861.
        let h = hex("4500 0073 0000 4000 4011 0000 c0a8 0001 c0a8 00c7");
        assert_eq!(checksum(&h), 0xb861);
        let mut whole = h.clone();
        whole[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert_eq!(checksum(&whole), 0);
    }

    #[test]
    fn the_tarpit_syn_ack_is_byte_for_byte_a_known_good_packet() {
        let reply = tarpit_syn_ack(&syn(), &OUR_MAC).unwrap();
        // Checked independently (Python's own sum over the pseudo-header
        // and segment; Linux accepts it, tests/dsr.rs): IPv4 checksum
        // 0xb5fd, TCP checksum 0x8a3e.
        let expected = hex("020000000010 020000000002 0800
             4500 0028 0000 4000 4006 b5fd c00002c8 c000020a
             0050 9c40 0000002a 01020305 5012 0000 8a3e 0000");
        assert_eq!(reply.to_vec(), expected);
        // Both checksums verify.
        assert_eq!(checksum(&reply[14..34]), 0);
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&reply[26..34]);
        pseudo.extend_from_slice(&[0, PROTO_TCP, 0, 20]);
        pseudo.extend_from_slice(&reply[34..]);
        assert_eq!(checksum(&pseudo), 0);
    }

    #[test]
    fn a_syn_parses_with_its_ports_and_flags() {
        let Parsed::Ipv4(p) = parse(&syn()) else {
            panic!("not IPv4")
        };
        assert_eq!(p.source, Ipv4Addr::new(192, 0, 2, 10));
        assert_eq!(p.destination, Ipv4Addr::new(192, 0, 2, 200));
        assert_eq!(p.ports, Some((40000, 80)));
        assert!(p.is_tcp_syn());
        let mut ack = syn();
        ack[14 + 20 + 13] = TCP_ACK;
        let Parsed::Ipv4(p) = parse(&ack) else {
            panic!("not IPv4")
        };
        assert!(!p.is_tcp_syn());
    }

    #[test]
    fn a_later_fragment_has_no_ports() {
        let mut f = syn();
        f[14 + 6..14 + 8].copy_from_slice(&0x0010u16.to_be_bytes());
        let Parsed::Ipv4(p) = parse(&f) else {
            panic!("not IPv4")
        };
        assert_eq!(p.ports, None);
        assert!(!fill_l4_checksum(&mut f));
    }

    #[test]
    fn a_partial_checksum_is_completed_to_the_same_value() {
        let good = syn();
        let mut partial = good.clone();
        // What a sender leaves for the card: the pseudo-header sum only.
        partial[14 + 20 + 16..14 + 20 + 18].copy_from_slice(&[0x12, 0x34]);
        assert!(fill_l4_checksum(&mut partial));
        assert_eq!(partial, good);
    }

    #[test]
    fn udp_checksums_verify_and_zero_becomes_all_ones() {
        let mut f = Vec::new();
        f.extend_from_slice(&OUR_MAC);
        f.extend_from_slice(&CLIENT_MAC);
        f.extend_from_slice(&hex("0800 4500 001d 0000 4000 4011 0000 c000020a c0000264
             9c40 0035 0009 0000 71"));
        assert!(fill_l4_checksum(&mut f));
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&f[26..34]);
        pseudo.extend_from_slice(&[0, PROTO_UDP, 0, 9]);
        pseudo.extend_from_slice(&f[34..]);
        assert_eq!(checksum(&pseudo), 0);
        assert_ne!(&f[40..42], &[0, 0]);
    }

    #[test]
    fn arp_replies_answer_the_asker_and_requests_broadcast() {
        let asker = Arp {
            operation: ARP_REQUEST,
            sender_mac: CLIENT_MAC,
            sender_ip: Ipv4Addr::new(192, 0, 2, 10),
            target_ip: Ipv4Addr::new(192, 0, 2, 100),
        };
        let reply = arp_reply(&asker, &OUR_MAC);
        assert_eq!(destination_mac(&reply), Some(CLIENT_MAC));
        assert_eq!(
            parse(&reply),
            Parsed::Arp(Arp {
                operation: ARP_REPLY,
                sender_mac: OUR_MAC,
                sender_ip: Ipv4Addr::new(192, 0, 2, 100),
                target_ip: Ipv4Addr::new(192, 0, 2, 10),
            })
        );
        let request = arp_request(
            &OUR_MAC,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::new(192, 0, 2, 21),
        );
        assert_eq!(destination_mac(&request), Some(BROADCAST));
        let Parsed::Arp(a) = parse(&request) else {
            panic!("not ARP")
        };
        assert_eq!(a.operation, ARP_REQUEST);
        assert_eq!(a.target_ip, Ipv4Addr::new(192, 0, 2, 21));
        assert_eq!(a.sender_ip, Ipv4Addr::UNSPECIFIED);
    }

    #[test]
    fn no_frame_of_any_length_or_content_panics() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for len in 0..120 {
            for round in 0..200 {
                let mut f: Vec<u8> = (0..len)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        seed as u8
                    })
                    .collect();
                // Mostly frames that claim to be IPv4 or ARP.
                if len >= 15 && round % 4 != 0 {
                    let t: u16 = if round % 2 == 0 { 0x0800 } else { 0x0806 };
                    f[12..14].copy_from_slice(&t.to_be_bytes());
                    f[14] = 0x40 | (f[14] & 0x0f);
                }
                let _ = parse(&f);
                let _ = tarpit_syn_ack(&f, &OUR_MAC);
                let _ = fill_l4_checksum(&mut f);
                let _ = destination_mac(&f);
            }
        }
    }

    #[test]
    fn short_and_foreign_frames_are_other() {
        assert_eq!(parse(&[0; 10]), Parsed::Other);
        let mut v6 = syn();
        v6[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
        assert_eq!(parse(&v6), Parsed::Other);
        assert_eq!(parse(&syn()[..30]), Parsed::Other);
    }
}
