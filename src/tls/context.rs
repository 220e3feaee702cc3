//! Building the server `SSL_CTX` from [`TlsSettings`]: certificate and key,
//! CA locations, verify mode, ciphers, options, session cache and OCSP
//! stapling (man/pen.1, TLS TERMINATION). [`TlsAcceptor`] owns the default
//! context together with the state its OpenSSL callbacks need; the SNI
//! contexts (`sni`) are built here too, from the same settings.

use libc::{c_int, c_long, c_void};
use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::fmt;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::ptr::{self, NonNull};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::error::{
    clear_openssl_errors, describe_errors, drain_openssl_errors, is_key_mismatch,
    take_openssl_errors,
};
use super::sni::{self, server_name, SniContext};
use super::{ffi, lock, stream, MinVersion, SslOption, TlsError, TlsSettings, TlsStream};

/// Largest OCSP response file that is stapled; bigger files are ignored.
const MAX_OCSP_RESPONSE: u64 = 1024 * 1024;

/// Fixed session-id context so that cached sessions can be resumed.
const SESSION_ID_CONTEXT: &[u8] = b"pen";

/// Pen pins ECDH to NIST P-256 (observed: `Server Temp Key: ECDH, prime256v1`).
const ECDH_GROUPS: &CStr = c"P-256";

impl MinVersion {
    /// The `SSL_CTX_set_min_proto_version` value; `None` leaves OpenSSL's.
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

impl SslOption {
    /// The `SSL_OP_*` bits this option sets.
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

/// `path` as a C string for OpenSSL's file-loading functions.
fn c_path(path: &Path) -> Result<CString, String> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| "path contains a NUL byte".to_string())
}

/// An owned `SSL_CTX` reference.
pub(super) struct Context(NonNull<ffi::SslCtx>);

// SAFETY: an SSL_CTX is internally locked for the operations used after
// set-up (SSL_new, SSL_set_SSL_CTX, reference counting); all configuration
// happens before the context is shared.
unsafe impl Send for Context {}
// SAFETY: see Send.
unsafe impl Sync for Context {}

impl Context {
    pub(super) fn as_ptr(&self) -> *mut ffi::SslCtx {
        self.0.as_ptr()
    }

    /// `SSL_CTX_ctrl`, the entry point behind many `SSL_CTX_*` macros.
    pub(super) fn ctrl(&self, cmd: c_int, larg: c_long, parg: *mut c_void) -> c_long {
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
pub(super) struct ContextFiles<'a> {
    pub(super) cert: &'a Path,
    pub(super) key: &'a Path,
    pub(super) ca_file: Option<&'a Path>,
    pub(super) ca_dir: Option<&'a Path>,
}

/// Whether `path` can be read and holds no PEM private key block (any of
/// `PRIVATE KEY`, `RSA PRIVATE KEY`, `EC PRIVATE KEY`, `ENCRYPTED PRIVATE
/// KEY`).
fn has_no_pem_key(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|pem| {
        !pem.windows(b"PRIVATE KEY-----".len())
            .any(|w| w == b"PRIVATE KEY-----")
    })
}

/// Builds a server context from `settings` and `files`. Non-fatal problems
/// (CA locations) are appended to `warnings`.
pub(super) fn build_context(
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
        // doc/pen-0.34.1.md, "TLS": errors in ssl_ciphers are ignored.
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
    // Read whole flights and records with one read(2) each, where OpenSSL
    // otherwise reads a record's 5-byte header and its body separately
    // (bench/README.md, "CPU per unit of work"). The stream then asks
    // SSL_has_pending, not SSL_pending, for bytes poll() cannot see.
    ctx.ctrl(ffi::SSL_CTRL_SET_READ_AHEAD, 1, ptr::null_mut());
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
        } else if has_no_pem_key(files.key) {
            // OpenSSL only says "decoder routines::unsupported" here.
            TlsError::NoPrivateKey {
                path: files.key.to_path_buf(),
                in_certificate: files.key == files.cert,
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

    // doc/pen-0.34.1.md, "TLS": the CA names sent in a CertificateRequest come
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
/// loadable (doc/pen-0.34.1.md, "TLS"), with pen's messages as warnings.
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

/// Reads a stapling response; missing, unreadable, empty or oversized files
/// give `None` (doc/pen-0.34.1.md, "TLS": no staple).
pub(super) fn read_ocsp_file(path: &Path) -> Option<Vec<u8>> {
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
/// asks for one, then kept until `reload_ocsp` (doc/pen-0.34.1.md, "TLS").
enum DefaultOcsp {
    Off,
    NotRead(PathBuf),
    Read(Staple),
}

/// An OCSP response to staple (shared, so a handshake copies it outside locks
/// only once, into OpenSSL's buffer), or none.
pub(super) type Staple = Option<Arc<Vec<u8>>>;

/// State shared by the acceptor, its streams and the OpenSSL callbacks
/// (which receive a pointer to it as their `arg`).
pub(super) struct AcceptorState {
    pub(super) ctx: Context,
    pub(super) settings: TlsSettings,
    /// Contexts per SNI name; `None` caches a failure to load.
    pub(super) sni_cache: Mutex<HashMap<String, Option<Arc<SniContext>>>>,
    ocsp: Mutex<DefaultOcsp>,
    warnings: Vec<String>,
}

impl AcceptorState {
    /// Installs the OCSP status callback on `ctx` with `self` as its argument.
    pub(super) fn install_status_callback(&self, ctx: &Context) {
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
            self as *const AcceptorState as *mut c_void,
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

/// OCSP stapling: hand OpenSSL a copy of the response for this connection's
/// context, if there is one.
unsafe extern "C" fn status_callback(ssl: *mut ffi::Ssl, arg: *mut c_void) -> c_int {
    let result = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: arg is the AcceptorState registered by install_status_callback;
        // every handshake runs inside a call that holds an Arc<AcceptorState>.
        let shared = unsafe { &*(arg as *const AcceptorState) };
        // SAFETY: OpenSSL passes the SSL being handshaken.
        let current = unsafe { ffi::SSL_get_SSL_CTX(ssl) };
        // SAFETY: as above.
        let name = unsafe { server_name(ssl) };
        let staple = shared.staple_for(current, name)?;
        let len = c_long::try_from(staple.len()).ok()?;
        // SAFETY: CRYPTO_malloc (OPENSSL_malloc) returns NULL or a buffer of
        // the requested size; OpenSSL frees what it is given below.
        let buf = unsafe { ffi::CRYPTO_malloc(staple.len(), c"tls/context.rs".as_ptr(), 0) };
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
    shared: Arc<AcceptorState>,
}

impl TlsAcceptor {
    /// Builds the default context: certificate and key (which must match),
    /// CA file/dir, verify mode, options, session cache, and the SNI and OCSP
    /// callbacks. Certificate and key problems are errors; CA problems are
    /// [`warnings`](Self::warnings).
    pub fn new(settings: &TlsSettings) -> Result<TlsAcceptor, TlsError> {
        let cert = settings.cert.as_deref().ok_or(TlsError::NoCertificate)?;
        let key = settings.key.as_deref().unwrap_or(cert);
        let files = ContextFiles {
            cert,
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
        let shared = Arc::new(AcceptorState {
            ctx,
            settings: settings.clone(),
            sni_cache: Mutex::new(HashMap::new()),
            ocsp: Mutex::new(ocsp),
            warnings,
        });
        // The callbacks get a pointer to `shared`, which lives in the Arc at
        // a fixed address; accept() and every TlsStream hold a clone.
        shared.install_status_callback(&shared.ctx);
        sni::install_servername_callback(&shared);
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
        stream::handshake(&self.shared, sock, deadline)
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
    fn no_sslv2_sets_no_bits() {
        assert_eq!(SslOption::NoSslv2.bits(), 0);
    }
}
