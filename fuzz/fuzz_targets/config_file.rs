//! A whole `-F` file: parsed as pen reads it at start-up, applied, and
//! then written back with `write`'s renderer. What `write` produces must
//! read back as a valid file that gives the same `write` output again.

#![no_main]

mod common;

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pen::control::config;
use pen::runtime::ProcessInfo;
use pen::state::Balancer;

/// `write`'s commands, without its comments: the time it was written, and
/// the command line pen was started with, whose `-c`/`-x` (table sizes)
/// are options, not commands, as in pen's file.
fn written(b: &Balancer) -> String {
    let text = config::render(b, &ProcessInfo::default(), Path::new("/etc/pen.cfg"));
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Applies the commands of a file to a new balancer, as a transaction's
/// commit does with those that only change state.
fn load(text: &[u8]) -> Option<Balancer> {
    let commands = config::parse_text("fuzz.cfg", text).ok()?;
    let mut b = Balancer::default();
    for (_, cmd) in &commands {
        common::apply(&mut b, cmd);
    }
    Some(b)
}

fuzz_target!(|data: &[u8]| {
    let Some(b) = load(data) else {
        return;
    };
    let first = written(&b);
    let Some(again) = load(first.as_bytes()) else {
        panic!("write output does not read back:\n{first}");
    };
    assert_eq!(
        first,
        written(&again),
        "write output changes on reading it back"
    );
});
