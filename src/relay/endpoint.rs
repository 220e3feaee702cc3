//! One side of a pair as the relay sees it: a plain socket, or TLS over the
//! socket. This is the only part of the relay that knows whether TLS is
//! built in; without it the TLS stream is a type with no values, so the
//! rest of the relay is the same code in both builds.
//!
//! TLS may need the opposite readiness (a read that must first write, or
//! the reverse), so an endpoint remembers which poll events its blocked read
//! and write wait for. OpenSSL may also hold decrypted bytes that poll()
//! cannot see ([`Endpoint::pending`]).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::sys::poll;
use crate::sys::socket::{self, Shutdown};

pub use tls_io::TlsStream;

/// The client side of a pair.
pub enum ClientSide<'a> {
    /// A plain socket: spliced, or copied when a filter must see the bytes.
    Plain(&'a OwnedFd),
    /// TLS terminated by pen over the client socket: always copied.
    Tls(&'a mut TlsStream),
}

/// What the relay does with a TLS stream. Called as `TlsIo::method`: the
/// real stream's inherent methods of the same names would win otherwise.
trait TlsIo {
    fn read_into(&mut self, buf: &mut Vec<u8>, max: usize) -> io::Result<usize>;
    fn write(&mut self, buf: &[u8]) -> io::Result<usize>;
    /// After `WouldBlock`: the poll events to wait for.
    fn wanted_events(&self) -> i16;
    /// Decrypted bytes wait in the library.
    fn pending(&self) -> bool;
    /// Sends close_notify; `WouldBlock` → wait for `wanted_events`.
    fn close_notify(&mut self) -> io::Result<()>;
    fn fd(&self) -> BorrowedFd<'_>;
}

#[cfg(feature = "tls")]
mod tls_io {
    use super::*;
    pub use crate::tls::TlsStream;
    use crate::tls::Want;

    impl TlsIo for TlsStream {
        fn read_into(&mut self, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
            TlsStream::read_into(self, buf, max)
        }
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            TlsStream::write(self, buf)
        }
        fn wanted_events(&self) -> i16 {
            match self.want() {
                Want::Read => poll::IN,
                Want::Write => poll::OUT,
            }
        }
        fn pending(&self) -> bool {
            TlsStream::pending(self)
        }
        fn close_notify(&mut self) -> io::Result<()> {
            TlsStream::close_notify(self)
        }
        fn fd(&self) -> BorrowedFd<'_> {
            self.as_fd()
        }
    }
}

#[cfg(not(feature = "tls"))]
mod tls_io {
    use super::*;

    /// A TLS stream in a build without TLS: no value of it can exist.
    pub enum TlsStream {}

    impl TlsIo for TlsStream {
        fn read_into(&mut self, _: &mut Vec<u8>, _: usize) -> io::Result<usize> {
            match *self {}
        }
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            match *self {}
        }
        fn wanted_events(&self) -> i16 {
            match *self {}
        }
        fn pending(&self) -> bool {
            match *self {}
        }
        fn close_notify(&mut self) -> io::Result<()> {
            match *self {}
        }
        fn fd(&self) -> BorrowedFd<'_> {
            match *self {}
        }
    }
}

enum Transport<'a> {
    Socket(BorrowedFd<'a>),
    Tls(&'a mut TlsStream),
}

/// One side of a pair: reads, writes, passes EOF on, and says what to poll
/// for.
pub(super) struct Endpoint<'a> {
    transport: Transport<'a>,
    /// Poll events that let the last blocked read / write go on: IN / OUT
    /// for a socket; for TLS whatever OpenSSL asked for.
    read_events: i16,
    write_events: i16,
}

pub(super) fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

impl<'a> Endpoint<'a> {
    pub(super) fn socket(fd: BorrowedFd<'a>) -> Endpoint<'a> {
        Endpoint::new(Transport::Socket(fd))
    }

    pub(super) fn client(side: ClientSide<'a>) -> Endpoint<'a> {
        match side {
            ClientSide::Plain(fd) => Endpoint::socket(fd.as_fd()),
            ClientSide::Tls(stream) => Endpoint::new(Transport::Tls(stream)),
        }
    }

    fn new(transport: Transport<'a>) -> Endpoint<'a> {
        Endpoint {
            transport,
            read_events: poll::IN,
            write_events: poll::OUT,
        }
    }

    /// The socket, for poll() and splice().
    pub(super) fn fd(&self) -> BorrowedFd<'_> {
        match &self.transport {
            Transport::Socket(fd) => *fd,
            Transport::Tls(stream) => TlsIo::fd(&**stream),
        }
    }

    /// Bytes can be spliced from and to this endpoint: they cross it
    /// unchanged.
    pub(super) fn can_splice(&self) -> bool {
        matches!(self.transport, Transport::Socket(_))
    }

    /// The poll events a read waits for.
    pub(super) fn read_events(&self) -> i16 {
        self.read_events
    }

    /// The poll events a write (or passing EOF on) waits for.
    pub(super) fn write_events(&self) -> i16 {
        self.write_events
    }

    /// Reads at most `max` bytes, appended to `buf` (its spare capacity:
    /// nothing is zeroed first).
    pub(super) fn read_into(&mut self, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        match &mut self.transport {
            Transport::Socket(fd) => socket::read_into(*fd, buf, max),
            Transport::Tls(stream) => {
                let result = TlsIo::read_into(&mut **stream, buf, max);
                if matches!(&result, Err(e) if would_block(e)) {
                    self.read_events = stream.wanted_events();
                }
                result
            }
        }
    }

    pub(super) fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.transport {
            Transport::Socket(fd) => socket::write(*fd, buf),
            Transport::Tls(stream) => {
                let result = TlsIo::write(&mut **stream, buf);
                if matches!(&result, Err(e) if would_block(e)) {
                    self.write_events = stream.wanted_events();
                }
                result
            }
        }
    }

    /// Bytes already decrypted and waiting in OpenSSL: a read returns them
    /// without the socket becoming readable.
    pub(super) fn pending(&self) -> bool {
        match &self.transport {
            Transport::Socket(_) => false,
            Transport::Tls(stream) => TlsIo::pending(&**stream),
        }
    }

    /// Passes EOF on: shutdown(SHUT_WR), after a close_notify for TLS.
    /// `Err(WouldBlock)`: call again when the write events are ready.
    pub(super) fn shutdown_write(&mut self) -> io::Result<()> {
        if let Transport::Tls(stream) = &mut self.transport {
            // An error other than WouldBlock means the peer is gone; the
            // socket shutdown below is all that is left to do.
            if let Err(e) = TlsIo::close_notify(&mut **stream) {
                if would_block(&e) {
                    self.write_events = stream.wanted_events();
                    return Err(e);
                }
            }
        }
        socket::shutdown(self.fd(), Shutdown::Write);
        Ok(())
    }
}
