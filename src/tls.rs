//! TLS termination for client connections (spec protocols.md §3) through a
//! small hand-written binding to the system's OpenSSL 3 (`tls/ffi.rs`).
//!
//! A [`TlsAcceptor`] holds the default `SSL_CTX` built from [`TlsSettings`]
//! (the `-E -K -G -A -R -Z -L` options and the `ssl_*` commands of spec
//! control.md §4.6) plus the per-name SNI contexts and OCSP staples. It is
//! shared between connection threads; [`TlsAcceptor::accept`] runs the server
//! handshake on a non-blocking socket and yields a [`TlsStream`] whose
//! `read`/`write` follow the non-blocking `io` conventions.
//!
//! All `unsafe` code of the TLS layer lives in this module and `ffi`.

mod ffi;

use crate::sys::syscall;
use libc::{c_char, c_int, c_long, c_short, c_ulong, c_void};
use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::ptr::{self, NonNull};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Pen writes at most this many bytes per `SSL_write` (spec protocols.md §3).
const MAX_WRITE: usize = 16000;
/// Largest OCSP response file that is stapled; bigger files are ignored.
const MAX_OCSP_RESPONSE: u64 = 1024 * 1024;
/// SNI contexts re-read `DIR/NAME.ocsp` when their copy is this old
/// (spec protocols.md §3).
const SNI_OCSP_MAX_AGE: Duration = Duration::from_secs(3600);
/// Bound on cached SNI names (loaded contexts and failures).
const SNI_CACHE_LIMIT: usize = 1000;
/// Longest DNS name accepted as an SNI file name.
const SNI_NAME_MAX: usize = 253;
/// Fixed session-id context so that cached sessions can be resumed.
const SESSION_ID_CONTEXT: &[u8] = b"pen";
/// Pen pins ECDH to NIST P-256 (observed: `Server Temp Key: ECDH, prime256v1`).
const ECDH_GROUPS: &CStr = c"P-256";

/// Everything that shapes the TLS contexts: the command-line options and the
/// `ssl_*` commands given before start-up.
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    /// `-E`: certificate chain (PEM).
    pub cert: PathBuf,
    /// `-K`: private key (PEM); the certificate file when `None`.
    pub key: Option<PathBuf>,
    /// `-G`: file of trusted CA certificates for client certificates.
    pub ca_file: Option<PathBuf>,
    /// `-A`: directory of hashed CA certificates.
    pub ca_dir: Option<PathBuf>,
    /// `-R`: require a client certificate that verifies.
    pub require_client_cert: bool,
    /// `-Z`: enable OpenSSL's bug workarounds (`SSL_OP_ALL`).
    pub compat: bool,
    /// `-L`: lowest protocol version.
    pub min_version: MinVersion,
    /// `ssl_ciphers`: OpenSSL cipher string (TLS 1.2 and below).
    pub ciphers: Option<String>,
    /// `ssl_option` (cumulative).
    pub options: Vec<SslOption>,
    /// `ssl_sni_path`: directory with `NAME.crt`, `NAME.key`, `NAME.ca`, `NAME.ocsp`.
    pub sni_path: Option<PathBuf>,
    /// `ssl_ocsp_response`: DER OCSP response stapled by the default context.
    pub ocsp_response: Option<PathBuf>,
}

impl TlsSettings {
    /// Settings with the certificate `cert` and everything else at its default.
    pub fn new(cert: PathBuf) -> TlsSettings {
        TlsSettings {
            cert,
            ..TlsSettings::default()
        }
    }
}

/// Lowest protocol version accepted (`-L`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MinVersion {
    /// Whatever OpenSSL and the system policy allow.
    #[default]
    Any,
    /// TLS 1.0 and later.
    Tls1_0,
    /// TLS 1.1 and later.
    Tls1_1,
    /// TLS 1.2 and later.
    Tls1_2,
    /// TLS 1.3 only.
    Tls1_3,
}

impl MinVersion {
    fn wire_version(self) -> Option<c_long> {
        match self {
            MinVersion::Any => None,
            MinVersion::Tls1_0 => Some(ffi::TLS1_VERSION),
            MinVersion::Tls1_1 => Some(ffi::TLS1_1_VERSION),
            MinVersion::Tls1_2 => Some(ffi::TLS1_2_VERSION),
            MinVersion::Tls1_3 => Some(ffi::TLS1_3_VERSION),
        }
    }
}

/// Parses the `-L` argument. The historical `ssl23`, `ssl2`, `ssl3` and
/// `tls1` all mean "any version OpenSSL allows" (spec protocols.md §3: with
/// OpenSSL 3 none of them restricts the versions); `tls1.0` … `tls1.3` set a
/// real minimum.
pub fn parse_protocol(s: &str) -> Result<MinVersion, TlsError> {
    match s {
        "ssl23" | "ssl2" | "ssl3" | "tls1" => Ok(MinVersion::Any),
        "tls1.0" => Ok(MinVersion::Tls1_0),
        "tls1.1" => Ok(MinVersion::Tls1_1),
        "tls1.2" => Ok(MinVersion::Tls1_2),
        "tls1.3" => Ok(MinVersion::Tls1_3),
        _ => Err(TlsError::UnknownProtocol(s.to_string())),
    }
}

/// One `ssl_option` value (spec control.md §4.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslOption {
    /// `no_sslv2` (no effect: OpenSSL 3 has no SSLv2).
    NoSslv2,
    /// `no_sslv3`.
    NoSslv3,
    /// `no_tlsv1`.
    NoTlsv1,
    /// `no_tlsv1.1`.
    NoTlsv1_1,
    /// `no_tlsv1.2`.
    NoTlsv1_2,
    /// `cipher_server_preference`.
    CipherServerPreference,
}

impl SslOption {
    fn bits(self) -> u64 {
        match self {
            SslOption::NoSslv2 => ffi::SSL_OP_NO_SSLv2,
            SslOption::NoSslv3 => ffi::SSL_OP_NO_SSLv3,
            SslOption::NoTlsv1 => ffi::SSL_OP_NO_TLSv1,
            SslOption::NoTlsv1_1 => ffi::SSL_OP_NO_TLSv1_1,
            SslOption::NoTlsv1_2 => ffi::SSL_OP_NO_TLSv1_2,
            SslOption::CipherServerPreference => ffi::SSL_OP_CIPHER_SERVER_PREFERENCE,
        }
    }
}

/// Parses an `ssl_option` argument.
pub fn parse_ssl_option(s: &str) -> Result<SslOption, TlsError> {
    match s {
        "no_sslv2" => Ok(SslOption::NoSslv2),
        "no_sslv3" => Ok(SslOption::NoSslv3),
        "no_tlsv1" => Ok(SslOption::NoTlsv1),
        "no_tlsv1.1" => Ok(SslOption::NoTlsv1_1),
        "no_tlsv1.2" => Ok(SslOption::NoTlsv1_2),
        "cipher_server_preference" => Ok(SslOption::CipherServerPreference),
        _ => Err(TlsError::UnknownSslOption(s.to_string())),
    }
}

/// What went wrong setting up TLS or during a handshake. OpenSSL reasons are
/// the messages of its error queue, joined with `; `.
#[derive(Debug)]
pub enum TlsError {
    /// `-L` value not recognised.
    UnknownProtocol(String),
    /// `ssl_option` value not recognised.
    UnknownSslOption(String),
    /// `SSL_CTX_new` failed.
    Context(String),
    /// The certificate (chain) file could not be loaded.
    Certificate { path: PathBuf, reason: String },
    /// The private key file could not be loaded.
    PrivateKey { path: PathBuf, reason: String },
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
            TlsError::Context(reason) => write!(f, "can't create TLS context: {reason}"),
            TlsError::Certificate { path, reason } => {
                write!(f, "can't load certificate {}: {reason}", path.display())
            }
            TlsError::PrivateKey { path, reason } => {
                write!(f, "can't load private key {}: {reason}", path.display())
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
fn drain_openssl_errors() -> Vec<(c_ulong, String)> {
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
fn describe_errors(errors: &[(c_ulong, String)]) -> String {
    if errors.is_empty() {
        "unknown OpenSSL error".to_string()
    } else {
        let texts: Vec<&str> = errors.iter().map(|(_, text)| text.as_str()).collect();
        texts.join("; ")
    }
}

/// Drains this thread's OpenSSL error queue into one readable line.
fn take_openssl_errors() -> String {
    describe_errors(&drain_openssl_errors())
}

/// Like [`take_openssl_errors`], but `None` when the queue was empty.
fn take_openssl_errors_if_any() -> Option<String> {
    let errors = drain_openssl_errors();
    (!errors.is_empty()).then(|| describe_errors(&errors))
}

/// `X509_R_KEY_VALUES_MISMATCH`: the key does not belong to the certificate.
fn is_key_mismatch(code: c_ulong) -> bool {
    code & ffi::ERR_SYSTEM_FLAG == 0
        && (code >> ffi::ERR_LIB_OFFSET) & ffi::ERR_LIB_MASK == ffi::ERR_LIB_X509
        && code & ffi::ERR_REASON_MASK == ffi::X509_R_KEY_VALUES_MISMATCH
}

/// Empties this thread's OpenSSL error queue so that the next
/// `SSL_get_error` reflects only the call that follows.
fn clear_openssl_errors() {
    // SAFETY: ERR_clear_error only touches this thread's error queue.
    unsafe { ffi::ERR_clear_error() };
}

/// Clears the error queue and `errno` before an SSL I/O call, so that an
/// `SSL_ERROR_SYSCALL` afterwards is judged on fresh values only.
fn prepare_io_call() {
    clear_openssl_errors();
    // SAFETY: __errno_location returns this thread's errno slot, always valid.
    unsafe { *libc::__errno_location() = 0 };
}

fn c_path(path: &Path) -> Result<CString, String> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| "path contains a NUL byte".to_string())
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the data
    // inconsistent (each update is a single assignment), so ignore poisoning.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An owned `SSL_CTX` reference.
struct Context(NonNull<ffi::SslCtx>);

// SAFETY: an SSL_CTX is internally locked for the operations used after
// set-up (SSL_new, SSL_set_SSL_CTX, reference counting); all configuration
// happens before the context is shared.
unsafe impl Send for Context {}
// SAFETY: see Send.
unsafe impl Sync for Context {}

impl Context {
    fn as_ptr(&self) -> *mut ffi::SslCtx {
        self.0.as_ptr()
    }

    /// `SSL_CTX_ctrl`, the entry point behind many `SSL_CTX_*` macros.
    fn ctrl(&self, cmd: c_int, larg: c_long, parg: *mut c_void) -> c_long {
        // SAFETY: the context is valid; each caller passes the larg/parg the
        // command documents (a number, or a NUL-terminated string / a pointer
        // that outlives the context).
        unsafe { ffi::SSL_CTX_ctrl(self.as_ptr(), cmd, larg, parg) }
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: we own one reference; SSL objects hold their own.
        unsafe { ffi::SSL_CTX_free(self.as_ptr()) };
    }
}

/// Files of one context: the default one or an SNI name's.
struct ContextFiles<'a> {
    cert: &'a Path,
    key: &'a Path,
    ca_file: Option<&'a Path>,
    ca_dir: Option<&'a Path>,
}

/// Builds a server context from `settings` and `files`. Non-fatal problems
/// (CA locations) are appended to `warnings`.
fn build_context(
    settings: &TlsSettings,
    files: &ContextFiles<'_>,
    warnings: &mut Vec<String>,
) -> Result<Context, TlsError> {
    clear_openssl_errors();
    // SAFETY: TLS_server_method returns a static method table; SSL_CTX_new
    // returns a new context or NULL.
    let raw = unsafe { ffi::SSL_CTX_new(ffi::TLS_server_method()) };
    let ctx = Context(NonNull::new(raw).ok_or_else(|| TlsError::Context(take_openssl_errors()))?);

    // TCP EOF without close_notify reads as a clean EOF, like plain TCP.
    let mut options = ffi::SSL_OP_IGNORE_UNEXPECTED_EOF;
    if settings.compat {
        options |= ffi::SSL_OP_ALL;
    }
    for option in &settings.options {
        options |= option.bits();
    }
    // SAFETY: valid context; SSL_CTX_set_options only ORs in the bits.
    unsafe { ffi::SSL_CTX_set_options(ctx.as_ptr(), options) };

    if let Some(version) = settings.min_version.wire_version() {
        if ctx.ctrl(
            ffi::SSL_CTRL_SET_MIN_PROTO_VERSION,
            version,
            ptr::null_mut(),
        ) != 1
        {
            return Err(TlsError::Setup(format!(
                "can't set the minimum protocol version: {}",
                take_openssl_errors()
            )));
        }
    }

    if let Some(ciphers) = &settings.ciphers {
        // spec protocols.md §3: errors in ssl_ciphers are ignored.
        let accepted = CString::new(ciphers.as_str()).is_ok_and(|list| {
            // SAFETY: valid context and NUL-terminated string.
            unsafe { ffi::SSL_CTX_set_cipher_list(ctx.as_ptr(), list.as_ptr()) == 1 }
        });
        if !accepted {
            warnings.push(format!(
                "ssl_ciphers '{ciphers}' ignored: {}",
                take_openssl_errors()
            ));
        }
    }

    ctx.ctrl(
        ffi::SSL_CTRL_MODE,
        ffi::SSL_MODE_ENABLE_PARTIAL_WRITE | ffi::SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER,
        ptr::null_mut(),
    );
    ctx.ctrl(
        ffi::SSL_CTRL_SET_SESS_CACHE_MODE,
        ffi::SSL_SESS_CACHE_SERVER,
        ptr::null_mut(),
    );
    // SAFETY: valid context; the id is copied and shorter than the 32-byte maximum.
    let sid_ok = unsafe {
        ffi::SSL_CTX_set_session_id_context(
            ctx.as_ptr(),
            SESSION_ID_CONTEXT.as_ptr(),
            SESSION_ID_CONTEXT.len() as libc::c_uint,
        )
    };
    if sid_ok != 1 {
        return Err(TlsError::Setup(format!(
            "can't set the session id context: {}",
            take_openssl_errors()
        )));
    }
    // "where supported": a failure just keeps OpenSSL's default groups.
    if ctx.ctrl(
        ffi::SSL_CTRL_SET_GROUPS_LIST,
        0,
        ECDH_GROUPS.as_ptr() as *mut c_void,
    ) != 1
    {
        clear_openssl_errors();
    }

    let cert = c_path(files.cert).map_err(|reason| TlsError::Certificate {
        path: files.cert.to_path_buf(),
        reason,
    })?;
    // SAFETY: valid context and NUL-terminated path.
    if unsafe { ffi::SSL_CTX_use_certificate_chain_file(ctx.as_ptr(), cert.as_ptr()) } != 1 {
        return Err(TlsError::Certificate {
            path: files.cert.to_path_buf(),
            reason: take_openssl_errors(),
        });
    }
    let key = c_path(files.key).map_err(|reason| TlsError::PrivateKey {
        path: files.key.to_path_buf(),
        reason,
    })?;
    // SAFETY: valid context and NUL-terminated path.
    let key_loaded = unsafe {
        ffi::SSL_CTX_use_PrivateKey_file(ctx.as_ptr(), key.as_ptr(), ffi::SSL_FILETYPE_PEM)
    };
    if key_loaded != 1 {
        // OpenSSL compares the key with the loaded certificate right here.
        let errors = drain_openssl_errors();
        let reason = describe_errors(&errors);
        return Err(if errors.iter().any(|(code, _)| is_key_mismatch(*code)) {
            TlsError::KeyMismatch {
                cert: files.cert.to_path_buf(),
                key: files.key.to_path_buf(),
                reason,
            }
        } else {
            TlsError::PrivateKey {
                path: files.key.to_path_buf(),
                reason,
            }
        });
    }
    // SAFETY: valid context.
    if unsafe { ffi::SSL_CTX_check_private_key(ctx.as_ptr()) } != 1 {
        return Err(TlsError::KeyMismatch {
            cert: files.cert.to_path_buf(),
            key: files.key.to_path_buf(),
            reason: take_openssl_errors(),
        });
    }

    load_verify_locations(&ctx, files.ca_file, files.ca_dir, warnings);

    // spec protocols.md §3: the CA names sent in a CertificateRequest come
    // from the certificate file, not from -G.
    // SAFETY: NUL-terminated path; the result is a new list or NULL.
    let names = unsafe { ffi::SSL_load_client_CA_file(cert.as_ptr()) };
    if names.is_null() {
        clear_openssl_errors();
    } else {
        // SAFETY: valid context; the context takes ownership of the list.
        unsafe { ffi::SSL_CTX_set_client_CA_list(ctx.as_ptr(), names) };
    }

    let verify_mode = if settings.require_client_cert {
        ffi::SSL_VERIFY_PEER | ffi::SSL_VERIFY_FAIL_IF_NO_PEER_CERT
    } else {
        ffi::SSL_VERIFY_NONE
    };
    // SAFETY: valid context; no verify callback (OpenSSL's default checks).
    unsafe { ffi::SSL_CTX_set_verify(ctx.as_ptr(), verify_mode, None) };
    Ok(ctx)
}

/// `-G`/`-A` trust anchors; OpenSSL's default paths when neither is given or
/// loadable (spec protocols.md §3), with pen's messages as warnings.
fn load_verify_locations(
    ctx: &Context,
    ca_file: Option<&Path>,
    ca_dir: Option<&Path>,
    warnings: &mut Vec<String>,
) {
    if ca_file.is_some() || ca_dir.is_some() {
        let file = ca_file.map(c_path).transpose();
        let dir = ca_dir.map(c_path).transpose();
        let loaded = match (file, dir) {
            (Ok(file), Ok(dir)) => {
                let file_ptr = file.as_ref().map_or(ptr::null(), |f| f.as_ptr());
                let dir_ptr = dir.as_ref().map_or(ptr::null(), |d| d.as_ptr());
                // SAFETY: valid context; each pointer is NULL or a NUL-terminated
                // string that outlives the call.
                if unsafe { ffi::SSL_CTX_load_verify_locations(ctx.as_ptr(), file_ptr, dir_ptr) }
                    == 1
                {
                    Ok(())
                } else {
                    Err(take_openssl_errors())
                }
            }
            (Err(reason), _) | (_, Err(reason)) => Err(reason),
        };
        match loaded {
            Ok(()) => return,
            Err(reason) => warnings.push(format!("error setting CA cert locations: {reason}")),
        }
    }
    warnings.push("No verify locations, trying default".to_string());
    // SAFETY: valid context.
    if unsafe { ffi::SSL_CTX_set_default_verify_paths(ctx.as_ptr()) } != 1 {
        warnings.push(format!(
            "can't use the default verify paths: {}",
            take_openssl_errors()
        ));
    }
}

/// True when `name` can be used as a file name inside the SNI directory:
/// a DNS-like name that cannot climb out of it (spec quirks.md Q28).
fn is_safe_sni_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= SNI_NAME_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        && !name.starts_with('.')
        && !name.contains("..")
}

/// Reads a stapling response; missing, unreadable, empty or oversized files
/// give `None` (spec protocols.md §3: no staple).
fn read_ocsp_file(path: &Path) -> Option<Vec<u8>> {
    let metadata = std::fs::metadata(path).ok()?;
    if !metadata.is_file() || metadata.len() == 0 || metadata.len() > MAX_OCSP_RESPONSE {
        return None;
    }
    let bytes = std::fs::read(path).ok()?;
    if bytes.is_empty() || bytes.len() as u64 > MAX_OCSP_RESPONSE {
        return None;
    }
    Some(bytes)
}

/// The default context's staple: read lazily at the first handshake that
/// asks for one, then kept until `reload_ocsp` (spec protocols.md §3).
enum DefaultOcsp {
    Off,
    NotRead(PathBuf),
    Read(Staple),
}

/// A context loaded for one SNI name.
struct SniContext {
    ctx: Context,
    ocsp_path: PathBuf,
    /// When `ocsp_path` was last read and what it held.
    ocsp: Mutex<Option<(Instant, Staple)>>,
}

/// An OCSP response to staple (shared, so a handshake copies it outside locks
/// only once, into OpenSSL's buffer), or none.
type Staple = Option<Arc<Vec<u8>>>;

impl SniContext {
    fn staple(&self) -> Staple {
        let mut cached = lock(&self.ocsp);
        match &*cached {
            Some((read_at, bytes)) if read_at.elapsed() < SNI_OCSP_MAX_AGE => bytes.clone(),
            _ => {
                let bytes = read_ocsp_file(&self.ocsp_path).map(Arc::new);
                *cached = Some((Instant::now(), bytes.clone()));
                bytes
            }
        }
    }
}

/// State shared by the acceptor, its streams and the OpenSSL callbacks
/// (which receive a pointer to it as their `arg`).
struct Shared {
    ctx: Context,
    settings: TlsSettings,
    /// Contexts per SNI name; `None` caches a failure to load.
    sni_cache: Mutex<HashMap<String, Option<Arc<SniContext>>>>,
    ocsp: Mutex<DefaultOcsp>,
    warnings: Vec<String>,
}

impl Shared {
    /// The context for SNI name `name` (already validated), loading it once.
    fn sni_context(&self, dir: &Path, name: &str) -> Option<Arc<SniContext>> {
        if let Some(entry) = lock(&self.sni_cache).get(name) {
            return entry.clone();
        }
        // Load without holding the lock; a concurrent loader of the same name
        // may win the insert below, which is harmless.
        let loaded = self.load_sni_context(dir, name).map(Arc::new);
        let mut cache = lock(&self.sni_cache);
        if let Some(entry) = cache.get(name) {
            return entry.clone();
        }
        if cache.len() >= SNI_CACHE_LIMIT {
            // Failures are the cheap (and client-controlled) entries: drop them
            // first; evicting a loaded context is safe because SSL objects
            // hold their own reference to it.
            cache.retain(|_, entry| entry.is_some());
            if cache.len() >= SNI_CACHE_LIMIT {
                if let Some(victim) = cache.keys().next().cloned() {
                    cache.remove(&victim);
                }
            }
        }
        cache.insert(name.to_string(), loaded.clone());
        loaded
    }

    fn load_sni_context(&self, dir: &Path, name: &str) -> Option<SniContext> {
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        let ca = dir.join(format!("{name}.ca"));
        // Without NAME.ca, client certificates are checked against -G/-A:
        // after the switch OpenSSL verifies with the SNI context's store.
        let (ca_file, ca_dir) = if ca.is_file() {
            (Some(ca.as_path()), None)
        } else {
            (
                self.settings.ca_file.as_deref(),
                self.settings.ca_dir.as_deref(),
            )
        };
        let files = ContextFiles {
            cert: &cert,
            key: &key,
            ca_file,
            ca_dir,
        };
        let mut ignored_warnings = Vec::new();
        let ctx = build_context(&self.settings, &files, &mut ignored_warnings).ok()?;
        self.install_status_callback(&ctx);
        Some(SniContext {
            ctx,
            ocsp_path: dir.join(format!("{name}.ocsp")),
            ocsp: Mutex::new(None),
        })
    }

    /// Installs the OCSP status callback on `ctx` with `self` as its argument.
    fn install_status_callback(&self, ctx: &Context) {
        let callback: ffi::StatusCallback = status_callback;
        // SAFETY: SSL_CTX_callback_ctrl stores a generic `void (*)(void)` and
        // OpenSSL calls it back with the status-callback signature, which is
        // the type `callback` really has.
        let generic: ffi::GenericCallback =
            unsafe { std::mem::transmute::<ffi::StatusCallback, ffi::GenericCallback>(callback) };
        // SAFETY: valid context; the command expects a status callback.
        unsafe {
            ffi::SSL_CTX_callback_ctrl(
                ctx.as_ptr(),
                ffi::SSL_CTRL_SET_TLSEXT_STATUS_REQ_CB,
                Some(generic),
            )
        };
        ctx.ctrl(
            ffi::SSL_CTRL_SET_TLSEXT_STATUS_REQ_CB_ARG,
            0,
            self as *const Shared as *mut c_void,
        );
    }

    /// The staple for an SSL that now uses `current` (its SSL_CTX).
    fn staple_for(&self, current: *mut ffi::SslCtx, server_name: Option<&str>) -> Staple {
        if current == self.ctx.as_ptr() {
            let mut state = lock(&self.ocsp);
            if let DefaultOcsp::NotRead(path) = &*state {
                *state = DefaultOcsp::Read(read_ocsp_file(path).map(Arc::new));
            }
            return match &*state {
                DefaultOcsp::Read(bytes) => bytes.clone(),
                _ => None,
            };
        }
        let entry = lock(&self.sni_cache).get(server_name?).cloned().flatten()?;
        if entry.ctx.as_ptr() == current {
            entry.staple()
        } else {
            None
        }
    }
}

/// Reads the client's server name from an `SSL` inside a callback.
///
/// # Safety
/// `ssl` must be a valid SSL object; the returned string borrows from it.
unsafe fn server_name<'a>(ssl: *mut ffi::Ssl) -> Option<&'a str> {
    // SAFETY: caller guarantees a valid SSL; the result is NULL or a
    // NUL-terminated string owned by the SSL.
    let name = unsafe { ffi::SSL_get_servername(ssl, ffi::TLSEXT_NAMETYPE_host_name) };
    if name.is_null() {
        return None;
    }
    // SAFETY: non-NULL, NUL-terminated (see above).
    unsafe { CStr::from_ptr(name) }.to_str().ok()
}

/// SNI: switch the connection to the context of the client's server name
/// (spec protocols.md §3), or keep the default one.
unsafe extern "C" fn servername_callback(
    ssl: *mut ffi::Ssl,
    _alert: *mut c_int,
    arg: *mut c_void,
) -> c_int {
    let result = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: arg is the Shared registered in TlsAcceptor::new; every
        // handshake runs inside a call that holds an Arc<Shared>.
        let shared = unsafe { &*(arg as *const Shared) };
        let dir = shared.settings.sni_path.as_deref()?;
        // SAFETY: OpenSSL passes the SSL being handshaken.
        let name = unsafe { server_name(ssl) }?;
        if !is_safe_sni_name(name) {
            return None;
        }
        let entry = shared.sni_context(dir, name)?;
        // SAFETY: both pointers are valid; the SSL takes its own reference
        // on the new context.
        let switched = unsafe { ffi::SSL_set_SSL_CTX(ssl, entry.ctx.as_ptr()) };
        (!switched.is_null()).then_some(())
    }));
    match result {
        Ok(Some(())) => ffi::SSL_TLSEXT_ERR_OK,
        Ok(None) => ffi::SSL_TLSEXT_ERR_NOACK,
        Err(_) => ffi::SSL_TLSEXT_ERR_ALERT_FATAL,
    }
}

/// OCSP stapling: hand OpenSSL a copy of the response for this connection's
/// context, if there is one.
unsafe extern "C" fn status_callback(ssl: *mut ffi::Ssl, arg: *mut c_void) -> c_int {
    let result = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: arg is the Shared registered by install_status_callback;
        // every handshake runs inside a call that holds an Arc<Shared>.
        let shared = unsafe { &*(arg as *const Shared) };
        // SAFETY: OpenSSL passes the SSL being handshaken.
        let current = unsafe { ffi::SSL_get_SSL_CTX(ssl) };
        // SAFETY: as above.
        let name = unsafe { server_name(ssl) };
        let staple = shared.staple_for(current, name)?;
        let len = c_long::try_from(staple.len()).ok()?;
        // SAFETY: CRYPTO_malloc (OPENSSL_malloc) returns NULL or a buffer of
        // the requested size; OpenSSL frees what it is given below.
        let buf = unsafe { ffi::CRYPTO_malloc(staple.len(), c"tls.rs".as_ptr(), 0) };
        if buf.is_null() {
            return None;
        }
        // SAFETY: buf has room for staple.len() bytes and does not overlap it.
        unsafe { ptr::copy_nonoverlapping(staple.as_ptr(), buf.cast::<u8>(), staple.len()) };
        // SAFETY: SSL_set_tlsext_status_ocsp_resp takes ownership of the
        // OPENSSL_malloc'ed buffer of `len` bytes.
        unsafe { ffi::SSL_ctrl(ssl, ffi::SSL_CTRL_SET_TLSEXT_STATUS_REQ_OCSP_RESP, len, buf) };
        Some(())
    }));
    match result {
        Ok(Some(())) => ffi::SSL_TLSEXT_ERR_OK,
        Ok(None) => ffi::SSL_TLSEXT_ERR_NOACK,
        Err(_) => ffi::SSL_TLSEXT_ERR_ALERT_FATAL,
    }
}

/// The server side of TLS: contexts built once from [`TlsSettings`], shared
/// by all connection threads.
pub struct TlsAcceptor {
    shared: Arc<Shared>,
}

impl TlsAcceptor {
    /// Builds the default context: certificate and key (which must match),
    /// CA file/dir, verify mode, options, session cache, and the SNI and OCSP
    /// callbacks. Certificate and key problems are errors; CA problems are
    /// [`warnings`](Self::warnings).
    pub fn new(settings: &TlsSettings) -> Result<TlsAcceptor, TlsError> {
        let key = settings.key.as_deref().unwrap_or(&settings.cert);
        let files = ContextFiles {
            cert: &settings.cert,
            key,
            ca_file: settings.ca_file.as_deref(),
            ca_dir: settings.ca_dir.as_deref(),
        };
        let mut warnings = Vec::new();
        let ctx = build_context(settings, &files, &mut warnings)?;
        let ocsp = match &settings.ocsp_response {
            Some(path) => DefaultOcsp::NotRead(path.clone()),
            None => DefaultOcsp::Off,
        };
        let shared = Arc::new(Shared {
            ctx,
            settings: settings.clone(),
            sni_cache: Mutex::new(HashMap::new()),
            ocsp: Mutex::new(ocsp),
            warnings,
        });
        // The callbacks get a pointer to `shared`, which lives in the Arc at
        // a fixed address; accept() and every TlsStream hold a clone.
        shared.install_status_callback(&shared.ctx);
        let callback: ffi::ServernameCallback = servername_callback;
        // SAFETY: OpenSSL calls the stored generic pointer back with the
        // servername-callback signature, which is the type `callback` has.
        let generic: ffi::GenericCallback = unsafe {
            std::mem::transmute::<ffi::ServernameCallback, ffi::GenericCallback>(callback)
        };
        // SAFETY: valid context; the command expects a servername callback.
        unsafe {
            ffi::SSL_CTX_callback_ctrl(
                shared.ctx.as_ptr(),
                ffi::SSL_CTRL_SET_TLSEXT_SERVERNAME_CB,
                Some(generic),
            )
        };
        shared.ctx.ctrl(
            ffi::SSL_CTRL_SET_TLSEXT_SERVERNAME_ARG,
            0,
            Arc::as_ptr(&shared) as *mut c_void,
        );
        Ok(TlsAcceptor { shared })
    }

    /// Non-fatal start-up messages, e.g. `No verify locations, trying
    /// default` (pen logs these with an `SSL: ` prefix).
    pub fn warnings(&self) -> &[String] {
        &self.shared.warnings
    }

    /// Runs the server handshake on the connected, non-blocking socket
    /// `sock` (taken over), waiting for it with `poll` until the handshake
    /// succeeds, fails, or `deadline` passes.
    pub fn accept(&self, sock: OwnedFd, deadline: Instant) -> Result<TlsStream, TlsError> {
        clear_openssl_errors();
        // SAFETY: valid context; SSL_new returns a new SSL or NULL.
        let raw = unsafe { ffi::SSL_new(self.shared.ctx.as_ptr()) };
        let ssl = NonNull::new(raw).ok_or_else(|| TlsError::Setup(take_openssl_errors()))?;
        let mut stream = TlsStream {
            ssl,
            sock,
            _shared: Arc::clone(&self.shared),
            want: Want::Read,
            failed: false,
            notify_sent: false,
        };
        // SAFETY: valid SSL and an open socket that outlives it (the stream
        // frees the SSL before closing the fd); the socket BIO does not close it.
        if unsafe { ffi::SSL_set_fd(stream.ssl.as_ptr(), stream.sock.as_raw_fd()) } != 1 {
            stream.failed = true;
            return Err(TlsError::Setup(take_openssl_errors()));
        }
        // Bounded by the deadline: every pass either finishes or polls.
        loop {
            prepare_io_call();
            // SAFETY: valid SSL with a socket attached.
            let ret = unsafe { ffi::SSL_accept(stream.ssl.as_ptr()) };
            if ret == 1 {
                return Ok(stream);
            }
            let os_error = io::Error::last_os_error();
            // SAFETY: valid SSL; ret is the value SSL_accept just returned.
            let code = unsafe { ffi::SSL_get_error(stream.ssl.as_ptr(), ret) };
            let events = match code {
                ffi::SSL_ERROR_WANT_READ => libc::POLLIN,
                ffi::SSL_ERROR_WANT_WRITE => libc::POLLOUT,
                _ => {
                    stream.failed = true;
                    return Err(handshake_error(code, os_error));
                }
            };
            match wait_fd(stream.sock.as_raw_fd(), events, deadline) {
                Ok(true) => {}
                Ok(false) => {
                    stream.failed = true;
                    return Err(TlsError::HandshakeTimeout);
                }
                Err(e) => {
                    stream.failed = true;
                    return Err(TlsError::Io(e));
                }
            }
        }
    }

    /// `ssl_ocsp_response FILE` at run time: the default context staples
    /// FILE (read at the next handshake that asks for it), or nothing.
    pub fn reload_ocsp(&self, path: Option<&Path>) {
        *lock(&self.shared.ocsp) = match path {
            Some(path) => DefaultOcsp::NotRead(path.to_path_buf()),
            None => DefaultOcsp::Off,
        };
    }
}

fn handshake_error(code: c_int, os_error: io::Error) -> TlsError {
    match code {
        ffi::SSL_ERROR_SYSCALL => {
            let queued = take_openssl_errors_if_any();
            match (queued, os_error.raw_os_error()) {
                (Some(reason), _) => TlsError::Handshake(reason),
                (None, Some(errno)) if errno != 0 => TlsError::Io(os_error),
                (None, _) => TlsError::Handshake("connection closed by the client".to_string()),
            }
        }
        ffi::SSL_ERROR_ZERO_RETURN => {
            TlsError::Handshake("connection closed by the client".to_string())
        }
        _ => TlsError::Handshake(take_openssl_errors()),
    }
}

/// Waits until `fd` has one of `events` (or an error/hangup) or until
/// `deadline`; `Ok(false)` when the deadline passed.
fn wait_fd(fd: RawFd, events: c_short, deadline: Instant) -> io::Result<bool> {
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        // Round up so that a poll never returns just before the deadline.
        let left = deadline - now;
        let millis = left.as_millis().saturating_add(1).min(c_int::MAX as u128) as c_int;
        let mut pollfd = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        // SAFETY: pollfd is a valid, exclusively borrowed array of one entry.
        match unsafe { syscall!(poll(&mut pollfd, 1, millis)) } {
            Ok(0) => continue,
            Ok(_) => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Which socket readiness a [`TlsStream`] needs after `WouldBlock`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Wait until the socket is readable.
    Read,
    /// Wait until the socket is writable.
    Write,
}

/// An established TLS connection over a non-blocking socket.
pub struct TlsStream {
    ssl: NonNull<ffi::Ssl>,
    sock: OwnedFd,
    /// Keeps the contexts and the callbacks' argument alive.
    _shared: Arc<Shared>,
    want: Want,
    /// A fatal error happened: OpenSSL forbids SSL_shutdown afterwards.
    failed: bool,
    /// Our close_notify went out (see [`close_notify`](TlsStream::close_notify)).
    notify_sent: bool,
}

// SAFETY: an SSL object may move between threads as long as it is used by
// one thread at a time, which `&mut self` / ownership guarantee.
unsafe impl Send for TlsStream {}

impl TlsStream {
    /// The socket, for `poll`.
    pub fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// Reads decrypted data: `Ok(n > 0)` data, `Ok(0)` clean end of stream
    /// (close_notify or TCP EOF; also for an empty `buf`),
    /// `Err(WouldBlock)` → wait for [`want`](Self::want).
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let len = c_int::try_from(buf.len()).unwrap_or(c_int::MAX);
        prepare_io_call();
        // SAFETY: valid SSL; buf is writable for len bytes.
        let ret = unsafe { ffi::SSL_read(self.ssl.as_ptr(), buf.as_mut_ptr().cast(), len) };
        if ret > 0 {
            return Ok(ret as usize);
        }
        match self.io_error(ret) {
            Ok(()) => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Writes up to 16000 bytes of `buf`: `Ok(n)` bytes taken (partial
    /// writes are normal), `Err(WouldBlock)` → wait for
    /// [`want`](Self::want), then call again with the same data.
    pub fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let len = buf.len().min(MAX_WRITE) as c_int;
        prepare_io_call();
        // SAFETY: valid SSL; buf is readable for len bytes.
        let ret = unsafe { ffi::SSL_write(self.ssl.as_ptr(), buf.as_ptr().cast(), len) };
        if ret > 0 {
            return Ok(ret as usize);
        }
        match self.io_error(ret) {
            Ok(()) => Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "TLS connection closed by the peer",
            )),
            Err(e) => Err(e),
        }
    }

    /// Maps a failed SSL_read/SSL_write: `Ok(())` for a clean close,
    /// `WouldBlock` (recording what to wait for), or the error.
    fn io_error(&mut self, ret: c_int) -> io::Result<()> {
        let os_error = io::Error::last_os_error();
        // SAFETY: valid SSL; ret is what the I/O call just returned.
        let code = unsafe { ffi::SSL_get_error(self.ssl.as_ptr(), ret) };
        match code {
            ffi::SSL_ERROR_ZERO_RETURN => Ok(()),
            ffi::SSL_ERROR_WANT_READ => {
                self.want = Want::Read;
                Err(io::ErrorKind::WouldBlock.into())
            }
            ffi::SSL_ERROR_WANT_WRITE => {
                self.want = Want::Write;
                Err(io::ErrorKind::WouldBlock.into())
            }
            ffi::SSL_ERROR_SYSCALL => {
                self.failed = true;
                match (take_openssl_errors_if_any(), os_error.raw_os_error()) {
                    (Some(reason), _) => Err(io::Error::other(reason)),
                    (None, Some(errno)) if errno != 0 => Err(os_error),
                    // SSL_OP_IGNORE_UNEXPECTED_EOF turns TCP EOF into
                    // ZERO_RETURN; treat anything else the same way.
                    (None, _) => Ok(()),
                }
            }
            ffi::SSL_ERROR_SSL => {
                self.failed = true;
                Err(io::Error::other(take_openssl_errors()))
            }
            other => {
                self.failed = true;
                Err(io::Error::other(format!(
                    "unexpected OpenSSL error code {other}"
                )))
            }
        }
    }

    /// After `WouldBlock`: the socket event to wait for.
    pub fn want(&self) -> Want {
        self.want
    }

    /// True when OpenSSL holds decrypted bytes: `read` returns data without
    /// the socket becoming readable.
    pub fn pending(&self) -> bool {
        // SAFETY: valid SSL.
        unsafe { ffi::SSL_pending(self.ssl.as_ptr()) > 0 }
    }

    /// Waits until the socket is ready for `want` (or data is
    /// [`pending`](Self::pending) for `Want::Read`); `Ok(false)` when
    /// `deadline` passed first.
    pub fn wait(&self, want: Want, deadline: Instant) -> io::Result<bool> {
        if want == Want::Read && self.pending() {
            return Ok(true);
        }
        let events = match want {
            Want::Read => libc::POLLIN,
            Want::Write => libc::POLLOUT,
        };
        wait_fd(self.as_raw_fd(), events, deadline)
    }

    /// The TLS half-close: sends close_notify once and returns, without
    /// waiting for the peer's. `Ok(())` once it went out (or nothing can be
    /// sent any more: after a fatal error, or when already sent);
    /// `Err(WouldBlock)` → wait for [`want`](Self::want) and call again.
    ///
    /// Data the peer still sends stays readable with [`read`](Self::read):
    /// unlike [`shutdown`](Self::shutdown), this never calls `SSL_shutdown` a
    /// second time, which would read and throw away such data.
    pub fn close_notify(&mut self) -> io::Result<()> {
        if self.failed || self.notify_sent {
            return Ok(());
        }
        prepare_io_call();
        // SAFETY: valid SSL whose handshake completed. While the alert could
        // not be written (WANT_WRITE), a repeated call only re-sends it.
        let ret = unsafe { ffi::SSL_shutdown(self.ssl.as_ptr()) };
        if ret >= 0 {
            self.notify_sent = true;
            return Ok(());
        }
        self.io_error(ret)?;
        self.notify_sent = true;
        Ok(())
    }

    /// Best-effort, non-blocking close_notify (spec protocols.md §3:
    /// `SSL_shutdown`, twice if needed). Skipped after a fatal error.
    pub fn shutdown(&mut self) {
        if self.failed {
            return;
        }
        clear_openssl_errors();
        // SAFETY: valid SSL whose handshake completed.
        let first = unsafe { ffi::SSL_shutdown(self.ssl.as_ptr()) };
        if first == 0 {
            // SAFETY: as above; on a non-blocking socket this returns at once.
            unsafe { ffi::SSL_shutdown(self.ssl.as_ptr()) };
        }
        clear_openssl_errors();
    }

    /// The negotiated protocol, e.g. `"TLSv1.3"`.
    pub fn protocol_version(&self) -> &'static str {
        // SAFETY: valid SSL; SSL_get_version returns a pointer to a static
        // string inside libssl, which stays loaded for the process lifetime.
        let version = unsafe { ffi::SSL_get_version(self.ssl.as_ptr()) };
        if version.is_null() {
            return "unknown";
        }
        // SAFETY: non-NULL, NUL-terminated static string (see above).
        unsafe { CStr::from_ptr(version) }
            .to_str()
            .unwrap_or("unknown")
    }
}

impl AsFd for TlsStream {
    /// The socket, for `poll`.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

impl Drop for TlsStream {
    fn drop(&mut self) {
        // SAFETY: we own the SSL; it is freed once, before `sock` closes.
        unsafe { ffi::SSL_free(self.ssl.as_ptr()) };
    }
}

impl fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsStream")
            .field("fd", &self.as_raw_fd())
            .field("want", &self.want)
            .finish()
    }
}

impl fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsAcceptor")
            .field("cert", &self.shared.settings.cert)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<TlsAcceptor>();
        send::<TlsStream>();
    }

    #[test]
    fn protocols() {
        for old in ["ssl23", "ssl2", "ssl3", "tls1"] {
            assert_eq!(parse_protocol(old).ok(), Some(MinVersion::Any));
        }
        assert_eq!(parse_protocol("tls1.2").ok(), Some(MinVersion::Tls1_2));
        assert_eq!(parse_protocol("tls1.3").ok(), Some(MinVersion::Tls1_3));
        assert!(matches!(
            parse_protocol("tls2"),
            Err(TlsError::UnknownProtocol(_))
        ));
    }

    #[test]
    fn ssl_options() {
        assert_eq!(
            parse_ssl_option("no_tlsv1.1").ok(),
            Some(SslOption::NoTlsv1_1)
        );
        assert_eq!(
            parse_ssl_option("cipher_server_preference").ok(),
            Some(SslOption::CipherServerPreference)
        );
        assert!(parse_ssl_option("no_tlsv1.3").is_err());
        assert_eq!(SslOption::NoSslv2.bits(), 0);
    }

    #[test]
    fn sni_names_cannot_leave_the_directory() {
        for good in ["example.com", "a-b.example.org", "localhost", "x1"] {
            assert!(is_safe_sni_name(good), "{good}");
        }
        let too_long = "a".repeat(254);
        for bad in [
            "",
            "../x",
            "..",
            ".hidden",
            "a/b",
            "a..b",
            "a\\b",
            "a b",
            "naïve",
            too_long.as_str(),
        ] {
            assert!(!is_safe_sni_name(bad), "{bad:?}");
        }
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
