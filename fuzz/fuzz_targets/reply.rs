//! Firmware reply parsing: `parse_reply` and `parse_temperatures` on arbitrary text, one line
//! and split into lines as the session sees them. Invariant: no panic, and a parsed reply is
//! stable under the trimming the session applies (`trim_end`).

#![no_main]

use firmware_bridge::reply::{parse_reply, parse_temperatures};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let whole = parse_reply(&text);
    let _ = parse_temperatures(&text);
    for line in text.split('\n') {
        let reply = parse_reply(line);
        // The session trims line ends before parsing; the parser must not care.
        assert_eq!(
            format!("{reply:?}"),
            format!("{:?}", parse_reply(line.trim_end())),
            "trailing whitespace changed the meaning of {line:?}"
        );
        if let Some(t) = parse_temperatures(line) {
            let _ = t.heating(3.0);
        }
    }
    drop(whole);
});
