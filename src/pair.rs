//! The life of one client connection on its pair thread: register the
//! client, choose a server, connect (failing over on refusal or timeout),
//! relay, then account the bytes (doc/pen-0.34.1.md, "Connection set-up").

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;
#[cfg(feature = "tls")]
use std::time::Instant;

use crate::addr::Host;
use crate::logging;
use crate::relay::{self, ClientSide, Filter, Outcome, RelayOptions};
use crate::runtime::Shared;
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
    let connected = admitted.connect(&shared.admission, |b, t| {
        let opts = RelayOptions {
            idle_timeout: (b.settings.idle_timeout > 0)
                .then(|| Duration::from_secs(b.settings.idle_timeout)),
            fastclose: b.settings.fastclose,
            relay_yield: b.settings.relay_yield,
        };
        (opts, upstream::server_host(b, t))
    });
    let Some(Connected {
        lease,
        value: (opts, server_host),
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
