//! Bytes → tuple. Only canonical encodings are accepted (what [`super::pack`] writes), so
//! `pack(unpack(b)) == b` for every accepted `b`; anything else is an error naming the offset.

use ferrisdb_core::Error;

use super::encode::{INT_ZERO, unorder_float_bits};
use super::{Element, Versionstamp};

/// Decodes a whole packed tuple.
pub fn unpack(bytes: &[u8]) -> Result<Vec<Element>, Error> {
    let mut reader = Reader { bytes, pos: 0 };
    let mut tuple = Vec::new();
    while reader.pos < bytes.len() {
        tuple.push(reader.element(false)?);
    }
    Ok(tuple)
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn error(&self, at: usize, what: &str) -> Error {
        Error::InvalidArgument(format!("not a packed tuple: {what} at offset {at}"))
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&[u8], Error> {
        let start = self.pos;
        let end = start
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| self.error(start, &format!("{what} cut short")))?;
        self.pos = end;
        Ok(&self.bytes[start..end])
    }

    fn element(&mut self, nested: bool) -> Result<Element, Error> {
        let at = self.pos;
        let code = self.take(1, "type code")?[0];
        Ok(match code {
            0x00 if nested => {
                if self.take(1, "nested null")?[0] != 0xff {
                    return Err(self.error(at, "a null inside a nested tuple without its 0xff"));
                }
                Element::Null
            }
            0x00 => Element::Null,
            0x01 => Element::Bytes(self.escaped(at)?),
            0x02 => {
                let bytes = self.escaped(at)?;
                Element::String(
                    String::from_utf8(bytes).map_err(|_| self.error(at, "a string not UTF-8"))?,
                )
            }
            0x05 => {
                let mut items = Vec::new();
                loop {
                    match self.bytes.get(self.pos) {
                        None => return Err(self.error(at, "a nested tuple without its end")),
                        Some(0x00) if self.bytes.get(self.pos + 1) != Some(&0xff) => {
                            self.pos += 1;
                            break;
                        }
                        Some(_) => items.push(self.element(true)?),
                    }
                }
                Element::Nested(items)
            }
            0x0c..=0x1c => self.int(at, code)?,
            0x20 => {
                let mut b = [0u8; 8];
                b[4..].copy_from_slice(self.take(4, "float")?);
                let bits = unorder_float_bits(u64::from_be_bytes(b), 32);
                Element::Float(f32::from_bits(u32::try_from(bits).unwrap_or(0)))
            }
            0x21 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(self.take(8, "double")?);
                Element::Double(f64::from_bits(unorder_float_bits(
                    u64::from_be_bytes(b),
                    64,
                )))
            }
            0x26 => Element::Bool(false),
            0x27 => Element::Bool(true),
            0x30 => {
                let mut u = [0u8; 16];
                u.copy_from_slice(self.take(16, "UUID")?);
                Element::Uuid(u)
            }
            0x33 => {
                let b = self.take(12, "versionstamp")?;
                let mut transaction = [0u8; 10];
                transaction.copy_from_slice(&b[..10]);
                Element::Versionstamp(Versionstamp {
                    transaction,
                    user: u16::from_be_bytes([b[10], b[11]]),
                })
            }
            other => {
                return Err(self.error(at, &format!("unsupported type code 0x{other:02x}")));
            }
        })
    }

    /// The body of a byte or Unicode string: up to an unescaped `00`, with `00 ff` → `00`.
    fn escaped(&mut self, at: usize) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        loop {
            let Some(&b) = self.bytes.get(self.pos) else {
                return Err(self.error(at, "a string without its terminating 0x00"));
            };
            self.pos += 1;
            if b != 0 {
                out.push(b);
            } else if self.bytes.get(self.pos) == Some(&0xff) {
                self.pos += 1;
                out.push(0);
            } else {
                return Ok(out);
            }
        }
    }

    fn int(&mut self, at: usize, code: u8) -> Result<Element, Error> {
        let negative = code < INT_ZERO;
        let len = usize::from(code.abs_diff(INT_ZERO));
        let body = self.take(len, "integer")?;
        let mut b = [0u8; 8];
        b[8 - len..].copy_from_slice(body);
        let raw = u64::from_be_bytes(b);
        let magnitude = if negative {
            // One's complement over `len` bytes.
            let mask = if len == 8 {
                u64::MAX
            } else {
                (1u64 << (8 * len)) - 1
            };
            !raw & mask
        } else {
            raw
        };
        // Canonical: the shortest length that holds the magnitude (zero has its own code).
        let needed = 8 - magnitude.leading_zeros() as usize / 8;
        if needed != len || (len > 0 && magnitude == 0) {
            return Err(self.error(at, "an integer not in its shortest form"));
        }
        let n = i128::from(magnitude);
        Ok(Element::Int(if negative { -n } else { n }))
    }
}
