//! `X-Forwarded-For` / `X-Forwarded-Proto` insertion for HTTP mode (`-H`,
//! `http`), as a streaming rewriter of the client→server byte stream.
//!
//! Pen 0.34.1 rewrote each read chunk on its own, so a header block split
//! across reads, or the second of two pipelined requests, got no headers
//! (doc/pen-0.34.1.md, quirk Q43; it also overflowed its buffer by one byte on
//! a full 32768-byte read, quirk Q32). We parse the stream as HTTP/1.x requests
//! instead, following each request's framing (Content-Length, chunked) to find
//! the next one, and keep what backends saw from pen (doc/pen-0.34.1.md,
//! "X-Forwarded-For"):
//!
//! * only GET, POST and HEAD requests (method case-insensitive) are changed;
//! * `X-Forwarded-Proto: http|https` then `X-Forwarded-For: CLIENT` are put
//!   just before the empty line that ends the header block;
//! * an existing header of either name (any case) is left exactly as it is
//!   and no second one is added. Pen did this too. Backends must therefore
//!   not trust `X-Forwarded-For` unless pen is the only way in: a client can
//!   send its own value and it is passed on unchanged.
//!
//! Anything that does not look like HTTP/1.x is passed on unchanged, and so
//! is everything after a request we cannot follow (a CONNECT or Upgrade
//! request, framing we cannot determine): a rewriter must never corrupt a
//! stream it does not understand.

use std::fmt;

/// Whether the client side of the connection is plain or TLS; this is the
/// value of the inserted `X-Forwarded-Proto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain TCP client connection.
    Http,
    /// TLS terminated by pen.
    Https,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// Why a client's request stream cannot be forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    /// A request's header block exceeded [`MAX_HEADER_BYTES`]; the caller
    /// should answer [`HEADER_TOO_LARGE_RESPONSE`] and close.
    HeaderTooLarge,
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::HeaderTooLarge => write!(
                f,
                "HTTP request header block longer than {MAX_HEADER_BYTES} bytes"
            ),
        }
    }
}

impl std::error::Error for HttpError {}

/// Largest header block (request line, header lines and the final empty
/// line) held back while waiting for its end; pen's buffer was this size.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// What to answer a client whose header block exceeded [`MAX_HEADER_BYTES`].
pub const HEADER_TOO_LARGE_RESPONSE: &[u8] =
    b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";

/// Longest method token accepted; longer first words mean "not HTTP".
const MAX_METHOD_LEN: usize = 20;
/// Header names longer than this are none of those we look for.
const NAME_CAP: usize = 24;
/// Longest Content-Length value / Transfer-Encoding coding we interpret.
const VALUE_CAP: usize = 32;
/// What must precede the version in a request line.
const HTTP_MARK: &[u8] = b" HTTP/";

/// Rewrites one client connection's request stream; feed it every byte read
/// from the client, in order, and send what it produces to the server.
#[derive(Debug)]
pub struct RequestRewriter {
    client_ip: Box<str>,
    scheme: Scheme,
    state: State,
    /// The header block seen so far, when it did not end in the bytes fed;
    /// empty (no allocation) between header blocks.
    pending: Vec<u8>,
    head: Head,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting the first byte of a request. Empty lines before a request
    /// are passed on: RFC 9112 §2.2 asks servers to ignore them, and some
    /// clients send a CRLF after a POST body.
    RequestStart { after_cr: bool },
    /// Inside a header block (details in `head`).
    Head,
    /// Inside a Content-Length body.
    Body { remaining: u64 },
    /// Inside a chunked body.
    Chunked(Chunk),
    /// Copying everything unchanged until the connection ends.
    Passthrough,
    /// A header block was too large; the connection must be closed.
    Failed,
}

/// Position in a chunked body (RFC 9112 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    SizeStart,
    Size {
        size: u64,
    },
    /// Whitespace after the size (allowed before an extension).
    SizeSpace {
        size: u64,
    },
    Extension {
        size: u64,
    },
    SizeLf {
        size: u64,
    },
    Data {
        remaining: u64,
    },
    DataCr,
    DataLf,
    TrailerLineStart,
    TrailerCr,
    TrailerLine,
}

/// Incremental parse of one header block.
#[derive(Debug, Default)]
struct Head {
    phase: HeadPhase,
    /// Bytes of the block so far.
    block_len: usize,
    /// Block offset where the current line starts.
    line_start: usize,
    method: [u8; MAX_METHOD_LEN],
    method_len: usize,
    /// How much of `HTTP_MARK` the request line has just matched.
    mark_matched: usize,
    version: Version,
    name: [u8; NAME_CAP],
    /// Length of the current header name, up to `NAME_CAP + 1` (too long).
    name_len: usize,
    /// The header the current line belongs to (for obs-fold continuations).
    kind: HeaderKind,
    value: [u8; VALUE_CAP],
    value_len: usize,
    value_overflow: bool,
    has_forwarded_for: bool,
    has_forwarded_proto: bool,
    upgrade: bool,
    content_length: Option<u64>,
    content_length_bad: bool,
    transfer_encoding: bool,
    /// The last transfer coding seen so far is `chunked`.
    chunked_last: bool,
    transfer_encoding_bad: bool,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum HeadPhase {
    #[default]
    Method,
    RequestLine {
        after_cr: bool,
    },
    LineStart,
    LineStartCr,
    Name,
    Value,
    SkipLine,
}

/// The version after the last " HTTP/" of the request line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Version {
    #[default]
    None,
    AfterMark,
    AfterOne,
    OneDotX,
    Other,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum HeaderKind {
    #[default]
    Other,
    ContentLength,
    TransferEncoding,
}

/// Result of scanning bytes of a header block.
enum Scan {
    /// All bytes belong to the block, which has not ended yet.
    Incomplete,
    /// The block ends after this many bytes of the input.
    Complete(usize),
    /// The bytes cannot be a request: switch to passthrough.
    NotHttp,
    TooLarge,
}

impl RequestRewriter {
    /// A rewriter for a connection from `client_ip` (the text inserted as
    /// `X-Forwarded-For`: IPv6 in compressed form, a Unix client's socket
    /// path) whose client side is `scheme`. Control characters are dropped
    /// from `client_ip` so that it cannot break the header line.
    pub fn new(client_ip: &str, scheme: Scheme) -> Self {
        RequestRewriter {
            client_ip: client_ip.chars().filter(|c| !c.is_control()).collect(),
            scheme,
            state: State::RequestStart { after_cr: false },
            pending: Vec::new(),
            head: Head::default(),
        }
    }

    /// Feeds bytes read from the client and appends what must be sent to the
    /// server to `out`. Bytes of an incomplete header block are held back
    /// until the block is complete; body bytes and anything passed through
    /// are never held.
    ///
    /// On `Err` the connection must be closed (answering
    /// [`HEADER_TOO_LARGE_RESPONSE`]); `out` may have received the bytes of
    /// requests completed earlier in `input`; every later call fails too.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), HttpError> {
        let mut pos = 0;
        while pos < input.len() {
            match self.state {
                State::Failed => return Err(HttpError::HeaderTooLarge),
                State::Passthrough => {
                    out.extend_from_slice(&input[pos..]);
                    return Ok(());
                }
                State::RequestStart { after_cr } => {
                    let byte = input[pos];
                    if byte == b'\n' {
                        out.push(byte);
                        pos += 1;
                        self.state = State::RequestStart { after_cr: false };
                    } else if after_cr {
                        // A lone CR: not an empty line, not a request.
                        self.state = State::Passthrough;
                    } else if byte == b'\r' {
                        out.push(byte);
                        pos += 1;
                        self.state = State::RequestStart { after_cr: true };
                    } else if is_tchar(byte) {
                        self.head = Head::default();
                        self.state = State::Head;
                    } else {
                        self.state = State::Passthrough;
                    }
                }
                State::Head => {
                    let rest = &input[pos..];
                    match self.head.scan(rest) {
                        Scan::Incomplete => {
                            self.pending.extend_from_slice(rest);
                            return Ok(());
                        }
                        Scan::Complete(len) => {
                            self.finish_head(&rest[..len], out);
                            pos += len;
                        }
                        Scan::NotHttp => {
                            // The rest of `input` follows via Passthrough.
                            out.extend_from_slice(&std::mem::take(&mut self.pending));
                            self.state = State::Passthrough;
                        }
                        Scan::TooLarge => {
                            self.pending = Vec::new();
                            self.state = State::Failed;
                            return Err(HttpError::HeaderTooLarge);
                        }
                    }
                }
                State::Body { remaining } => {
                    let available = (input.len() - pos) as u64;
                    let n = remaining.min(available);
                    // n <= available, which came from a usize.
                    let end = pos + n as usize;
                    out.extend_from_slice(&input[pos..end]);
                    pos = end;
                    self.state = if n == remaining {
                        State::RequestStart { after_cr: false }
                    } else {
                        State::Body {
                            remaining: remaining - n,
                        }
                    };
                }
                State::Chunked(chunk) => {
                    let (used, next) = scan_chunked(chunk, &input[pos..]);
                    out.extend_from_slice(&input[pos..pos + used]);
                    pos += used;
                    self.state = next;
                }
            }
        }
        Ok(())
    }

    /// True once the stream was recognised as not HTTP/1.x, or after a
    /// request we cannot follow (CONNECT, Upgrade, unknown framing): from
    /// then on [`feed`](Self::feed) copies bytes unchanged.
    pub fn is_passthrough(&self) -> bool {
        self.state == State::Passthrough
    }

    /// Takes the bytes held back (an incomplete header block), e.g. to
    /// forward them when the client closes. Afterwards the rewriter is in
    /// passthrough if it was inside a header block, since the bytes that
    /// would complete it can no longer be rewritten.
    pub fn take_pending(&mut self) -> Vec<u8> {
        if self.state == State::Head {
            self.state = State::Passthrough;
        }
        std::mem::take(&mut self.pending)
    }

    /// Emits a complete header block (the held bytes followed by `tail`)
    /// with the insertion, and moves on to the request's body.
    fn finish_head(&mut self, tail: &[u8], out: &mut Vec<u8>) {
        let mut held = std::mem::take(&mut self.pending);
        let block: &[u8] = if held.is_empty() {
            tail
        } else {
            held.extend_from_slice(tail);
            &held
        };
        let head = &self.head;
        let insert_at = head.line_start;
        out.extend_from_slice(&block[..insert_at]);
        let method = &head.method[..head.method_len];
        if [&b"GET"[..], b"POST", b"HEAD"]
            .iter()
            .any(|m| method.eq_ignore_ascii_case(m))
        {
            // The inserted lines end like the request's final empty line:
            // CRLF normally, LF for an LF-only request. Pen always used
            // CRLF, producing mixed line ends (doc/pen-0.34.1.md,
            // "X-Forwarded-For"); a server that accepted the request's own LF
            // lines accepts ours.
            let eol: &[u8] = if block.get(insert_at) == Some(&b'\r') {
                b"\r\n"
            } else {
                b"\n"
            };
            // Proto before For, as pen's output (doc/pen-0.34.1.md,
            // "X-Forwarded-For").
            if !head.has_forwarded_proto {
                out.extend_from_slice(b"X-Forwarded-Proto: ");
                out.extend_from_slice(self.scheme.as_str().as_bytes());
                out.extend_from_slice(eol);
            }
            if !head.has_forwarded_for {
                out.extend_from_slice(b"X-Forwarded-For: ");
                out.extend_from_slice(self.client_ip.as_bytes());
                out.extend_from_slice(eol);
            }
        }
        out.extend_from_slice(&block[insert_at..]);
        self.state = head.next_state();
    }
}

impl Head {
    /// Scans bytes of the header block; see [`Scan`].
    fn scan(&mut self, input: &[u8]) -> Scan {
        for (i, &byte) in input.iter().enumerate() {
            self.block_len += 1;
            if self.block_len > MAX_HEADER_BYTES {
                return Scan::TooLarge;
            }
            match self.phase {
                HeadPhase::Method => {
                    if byte == b' ' && self.method_len > 0 {
                        self.phase = HeadPhase::RequestLine { after_cr: false };
                    } else if is_tchar(byte) && self.method_len < MAX_METHOD_LEN {
                        self.method[self.method_len] = byte;
                        self.method_len += 1;
                    } else {
                        return Scan::NotHttp;
                    }
                }
                HeadPhase::RequestLine { after_cr } => {
                    if byte == b'\n' {
                        // HTTP/0.9 (no version) and HTTP/2 (the PRI
                        // preface) are not ours to touch.
                        if self.version != Version::OneDotX {
                            return Scan::NotHttp;
                        }
                        self.start_line(HeadPhase::LineStart);
                    } else if byte == b'\r' && !after_cr {
                        self.phase = HeadPhase::RequestLine { after_cr: true };
                    } else if after_cr || is_ctl(byte) {
                        return Scan::NotHttp;
                    } else {
                        self.track_version(byte);
                    }
                }
                HeadPhase::LineStart => match byte {
                    b'\n' => return Scan::Complete(i + 1),
                    b'\r' => self.phase = HeadPhase::LineStartCr,
                    b' ' | b'\t' => {
                        // Obsolete line folding continues the previous
                        // header's value; we cannot rely on a folded
                        // framing header.
                        match self.kind {
                            HeaderKind::ContentLength => self.content_length_bad = true,
                            HeaderKind::TransferEncoding => self.transfer_encoding_bad = true,
                            HeaderKind::Other => {}
                        }
                        self.phase = HeadPhase::SkipLine;
                    }
                    _ => {
                        self.name[0] = byte;
                        self.name_len = 1;
                        self.phase = HeadPhase::Name;
                    }
                },
                HeadPhase::LineStartCr => {
                    if byte == b'\n' {
                        return Scan::Complete(i + 1);
                    }
                    // A line starting with a lone CR: malformed, ignored.
                    self.kind = HeaderKind::Other;
                    self.phase = HeadPhase::SkipLine;
                }
                HeadPhase::Name => match byte {
                    b':' => self.header_name_done(),
                    b'\n' => {
                        // A line without a colon: ignored.
                        self.kind = HeaderKind::Other;
                        self.start_line(HeadPhase::LineStart);
                    }
                    _ => {
                        if self.name_len < NAME_CAP {
                            self.name[self.name_len] = byte;
                        }
                        self.name_len = (self.name_len + 1).min(NAME_CAP + 1);
                    }
                },
                HeadPhase::Value => {
                    if byte == b'\n' {
                        self.header_value_done();
                        self.start_line(HeadPhase::LineStart);
                    } else if self.kind == HeaderKind::TransferEncoding && byte == b',' {
                        self.transfer_coding_done();
                    } else if self.kind != HeaderKind::Other {
                        if self.value_len < VALUE_CAP {
                            self.value[self.value_len] = byte;
                            self.value_len += 1;
                        } else {
                            self.value_overflow = true;
                        }
                    }
                }
                HeadPhase::SkipLine => {
                    if byte == b'\n' {
                        self.start_line(HeadPhase::LineStart);
                    }
                }
            }
        }
        Scan::Incomplete
    }

    /// The next line starts after the byte just scanned.
    fn start_line(&mut self, phase: HeadPhase) {
        self.line_start = self.block_len;
        self.phase = phase;
    }

    /// Follows " HTTP/" and the version after its last occurrence.
    fn track_version(&mut self, byte: u8) {
        self.version = match (self.version, byte) {
            (Version::AfterMark, b'1') => Version::AfterOne,
            (Version::AfterOne, b'.') => Version::OneDotX,
            (Version::AfterMark | Version::AfterOne, _) => Version::Other,
            (v, _) => v,
        };
        // ' ' occurs only at the start of the mark, so a mismatch restarts
        // the match at 1 (this byte is a space) or 0.
        if byte == HTTP_MARK[self.mark_matched] {
            self.mark_matched += 1;
            if self.mark_matched == HTTP_MARK.len() {
                self.mark_matched = 0;
                self.version = Version::AfterMark;
            }
        } else {
            self.mark_matched = usize::from(byte == b' ');
        }
    }

    fn header_name_done(&mut self) {
        self.kind = HeaderKind::Other;
        self.value_len = 0;
        self.value_overflow = false;
        self.phase = HeadPhase::Value;
        if self.name_len > NAME_CAP {
            return;
        }
        // Whitespace before the colon is invalid; a server rejects the
        // request or sees the name without it, so count it as that name.
        let name = trim_ascii_space(&self.name[..self.name_len]);
        let is = |wanted: &str| name.eq_ignore_ascii_case(wanted.as_bytes());
        if is("x-forwarded-for") {
            self.has_forwarded_for = true;
        } else if is("x-forwarded-proto") {
            self.has_forwarded_proto = true;
        } else if is("upgrade") {
            self.upgrade = true;
        } else if is("content-length") {
            self.kind = HeaderKind::ContentLength;
        } else if is("transfer-encoding") {
            self.kind = HeaderKind::TransferEncoding;
            self.transfer_encoding = true;
        }
    }

    fn header_value_done(&mut self) {
        match self.kind {
            HeaderKind::ContentLength => self.content_length_done(),
            HeaderKind::TransferEncoding => self.transfer_coding_done(),
            HeaderKind::Other => {}
        }
    }

    /// A Content-Length value: a decimal number, or a list of equal ones
    /// (RFC 9110 §8.6); repeated headers must agree too.
    fn content_length_done(&mut self) {
        if self.value_overflow {
            self.content_length_bad = true;
            return;
        }
        for item in self.value[..self.value_len].split(|&b| b == b',') {
            let digits = trim_ascii_space(item);
            let parsed = if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) {
                std::str::from_utf8(digits)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
            } else {
                None
            };
            match (parsed, self.content_length) {
                (Some(n), None) => self.content_length = Some(n),
                (Some(n), Some(m)) if n == m => {}
                _ => self.content_length_bad = true,
            }
        }
    }

    /// One transfer coding of a list ended; only whether the last one is
    /// `chunked` matters (RFC 9112 §6.3).
    fn transfer_coding_done(&mut self) {
        let coding = trim_ascii_space(&self.value[..self.value_len]);
        if self.value_overflow {
            self.chunked_last = false;
        } else if !coding.is_empty() {
            self.chunked_last = coding.eq_ignore_ascii_case(b"chunked");
        }
        self.value_len = 0;
        self.value_overflow = false;
    }

    /// Where the stream goes after this header block.
    fn next_state(&self) -> State {
        let method = &self.method[..self.method_len];
        if self.upgrade || method.eq_ignore_ascii_case(b"CONNECT") {
            // The connection may turn into another protocol.
            return State::Passthrough;
        }
        if self.transfer_encoding {
            // Both framings at once is a request-smuggling pattern (RFC 9112
            // §6.3): we cannot know which one the backend follows.
            if self.chunked_last
                && !self.transfer_encoding_bad
                && self.content_length.is_none()
                && !self.content_length_bad
            {
                return State::Chunked(Chunk::SizeStart);
            }
            return State::Passthrough;
        }
        match (self.content_length_bad, self.content_length) {
            (true, _) => State::Passthrough,
            (false, Some(n)) if n > 0 => State::Body { remaining: n },
            _ => State::RequestStart { after_cr: false },
        }
    }
}

/// Scans chunked-body bytes, all of which are passed on; returns how many
/// belong to the body and the state after them. Unparseable chunk framing
/// switches to passthrough (the bytes not counted follow unchanged).
fn scan_chunked(mut chunk: Chunk, input: &[u8]) -> (usize, State) {
    let mut i = 0;
    while i < input.len() {
        let byte = input[i];
        chunk = match chunk {
            Chunk::Data { remaining } => {
                let n = remaining.min((input.len() - i) as u64);
                i += n as usize;
                chunk = if n == remaining {
                    Chunk::DataCr
                } else {
                    Chunk::Data {
                        remaining: remaining - n,
                    }
                };
                continue;
            }
            Chunk::SizeStart => match hex_value(byte) {
                Some(d) => Chunk::Size { size: d },
                None => return (i, State::Passthrough),
            },
            Chunk::Size { size } => {
                if let Some(d) = hex_value(byte) {
                    match size.checked_mul(16).and_then(|s| s.checked_add(d)) {
                        Some(size) => Chunk::Size { size },
                        None => return (i, State::Passthrough),
                    }
                } else {
                    match after_chunk_size(size, byte) {
                        Some(next) => next,
                        None => return (i, State::Passthrough),
                    }
                }
            }
            Chunk::SizeSpace { size } => match after_chunk_size(size, byte) {
                Some(next) => next,
                None => return (i, State::Passthrough),
            },
            Chunk::Extension { size } => {
                if byte == b'\n' {
                    chunk_data_or_trailer(size)
                } else {
                    Chunk::Extension { size }
                }
            }
            Chunk::SizeLf { size } => {
                if byte == b'\n' {
                    chunk_data_or_trailer(size)
                } else {
                    return (i, State::Passthrough);
                }
            }
            Chunk::DataCr => match byte {
                b'\r' => Chunk::DataLf,
                b'\n' => Chunk::SizeStart,
                _ => return (i, State::Passthrough),
            },
            Chunk::DataLf => {
                if byte == b'\n' {
                    Chunk::SizeStart
                } else {
                    return (i, State::Passthrough);
                }
            }
            Chunk::TrailerLineStart => match byte {
                b'\n' => return (i + 1, State::RequestStart { after_cr: false }),
                b'\r' => Chunk::TrailerCr,
                _ => Chunk::TrailerLine,
            },
            Chunk::TrailerCr => {
                if byte == b'\n' {
                    return (i + 1, State::RequestStart { after_cr: false });
                }
                Chunk::TrailerLine
            }
            Chunk::TrailerLine => {
                if byte == b'\n' {
                    Chunk::TrailerLineStart
                } else {
                    Chunk::TrailerLine
                }
            }
        };
        i += 1;
    }
    (i, State::Chunked(chunk))
}

/// After the digits of a chunk size: whitespace, an extension or the end of
/// the line; `None` for anything else.
fn after_chunk_size(size: u64, byte: u8) -> Option<Chunk> {
    match byte {
        b' ' | b'\t' => Some(Chunk::SizeSpace { size }),
        b';' => Some(Chunk::Extension { size }),
        b'\r' => Some(Chunk::SizeLf { size }),
        b'\n' => Some(chunk_data_or_trailer(size)),
        _ => None,
    }
}

/// The last chunk (size 0) is followed by trailer lines.
fn chunk_data_or_trailer(size: u64) -> Chunk {
    if size == 0 {
        Chunk::TrailerLineStart
    } else {
        Chunk::Data { remaining: size }
    }
}

fn hex_value(byte: u8) -> Option<u64> {
    char::from(byte).to_digit(16).map(u64::from)
}

/// RFC 9110 §5.6.2 token characters.
fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// Control characters that cannot appear in a request line (HTAB can).
fn is_ctl(byte: u8) -> bool {
    (byte < 0x20 && byte != b'\t') || byte == 0x7f
}

fn trim_ascii_space(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t' | b'\r', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t' | b'\r'] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: &str = "127.0.0.5";

    /// Feeds `chunks` in order, then appends the held-back bytes.
    fn run(ip: &str, scheme: Scheme, chunks: &[&[u8]]) -> Result<Vec<u8>, HttpError> {
        let mut r = RequestRewriter::new(ip, scheme);
        let mut out = Vec::new();
        for c in chunks {
            r.feed(c, &mut out)?;
        }
        out.extend_from_slice(&r.take_pending());
        Ok(out)
    }

    fn rewrite(input: &[u8]) -> Vec<u8> {
        run(IP, Scheme::Http, &[input]).unwrap()
    }

    fn show(b: &[u8]) -> String {
        String::from_utf8_lossy(b).into_owned()
    }

    /// Checks that `input` rewrites to `expected` whole, split in two at
    /// every position, and fed one byte at a time.
    fn check_splits(input: &[u8], expected: &[u8]) {
        let whole = rewrite(input);
        assert_eq!(show(&whole), show(expected), "whole input");
        for k in 0..=input.len() {
            let got = run(IP, Scheme::Http, &[&input[..k], &input[k..]]).unwrap();
            assert_eq!(show(&got), show(expected), "split at {k}");
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        let got = run(IP, Scheme::Http, &bytes).unwrap();
        assert_eq!(show(&got), show(expected), "byte by byte");
    }

    fn xff(ip: &str) -> String {
        format!("X-Forwarded-Proto: http\r\nX-Forwarded-For: {ip}\r\n")
    }

    #[test]
    fn spec_example() {
        check_splits(
            b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /a HTTP/1.1\r\nHost: x\r\nX-Forwarded-Proto: http\r\nX-Forwarded-For: 127.0.0.5\r\n\r\n",
        );
    }

    #[test]
    fn https_scheme_and_ipv6_client() {
        let out = run(
            "2001:db8::1",
            Scheme::Https,
            &[b"POST /p HTTP/1.1\r\nHost: x\r\n\r\n"],
        )
        .unwrap();
        assert_eq!(
            show(&out),
            "POST /p HTTP/1.1\r\nHost: x\r\nX-Forwarded-Proto: https\r\nX-Forwarded-For: 2001:db8::1\r\n\r\n"
        );
    }

    #[test]
    fn unix_client_text_cannot_inject_lines() {
        let out = run("", Scheme::Http, &[b"GET / HTTP/1.0\r\n\r\n"]).unwrap();
        assert_eq!(
            show(&out),
            "GET / HTTP/1.0\r\nX-Forwarded-Proto: http\r\nX-Forwarded-For: \r\n\r\n"
        );
        let out = run("/s\r\nEvil: 1", Scheme::Http, &[b"GET / HTTP/1.0\r\n\r\n"]).unwrap();
        assert!(show(&out).contains("X-Forwarded-For: /sEvil: 1\r\n"));
    }

    #[test]
    fn methods_get_post_head_case_insensitive() {
        for m in ["GET", "POST", "HEAD", "get", "Post", "hEaD"] {
            let req = format!("{m} / HTTP/1.0\r\n\r\n");
            let want = format!("{m} / HTTP/1.0\r\n{}\r\n", xff(IP));
            assert_eq!(show(&rewrite(req.as_bytes())), want);
        }
    }

    #[test]
    fn lf_only_request_gets_lf_lines() {
        check_splits(
            b"get /d HTTP/1.0\nHost: x\n\n",
            b"get /d HTTP/1.0\nHost: x\nX-Forwarded-Proto: http\nX-Forwarded-For: 127.0.0.5\n\n",
        );
        // Final empty line CRLF after LF lines: CRLF, like the terminator.
        check_splits(
            b"GET /d HTTP/1.0\nHost: x\n\r\n",
            b"GET /d HTTP/1.0\nHost: x\nX-Forwarded-Proto: http\r\nX-Forwarded-For: 127.0.0.5\r\n\r\n",
        );
    }

    #[test]
    fn request_without_headers() {
        check_splits(
            b"GET / HTTP/1.0\r\n\r\n",
            format!("GET / HTTP/1.0\r\n{}\r\n", xff(IP)).as_bytes(),
        );
    }

    #[test]
    fn keep_alive_requests_in_separate_feeds() {
        let a = b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n";
        let b = b"HEAD /2 HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut r = RequestRewriter::new(IP, Scheme::Http);
        let mut out = Vec::new();
        r.feed(a, &mut out).unwrap();
        assert_eq!(
            show(&out),
            format!("GET /1 HTTP/1.1\r\nHost: x\r\n{}\r\n", xff(IP))
        );
        out.clear();
        r.feed(b, &mut out).unwrap();
        assert_eq!(
            show(&out),
            format!("HEAD /2 HTTP/1.1\r\nHost: x\r\n{}\r\n", xff(IP))
        );
        assert!(!r.is_passthrough());
    }

    #[test]
    fn pipelined_requests_in_one_chunk() {
        let input = b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\nPOST /3 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /4 HTTP/1.1\r\n\r\n";
        let x = xff(IP);
        let want = format!(
            "GET /1 HTTP/1.1\r\nHost: x\r\n{x}\r\nGET /2 HTTP/1.1\r\nHost: x\r\n{x}\r\nPOST /3 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n{x}\r\nabcGET /4 HTTP/1.1\r\n{x}\r\n"
        );
        check_splits(input, want.as_bytes());
    }

    #[test]
    fn header_bytes_are_held_until_block_complete() {
        let mut r = RequestRewriter::new(IP, Scheme::Http);
        let mut out = Vec::new();
        r.feed(b"GET / HTTP/1.1\r\nHost: x\r\n", &mut out).unwrap();
        assert!(out.is_empty());
        r.feed(b"\r", &mut out).unwrap();
        assert!(out.is_empty());
        r.feed(b"\n", &mut out).unwrap();
        assert_eq!(
            show(&out),
            format!("GET / HTTP/1.1\r\nHost: x\r\n{}\r\n", xff(IP))
        );
    }

    #[test]
    fn content_length_body_is_not_touched() {
        let body = b"GET / HTTP/1.1\r\n\r\n\nX-Forwarded-For: 6.6.6.6\r\n\r\n";
        let mut input = format!(
            "POST /u HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        input.extend_from_slice(body);
        input.extend_from_slice(b"GET /next HTTP/1.1\r\n\r\n");
        let mut want = format!(
            "POST /u HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n{}\r\n",
            body.len(),
            xff(IP)
        )
        .into_bytes();
        want.extend_from_slice(body);
        want.extend_from_slice(format!("GET /next HTTP/1.1\r\n{}\r\n", xff(IP)).as_bytes());
        check_splits(&input, &want);
    }

    #[test]
    fn body_bytes_are_passed_on_immediately() {
        let mut r = RequestRewriter::new(IP, Scheme::Http);
        let mut out = Vec::new();
        r.feed(
            b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc",
            &mut out,
        )
        .unwrap();
        assert!(out.ends_with(b"\r\n\r\nabc"));
        out.clear();
        r.feed(b"defg", &mut out).unwrap();
        assert_eq!(out, b"defg");
        out.clear();
        r.feed(b"hijGET", &mut out).unwrap();
        assert_eq!(out, b"hij");
        assert!(r.pending == b"GET");
    }

    #[test]
    fn chunked_body() {
        let body = "5;name=value\r\nhello\r\n1A ; ext\r\nGET / HTTP/1.1\r\n\r\nabcdefgh\r\n0\r\nTrailer-A: 1\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n";
        let head = "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n";
        let next = "GET /n HTTP/1.1\r\n\r\n";
        let input = format!("{head}\r\n{body}{next}");
        let want = format!("{head}{x}\r\n{body}GET /n HTTP/1.1\r\n{x}\r\n", x = xff(IP));
        check_splits(input.as_bytes(), want.as_bytes());
    }

    #[test]
    fn chunked_body_lf_only_and_no_trailers() {
        let input = "POST /c HTTP/1.1\nTransfer-Encoding: gzip, Chunked\n\na\n0123456789\n0\n\nGET /n HTTP/1.1\n\n";
        let want = "POST /c HTTP/1.1\nTransfer-Encoding: gzip, Chunked\nX-Forwarded-Proto: http\nX-Forwarded-For: 127.0.0.5\n\na\n0123456789\n0\n\nGET /n HTTP/1.1\nX-Forwarded-Proto: http\nX-Forwarded-For: 127.0.0.5\n\n";
        check_splits(input.as_bytes(), want.as_bytes());
    }

    #[test]
    fn chunked_body_passed_on_as_it_arrives() {
        let mut r = RequestRewriter::new(IP, Scheme::Http);
        let mut out = Vec::new();
        r.feed(
            b"PUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1",
            &mut out,
        )
        .unwrap();
        assert!(out.ends_with(b"\r\n\r\n1"));
        out.clear();
        r.feed(b"0\r\n0123456789abcdef", &mut out).unwrap();
        assert_eq!(out, b"0\r\n0123456789abcdef");
        assert!(r.pending.is_empty());
        assert_eq!(r.state, State::Chunked(Chunk::DataCr));
    }

    #[test]
    fn bad_chunk_size_switches_to_passthrough() {
        let input =
            b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nGET / HTTP/1.1\r\n\r\n";
        let out = rewrite(input);
        let head_len = b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n".len();
        let mut want = input[..head_len].to_vec();
        want.extend_from_slice(xff(IP).as_bytes());
        want.extend_from_slice(&input[head_len..]);
        assert_eq!(show(&out), show(&want));
        let mut r = RequestRewriter::new(IP, Scheme::Http);
        r.feed(input, &mut Vec::new()).unwrap();
        assert!(r.is_passthrough());
        // An overflowing chunk size too.
        let mut r = RequestRewriter::new(IP, Scheme::Http);
        r.feed(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\n",
            &mut Vec::new(),
        )
        .unwrap();
        assert!(r.is_passthrough());
    }

    #[test]
    fn other_methods_untouched_but_framing_followed() {
        let input = b"PUT /f HTTP/1.1\r\nHost: x\r\nContent-Length: 18\r\n\r\nGET / HTTP/1.1\r\n\r\nOPTIONS * HTTP/1.1\r\nHost: x\r\n\r\nDELETE /f HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /last HTTP/1.1\r\n\r\n";
        let mut want = input[..input.len() - 2].to_vec();
        want.extend_from_slice(format!("{}\r\n", xff(IP)).as_bytes());
        check_splits(input, &want);
    }

    #[test]
    fn existing_forwarded_headers_are_kept() {
        check_splits(
            b"GET / HTTP/1.1\r\nx-forwarded-for: 1.2.3.4\r\nHost: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nx-forwarded-for: 1.2.3.4\r\nHost: x\r\nX-Forwarded-Proto: http\r\n\r\n",
        );
        check_splits(
            b"GET / HTTP/1.1\r\nHost: x\r\nX-FORWARDED-PROTO: https\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nX-FORWARDED-PROTO: https\r\nX-Forwarded-For: 127.0.0.5\r\n\r\n",
        );
        let both = b"GET / HTTP/1.1\r\nX-Forwarded-Proto: ftp\r\nX-Forwarded-For: 9.9.9.9, 8.8.8.8\r\n\r\n";
        check_splits(both, both);
        // Similar names are not the same header.
        let out = rewrite(b"GET / HTTP/1.1\r\nX-Forwarded-Fort: 1\r\nX-Forwarded: 2\r\n\r\n");
        assert!(out.ends_with(format!("{}\r\n", xff(IP)).as_bytes()));
    }

    #[test]
    fn forwarded_for_only_in_body_does_not_count() {
        let input =
            b"POST / HTTP/1.1\r\nContent-Length: 29\r\n\r\n\nX-Forwarded-For: 1.2.3.4\r\n\r\n";
        let out = rewrite(input);
        assert_eq!(
            show(&out),
            format!(
                "POST / HTTP/1.1\r\nContent-Length: 29\r\n{}\r\n\nX-Forwarded-For: 1.2.3.4\r\n\r\n",
                xff(IP)
            )
        );
    }

    #[test]
    fn non_http_streams_are_unchanged() {
        let ssh = b"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13.5\r\n\0\0\x05\xdc\x07\x14GET / HTTP/1.1\r\n\r\n";
        let tls_client_hello: &[u8] = &[
            0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0x47, 0x45, 0x54,
            0x20, 0x2f, 0x20, 0x48, 0x54, 0x54, 0x50, 0x2f, 0x31, 0x2e, 0x31, 0x0d, 0x0a, 0x0d,
            0x0a,
        ];
        let binary: Vec<u8> = (0..=255u8).rev().collect();
        let smtp = b"EHLO client.example\r\nMAIL FROM:<a@b>\r\n";
        let http09 = b"GET /\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        let http2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\x12\x04\0\0\0\0\0";
        let lone_cr = b"GET / HTTP/1.1\rX\r\n\r\n";
        for input in [
            &ssh[..],
            tls_client_hello,
            &binary,
            smtp,
            http09,
            http2,
            lone_cr,
        ] {
            check_splits(input, input);
            let mut r = RequestRewriter::new(IP, Scheme::Http);
            r.feed(input, &mut Vec::new()).unwrap();
            assert!(r.is_passthrough(), "{}", show(input));
        }
    }

    #[test]
    fn non_http_decided_on_the_shortest_prefix() {
        // Decided at the first byte that cannot continue a request line.
        for (prefix, decisive) in [
            (&b"\x16"[..], true),
            (b"\x00", true),
            (b"SSH-2.0-OpenSSH_9.6p", false), // 20 tchars: could be a method
            (b"SSH-2.0-OpenSSH_9.6p1", true), // 21: too long for one
            (b"SSH-2.0-OpenSSH_9.6p1 ", true),
            (b"SSH-2.0-OpenSSH_8.9\r", true),
            (b" GET", true),
            (b"GET", false),
            (b"GET ", false),
            (b"GET /\x01", true),
            (b"GET /\r", false),
            (b"GET /\r\n", true), // line end without " HTTP/"
        ] {
            let mut r = RequestRewriter::new(IP, Scheme::Http);
            let mut out = Vec::new();
            r.feed(prefix, &mut out).unwrap();
            assert_eq!(r.is_passthrough(), decisive, "{}", show(prefix));
            if decisive {
                assert_eq!(out, prefix, "{}", show(prefix));
            } else {
                assert!(out.is_empty());
                assert_eq!(r.pending, prefix);
            }
        }
    }

    #[test]
    fn garbage_after_a_request_switches_to_passthrough() {
        let input = b"GET / HTTP/1.1\r\n\r\n\x16\x03\x01GET / HTTP/1.1\r\n\r\n";
        let mut want = format!("GET / HTTP/1.1\r\n{}\r\n", xff(IP)).into_bytes();
        want.extend_from_slice(&input[18..]);
        check_splits(input, &want);
    }

    #[test]
    fn empty_lines_between_requests_are_passed_on() {
        let input =
            b"\r\nPOST / HTTP/1.1\r\nContent-Length: 1\r\n\r\nx\r\n\nGET / HTTP/1.1\r\n\r\n";
        let x = xff(IP);
        let want = format!(
            "\r\nPOST / HTTP/1.1\r\nContent-Length: 1\r\n{x}\r\nx\r\n\nGET / HTTP/1.1\r\n{x}\r\n"
        );
        check_splits(input, want.as_bytes());
    }

    #[test]
    fn upgrade_and_connect_switch_to_passthrough() {
        let input = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x05GET / HTTP/1.1\r\n\r\n";
        let head_end = input.len() - b"\r\n\x81\x05GET / HTTP/1.1\r\n\r\n".len();
        let mut want = input[..head_end].to_vec();
        want.extend_from_slice(xff(IP).as_bytes());
        want.extend_from_slice(&input[head_end..]);
        check_splits(input, &want);

        let input = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n\x16\x03\x01GET / HTTP/1.1\r\n\r\n";
        check_splits(input, input);
        let mut r = RequestRewriter::new(IP, Scheme::Http);
        r.feed(input, &mut Vec::new()).unwrap();
        assert!(r.is_passthrough());
    }

    #[test]
    fn header_too_large() {
        let mut r = RequestRewriter::new(IP, Scheme::Http);
        let mut out = Vec::new();
        let line = format!("X-Pad: {}\r\n", "a".repeat(1000));
        r.feed(b"GET / HTTP/1.1\r\n", &mut out).unwrap();
        let mut result = Ok(());
        for _ in 0..40 {
            result = r.feed(line.as_bytes(), &mut out);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(HttpError::HeaderTooLarge));
        assert!(out.is_empty());
        assert!(r.pending.is_empty());
        assert_eq!(r.feed(b"\r\n", &mut out), Err(HttpError::HeaderTooLarge));
        assert!(HttpError::HeaderTooLarge.to_string().contains("32768"));

        // A request line alone that never ends.
        let mut r = RequestRewriter::new(IP, Scheme::Http);
        let long = format!("GET /{}", "a".repeat(MAX_HEADER_BYTES));
        assert_eq!(
            r.feed(long.as_bytes(), &mut Vec::new()),
            Err(HttpError::HeaderTooLarge)
        );
    }

    #[test]
    fn header_block_of_exactly_the_limit_is_accepted() {
        let start = "GET / HTTP/1.1\r\nX-Pad: ";
        let pad = MAX_HEADER_BYTES - start.len() - 4;
        let input = format!("{start}{}\r\n\r\n", "p".repeat(pad));
        assert_eq!(input.len(), MAX_HEADER_BYTES);
        let out = run(IP, Scheme::Http, &[input.as_bytes()]).unwrap();
        assert!(out.ends_with(format!("\r\n{}\r\n", xff(IP)).as_bytes()));
        let too_big = format!("{start}{}\r\n\r\n", "p".repeat(pad + 1));
        assert_eq!(
            run(IP, Scheme::Http, &[too_big.as_bytes()]),
            Err(HttpError::HeaderTooLarge)
        );
        // The limit is per request, not per connection.
        let two = format!("{input}{input}");
        let mut r = RequestRewriter::new(IP, Scheme::Http);
        assert!(r.feed(two.as_bytes(), &mut Vec::new()).is_ok());
    }

    #[test]
    fn ambiguous_framing_switches_to_passthrough() {
        for head in [
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: five\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5\r\n 6\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n",
        ] {
            let mut r = RequestRewriter::new(IP, Scheme::Http);
            let mut out = Vec::new();
            r.feed(head.as_bytes(), &mut out).unwrap();
            assert!(r.is_passthrough(), "{head}");
            let headers_end = head.len() - 2;
            assert_eq!(
                show(&out),
                format!("{}{}\r\n", &head[..headers_end], xff(IP))
            );
        }
        // Equal repeated values are one length.
        let input = b"POST / HTTP/1.1\r\nContent-Length: 2, 2\r\ncontent-length:2\r\n\r\nabGET / HTTP/1.1\r\n\r\n";
        let mut r = RequestRewriter::new(IP, Scheme::Http);
        let mut out = Vec::new();
        r.feed(input, &mut out).unwrap();
        assert!(!r.is_passthrough());
        assert!(out.ends_with(format!("abGET / HTTP/1.1\r\n{}\r\n", xff(IP)).as_bytes()));
    }

    #[test]
    fn zero_content_length_and_bodyless_requests() {
        let input = b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        let out = rewrite(input);
        assert_eq!(
            show(&out),
            format!(
                "POST / HTTP/1.1\r\nContent-Length: 0\r\n{x}\r\nGET / HTTP/1.1\r\n{x}\r\n",
                x = xff(IP)
            )
        );
    }

    #[test]
    fn take_pending_returns_held_bytes_then_passes_through() {
        let mut r = RequestRewriter::new(IP, Scheme::Http);
        let mut out = Vec::new();
        r.feed(b"GET / HTTP/1.1\r\nHo", &mut out).unwrap();
        assert!(out.is_empty());
        assert_eq!(r.take_pending(), b"GET / HTTP/1.1\r\nHo");
        assert!(r.is_passthrough());
        r.feed(b"st: x\r\n\r\n", &mut out).unwrap();
        assert_eq!(out, b"st: x\r\n\r\n");
        assert!(r.take_pending().is_empty());
    }

    #[test]
    fn no_buffer_kept_between_requests() {
        let mut r = RequestRewriter::new(IP, Scheme::Http);
        let mut out = Vec::new();
        r.feed(b"GET / HTTP/1.1\r\nHost: x\r\n", &mut out).unwrap();
        assert!(r.pending.capacity() > 0);
        r.feed(b"\r\n", &mut out).unwrap();
        assert_eq!(r.pending.capacity(), 0);
        assert!(std::mem::size_of::<RequestRewriter>() < 512);
    }

    #[test]
    fn odd_header_lines_do_not_break_parsing() {
        // Folded lines, lines without a colon, spaces before the colon.
        let input = b"GET / HTTP/1.1\r\nX-A: 1\r\n  continued\r\nno colon here\r\nX-Forwarded-For : 5.5.5.5\r\n\r\nGET /2 HTTP/1.1\r\n\r\n";
        let out = rewrite(input);
        assert_eq!(
            show(&out),
            format!(
                "GET / HTTP/1.1\r\nX-A: 1\r\n  continued\r\nno colon here\r\nX-Forwarded-For : 5.5.5.5\r\nX-Forwarded-Proto: http\r\n\r\nGET /2 HTTP/1.1\r\n{}\r\n",
                xff(IP)
            )
        );
    }

    #[test]
    fn long_method_is_not_http() {
        let ok = b"ABCDEFGHIJKLMNOPQRST / HTTP/1.1\r\n\r\n"; // 20 bytes
        assert_eq!(rewrite(ok), ok);
        let mut r = RequestRewriter::new(IP, Scheme::Http);
        r.feed(ok, &mut Vec::new()).unwrap();
        assert!(!r.is_passthrough());
        let too_long = b"ABCDEFGHIJKLMNOPQRSTU / HTTP/1.1\r\n\r\n";
        let mut r = RequestRewriter::new(IP, Scheme::Http);
        r.feed(too_long, &mut Vec::new()).unwrap();
        assert!(r.is_passthrough());
    }

    /// Pseudo-random streams built from request fragments: feeding them in
    /// random pieces gives the same bytes as feeding them whole, and the
    /// output always contains the input bytes in order.
    #[test]
    fn random_splits_match_whole_feed() {
        let fragments: [&[u8]; 14] = [
            b"GET / HTTP/1.1\r\n",
            b"POST /x HTTP/1.1\r\n",
            b"Host: x\r\n",
            b"Content-Length: 4\r\n",
            b"Transfer-Encoding: chunked\r\n",
            b"x-forwarded-for: 1\r\n",
            b"\r\n",
            b"\n",
            b"4\r\nabcd\r\n",
            b"0\r\n\r\n",
            b"abcd",
            b"\x16\x03\x01",
            b"PUT /y HTTP/1.0\r\n",
            b"Upgrade: x\r\n",
        ];
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..300 {
            let mut input = Vec::new();
            for _ in 0..(next() % 12) {
                input.extend_from_slice(fragments[(next() % 14) as usize]);
            }
            let whole = rewrite(&input);
            let mut pieces = Vec::new();
            let mut rest = &input[..];
            while !rest.is_empty() {
                let n = 1 + (next() as usize % rest.len());
                pieces.push(&rest[..n]);
                rest = &rest[n..];
            }
            let split = run(IP, Scheme::Http, &pieces).unwrap();
            assert_eq!(show(&split), show(&whole));
            // Removing the inserted lines gives back the input.
            let stripped = show(&whole)
                .replace("X-Forwarded-Proto: http\r\n", "")
                .replace("X-Forwarded-For: 127.0.0.5\r\n", "")
                .replace("X-Forwarded-Proto: http\n", "")
                .replace("X-Forwarded-For: 127.0.0.5\n", "");
            assert_eq!(stripped, show(&input));
        }
    }
}
