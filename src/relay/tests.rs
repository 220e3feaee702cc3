//! The relay state machine over socketpair(2): the test holds the far end
//! of each socket pair, the relay runs on its own thread between the near
//! ends, as a pair thread does.

use super::*;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Instant;

use crate::sys::socket;

/// How long any one step may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(20);
/// More than a pipe and both socket buffers hold, so it cannot all be in
/// flight at once.
const BULK: usize = 4 << 20;

/// The monotonic clock, counting how often the guard read it.
#[derive(Default)]
struct CountingClock {
    clock: MonotonicClock,
    reads: AtomicUsize,
}

impl Clock for CountingClock {
    fn now_us(&self) -> u64 {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.clock.now_us()
    }
}

/// A socket pair: the relay's end, and the test's end in blocking mode.
fn link() -> (OwnedFd, UnixStream) {
    let (near, far) = socket::socketpair().expect("socketpair");
    let far = UnixStream::from(far);
    far.set_nonblocking(false).expect("blocking");
    far.set_read_timeout(Some(DEADLINE)).expect("read timeout");
    far.set_write_timeout(Some(DEADLINE))
        .expect("write timeout");
    (near, far)
}

fn options() -> RelayOptions {
    RelayOptions {
        idle_timeout: None,
        fastclose: FastClose::Off,
        relay_yield: true,
    }
}

/// What a relay thread hands back when its pair ended.
struct Finished {
    outcome: Outcome,
    pipes: Pipes,
    up: u64,
    down: u64,
}

/// A relay running between the test's `client` and `server` ends.
struct Running {
    client: UnixStream,
    server: UnixStream,
    ended: mpsc::Receiver<Finished>,
    guard: Arc<YieldGuard<CountingClock>>,
}

impl Running {
    fn start(pipes: Pipes, opts: RelayOptions) -> Running {
        Running::start_with(pipes, opts, None)
    }

    fn start_with(
        mut pipes: Pipes,
        opts: RelayOptions,
        mut filter: Option<Box<dyn Filter + Send>>,
    ) -> Running {
        let (client_fd, client) = link();
        let (server_fd, server) = link();
        let guard = Arc::new(YieldGuard::with_clock(CountingClock::default()));
        let relay_guard = Arc::clone(&guard);
        let (tx, ended) = mpsc::channel();
        thread::spawn(move || {
            let counters = PairCounters::default();
            let outcome = relay(
                &mut pipes,
                &relay_guard,
                ClientSide::Plain(&client_fd),
                &server_fd,
                &counters,
                opts,
                filter.as_deref_mut().map(|f| f as &mut dyn Filter),
            );
            // The sockets close after the relay returned, as in a pair.
            drop((client_fd, server_fd));
            let _ = tx.send(Finished {
                outcome,
                pipes,
                up: PairCounters::get(&counters.from_client),
                down: PairCounters::get(&counters.from_server),
            });
        });
        Running {
            client,
            server,
            ended,
            guard,
        }
    }

    /// Waits for the relay to end.
    fn end(&self) -> Finished {
        self.ended
            .recv_timeout(DEADLINE)
            .expect("the relay did not end in time")
    }

    fn clock_reads(&self) -> usize {
        self.guard.clock_reads()
    }
}

impl YieldGuard<CountingClock> {
    fn clock_reads(&self) -> usize {
        self.clock().reads.load(Ordering::Relaxed)
    }
}

/// Bytes that show a reordering or a duplicate: a counter in each 4-byte
/// word, starting from `seed`.
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len.div_ceil(4) as u32)
        .flat_map(|i| i.wrapping_add(seed).to_le_bytes())
        .take(len)
        .collect()
}

fn read_n(s: &mut UnixStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf).expect("read");
    buf
}

fn read_to_eof(s: &mut UnixStream) -> Vec<u8> {
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).expect("read to EOF");
    buf
}

/// Writes `data` from another thread, then shuts the write side down;
/// returns whether all of it was written.
fn send_in_background(s: &UnixStream, data: Vec<u8>) -> thread::JoinHandle<bool> {
    let mut w = s.try_clone().expect("clone");
    thread::spawn(move || {
        let ok = w.write_all(&data).is_ok();
        let _ = w.shutdown(Shutdown::Write);
        ok
    })
}

/// Compares without printing megabytes.
fn assert_same(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        let at = got.iter().zip(want).take_while(|(g, w)| g == w).count();
        panic!(
            "{what}: {} bytes instead of {}, the first difference at byte {at}",
            got.len(),
            want.len()
        );
    }
}

fn assert_finished(e: &Finished) {
    assert!(
        matches!(e.outcome, Outcome::Finished),
        "outcome {:?}",
        e.outcome
    );
}

#[test]
fn small_messages_cross_both_ways_and_hold_no_pipe() {
    let mut r = Running::start(Pipes::default(), options());
    let mut up = 0;
    let mut down = 0;
    for i in 0..20 {
        let request = format!("request {i}\n");
        r.client.write_all(request.as_bytes()).unwrap();
        assert_eq!(read_n(&mut r.server, request.len()), request.as_bytes());
        let reply = format!("reply {i} {}\n", "x".repeat(i * 10));
        r.server.write_all(reply.as_bytes()).unwrap();
        assert_eq!(read_n(&mut r.client, reply.len()), reply.as_bytes());
        up += request.len() as u64;
        down += reply.len() as u64;
    }
    r.client.shutdown(Shutdown::Write).unwrap();
    assert!(read_to_eof(&mut r.server).is_empty());
    r.server.shutdown(Shutdown::Write).unwrap();
    assert!(read_to_eof(&mut r.client).is_empty());
    let e = r.end();
    assert_finished(&e);
    assert_eq!((e.up, e.down), (up, down));
    assert_eq!(e.pipes.kept(), (false, false));
}

/// Sends `upload` from the client and `download` from the server at once,
/// each followed by EOF, and checks what arrives (`at_server`: the upload
/// as the relay's filter passes it on) and that the pair finished.
fn cross(mut r: Running, upload: Vec<u8>, at_server: &[u8], download: Vec<u8>) -> Finished {
    let c = send_in_background(&r.client, upload);
    let s = send_in_background(&r.server, download.clone());
    assert_same(&read_to_eof(&mut r.server), at_server, "at the server");
    assert_same(&read_to_eof(&mut r.client), &download, "at the client");
    assert!(c.join().unwrap() && s.join().unwrap());
    let e = r.end();
    assert_finished(&e);
    e
}

#[test]
fn bulk_crosses_both_ways_intact_through_splice() {
    let r = Running::start(Pipes::default(), options());
    let upload = pattern(BULK, 1);
    let e = cross(r, upload.clone(), &upload, pattern(BULK + 1234, 7_000_000));
    assert_eq!((e.up, e.down), (BULK as u64, BULK as u64 + 1234));
    // Bulk data took a pipe each way, and the empty pipes are kept.
    assert_eq!(e.pipes.kept(), (true, true));
}

/// One end sends a few bytes and EOF, then the other end sends bulk data
/// and EOF: none of it is lost.
fn half_close_then_bulk(client_first: bool) {
    let mut r = Running::start(Pipes::default(), options());
    let (first, second) = match client_first {
        true => (&mut r.client, &mut r.server),
        false => (&mut r.server, &mut r.client),
    };
    first.write_all(b"hello").unwrap();
    first.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_eof(second), b"hello");
    let bulk = pattern(BULK, 3);
    let sender = send_in_background(second, bulk.clone());
    assert_same(&read_to_eof(first), &bulk, "after the half-close");
    assert!(sender.join().unwrap());
    assert_finished(&r.end());
}

#[test]
fn client_half_close_keeps_the_reply_flowing() {
    half_close_then_bulk(true);
}

#[test]
fn server_half_close_keeps_the_client_sending() {
    half_close_then_bulk(false);
}

/// The server answers and sends EOF while the client stays open.
fn server_says_bye(r: &mut Running) {
    r.client.write_all(b"request").unwrap();
    assert_eq!(read_n(&mut r.server, 7), b"request");
    r.server.write_all(b"bye").unwrap();
    r.server.shutdown(Shutdown::Write).unwrap();
}

/// The client sends its last bytes and EOF while the server stays open.
fn client_says_bye(r: &mut Running) {
    r.client.write_all(b"bye").unwrap();
    r.client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_n(&mut r.server, 3), b"bye");
}

fn with_fastclose(fastclose: FastClose) -> RelayOptions {
    RelayOptions {
        fastclose,
        ..options()
    }
}

#[test]
fn without_fastclose_a_half_closed_pair_stays_open() {
    let mut r = Running::start(Pipes::default(), options());
    server_says_bye(&mut r);
    assert_eq!(read_to_eof(&mut r.client), b"bye");
    r.client.write_all(b"more").unwrap();
    assert_eq!(read_n(&mut r.server, 4), b"more");
    r.client.shutdown(Shutdown::Write).unwrap();
    assert!(read_to_eof(&mut r.server).is_empty());
    assert_finished(&r.end());
}

#[test]
fn fastclose_up_ends_the_pair_at_the_servers_eof() {
    let mut r = Running::start(Pipes::default(), with_fastclose(FastClose::Up));
    server_says_bye(&mut r);
    // The client never closes: the relay ends by itself.
    assert_finished(&r.end());
    assert_eq!(read_to_eof(&mut r.client), b"bye");
    assert!(read_to_eof(&mut r.server).is_empty());
}

#[test]
fn fastclose_down_ends_the_pair_at_the_clients_eof() {
    let mut r = Running::start(Pipes::default(), with_fastclose(FastClose::Down));
    client_says_bye(&mut r);
    // The server never closes: the relay ends by itself.
    assert_finished(&r.end());
    assert!(read_to_eof(&mut r.server).is_empty());
    assert!(read_to_eof(&mut r.client).is_empty());
}

#[test]
fn fastclose_down_waits_for_the_client_not_the_server() {
    let mut r = Running::start(Pipes::default(), with_fastclose(FastClose::Down));
    server_says_bye(&mut r);
    assert_eq!(read_to_eof(&mut r.client), b"bye");
    // Still relaying after the server's EOF.
    r.client.write_all(b"more").unwrap();
    assert_eq!(read_n(&mut r.server, 4), b"more");
    r.client.shutdown(Shutdown::Write).unwrap();
    assert_finished(&r.end());
}

#[test]
fn fastclose_both_ends_the_pair_at_either_eof() {
    let mut r = Running::start(Pipes::default(), with_fastclose(FastClose::Both));
    server_says_bye(&mut r);
    assert_finished(&r.end());
    assert_eq!(read_to_eof(&mut r.client), b"bye");

    let mut r = Running::start(Pipes::default(), with_fastclose(FastClose::Both));
    client_says_bye(&mut r);
    assert_finished(&r.end());
    assert!(read_to_eof(&mut r.server).is_empty());
}

#[test]
fn idle_timeout_ends_a_silent_pair() {
    let idle = Duration::from_millis(200);
    let opts = RelayOptions {
        idle_timeout: Some(idle),
        ..options()
    };
    let mut r = Running::start(Pipes::default(), opts);
    r.client.write_all(b"ping").unwrap();
    assert_eq!(read_n(&mut r.server, 4), b"ping");
    let silent_since = Instant::now();
    let e = r.end();
    assert!(
        matches!(e.outcome, Outcome::IdleTimeout),
        "outcome {:?}",
        e.outcome
    );
    assert!(silent_since.elapsed() >= idle);
    assert!(read_to_eof(&mut r.client).is_empty());
}

/// Bulk both ways through a relay on `pipes`; returns the pipes.
fn bulk_pair(pipes: Pipes, seed: u32) -> Pipes {
    let r = Running::start(pipes, options());
    let upload = pattern(BULK, seed);
    cross(
        r,
        upload.clone(),
        &upload,
        pattern(BULK, seed.wrapping_mul(3)),
    )
    .pipes
}

#[test]
fn the_next_pair_reuses_the_pipes() {
    let pipes = bulk_pair(Pipes::default(), 11);
    assert_eq!(pipes.kept(), (true, true));
    let pipes = bulk_pair(pipes, 12);
    assert_eq!(pipes.kept(), (true, true));
}

#[test]
fn a_pipe_left_with_bytes_is_not_reused() {
    let pipes = bulk_pair(Pipes::default(), 21);
    // The server reads nothing: the client's bytes fill the server's
    // socket and the pipe until the idle timeout ends the pair.
    let opts = RelayOptions {
        idle_timeout: Some(Duration::from_millis(300)),
        ..options()
    };
    let r = Running::start(pipes, opts);
    let stale = send_in_background(&r.client, vec![b'!'; BULK]);
    let e = r.end();
    assert!(
        matches!(e.outcome, Outcome::IdleTimeout),
        "outcome {:?}",
        e.outcome
    );
    drop(r);
    // The writer fails once the relay's sockets are closed.
    assert!(!stale.join().unwrap());
    assert_eq!(e.pipes.kept(), (false, true));
    // The next pair gets exactly its own bytes.
    let pipes = bulk_pair(e.pipes, 22);
    assert_eq!(pipes.kept(), (true, true));
}

/// Upper-cases the client's bytes, appends a trailer at its EOF, and
/// records what the server sent.
struct Shouting {
    seen_from_server: Arc<Mutex<Vec<u8>>>,
}

impl Filter for Shouting {
    fn client_data(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), Vec<u8>> {
        if input.starts_with(b"forbidden") {
            return Err(b"refused\n".to_vec());
        }
        out.extend(input.iter().map(u8::to_ascii_uppercase));
        Ok(())
    }
    fn server_data(&mut self, data: &[u8]) {
        self.seen_from_server
            .lock()
            .unwrap()
            .extend_from_slice(data);
    }
    fn client_eof(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"<eof>");
    }
}

fn start_shouting() -> (Running, Arc<Mutex<Vec<u8>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let filter = Shouting {
        seen_from_server: Arc::clone(&seen),
    };
    let r = Running::start_with(Pipes::default(), options(), Some(Box::new(filter)));
    (r, seen)
}

#[test]
fn a_filter_sees_and_rewrites_the_bytes() {
    let (mut r, seen) = start_shouting();
    r.client.write_all(b"hello ").unwrap();
    assert_eq!(read_n(&mut r.server, 6), b"HELLO ");
    r.client.write_all(b"world").unwrap();
    r.client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_eof(&mut r.server), b"WORLD<eof>");
    let reply = pattern(BULK, 9);
    let s = send_in_background(&r.server, reply.clone());
    assert_same(&read_to_eof(&mut r.client), &reply, "at the client");
    assert!(s.join().unwrap());
    let e = r.end();
    assert_finished(&e);
    assert_eq!((e.up, e.down), (11, BULK as u64));
    assert_same(&seen.lock().unwrap(), &reply, "seen by the filter");
    // The copy path needs no pipe.
    assert_eq!(e.pipes.kept(), (false, false));
}

#[test]
fn a_filter_copies_bulk_both_ways_intact() {
    let (r, _seen) = start_shouting();
    // Lower-case letters only, so the filter's output is predictable.
    let upload: Vec<u8> = (0..BULK).map(|i| b'a' + (i % 26) as u8).collect();
    let mut expected = upload.to_ascii_uppercase();
    expected.extend_from_slice(b"<eof>");
    cross(r, upload, &expected, pattern(BULK, 4));
}

#[test]
fn a_refusing_filter_answers_the_client_and_ends_the_pair() {
    let (mut r, _seen) = start_shouting();
    r.client.write_all(b"forbidden request").unwrap();
    let e = r.end();
    assert!(
        matches!(e.outcome, Outcome::Refused),
        "outcome {:?}",
        e.outcome
    );
    assert_eq!(read_to_eof(&mut r.client), b"refused\n");
    assert!(read_to_eof(&mut r.server).is_empty());
}

/// Request and reply, `n` times, each waiting for the other.
fn converse(r: &mut Running, n: usize) {
    for _ in 0..n {
        r.client.write_all(b"ping").unwrap();
        assert_eq!(read_n(&mut r.server, 4), b"ping");
        r.server.write_all(b"pong").unwrap();
        assert_eq!(read_n(&mut r.client, 4), b"pong");
    }
}

/// The client, then the server, sends EOF; the pair ends.
fn close_in_turn(r: &mut Running) {
    r.client.shutdown(Shutdown::Write).unwrap();
    assert!(read_to_eof(&mut r.server).is_empty());
    r.server.shutdown(Shutdown::Write).unwrap();
    assert!(read_to_eof(&mut r.client).is_empty());
    assert_finished(&r.end());
}

#[test]
fn a_conversation_yields_unless_relay_yield_is_off() {
    let mut r = Running::start(Pipes::default(), options());
    converse(&mut r, 5);
    // The guard reads the clock around each yield.
    assert!(r.clock_reads() > 0);
    close_in_turn(&mut r);

    let opts = RelayOptions {
        relay_yield: false,
        ..options()
    };
    let mut r = Running::start(Pipes::default(), opts);
    converse(&mut r, 5);
    close_in_turn(&mut r);
    assert_eq!(r.clock_reads(), 0);
}

#[test]
fn one_exchange_does_not_yield() {
    let mut r = Running::start(Pipes::default(), options());
    converse(&mut r, 1);
    assert_eq!(r.clock_reads(), 0);
    close_in_turn(&mut r);
}
