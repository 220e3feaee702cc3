//! The life of one client connection on its pair thread: register the
//! client, choose a server, connect (failing over on refusal or timeout),
//! relay, then account the bytes (spec selection.md §3).

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
#[cfg(feature = "tls")]
use std::time::Instant;

use crate::addr::Host;
use crate::balancer::Balancer;
use crate::connections::PairCounters;
use crate::logging;
use crate::relay::{self, ClientSide, Filter, Outcome, RelayOptions};
use crate::runtime::Shared;
use crate::selection;
use crate::servers::Target;
use crate::sys;
use crate::sys::socket::{self, ConnectOptions, PeerAddr};
use crate::workers::WorkerLocal;

/// Where and how to connect, copied out of the table so the lock is not
/// held while connecting.
struct Dial {
    host: Host,
    port: u16,
    opts: ConnectOptions,
    timeout: Duration,
}

fn dial_for(b: &Balancer, t: Target, peer: &PeerAddr) -> Option<Dial> {
    let s = b.servers.get(t)?;
    let st = &b.settings;
    let (bind, transparent) = st.upstream_bind(&s.host, peer.ip());
    Some(Dial {
        host: s.host.clone(),
        port: s.port,
        opts: ConnectOptions {
            bind,
            transparent,
            keepalive: st.keepalive,
            // Always: see listeners::open. `tcp_nodelay` is kept for
            // compatibility only.
            nodelay: matches!(s.host, Host::Ip(_)),
        },
        timeout: Duration::from_secs(st.connect_timeout.max(1) as u64),
    })
}

fn connect(d: &Dial) -> std::io::Result<OwnedFd> {
    match &d.host {
        Host::Ip(ip) => {
            socket::connect_inet(&std::net::SocketAddr::new(*ip, d.port), &d.opts, d.timeout)
        }
        Host::Unix(path) => socket::connect_unix(path, d.timeout),
        Host::Unset => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "no address",
        )),
    }
}

/// Releases the pair's place in the acceptor's count however the thread
/// leaves.
struct PairGuard<'a>(&'a Shared);

impl Drop for PairGuard<'_> {
    fn drop(&mut self) {
        self.0.pair_done();
    }
}

/// Chooses a filter for the pair, if its bytes must be seen.
pub type FilterFactory =
    dyn Fn(&Shared, &PeerAddr, &Host) -> Option<Box<dyn Filter + Send>> + Send + Sync;

/// Serves one accepted client to the end.
pub fn serve(
    shared: &Arc<Shared>,
    local: &mut WorkerLocal,
    client: OwnedFd,
    peer: PeerAddr,
    filters: &FilterFactory,
) {
    let _guard = PairGuard(shared);
    let now = sys::now_unix();
    let counters = Arc::new(PairCounters::default());
    let (conn_id, client_id, mut attempt, mut target, mut dial) = {
        let mut b = shared.lock();
        let Some(a) = selection::admit(&mut b, &peer, client.as_raw_fd(), &counters, now) else {
            return;
        };
        let dial = a.target.and_then(|t| dial_for(&b, t, &peer));
        (a.conn, a.client, a.attempt, a.target, dial)
    };
    let mut server = None;
    while let (Some(t), Some(d)) = (target, dial.as_ref()) {
        shared.pending_connects.fetch_add(1, Ordering::AcqRel);
        let result = connect(d);
        shared.connect_done();
        let now = sys::now_unix();
        let mut b = shared.lock();
        match result {
            Ok(fd) => {
                b.mark_connected(conn_id, t, fd.as_raw_fd());
                let opts = RelayOptions {
                    idle_timeout: (b.settings.idle_timeout > 0)
                        .then(|| Duration::from_secs(b.settings.idle_timeout)),
                    fastclose: b.settings.fastclose,
                    relay_yield: b.settings.relay_yield,
                };
                let host = b
                    .servers
                    .get(t)
                    .map(|s| s.host.clone())
                    .unwrap_or(Host::Unset);
                server = Some((t, fd, opts, host));
                break;
            }
            Err(e) => {
                b.connect_failed(t, &e, now);
                target = attempt.failover(&mut b, now);
                dial = target.and_then(|t| dial_for(&b, t, &peer));
                note_target(&mut b, conn_id, target);
            }
        }
    }
    let Some((t, server_fd, opts, server_host)) = server else {
        shared.lock().conns.remove(conn_id);
        logging::debug(1, || format!("no server for client {peer:?}; closing"));
        return;
    };
    let ended = Ended {
        conn_id,
        client_id,
        target: t,
        counters: &counters,
    };
    #[cfg(feature = "tls")]
    if let Some(acceptor) = shared.tls_state.acceptor() {
        let mut stream = match tls_handshake(shared, &acceptor, &client, conn_id) {
            Ok(stream) => stream,
            Err(e) => {
                logging::debug(1, || format!("TLS handshake with {peer:?} failed: {e}"));
                ended.account(shared);
                drop(server_fd);
                drop(client);
                return;
            }
        };
        // The stream owns a duplicate of the client socket (see
        // tls_handshake); the original is no longer needed.
        drop(client);
        let mut filter = filters(shared, &peer, &server_host);
        let outcome = relay::relay(
            &mut local.pipes,
            &shared.yield_guard,
            ClientSide::Tls(&mut stream),
            &server_fd,
            &counters,
            opts,
            filter.as_deref_mut().map(|f| f as &mut dyn Filter),
        );
        log_outcome(&peer, &outcome);
        // After a normal end the close_notify went out with the server's
        // EOF; otherwise (fast close, idle timeout, `close N`) say goodbye
        // now, best effort (spec protocols.md §3).
        let _ = stream.close_notify();
        ended.account(shared);
        drop(server_fd);
        drop(stream);
        return;
    }
    let mut filter = filters(shared, &peer, &server_host);
    let outcome = relay::relay(
        &mut local.pipes,
        &shared.yield_guard,
        ClientSide::Plain(&client),
        &server_fd,
        &counters,
        opts,
        filter.as_deref_mut().map(|f| f as &mut dyn Filter),
    );
    log_outcome(&peer, &outcome);
    ended.account(shared);
    // Sockets close here, after the slot is gone, so `close N` never
    // shuts down a reused descriptor number.
    drop(server_fd);
    drop(client);
}

/// Records in the connection slot which server is being tried.
fn note_target(b: &mut Balancer, conn_id: usize, target: Option<Target>) {
    if let (Some(t), Some(c)) = (target, b.conns.get_mut(conn_id)) {
        c.server = t;
    }
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

/// What a finished pair must give back to the tables.
struct Ended<'a> {
    conn_id: usize,
    client_id: usize,
    target: Target,
    counters: &'a PairCounters,
}

impl Ended<'_> {
    /// Frees the connection slot and adds the pair's bytes to its server
    /// and client. Call before closing the sockets.
    fn account(&self, shared: &Shared) {
        let up = PairCounters::get(&self.counters.from_client);
        let down = PairCounters::get(&self.counters.from_server);
        let mut b = shared.lock();
        b.conns.remove(self.conn_id);
        b.settle(self.target, self.client_id, up, down);
    }
}

/// Runs the server side of the TLS handshake with the client on this
/// pair's thread, within `ssl_handshake_timeout` (spec protocols.md §3: it
/// starts only after the upstream connect succeeded). A client that stalls
/// only holds this thread and its own sockets.
///
/// The handshake runs on a duplicate of the client socket, because the
/// acceptor closes its socket when the handshake fails, and the slot must
/// keep naming an open descriptor until it is freed (`close N` shuts down
/// the descriptor it names). On success the slot is switched to the
/// stream's descriptor.
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
