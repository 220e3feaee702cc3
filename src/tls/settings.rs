//! What the operator asked of TLS: the `-E -K -G -A -R -Z -L` options and
//! the `ssl_*` commands (man/pen.1, TLS TERMINATION), gathered in one
//! [`TlsSettings`], plus the parsed form of those commands ([`TlsCommand`]).
//!
//! Plain data only: turning it into OpenSSL calls is `context`'s job.

use std::path::PathBuf;

use super::TlsError;

/// Everything that shapes the TLS contexts: the command-line options and the
/// `ssl_*` commands. Comparable, so that re-applying the same commands can be
/// recognised and costs nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// `-E`: certificate chain (PEM); TLS is off without it.
    pub cert: Option<PathBuf>,
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
            cert: Some(cert),
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

/// Parses the `-L` argument. The historical `ssl23`, `ssl2`, `ssl3` and
/// `tls1` all mean "any version OpenSSL allows" (doc/pen-0.34.1.md, "TLS": with
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

/// One `ssl_option` value (doc/pen-0.34.1.md, "TLS").
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
    /// does, doc/pen-0.34.1.md, "TLS").
    RenegotiationInterval(u64),
    /// `ssl_handshake_timeout SECONDS` (ours): limit for a client's handshake.
    HandshakeTimeout(u64),
}

impl TlsCommand {
    /// The command's name, as the operator types it.
    pub fn name(&self) -> &'static str {
        match self {
            TlsCommand::Ciphers(_) => "ssl_ciphers",
            TlsCommand::Option(_) => "ssl_option",
            TlsCommand::SniPath(_) => "ssl_sni_path",
            TlsCommand::OcspResponse(_) => "ssl_ocsp_response",
            TlsCommand::RenegotiationInterval(_) => "ssl_client_renegotiation_interval",
            TlsCommand::HandshakeTimeout(_) => "ssl_handshake_timeout",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
