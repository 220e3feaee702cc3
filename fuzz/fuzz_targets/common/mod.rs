//! What several targets share.

#![allow(dead_code)]

use pen::control::{apply_setting, Command};
use pen::state::Balancer;

/// The largest `clients_max`/`conn_max` a target applies. Larger ones are
/// valid (up to 2^24) but would only measure the allocator.
const TABLE_LIMIT: i64 = 4096;

/// Applies `cmd` to `b` as a transaction's commit would, if it only
/// changes the balancer state; returns its reply.
pub fn apply(b: &mut Balancer, cmd: &Command) -> Option<String> {
    if let Command::Number(n, Some(v)) = cmd {
        if matches!(n.row().name, "clients_max" | "conn_max") && *v > TABLE_LIMIT {
            return None;
        }
    }
    apply_setting(b, cmd, 1_000_000)
}

/// Splits `data` into the text of lines for a line-based parser (invalid
/// UTF-8 replaced, as the control port and `-F` do).
pub fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}
