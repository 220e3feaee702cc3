//! Local time for log timestamps.

/// Broken-down local time: (year, month 1-12, day, hour, minute, second).
pub fn local(unix: i64) -> (i32, u32, u32, u32, u32, u32) {
    // The libc crate marks musl's time_t deprecated, warning that it will
    // follow musl 1.2 to 64 bits; the cast is right either way.
    #[allow(deprecated)]
    let t = unix as libc::time_t;
    // SAFETY: tm is plain old data; all-zero is valid.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers refer to live locals; localtime_r is thread-safe.
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    if !ok {
        return (1970, 1, 1, 0, 0, 0);
    }
    (
        tm.tm_year + 1900,
        (tm.tm_mon + 1) as u32,
        tm.tm_mday as u32,
        tm.tm_hour as u32,
        tm.tm_min as u32,
        tm.tm_sec as u32,
    )
}

/// `YYYY-MM-DD HH:MM:SS` in local time, as pen's messages and `write` use.
pub fn timestamp(unix: i64) -> String {
    let (y, mo, d, h, mi, s) = local(unix);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
}
