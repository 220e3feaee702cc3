//! The `-H` header rewriter, fed one client stream cut at the points the
//! input chooses. Whatever the cuts, it must emit exactly what it emits for
//! the whole stream at once, and what it emits must be the stream with
//! only `X-Forwarded-*` lines added.
//!
//! Input: byte 0 picks the scheme and the client address; byte 1 is the
//! number N (at most 32) of piece lengths that follow; the N bytes after
//! it are the piece lengths, used in turn; the rest is the stream.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pen::http::{HttpError, RequestRewriter, Scheme};

const CLIENTS: [&str; 4] = ["127.0.0.5", "2001:db8::1", "/run/client.sock", ""];

struct Run {
    out: Vec<u8>,
    error: Option<HttpError>,
}

/// Feeds `stream` in pieces of `lengths` (cyclically; 0 feeds an empty
/// slice), then takes what is held back, as a pair does when the client
/// closes.
fn run(client: &str, scheme: Scheme, stream: &[u8], lengths: &[usize]) -> Run {
    let mut r = RequestRewriter::new(client, scheme);
    let mut out = Vec::new();
    // All zero would never get through the stream.
    let lengths = if lengths.iter().all(|&l| l == 0) {
        &[][..]
    } else {
        lengths
    };
    let mut pos = 0;
    let mut i = 0;
    loop {
        let len = if lengths.is_empty() {
            stream.len()
        } else {
            lengths[i % lengths.len()]
        };
        i += 1;
        let end = (pos + len).min(stream.len());
        if let Err(e) = r.feed(&stream[pos..end], &mut out) {
            // Every later call fails too.
            assert_eq!(r.feed(b"x", &mut out), Err(e));
            return Run {
                out,
                error: Some(e),
            };
        }
        pos = end;
        if pos == stream.len() && i >= lengths.len() {
            break;
        }
    }
    out.extend_from_slice(&r.take_pending());
    Run { out, error: None }
}

/// `out` is `input` with whole `X-Forwarded-Proto`/`-For` lines added (on
/// an error, a prefix of `input` with them).
fn only_insertions(input: &[u8], out: &[u8], complete: bool) {
    let (mut i, mut o) = (0, 0);
    while o < out.len() {
        if i < input.len() && input[i] == out[o] {
            i += 1;
            o += 1;
            continue;
        }
        let rest = &out[o..];
        assert!(
            rest.starts_with(b"X-Forwarded-Proto: ") || rest.starts_with(b"X-Forwarded-For: "),
            "changed bytes at output offset {o} (input offset {i})"
        );
        let nl = rest
            .iter()
            .position(|&b| b == b'\n')
            .expect("inserted line without LF");
        o += nl + 1;
    }
    if complete {
        assert_eq!(i, input.len(), "input bytes lost");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, rest)) = data.split_first() else {
        return;
    };
    let Some((&n, rest)) = rest.split_first() else {
        return;
    };
    let n = usize::from(n % 33).min(rest.len());
    let (lengths, stream) = rest.split_at(n);
    let lengths: Vec<usize> = lengths.iter().map(|&l| usize::from(l)).collect();
    let scheme = if choice & 1 == 0 {
        Scheme::Http
    } else {
        Scheme::Https
    };
    let client = CLIENTS[usize::from(choice >> 1) % CLIENTS.len()];

    let whole = run(client, scheme, stream, &[]);
    let cut = run(client, scheme, stream, &lengths);
    assert_eq!(whole.error, cut.error, "the error depends on the cuts");
    assert!(whole.out == cut.out, "the output depends on the cuts");
    let bytewise = run(client, scheme, stream, &[1]);
    assert_eq!(whole.error, bytewise.error);
    assert!(whole.out == bytewise.out, "byte-at-a-time output differs");
    only_insertions(stream, &whole.out, whole.error.is_none());
});
