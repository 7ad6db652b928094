//! Little-endian integer and LEB128 varint coding shared by the SSTable formats.
//!
//! Decoders never panic: every read is bounds-checked and returns `None` when the input is
//! truncated or (for varints) longer than the 10 bytes a `u64` needs or overflowing.

/// Appends `value` as an LEB128 varint (7 bits per byte, high bit = "more follows").
pub(crate) fn put_varint64(dst: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        dst.push((value as u8) | 0x80);
        value >>= 7;
    }
    dst.push(value as u8);
}

/// Decodes a varint starting at `pos`; returns the value and the position after it.
pub(crate) fn get_varint64(src: &[u8], pos: usize) -> Option<(u64, usize)> {
    let mut result = 0u64;
    let mut shift = 0u32;
    let mut at = pos;
    loop {
        let byte = *src.get(at)?;
        at += 1;
        if shift == 63 && byte > 1 {
            return None; // would overflow 64 bits or continue past 10 bytes
        }
        result |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some((result, at));
        }
        shift += 7;
    }
}

/// Decodes a varint that must fit in 32 bits, as a `usize` length or count.
#[inline]
pub(crate) fn get_varint32(src: &[u8], pos: usize) -> Option<(usize, usize)> {
    // Fast path: one-byte varints are by far the most common in block entries.
    let first = *src.get(pos)?;
    if first < 0x80 {
        return Some((usize::from(first), pos + 1));
    }
    let (value, next) = get_varint64(src, pos)?;
    let value = u32::try_from(value).ok()?;
    Some((value as usize, next))
}

/// Reads a little-endian `u32` at `pos`.
#[inline]
pub(crate) fn read_u32_le(src: &[u8], pos: usize) -> Option<u32> {
    let bytes = src.get(pos..pos.checked_add(4)?)?;
    let mut raw = [0u8; 4];
    raw.copy_from_slice(bytes);
    Some(u32::from_le_bytes(raw))
}

/// Reads a little-endian `u64` at `pos`.
#[inline]
pub(crate) fn read_u64_le(src: &[u8], pos: usize) -> Option<u64> {
    let bytes = src.get(pos..pos.checked_add(8)?)?;
    let mut raw = [0u8; 8];
    raw.copy_from_slice(bytes);
    Some(u64::from_le_bytes(raw))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rejects_truncated_and_overlong_varints() {
        assert_eq!(get_varint64(&[0x80], 0), None);
        assert_eq!(get_varint64(&[0xff; 11], 0), None);
        // 10th byte may only carry the top bit of a u64.
        let mut max = Vec::new();
        put_varint64(&mut max, u64::MAX);
        assert_eq!(max.len(), 10);
        assert_eq!(get_varint64(&max, 0), Some((u64::MAX, 10)));
        let mut overflow = max.clone();
        overflow[9] = 2;
        assert_eq!(get_varint64(&overflow, 0), None);
        let mut big = Vec::new();
        put_varint64(&mut big, u64::from(u32::MAX) + 1);
        assert_eq!(get_varint32(&big, 0), None);
    }

    #[test]
    fn fixed_reads_are_bounds_checked() {
        assert_eq!(read_u32_le(&[1, 0, 0, 0], 0), Some(1));
        assert_eq!(read_u32_le(&[1, 0, 0], 0), None);
        assert_eq!(read_u64_le(&[0; 8], 1), None);
        assert_eq!(read_u64_le(&[0; 8], usize::MAX), None);
    }

    proptest! {
        #[test]
        fn varint_round_trips(value: u64, prefix in proptest::collection::vec(any::<u8>(), 0..4)) {
            let mut buf = prefix.clone();
            put_varint64(&mut buf, value);
            prop_assert_eq!(get_varint64(&buf, prefix.len()), Some((value, buf.len())));
            if let Ok(small) = u32::try_from(value) {
                prop_assert_eq!(get_varint32(&buf, prefix.len()), Some((small as usize, buf.len())));
            }
        }
    }
}
