//! A block: one series' points over a stretch of time, packed for storage.
//!
//! Format 1: the format byte, the point count (varint), then each timestamp as the zigzag varint of its
//! difference from the one before (the first from zero), then each value as its bits XOR the previous value's
//! bits (the first XOR zero): one byte giving the XOR's trailing zero bits (64 when it is zero, and nothing
//! follows), then the varint of the XOR shifted right by them. Repeated and slowly moving values, the common
//! case for host metrics, take one to three bytes. A block may be packed against a base instant, which its
//! reader must be given: its first timestamp is then the difference from that base (a segment's blocks share
//! one, so a series with one point in it takes a byte for its time, not nine).

const FORMAT: u8 = 1;

/// Packs `points`, which must be sorted by time.
pub fn encode(points: &[(i64, f64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + points.len() * 4);
    encode_into(&mut out, 0, points.iter().copied());
    out
}

/// Packs `points` (sorted by time) against `base` onto the end of `out`.
pub fn encode_into(out: &mut Vec<u8>, base: i64, points: impl ExactSizeIterator<Item = (i64, f64)> + Clone) {
    out.push(FORMAT);
    push_varint(out, points.len() as u64);
    let mut prev = base;
    for (t, _) in points.clone() {
        push_varint(out, zigzag(t.wrapping_sub(prev)));
        prev = t;
    }
    let mut prev = 0_u64;
    for (_, v) in points {
        push_xor(out, &mut prev, v);
    }
}

/// Appends `v` as its bits XOR `prev`'s (see the format above) and makes it the new `prev`.
pub(super) fn push_xor(out: &mut Vec<u8>, prev: &mut u64, v: f64) {
    let bits = v.to_bits();
    let xor = bits ^ *prev;
    *prev = bits;
    if xor == 0 {
        out.push(64);
    } else {
        let tz = xor.trailing_zeros();
        out.push(tz as u8);
        push_varint(out, xor >> tz);
    }
}

/// Reads a value [`push_xor`] wrote after `prev`, and makes it the new `prev`.
pub(super) fn read_xor(rest: &mut &[u8], prev: &mut u64) -> Option<f64> {
    let (&tz, r) = rest.split_first()?;
    *rest = r;
    if tz != 64 {
        let shifted = read_varint(rest)?;
        if tz > 63 || (tz > 0 && shifted.leading_zeros() < u32::from(tz)) {
            return None;
        }
        *prev ^= shifted << tz;
    }
    Some(f64::from_bits(*prev))
}

/// The count after a packed value's format byte, and what follows it; `None` when the format is not
/// `format` or the count is more than the bytes left (every item takes at least one: a larger count is
/// damage, not a reason to allocate).
pub(super) fn header(data: &[u8], format: u8) -> Option<(usize, &[u8])> {
    let (&found, mut rest) = data.split_first()?;
    if found != format {
        return None;
    }
    let n = read_varint(&mut rest)?;
    if n > rest.len() as u64 {
        return None;
    }
    Some((n as usize, rest))
}

/// Unpacks a block; `None` when it is not a block this version wrote (or is damaged).
pub fn decode(data: &[u8]) -> Option<Vec<(i64, f64)>> {
    let mut points = Vec::new();
    decode_into(data, 0, &mut points)?;
    Some(points)
}

/// Unpacks a block packed against `base` onto the end of `points` (so one buffer serves many blocks);
/// `None` when it is not a block this version wrote (or is damaged), and `points` then holds part of it.
pub fn decode_into(data: &[u8], base: i64, points: &mut Vec<(i64, f64)>) -> Option<()> {
    let (n, mut rest) = header(data, FORMAT)?;
    let first = points.len();
    points.reserve(n);
    let mut prev = base;
    for _ in 0..n {
        prev = prev.wrapping_add(unzigzag(read_varint(&mut rest)?));
        points.push((prev, 0.0));
    }
    let mut bits = 0_u64;
    for p in &mut points[first..] {
        p.1 = read_xor(&mut rest, &mut bits)?;
    }
    rest.is_empty().then_some(())
}

pub(super) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub(super) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

pub(super) fn push_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(super) fn read_varint(data: &mut &[u8]) -> Option<u64> {
    let mut v = 0_u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = data.split_first()?;
        *data = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_come_back_exactly_whatever_their_values() {
        let points = vec![
            (i64::MIN, f64::MAX),
            (-5, -0.0),
            (0, 0.0),
            (0, 1.0),
            (1_700_000_000_000_000_000, 0.1),
            (1_700_000_010_000_000_000, 0.1),
            (i64::MAX, f64::MIN_POSITIVE),
        ];
        let block = encode(&points);
        let back = decode(&block).expect("decodes");
        let bits = |p: &[(i64, f64)]| p.iter().map(|&(t, v)| (t, v.to_bits())).collect::<Vec<_>>();
        assert_eq!(bits(&back), bits(&points));
        assert_eq!(decode(&encode(&[])), Some(vec![]));
    }

    #[test]
    fn a_steady_series_packs_small() {
        let points: Vec<(i64, f64)> =
            (0..360).map(|i| (1_700_000_000_000_000_000 + i * 10_000_000_000, 42.0)).collect();
        let block = encode(&points);
        assert!(block.len() < points.len() * 8, "{} bytes for {} points", block.len(), points.len());
    }

    #[test]
    fn a_damaged_or_foreign_block_is_refused_not_misread() {
        let block = encode(&[(1, 1.5), (2, 2.5)]);
        assert_eq!(decode(&[]), None);
        assert_eq!(decode(&[9, 0]), None, "another format");
        assert_eq!(decode(&block[..block.len() - 1]), None, "cut short");
        let mut longer = block.clone();
        longer.push(0);
        assert_eq!(decode(&longer), None, "trailing bytes");
        assert_eq!(decode(&[1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), None, "absurd count");
    }
}
