//! pen's SIGUSR1 statistics report (man/pen.1): `pen-stats`, `server`,
//! `client` and `connection` lines of `key=value` fields.

use std::time::Duration;

use super::process::Pen;
use super::wait::{poll_until, wait_for, DEADLINE};

impl Pen {
    /// Sends SIGUSR1 and returns the report it printed.
    pub fn stats(&self) -> String {
        let before = self.stdout().matches("pen-stats ").count();
        self.signal("USR1");
        wait_for(DEADLINE, "pen's statistics report", || {
            let out = self.stdout();
            // The report is written with one write(2) and ends with a newline.
            (out.matches("pen-stats ").count() > before && out.ends_with('\n'))
                .then(|| out[out.rfind("pen-stats ").unwrap_or(0)..].to_string())
        })
    }

    /// Asks for reports until one satisfies `ok` or `within` has passed;
    /// the last report.
    pub fn stats_until(&self, within: Duration, ok: impl Fn(&str) -> bool) -> String {
        let mut report = String::new();
        poll_until(within, || {
            report = self.stats();
            ok(&report)
        });
        report
    }
}

/// The value of `key=` on `line`.
pub fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key} in {line}"))
}

/// The first line of `report` starting with `prefix`.
pub fn report_line<'a>(report: &'a str, prefix: &str) -> &'a str {
    report
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line '{prefix}' in\n{report}"))
}

/// `key=` of the first line of `report` starting with `prefix`.
pub fn report_field(report: &str, prefix: &str, key: &str) -> String {
    field(report_line(report, prefix), key).to_string()
}

/// [`report_field`] as a number.
pub fn report_num(report: &str, prefix: &str, key: &str) -> u64 {
    let value = report_field(report, prefix, key);
    value
        .parse()
        .unwrap_or_else(|_| panic!("{key}={value} is not a number"))
}
