//! The line-protocol parser on arbitrary bytes: it never panics, whatever it accepts it can write back as
//! line protocol that parses to the same points, and each field's series spelling reads back as that
//! series (so the store, which numbers series by spelling, never mixes two).

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../src/metrics/line.rs"]
#[allow(dead_code)]
mod line;

use line::{for_each_line, parse, Precision};

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
    let mut buf = String::new();
    let _ = for_each_line(body, precision, |line| {
        for (n, (key, _)) in line.point.fields.iter().enumerate() {
            let spelling = line.spelling(n, &mut buf).to_owned();
            match parse(format!("{spelling}=0").as_bytes(), Precision::Ns).as_deref() {
                Ok([again]) => {
                    assert_eq!(again.measurement, line.point.measurement, "{spelling:?}");
                    assert_eq!(again.tags, line.point.tags, "{spelling:?}");
                    assert_eq!(again.fields[0].0, *key, "{spelling:?}");
                }
                other => panic!("the spelling {spelling:?} reads back as {other:?}"),
            }
        }
    });
});
