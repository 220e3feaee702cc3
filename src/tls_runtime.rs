//! TLS termination in the running process (spec protocols.md §3): the
//! settings gathered from `-E -K -G -A -Z -R -L` and the `ssl_*` commands
//! (spec control.md §4.6), and the [`TlsAcceptor`] pair threads use.
//!
//! The acceptor is built once at start-up, after the listeners are open
//! (spec cli.md §6 step 9); certificate and key problems are fatal there.
//!
//! Improvement over pen 0.34.1, where `ssl_ciphers`, `ssl_option` and
//! `ssl_sni_path` only affect contexts created later (so only work before
//! start-up): at run time they build a new acceptor and swap it in, so new
//! connections use them (connections already running keep theirs). If the
//! rebuild fails (e.g. the key file became unreadable, or the cipher list is
//! invalid) the running acceptor stays and the command replies with the
//! error. A rebuild also forgets the SNI contexts, so changed `DIR/NAME.*`
//! files are picked up. Settings that did not change (a SIGHUP re-reading
//! the same `-F` file) do not rebuild anything.

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::cli::TlsArgs;
use crate::tls::{self, MinVersion, SslOption, TlsAcceptor, TlsError, TlsSettings};

/// How long a client may take to finish its TLS handshake, unless
/// `ssl_handshake_timeout` says otherwise. Ten seconds is many round trips
/// even on a poor mobile link, and the handshake only ties up the pair's own
/// thread and its (already connected) backend socket; a client that stalls
/// longer is most likely not a browser. It is deliberately not the connect
/// timeout (`-t`, 3 s by default): that one measures a backend on the local
/// network, this one a client anywhere.
pub const DEFAULT_HANDSHAKE_TIMEOUT: u64 = 10;

/// Default of `ssl_client_renegotiation_interval` (pen's, in seconds).
pub const DEFAULT_RENEGOTIATION_INTERVAL: u64 = 3600;

/// One parsed `ssl_*` command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsCommand {
    /// `ssl_ciphers [LIST]`: OpenSSL cipher string; none clears it.
    Ciphers(Option<String>),
    /// `ssl_option OPT` (cumulative).
    Option(SslOption),
    /// `ssl_sni_path DIR`.
    SniPath(PathBuf),
    /// `ssl_ocsp_response FILE`: staple FILE, (re-)read at the next
    /// handshake that asks for stapling.
    OcspResponse(PathBuf),
    /// `ssl_client_renegotiation_interval SECONDS`: accepted and kept for
    /// compatibility; it has no effect because OpenSSL 3 refuses
    /// client-initiated renegotiation altogether (as the Debian pen build
    /// does, spec protocols.md §3).
    RenegotiationInterval(u64),
    /// `ssl_handshake_timeout SECONDS` (ours): limit for a client's handshake.
    HandshakeTimeout(u64),
}

/// What went wrong setting up or changing TLS termination.
#[derive(Debug)]
pub enum TlsSetupError {
    /// Building the acceptor at start-up failed (fatal).
    Start(TlsError),
    /// A run-time change could not be applied; the running acceptor stays.
    Rebuild { command: String, reason: String },
}

impl fmt::Display for TlsSetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsSetupError::Start(e) => write!(f, "TLS (-E): {e}"),
            TlsSetupError::Rebuild { command, reason } => write!(
                f,
                "{command}: {reason}; the previous TLS settings stay in use"
            ),
        }
    }
}

impl std::error::Error for TlsSetupError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TlsSetupError::Start(e) => Some(e),
            TlsSetupError::Rebuild { .. } => None,
        }
    }
}

/// The settings that shape an acceptor, comparable so that re-applying
/// the same commands costs nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Config {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    ca_dir: Option<PathBuf>,
    require_client_cert: bool,
    compat: bool,
    min_version: MinVersion,
    ciphers: Option<String>,
    options: Vec<SslOption>,
    sni_path: Option<PathBuf>,
    ocsp_response: Option<PathBuf>,
}

impl Config {
    /// The acceptor's settings; `None` without a certificate (no TLS).
    fn settings(&self) -> Option<TlsSettings> {
        let cert = self.cert.clone()?;
        Some(TlsSettings {
            cert,
            key: self.key.clone(),
            ca_file: self.ca_file.clone(),
            ca_dir: self.ca_dir.clone(),
            require_client_cert: self.require_client_cert,
            compat: self.compat,
            min_version: self.min_version,
            ciphers: self.ciphers.clone(),
            options: self.options.clone(),
            sni_path: self.sni_path.clone(),
            ocsp_response: self.ocsp_response.clone(),
        })
    }
}

/// Where the config stands relative to start-up.
#[derive(Debug, Default)]
struct State {
    config: Config,
    /// `start` ran: changes now apply to the running acceptor.
    started: bool,
}

/// TLS state of the process, kept in [`crate::runtime::Shared`].
#[derive(Debug)]
pub struct TlsState {
    /// Settings; also serialises rebuilds.
    state: Mutex<State>,
    /// The acceptor new connections use; `None` without `-E`.
    acceptor: Mutex<Option<Arc<TlsAcceptor>>>,
    handshake_timeout: AtomicU64,
    renegotiation_interval: AtomicU64,
}

impl Default for TlsState {
    fn default() -> TlsState {
        TlsState {
            state: Mutex::new(State::default()),
            acceptor: Mutex::new(None),
            handshake_timeout: AtomicU64::new(DEFAULT_HANDSHAKE_TIMEOUT),
            renegotiation_interval: AtomicU64::new(DEFAULT_RENEGOTIATION_INTERVAL),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each update is a single assignment: a panic cannot leave half a state.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Where a start-up warning of the TLS layer goes (pen prints them with an
/// `SSL: ` prefix on its debug channel at every level).
fn warn(message: &str) {
    crate::logging::message(&format!("SSL: {message}"));
}

impl TlsState {
    /// The acceptor for a new connection; `None` when TLS is off.
    pub fn acceptor(&self) -> Option<Arc<TlsAcceptor>> {
        lock(&self.acceptor).clone()
    }

    /// Whether clients talk TLS to this pen.
    pub fn enabled(&self) -> bool {
        lock(&self.acceptor).is_some()
    }

    /// Deadline length for one client handshake.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout.load(Ordering::Relaxed))
    }

    /// `ssl_client_renegotiation_interval` as last set (no effect, see
    /// [`TlsCommand::RenegotiationInterval`]).
    pub fn renegotiation_interval(&self) -> u64 {
        self.renegotiation_interval.load(Ordering::Relaxed)
    }

    /// Start-up (spec cli.md §6 step 9): takes the command-line options on
    /// top of the `ssl_*` commands seen so far and, with `-E`, builds the
    /// acceptor. Warnings (`No verify locations, trying default`, an
    /// ignored cipher list, TLS options without `-E`) are logged.
    pub fn start(&self, args: &TlsArgs) -> Result<(), TlsSetupError> {
        let mut state = lock(&self.state);
        let config = &mut state.config;
        config.cert = args.cert.as_ref().map(PathBuf::from);
        config.key = args.key.as_ref().map(PathBuf::from);
        config.ca_file = args.ca_file.as_ref().map(PathBuf::from);
        config.ca_dir = args.ca_dir.as_ref().map(PathBuf::from);
        config.require_client_cert = args.require_client_cert;
        config.compat = args.compat;
        // The command line already refused unknown -L values.
        config.min_version = match &args.protocol {
            Some(p) => tls::parse_protocol(p).map_err(TlsSetupError::Start)?,
            None => MinVersion::Any,
        };
        state.started = true;
        let Some(settings) = state.config.settings() else {
            if args.any() {
                warn("-K, -G, -A, -Z, -R and -L have no effect without -E");
            }
            return Ok(());
        };
        let acceptor = TlsAcceptor::new(&settings).map_err(TlsSetupError::Start)?;
        for w in acceptor.warnings() {
            warn(w);
        }
        *lock(&self.acceptor) = Some(Arc::new(acceptor));
        Ok(())
    }

    /// Applies one `ssl_*` command; the reply (always empty, as pen's).
    pub fn apply(&self, command: &TlsCommand) -> Result<String, TlsSetupError> {
        let mut state = lock(&self.state);
        let mut config = state.config.clone();
        match command {
            TlsCommand::Ciphers(list) => config.ciphers = list.clone(),
            TlsCommand::Option(option) => {
                if !config.options.contains(option) {
                    config.options.push(*option);
                }
            }
            TlsCommand::SniPath(dir) => config.sni_path = Some(dir.clone()),
            TlsCommand::OcspResponse(path) => {
                state.config.ocsp_response = Some(path.clone());
                // Re-issuing the command re-reads the file (spec
                // protocols.md §3), so no "unchanged" shortcut here.
                if let Some(acceptor) = self.acceptor() {
                    acceptor.reload_ocsp(Some(path));
                }
                return Ok(String::new());
            }
            TlsCommand::RenegotiationInterval(seconds) => {
                self.renegotiation_interval
                    .store(*seconds, Ordering::Relaxed);
                return Ok(String::new());
            }
            TlsCommand::HandshakeTimeout(seconds) => {
                self.handshake_timeout.store(*seconds, Ordering::Relaxed);
                return Ok(String::new());
            }
        }
        if config == state.config {
            return Ok(String::new());
        }
        let running = self.acceptor();
        if !state.started || running.is_none() {
            // Before start-up, or TLS is off: just remember.
            state.config = config;
            return Ok(String::new());
        }
        let rebuild_error = |reason: String| TlsSetupError::Rebuild {
            command: command_name(command).to_string(),
            reason,
        };
        let Some(settings) = config.settings() else {
            return Err(rebuild_error("no certificate".to_string()));
        };
        let acceptor = TlsAcceptor::new(&settings).map_err(|e| rebuild_error(e.to_string()))?;
        // At start-up pen ignores a bad cipher list; at run time the
        // operator is there to read the reply, so refuse it.
        if let Some(w) = acceptor
            .warnings()
            .iter()
            .find(|w| w.starts_with("ssl_ciphers"))
        {
            return Err(rebuild_error(w.clone()));
        }
        state.config = config;
        *lock(&self.acceptor) = Some(Arc::new(acceptor));
        Ok(String::new())
    }
}

fn command_name(command: &TlsCommand) -> &'static str {
    match command {
        TlsCommand::Ciphers(_) => "ssl_ciphers",
        TlsCommand::Option(_) => "ssl_option",
        TlsCommand::SniPath(_) => "ssl_sni_path",
        TlsCommand::OcspResponse(_) => "ssl_ocsp_response",
        TlsCommand::RenegotiationInterval(_) => "ssl_client_renegotiation_interval",
        TlsCommand::HandshakeTimeout(_) => "ssl_handshake_timeout",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_before_start_are_remembered_and_deduplicated() {
        let state = TlsState::default();
        for command in [
            TlsCommand::Option(SslOption::NoTlsv1_1),
            TlsCommand::Option(SslOption::NoTlsv1_1),
            TlsCommand::Ciphers(Some("HIGH".into())),
            TlsCommand::SniPath(PathBuf::from("/etc/pen/sni")),
            TlsCommand::OcspResponse(PathBuf::from("/etc/pen/ocsp.der")),
            TlsCommand::HandshakeTimeout(3),
            TlsCommand::RenegotiationInterval(60),
        ] {
            assert_eq!(state.apply(&command).ok(), Some(String::new()));
        }
        let config = lock(&state.state).config.clone();
        assert_eq!(config.options, vec![SslOption::NoTlsv1_1]);
        assert_eq!(config.ciphers.as_deref(), Some("HIGH"));
        assert_eq!(config.sni_path, Some(PathBuf::from("/etc/pen/sni")));
        assert_eq!(
            config.ocsp_response,
            Some(PathBuf::from("/etc/pen/ocsp.der"))
        );
        assert_eq!(state.handshake_timeout(), Duration::from_secs(3));
        assert_eq!(state.renegotiation_interval(), 60);
        assert_eq!(
            state.apply(&TlsCommand::Ciphers(None)).ok(),
            Some(String::new())
        );
        assert_eq!(lock(&state.state).config.ciphers, None);
        assert!(!state.enabled());
    }

    #[test]
    fn without_certificate_tls_stays_off() {
        let state = TlsState::default();
        let args = TlsArgs {
            require_client_cert: true,
            ..TlsArgs::default()
        };
        assert!(state.start(&args).is_ok());
        assert!(!state.enabled());
        // Accepted and remembered, nothing to rebuild.
        assert!(state.apply(&TlsCommand::Option(SslOption::NoTlsv1)).is_ok());
    }

    #[test]
    fn missing_certificate_is_fatal_and_names_the_file() {
        let state = TlsState::default();
        let args = TlsArgs {
            cert: Some("/nonexistent/pen-cert.pem".into()),
            ..TlsArgs::default()
        };
        let err = state.start(&args).expect_err("must fail");
        assert!(
            err.to_string()
                .starts_with("TLS (-E): can't load certificate /nonexistent/pen-cert.pem: "),
            "{err}"
        );
        assert!(!state.enabled());
    }
}
