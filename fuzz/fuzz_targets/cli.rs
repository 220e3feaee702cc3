//! The command line (`pen [options] LISTEN BACKEND ...`) and the server
//! specifications in it: arguments are the input split at NUL bytes.

#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use pen::addr::{self, Proto};
use pen::cli::{self, Invocation, Step};
use pen::state::servers::Backend;
use pen::state::Balancer;

fuzz_target!(|data: &[u8]| {
    let text = common::text(data);
    let args: Vec<String> = text.split('\0').map(String::from).collect();
    let Ok(Invocation::Run(cl)) = cli::parse(&args) else {
        return;
    };
    let proto = if cl.udp { Proto::Udp } else { Proto::Tcp };
    // As process.rs does: the steps first, then LISTEN and the servers.
    let mut b = Balancer::default();
    for step in &cl.steps {
        if let Step::Quiet(c) | Step::Command(c) = step {
            if let Ok(Some(cmd)) = pen::control::parse(c) {
                common::apply(&mut b, &cmd);
            }
        }
    }
    let listen_port = cl
        .listen
        .as_deref()
        .and_then(|l| addr::parse_listen(l, proto).ok())
        .map_or(0, |l| l.port());
    if let Some(c) = &cl.control {
        let _ = addr::parse_listen(c, Proto::Tcp);
    }
    for (i, s) in cl.backends.iter().enumerate() {
        if let Ok(spec) = addr::parse_backend(s, listen_port, proto) {
            assert!(spec.port != 0, "{s}: port 0");
            b.servers.set_from_spec(i, &spec);
        }
    }
    for s in [&cl.emergency, &cl.abuse].into_iter().flatten() {
        if let Ok(spec) = addr::parse_backend(s, listen_port, proto) {
            let _ = Backend::from_spec(&spec);
        }
    }
    let _ = pen::control::servers_reply(&b);
});
