//! The copy pump: bytes go through user space, where a [`Filter`] sees
//! them (X-Forwarded-For insertion, request log, dumps) and TLS encrypts or
//! decrypts them. A buffer exists only while bytes are in flight, so an
//! idle pair holds none.

use super::endpoint::{would_block, Endpoint};
use super::{Flow, Outcome};
use crate::state::connections::PairCounters;

/// The copy path's read size: three of the 16,000-byte TLS writes (pen's
/// record size, `tls::TlsStream::write`), so a full read becomes three
/// full records. Pen reads 32 KiB, which makes a third record of 768 bytes
/// (bench/README.md, "TLS bulk").
const COPY_CHUNK: usize = 48_000;
/// A read shorter than this found its source drained: the pump goes back
/// to poll() instead of paying for a read that would find nothing. It is a
/// TLS record's largest payload, since a TLS read returns one record.
const DRAINED_BELOW: usize = 16 * 1024;

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
pub(super) struct PassThrough;

impl Filter for PassThrough {
    fn client_data(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), Vec<u8>> {
        out.extend_from_slice(input);
        Ok(())
    }
    fn server_data(&mut self, _data: &[u8]) {}
    fn client_eof(&mut self, _out: &mut Vec<u8>) {}
}

/// Bytes of one direction still to write.
#[derive(Default)]
struct CopyBuf {
    /// Freed when empty so idle pairs hold no buffer.
    out: Vec<u8>,
    off: usize,
}

/// Which end the bytes come from: the filter treats them differently.
#[derive(Clone, Copy)]
enum Source {
    Client,
    Server,
}

/// Both directions of a filtered (or TLS) pair, and their filter.
pub(super) struct CopyPump<'f> {
    filter: &'f mut dyn Filter,
    up: CopyBuf,
    down: CopyBuf,
}

impl<'f> CopyPump<'f> {
    pub(super) fn new(filter: &'f mut dyn Filter) -> CopyPump<'f> {
        CopyPump {
            filter,
            up: CopyBuf::default(),
            down: CopyBuf::default(),
        }
    }

    /// Moves what can move from the client to the server.
    pub(super) fn up(
        &mut self,
        flow: &mut Flow<'_>,
        client: &mut Endpoint<'_>,
        server: &mut Endpoint<'_>,
    ) -> Result<(), Outcome> {
        pump(
            &mut self.up,
            Source::Client,
            self.filter,
            flow,
            client,
            server,
        )
    }

    /// Moves what can move from the server to the client.
    pub(super) fn down(
        &mut self,
        flow: &mut Flow<'_>,
        server: &mut Endpoint<'_>,
        client: &mut Endpoint<'_>,
    ) -> Result<(), Outcome> {
        pump(
            &mut self.down,
            Source::Server,
            self.filter,
            flow,
            server,
            client,
        )
    }
}

fn pump(
    cb: &mut CopyBuf,
    from: Source,
    filter: &mut dyn Filter,
    flow: &mut Flow<'_>,
    src: &mut Endpoint<'_>,
    dst: &mut Endpoint<'_>,
) -> Result<(), Outcome> {
    let mut drained = false;
    loop {
        while cb.off < cb.out.len() {
            match dst.write(&cb.out[cb.off..]) {
                Ok(n) => cb.off += n,
                Err(e) if would_block(&e) => {
                    flow.pending = cb.out.len() - cb.off;
                    return Ok(());
                }
                Err(e) => return Err(Outcome::Failed(e)),
            }
        }
        cb.out = Vec::new();
        cb.off = 0;
        flow.pending = 0;
        if drained {
            return Ok(());
        }
        if flow.eof {
            flow.pass_eof_if_drained(dst, false);
            return Ok(());
        }
        let mut input = Vec::new();
        match src.read_into(&mut input, COPY_CHUNK) {
            Ok(0) => {
                flow.eof = true;
                if let Source::Client = from {
                    filter.client_eof(&mut cb.out);
                }
                if cb.out.is_empty() {
                    flow.pass_eof_if_drained(dst, false);
                    return Ok(());
                }
            }
            Ok(n) => {
                drained = n < DRAINED_BELOW;
                PairCounters::add(flow.counter, n);
                let data = &input[..n];
                match from {
                    Source::Client => {
                        if let Err(reply) = filter.client_data(data, &mut cb.out) {
                            let _ = src.write(&reply);
                            return Err(Outcome::Refused);
                        }
                    }
                    Source::Server => {
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
