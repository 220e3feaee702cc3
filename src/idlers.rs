//! The maintainer of `idlers N` (man/penctl.1): one thread keeps N idle,
//! already connected upstream connections in `Shared::idlers`, spread over
//! the available servers (configured, not blacklisted, not down by the
//! health checks), the emptiest first. It drops those of a server that is
//! no longer available or has another address, and those the server
//! closed, and makes new ones as clients take them.
//!
//! It reads the table under the state lock, connects with neither lock
//! held (as a client's connection would: [`Dial::probe`]), and sleeps until
//! woken (a command ran, an idler was taken) or [`RECHECK`] passes.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::idle_pool::Destination;
use crate::logging;
use crate::runtime::Shared;
use crate::selection;
use crate::state::servers::Target;
use crate::sys;
use crate::upstream::Dial;

/// The longest the maintainer sleeps before it looks at the servers and
/// its connections again.
const RECHECK: Duration = Duration::from_millis(200);

/// How long a server whose connect failed, or that closed an idle
/// connection, gets no new idlers.
const BACKOFF: Duration = Duration::from_secs(1);

/// Starts the maintainer's thread once pen runs and `idlers` is above 0,
/// unless it runs already. Once started it stays, idle while N is 0.
pub fn start_if_wanted(shared: &Shared) {
    {
        let b = shared.lock();
        if !b.running || b.settings.idlers == 0 {
            return;
        }
    }
    shared.start_once(&shared.idlers_started, "pen-idlers", run);
}

/// What one round needs, copied out of the state.
struct Plan {
    wanted: usize,
    /// The available servers and how to reach each.
    servers: Vec<(Destination, Dial)>,
}

fn plan(shared: &Shared) -> Plan {
    let b = shared.lock();
    let now = sys::now_unix();
    let servers = (0..b.servers.len())
        .filter(|&i| selection::available(&b, i, now))
        .filter_map(|i| {
            let dial = Dial::probe(&b, Target::Backend(i))?;
            let to = dial.idle_destination()?;
            Some((to, dial))
        })
        .collect();
    Plan {
        wanted: b.settings.idlers,
        servers,
    }
}

fn run(shared: &Shared) {
    let mut backoff: HashMap<usize, Instant> = HashMap::new();
    loop {
        let plan = plan(shared);
        let pruned = shared
            .idlers
            .prune(plan.wanted, |to| plan.servers.iter().any(|(s, _)| s == to));
        if !pruned.sockets.is_empty() {
            logging::debug(2, || format!("idlers: {} dropped", pruned.sockets.len()));
        }
        drop(pruned.sockets);
        let now = Instant::now();
        backoff.retain(|_, until| *until > now);
        // A server that closes idle connections at once is not redialed in
        // a tight loop.
        for slot in pruned.closed_by_server {
            backoff.entry(slot).or_insert(now + BACKOFF);
        }
        // The available server with the fewest idlers, not backing off.
        let next = plan
            .servers
            .iter()
            .filter(|(to, _)| !backoff.contains_key(&to.slot))
            .min_by_key(|(to, _)| shared.idlers.count_for(to.slot));
        let (to, dial) = match next {
            Some(n) if shared.idlers.len() < plan.wanted => n,
            _ => {
                shared.idlers.wait(RECHECK);
                continue;
            }
        };
        match dial.open() {
            Ok(socket) => {
                // Closed outside the pool's lock if the pool filled meanwhile.
                let _ = shared.idlers.put(to.clone(), socket, plan.wanted);
            }
            Err(e) => {
                logging::debug(1, || {
                    format!("idlers: can't connect to server {}: {e}", to.slot)
                });
                backoff.insert(to.slot, now + BACKOFF);
            }
        }
    }
}
