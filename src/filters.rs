//! The relay filter for pairs whose bytes must be seen: the request log,
//! debug dumps and X-Forwarded-For insertion (doc/pen-0.34.1.md,
//! "X-Forwarded-For", "Request log", "Debug levels and dumps").

use crate::http::{RequestRewriter, Scheme, HEADER_TOO_LARGE_RESPONSE};
use crate::relay::Filter;

/// Inspects (and for HTTP, rewrites) one pair's bytes.
pub struct PairFilter {
    client: String,
    server: String,
    log: bool,
    dump: Option<bool>,
    http: Option<RequestRewriter>,
}

impl PairFilter {
    /// `dump` is `Some(ascii)` at debug level 3 and up; `http` is the
    /// scheme to announce when X-Forwarded-For insertion is on.
    pub fn new(
        client: String,
        server: String,
        log: bool,
        dump: Option<bool>,
        http: Option<Scheme>,
    ) -> PairFilter {
        let http = http.map(|scheme| RequestRewriter::new(&client, scheme));
        PairFilter {
            client,
            server,
            log,
            dump,
            http,
        }
    }
}

impl Filter for PairFilter {
    fn client_data(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), Vec<u8>> {
        if self.log {
            crate::request_log::log_request(&self.client, &self.server, input);
        }
        if let Some(ascii) = self.dump {
            crate::logging::dump(input, ascii);
        }
        match self.http.as_mut() {
            None => out.extend_from_slice(input),
            Some(rw) => {
                if rw.feed(input, out).is_err() {
                    crate::logging::debug(1, || {
                        format!("{}: request header too large; replying 431", self.client)
                    });
                    return Err(HEADER_TOO_LARGE_RESPONSE.to_vec());
                }
            }
        }
        Ok(())
    }

    fn server_data(&mut self, data: &[u8]) {
        if let Some(ascii) = self.dump {
            crate::logging::dump(data, ascii);
        }
    }

    fn client_eof(&mut self, out: &mut Vec<u8>) {
        if let Some(rw) = self.http.as_mut() {
            out.extend_from_slice(&rw.take_pending());
        }
    }
}
