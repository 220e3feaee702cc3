//! Active health checks (`health_check`, man/penctl.1) as clients and the
//! control port see them.

mod common;
use common::*;
use std::net::TcpListener;
use std::time::{Duration, Instant};

/// pen -r in front of `backends` with a control port, `health_check 1`
/// and the other `commands` (as `-o`); (pen, control port).
fn pen_with_checks(commands: &[&str], backends: &[String]) -> (Pen, u16) {
    let control = free_port();
    let c = format!("127.0.0.1:{control}");
    let mut args = vec!["-r", "-b", "1", "-t", "1", "-u", "root", "-C", &c];
    args.extend(["-o", "health_check 1"]);
    for cmd in commands {
        args.extend(["-o", cmd]);
    }
    (Pen::serve(&args, backends), control)
}

/// The `health` line of server `n`.
fn health_line(control: u16, n: usize) -> String {
    let reply = ctl(control, "health");
    reply
        .lines()
        .find(|l| l.starts_with(&format!("{n} addr ")))
        .unwrap_or_else(|| panic!("no line for server {n} in {reply:?}"))
        .to_string()
}

fn wait_state(control: u16, n: usize, state: &str, within: Duration) -> String {
    let want = format!(" state {state} ");
    wait_for(within, &format!("server {n} to be {state}"), || {
        Some(health_line(control, n)).filter(|l| l.contains(&want))
    })
}

#[test]
fn a_dead_server_goes_down_without_failing_clients_and_comes_back() {
    let mut farm = Backend::farm(2, Behaviour::Name);
    let (pen, control) = pen_with_checks(
        &["health_check_fall 2", "health_check_rise 2"],
        &specs(&farm),
    );
    // Both pass their first probes.
    for n in 0..2 {
        wait_for(DEADLINE, "a first passed probe", || {
            Some(health_line(control, n)).filter(|l| l.contains(" last ok "))
        });
    }
    let port0 = farm[0].port;
    drop(farm.remove(0));
    let died = Instant::now();
    // Clients keep coming; none of them fails while the checks notice.
    let mut clients = 0;
    let down = loop {
        let line = health_line(control, 0);
        if line.contains(" state down ") {
            break line;
        }
        assert!(died.elapsed() < DEADLINE, "never marked down: {line}");
        let ip = format!("127.0.1.{}", 1 + clients % 250);
        let got = ask(&ip, pen.port);
        assert_eq!(got, "S1", "client {clients} from {ip}");
        clients += 1;
    };
    // F x S + the timeout, and a second for pen's whole-second clock.
    let took = died.elapsed();
    eprintln!("marked down {took:?} after the server died; {clients} clients served meanwhile");
    assert!(
        took <= Duration::from_secs(2 + 1 + 1),
        "down after {took:?}"
    );
    assert!(
        down.contains(" fails 2 ") && down.contains(" downs 1 ups 0"),
        "{down}"
    );
    assert!(down.contains(" last connect-failed "), "{down}");
    pen.wait_stderr(
        &format!("health check: server 0 (127.0.0.1:{port0}) is down after 2 failed probes in a row (last: connect-failed)"),
        DEADLINE,
    );
    // Down: new clients go to S1 only.
    for i in 0..5 {
        assert_eq!(ask(&format!("127.0.2.{}", i + 1), pen.port), "S1");
    }
    // The server comes back on the same port: up after 2 passes.
    let listener = TcpListener::bind(("127.0.0.1", port0)).expect("rebind the server's port");
    let back = Backend::start_on(listener, "S0", Behaviour::Name);
    let revived = Instant::now();
    let up = wait_state(control, 0, "up", DEADLINE);
    eprintln!(
        "marked up {:?} after the server came back",
        revived.elapsed()
    );
    assert!(revived.elapsed() <= Duration::from_secs(2 + 1 + 1));
    assert!(
        up.contains(" passes 2 ") && up.contains(" downs 1 ups 1"),
        "{up}"
    );
    pen.wait_stderr(
        &format!(
            "health check: server 0 (127.0.0.1:{port0}) is up again after 2 passed probes in a row"
        ),
        DEADLINE,
    );
    // And gets clients again (round robin, its blacklisting long over).
    wait_until(DEADLINE, "a client on S0 again", || {
        ask("127.0.3.1", pen.port) == "S0"
    });
    drop(back);
}

#[test]
fn a_wrong_answer_fails_the_probe() {
    let farm = Backend::farm(2, Behaviour::Name);
    let (pen, control) = pen_with_checks(
        &[
            "health_check_fall 2",
            "health_check_send HELLO\\r\\n",
            "health_check_expect S0",
        ],
        &specs(&farm),
    );
    let down = wait_state(control, 1, "down", DEADLINE);
    assert!(down.contains(" last mismatch "), "{down}");
    let up = health_line(control, 0);
    assert!(
        up.contains(" state up ") && up.contains(" last ok "),
        "{up}"
    );
    for i in 0..4 {
        assert_eq!(ask(&format!("127.0.4.{}", i + 1), pen.port), "S0");
    }
    // The probe text, escaped as given, and what `write` saves.
    assert_eq!(ctl(control, "health_check_send"), "HELLO\\r\\n\n");
    let dir = TempDir::new("health");
    let file = dir.path().join("saved.cfg");
    assert_eq!(ctl(control, &format!("write {}", file.display())), "");
    let saved = std::fs::read_to_string(&file).expect("the written file");
    for line in [
        "health_check 1\n",
        "health_check_fall 2\n",
        "health_check_send HELLO\\r\\n\n",
        "health_check_expect S0\n",
    ] {
        assert!(saved.contains(line), "{line:?} missing from {saved}");
    }
}

#[test]
fn checks_off_show_unchecked_and_udp_mode_refuses_them() {
    let farm = Backend::farm(1, Behaviour::Name);
    let (_pen, control) = pen_with_checks(&["health_check 0"], &specs(&farm));
    assert_eq!(ctl(control, "health_check"), "0\n");
    let line = health_line(control, 0);
    assert!(
        line.contains(" state unchecked ") && line.contains(" last none age - "),
        "{line}"
    );
    let (code, _, err) = run_pen(&["-U", "-o", "health_check 1", "127.0.0.1:1", "127.0.0.1:2"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("not supported in UDP mode"), "{err}");
}
