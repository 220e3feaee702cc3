//! The companion programs penlog, penlogd and mergelogs (doc/pen-0.34.1.md,
//! "Companions"), and what they share: command-line conventions, diagnostics
//! and UTC calendar arithmetic.
//!
//! Command-line conventions (deliberately unlike pen 0.34.1, which prints
//! its usage and exits 0 on any mistake, doc/pen-0.34.1.md, quirk Q24): a usage
//! error prints one line naming the problem plus a hint on stderr and exits 2;
//! `--help` prints the usage on stdout and exits 0; `--version` prints
//! `PROG (pen) VERSION` and exits 0. Run-time failures exit 1.

use std::ffi::OsString;
use std::io::{self, Write};

use crate::sys::syslog;

pub mod mergelogs;
pub mod penctl;
pub mod penlog;
pub mod penlogd;

/// Exit status: success.
pub const EXIT_OK: i32 = 0;
/// Exit status: run-time failure (cannot open a file, bind a port...).
pub const EXIT_FAILURE: i32 = 1;
/// Exit status: the command line is wrong.
pub const EXIT_USAGE: i32 = 2;

/// Result of the option handling common to all companions.
enum Parsed {
    /// Go ahead with these options.
    Run(getopts::Matches),
    /// Nothing more to do; exit with this status (help, version, error).
    Exit(i32),
}

/// Adds `--help` and `--version` to `opts`, parses `args` (without the
/// program name) and handles those two and any parse error.
fn parse_args(prog: &str, usage: &str, opts: &mut getopts::Options, args: Vec<OsString>) -> Parsed {
    opts.optflag("", "help", "print this help and exit");
    opts.optflag("", "version", "print the version and exit");
    let matches = match opts.parse(args) {
        Ok(m) => m,
        Err(e) => return Parsed::Exit(usage_error(prog, &describe_getopts_failure(&e))),
    };
    if matches.opt_present("help") {
        print!("{usage}");
        let _ = io::stdout().flush();
        return Parsed::Exit(EXIT_OK);
    }
    if matches.opt_present("version") {
        println!("{prog} (pen) {}", env!("CARGO_PKG_VERSION"));
        return Parsed::Exit(EXIT_OK);
    }
    Parsed::Run(matches)
}

/// getopts' messages, reworded in the style of the rest of the program.
fn describe_getopts_failure(fail: &getopts::Fail) -> String {
    use getopts::Fail;
    fn dashed(name: &str) -> String {
        if name.chars().count() == 1 {
            format!("-{name}")
        } else {
            format!("--{name}")
        }
    }
    match fail {
        Fail::ArgumentMissing(o) => format!("option {} needs an argument", dashed(o)),
        Fail::UnrecognizedOption(o) => format!("unknown option {}", dashed(o)),
        Fail::OptionMissing(o) => format!("option {} is required", dashed(o)),
        Fail::OptionDuplicated(o) => format!("option {} given more than once", dashed(o)),
        Fail::UnexpectedArgument(o) => format!("option {} takes no argument", dashed(o)),
    }
}

/// Prints a usage error and returns [`EXIT_USAGE`].
fn usage_error(prog: &str, msg: &str) -> i32 {
    eprintln!("{prog}: {msg}");
    eprintln!("Try '{prog} --help' for more information.");
    EXIT_USAGE
}

/// Parses a decimal number for option `-opt`, or explains what is wrong.
fn parse_number<T: std::str::FromStr>(opt: char, value: &str, what: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("-{opt}: '{value}' is not {what}"))
}

/// Where diagnostics go. Errors go to stderr and, once the program runs
/// without a terminal, also to syslog; debug lines go to stderr (with a UTC
/// timestamp when `timestamps` is set) or to syslog.
#[derive(Debug, Clone)]
pub struct Diagnostics {
    prog: &'static str,
    debug_level: u32,
    to_syslog: bool,
    timestamps: bool,
}

impl Diagnostics {
    /// Diagnostics on stderr for `prog`, showing debug lines up to `debug_level`.
    pub fn new(prog: &'static str, debug_level: u32) -> Self {
        Diagnostics {
            prog,
            debug_level,
            to_syslog: false,
            timestamps: false,
        }
    }

    /// A debug message shown from level `level` on.
    pub fn debug(&self, level: u32, msg: &str) {
        if self.debug_level < level {
            return;
        }
        if self.to_syslog {
            syslog::send(syslog::Priority::Debug, msg);
        } else if self.timestamps {
            eprintln!("{}: {msg}", format_iso_utc(crate::sys::now_unix()));
        } else {
            eprintln!("{}: {msg}", self.prog);
        }
    }

    /// A problem the program survives.
    pub fn warning(&self, msg: &str) {
        if self.to_syslog {
            syslog::send(syslog::Priority::Warning, msg);
        } else {
            eprintln!("{}: {msg}", self.prog);
        }
    }

    /// A fatal error (the caller exits 1).
    pub fn error(&self, msg: &str) {
        if self.to_syslog {
            syslog::send(syslog::Priority::Err, msg);
        }
        eprintln!("{}: {msg}", self.prog);
    }
}

/// English month abbreviations as used by the Common Log Format.
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Days since 1970-01-01 of a proleptic Gregorian date (month 1..=12).
/// (H. Hinnant's days_from_civil.)
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400; // 0..=399
    let m = i64::from(month);
    let day_of_year = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date (year, month 1..=12, day 1..=31) of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097; // 0..=146096
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Number of days in `month` of `year`.
fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

/// UTC calendar fields of an epoch time: (date, hour, minute, second).
fn utc_fields(epoch: i64) -> ((i64, u32, u32), u32, u32, u32) {
    let days = epoch.div_euclid(86_400);
    let secs = epoch.rem_euclid(86_400) as u32;
    (
        civil_from_days(days),
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
    )
}

/// `DD/Mon/YYYY:HH:MM:SS +0000` (Common Log Format, UTC).
fn format_clf_utc(epoch: i64) -> String {
    let ((year, month, day), h, m, s) = utc_fields(epoch);
    let mon = MONTHS[(month - 1) as usize];
    format!("{day:02}/{mon}/{year:04}:{h:02}:{m:02}:{s:02} +0000")
}

/// `YYYY-MM-DD HH:MM:SS` in UTC (the debug line prefix).
fn format_iso_utc(epoch: i64) -> String {
    let ((year, month, day), h, m, s) = utc_fields(epoch);
    format!("{year:04}-{month:02}-{day:02} {h:02}:{m:02}:{s:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        // The spec's example: 1795683600 is 26/Nov/2026:09:00:00 UTC.
        assert_eq!(
            days_from_civil(2026, 11, 26) * 86_400 + 9 * 3600,
            1_795_683_600
        );
        for days in [-800_000, -1, 0, 1, 59, 60, 10_957, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
    }

    #[test]
    fn every_day_of_four_centuries_round_trips() {
        // Contiguity: consecutive day numbers give consecutive dates.
        let start = days_from_civil(1900, 1, 1);
        let end = days_from_civil(2300, 1, 1);
        let mut expected = (1900, 1, 1);
        for days in start..end {
            assert_eq!(civil_from_days(days), expected);
            let (y, m, d) = expected;
            expected = if d < days_in_month(y, m) {
                (y, m, d + 1)
            } else if m < 12 {
                (y, m + 1, 1)
            } else {
                (y + 1, 1, 1)
            };
        }
    }

    #[test]
    fn timestamps_are_rendered_in_utc() {
        assert_eq!(format_clf_utc(1_795_683_600), "26/Nov/2026:09:00:00 +0000");
        assert_eq!(format_clf_utc(0), "01/Jan/1970:00:00:00 +0000");
        assert_eq!(format_clf_utc(951_782_399), "28/Feb/2000:23:59:59 +0000");
        assert_eq!(format_clf_utc(951_782_400), "29/Feb/2000:00:00:00 +0000");
        assert_eq!(format_iso_utc(1_795_683_601), "2026-11-26 09:00:01");
    }

    #[test]
    fn getopts_failures_are_reworded() {
        let mut opts = getopts::Options::new();
        opts.optopt("p", "", "", "");
        let e = opts.parse(["-x"]).unwrap_err();
        assert_eq!(describe_getopts_failure(&e), "unknown option -x");
        let e = opts.parse(["-p"]).unwrap_err();
        assert_eq!(describe_getopts_failure(&e), "option -p needs an argument");
        let e = opts.parse(["--bogus"]).unwrap_err();
        assert_eq!(describe_getopts_failure(&e), "unknown option --bogus");
    }
}
