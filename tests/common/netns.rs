//! A test network of hosts in network namespaces joined by one bridge,
//! built and torn down by `tests/netns/testnet.sh` (which users can run
//! too). Addresses come from the documentation ranges, and every namespace
//! is the test's own, so no traffic leaves the machine.
//!
//! Tests that need it call [`TestNet::up`]: it returns `None`, after one
//! line saying why, only where network namespaces cannot exist for this
//! process (not root, or no iproute2). As root with `ip`, a failure to build
//! the network fails the test.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::process::run_command;
use super::wait::{wait_until, DEADLINE};

/// The script, from the source tree.
pub fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/netns/testnet.sh")
}

/// A network, deleted (every namespace in it) when dropped. Drop the
/// processes started in it first: declare the `TestNet` before them.
pub struct TestNet {
    name: String,
}

impl TestNet {
    /// Builds a network with one host per name, or says why it cannot and
    /// returns `None`.
    pub fn up(hosts: &[&str]) -> Option<TestNet> {
        if let Some(reason) = unavailable() {
            println!("skipping: needs network namespaces: {reason}");
            return None;
        }
        static SERIAL: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "pt{}x{}",
            std::process::id(),
            SERIAL.fetch_add(1, Ordering::Relaxed)
        );
        let net = TestNet { name };
        let mut args = vec!["up", net.name.as_str()];
        args.extend_from_slice(hosts);
        net.script(&args);
        Some(net)
    }

    /// The network's name (the namespaces are NAME-HOST).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace of `host`.
    pub fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.name)
    }

    /// Adds addresses (CIDR) to `host`'s eth0.
    pub fn addr(&self, host: &str, cidrs: &[&str]) {
        let mut args = vec!["addr", self.name.as_str(), host];
        args.extend_from_slice(cidrs);
        self.script(&args);
    }

    /// Puts addresses on `host`'s lo without it answering ARP for them,
    /// as a direct server return backend holds the VIP.
    pub fn vip(&self, host: &str, addrs: &[&str]) {
        let mut args = vec!["vip", self.name.as_str(), host];
        args.extend_from_slice(addrs);
        self.script(&args);
    }

    /// A command that runs `program` in `host`'s namespace. `ip netns exec`
    /// execs it, so the child's PID is the program's.
    pub fn command(&self, host: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.ns(host)]).arg(program);
        command
    }

    /// Runs `program args` in `host`'s namespace to completion (bounded)
    /// and returns what it printed; panics if it fails.
    pub fn run(&self, host: &str, program: &str, args: &[&str]) -> Output {
        let mut command = self.command(host, program);
        command.args(args);
        let output = run_command(&mut command, Vec::new(), Duration::from_secs(30));
        assert!(
            output.status.success(),
            "{program} {args:?} in {host}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Sets sysctls (`key=value`) in `host`'s namespace.
    pub fn sysctl(&self, host: &str, settings: &[&str]) {
        let mut args = vec!["-qw"];
        args.extend_from_slice(settings);
        self.run(host, "sysctl", &args);
    }

    /// Whether something in `host`'s namespace listens on TCP `port`.
    pub fn listening(&self, host: &str, port: u16) -> bool {
        let out = self.run(host, "ss", &["-Hltn"]);
        let suffix = format!(":{port}");
        String::from_utf8_lossy(&out.stdout).lines().any(|l| {
            l.split_whitespace()
                .nth(3)
                .is_some_and(|local| local.ends_with(&suffix))
        })
    }

    /// Waits until something in `host`'s namespace listens on TCP `port`.
    pub fn wait_listening(&self, host: &str, port: u16) {
        wait_until(DEADLINE, &format!("{host} to listen on {port}"), || {
            self.listening(host, port)
        });
    }

    /// Whether `host` holds address `addr` (on any interface).
    pub fn holds(&self, host: &str, addr: &str) -> bool {
        let out = self.run(host, "ip", &["-br", "addr", "show"]);
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .any(|word| word.split('/').next() == Some(addr))
    }

    /// The MAC address of `host`'s eth0 (lower case, as `ip` prints it).
    pub fn mac(&self, host: &str) -> String {
        let out = self.run(host, "ip", &["-br", "link", "show", "dev", "eth0"]);
        let text = String::from_utf8_lossy(&out.stdout);
        let words: Vec<&str> = text.split_whitespace().collect();
        assert!(words.len() >= 3, "ip -br link: {text}");
        words[2].to_string()
    }

    fn script(&self, args: &[&str]) {
        let mut command = Command::new("sh");
        command.arg(script()).args(args);
        let output = run_command(&mut command, Vec::new(), Duration::from_secs(30));
        assert!(
            output.status.success(),
            "testnet.sh {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        let _ = Command::new("sh")
            .arg(script())
            .args(["down", &self.name])
            .status();
    }
}

/// Why this process cannot make network namespaces, if it cannot.
fn unavailable() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not running as root".to_string());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(_) => None,
        Err(_) => Some("ip (iproute2) is not installed".to_string()),
    }
}
