//! The PROXY protocol header (v1 and v2) as `accept_proxy` reads it: the
//! parser on the whole input, on each of its prefixes, and the socket
//! reader fed in pieces.
//!
//! Input: byte 0 is the size of the reader's pieces; the rest is what the
//! client sends.

#![no_main]

use std::io;

use libfuzzer_sys::fuzz_target;
use pen::proxy_protocol::{encode, parse, read_header, HeaderSource, ReadError};

/// A client that has sent `data`, arriving `step` bytes at a time.
struct Client<'a> {
    data: &'a [u8],
    taken: usize,
    arrived: usize,
    step: usize,
}

impl HeaderSource for Client<'_> {
    fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let waiting = &self.data[self.taken..self.arrived];
        if waiting.is_empty() {
            if self.arrived == self.data.len() {
                return Ok(0);
            }
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = waiting.len().min(buf.len());
        buf[..n].copy_from_slice(&waiting[..n]);
        Ok(n)
    }

    fn take(&mut self, buf: &mut [u8]) -> io::Result<()> {
        let end = self.taken + buf.len();
        assert!(end <= self.arrived, "took bytes no peek showed");
        buf.copy_from_slice(&self.data[self.taken..end]);
        self.taken = end;
        Ok(())
    }

    fn wait(&mut self) -> io::Result<()> {
        if self.arrived == self.data.len() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.arrived = (self.arrived + self.step).min(self.data.len());
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, sent)) = data.split_first() else {
        return;
    };
    let whole = parse(sent);
    if let Ok(Some((header, len))) = &whole {
        assert!(*len <= sent.len());
        // The header alone parses the same, and every shorter beginning
        // of it is incomplete: the reader waits instead of refusing.
        assert_eq!(parse(&sent[..*len]), whole);
        for end in 0..*len {
            assert_eq!(parse(&sent[..end]), Ok(None), "prefix of {end} bytes");
        }
        // What we send for these addresses reads back as them.
        let again = encode(header.version, header.addresses.as_ref());
        let (back, used) = parse(&again).unwrap().unwrap();
        assert_eq!(used, again.len());
        if let (Some(a), Some(b)) = (header.addresses, back.addresses) {
            assert_eq!(a.source.port(), b.source.port());
            assert_eq!(a.destination.port(), b.destination.port());
            assert_eq!(a.source.ip().to_canonical(), b.source.ip().to_canonical());
        }
    }
    let mut client = Client {
        data: sent,
        taken: 0,
        arrived: 0,
        step: usize::from(step).max(1),
    };
    let read = read_header(&mut client);
    match (&whole, &read) {
        (Ok(Some((header, len))), Ok(h)) => {
            assert_eq!(header, h);
            assert_eq!(client.taken, *len, "the reader took bytes past the header");
        }
        (Ok(Some(_)), Err(e)) => panic!("parse found a header, the reader: {e}"),
        (Ok(None), Err(ReadError::Io(_) | ReadError::Closed)) => {}
        (Err(p), Err(ReadError::Invalid(r))) => {
            let _ = (p, r);
        }
        (w, r) => panic!("parse: {w:?}, reader: {r:?}"),
    }
});
