//! Throwaway PKI for the TLS tests: a CA, leaf certificates and OCSP
//! responses made with the `openssl` command in a test's directory, and
//! `openssl s_client` as the TLS client.

use std::path::Path;
use std::process::{Command, ExitStatus};
use std::time::Duration;

use super::process::run_command;

/// Generous bound for anything a TLS test waits for.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Runs `openssl ARGS` in `dir`; panics with its stderr if it fails.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = run_command(
        Command::new("openssl").args(args).current_dir(dir),
        Vec::new(),
        PATIENCE,
    );
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A throwaway CA in `dir` (`{name}.crt`, `{name}.key`).
pub fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
            "-subj",
            &format!("/CN={name}"),
            "-days",
            "2",
        ],
    );
}

/// `{file}.crt`/`{file}.key` for subject CN=`cn`, signed by CA `ca`.
pub fn make_leaf(dir: &Path, ca: &str, file: &str, cn: &str, serial: u32) {
    std::fs::write(
        dir.join(format!("{file}.ext")),
        format!("basicConstraints=critical,CA:FALSE\nsubjectAltName=DNS:{cn}\n"),
    )
    .expect("write extension file");
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{file}.key"),
            "-out",
            &format!("{file}.csr"),
            "-subj",
            &format!("/CN={cn}"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{file}.csr"),
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-set_serial",
            &format!("{serial:#x}"),
            "-days",
            "2",
            "-extfile",
            &format!("{file}.ext"),
            "-out",
            &format!("{file}.crt"),
        ],
    );
}

/// A DER OCSP response in `dir/out` saying certificate `serial` of CA `ca`
/// is good, signed by the CA itself.
pub fn make_ocsp_response(dir: &Path, ca: &str, serial: u32, cn: &str, out: &str) {
    let index = format!("{out}.index");
    std::fs::write(
        dir.join(&index),
        format!("V\t391231235959Z\t\t{serial:X}\tunknown\t/CN={cn}\n"),
    )
    .expect("write OCSP index");
    let request = format!("{out}.req");
    openssl(
        dir,
        &[
            "ocsp",
            "-issuer",
            &format!("{ca}.crt"),
            "-serial",
            &format!("{serial:#x}"),
            "-no_nonce",
            "-reqout",
            &request,
        ],
    );
    openssl(
        dir,
        &[
            "ocsp",
            "-index",
            &index,
            "-rsigner",
            &format!("{ca}.crt"),
            "-rkey",
            &format!("{ca}.key"),
            "-CA",
            &format!("{ca}.crt"),
            "-reqin",
            &request,
            "-respout",
            out,
            "-ndays",
            "1",
        ],
    );
}

/// The hex lines of the signature in OCSP response text: unique per
/// response, so equal lines mean the same bytes were stapled.
pub fn ocsp_signature(text: &str) -> Vec<String> {
    text.lines()
        .skip_while(|line| !line.contains("Signature Value:"))
        .skip(1)
        .map(str::trim)
        .take_while(|line| {
            !line.is_empty() && line.bytes().all(|b| b.is_ascii_hexdigit() || b == b':')
        })
        .map(str::to_string)
        .collect()
}

/// The signature lines of the DER OCSP response in file `path`.
pub fn file_ocsp_signature(path: &Path) -> Vec<String> {
    let out = run_command(
        Command::new("openssl")
            .args(["ocsp", "-noverify", "-resp_text", "-respin"])
            .arg(path),
        Vec::new(),
        PATIENCE,
    );
    let signature = ocsp_signature(&String::from_utf8_lossy(&out.stdout));
    assert!(!signature.is_empty(), "no signature in {}", path.display());
    signature
}

/// What an `openssl s_client` run printed.
pub struct ClientOutput {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl ClientOutput {
    /// stdout and stderr together, for searching and failure messages.
    pub fn text(&self) -> String {
        format!("{}\n{}", String::from_utf8_lossy(&self.stdout), self.stderr)
    }

    /// The `subject=` line of the server certificate.
    pub fn subject(&self) -> String {
        self.text()
            .lines()
            .find(|l| l.starts_with("subject="))
            .map(str::to_string)
            .unwrap_or_default()
    }
}

/// Runs `openssl s_client -connect 127.0.0.1:port ARGS` in `dir`, feeding
/// `input` on stdin (then EOF), and collects its output.
pub fn run_s_client(dir: &Path, port: u16, args: &[&str], input: Vec<u8>) -> ClientOutput {
    let out = run_command(
        Command::new("openssl")
            .arg("s_client")
            .arg("-connect")
            .arg(format!("127.0.0.1:{port}"))
            .args(args)
            .current_dir(dir),
        input,
        PATIENCE,
    );
    ClientOutput {
        status: out.status,
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
