//! Relaying one connection pair: a single thread polls both sockets and
//! moves bytes in both directions until both sides are done (spec
//! protocols.md §0).
//!
//! Bytes go through a pipe per direction with splice(2), so bulk data never
//! enters user space; the pipes belong to the worker thread and are reused by
//! its next pair. When the bytes must be seen (X-Forwarded-For insertion,
//! request log, dumps, TLS) a [`Filter`] is given and data is copied through
//! a buffer that exists only while bytes are in flight.
//!
//! Half-close is propagated: EOF from one side becomes shutdown(SHUT_WR) on
//! the other once everything read has been written, and the other direction
//! keeps flowing. A hang-up is only final once reads return EOF, so no data
//! is lost after a half-close (pen 0.34.1 loses it with epoll, quirks.md Q2).
//!
//! A TLS client (spec protocols.md §3) always takes the copy path: each side
//! is an `End` that reads and writes either the socket or the `TlsStream`
//! over it. TLS may need the opposite readiness (a read that must first
//! write, or the reverse), so the poll loop asks each end which events its
//! pending read and write wait for, and it drains decrypted bytes OpenSSL
//! already holds before polling. EOF passes through TLS as well: the
//! client's close_notify (or TCP EOF) becomes shutdown(SHUT_WR) towards the
//! server; the server's EOF becomes a close_notify and then shutdown(SHUT_WR)
//! on the client socket, while the client may go on sending.

use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::connections::PairCounters;
use crate::settings::FastClose;
use crate::sys::pipe;
use crate::sys::poll::{self, PollFd};
use crate::sys::socket::{self, Shutdown};
#[cfg(feature = "tls")]
use crate::tls::{TlsStream, Want};

/// Bytes asked for per splice call.
const CHUNK: usize = PIPE_SIZE;
/// The copy path's read size (pen reads 32 KiB).
const COPY_CHUNK: usize = 32 * 1024;
/// Splice pipe capacity: one splice can move a whole pipe. 256 KiB moved a
/// GB for 0.26 CPU s where 64 KiB per splice took 0.41 (bench/README.md);
/// 512 KiB and 1 MiB gained nothing more.
const PIPE_SIZE: usize = 256 * 1024;
/// Consecutive full reads a direction may do before polling again, so one
/// busy direction cannot starve the other.
const BURST: usize = 8;

/// How a pair ended.
#[derive(Debug)]
pub enum Outcome {
    /// Both directions reached EOF (or fast close applied).
    Finished,
    /// No traffic for the idle timeout.
    IdleTimeout,
    /// A socket error on either side.
    Failed(io::Error),
    /// The filter refused the client's data (e.g. oversized HTTP headers);
    /// its reply was sent to the client.
    Refused,
}

/// Sees (and may rewrite) the bytes of a pair; used instead of splice.
// `from_client`/`from_server` name the direction the bytes come from, not a
// conversion.
pub trait Filter {
    /// Bytes read from the client; append what to send to the server to
    /// `out`. `Err(reply)` closes the pair after sending `reply` to the client.
    fn client_data(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), Vec<u8>>;
    /// Bytes read from the server (passed on unchanged).
    fn server_data(&mut self, data: &[u8]);
    /// The client sent EOF: anything held back goes to the server now.
    fn client_eof(&mut self, out: &mut Vec<u8>);
}

/// Passes bytes on unchanged: the filter of a TLS pair whose bytes need
/// no other inspection.
#[cfg(feature = "tls")]
struct PassThrough;

#[cfg(feature = "tls")]
impl Filter for PassThrough {
    fn client_data(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), Vec<u8>> {
        out.extend_from_slice(input);
        Ok(())
    }
    fn server_data(&mut self, _data: &[u8]) {}
    fn client_eof(&mut self, _out: &mut Vec<u8>) {}
}

/// The client side of a pair.
pub enum ClientSide<'a> {
    /// A plain socket: spliced, or copied when a filter must see the bytes.
    Plain(&'a OwnedFd),
    /// TLS terminated by pen over the client socket (given too, for the
    /// shutdown after close_notify): always copied.
    #[cfg(feature = "tls")]
    Tls(&'a mut TlsStream, BorrowedFd<'a>),
}

/// One side of a pair as the copy path sees it: a socket, or TLS over it.
struct End<'a> {
    fd: BorrowedFd<'a>,
    #[cfg(feature = "tls")]
    tls: Option<&'a mut TlsStream>,
    /// Poll events that let the last blocked read / write go on: IN / OUT
    /// for a socket; for TLS whatever OpenSSL asked for.
    read_events: i16,
    write_events: i16,
    _stream: PhantomData<&'a mut ()>,
}

#[cfg(feature = "tls")]
fn events_for(want: Want) -> i16 {
    match want {
        Want::Read => poll::IN,
        Want::Write => poll::OUT,
    }
}

impl<'a> End<'a> {
    fn plain(fd: BorrowedFd<'a>) -> End<'a> {
        End {
            fd,
            #[cfg(feature = "tls")]
            tls: None,
            read_events: poll::IN,
            write_events: poll::OUT,
            _stream: PhantomData,
        }
    }

    #[cfg(feature = "tls")]
    fn tls(stream: &'a mut TlsStream, fd: BorrowedFd<'a>) -> End<'a> {
        End {
            fd,
            tls: Some(stream),
            read_events: poll::IN,
            write_events: poll::OUT,
            _stream: PhantomData,
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        #[cfg(feature = "tls")]
        if let Some(stream) = self.tls.as_deref_mut() {
            let result = stream.read(buf);
            if matches!(&result, Err(e) if would_block(e)) {
                self.read_events = events_for(stream.want());
            }
            return result;
        }
        socket::read(self.fd, buf)
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        #[cfg(feature = "tls")]
        if let Some(stream) = self.tls.as_deref_mut() {
            let result = stream.write(buf);
            if matches!(&result, Err(e) if would_block(e)) {
                self.write_events = events_for(stream.want());
            }
            return result;
        }
        socket::write(self.fd, buf)
    }

    /// Bytes already decrypted and waiting in OpenSSL: a read returns them
    /// without the socket becoming readable.
    fn buffered(&self) -> bool {
        #[cfg(feature = "tls")]
        if let Some(stream) = self.tls.as_deref() {
            return stream.pending();
        }
        false
    }

    /// Passes EOF on: shutdown(SHUT_WR), after a close_notify for TLS.
    /// `Err(WouldBlock)`: call again when `write_events` are ready.
    fn shutdown_write(&mut self) -> io::Result<()> {
        #[cfg(feature = "tls")]
        if let Some(stream) = self.tls.as_deref_mut() {
            // An error other than WouldBlock means the peer is gone; the
            // socket shutdown below is all that is left to do.
            if let Err(e) = stream.close_notify() {
                if would_block(&e) {
                    self.write_events = events_for(stream.want());
                    return Err(e);
                }
            }
        }
        socket::shutdown(self.fd, Shutdown::Write);
        Ok(())
    }
}

/// The splice pipes of one worker thread, created on first use and reused
/// by the thread's later pairs.
#[derive(Default)]
pub struct Pipes {
    up: Option<(OwnedFd, OwnedFd)>,
    down: Option<(OwnedFd, OwnedFd)>,
}

impl Pipes {
    fn take(slot: &mut Option<(OwnedFd, OwnedFd)>) -> io::Result<(OwnedFd, OwnedFd)> {
        match slot.take() {
            Some(p) => Ok(p),
            None => {
                let p = pipe::pipe()?;
                // Bigger pipes mean fewer splice calls for bulk transfers;
                // the kernel allocates the pages only when data flows.
                let _ = pipe::set_pipe_size(p.1.as_raw_fd(), PIPE_SIZE);
                Ok(p)
            }
        }
    }
}

/// Settings for one pair.
#[derive(Clone, Copy, Debug)]
pub struct RelayOptions {
    pub idle_timeout: Option<Duration>,
    pub fastclose: FastClose,
}

/// One direction's state.
struct Direction<'a> {
    src: BorrowedFd<'a>,
    dst: BorrowedFd<'a>,
    /// Bytes read but not yet written (in the pipe, or in `buf`).
    pending: usize,
    /// The source sent EOF.
    eof: bool,
    /// shutdown(SHUT_WR) was done on the destination.
    closed: bool,
    counter: &'a AtomicU64,
    /// Plain path: bytes read by copy and not yet written (`pending` counts
    /// them), from `held_from` on.
    held: Vec<u8>,
    held_from: usize,
    /// Plain path: this direction carries bulk data and uses splice.
    bulk: bool,
    /// The other direction is finished (see `finish_if_drained`).
    last: bool,
}

impl Direction<'_> {
    fn wants_read(&self) -> bool {
        !self.eof && self.pending == 0
    }
    /// Bytes to write, or an EOF still to pass on (a TLS close_notify that
    /// could not be sent yet).
    fn wants_write(&self) -> bool {
        self.pending > 0 || (self.eof && !self.closed)
    }
    fn done(&self) -> bool {
        self.closed
    }
    /// After EOF and a full flush, pass the EOF on. When the other
    /// direction is already finished the pair is about to be closed, and
    /// close() sends the FIN: no shutdown call is needed (both sources were
    /// read to EOF, so closing cannot turn into a reset).
    fn finish_if_drained(&mut self) {
        if self.eof && self.pending == 0 && !self.closed {
            if !self.last {
                socket::shutdown(self.dst, Shutdown::Write);
            }
            self.closed = true;
        }
    }
    /// The copy path's [`finish_if_drained`](Self::finish_if_drained):
    /// a TLS close_notify may have to wait for the socket.
    fn finish_copy_if_drained(&mut self, dst: &mut End<'_>) {
        if self.eof && self.pending == 0 && !self.closed {
            match dst.shutdown_write() {
                Err(e) if would_block(&e) => {}
                // Sent, or the peer is gone and nothing can be passed on.
                _ => self.closed = true,
            }
        }
    }
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// Small reads on the plain path: a copy through a short-lived buffer costs
/// less than two splices for a few hundred bytes (requests, small replies).
const SMALL: usize = 4096;

/// Plain path: small messages are copied, and a direction whose read fills
/// the small buffer switches to splice for the rest of the connection.
fn pump_plain(
    d: &mut Direction<'_>,
    pipe: &mut Option<(OwnedFd, OwnedFd)>,
    spare: &mut Option<(OwnedFd, OwnedFd)>,
) -> io::Result<()> {
    if !d.held.is_empty() {
        match socket::write(d.dst, &d.held[d.held_from..]) {
            Ok(w) => d.held_from += w,
            Err(e) if would_block(&e) => return Ok(()),
            Err(e) => return Err(e),
        }
        d.pending = d.held.len() - d.held_from;
        if d.pending > 0 {
            return Ok(());
        }
        d.held = Vec::new();
        d.held_from = 0;
    }
    if d.bulk {
        return pump_splice(d, bulk_pipe(pipe, spare)?);
    }
    if d.eof {
        d.finish_if_drained();
        return Ok(());
    }
    // The buffer lives only for this read, so an idle pair holds none.
    let mut buf = vec![0u8; SMALL];
    let n = match socket::read(d.src, &mut buf) {
        Ok(0) => {
            d.eof = true;
            d.finish_if_drained();
            return Ok(());
        }
        Ok(n) => n,
        Err(e) if would_block(&e) => return Ok(()),
        Err(e) => return Err(e),
    };
    PairCounters::add(d.counter, n);
    let w = match socket::write(d.dst, &buf[..n]) {
        Ok(w) => w,
        Err(e) if would_block(&e) => 0,
        Err(e) => return Err(e),
    };
    if w < n {
        buf.truncate(n);
        d.held = buf;
        d.held_from = w;
        d.pending = n - w;
    }
    if n == SMALL {
        // More is probably waiting: bulk data goes through the pipe.
        d.bulk = true;
        if d.pending == 0 {
            return pump_splice(d, bulk_pipe(pipe, spare)?);
        }
    }
    Ok(())
}

/// The direction's pipe, taken from the thread's spare (or created) the
/// first time bulk data needs it: pairs that only carry small messages
/// hold no pipe at all.
fn bulk_pipe<'p>(
    pipe: &'p mut Option<(OwnedFd, OwnedFd)>,
    spare: &mut Option<(OwnedFd, OwnedFd)>,
) -> io::Result<&'p (OwnedFd, OwnedFd)> {
    if pipe.is_none() {
        *pipe = Some(Pipes::take(spare)?);
    }
    pipe.as_ref()
        .ok_or_else(|| io::Error::other("no splice pipe"))
}

/// Splice path: src -> pipe -> dst.
fn pump_splice(d: &mut Direction<'_>, pipe: &(OwnedFd, OwnedFd)) -> io::Result<()> {
    for _ in 0..BURST {
        if d.pending > 0 {
            match pipe::splice(pipe.0.as_raw_fd(), d.dst.as_raw_fd(), d.pending) {
                Ok(n) => d.pending -= n,
                Err(e) if would_block(&e) => return Ok(()),
                Err(e) => return Err(e),
            }
            if d.pending > 0 {
                return Ok(());
            }
        }
        if d.eof {
            break;
        }
        match pipe::splice(d.src.as_raw_fd(), pipe.1.as_raw_fd(), CHUNK) {
            Ok(0) => d.eof = true,
            Ok(n) => {
                d.pending = n;
                PairCounters::add(d.counter, n);
                if n < CHUNK {
                    // The socket is most likely drained: write, then let
                    // poll() say when there is more, instead of paying for
                    // a read that would only return EAGAIN.
                    match pipe::splice(pipe.0.as_raw_fd(), d.dst.as_raw_fd(), d.pending) {
                        Ok(w) => d.pending -= w,
                        Err(e) if would_block(&e) => {}
                        Err(e) => return Err(e),
                    }
                    return Ok(());
                }
                continue;
            }
            Err(e) if would_block(&e) => break,
            Err(e) => return Err(e),
        }
    }
    if d.pending > 0 {
        if let Ok(n) = pipe::splice(pipe.0.as_raw_fd(), d.dst.as_raw_fd(), d.pending) {
            d.pending -= n;
        }
    }
    d.finish_if_drained();
    Ok(())
}

/// Copy path buffers for one direction.
#[derive(Default)]
struct CopyBuf {
    /// Bytes still to write; freed when empty so idle pairs hold no buffer.
    out: Vec<u8>,
    off: usize,
}

enum Side {
    Client,
    Server,
}

fn pump_copy(
    d: &mut Direction<'_>,
    cb: &mut CopyBuf,
    side: Side,
    filter: &mut dyn Filter,
    src: &mut End<'_>,
    dst: &mut End<'_>,
) -> Result<(), Outcome> {
    loop {
        while cb.off < cb.out.len() {
            match dst.write(&cb.out[cb.off..]) {
                Ok(n) => cb.off += n,
                Err(e) if would_block(&e) => {
                    d.pending = cb.out.len() - cb.off;
                    return Ok(());
                }
                Err(e) => return Err(Outcome::Failed(e)),
            }
        }
        cb.out = Vec::new();
        cb.off = 0;
        d.pending = 0;
        if d.eof {
            d.finish_copy_if_drained(dst);
            return Ok(());
        }
        let mut input = vec![0u8; COPY_CHUNK];
        match src.read(&mut input) {
            Ok(0) => {
                d.eof = true;
                if let Side::Client = side {
                    filter.client_eof(&mut cb.out);
                }
                if cb.out.is_empty() {
                    d.finish_copy_if_drained(dst);
                    return Ok(());
                }
            }
            Ok(n) => {
                PairCounters::add(d.counter, n);
                let data = &input[..n];
                match side {
                    Side::Client => {
                        if let Err(reply) = filter.client_data(data, &mut cb.out) {
                            let _ = src.write(&reply);
                            return Err(Outcome::Refused);
                        }
                    }
                    Side::Server => {
                        filter.server_data(data);
                        cb.out = input;
                        cb.out.truncate(n);
                    }
                }
            }
            Err(e) if would_block(&e) => return Ok(()),
            Err(e) => return Err(Outcome::Failed(e)),
        }
    }
}

/// A yield that took longer than this (µs) handed the core to something
/// that does not block soon: a CPU-bound process here, which the scheduler
/// lets run for its whole slice (1.5 to 4 ms) before it returns to the
/// yielder. Other pairs' threads give the core back within microseconds.
const SLOW_YIELD_US: u64 = 1_500;
/// How long (µs) pairs stop yielding once slow yields recur. Short, so a
/// neighbour that has gone costs little; long enough that a CPU-bound
/// neighbour costs a few delayed messages every quarter second instead of
/// a slice per message (measured in bench/README.md).
const YIELD_PAUSE_US: u64 = 250_000;
/// A slow yield that starts within this time (µs) after an earlier one
/// ended means the core is being handed away again and again.
const SLOW_AGAIN_WITHIN_US: u64 = 50_000;

/// Microseconds on [`clock_us`] before which no pair yields.
static YIELD_PAUSED_UNTIL: AtomicU64 = AtomicU64::new(0);
/// When the latest slow yield ended ([`clock_us`]; 0: none yet).
static LAST_SLOW_YIELD_END: AtomicU64 = AtomicU64::new(0);

/// Microseconds since a process-wide origin (a vDSO clock read).
fn clock_us() -> u64 {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let origin = *ORIGIN.get_or_init(std::time::Instant::now);
    u64::try_from(origin.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Until when yields pause after one that started at `start_us` and took
/// `took_us`, given when the previous slow yield ended (0: none); `None`
/// when yielding goes on.
///
/// Only a slow yield that *began after* an earlier slow one had ended
/// pauses: beside a CPU-bound neighbour every yield is slow, one after the
/// other. A one-off stall of the whole core (a hypervisor pause, a burst of
/// kernel work) makes every yield in flight slow at once, but all of them
/// began before the first of them ended; pausing for those turned the next
/// quarter second's yields into sleeps, with latency outliers of tens of
/// milliseconds (bench/README.md).
fn pause_after(start_us: u64, took_us: u64, previous_slow_end: u64) -> Option<u64> {
    if took_us <= SLOW_YIELD_US || previous_slow_end == 0 || start_us < previous_slow_end {
        return None;
    }
    (start_us - previous_slow_end <= SLOW_AGAIN_WITHIN_US).then(|| {
        start_us
            .saturating_add(took_us)
            .saturating_add(YIELD_PAUSE_US)
    })
}

/// sched_yield, unless slow yields showed a CPU-bound neighbour on this
/// core: yielding to it would delay every message by a time slice, where a
/// thread that sleeps in poll() and is woken by its data preempts it.
fn conversation_yield() {
    let start = clock_us();
    if start < YIELD_PAUSED_UNTIL.load(Ordering::Relaxed) {
        return;
    }
    std::thread::yield_now();
    let took = clock_us().saturating_sub(start);
    if took <= SLOW_YIELD_US {
        return;
    }
    let previous = LAST_SLOW_YIELD_END.fetch_max(start.saturating_add(took), Ordering::Relaxed);
    if let Some(until) = pause_after(start, took, previous) {
        YIELD_PAUSED_UNTIL.fetch_max(until, Ordering::Relaxed);
    }
}

/// Which way the last bytes moved.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Turn {
    Up,
    Down,
}

/// Relays between `client` and `server` until both directions are done.
/// `up` counts bytes from the client, `down` bytes from the server (for TLS,
/// the decrypted bytes). Without a filter a plain pair is spliced.
pub fn relay(
    pipes: &mut Pipes,
    client: ClientSide<'_>,
    server: &OwnedFd,
    counters: &PairCounters,
    opts: RelayOptions,
    filter: Option<&mut dyn Filter>,
) -> Outcome {
    let s = server.as_fd();
    #[cfg(feature = "tls")]
    let mut pass_through = PassThrough;
    let (mut client_end, mut filter) = match client {
        ClientSide::Plain(fd) => (End::plain(fd.as_fd()), filter),
        #[cfg(feature = "tls")]
        ClientSide::Tls(stream, fd) => (
            End::tls(stream, fd),
            Some(filter.unwrap_or(&mut pass_through as &mut dyn Filter)),
        ),
    };
    let c = client_end.fd;
    let mut server_end = End::plain(s);
    let mut up = Direction {
        src: c,
        dst: s,
        pending: 0,
        eof: false,
        closed: false,
        counter: &counters.from_client,
        held: Vec::new(),
        held_from: 0,
        bulk: false,
        last: false,
    };
    let mut down = Direction {
        src: s,
        dst: c,
        pending: 0,
        eof: false,
        closed: false,
        counter: &counters.from_server,
        held: Vec::new(),
        held_from: 0,
        bulk: false,
        last: false,
    };
    let mut up_pipe = None;
    let mut down_pipe = None;
    let mut optimistic = filter.is_none();
    let mut up_buf = CopyBuf::default();
    let mut down_buf = CopyBuf::default();
    // How often the traffic changed direction, and its last direction.
    let mut turns = 0u32;
    let mut last_dir = None;
    let outcome = loop {
        let fast = match opts.fastclose {
            FastClose::Off => false,
            FastClose::Up => down.eof && down.pending == 0,
            FastClose::Down => up.eof && up.pending == 0,
            FastClose::Both => (down.eof && down.pending == 0) || (up.eof && up.pending == 0),
        };
        if (up.done() && down.done()) || fast {
            break Outcome::Finished;
        }
        let mut ev_c = 0;
        let mut ev_s = 0;
        if up.wants_read() {
            ev_c |= client_end.read_events;
        }
        if down.wants_write() {
            ev_c |= client_end.write_events;
        }
        if down.wants_read() {
            ev_s |= server_end.read_events;
        }
        if up.wants_write() {
            ev_s |= server_end.write_events;
        }
        if ev_c == 0 && ev_s == 0 {
            break Outcome::Finished;
        }
        // Decrypted client bytes already in OpenSSL's buffer would not wake
        // poll(): look without waiting, then read them.
        let buffered = up.wants_read() && client_end.buffered();
        let timeout = if buffered {
            Some(Duration::ZERO)
        } else {
            opts.idle_timeout
        };
        // A socket we wait on for nothing is left out (fd -1): a peer that
        // hung up would otherwise make poll() return at once, forever.
        let fd_c = if ev_c == 0 { -1 } else { c.as_raw_fd() };
        let fd_s = if ev_s == 0 { -1 } else { s.as_raw_fd() };
        let mut fds = [PollFd::new(fd_c, ev_c), PollFd::new(fd_s, ev_s)];
        if optimistic {
            // A new client has usually sent its request by the time its
            // server is connected: try reading before waiting for it.
            optimistic = false;
            fds[0] = PollFd::with_revents(fd_c, ev_c, poll::IN);
        } else {
            if turns >= 2 {
                // A conversation (request, reply, request...): the other
                // end's answer usually comes while other pairs' threads run.
                // Letting them run first turns many of this thread's
                // sleep-and-wake-up cycles (a costly cross-CPU wake-up each)
                // into a poll() that returns at once. Measured in
                // bench/README.md; a pair with one exchange does not yield.
                conversation_yield();
            }
            match poll::poll(&mut fds, timeout) {
                Ok(0) if buffered => {}
                Ok(0) => {
                    // Timeout, or EINTR (reported as 0 too): only a real timeout
                    // has no revents and a timeout configured.
                    if opts.idle_timeout.is_some() {
                        break Outcome::IdleTimeout;
                    }
                    continue;
                }
                Ok(_) => {}
                Err(e) => break Outcome::Failed(e),
            }
        }
        let rc = fds[0].revents();
        let rs = fds[1].revents();
        if rc & poll::NVAL != 0 || rs & poll::NVAL != 0 {
            break Outcome::Failed(io::Error::from_raw_os_error(libc::EBADF));
        }
        // Any event (including HUP/ERR) on a side lets both directions that
        // touch it make progress; the reads and writes report the truth.
        let plain = filter.is_none();
        // A direction moves when its source is readable or its destination
        // writable (HUP/ERR count as both: the syscall reports the truth).
        const READY_IN: i16 = poll::IN | poll::HUP | poll::ERR;
        const READY_OUT: i16 = poll::OUT | poll::HUP | poll::ERR;
        let up_ready =
            (rc & READY_IN != 0 && up.wants_read()) || (rs & READY_OUT != 0 && up.pending > 0);
        let down_ready =
            (rs & READY_IN != 0 && down.wants_read()) || (rc & READY_OUT != 0 && down.pending > 0);
        if up_ready != down_ready {
            let dir = if up_ready { Turn::Up } else { Turn::Down };
            if last_dir.is_some_and(|d| d != dir) {
                turns = turns.saturating_add(1);
            }
            last_dir = Some(dir);
        }
        up.last = down.done();
        let mut result = Ok(());
        if rc != 0 || rs != 0 || buffered {
            result = match filter.as_deref_mut() {
                None => {
                    let r = if up_ready && plain {
                        pump_plain(&mut up, &mut up_pipe, &mut pipes.up).map_err(Outcome::Failed)
                    } else {
                        Ok(())
                    };
                    down.last = up.done();
                    r.and_then(|_| {
                        if down_ready && plain {
                            pump_plain(&mut down, &mut down_pipe, &mut pipes.down)
                                .map_err(Outcome::Failed)
                        } else {
                            Ok(())
                        }
                    })
                }
                Some(f) => pump_copy(
                    &mut up,
                    &mut up_buf,
                    Side::Client,
                    f,
                    &mut client_end,
                    &mut server_end,
                )
                .and_then(|_| {
                    pump_copy(
                        &mut down,
                        &mut down_buf,
                        Side::Server,
                        f,
                        &mut server_end,
                        &mut client_end,
                    )
                }),
            };
        }
        if let Err(o) = result {
            break o;
        }
    };
    // Reuse the pipes only if they are empty; a pipe with stale bytes would
    // leak them into the thread's next pair.
    if up_pipe.is_some() && (up.pending == 0 || !up.held.is_empty()) {
        pipes.up = up_pipe;
    }
    if down_pipe.is_some() && (down.pending == 0 || !down.held.is_empty()) {
        pipes.down = down_pipe;
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_yields_do_not_pause_yielding() {
        assert_eq!(pause_after(10_000, 0, 9_000), None);
        assert_eq!(pause_after(10_000, 300, 9_000), None);
        assert_eq!(pause_after(10_000, 1_500, 9_000), None);
    }

    #[test]
    fn a_first_slow_yield_does_not_pause() {
        assert_eq!(pause_after(10_000, 4_000, 0), None);
    }

    #[test]
    fn slow_yields_caught_by_one_stall_do_not_pause() {
        // Began before the previous slow yield ended: the same stall.
        assert_eq!(pause_after(10_000, 5_000, 14_000), None);
        assert_eq!(pause_after(10_000, 5_000, 15_000), None);
    }

    #[test]
    fn a_slow_yield_soon_after_another_pauses_from_its_end() {
        assert_eq!(
            pause_after(20_000, 3_000, 19_900),
            Some(20_000 + 3_000 + 250_000)
        );
        assert_eq!(
            pause_after(20_000, 1_501, 20_000),
            Some(20_000 + 1_501 + 250_000)
        );
    }

    #[test]
    fn slow_yields_far_apart_do_not_pause() {
        assert_eq!(pause_after(400_000, 5_000, 100_000), None);
        assert_eq!(pause_after(150_001, 5_000, 100_000), None);
        assert!(pause_after(150_000, 5_000, 100_000).is_some());
    }

    #[test]
    fn pause_arithmetic_saturates() {
        assert_eq!(
            pause_after(u64::MAX - 10, 5_000, u64::MAX - 20),
            Some(u64::MAX)
        );
    }
}
