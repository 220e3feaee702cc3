//! Server Name Indication: the `ssl_sni_path` directory of per-name
//! certificates (`NAME.crt`, `NAME.key`, optional `NAME.ca` and `NAME.ocsp`;
//! man/pen.1, TLS TERMINATION) and the OpenSSL callback that switches a
//! handshake to the context of the name the client asked for. Contexts are
//! loaded on first use and cached, failures included.

use libc::{c_int, c_void};
use std::ffi::CStr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::context::{build_context, read_ocsp_file, AcceptorState, Context, ContextFiles, Staple};
use super::{ffi, lock};

/// SNI contexts re-read `DIR/NAME.ocsp` when their copy is this old
/// (doc/pen-0.34.1.md, "TLS").
const SNI_OCSP_MAX_AGE: Duration = Duration::from_secs(3600);

/// Bound on cached SNI names (loaded contexts and failures).
const SNI_CACHE_LIMIT: usize = 1000;

/// Longest DNS name accepted as an SNI file name.
const SNI_NAME_MAX: usize = 253;

/// True when `name` can be used as a file name inside the SNI directory:
/// a DNS-like name that cannot climb out of it (doc/pen-0.34.1.md, quirk Q28).
fn is_safe_sni_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= SNI_NAME_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        && !name.starts_with('.')
        && !name.contains("..")
}

/// A context loaded for one SNI name.
pub(super) struct SniContext {
    pub(super) ctx: Context,
    ocsp_path: PathBuf,
    /// When `ocsp_path` was last read and what it held.
    ocsp: Mutex<Option<(Instant, Staple)>>,
}

impl SniContext {
    /// This name's staple, re-read from `NAME.ocsp` once the copy is old.
    pub(super) fn staple(&self) -> Staple {
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

/// The context for SNI name `name` (already validated), loading it once.
fn sni_context(shared: &AcceptorState, dir: &Path, name: &str) -> Option<Arc<SniContext>> {
    if let Some(entry) = lock(&shared.sni_cache).get(name) {
        return entry.clone();
    }
    // Load without holding the lock; a concurrent loader of the same name
    // may win the insert below, which is harmless.
    let loaded = load_sni_context(shared, dir, name).map(Arc::new);
    let mut cache = lock(&shared.sni_cache);
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

/// Builds the context of `DIR/NAME.*`; `None` when it cannot be loaded.
fn load_sni_context(shared: &AcceptorState, dir: &Path, name: &str) -> Option<SniContext> {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    let ca = dir.join(format!("{name}.ca"));
    // Without NAME.ca, client certificates are checked against -G/-A:
    // after the switch OpenSSL verifies with the SNI context's store.
    let (ca_file, ca_dir) = if ca.is_file() {
        (Some(ca.as_path()), None)
    } else {
        (
            shared.settings.ca_file.as_deref(),
            shared.settings.ca_dir.as_deref(),
        )
    };
    let files = ContextFiles {
        cert: &cert,
        key: &key,
        ca_file,
        ca_dir,
    };
    let mut ignored_warnings = Vec::new();
    let ctx = build_context(&shared.settings, &files, &mut ignored_warnings).ok()?;
    shared.install_status_callback(&ctx);
    Some(SniContext {
        ctx,
        ocsp_path: dir.join(format!("{name}.ocsp")),
        ocsp: Mutex::new(None),
    })
}

/// Reads the client's server name from an `SSL` inside a callback.
///
/// # Safety
/// `ssl` must be a valid SSL object; the returned string borrows from it.
pub(super) unsafe fn server_name<'a>(ssl: *mut ffi::Ssl) -> Option<&'a str> {
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
/// (doc/pen-0.34.1.md, "TLS"), or keep the default one.
unsafe extern "C" fn servername_callback(
    ssl: *mut ffi::Ssl,
    _alert: *mut c_int,
    arg: *mut c_void,
) -> c_int {
    let result = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: arg is the AcceptorState registered in TlsAcceptor::new; every
        // handshake runs inside a call that holds an Arc<AcceptorState>.
        let shared = unsafe { &*(arg as *const AcceptorState) };
        let dir = shared.settings.sni_path.as_deref()?;
        // SAFETY: OpenSSL passes the SSL being handshaken.
        let name = unsafe { server_name(ssl) }?;
        if !is_safe_sni_name(name) {
            return None;
        }
        let entry = sni_context(shared, dir, name)?;
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

/// Makes `shared`'s default context call [`servername_callback`] with
/// `shared` as its argument; `shared` must stay in its `Arc` for as long as
/// the context is used.
pub(super) fn install_servername_callback(shared: &Arc<AcceptorState>) {
    let callback: ffi::ServernameCallback = servername_callback;
    // SAFETY: OpenSSL calls the stored generic pointer back with the
    // servername-callback signature, which is the type `callback` has.
    let generic: ffi::GenericCallback =
        unsafe { std::mem::transmute::<ffi::ServernameCallback, ffi::GenericCallback>(callback) };
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
        Arc::as_ptr(shared) as *mut c_void,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
