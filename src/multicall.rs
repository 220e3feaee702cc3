//! One executable for all five programs, in the busybox convention: it runs
//! the program named by the file name it was called as (`penctl` is a link
//! to `pen`), and also accepts `pen penctl ARGS...`. Any other name runs
//! pen, so a renamed binary keeps working as the balancer.

use std::ffi::{OsStr, OsString};
use std::path::Path;

use crate::{companions, process};

/// The programs this executable holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Program {
    /// The balancer.
    Pen,
    /// The control client.
    Penctl,
    /// The web server log shipper.
    Penlog,
    /// The log collecting daemon.
    Penlogd,
    /// The offline log merger.
    Mergelogs,
}

impl Program {
    /// The companions, which `pen NAME ...` may also select.
    const COMPANIONS: [Program; 4] = [
        Program::Penctl,
        Program::Penlog,
        Program::Penlogd,
        Program::Mergelogs,
    ];

    /// The name it is installed under.
    pub fn name(self) -> &'static str {
        match self {
            Program::Pen => "pen",
            Program::Penctl => "penctl",
            Program::Penlog => "penlog",
            Program::Penlogd => "penlogd",
            Program::Mergelogs => "mergelogs",
        }
    }

    /// The companion called `name`, if any.
    fn companion(name: &OsStr) -> Option<Program> {
        Program::COMPANIONS
            .into_iter()
            .find(|p| OsStr::new(p.name()) == name)
    }
}

/// Which program a command line (`argv[0]` included) asks for, and its
/// arguments without the program name: a companion by `argv[0]`'s file
/// name, else a companion named by the first argument, else pen.
pub fn choose(mut argv: Vec<OsString>) -> (Program, Vec<OsString>) {
    if argv.is_empty() {
        return (Program::Pen, argv);
    }
    let argv0 = argv.remove(0);
    let called_as = Path::new(&argv0).file_name().unwrap_or_default();
    if let Some(program) = Program::companion(called_as) {
        return (program, argv);
    }
    if let Some(program) = argv.first().and_then(|a| Program::companion(a)) {
        argv.remove(0);
        return (program, argv);
    }
    (Program::Pen, argv)
}

/// Runs `program` with `args` (without the program name); the exit status.
pub fn run(program: Program, args: Vec<OsString>) -> i32 {
    match program {
        Program::Pen => {
            let mut text = Vec::with_capacity(args.len());
            for a in args {
                match a.into_string() {
                    Ok(s) => text.push(s),
                    Err(bad) => {
                        eprintln!("pen: argument {bad:?} is not valid UTF-8");
                        return 1;
                    }
                }
            }
            process::main(&text)
        }
        Program::Penctl => companions::penctl::run(args),
        Program::Penlog => companions::penlog::run(args),
        Program::Penlogd => companions::penlogd::run(args),
        Program::Mergelogs => companions::mergelogs::run(args),
    }
}

/// The `main` of every binary: chooses by the command line and exits.
pub fn main() -> ! {
    let (program, args) = choose(std::env::args_os().collect());
    std::process::exit(run(program, args))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chosen(argv: &[&str]) -> (Program, Vec<String>) {
        let (program, args) = choose(argv.iter().map(OsString::from).collect());
        let args = args.into_iter().map(|a| a.into_string().unwrap()).collect();
        (program, args)
    }

    #[test]
    fn the_file_name_called_as_chooses() {
        assert_eq!(
            chosen(&["pen", "80", "a"]),
            (Program::Pen, vec!["80".into(), "a".into()])
        );
        assert_eq!(
            chosen(&["/usr/bin/penctl", "1.2.3.4:10080", "mode"]),
            (Program::Penctl, vec!["1.2.3.4:10080".into(), "mode".into()])
        );
        assert_eq!(chosen(&["./penlog", "-h"]).0, Program::Penlog);
        assert_eq!(chosen(&["penlogd"]), (Program::Penlogd, vec![]));
        assert_eq!(chosen(&["sbin/mergelogs", "-p"]).0, Program::Mergelogs);
    }

    #[test]
    fn pen_accepts_a_companion_as_first_argument() {
        assert_eq!(
            chosen(&["/usr/bin/pen", "penctl", "x:1", "mode"]),
            (Program::Penctl, vec!["x:1".into(), "mode".into()])
        );
        assert_eq!(chosen(&["pen", "mergelogs"]), (Program::Mergelogs, vec![]));
        // Only as the first argument, and only a companion's exact name.
        assert_eq!(chosen(&["pen", "-f", "penctl"]).0, Program::Pen);
        assert_eq!(chosen(&["pen", "pen", "80"]).0, Program::Pen);
        assert_eq!(chosen(&["pen", "penctl:80", "a"]).0, Program::Pen);
        // A companion's own name wins over its first argument.
        assert_eq!(
            chosen(&["penctl", "penlog", "mode"]),
            (Program::Penctl, vec!["penlog".into(), "mode".into()])
        );
    }

    #[test]
    fn any_other_name_runs_pen() {
        assert_eq!(chosen(&["pen-0.34", "80", "a"]).0, Program::Pen);
        assert_eq!(chosen(&["/"]).0, Program::Pen);
        assert_eq!(chosen(&[]), (Program::Pen, vec![]));
    }
}
