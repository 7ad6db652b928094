//! Tuple → bytes (layout in the module docs of [`super`]).

use ferrisdb_core::Error;

use super::{Element, MAX_INT_MAGNITUDE};

/// Type code of the zero integer; `ZERO + n` / `ZERO - n` are the n-byte positive / negative
/// integers.
pub(super) const INT_ZERO: u8 = 0x14;

/// Encodes `tuple`. Fails only for an integer beyond ±[`MAX_INT_MAGNITUDE`].
pub fn pack(tuple: &[Element]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    pack_into(tuple, &mut out)?;
    Ok(out)
}

/// Appends the encoding of `tuple` to `out` (on an error, `out` may hold part of it).
pub fn pack_into(tuple: &[Element], out: &mut Vec<u8>) -> Result<(), Error> {
    let mut incomplete = Vec::new();
    tuple
        .iter()
        .try_for_each(|element| encode(element, false, out, &mut incomplete))
}

/// Encodes a tuple holding exactly one incomplete versionstamp
/// ([`Versionstamp::incomplete`](super::Versionstamp::incomplete), nested tuples included)
/// for [`Transaction::set_versionstamped_key`](crate::Transaction::set_versionstamped_key) or
/// `set_versionstamped_value`: the packed bytes after `prefix`, then the 4-byte little-endian
/// offset of the stamp's 10 placeholder bytes, which the database replaces at commit.
pub fn pack_with_versionstamp(prefix: &[u8], tuple: &[Element]) -> Result<Vec<u8>, Error> {
    let mut out = prefix.to_vec();
    let mut incomplete = Vec::new();
    for element in tuple {
        encode(element, false, &mut out, &mut incomplete)?;
    }
    let [offset] = incomplete[..] else {
        return Err(Error::InvalidArgument(format!(
            "a versionstamped key or value needs exactly one incomplete versionstamp in its \
             tuple, found {}",
            incomplete.len()
        )));
    };
    let offset = u32::try_from(offset).map_err(|_| {
        Error::InvalidArgument(format!(
            "the versionstamp lies at byte {offset}, beyond a 4-byte offset"
        ))
    })?;
    out.extend_from_slice(&offset.to_le_bytes());
    Ok(out)
}

/// Appends one element; inside a nested tuple a null is `00 ff` (a bare `00` ends the tuple).
/// Records where each incomplete versionstamp's placeholder starts in `incomplete`.
fn encode(
    element: &Element,
    nested: bool,
    out: &mut Vec<u8>,
    incomplete: &mut Vec<usize>,
) -> Result<(), Error> {
    match element {
        Element::Null if nested => out.extend_from_slice(&[0x00, 0xff]),
        Element::Null => out.push(0x00),
        Element::Bytes(b) => escaped(0x01, b, out),
        Element::String(s) => escaped(0x02, s.as_bytes(), out),
        Element::Nested(items) => {
            out.push(0x05);
            for item in items {
                encode(item, true, out, incomplete)?;
            }
            out.push(0x00);
        }
        Element::Int(n) => int(*n, out)?,
        Element::Float(x) => {
            out.push(0x20);
            out.extend_from_slice(&order_float_bits(u64::from(x.to_bits()), 32).to_be_bytes()[4..]);
        }
        Element::Double(x) => {
            out.push(0x21);
            out.extend_from_slice(&order_float_bits(x.to_bits(), 64).to_be_bytes());
        }
        Element::Bool(b) => out.push(if *b { 0x27 } else { 0x26 }),
        Element::Uuid(u) => {
            out.push(0x30);
            out.extend_from_slice(u);
        }
        Element::Versionstamp(v) => {
            out.push(0x33);
            if v.is_incomplete() {
                incomplete.push(out.len());
            }
            out.extend_from_slice(&v.transaction);
            out.extend_from_slice(&v.user.to_be_bytes());
        }
    }
    Ok(())
}

/// `code`, the bytes with every `00` written as `00 ff`, then a terminating `00`.
fn escaped(code: u8, bytes: &[u8], out: &mut Vec<u8>) {
    out.push(code);
    for &b in bytes {
        out.push(b);
        if b == 0 {
            out.push(0xff);
        }
    }
    out.push(0x00);
}

/// An integer: a code saying sign and length, then the big-endian magnitude (one's
/// complement for negatives), in as few bytes as it needs.
fn int(n: i128, out: &mut Vec<u8>) -> Result<(), Error> {
    if n.unsigned_abs() > MAX_INT_MAGNITUDE.unsigned_abs() {
        return Err(Error::InvalidArgument(format!(
            "tuple integer {n} does not fit the 8-byte encoding (at most ±{MAX_INT_MAGNITUDE})"
        )));
    }
    let magnitude = u64::try_from(n.unsigned_abs()).unwrap_or(u64::MAX);
    let len = 8 - magnitude.leading_zeros() as usize / 8;
    let len_code = u8::try_from(len).unwrap_or(8);
    let bytes = if n >= 0 {
        out.push(INT_ZERO + len_code);
        magnitude.to_be_bytes()
    } else {
        out.push(INT_ZERO - len_code);
        (!magnitude).to_be_bytes()
    };
    out.extend_from_slice(&bytes[8 - len..]);
    Ok(())
}

/// The order-preserving form of IEEE bits of `width` (32 or 64) bits: negatives have every
/// bit flipped, others only the sign bit. [`unorder_float_bits`] undoes it.
pub(super) fn order_float_bits(bits: u64, width: u32) -> u64 {
    let (sign, mask) = sign_and_mask(width);
    if bits & sign != 0 {
        !bits & mask
    } else {
        bits | sign
    }
}

/// The inverse of [`order_float_bits`]: an ordered form with the sign bit set was a positive
/// number.
pub(super) fn unorder_float_bits(bits: u64, width: u32) -> u64 {
    let (sign, mask) = sign_and_mask(width);
    if bits & sign != 0 {
        bits & !sign
    } else {
        !bits & mask
    }
}

/// The sign bit and the all-ones mask of a `width`-bit float.
fn sign_and_mask(width: u32) -> (u64, u64) {
    let mask = u64::MAX >> (64 - width);
    (1u64 << (width - 1), mask)
}
