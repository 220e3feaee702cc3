//! The GeoIP reader on legacy GeoIP Country files (GeoIP.dat); the seeds are
//! files of that format (the format is recognised from the content).

#![no_main]

#[path = "common/geoip.rs"]
mod geoip;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| geoip::load_and_look_up(data));
