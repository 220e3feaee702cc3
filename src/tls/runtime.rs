//! TLS termination in the running process ([`TlsState`]): the settings
//! gathered from `-E -K -G -A -Z -R -L` and the `ssl_*` commands (man/pen.1,
//! TLS TERMINATION), the effect of each [`TlsCommand`], and the
//! [`TlsAcceptor`] pair threads use.
//!
//! The acceptor is built once at start-up, after the listeners are open
//! (doc/pen-0.34.1.md, "Start-up order", step 9); certificate and key problems
//! are fatal there.
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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{lock, TlsAcceptor, TlsCommand, TlsError, TlsSettings};

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

/// Where the settings stand relative to start-up.
#[derive(Debug, Default)]
struct State {
    settings: TlsSettings,
    /// `start` ran: changes now apply to the running acceptor.
    started: bool,
}

/// TLS state of the process: one per running pen, shared by the control
/// commands (which change it) and the pair threads (which use its acceptor).
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

    /// Start-up, once the listeners are open: takes the command-line options
    /// (the `-E -K -G -A -R -Z -L` fields of `command_line`; its `ssl_*`
    /// fields are ignored) on top of the `ssl_*` commands seen so far and,
    /// with `-E`, builds the acceptor. `options_given` says whether any of
    /// these options appeared at all (`-L ssl23` leaves the settings at
    /// their defaults but is still an option given). Warnings (`No verify
    /// locations, trying default`, an ignored cipher list, TLS options
    /// without `-E`) are logged.
    pub fn start(
        &self,
        command_line: &TlsSettings,
        options_given: bool,
    ) -> Result<(), TlsSetupError> {
        let mut state = lock(&self.state);
        let settings = &mut state.settings;
        settings.cert = command_line.cert.clone();
        settings.key = command_line.key.clone();
        settings.ca_file = command_line.ca_file.clone();
        settings.ca_dir = command_line.ca_dir.clone();
        settings.require_client_cert = command_line.require_client_cert;
        settings.compat = command_line.compat;
        settings.min_version = command_line.min_version;
        state.started = true;
        if state.settings.cert.is_none() {
            if options_given {
                warn("-K, -G, -A, -Z, -R and -L have no effect without -E");
            }
            return Ok(());
        }
        let acceptor = TlsAcceptor::new(&state.settings).map_err(TlsSetupError::Start)?;
        for w in acceptor.warnings() {
            warn(w);
        }
        *lock(&self.acceptor) = Some(Arc::new(acceptor));
        Ok(())
    }

    /// Applies one `ssl_*` command at once (see [`TlsState::stage`]).
    pub fn apply(&self, command: &TlsCommand) -> Result<String, TlsSetupError> {
        let mut changes = self.begin();
        self.stage(&mut changes, command)?;
        self.commit(changes);
        Ok(String::new())
    }

    /// Starts a batch of `ssl_*` commands from the settings in use.
    pub fn begin(&self) -> TlsChanges {
        let state = lock(&self.state);
        TlsChanges {
            settings: state.settings.clone(),
            changed: false,
            acceptor: None,
            ocsp_reload: None,
            handshake_timeout: None,
            renegotiation_interval: None,
        }
    }

    /// Checks one `ssl_*` command and adds it to `changes`. A change that
    /// needs a new acceptor builds it now, so that a failure is reported
    /// here and [`TlsState::commit`] cannot fail; the running acceptor is
    /// not touched.
    pub fn stage(
        &self,
        changes: &mut TlsChanges,
        command: &TlsCommand,
    ) -> Result<(), TlsSetupError> {
        let mut settings = changes.settings.clone();
        match command {
            TlsCommand::Ciphers(list) => settings.ciphers = list.clone(),
            TlsCommand::Option(option) => {
                if !settings.options.contains(option) {
                    settings.options.push(*option);
                }
            }
            TlsCommand::SniPath(dir) => settings.sni_path = Some(dir.clone()),
            TlsCommand::OcspResponse(path) => {
                // Re-issuing the command re-reads the file (doc/pen-0.34.1.md,
                // "TLS"), so no "unchanged" shortcut here.
                changes.settings.ocsp_response = Some(path.clone());
                changes.changed = true;
                changes.ocsp_reload = Some(path.clone());
                return Ok(());
            }
            TlsCommand::RenegotiationInterval(seconds) => {
                changes.renegotiation_interval = Some(*seconds);
                return Ok(());
            }
            TlsCommand::HandshakeTimeout(seconds) => {
                changes.handshake_timeout = Some(*seconds);
                return Ok(());
            }
        }
        if settings == changes.settings {
            return Ok(());
        }
        let started = lock(&self.state).started;
        if started && self.enabled() {
            let rebuild_error = |reason: String| TlsSetupError::Rebuild {
                command: command.name().to_string(),
                reason,
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
            changes.acceptor = Some(Arc::new(acceptor));
            // A new acceptor reads the OCSP file itself.
            changes.ocsp_reload = None;
        }
        // Before start-up, or with TLS off, the settings are just remembered.
        changes.settings = settings;
        changes.changed = true;
        Ok(())
    }

    /// Installs a batch checked by [`TlsState::stage`].
    pub fn commit(&self, changes: TlsChanges) {
        if changes.changed {
            lock(&self.state).settings = changes.settings;
        }
        if let Some(acceptor) = changes.acceptor {
            *lock(&self.acceptor) = Some(acceptor);
        }
        if let Some(path) = changes.ocsp_reload {
            if let Some(acceptor) = self.acceptor() {
                acceptor.reload_ocsp(Some(&path));
            }
        }
        if let Some(seconds) = changes.handshake_timeout {
            self.handshake_timeout.store(seconds, Ordering::Relaxed);
        }
        if let Some(seconds) = changes.renegotiation_interval {
            self.renegotiation_interval
                .store(seconds, Ordering::Relaxed);
        }
    }
}

/// `ssl_*` commands of one batch, checked and ready to install.
#[derive(Debug)]
pub struct TlsChanges {
    settings: TlsSettings,
    changed: bool,
    acceptor: Option<Arc<TlsAcceptor>>,
    ocsp_reload: Option<std::path::PathBuf>,
    handshake_timeout: Option<u64>,
    renegotiation_interval: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::SslOption;
    use std::path::PathBuf;

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
        let settings = lock(&state.state).settings.clone();
        assert_eq!(settings.options, vec![SslOption::NoTlsv1_1]);
        assert_eq!(settings.ciphers.as_deref(), Some("HIGH"));
        assert_eq!(settings.sni_path, Some(PathBuf::from("/etc/pen/sni")));
        assert_eq!(
            settings.ocsp_response,
            Some(PathBuf::from("/etc/pen/ocsp.der"))
        );
        assert_eq!(state.handshake_timeout(), Duration::from_secs(3));
        assert_eq!(state.renegotiation_interval(), 60);
        assert_eq!(
            state.apply(&TlsCommand::Ciphers(None)).ok(),
            Some(String::new())
        );
        assert_eq!(lock(&state.state).settings.ciphers, None);
        assert!(!state.enabled());
    }

    #[test]
    fn without_certificate_tls_stays_off() {
        let state = TlsState::default();
        let command_line = TlsSettings {
            require_client_cert: true,
            ..TlsSettings::default()
        };
        assert!(state.start(&command_line, true).is_ok());
        assert!(!state.enabled());
        // Accepted and remembered, nothing to rebuild.
        assert!(state.apply(&TlsCommand::Option(SslOption::NoTlsv1)).is_ok());
    }

    #[test]
    fn missing_certificate_is_fatal_and_names_the_file() {
        let state = TlsState::default();
        let command_line = TlsSettings::new(PathBuf::from("/nonexistent/pen-cert.pem"));
        let err = state.start(&command_line, true).expect_err("must fail");
        assert!(
            err.to_string()
                .starts_with("TLS (-E): can't load certificate /nonexistent/pen-cert.pem: "),
            "{err}"
        );
        assert!(!state.enabled());
    }
}
