//! The metrics endpoint (`metrics_listen`, man/penctl.1): a minimal
//! HTTP/1.x server for Prometheus. One request per connection, served on
//! its own short-lived thread with a deadline, like the control port, and
//! guarded by `control_acl`: a slow or silent scraper only ties up its own
//! thread.

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use super::port::{permitted, write_all};
use crate::logging;
use crate::runtime::Shared;
use crate::sys;
use crate::sys::socket::PeerAddr;

/// A scraper must send its request head within this time.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest request head read; a longer one is refused.
const MAX_HEAD: usize = 8192;

/// What a request head asks for.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    /// `GET /metrics` (`HEAD` too, `head_only`).
    Metrics {
        head_only: bool,
    },
    NotFound,
    MethodNotAllowed,
    Malformed,
}

/// Reads the request line of `head` (`METHOD TARGET HTTP/1.x`).
fn parse(head: &[u8]) -> Request {
    let text = String::from_utf8_lossy(head);
    let line = text.lines().next().unwrap_or("");
    let mut w = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (w.next(), w.next(), w.next(), w.next())
    else {
        return Request::Malformed;
    };
    if !version.starts_with("HTTP/1.") {
        return Request::Malformed;
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Request::MethodNotAllowed,
    };
    let path = target.split(['?', '#']).next().unwrap_or("");
    if path == "/metrics" {
        Request::Metrics { head_only }
    } else {
        Request::NotFound
    }
}

/// The whole response to `request`.
fn respond(shared: &Shared, request: &Request) -> Vec<u8> {
    let (status, content_type, body, head_only) = match request {
        Request::Metrics { head_only } => (
            "200 OK",
            crate::metrics::CONTENT_TYPE,
            crate::metrics::render(shared),
            *head_only,
        ),
        Request::NotFound => (
            "404 Not Found",
            "text/plain",
            "not found: the metrics are at /metrics\n".into(),
            false,
        ),
        Request::MethodNotAllowed => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET and HEAD\n".into(),
            false,
        ),
        Request::Malformed => (
            "400 Bad Request",
            "text/plain",
            "bad request\n".into(),
            false,
        ),
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

/// The end of the request head (an empty line), if it has arrived.
fn head_complete(buf: &[u8]) -> bool {
    buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n")
}

/// One scraper: read its request head (within the deadline), answer, close.
pub fn serve(shared: &Shared, fd: OwnedFd, peer: &PeerAddr) {
    if !permitted(shared, peer) {
        logging::debug(1, || "metrics: not from there".into());
        return;
    }
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !head_complete(&buf) {
        if buf.len() > MAX_HEAD {
            write_all(&fd, &respond(shared, &Request::Malformed), deadline);
            return;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match sys::poll::wait_one(fd.as_fd(), sys::poll::IN, Some(left)) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        match sys::socket::read(fd.as_fd(), &mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
    let reply = respond(shared, &parse(&buf));
    write_all(&fd, &reply, deadline + REQUEST_TIMEOUT);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        let p = |s: &str| parse(s.as_bytes());
        assert_eq!(
            p("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Request::Metrics { head_only: false }
        );
        assert_eq!(
            p("GET /metrics?x=1 HTTP/1.0\n\n"),
            Request::Metrics { head_only: false }
        );
        assert_eq!(
            p("HEAD /metrics HTTP/1.1\r\n\r\n"),
            Request::Metrics { head_only: true }
        );
        assert_eq!(p("GET / HTTP/1.1\r\n\r\n"), Request::NotFound);
        assert_eq!(p("GET /metricsx HTTP/1.1\r\n\r\n"), Request::NotFound);
        assert_eq!(
            p("POST /metrics HTTP/1.1\r\n\r\n"),
            Request::MethodNotAllowed
        );
        assert_eq!(p("GET /metrics\r\n\r\n"), Request::Malformed);
        assert_eq!(p("GET /metrics SPDY/3\r\n\r\n"), Request::Malformed);
        assert_eq!(p("\r\n\r\n"), Request::Malformed);
    }

    #[test]
    fn heads_end_with_an_empty_line() {
        assert!(!head_complete(b"GET /metrics HTTP/1.1\r\n"));
        assert!(head_complete(b"GET /metrics HTTP/1.1\r\n\r\n"));
        assert!(head_complete(b"GET /metrics HTTP/1.0\n\n"));
    }
}
