//! The settings table: every on/off flag and every plain number that a
//! penctl command sets or queries. One row serves the parser (`NAME`,
//! `no NAME`, `NAME [N]`), the `mode` reply, `write` and so `-F` files.
//! Adding a setting is one row here plus the behaviour that reads it.

use crate::acl;
use crate::settings::Settings;
use crate::state::Balancer;

/// Whether and where `write` saves a setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Save {
    /// Not saved (pen does not, and it only matters at start-up).
    Never,
    /// In pen's own list; `write` places it by name (see `config::render`).
    PenList,
    /// After pen's list, always: settings pen forgot to save.
    After,
    /// After pen's list, only when it differs from the default, so that
    /// with new features off the file stays pen's.
    WhenChanged,
}

/// An on/off setting: `NAME` turns it on, `no NAME` off.
pub struct FlagRow {
    pub name: &'static str,
    pub get: fn(&Settings) -> bool,
    pub set: fn(&mut Settings, bool),
    /// Shown by `mode`, in table order.
    pub in_mode: bool,
    pub save: Save,
    /// A word shown after the name while the flag is on (`hash
    /// consistent`), in `mode` and `write`.
    pub qualifier: Option<fn(&Settings) -> Option<&'static str>>,
}

/// A number: `NAME` queries it, `NAME N` sets it; the reply is the value.
pub struct NumberRow {
    pub name: &'static str,
    pub min: i64,
    pub max: i64,
    /// Values below `min` are raised to it instead of refused.
    pub clamp_low: bool,
    pub get: fn(&Balancer) -> i64,
    pub set: fn(&mut Balancer, i64),
    /// The reply to both forms.
    pub reply: fn(i64) -> String,
    pub save: Save,
}

fn value_line(v: i64) -> String {
    format!("{v}\n")
}

fn no_reply(_: i64) -> String {
    String::new()
}

macro_rules! flag {
    ($name:literal, $field:ident, $in_mode:expr, $save:expr) => {
        FlagRow {
            name: $name,
            get: |s| s.$field,
            set: |s, on| s.$field = on,
            in_mode: $in_mode,
            save: $save,
            qualifier: None,
        }
    };
}

/// The flags. `mode` lists those marked `in_mode` in this order (pen's).
pub static FLAGS: &[FlagRow] = &[
    // `hash` and `no hash` also end `hash consistent`.
    FlagRow {
        set: |s, on| {
            s.hash = on;
            s.consistent_hash = false;
        },
        qualifier: Some(|s| s.consistent_hash.then_some("consistent")),
        ..flag!("hash", hash, true, Save::PenList)
    },
    flag!("roundrobin", roundrobin, true, Save::PenList),
    flag!("stubborn", stubborn, true, Save::PenList),
    flag!("weight", weight, true, Save::PenList),
    flag!("prio", prio, true, Save::PenList),
    flag!("http", http, false, Save::PenList),
    flag!("ascii", ascii, false, Save::PenList),
    flag!("tcp_nodelay", tcp_nodelay, false, Save::PenList),
    flag!("keepalive", keepalive, false, Save::After),
    flag!("transparent", transparent, false, Save::After),
    flag!("abort_on_error", abort_on_error, false, Save::Never),
    flag!("relay_yield", relay_yield, false, Save::WhenChanged),
];

macro_rules! number {
    ($name:literal, $min:expr, $max:expr, $get:expr, $set:expr, $save:expr) => {
        NumberRow {
            name: $name,
            min: $min,
            max: $max,
            clamp_low: false,
            get: $get,
            set: $set,
            reply: value_line,
            save: $save,
        }
    };
}

const INT_MAX: i64 = i32::MAX as i64;
const ACL_MAX: i64 = (acl::ACL_COUNT - 1) as i64;
/// The largest client or connection table `clients_max`/`conn_max` take.
const TABLE_MAX: i64 = 1 << 24;
/// The largest health check interval (a day) and probe count.
const HEALTH_MAX: i64 = 86_400;

/// The numbers, in the order `write` saves the `Save::After` ones.
pub static NUMBERS: &[NumberRow] = &[
    number!(
        "blacklist",
        0,
        INT_MAX,
        |b| b.settings.blacklist_time,
        |b, v| b.settings.blacklist_time = v,
        Save::PenList
    ),
    number!(
        "timeout",
        1,
        INT_MAX,
        |b| b.settings.connect_timeout,
        |b, v| b.settings.connect_timeout = v,
        Save::PenList
    ),
    number!(
        "tracking",
        0,
        INT_MAX,
        |b| b.settings.tracking_time,
        |b, v| b.settings.tracking_time = v,
        Save::PenList
    ),
    number!(
        "debug",
        0,
        INT_MAX,
        |b| i64::from(b.settings.debug),
        |b, v| b.settings.debug = v as u32,
        Save::PenList
    ),
    // Before start-up any size is taken (pen's tables do not exist yet
    // during option parsing); once running they only grow.
    number!(
        "clients_max",
        1,
        TABLE_MAX,
        |b| b.clients.capacity() as i64,
        |b, v| if b.running {
            b.clients.grow(v as usize)
        } else {
            b.clients.set_capacity(v as usize)
        },
        Save::Never
    ),
    number!(
        "conn_max",
        1,
        TABLE_MAX,
        |b| b.conns.capacity() as i64,
        |b, v| if b.running {
            b.conns.grow(v as usize)
        } else {
            b.conns.set_capacity(v as usize)
        },
        Save::Never
    ),
    number!(
        "client_acl",
        0,
        ACL_MAX,
        |b| b.settings.client_acl as i64,
        |b, v| b.settings.client_acl = v as usize,
        Save::PenList
    ),
    number!(
        "control_acl",
        0,
        ACL_MAX,
        |b| b.settings.control_acl as i64,
        |b, v| b.settings.control_acl = v as usize,
        Save::PenList
    ),
    // pen's reply has no newline (doc/pen-0.34.1.md, quirk Q31); -1 is off.
    // It works in DSR mode only (man/penctl.1).
    NumberRow {
        reply: |v| format!("tarpit_acl = {v}"),
        ..number!(
            "tarpit_acl",
            -1,
            ACL_MAX,
            |b| b.settings.tarpit_acl,
            |b, v| b.settings.tarpit_acl = v,
            Save::WhenChanged
        )
    },
    NumberRow {
        reply: |v| format!("Idle timeout: {v} seconds\n"),
        ..number!(
            "idle_timeout",
            0,
            INT_MAX,
            |b| b.settings.idle_timeout as i64,
            |b, v| b.settings.idle_timeout = v as u64,
            Save::After
        )
    },
    // pen replies nothing and takes any number, raising it to 1.
    NumberRow {
        clamp_low: true,
        reply: no_reply,
        ..number!(
            "pending_max",
            1,
            INT_MAX,
            |b| b.settings.pending_max as i64,
            |b, v| b.settings.pending_max = v as usize,
            Save::After
        )
    },
    number!(
        "drain_timeout",
        0,
        INT_MAX,
        |b| b.settings.drain_timeout as i64,
        |b, v| b.settings.drain_timeout = v as u64,
        Save::WhenChanged
    ),
    number!(
        "multi_accept",
        1,
        INT_MAX,
        |b| b.settings.multi_accept as i64,
        |b, v| b.settings.multi_accept = v as usize,
        Save::Never
    ),
    // Active health checks (man/penctl.1). Off, every server counts as up.
    number!(
        "health_check",
        0,
        HEALTH_MAX,
        |b| b.settings.health_check as i64,
        |b, v| {
            b.settings.health_check = v as u64;
            if v == 0 {
                for s in &mut b.servers.backends {
                    s.health = Default::default();
                }
            }
        },
        Save::WhenChanged
    ),
    number!(
        "health_check_fall",
        1,
        HEALTH_MAX,
        |b| i64::from(b.settings.health_check_fall),
        |b, v| b.settings.health_check_fall = v as u32,
        Save::WhenChanged
    ),
    number!(
        "health_check_rise",
        1,
        HEALTH_MAX,
        |b| i64::from(b.settings.health_check_rise),
        |b, v| b.settings.health_check_rise = v as u32,
        Save::WhenChanged
    ),
    number!(
        "listen_queue",
        50,
        INT_MAX,
        |b| i64::from(b.settings.listen_queue),
        |b, v| b.settings.listen_queue = v as i32,
        Save::Never
    ),
];

/// A flag, by its index in [`FLAGS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flag(usize);

impl Flag {
    pub fn by_name(name: &str) -> Option<Flag> {
        FLAGS.iter().position(|r| r.name == name).map(Flag)
    }

    pub fn row(self) -> &'static FlagRow {
        &FLAGS[self.0]
    }
}

/// A number, by its index in [`NUMBERS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Number(usize);

impl Number {
    pub fn by_name(name: &str) -> Option<Number> {
        NUMBERS.iter().position(|r| r.name == name).map(Number)
    }

    pub fn row(self) -> &'static NumberRow {
        &NUMBERS[self.0]
    }
}

/// The `mode` reply.
pub fn mode_line(s: &Settings) -> String {
    let words: Vec<String> = FLAGS
        .iter()
        .filter(|r| r.in_mode)
        .map(|r| flag_line(r, s).trim_end().to_string())
        .collect();
    format!("{}\n", words.join(" "))
}

/// `NAME` or `no NAME`, as `write` saves a flag.
pub fn flag_line(r: &FlagRow, s: &Settings) -> String {
    if (r.get)(s) {
        match r.qualifier.and_then(|q| q(s)) {
            Some(word) => format!("{} {word}\n", r.name),
            None => format!("{}\n", r.name),
        }
    } else {
        format!("no {}\n", r.name)
    }
}

/// `NAME VALUE`, as `write` saves a number.
pub fn number_line(r: &NumberRow, b: &Balancer) -> String {
    format!("{} {}\n", r.name, (r.get)(b))
}

/// The lines `write` puts after pen's list: the `Save::After` rows, and the
/// `Save::WhenChanged` rows that differ from their defaults.
pub fn after_pen_list(b: &Balancer) -> String {
    let defaults = Balancer::default();
    let mut out = String::new();
    for r in NUMBERS {
        let changed = (r.get)(b) != (r.get)(&defaults);
        if r.save == Save::After || (r.save == Save::WhenChanged && changed) {
            out.push_str(&number_line(r, b));
        }
    }
    for r in FLAGS {
        let changed = (r.get)(&b.settings) != (r.get)(&defaults.settings);
        if r.save == Save::After || (r.save == Save::WhenChanged && changed) {
            out.push_str(&flag_line(r, &b.settings));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_rows_consistent() {
        let mut names: Vec<&str> = FLAGS.iter().map(|r| r.name).collect();
        names.extend(NUMBERS.iter().map(|r| r.name));
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "a setting name is used twice");
        let defaults = Balancer::default();
        for r in NUMBERS {
            assert!(r.min <= r.max, "{}", r.name);
            let v = (r.get)(&defaults);
            assert!(v >= r.min && v <= r.max, "{} default {v}", r.name);
        }
    }

    #[test]
    fn set_then_get_round_trips() {
        let mut b = Balancer::default();
        for r in FLAGS {
            (r.set)(&mut b.settings, true);
            assert!((r.get)(&b.settings), "{}", r.name);
            (r.set)(&mut b.settings, false);
            assert!(!(r.get)(&b.settings), "{}", r.name);
        }
        for r in NUMBERS {
            let v = (r.min + 7).min(r.max);
            (r.set)(&mut b, v);
            assert_eq!((r.get)(&b), v, "{}", r.name);
        }
    }

    #[test]
    fn write_after_pen_list_keeps_pen_defaults() {
        assert_eq!(
            after_pen_list(&Balancer::default()),
            "idle_timeout 0\npending_max 100\nno keepalive\nno transparent\n"
        );
    }
}
