//! TLS termination for client connections (man/pen.1, TLS TERMINATION)
//! through a small hand-written binding to the system's OpenSSL 3 (`ffi`).
//!
//! A [`TlsAcceptor`] holds the default `SSL_CTX` built from [`TlsSettings`]
//! (the `-E -K -G -A -R -Z -L` options and the `ssl_*` commands) plus the
//! per-name SNI contexts and OCSP staples. It is shared between connection
//! threads; [`TlsAcceptor::accept`] runs the server handshake on a
//! non-blocking socket and yields a [`TlsStream`] whose `read`/`write`
//! follow the non-blocking `io` conventions. [`TlsState`] is the running
//! process's TLS: its settings, its current acceptor, and the effect of
//! each [`TlsCommand`].
//!
//! The parts, by concern: `settings` (what was asked for), `error`,
//! `context` (building contexts, OCSP stapling, the acceptor), `sni`,
//! `stream` (handshake and I/O) and `runtime`. This layer uses nothing of
//! the crate above `sys` and the debug log. All `unsafe` code of the TLS
//! layer lives in this module tree.

mod context;
mod error;
mod ffi;
mod runtime;
mod settings;
mod sni;
mod stream;

use std::sync::{Mutex, MutexGuard};

pub use context::TlsAcceptor;
pub use error::TlsError;
pub use runtime::{
    TlsChanges, TlsSetupError, TlsState, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_RENEGOTIATION_INTERVAL,
};
pub use settings::{
    parse_protocol, parse_ssl_option, MinVersion, SslOption, TlsCommand, TlsSettings,
};
pub use stream::{TlsStream, Want};

/// Locks `mutex`, ignoring poisoning: every update of the TLS layer's
/// shared state is a single assignment, so a panic while holding one of
/// these locks cannot leave the data inconsistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn shared_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<TlsAcceptor>();
        send::<TlsStream>();
    }

    #[test]
    fn missing_certificate_is_a_clear_error() {
        let settings = TlsSettings::new(PathBuf::from("/nonexistent/pen-test.pem"));
        let err = TlsAcceptor::new(&settings).expect_err("must fail");
        let text = err.to_string();
        assert!(
            text.starts_with("can't load certificate /nonexistent/pen-test.pem: "),
            "{text}"
        );
        assert!(text.contains("No such file"), "{text}");
    }
}
