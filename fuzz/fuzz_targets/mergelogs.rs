//! mergelogs over in-memory files: pen's request log and one or two web
//! servers' access logs, with each of its modes.
//!
//! Input: byte 0 picks the cache mode, the jitter, the time offset and
//! the number of web logs; the rest is pen's log, then the web logs,
//! separated by NUL bytes.

#![no_main]

use std::io::{BufReader, Cursor};
use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use pen::companions::mergelogs::{
    merge, parse_clf_time, parse_server_arg, parse_web_line, Config, LineReader, PenLog, WebLog,
};
use pen::companions::Diagnostics;

const SERVERS: [&str; 2] = ["127.0.0.1", "::1"];
const JITTERS: [i64; 4] = [0, 2, 600, i64::MAX];

fn reader(bytes: &[u8], name: &str) -> LineReader<BufReader<Cursor<Vec<u8>>>> {
    LineReader::new(
        BufReader::with_capacity(64, Cursor::new(bytes.to_vec())),
        PathBuf::from(name),
    )
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, rest)) = data.split_first() else {
        return;
    };
    let mut files = rest.split(|&b| b == 0);
    let pen_log = files.next().unwrap_or_default();
    let config = Config {
        pen_log: PathBuf::from("pen.log"),
        jitter: JITTERS[usize::from(choice >> 1 & 3)],
        pen_time_offset: if choice & 8 == 0 { 0 } else { -3600 },
        use_cache: choice & 1 == 0,
        debug_level: 0,
        servers: Vec::new(),
    };
    let web_count = 1 + usize::from(choice >> 4 & 1);
    let mut web_logs: Vec<_> = SERVERS[..web_count]
        .iter()
        .map(|server| {
            let text = files.next().unwrap_or_default();
            for line in text.split(|&b| b == b'\n') {
                if let Ok(l) = parse_web_line(line) {
                    let _ = l;
                }
                let _ = parse_clf_time(line);
            }
            WebLog::new(server, reader(text, server))
        })
        .collect();
    let diag = Diagnostics::new("mergelogs", 0);
    let mut pen = PenLog::new(reader(pen_log, "pen.log"), &config, diag.clone());
    let mut out = Vec::new();
    merge(&mut pen, &mut web_logs, &mut out, &diag).unwrap();
    let _ = parse_server_arg(&String::from_utf8_lossy(pen_log));
});
