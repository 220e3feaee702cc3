//! penctl-format commands: one grammar and one executor for `-o`/`-O`, the
//! `-F` file (and `include`), SIGHUP reloads and the control port
//! (`man/penctl.1`).
//!
//! * `command`: the grammar, [`Command`] and [`parse`];
//! * `settings`: the table of flags and numbers that the grammar, `mode`
//!   and `write` share;
//! * `transaction`: runs commands against a copy of the state and swaps it
//!   in only when every command succeeded, side effects included;
//! * `queries`: the replies that report state (`servers`, `recent`, ...);
//! * `config`: `-F` files and `write`;
//! * `port`: the control-port protocol;
//! * `scrape`: the metrics endpoint's HTTP (`metrics_listen`).

mod command;
pub mod config;
mod port;
mod queries;
mod scrape;
pub(crate) mod settings;
mod transaction;

pub use command::{first_line, parse, words, Command, CommandError, ServerSetting};
pub use port::{serve as serve_control_port, ControlClients, ControlSeat, MAX_CONTROL_CLIENTS};
pub use queries::servers_reply;
pub use scrape::serve as serve_metrics;
pub use settings::{Flag, Number};
pub use transaction::apply_setting;

use crate::runtime::Shared;
use transaction::Transaction;

/// Where a command came from; decides what `listen`, `log` and `exit` do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// `-o`/`-O` or the `-F` file before the acceptor runs.
    Startup,
    /// The `-F` file re-read on SIGHUP.
    Reload,
    /// The control port.
    ControlPort,
}

/// A command of a batch that failed, with its label (a file line number,
/// or the index of a `-o` command).
#[derive(Debug)]
pub struct Failed {
    pub line: usize,
    pub error: CommandError,
}

/// Runs `commands` as one transaction: every command is checked and
/// prepared (files opened, listeners bound) against a copy of the state,
/// then all of them take effect together. On the first failure nothing
/// changes and the failing command's line is returned. The replies are
/// concatenated (pen prints them at start-up).
pub fn run_batch(
    shared: &Shared,
    commands: &[(usize, Command)],
    origin: Origin,
) -> Result<String, Failed> {
    let mut t = Transaction::begin(shared, origin);
    let mut replies = String::new();
    for (line, cmd) in commands {
        match t.run(cmd, 0) {
            Ok(r) => replies.push_str(&r),
            Err(error) => return Err(Failed { line: *line, error }),
        }
    }
    if let Err(error) = t.finish() {
        // Name the line that made the batch need a database.
        let line = commands
            .iter()
            .find(|(_, c)| matches!(c, Command::Acl(_, crate::acl::AclEntry::Country { .. })))
            .or(commands.last())
            .map_or(0, |(l, _)| *l);
        return Err(Failed { line, error });
    }
    t.commit();
    Ok(replies)
}

/// Runs one command; its reply, or its error reply.
pub fn execute(shared: &Shared, cmd: &Command, origin: Origin) -> Result<String, CommandError> {
    if let Some(reply) = queries::answer(shared, cmd) {
        return Ok(reply);
    }
    let mut t = Transaction::begin(shared, origin);
    let reply = t.run(cmd, 0)?;
    t.finish()?;
    t.commit();
    Ok(reply)
}

/// Parses and runs one line; the reply, or the error reply.
pub fn run_line(shared: &Shared, line: &str, origin: Origin) -> String {
    match parse(line) {
        Ok(None) => String::new(),
        Ok(Some(cmd)) => match execute(shared, &cmd, origin) {
            Ok(r) => r,
            Err(e) => e.reply(),
        },
        Err(e) => e.reply(),
    }
}

#[cfg(test)]
mod tests;
