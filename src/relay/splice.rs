//! The splice pump of a plain pair: socket → pipe → socket with splice(2),
//! so bulk data never enters user space. Small messages take a shortcut: a
//! copy through a short-lived buffer costs less than two splices for a few
//! hundred bytes (requests, small replies), and a direction switches to
//! splice for the rest of the connection once a read fills that buffer.
//!
//! The pipes belong to the worker thread ([`Pipes`]) and are reused by its
//! next pair, but only when empty: stale bytes would leak into that pair.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use super::endpoint::{would_block, Endpoint};
use super::Flow;
use crate::logging;
use crate::state::connections::PairCounters;
use crate::sys::pipe;

/// Splice pipe capacity: one splice can move a whole pipe. 256 KiB moved a
/// GB for 0.26 CPU s where 64 KiB per splice took 0.41 (bench/README.md);
/// 512 KiB and 1 MiB gained nothing more.
const PIPE_SIZE: usize = 256 * 1024;
/// Bytes asked for per splice call.
const CHUNK: usize = PIPE_SIZE;
/// Consecutive full reads a direction may do before polling again, so one
/// busy direction cannot starve the other.
const BURST: usize = 8;
/// The size of a small read, copied instead of spliced.
const SMALL: usize = 4096;
/// The size of a read in a direction that copies because no pipe could be
/// made for it.
const NO_PIPE_READ: usize = 64 * 1024;

/// A pipe: what is written to `write` is read from `read`.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let (read, write) = pipe::pipe()?;
        // Bigger pipes mean fewer splice calls for bulk transfers; the
        // kernel allocates the pages only when data flows.
        let _ = pipe::set_pipe_size(write.as_fd(), PIPE_SIZE);
        Ok(Pipe { read, write })
    }
}

/// The splice pipes of one worker thread, created on first use and reused
/// by the thread's later pairs.
#[derive(Default)]
pub struct Pipes {
    up: Option<Pipe>,
    down: Option<Pipe>,
}

impl Pipes {
    /// Whether an up (client → server) and a down pipe are kept for the
    /// next pair.
    #[cfg(test)]
    pub(super) fn kept(&self) -> (bool, bool) {
        (self.up.is_some(), self.down.is_some())
    }
}

/// Which way a pump moves bytes: it picks the matching spare pipe.
#[derive(Clone, Copy)]
pub(super) enum Way {
    Up,
    Down,
}

/// One direction of a plain pair.
#[derive(Default)]
pub(super) struct SplicePump {
    /// The direction's pipe, taken from the thread's spare (or created) the
    /// first time bulk data needs it: pairs that only carry small messages
    /// hold no pipe at all. Once taken, the direction splices (bulk data).
    pipe: Option<Pipe>,
    /// Bytes read by copy and not yet written (the flow's `pending` counts
    /// them), from `held_from` on.
    held: Vec<u8>,
    held_from: usize,
    /// No pipe could be made (out of descriptors): the direction copies to
    /// its end, through bigger buffers, rather than failing the pair.
    no_pipe: bool,
}

impl SplicePump {
    /// Moves what can move from `src` to `dst`. `last`: the other direction
    /// is finished, so the pair closes once this one is (see
    /// [`Flow::pass_eof_if_drained`]).
    pub(super) fn pump(
        &mut self,
        flow: &mut Flow<'_>,
        src: &mut Endpoint<'_>,
        dst: &mut Endpoint<'_>,
        spare: &mut Pipes,
        way: Way,
        last: bool,
    ) -> io::Result<()> {
        if !self.held.is_empty() {
            match dst.write(&self.held[self.held_from..]) {
                Ok(w) => self.held_from += w,
                Err(e) if would_block(&e) => return Ok(()),
                Err(e) => return Err(e),
            }
            flow.pending = self.held.len() - self.held_from;
            if flow.pending > 0 {
                return Ok(());
            }
            self.held = Vec::new();
            self.held_from = 0;
        }
        if let Some(pipe) = &self.pipe {
            return splice(flow, src, dst, pipe, last);
        }
        if flow.eof {
            flow.pass_eof_if_drained(dst, last);
            return Ok(());
        }
        // The buffer lives only for this read, so an idle pair holds none.
        let mut buf = Vec::new();
        let n = match src.read_into(&mut buf, if self.no_pipe { NO_PIPE_READ } else { SMALL }) {
            Ok(0) => {
                flow.eof = true;
                flow.pass_eof_if_drained(dst, last);
                return Ok(());
            }
            Ok(n) => n,
            Err(e) if would_block(&e) => return Ok(()),
            Err(e) => return Err(e),
        };
        PairCounters::add(flow.counter, n);
        let w = match dst.write(&buf[..n]) {
            Ok(w) => w,
            Err(e) if would_block(&e) => 0,
            Err(e) => return Err(e),
        };
        if w < n {
            self.held = buf;
            self.held_from = w;
            flow.pending = n - w;
        }
        if n == SMALL && !self.no_pipe {
            // More is probably waiting: bulk data goes through the pipe.
            match take_pipe(spare, way) {
                Ok(pipe) => {
                    let pipe = self.pipe.insert(pipe);
                    if flow.pending == 0 {
                        return splice(flow, src, dst, pipe, last);
                    }
                }
                Err(e) => {
                    logging::causes::NO_PIPE
                        .message(|| format!("can't make a splice pipe: {e}; copying instead"));
                    self.no_pipe = true;
                }
            }
        }
        Ok(())
    }

    /// The pair ended: the pipe goes back to the thread if it is empty.
    /// Bytes the flow still counts are in the pipe unless they are held in
    /// the copy buffer.
    pub(super) fn release(self, flow: &Flow<'_>, spare: &mut Pipes, way: Way) {
        if self.pipe.is_some() && (flow.pending == 0 || !self.held.is_empty()) {
            match way {
                Way::Up => spare.up = self.pipe,
                Way::Down => spare.down = self.pipe,
            }
        }
    }
}

/// The thread's spare pipe for `way`, or a new one.
fn take_pipe(spare: &mut Pipes, way: Way) -> io::Result<Pipe> {
    let slot = match way {
        Way::Up => &mut spare.up,
        Way::Down => &mut spare.down,
    };
    match slot.take() {
        Some(p) => Ok(p),
        None => Pipe::new(),
    }
}

/// src -> pipe -> dst.
fn splice(
    flow: &mut Flow<'_>,
    src: &Endpoint<'_>,
    dst: &mut Endpoint<'_>,
    pipe: &Pipe,
    last: bool,
) -> io::Result<()> {
    let (pipe_in, pipe_out) = (pipe.write.as_fd(), pipe.read.as_fd());
    for _ in 0..BURST {
        if flow.pending > 0 {
            match pipe::splice(pipe_out, dst.fd(), flow.pending) {
                Ok(n) => flow.pending -= n,
                Err(e) if would_block(&e) => return Ok(()),
                Err(e) => return Err(e),
            }
            if flow.pending > 0 {
                return Ok(());
            }
        }
        if flow.eof {
            break;
        }
        match pipe::splice(src.fd(), pipe_in, CHUNK) {
            Ok(0) => flow.eof = true,
            Ok(n) => {
                flow.pending = n;
                PairCounters::add(flow.counter, n);
                if n < CHUNK {
                    // The socket is most likely drained: write, then let
                    // poll() say when there is more, instead of paying for
                    // a read that would only return EAGAIN.
                    match pipe::splice(pipe_out, dst.fd(), flow.pending) {
                        Ok(w) => flow.pending -= w,
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
    if flow.pending > 0 {
        if let Ok(n) = pipe::splice(pipe_out, dst.fd(), flow.pending) {
            flow.pending -= n;
        }
    }
    flow.pass_eof_if_drained(dst, last);
    Ok(())
}
