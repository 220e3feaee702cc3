//! Relaying one connection pair: a single thread polls both sockets and
//! moves bytes in both directions until both sides are done (doc/pen-0.34.1.md,
//! "TCP relay").
//!
//! The pieces: each side is an [`Endpoint`](endpoint) (a socket, or TLS
//! over it); a plain pair's bytes go through the [splice pump](splice)
//! (socket → pipe → socket, never entering user space); when the bytes must
//! be seen (X-Forwarded-For insertion, request log, dumps, TLS) a [`Filter`]
//! is given and the [copy pump](copy) moves them through a buffer that
//! exists only while bytes are in flight. The loop below drives both
//! directions with one poll() over the two endpoints, and a pair in a
//! conversation yields before it waits ([`yield_guard`]).
//!
//! Half-close is propagated: EOF from one side becomes shutdown(SHUT_WR) on
//! the other once everything read has been written, and the other direction
//! keeps flowing. A hang-up is only final once reads return EOF, so no data
//! is lost after a half-close (pen 0.34.1 loses it with epoll,
//! doc/pen-0.34.1.md, quirk Q2).
//!
//! A TLS client (doc/pen-0.34.1.md, "TLS") always takes the copy path. EOF
//! passes through TLS as well: the client's close_notify (or TCP EOF)
//! becomes shutdown(SHUT_WR) towards the server; the server's EOF becomes a
//! close_notify and then shutdown(SHUT_WR) on the client socket, while the
//! client may go on sending.

mod copy;
mod endpoint;
mod splice;
#[cfg(test)]
mod tests;
mod yield_guard;

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use crate::settings::FastClose;
use crate::state::connections::PairCounters;
use crate::sys::poll::{self, PollFd};

use copy::{CopyPump, PassThrough};
use endpoint::{would_block, Endpoint};
use splice::{SplicePump, Way};
use yield_guard::{Turns, YieldRecord};

pub use copy::Filter;
pub use endpoint::ClientSide;
pub use splice::Pipes;
pub use yield_guard::{Clock, MonotonicClock, YieldGuard};

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

/// Settings for one pair.
#[derive(Clone, Copy, Debug)]
pub struct RelayOptions {
    pub idle_timeout: Option<Duration>,
    pub fastclose: FastClose,
    /// A pair in a conversation yields the CPU before it waits (see
    /// [`YieldGuard`]).
    pub relay_yield: bool,
}

/// One direction's progress, whichever pump moves its bytes.
struct Flow<'c> {
    /// Bytes read but not yet written (in a pipe or a buffer).
    pending: usize,
    /// The source sent EOF.
    eof: bool,
    /// The EOF was passed on to the destination.
    closed: bool,
    counter: &'c AtomicU64,
}

impl<'c> Flow<'c> {
    fn new(counter: &'c AtomicU64) -> Flow<'c> {
        Flow {
            pending: 0,
            eof: false,
            closed: false,
            counter,
        }
    }
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
    /// The source sent EOF and everything read was written.
    fn drained(&self) -> bool {
        self.eof && self.pending == 0
    }
    /// After EOF and a full flush, passes the EOF on to `dst`; a TLS
    /// close_notify may have to wait until the socket is writable. `last`:
    /// the other direction is finished, so the pair is about to be closed
    /// and close() sends the FIN: no shutdown call is needed (both sources
    /// were read to EOF, so closing cannot turn into a reset).
    fn pass_eof_if_drained(&mut self, dst: &mut Endpoint<'_>, last: bool) {
        if !self.drained() || self.closed {
            return;
        }
        if !last {
            match dst.shutdown_write() {
                Err(e) if would_block(&e) => return,
                // Sent, or the peer is gone and nothing can be passed on.
                _ => {}
            }
        }
        self.closed = true;
    }
}

/// How a pair's bytes move.
enum Pumps<'f> {
    /// A plain pair: spliced.
    Splice { up: SplicePump, down: SplicePump },
    /// Through a filter (and TLS): copied.
    Copy(CopyPump<'f>),
}

/// Relays between `client` and `server` until both directions are done.
/// `up` counts bytes from the client, `down` bytes from the server (for TLS,
/// the decrypted bytes). Without a filter a plain pair is spliced, with
/// pipes taken from and given back to `pipes`.
pub fn relay<C: Clock>(
    pipes: &mut Pipes,
    yield_guard: &YieldGuard<C>,
    client: ClientSide<'_>,
    server: &OwnedFd,
    counters: &PairCounters,
    opts: RelayOptions,
    filter: Option<&mut dyn Filter>,
) -> Outcome {
    let client = Endpoint::client(client);
    let mut pass_through = PassThrough;
    let filter = match filter {
        None if !client.can_splice() => Some(&mut pass_through as &mut dyn Filter),
        filter => filter,
    };
    let pumps = match filter {
        None => Pumps::Splice {
            up: SplicePump::default(),
            down: SplicePump::default(),
        },
        Some(filter) => Pumps::Copy(CopyPump::new(filter)),
    };
    let mut pair = Pair {
        client,
        server: Endpoint::socket(server.as_fd()),
        up: Flow::new(&counters.from_client),
        down: Flow::new(&counters.from_server),
        pumps,
    };
    let outcome = pair.run(pipes, yield_guard, opts);
    if let Pumps::Splice { up, down } = pair.pumps {
        up.release(&pair.up, pipes, Way::Up);
        down.release(&pair.down, pipes, Way::Down);
    }
    outcome
}

/// A socket we wait on for nothing is left out: a peer that hung up would
/// otherwise make poll() return at once, forever.
fn poll_entry(fd: BorrowedFd<'_>, events: i16) -> PollFd {
    if events == 0 {
        PollFd::unused()
    } else {
        PollFd::new(fd, events)
    }
}

/// A direction moves when its source is readable or its destination
/// writable (HUP/ERR count as both: the syscall reports the truth).
const READY_IN: i16 = poll::IN | poll::HUP | poll::ERR;
const READY_OUT: i16 = poll::OUT | poll::HUP | poll::ERR;

struct Pair<'e, 'f, 'c> {
    client: Endpoint<'e>,
    server: Endpoint<'e>,
    /// Client to server.
    up: Flow<'c>,
    /// Server to client.
    down: Flow<'c>,
    pumps: Pumps<'f>,
}

impl Pair<'_, '_, '_> {
    fn run<C: Clock>(
        &mut self,
        pipes: &mut Pipes,
        yield_guard: &YieldGuard<C>,
        opts: RelayOptions,
    ) -> Outcome {
        let Pair {
            client,
            server,
            up,
            down,
            pumps,
        } = self;
        // A new client has usually sent its request by the time its server
        // is connected: try reading before waiting for it.
        let mut optimistic = matches!(pumps, Pumps::Splice { .. });
        let mut turns = Turns::default();
        let mut yields = YieldRecord::default();
        loop {
            let fast = match opts.fastclose {
                FastClose::Off => false,
                FastClose::Up => down.drained(),
                FastClose::Down => up.drained(),
                FastClose::Both => down.drained() || up.drained(),
            };
            if (up.done() && down.done()) || fast {
                return Outcome::Finished;
            }
            let mut ev_c = 0;
            let mut ev_s = 0;
            if up.wants_read() {
                ev_c |= client.read_events();
            }
            if down.wants_write() {
                ev_c |= client.write_events();
            }
            if down.wants_read() {
                ev_s |= server.read_events();
            }
            if up.wants_write() {
                ev_s |= server.write_events();
            }
            if ev_c == 0 && ev_s == 0 {
                return Outcome::Finished;
            }
            // Decrypted client bytes already in OpenSSL's buffer would not
            // wake poll(): look without waiting, then read them.
            let buffered = up.wants_read() && client.pending();
            let (rc, rs) = if optimistic {
                optimistic = false;
                (poll::IN, 0)
            } else {
                let yielded = opts.relay_yield
                    && !buffered
                    && turns.conversation()
                    && yields.wants_yield()
                    && yield_guard.conversation_yield();
                let timeout = if buffered {
                    Some(Duration::ZERO)
                } else {
                    opts.idle_timeout
                };
                let mut fds = [poll_entry(client.fd(), ev_c), poll_entry(server.fd(), ev_s)];
                // After a yield, look without waiting first: whether the
                // answer came meanwhile tells whether this pair's yields pay.
                let paid = yielded
                    && match poll::poll(&mut fds, Some(Duration::ZERO)) {
                        Ok(n) => n > 0,
                        Err(e) => return Outcome::Failed(e),
                    };
                if yielded {
                    yields.note(paid);
                }
                if !paid {
                    match poll::poll(&mut fds, timeout) {
                        Ok(0) if buffered => {}
                        Ok(0) => {
                            // Timeout, or EINTR (reported as 0 too): only a
                            // real timeout has no revents and a timeout
                            // configured.
                            if opts.idle_timeout.is_some() {
                                return Outcome::IdleTimeout;
                            }
                            continue;
                        }
                        Ok(_) => {}
                        Err(e) => return Outcome::Failed(e),
                    }
                }
                (fds[0].revents(), fds[1].revents())
            };
            if rc & poll::NVAL != 0 || rs & poll::NVAL != 0 {
                return Outcome::Failed(io::Error::from_raw_os_error(libc::EBADF));
            }
            let up_ready =
                (rc & READY_IN != 0 && up.wants_read()) || (rs & READY_OUT != 0 && up.pending > 0);
            let down_ready = (rs & READY_IN != 0 && down.wants_read())
                || (rc & READY_OUT != 0 && down.pending > 0);
            turns.note(up_ready, down_ready);
            if rc == 0 && rs == 0 && !buffered {
                continue;
            }
            let moved = match pumps {
                // Splice only what poll() found ready.
                Pumps::Splice {
                    up: up_pump,
                    down: down_pump,
                } => {
                    let mut moved = Ok(());
                    if up_ready {
                        moved = up_pump.pump(up, client, server, pipes, Way::Up, down.done());
                    }
                    if down_ready && moved.is_ok() {
                        moved = down_pump.pump(down, server, client, pipes, Way::Down, up.done());
                    }
                    moved.map_err(Outcome::Failed)
                }
                // A direction tries when its source or destination has what
                // its last blocked call waited for (TLS may wait for the
                // opposite readiness), or when OpenSSL holds its bytes.
                Pumps::Copy(copy) => {
                    let ready =
                        |revents: i16, events: i16| revents & (events | poll::HUP | poll::ERR) != 0;
                    let up_go = buffered
                        || (up.wants_read() && ready(rc, client.read_events()))
                        || (up.wants_write() && ready(rs, server.write_events()));
                    let down_go = (down.wants_read() && ready(rs, server.read_events()))
                        || (down.wants_write() && ready(rc, client.write_events()));
                    let mut moved = Ok(());
                    if up_go {
                        moved = copy.up(up, client, server);
                    }
                    if down_go && moved.is_ok() {
                        moved = copy.down(down, server, client);
                    }
                    moved
                }
            };
            if let Err(outcome) = moved {
                return outcome;
            }
        }
    }
}
