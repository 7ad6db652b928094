//! Readahead for a table cursor that walks data blocks in file order (a long forward scan).
//!
//! A scan that misses the block cache would otherwise make one positional read per ~4 KiB
//! block. Once a cursor has loaded [`SEQUENTIAL_AFTER`] blocks back to back, each read that
//! misses the cache fetches a window of following blocks in one call instead (16 KiB at
//! first, doubling up to [`MAX_WINDOW`]), and the next blocks are cut from that window. Every
//! block is still checksum-verified on its own before use.
//!
//! Blocks are cached as on the ordinary path (copied out of the window first, so that a cached
//! block never pins a whole window); a compaction's cursor, which caches nothing, uses them
//! in place. A jump (a seek, or a move backwards) ends the sequential run and drops the
//! window.

use bytes::Bytes;

use super::format::BlockHandle;

/// Back-to-back block loads after which a cursor counts as sequential.
pub(crate) const SEQUENTIAL_AFTER: u32 = 2;
/// First window size.
const FIRST_WINDOW: usize = 16 << 10;
/// Windows double up to this.
const MAX_WINDOW: usize = 256 << 10;

/// One cursor's readahead state.
#[derive(Debug, Default)]
pub(crate) struct Readahead {
    /// File offset just past the last block loaded (with its trailer).
    last_end: Option<u64>,
    /// Back-to-back loads so far in this run.
    run: u32,
    /// File offset of `window`'s first byte.
    window_offset: u64,
    /// Bytes read ahead (empty when there is none).
    window: Bytes,
    /// Size of the next window to read.
    next_size: usize,
}

impl Readahead {
    /// Records that the block at `handle` is being loaded; true if the cursor is now reading
    /// sequentially (this block starts where the previous one ended, after a run long enough).
    pub(crate) fn note_load(&mut self, handle: BlockHandle) -> bool {
        if self.last_end == Some(handle.offset) {
            self.run = self.run.saturating_add(1);
        } else {
            self.run = 0;
            self.window = Bytes::new();
            self.next_size = FIRST_WINDOW;
        }
        self.last_end = handle.end_with_trailer();
        self.run >= SEQUENTIAL_AFTER
    }

    /// The block and trailer bytes at `[offset, offset + len)` if the window holds them.
    pub(crate) fn cut(&self, offset: u64, len: usize) -> Option<Bytes> {
        let start = usize::try_from(offset.checked_sub(self.window_offset)?).ok()?;
        let end = start.checked_add(len)?;
        (end <= self.window.len()).then(|| self.window.slice(start..end))
    }

    /// How many bytes to read for a window starting at `offset` that must hold at least
    /// `needed` bytes and may not pass `limit`; advances the window size.
    pub(crate) fn next_window_len(&mut self, offset: u64, needed: usize, limit: u64) -> usize {
        let available = usize::try_from(limit.saturating_sub(offset)).unwrap_or(usize::MAX);
        let len = self.next_size.max(needed).min(available.max(needed));
        self.next_size = (self.next_size * 2).clamp(FIRST_WINDOW, MAX_WINDOW);
        len
    }

    /// Installs a freshly read window.
    pub(crate) fn fill(&mut self, offset: u64, window: Bytes) {
        self.window_offset = offset;
        self.window = window;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(offset: u64, size: u64) -> BlockHandle {
        BlockHandle { offset, size }
    }

    #[test]
    fn sequential_after_back_to_back_loads_and_reset_by_a_jump() {
        let mut ra = Readahead::default();
        let trailer = super::super::format::BLOCK_TRAILER_SIZE as u64;
        let mut offset = 0;
        let mut sequential = Vec::new();
        for _ in 0..4 {
            sequential.push(ra.note_load(handle(offset, 100)));
            offset += 100 + trailer;
        }
        assert_eq!(sequential, [false, false, true, true]);
        // A seek elsewhere starts over and drops the window.
        ra.fill(0, Bytes::from(vec![1u8; 64]));
        assert!(!ra.note_load(handle(10_000, 100)));
        assert!(ra.cut(0, 8).is_none());
    }

    #[test]
    fn cut_serves_only_ranges_inside_the_window() {
        let mut ra = Readahead::default();
        ra.fill(1_000, Bytes::from((0..=255u8).collect::<Vec<_>>()));
        assert_eq!(ra.cut(1_010, 3).as_deref(), Some(&[10u8, 11, 12][..]));
        assert_eq!(ra.cut(1_000, 256).map(|b| b.len()), Some(256));
        assert!(ra.cut(1_000, 257).is_none());
        assert!(ra.cut(999, 2).is_none());
        assert!(ra.cut(1_255, 2).is_none());
        assert!(ra.cut(u64::MAX, 1).is_none());
    }

    #[test]
    fn windows_double_up_to_the_cap_and_stop_at_the_limit() {
        let mut ra = Readahead::default();
        ra.note_load(handle(0, 10));
        let sizes: Vec<usize> = (0..7)
            .map(|_| ra.next_window_len(0, 100, u64::MAX))
            .collect();
        assert_eq!(
            sizes,
            [
                16 << 10,
                32 << 10,
                64 << 10,
                128 << 10,
                256 << 10,
                256 << 10,
                256 << 10
            ]
        );
        // Never past the data region, but always the block itself.
        assert_eq!(ra.next_window_len(1_000, 100, 1_500), 500);
        assert_eq!(ra.next_window_len(1_000, 700, 1_500), 700);
    }
}
