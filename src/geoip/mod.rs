//! Country lookups for `acl N permit|deny country CC` (`man/penctl.1`):
//! pen's own readers of the two database formats in use, with no library.
//!
//! * `legacy`: the GeoIP Country binary format (`GeoIP.dat`, `GeoIPv6.dat`)
//!   that Debian's `geoip-database` installs and Debian's pen reads;
//! * `mmdb`: the MaxMind DB format (`.mmdb`: GeoLite2-Country, DB-IP
//!   Country Lite).
//!
//! A file is read once into memory and checked as a whole when it is
//! loaded: every tree pointer that can be reached must stay inside the
//! file and every answer must decode, or the file is refused. A lookup is
//! then a walk of at most 128 nodes with no allocation and no I/O, cheap
//! enough to run under the balancer's lock. Leaf module: std only.

mod legacy;
mod mmdb;

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where Debian's pen finds its databases when no `geoip_db` says otherwise.
pub const DEFAULT_V4: &str = "/usr/share/GeoIP/GeoIP.dat";
/// The IPv6 counterpart of [`DEFAULT_V4`].
pub const DEFAULT_V6: &str = "/usr/share/GeoIP/GeoIPv6.dat";

/// Files larger than this are refused without being read.
const MAX_FILE_SIZE: u64 = 512 * 1024 * 1024;

/// A two-character country code as the databases spell them (`SE`, and
/// the pseudo-codes `EU`, `AP`, `A1`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CountryCode([u8; 2]);

impl CountryCode {
    /// Two ASCII letters or digits, upper-cased; anything else is `None`.
    pub fn parse(s: &str) -> Option<CountryCode> {
        CountryCode::from_bytes(s.as_bytes())
    }

    fn from_bytes(b: &[u8]) -> Option<CountryCode> {
        match *b {
            [a, c] if a.is_ascii_alphanumeric() && c.is_ascii_alphanumeric() => {
                Some(CountryCode([
                    a.to_ascii_uppercase(),
                    c.to_ascii_uppercase(),
                ]))
            }
            _ => None,
        }
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", char::from(self.0[0]), char::from(self.0[1]))
    }
}

/// Why a database file was refused.
#[derive(Debug)]
pub enum GeoIpError {
    Io(std::io::Error),
    TooLarge(u64),
    /// Neither a MaxMind DB nor a legacy GeoIP file with its trailer.
    UnknownFormat,
    /// A legacy file of an edition other than Country.
    NotCountryEdition(u8),
    /// The structure is broken: what and where.
    Corrupt(String),
}

impl fmt::Display for GeoIpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GeoIpError::Io(e) => write!(f, "{e}"),
            GeoIpError::TooLarge(n) => write!(f, "file too large ({n} bytes)"),
            GeoIpError::UnknownFormat => f.write_str(
                "not a GeoIP database (neither MaxMind DB nor legacy GeoIP Country format)",
            ),
            GeoIpError::NotCountryEdition(t) => write!(
                f,
                "legacy GeoIP database of edition {t}, not a Country edition"
            ),
            GeoIpError::Corrupt(why) => write!(f, "corrupt database: {why}"),
        }
    }
}

impl std::error::Error for GeoIpError {}

pub(crate) fn corrupt(why: impl Into<String>) -> GeoIpError {
    GeoIpError::Corrupt(why.into())
}

/// Which client addresses a database answers for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coverage {
    V4,
    V6,
    Both,
}

/// One loaded database.
pub struct Database {
    reader: Reader,
}

enum Reader {
    Legacy(legacy::Legacy),
    Mmdb(mmdb::Mmdb),
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Database({}, {:?})", self.describe(), self.coverage())
    }
}

impl Database {
    /// Reads and checks a database file.
    pub fn open(path: &Path) -> Result<Database, GeoIpError> {
        let size = std::fs::metadata(path).map_err(GeoIpError::Io)?.len();
        if size > MAX_FILE_SIZE {
            return Err(GeoIpError::TooLarge(size));
        }
        Database::from_bytes(std::fs::read(path).map_err(GeoIpError::Io)?)
    }

    /// Recognises the format from the content and checks the whole file.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Database, GeoIpError> {
        let reader = if mmdb::is_mmdb(&bytes) {
            Reader::Mmdb(mmdb::Mmdb::new(bytes)?)
        } else {
            Reader::Legacy(legacy::Legacy::new(bytes)?)
        };
        Ok(Database { reader })
    }

    /// The addresses this database answers for.
    pub fn coverage(&self) -> Coverage {
        match &self.reader {
            Reader::Legacy(l) => l.coverage(),
            Reader::Mmdb(m) => m.coverage(),
        }
    }

    /// The country of `ip`, or `None` when the database has no answer.
    /// IPv4-mapped IPv6 addresses are looked up as IPv4. No allocation.
    pub fn country(&self, ip: IpAddr) -> Option<CountryCode> {
        let ip = canonical(ip);
        match &self.reader {
            Reader::Legacy(l) => l.country(ip),
            Reader::Mmdb(m) => m.country(ip),
        }
    }

    /// A short description for messages.
    pub fn describe(&self) -> String {
        match &self.reader {
            Reader::Legacy(l) => l.describe(),
            Reader::Mmdb(m) => m.describe(),
        }
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

/// A database in use and the file it came from.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// Absolute, so that a reload finds it after the daemon's `chdir("/")`.
    pub path: PathBuf,
    pub db: Arc<Database>,
    /// Loaded by `geoip_db` (saved by `write`), not from the default paths.
    pub from_command: bool,
}

/// The databases in effect: one for IPv4 clients, one for IPv6 clients
/// (the same one for an `.mmdb` that covers both).
#[derive(Clone, Debug, Default)]
pub struct GeoIp {
    v4: Option<Loaded>,
    v6: Option<Loaded>,
    /// `no geoip_db`: Debian's default files are not loaded either.
    pub no_defaults: bool,
}

impl GeoIp {
    /// Puts `loaded` in use for the families it covers.
    pub fn install(&mut self, loaded: Loaded) {
        let coverage = loaded.db.coverage();
        if coverage != Coverage::V6 {
            self.v4 = Some(loaded.clone());
        }
        if coverage != Coverage::V4 {
            self.v6 = Some(loaded);
        }
    }

    /// `no geoip_db`: unloads every database and keeps the defaults away.
    pub fn clear(&mut self) {
        *self = GeoIp {
            no_defaults: true,
            ..GeoIp::default()
        };
    }

    /// Whether no database is loaded at all.
    pub fn is_empty(&self) -> bool {
        self.v4.is_none() && self.v6.is_none()
    }

    /// The country of `ip` from the database of its family.
    pub fn country(&self, ip: IpAddr) -> Option<CountryCode> {
        let ip = canonical(ip);
        let slot = match ip {
            IpAddr::V4(_) => &self.v4,
            IpAddr::V6(_) => &self.v6,
        };
        slot.as_ref().and_then(|l| l.db.country(ip))
    }

    /// The loaded files, each once; one covering both families first, so
    /// that loading them again in this order restores the same state.
    pub fn files(&self) -> Vec<&Loaded> {
        let mut out: Vec<&Loaded> = Vec::new();
        for l in [&self.v4, &self.v6].into_iter().flatten() {
            if !out.iter().any(|o| Arc::ptr_eq(&o.db, &l.db)) {
                out.push(l);
            }
        }
        out.sort_by_key(|l| l.db.coverage() != Coverage::Both);
        out
    }
}

/// Reads `path` as a database for [`GeoIp::install`]; the path is made
/// absolute first.
pub fn load(path: &Path, from_command: bool) -> Result<Loaded, GeoIpError> {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let db = Database::open(&path)?;
    Ok(Loaded {
        path,
        db: Arc::new(db),
        from_command,
    })
}

#[cfg(test)]
#[path = "../../tests/common/geoip_writer.rs"]
pub(crate) mod writer;

#[cfg(test)]
mod tests;
