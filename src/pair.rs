//! The life of one client connection on its pair thread: register the
//! client, choose a server, connect (failing over on refusal or timeout),
//! relay, then account the bytes (doc/pen-0.34.1.md, "Connection set-up").

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::addr::Host;
use crate::logging;
use crate::proxy_protocol::{self, Addresses, HeaderSource};
use crate::relay::{self, ClientSide, Filter, Outcome, RelayOptions};
use crate::runtime::Shared;
use crate::settings::AcceptProxy;
use crate::sys;
use crate::sys::socket::PeerAddr;
use crate::upstream::{self, Connected, Permit, Transport};
use crate::workers::WorkerLocal;

/// Chooses a filter for the pair, if its bytes must be seen.
pub type FilterFactory =
    dyn Fn(&Shared, &PeerAddr, &Host) -> Option<Box<dyn Filter + Send>> + Send + Sync;

/// Serves one client, accepted under `_permit`, to the end. The permit is
/// given back when this returns (or unwinds), after everything else.
pub fn serve(
    shared: &Arc<Shared>,
    local: &mut WorkerLocal,
    _permit: Permit,
    client: OwnedFd,
    peer: PeerAddr,
    filters: &FilterFactory,
) {
    // The lock only when a PROXY header is expected: it is not otherwise
    // taken before `admit`.
    let (accept_proxy, header_timeout) = if !shared
        .accept_proxy_on
        .load(std::sync::atomic::Ordering::Relaxed)
    {
        (None, Duration::ZERO)
    } else {
        let b = shared.lock();
        let accept = match b.settings.accept_proxy {
            AcceptProxy::Off => None,
            // Checked here, on the real address: a PROXY header lets its
            // sender claim any other.
            AcceptProxy::On { acl } => Some(
                acl.and_then(|n| b.acls.get(n))
                    .is_none_or(|a| a.permits(peer.ip(), &b.geoip)),
            ),
        };
        (accept, b.settings.connect_timeout())
    };
    // The address the client connected to, when a PROXY header said it.
    let mut destination = None;
    let mut peer = peer;
    if let Some(permitted) = accept_proxy {
        let got = if permitted {
            read_proxy_header(client.as_fd(), Instant::now() + header_timeout)
        } else {
            Err("its address may not send a PROXY header".to_string())
        };
        match got {
            Ok(Some(a)) => {
                logging::debug(2, || format!("PROXY header from {peer:?}: {a:?}"));
                peer = PeerAddr::Inet(a.source);
                destination = Some(a.destination);
            }
            // LOCAL or UNKNOWN: the connection's own ends stand.
            Ok(None) => {}
            Err(why) => {
                shared.lock().proxy_refused += 1;
                logging::debug(1, || format!("client {peer:?} refused: {why}"));
                return;
            }
        }
    }
    let now = sys::now_unix();
    let Some(admitted) = upstream::admit(
        shared.balancer(),
        &peer,
        Some(client),
        Transport::Stream,
        now,
    ) else {
        return;
    };
    let connected = admitted.connect(&shared.admission, Some(&shared.idlers), |b, t| {
        let opts = RelayOptions {
            idle_timeout: (b.settings.idle_timeout > 0)
                .then(|| Duration::from_secs(b.settings.idle_timeout)),
            fastclose: b.settings.fastclose,
            relay_yield: b.settings.relay_yield,
        };
        let send_proxy = b
            .settings
            .send_proxy
            .map(|v| (v, b.settings.connect_timeout()));
        (opts, upstream::server_host(b, t), send_proxy)
    });
    let Some(Connected {
        lease,
        value: (opts, server_host, send_proxy),
        ..
    }) = connected
    else {
        logging::debug(1, || format!("no server for client {peer:?}; closing"));
        return;
    };
    // Every way out from here drops the lease: it frees the slot and
    // settles the counters, then the pair's sockets close.
    let pair = lease.pair();
    // Both are there: the client's since admission, the server's since the
    // connect.
    let (Some(client), Some(server)) = (pair.client(), pair.server()) else {
        return;
    };
    if let Some((version, connect_timeout)) = send_proxy {
        // Before any relayed byte; the relay (and splice) carry the rest.
        let ends = proxied_ends(client.as_fd(), &peer, destination);
        let header = proxy_protocol::encode(version, ends.as_ref());
        let deadline = Instant::now() + connect_timeout;
        if let Err(e) = sys::socket::write_all_until(server.as_fd(), &header, deadline) {
            logging::debug(1, || format!("PROXY header for {peer:?} not sent: {e}"));
            return;
        }
    }
    #[cfg(feature = "tls")]
    if let Some(acceptor) = shared.tls_state.acceptor() {
        let mut stream = match tls_handshake(shared, &acceptor, client, lease.conn()) {
            Ok(stream) => stream,
            Err(e) => {
                logging::debug(1, || format!("TLS handshake with {peer:?} failed: {e}"));
                return;
            }
        };
        let mut filter = filters(shared, &peer, &server_host);
        let outcome = relay::relay(
            &mut local.pipes,
            &shared.yield_guard,
            ClientSide::Tls(&mut stream),
            server,
            &pair.counters,
            opts,
            filter.as_deref_mut().map(|f| f as &mut dyn Filter),
        );
        log_outcome(&peer, &outcome);
        // After a normal end the close_notify went out with the server's
        // EOF; otherwise (fast close, idle timeout, `close N`) say goodbye
        // now, best effort (doc/pen-0.34.1.md, "TLS").
        let _ = stream.close_notify();
        // As for a plain pair: the slot, the counters and the server's
        // socket first, then the client's connection (the stream's socket).
        drop(lease);
        drop(stream);
        return;
    }
    let mut filter = filters(shared, &peer, &server_host);
    let outcome = relay::relay(
        &mut local.pipes,
        &shared.yield_guard,
        ClientSide::Plain(client),
        server,
        &pair.counters,
        opts,
        filter.as_deref_mut().map(|f| f as &mut dyn Filter),
    );
    log_outcome(&peer, &outcome);
}

/// The ends a `send_proxy` header announces: the client, and the address
/// it connected to (from its own PROXY header, or the accepted socket's
/// local address). `None` for a Unix-socket client.
fn proxied_ends(
    client: BorrowedFd<'_>,
    peer: &PeerAddr,
    destination: Option<SocketAddr>,
) -> Option<Addresses> {
    let PeerAddr::Inet(source) = peer else {
        return None;
    };
    let destination = match destination {
        Some(d) => d,
        None => match sys::socket::local_addr(client) {
            Ok(PeerAddr::Inet(d)) => d,
            _ => return None,
        },
    };
    Some(Addresses {
        source: *source,
        destination,
    })
}

/// The accepted client socket as the PROXY header reader sees it.
struct ClientHeader<'a> {
    fd: BorrowedFd<'a>,
    deadline: Instant,
}

impl HeaderSource for ClientHeader<'_> {
    fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        sys::socket::peek(self.fd, buf)
    }

    fn take(&mut self, buf: &mut [u8]) -> io::Result<()> {
        let mut got = 0;
        // The bytes are queued (a peek saw them), so one read takes them;
        // the bound guards against a kernel that says otherwise.
        for _ in 0..buf.len() {
            if got == buf.len() {
                break;
            }
            match sys::socket::read(self.fd, &mut buf[got..]) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if got == buf.len() {
            Ok(())
        } else {
            Err(io::ErrorKind::UnexpectedEof.into())
        }
    }

    fn wait(&mut self) -> io::Result<()> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || sys::poll::wait_one(self.fd, sys::poll::IN, Some(left))? == 0 {
            return Err(io::ErrorKind::TimedOut.into());
        }
        Ok(())
    }
}

/// Reads the client's PROXY header, on this pair's thread so that a slow
/// client holds up nobody else; its addresses, if it gave usable ones.
fn read_proxy_header(
    client: BorrowedFd<'_>,
    deadline: Instant,
) -> Result<Option<Addresses>, String> {
    let mut src = ClientHeader {
        fd: client,
        deadline,
    };
    proxy_protocol::read_header(&mut src)
        .map(|h| h.addresses)
        .map_err(|e| e.to_string())
}

fn log_outcome(peer: &PeerAddr, outcome: &Outcome) {
    match outcome {
        Outcome::Failed(e) => logging::debug(2, || format!("pair for {peer:?} closed: {e}")),
        Outcome::IdleTimeout => {
            logging::debug(1, || format!("pair for {peer:?} closed after idle timeout"))
        }
        Outcome::Refused | Outcome::Finished => {}
    }
}

/// Runs the server side of the TLS handshake with the client on this
/// pair's thread, within `ssl_handshake_timeout` (doc/pen-0.34.1.md, "TLS": it
/// starts only after the upstream connect succeeded). A client that stalls
/// only holds this thread and its own sockets.
///
/// The handshake runs on a duplicate of the client socket, because the
/// stream owns the socket it is given and the pair's own socket must stay
/// where `close N` reaches it (a shutdown through either descriptor ends
/// the same connection). On success the slot shows the stream's descriptor.
#[cfg(feature = "tls")]
fn tls_handshake(
    shared: &Shared,
    acceptor: &crate::tls::TlsAcceptor,
    client: &OwnedFd,
    conn_id: usize,
) -> Result<crate::tls::TlsStream, crate::tls::TlsError> {
    let deadline = Instant::now() + shared.tls_state.handshake_timeout();
    let socket = client.try_clone().map_err(crate::tls::TlsError::Io)?;
    let stream = acceptor.accept(socket, deadline)?;
    if let Some(c) = shared.lock().conns.get_mut(conn_id) {
        c.client_fd = stream.as_raw_fd();
    }
    Ok(stream)
}
