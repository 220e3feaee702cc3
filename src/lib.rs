//! pen: a TCP and UDP load balancer, a drop-in replacement for pen 0.34.1.
//!
//! The behaviour reference is the specification in `../shared/spec/`; module
//! comments cite it as `spec <file> §<section>`.

pub mod acceptor;
pub mod acl;
pub mod addr;
pub mod balancer;
pub mod cli;
pub mod clients;
pub mod companions;
pub mod connections;
pub mod control;
pub mod daemon;
pub mod filters;
pub mod http;
pub mod listeners;
pub mod logging;
pub mod pair;
pub mod process;
pub mod relay;
pub mod request_log;
pub mod runtime;
pub mod selection;
pub mod servers;
pub mod settings;
pub mod stats;
#[allow(unsafe_code)]
pub mod sys;
#[cfg(feature = "tls")]
#[allow(unsafe_code)]
pub mod tls;
pub mod udp;
pub mod upstream;
pub mod workers;
