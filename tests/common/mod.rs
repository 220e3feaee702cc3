//! The helpers every integration test shares: the programs under test as
//! child processes (`process`), waits for observable state with a deadline
//! (`wait`), loopback ports and clients (`net`), std-only backends
//! (`backend`), pen's statistics report (`stats`), scratch directories
//! (`fs`), a throwaway PKI for TLS (`pki`) and a test network of
//! namespaced hosts (`netns`).
//!
//! Names that must not resolve are written with an empty label
//! (`no..such.host`): glibc rejects those itself, so no test sends a DNS
//! query off the machine.
#![allow(dead_code)]

pub mod backend;
pub mod fs;
pub mod geoip_writer;
pub mod net;
pub mod netns;
pub mod pki;
pub mod process;
pub mod stats;
pub mod wait;

// Each test file uses a different part of these.
#[allow(unused_imports)]
pub use backend::{specs, Backend, Behaviour, Spec, UdpBackend, Visit, LATE_REPLY_DELAY};
#[allow(unused_imports)]
pub use fs::TempDir;
#[allow(unused_imports)]
pub use net::{
    ask, ask_and_hold, connect_from, ctl, free_port, free_udp_port, ipv6_loopback, is_listening,
    is_udp_bound, local, refused_port, unreachable_udp_spec, wait_for_port, wait_for_udp_port,
    wait_peer_read,
};
#[allow(unused_imports)]
pub use process::{
    process_alive, rss_kib, run, run_command, run_pen, send_signal, wait_gone, ChildGuard,
    DaemonGuard, Pen, Program, BINDIR_VAR, MERGELOGS, PEN, PENCTL, PENLOG, PENLOGD, PROGRAMS,
};
#[allow(unused_imports)]
pub use stats::{field, report_field, report_line, report_num};
#[allow(unused_imports)]
pub use wait::{
    poll_until, unix_now, wait_file_contains, wait_for, wait_unix_time, wait_until, DEADLINE,
};

/// Deterministic pseudo-random bytes (xorshift), no crates needed.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}
