//! One penctl command line, as the control port, `-o` and `-F` take it:
//! parsed, and applied to a balancer when it only changes settings.

#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use pen::control::{self, Command, CommandError};
use pen::state::Balancer;

fuzz_target!(|data: &[u8]| {
    let text = common::text(data);
    let mut b = Balancer::default();
    match control::parse(&text) {
        Ok(Some(cmd)) => {
            common::apply(&mut b, &cmd);
            // A second time, as a commit replays a transaction.
            common::apply(&mut b, &cmd);
            if matches!(cmd, Command::Server(..)) {
                let _ = control::servers_reply(&b);
            }
        }
        Ok(None) => {}
        Err(e) => {
            let reply = e.reply();
            // One line, or pen's exact text for the verbatim replies.
            if !matches!(e, CommandError::Verbatim(_)) {
                assert!(reply.ends_with('\n'), "{reply:?}");
                assert_eq!(reply.matches('\n').count(), 1, "{reply:?}");
            }
        }
    }
});
