//! The log path of penlog and penlogd: penlog cuts its input into pieces
//! (`read_piece`), each sent as a datagram; penlogd decodes pen's records
//! (`+ CLIENT SERVER REQUEST`) and rewrites web servers' lines.
//!
//! Input: byte 0 picks the read buffer size, the record ring's size and
//! the datagrams' source; the rest is penlog's input.

#![no_main]

use std::io::{BufReader, Cursor};
use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use pen::companions::penlog::read_piece;
use pen::companions::penlogd::{handle_datagram, RecordRing};
use pen::companions::Diagnostics;
use pen::request_log::codec::{self, WEB_LINE_PIECE_MAX};

const SOURCES: [&str; 3] = ["127.0.0.1", "::1", "::ffff:127.0.0.1"];

fuzz_target!(|data: &[u8]| {
    let Some((&choice, input)) = data.split_first() else {
        return;
    };
    let capacity = 1 + usize::from(choice & 0x0f) * 64;
    let mut reader = BufReader::with_capacity(capacity, Cursor::new(input));
    let mut ring = RecordRing::new(usize::from(choice >> 4 & 3));
    let source: IpAddr = SOURCES[usize::from(choice >> 6) % SOURCES.len()]
        .parse()
        .unwrap();
    let diag = Diagnostics::new("penlogd", 0);
    let mut piece = Vec::new();
    let mut seen = 0;
    loop {
        let n = read_piece(&mut reader, &mut piece, WEB_LINE_PIECE_MAX).unwrap();
        if n == 0 {
            break;
        }
        // penlog loses and changes nothing.
        assert!(n <= WEB_LINE_PIECE_MAX);
        assert_eq!(&input[seen..seen + n], &piece[..]);
        seen += n;
        let _ = codec::decode_datagram(piece.strip_suffix(b"\n").unwrap_or(&piece));
        let _ = codec::decode_file_line(&piece);
        if let Some(line) = handle_datagram(&mut ring, source, &piece, &diag) {
            assert_eq!(line.last(), Some(&b'\n'));
        }
    }
    assert_eq!(seen, input.len());
});
