//! X-Forwarded-For insertion through the real binary (-H): the echo
//! backend returns exactly what pen sent it.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::Shutdown;

/// Sends `chunks` from `src` through pen, each one read by pen on its own,
/// then EOF; what the echo backend sent back.
fn through(pen_port: u16, src: &str, chunks: &[&[u8]]) -> Vec<u8> {
    let mut s = connect_from(src, local(pen_port)).unwrap();
    for c in chunks {
        s.write_all(c).unwrap();
        wait_peer_read(&s);
    }
    s.shutdown(Shutdown::Write).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    out
}

/// An echo backend behind `pen -H`.
fn http_pen() -> (Backend, Pen) {
    let b = Backend::start("E", Behaviour::Echo);
    let pen = Pen::serve(&["-H"], &[b.spec()]);
    (b, pen)
}

const XFF: &str = "X-Forwarded-Proto: http\r\nX-Forwarded-For: 127.0.0.5\r\n";

#[test]
fn every_keepalive_request_gets_the_headers() {
    let (_b, pen) = http_pen();
    let r1 = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
    let r2 = b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
    let got = through(pen.port, "127.0.0.5", &[r1, r2]);
    let want = format!("GET /a HTTP/1.1\r\nHost: x\r\n{XFF}\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n{XFF}\r\nhello");
    assert_eq!(String::from_utf8_lossy(&got), want);
}

#[test]
fn pipelined_and_split_requests() {
    let (_b, pen) = http_pen();
    let pipelined = b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n";
    let got = through(pen.port, "127.0.0.5", &[pipelined]);
    assert_eq!(
        String::from_utf8_lossy(&got),
        format!("GET /1 HTTP/1.1\r\nHost: x\r\n{XFF}\r\nGET /2 HTTP/1.1\r\nHost: x\r\n{XFF}\r\n")
    );
    let got = through(
        pen.port,
        "127.0.0.5",
        &[b"GET /s HT", b"TP/1.1\r\nHo", b"st: x\r", b"\n\r\n"],
    );
    assert_eq!(
        String::from_utf8_lossy(&got),
        format!("GET /s HTTP/1.1\r\nHost: x\r\n{XFF}\r\n")
    );
}

#[test]
fn bodies_are_never_touched() {
    let (_b, pen) = http_pen();
    let body = b"GET / HTTP/1.1\r\n\r\n\nX-Forwarded-For: evil\r\n";
    let mut req = format!(
        "POST /up HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    let chunked = b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nGET /\r\n3;x=y\r\nabc\r\n0\r\nT: v\r\n\r\n";
    let got = through(pen.port, "127.0.0.5", &[&req, chunked]);
    let mut want = format!(
        "POST /up HTTP/1.1\r\nContent-Length: {}\r\n{XFF}\r\n",
        body.len()
    )
    .into_bytes();
    want.extend_from_slice(body);
    want.extend_from_slice(
        format!("POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n{XFF}\r\n").as_bytes(),
    );
    want.extend_from_slice(b"5\r\nGET /\r\n3;x=y\r\nabc\r\n0\r\nT: v\r\n\r\n");
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want)
    );
}

#[test]
fn existing_header_is_kept_and_not_duplicated() {
    let (_b, pen) = http_pen();
    let got = through(
        pen.port,
        "127.0.0.5",
        &[b"GET / HTTP/1.1\r\nx-forwarded-for: 1.2.3.4\r\n\r\n"],
    );
    assert_eq!(
        String::from_utf8_lossy(&got),
        "GET / HTTP/1.1\r\nx-forwarded-for: 1.2.3.4\r\nX-Forwarded-Proto: http\r\n\r\n"
    );
}

#[test]
fn non_http_streams_are_relayed_unmodified() {
    let (_b, pen) = http_pen();
    let data = random_bytes(7, 300_000);
    let got = through(pen.port, "127.0.0.5", &[b"SSH-2.0-OpenSSH_9.2\r\n", &data]);
    let mut want = b"SSH-2.0-OpenSSH_9.2\r\n".to_vec();
    want.extend_from_slice(&data);
    assert!(
        got == want,
        "stream altered ({} vs {} bytes)",
        got.len(),
        want.len()
    );
}

#[test]
fn oversized_headers_get_431() {
    let (_b, pen) = http_pen();
    let mut req = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..2000 {
        req.extend_from_slice(format!("X-Filler-{i}: aaaaaaaaaaaaaaaaaaaaaaaa\r\n").as_bytes());
    }
    let mut s = connect_from("127.0.0.5", local(pen.port)).unwrap();
    let _ = s.write_all(&req);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert!(
        String::from_utf8_lossy(&out).starts_with("HTTP/1.1 431 "),
        "{}",
        String::from_utf8_lossy(&out)
    );
}
