//! pen: a TCP and UDP load balancer, a drop-in replacement for pen 0.34.1.
//!
//! What this pen does is described in its manual pages (`man/pen.1`,
//! `man/penctl.1`, `man/penlog.1`, `man/penlogd.1`, `man/mergelogs.1`).
//! The behaviour of pen 0.34.1 that the code copies or deliberately departs
//! from, including its numbered quirks, is in `doc/pen-0.34.1.md`. Comments
//! cite them as `man/pen.1, SECTION`, `doc/pen-0.34.1.md, "Heading"` or
//! `doc/pen-0.34.1.md, quirk Qn`. README.md's Architecture section maps the
//! modules.

pub mod acceptor;
pub mod acl;
pub mod addr;
pub mod cli;
pub mod companions;
pub mod control;
pub mod daemon;
pub mod dsr;
pub mod filters;
pub mod geoip;
pub mod health;
pub mod http;
pub mod idle_pool;
pub mod idlers;
pub mod listeners;
pub mod logging;
pub mod metrics;
pub mod multicall;
pub mod pair;
pub mod process;
pub mod proxy_protocol;
pub mod relay;
pub mod request_log;
pub mod runtime;
pub mod selection;
pub mod settings;
pub mod state;
pub mod stats;
#[allow(unsafe_code)]
pub mod sys;
#[cfg(feature = "tls")]
#[allow(unsafe_code)]
pub mod tls;
pub mod udp;
pub mod upgrade;
pub mod upstream;
pub mod workers;

/// The optional features this build has, as `pen --version` and the
/// `pen_build_info` metric name them.
pub const FEATURES: &[&str] = &[
    #[cfg(feature = "tls")]
    "tls",
];
