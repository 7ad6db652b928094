//! Versionstamps: 10 bytes the coordinator assigns to each committed transaction (8 bytes of
//! commit version, 2 of the transaction's order in its commit batch, both big-endian), unique
//! across the cluster and ordered like the commits.
//!
//! A transaction writes one into a key or a value with `SetVersionstampedKey` /
//! `SetVersionstampedValue` (FoundationDB's encoding): the parameter holds a 10-byte
//! placeholder somewhere and ends with the placeholder's offset as a 4-byte little-endian
//! integer. The coordinator replaces the placeholder with the stamp and drops the offset
//! ([`fill`]), so storage servers only ever see plain sets.

use bytes::Bytes;

use crate::error::Error;
use crate::{KeyRange, Version};

/// Length of a versionstamp.
pub const LEN: usize = 10;
/// Length of the placeholder offset that ends a versionstamped parameter.
pub const OFFSET_LEN: usize = 4;

/// The stamp of one committed transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Versionstamp([u8; LEN]);

impl Versionstamp {
    /// The stamp of the transaction at position `batch_index` of the batch committed at
    /// `version`.
    pub fn new(version: Version, batch_index: u16) -> Self {
        let mut b = [0u8; LEN];
        b[..8].copy_from_slice(&version.get().to_be_bytes());
        b[8..].copy_from_slice(&batch_index.to_be_bytes());
        Versionstamp(b)
    }

    /// The stamp held in these 10 bytes.
    pub fn from_bytes(bytes: [u8; LEN]) -> Self {
        Versionstamp(bytes)
    }

    /// The 10 bytes.
    pub fn bytes(&self) -> [u8; LEN] {
        self.0
    }

    /// The commit version.
    pub fn version(&self) -> Version {
        let mut v = [0u8; 8];
        v.copy_from_slice(&self.0[..8]);
        Version(u64::from_be_bytes(v))
    }

    /// The transaction's position in its commit batch.
    pub fn batch_index(&self) -> u16 {
        u16::from_be_bytes([self.0[8], self.0[9]])
    }
}

/// Where the placeholder of a versionstamped parameter starts; `what` names the parameter in
/// errors ("key" or "value"). Fails unless the parameter ends with a 4-byte little-endian
/// offset and the 10-byte placeholder lies wholly before it.
pub fn placeholder_offset(param: &[u8], what: &str) -> Result<usize, Error> {
    let Some(body_len) = param.len().checked_sub(OFFSET_LEN) else {
        return Err(Error::InvalidArgument(format!(
            "a versionstamped {what} must end with the 4-byte little-endian offset of its \
             10-byte placeholder; got {} bytes",
            param.len()
        )));
    };
    let mut raw = [0u8; OFFSET_LEN];
    raw.copy_from_slice(&param[body_len..]);
    let offset = u32::from_le_bytes(raw) as usize;
    if offset.checked_add(LEN).is_none_or(|end| end > body_len) {
        return Err(Error::InvalidArgument(format!(
            "the versionstamp placeholder of this {what} starts at offset {offset}, but its 10 \
             bytes must fit in the {body_len} bytes before the 4-byte offset"
        )));
    }
    Ok(offset)
}

/// The parameter with its placeholder replaced by `stamp` and the offset dropped. The
/// parameter must have passed [`placeholder_offset`].
pub fn fill(param: &[u8], stamp: Versionstamp, what: &str) -> Result<Bytes, Error> {
    let offset = placeholder_offset(param, what)?;
    let mut out = param[..param.len() - OFFSET_LEN].to_vec();
    out[offset..offset + LEN].copy_from_slice(&stamp.bytes());
    Ok(Bytes::from(out))
}

/// Every key a versionstamped key parameter can become: from the key with the placeholder all
/// `0x00` to the key with it all `0xff` (inclusive). Its write conflict range, since the
/// stamp is not known before the commit.
pub fn key_range(param: &[u8]) -> Result<KeyRange, Error> {
    let offset = placeholder_offset(param, "key")?;
    let body = &param[..param.len() - OFFSET_LEN];
    let mut low = body.to_vec();
    low[offset..offset + LEN].fill(0);
    let mut high = body.to_vec();
    high[offset..offset + LEN].fill(0xff);
    high.push(0);
    KeyRange::new(Bytes::from(low), Bytes::from(high))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(prefix: &[u8], suffix: &[u8]) -> Vec<u8> {
        let mut p = prefix.to_vec();
        p.extend_from_slice(&[0xaa; LEN]);
        p.extend_from_slice(suffix);
        p.extend_from_slice(&(prefix.len() as u32).to_le_bytes());
        p
    }

    #[test]
    fn stamp_holds_version_and_batch_index_big_endian() {
        let s = Versionstamp::new(Version(0x0102_0304_0506_0708), 0x090a);
        assert_eq!(s.bytes(), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        assert_eq!(s.version(), Version(0x0102_0304_0506_0708));
        assert_eq!(s.batch_index(), 0x090a);
        assert!(Versionstamp::new(Version(5), 9) < Versionstamp::new(Version(6), 0));
        assert!(Versionstamp::new(Version(6), 0) < Versionstamp::new(Version(6), 1));
    }

    #[test]
    fn fill_replaces_the_placeholder_and_drops_the_offset() {
        let stamp = Versionstamp::new(Version(7), 3);
        let filled = fill(&param(b"q/", b"/x"), stamp, "key").unwrap();
        let mut want = b"q/".to_vec();
        want.extend_from_slice(&stamp.bytes());
        want.extend_from_slice(b"/x");
        assert_eq!(&filled[..], &want[..]);
    }

    #[test]
    fn bad_parameters_are_refused_with_the_reason() {
        for bad in [
            vec![],
            vec![1, 2, 3],
            // Offset 0 but only 9 bytes before it.
            [&[0u8; 9][..], &0u32.to_le_bytes()].concat(),
            // Offset past the end.
            [&[0u8; 12][..], &5u32.to_le_bytes()].concat(),
            // An offset so large that offset + 10 overflows on 32-bit targets.
            [&[0u8; 12][..], &u32::MAX.to_le_bytes()].concat(),
        ] {
            let err = placeholder_offset(&bad, "key").unwrap_err();
            assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
        }
    }

    #[test]
    fn key_range_covers_every_possible_stamp() {
        let p = param(b"q/", b"");
        let range = key_range(&p).unwrap();
        for stamp in [
            Versionstamp::new(Version(0), 0),
            Versionstamp::new(Version(12345), 7),
            Versionstamp::from_bytes([0xff; LEN]),
        ] {
            let key = fill(&p, stamp, "key").unwrap();
            assert!(range.contains(&key), "{key:?} not in {range:?}");
        }
    }
}
