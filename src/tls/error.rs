//! The TLS layer's error type, [`TlsError`], and the helpers that turn
//! OpenSSL's per-thread error queue into its readable reasons.

use libc::{c_char, c_ulong};
use std::ffi::CStr;
use std::fmt;
use std::io;
use std::path::PathBuf;

use super::ffi;

/// What went wrong setting up TLS or during a handshake. OpenSSL reasons are
/// the messages of its error queue, joined with `; `.
#[derive(Debug)]
pub enum TlsError {
    /// `-L` value not recognised.
    UnknownProtocol(String),
    /// `ssl_option` value not recognised.
    UnknownSslOption(String),
    /// The settings name no certificate (`-E`), so there is nothing to serve.
    NoCertificate,
    /// `SSL_CTX_new` failed.
    Context(String),
    /// The certificate (chain) file could not be loaded.
    Certificate { path: PathBuf, reason: String },
    /// The private key file could not be loaded.
    PrivateKey { path: PathBuf, reason: String },
    /// The key file (the certificate file unless `-K` names another) has
    /// no PEM private key in it.
    NoPrivateKey { path: PathBuf, in_certificate: bool },
    /// The private key does not belong to the certificate.
    KeyMismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    /// Another context or connection setting was refused.
    Setup(String),
    /// The handshake failed (protocol error, rejected certificate, EOF …).
    Handshake(String),
    /// The handshake did not finish before its deadline.
    HandshakeTimeout,
    /// Socket error while handshaking.
    Io(io::Error),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::UnknownProtocol(s) => write!(
                f,
                "unknown TLS protocol '{s}' (use ssl23, ssl2, ssl3, tls1, tls1.0, tls1.1, tls1.2 or tls1.3)"
            ),
            TlsError::UnknownSslOption(s) => write!(
                f,
                "unknown ssl_option '{s}' (use no_sslv2, no_sslv3, no_tlsv1, no_tlsv1.1, no_tlsv1.2 or cipher_server_preference)"
            ),
            TlsError::NoCertificate => write!(f, "no certificate"),
            TlsError::Context(reason) => write!(f, "can't create TLS context: {reason}"),
            TlsError::Certificate { path, reason } => {
                write!(f, "can't load certificate {}: {reason}", path.display())
            }
            TlsError::PrivateKey { path, reason } => {
                write!(f, "can't load private key {}: {reason}", path.display())
            }
            TlsError::NoPrivateKey {
                path,
                in_certificate: true,
            } => write!(
                f,
                "there is no private key in {}: give the key's file with -K (or append the key to the certificate file)",
                path.display()
            ),
            TlsError::NoPrivateKey { path, .. } => {
                write!(f, "there is no private key in {}", path.display())
            }
            TlsError::KeyMismatch { cert, key, reason } => write!(
                f,
                "private key {} does not match certificate {}: {reason}",
                key.display(),
                cert.display()
            ),
            TlsError::Setup(reason) => write!(f, "can't set up TLS: {reason}"),
            TlsError::Handshake(reason) => write!(f, "TLS handshake failed: {reason}"),
            TlsError::HandshakeTimeout => write!(f, "TLS handshake timed out"),
            TlsError::Io(e) => write!(f, "TLS handshake: {e}"),
        }
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TlsError::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// Drains this thread's OpenSSL error queue: each entry's packed code and
/// its `ERR_error_string_n` text.
pub(super) fn drain_openssl_errors() -> Vec<(c_ulong, String)> {
    let mut errors = Vec::new();
    // Bounded: the queue holds at most 16 entries, but never trust a loop.
    for _ in 0..64 {
        // SAFETY: ERR_get_error only pops this thread's error queue.
        let code = unsafe { ffi::ERR_get_error() };
        if code == 0 {
            break;
        }
        let mut buf = [0 as c_char; 256];
        // SAFETY: buf is writable for buf.len() bytes; OpenSSL NUL-terminates
        // within that length.
        unsafe { ffi::ERR_error_string_n(code, buf.as_mut_ptr(), buf.len()) };
        // SAFETY: buf is NUL-terminated (see above) and outlives the CStr.
        let text = unsafe { CStr::from_ptr(buf.as_ptr()) };
        errors.push((code, text.to_string_lossy().into_owned()));
    }
    errors
}

/// Joins drained errors into one readable line.
pub(super) fn describe_errors(errors: &[(c_ulong, String)]) -> String {
    if errors.is_empty() {
        "unknown OpenSSL error".to_string()
    } else {
        let texts: Vec<&str> = errors.iter().map(|(_, text)| text.as_str()).collect();
        texts.join("; ")
    }
}

/// Drains this thread's OpenSSL error queue into one readable line.
pub(super) fn take_openssl_errors() -> String {
    describe_errors(&drain_openssl_errors())
}

/// Like [`take_openssl_errors`], but `None` when the queue was empty.
pub(super) fn take_openssl_errors_if_any() -> Option<String> {
    let errors = drain_openssl_errors();
    (!errors.is_empty()).then(|| describe_errors(&errors))
}

/// `X509_R_KEY_VALUES_MISMATCH`: the key does not belong to the certificate.
pub(super) fn is_key_mismatch(code: c_ulong) -> bool {
    code & ffi::ERR_SYSTEM_FLAG == 0
        && (code >> ffi::ERR_LIB_OFFSET) & ffi::ERR_LIB_MASK == ffi::ERR_LIB_X509
        && code & ffi::ERR_REASON_MASK == ffi::X509_R_KEY_VALUES_MISMATCH
}

/// Empties this thread's OpenSSL error queue so that the next
/// `SSL_get_error` reflects only the call that follows.
pub(super) fn clear_openssl_errors() {
    // SAFETY: ERR_clear_error only touches this thread's error queue.
    unsafe { ffi::ERR_clear_error() };
}

/// Clears the error queue and `errno` before an SSL I/O call, so that an
/// `SSL_ERROR_SYSCALL` afterwards is judged on fresh values only.
pub(super) fn prepare_io_call() {
    clear_openssl_errors();
    // SAFETY: __errno_location returns this thread's errno slot, always valid.
    unsafe { *libc::__errno_location() = 0 };
}
