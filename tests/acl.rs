//! ACLs on live traffic: abuse server (-B) with client_acl, per-server
//! ACLs, and control_acl.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;

#[test]
fn abuse_server_gets_clients_denied_by_client_acl() {
    let a = Backend::start("A", Behaviour::Name);
    let b = Backend::start("B", Behaviour::Name);
    let abuse = Backend::start("ABUSE", Behaviour::Name);
    let port = free_port();
    let _pen = Pen::start(
        port,
        &[
            "-B",
            &abuse.spec(),
            "-o",
            "acl 1 permit 127.0.0.1",
            "-o",
            "client_acl 1",
            &format!("127.0.0.1:{port}"),
            &a.spec(),
            &b.spec(),
        ],
    );
    assert_eq!(ask("127.0.0.2", port), "ABUSE");
    assert_eq!(ask("127.0.0.1", port), "B");
    assert_eq!(ask("127.0.0.3", port), "ABUSE");
}

#[test]
fn denied_clients_without_abuse_server_are_closed_not_sent_to_emergency() {
    let a = Backend::start("A", Behaviour::Name);
    let e = Backend::start("E", Behaviour::Name);
    let port = free_port();
    let _pen = Pen::start(
        port,
        &[
            "-e",
            &e.spec(),
            "-o",
            "acl 1 permit 127.0.0.1",
            "-o",
            "client_acl 1",
            &format!("127.0.0.1:{port}"),
            &a.spec(),
        ],
    );
    assert_eq!(ask("127.0.0.2", port), "");
    assert_eq!(ask("127.0.0.1", port), "A");
}

#[test]
fn masks_and_per_server_acls() {
    let a = Backend::start("A", Behaviour::Name);
    let b = Backend::start("B", Behaviour::Name);
    let port = free_port();
    // server 1 only for 127.0.5.0/24; everyone else fails over to server 0.
    let _pen = Pen::start(
        port,
        &[
            "-o",
            "acl 2 permit 127.0.5.0 255.255.255.0",
            "-o",
            "server 1 acl 2",
            "-r",
            &format!("127.0.0.1:{port}"),
            &a.spec(),
            &b.spec(),
        ],
    );
    // positional backends overwrite server 1 but keep its acl
    // (doc/pen-0.34.1.md, "Start-up order")
    assert_eq!(ask("127.0.5.9", port), "B");
    assert_eq!(ask("127.0.6.9", port), "A"); // rr would pick 1: denied -> 0
}

#[test]
fn control_acl_rejects_without_reply() {
    let a = Backend::start("A", Behaviour::Name);
    let port = free_port();
    let cport = free_port();
    let _pen = Pen::start(
        port,
        &[
            "-u",
            "root",
            "-C",
            &format!("127.0.0.1:{cport}"),
            "-o",
            "acl 3 deny 127.0.0.1",
            "-o",
            "control_acl 3",
            &format!("127.0.0.1:{port}"),
            &a.spec(),
        ],
    );
    wait_for_port(cport);
    let mut s = TcpStream::connect(local(cport)).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.write_all(b"mode\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert_eq!(out, "");
    // another source address (.2) is permitted: the verdict for a
    // non-matching client is the opposite of the last entry.
    let mut s = connect_from("127.0.0.2", local(cport)).unwrap();
    s.write_all(b"mode\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert_eq!(out, "no hash no roundrobin no stubborn no weight no prio\n");
}
