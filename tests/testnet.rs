//! The namespaced test network itself (tests/netns/testnet.sh): hosts on
//! one bridge reach each other, a VIP held on lo is not answered by ARP,
//! and dropping the network deletes every namespace.

mod common;

use common::netns::TestNet;
use common::{wait_until, ChildGuard, DEADLINE};
use std::process::{Command, Stdio};

fn namespaces() -> String {
    let out = Command::new("ip").args(["netns", "list"]).output();
    String::from_utf8_lossy(&out.expect("ip netns list").stdout).into_owned()
}

#[test]
fn hosts_talk_across_the_bridge_and_vips_stay_silent() {
    let Some(net) = TestNet::up(&["client", "server"]) else {
        return;
    };
    let name = net.name().to_string();
    net.addr("client", &["192.0.2.10/24"]);
    net.addr("server", &["192.0.2.20/24"]);
    net.vip("server", &["192.0.2.100"]);
    let mut server = net.command("server", "python3");
    server.args([
        "-c",
        "import socket\n\
         s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('0.0.0.0', 80)); s.listen()\n\
         c, a = s.accept(); c.sendall(('from %s' % a[0]).encode()); c.close()\n",
    ]);
    let _server = ChildGuard::spawn(server.stdout(Stdio::null()));
    let client = "import socket, sys\n\
         for i in range(200):\n\
         \x20   try:\n\
         \x20       s = socket.create_connection((sys.argv[1], 80), 2); break\n\
         \x20   except ConnectionRefusedError:\n\
         \x20       import time; time.sleep(0.01)\n\
         print(s.recv(99).decode())\n";
    let out = net.run("client", "python3", &["-c", client, "192.0.2.20"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "from 192.0.2.10"
    );

    // Nobody answers ARP for the VIP: the server holds it on lo only.
    let probe = "import socket\n\
         try:\n\
         \x20   socket.create_connection(('192.0.2.100', 80), 1.5); print('answered')\n\
         except OSError as e:\n\
         \x20   print('silent')\n";
    let out = net.run("client", "python3", &["-c", probe]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "silent");

    drop(_server);
    drop(net);
    let prefix = format!("{name}-");
    wait_until(DEADLINE, "the network's namespaces to go", || {
        !namespaces().contains(&prefix)
    });
}

#[test]
fn the_script_refuses_bad_names_with_one_line() {
    let out = Command::new("sh")
        .arg(common::netns::script())
        .args(["up", "bad/name", "a"])
        .output()
        .expect("run testnet.sh");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("bad network name"), "{err}");
}
