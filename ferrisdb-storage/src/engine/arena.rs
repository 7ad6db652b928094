//! [`OutputArena`]: hands out owned [`Bytes`] copies carved from shared chunks.
//!
//! A scan returns every key and value as its own `Bytes`. Allocating (and later freeing) one
//! buffer per key and per value dominated the cost of short entries, so small copies are packed
//! into a chunk instead: each copy is a reference-counted slice of the chunk, and the chunk is
//! freed when the last slice handed out of it is dropped. Copies larger than
//! [`MAX_PACKED`] get their own allocation, so a held small item pins at most one chunk.

use bytes::{Bytes, BytesMut};

/// Size of a fresh chunk.
const CHUNK_BYTES: usize = 32 * 1024;
/// Copies longer than this are allocated on their own.
const MAX_PACKED: usize = 4 * 1024;

/// Packs small byte copies into shared chunks.
#[derive(Debug, Default)]
pub(crate) struct OutputArena {
    /// Unused tail of the current chunk (empty, with the chunk's remaining capacity).
    chunk: BytesMut,
}

impl OutputArena {
    /// An arena with no chunk yet.
    pub(crate) fn new() -> Self {
        OutputArena::default()
    }

    /// An owned copy of `data`.
    pub(crate) fn copy(&mut self, data: &[u8]) -> Bytes {
        if data.len() > MAX_PACKED {
            return Bytes::copy_from_slice(data);
        }
        if self.chunk.capacity() < data.len() {
            self.chunk = BytesMut::with_capacity(CHUNK_BYTES);
        }
        // Fits in the remaining capacity: no reallocation, so earlier slices stay untouched.
        self.chunk.extend_from_slice(data);
        self.chunk.split().freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_are_independent_and_survive_the_arena() {
        let mut arena = OutputArena::new();
        let mut held = Vec::new();
        for i in 0..5_000u32 {
            let data = vec![(i % 251) as u8; (i % 300) as usize];
            held.push((data.clone(), arena.copy(&data)));
        }
        let big = vec![7u8; MAX_PACKED + 1];
        held.push((big.clone(), arena.copy(&big)));
        held.push((Vec::new(), arena.copy(&[])));
        drop(arena);
        for (expected, got) in &held {
            assert_eq!(expected.as_slice(), got.as_ref());
        }
    }
}
