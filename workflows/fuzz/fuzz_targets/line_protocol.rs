//! The line-protocol parser on arbitrary bytes: it never panics, and whatever it accepts it can write back
//! as line protocol that parses to the same points.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../src/metrics/line.rs"]
#[allow(dead_code)]
mod line;

use line::{parse, Precision};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the precision, so every unit's scaling and overflow checks are reached.
    let (precision, body) = match data.split_first() {
        Some((p, rest)) => ([Precision::Ns, Precision::Us, Precision::Ms, Precision::S][usize::from(*p % 4)], rest),
        None => (Precision::Ns, data),
    };
    let Ok(points) = parse(body, precision) else { return };
    let mut written = String::new();
    for p in &points {
        if let Err(e) = p.write_to(&mut written) {
            panic!("a parsed point could not be written: {e}: {p:?}");
        }
    }
    // Timestamps were scaled to nanoseconds on the way in and are written as such.
    match parse(written.as_bytes(), Precision::Ns) {
        Ok(again) => assert_eq!(again, points, "written as:\n{written}"),
        Err(e) => panic!("what was written does not parse: {e}\n{written}"),
    }
});
