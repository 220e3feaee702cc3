//! The hand-written part of OpenSSL 3 that `tls` uses: opaque types, the
//! functions (linked from libssl / libcrypto at build time) and the numeric
//! constants behind the header macros.
//!
//! Many documented OpenSSL "functions" are macros over `SSL_CTX_ctrl`,
//! `SSL_CTX_callback_ctrl` or `SSL_ctrl`; they are bound here through those
//! entry points and the `SSL_CTRL_*` numbers. Every constant is declared
//! through `constants!`, which also lists it for the unit test that compares
//! it against the installed headers (compiled with `cc`).

// The C names are kept verbatim so they can be grepped in the OpenSSL headers.
#![allow(non_upper_case_globals)]

use libc::{c_char, c_int, c_long, c_uint, c_ulong, c_void, size_t};

/// `SSL_CTX` (opaque).
#[repr(C)]
pub struct SslCtx {
    _private: [u8; 0],
}

/// `SSL` (opaque).
#[repr(C)]
pub struct Ssl {
    _private: [u8; 0],
}

/// `SSL_METHOD` (opaque).
#[repr(C)]
pub struct SslMethod {
    _private: [u8; 0],
}

/// `STACK_OF(X509_NAME)` (opaque).
#[repr(C)]
pub struct X509NameStack {
    _private: [u8; 0],
}

/// `int (*)(SSL *, int *al, void *arg)`: the SNI (servername) callback.
pub type ServernameCallback = unsafe extern "C" fn(*mut Ssl, *mut c_int, *mut c_void) -> c_int;
/// `int (*)(SSL *, void *arg)`: the OCSP status-request callback.
pub type StatusCallback = unsafe extern "C" fn(*mut Ssl, *mut c_void) -> c_int;
/// `void (*)(void)`: the generic callback type of `SSL_CTX_callback_ctrl`.
pub type GenericCallback = unsafe extern "C" fn();

/// Declares the constants and, for the header test, a table of them all.
macro_rules! constants {
    ($( $(#[$meta:meta])* $name:ident : $ty:ty = $value:expr; )*) => {
        $( $(#[$meta])* pub const $name: $ty = $value; )*

        /// Every constant above with its value, checked against the C headers.
        #[cfg(test)]
        pub const ALL_CONSTANTS: &[(&str, i128)] = &[ $( (stringify!($name), $name as i128) ),* ];
    };
}

constants! {
    SSL_FILETYPE_PEM: c_int = 1;

    SSL_VERIFY_NONE: c_int = 0x00;
    SSL_VERIFY_PEER: c_int = 0x01;
    SSL_VERIFY_FAIL_IF_NO_PEER_CERT: c_int = 0x02;

    SSL_ERROR_SSL: c_int = 1;
    SSL_ERROR_WANT_READ: c_int = 2;
    SSL_ERROR_WANT_WRITE: c_int = 3;
    SSL_ERROR_SYSCALL: c_int = 5;
    SSL_ERROR_ZERO_RETURN: c_int = 6;

    // SSL_CTX_set_options / SSL_OP_* (uint64_t in OpenSSL 3).
    SSL_OP_ALL: u64 = 0x8000_0850;
    SSL_OP_IGNORE_UNEXPECTED_EOF: u64 = 1 << 7;
    SSL_OP_CIPHER_SERVER_PREFERENCE: u64 = 1 << 22;
    /// SSLv2 support is gone from OpenSSL; the option is 0 (no effect).
    SSL_OP_NO_SSLv2: u64 = 0;
    SSL_OP_NO_SSLv3: u64 = 1 << 25;
    SSL_OP_NO_TLSv1: u64 = 1 << 26;
    SSL_OP_NO_TLSv1_2: u64 = 1 << 27;
    SSL_OP_NO_TLSv1_1: u64 = 1 << 28;

    SSL_MODE_ENABLE_PARTIAL_WRITE: c_long = 0x1;
    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER: c_long = 0x2;
    SSL_SESS_CACHE_SERVER: c_long = 0x2;

    TLS1_VERSION: c_long = 0x0301;
    TLS1_1_VERSION: c_long = 0x0302;
    TLS1_2_VERSION: c_long = 0x0303;
    TLS1_3_VERSION: c_long = 0x0304;

    // `cmd` numbers of SSL_CTX_ctrl / SSL_CTX_callback_ctrl / SSL_ctrl.
    /// SSL_CTX_set_mode.
    SSL_CTRL_MODE: c_int = 33;
    /// SSL_CTX_set_read_ahead.
    SSL_CTRL_SET_READ_AHEAD: c_int = 41;
    /// SSL_CTX_set_session_cache_mode.
    SSL_CTRL_SET_SESS_CACHE_MODE: c_int = 44;
    /// SSL_CTX_set_tlsext_servername_callback (callback_ctrl).
    SSL_CTRL_SET_TLSEXT_SERVERNAME_CB: c_int = 53;
    /// SSL_CTX_set_tlsext_servername_arg.
    SSL_CTRL_SET_TLSEXT_SERVERNAME_ARG: c_int = 54;
    /// SSL_CTX_set_tlsext_status_cb (callback_ctrl).
    SSL_CTRL_SET_TLSEXT_STATUS_REQ_CB: c_int = 63;
    /// SSL_CTX_set_tlsext_status_arg.
    SSL_CTRL_SET_TLSEXT_STATUS_REQ_CB_ARG: c_int = 64;
    /// SSL_set_tlsext_status_ocsp_resp (SSL_ctrl; OpenSSL takes the buffer).
    SSL_CTRL_SET_TLSEXT_STATUS_REQ_OCSP_RESP: c_int = 71;
    /// SSL_CTX_set1_groups_list.
    SSL_CTRL_SET_GROUPS_LIST: c_int = 92;
    /// SSL_CTX_set_min_proto_version.
    SSL_CTRL_SET_MIN_PROTO_VERSION: c_int = 123;

    // Decoding packed error codes (ERR_GET_LIB / ERR_GET_REASON are inline
    // functions in err.h).
    ERR_SYSTEM_FLAG: c_ulong = 0x8000_0000;
    ERR_LIB_OFFSET: c_ulong = 23;
    ERR_LIB_MASK: c_ulong = 0xFF;
    ERR_REASON_MASK: c_ulong = 0x7F_FFFF;
    ERR_LIB_X509: c_ulong = 11;
    X509_R_KEY_VALUES_MISMATCH: c_ulong = 116;

    TLSEXT_NAMETYPE_host_name: c_int = 0;
    SSL_TLSEXT_ERR_OK: c_int = 0;
    SSL_TLSEXT_ERR_ALERT_FATAL: c_int = 2;
    SSL_TLSEXT_ERR_NOACK: c_int = 3;
}

#[link(name = "ssl")]
extern "C" {
    pub fn TLS_server_method() -> *const SslMethod;
    pub fn SSL_CTX_new(method: *const SslMethod) -> *mut SslCtx;
    pub fn SSL_CTX_free(ctx: *mut SslCtx);
    pub fn SSL_CTX_use_certificate_chain_file(ctx: *mut SslCtx, file: *const c_char) -> c_int;
    pub fn SSL_CTX_use_PrivateKey_file(ctx: *mut SslCtx, file: *const c_char, kind: c_int)
        -> c_int;
    pub fn SSL_CTX_check_private_key(ctx: *const SslCtx) -> c_int;
    pub fn SSL_CTX_load_verify_locations(
        ctx: *mut SslCtx,
        ca_file: *const c_char,
        ca_path: *const c_char,
    ) -> c_int;
    pub fn SSL_CTX_set_default_verify_paths(ctx: *mut SslCtx) -> c_int;
    pub fn SSL_load_client_CA_file(file: *const c_char) -> *mut X509NameStack;
    /// Takes ownership of `list`.
    pub fn SSL_CTX_set_client_CA_list(ctx: *mut SslCtx, list: *mut X509NameStack);
    pub fn SSL_CTX_set_verify(
        ctx: *mut SslCtx,
        mode: c_int,
        callback: Option<unsafe extern "C" fn(c_int, *mut c_void) -> c_int>,
    );
    pub fn SSL_CTX_set_options(ctx: *mut SslCtx, options: u64) -> u64;
    pub fn SSL_CTX_set_session_id_context(
        ctx: *mut SslCtx,
        sid_ctx: *const u8,
        sid_ctx_len: c_uint,
    ) -> c_int;
    pub fn SSL_CTX_set_cipher_list(ctx: *mut SslCtx, list: *const c_char) -> c_int;
    pub fn SSL_CTX_ctrl(ctx: *mut SslCtx, cmd: c_int, larg: c_long, parg: *mut c_void) -> c_long;
    pub fn SSL_CTX_callback_ctrl(
        ctx: *mut SslCtx,
        cmd: c_int,
        callback: Option<GenericCallback>,
    ) -> c_long;

    pub fn SSL_new(ctx: *mut SslCtx) -> *mut Ssl;
    pub fn SSL_free(ssl: *mut Ssl);
    pub fn SSL_set_fd(ssl: *mut Ssl, fd: c_int) -> c_int;
    pub fn SSL_accept(ssl: *mut Ssl) -> c_int;
    pub fn SSL_read(ssl: *mut Ssl, buf: *mut c_void, num: c_int) -> c_int;
    pub fn SSL_write(ssl: *mut Ssl, buf: *const c_void, num: c_int) -> c_int;
    pub fn SSL_get_error(ssl: *const Ssl, ret: c_int) -> c_int;
    pub fn SSL_has_pending(ssl: *const Ssl) -> c_int;
    pub fn SSL_shutdown(ssl: *mut Ssl) -> c_int;
    pub fn SSL_get_version(ssl: *const Ssl) -> *const c_char;
    pub fn SSL_get_servername(ssl: *const Ssl, kind: c_int) -> *const c_char;
    pub fn SSL_set_SSL_CTX(ssl: *mut Ssl, ctx: *mut SslCtx) -> *mut SslCtx;
    pub fn SSL_get_SSL_CTX(ssl: *const Ssl) -> *mut SslCtx;
    pub fn SSL_ctrl(ssl: *mut Ssl, cmd: c_int, larg: c_long, parg: *mut c_void) -> c_long;
}

#[link(name = "crypto")]
extern "C" {
    pub fn ERR_get_error() -> c_ulong;
    pub fn ERR_error_string_n(error: c_ulong, buf: *mut c_char, len: size_t);
    pub fn ERR_clear_error();
    /// `OPENSSL_malloc` is a macro over this.
    pub fn CRYPTO_malloc(num: size_t, file: *const c_char, line: c_int) -> *mut c_void;
}

#[cfg(test)]
mod tests {
    use super::ALL_CONSTANTS;
    use std::fmt::Write as _;
    use std::process::Command;

    /// Compiles a C program that prints every macro `constants!` declares,
    /// using the installed OpenSSL headers, and compares the values.
    #[test]
    fn constants_match_installed_headers() {
        let dir = std::env::temp_dir().join(format!(
            "pen-tls-consts-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        struct RemoveOnDrop(std::path::PathBuf);
        impl Drop for RemoveOnDrop {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
        let _cleanup = RemoveOnDrop(dir.clone());
        let mut program = String::from(
            "#include <stdio.h>\n#include <openssl/ssl.h>\n#include <openssl/tls1.h>\n\
             #include <openssl/err.h>\n#include <openssl/x509err.h>\n\
             int main(void) {\n",
        );
        for (name, _) in ALL_CONSTANTS {
            writeln!(
                program,
                "    printf(\"%s %lld\\n\", \"{name}\", (long long)({name}));"
            )
            .expect("write to String");
        }
        program.push_str("    return 0;\n}\n");
        let source = dir.join("consts.c");
        let binary = dir.join("consts");
        std::fs::write(&source, program).expect("write C source");
        let compiled = Command::new("cc")
            .arg(&source)
            .arg("-o")
            .arg(&binary)
            .output()
            .expect("run cc");
        assert!(
            compiled.status.success(),
            "cc failed: {}",
            String::from_utf8_lossy(&compiled.stderr)
        );
        let run = Command::new(&binary)
            .output()
            .expect("run constants program");
        assert!(run.status.success());
        let stdout = String::from_utf8(run.stdout).expect("utf-8 output");
        let mut checked = 0;
        for line in stdout.lines() {
            let (name, value) = line.split_once(' ').expect("NAME VALUE line");
            let c_value: i128 = value.parse().expect("number");
            let rust_value = ALL_CONSTANTS
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| *v)
                .expect("known name");
            assert_eq!(
                rust_value, c_value,
                "{name}: Rust {rust_value} vs C {c_value}"
            );
            checked += 1;
        }
        assert_eq!(checked, ALL_CONSTANTS.len());
    }
}
