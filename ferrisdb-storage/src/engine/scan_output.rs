//! [`OutputBatch`]: the buffer a scan fills with several results at a time.
//!
//! A scan returns every key and value as its own [`Bytes`]. Allocating (and later freeing) one
//! buffer per key and per value dominated the cost of short entries, so a scan copies a batch
//! of results back to back into one staging buffer, freezes it into a single `Bytes`, and hands
//! out reference-counted slices of it. The buffer is freed when the last slice is dropped, so
//! a held result pins at most one batch (bounded by [`MAX_BATCH_BYTES`] plus its own size).

use bytes::Bytes;

/// A batch stops growing once it holds this many bytes.
pub(crate) const MAX_BATCH_BYTES: usize = 32 * 1024;

/// Bytes per result assumed for a scan's first batch.
const FIRST_GUESS_BYTES_PER_RESULT: usize = 128;

/// Staged results, then the frozen batch they are handed out from.
#[derive(Debug, Default)]
pub(crate) struct OutputBatch {
    /// Keys and values of the batch being filled, back to back.
    staging: Vec<u8>,
    /// Per result: key start, key end (= value start) and value end in the batch.
    spans: Vec<[usize; 3]>,
    /// The frozen batch `spans` index into once [`freeze`](Self::freeze) has run.
    frozen: Bytes,
    /// Next span to hand out.
    next: usize,
    /// Average bytes per result of the last batch (to size the next staging buffer).
    bytes_per_result: usize,
}

impl OutputBatch {
    /// An empty batch.
    pub(crate) fn new() -> Self {
        OutputBatch::default()
    }

    /// Prepares to stage about `results` results, sizing the staging buffer from the last
    /// batch so that filling it rarely reallocates.
    pub(crate) fn begin(&mut self, results: usize) {
        let per_result = match self.bytes_per_result {
            0 => FIRST_GUESS_BYTES_PER_RESULT,
            known => known,
        };
        let estimate = results.saturating_mul(per_result).min(MAX_BATCH_BYTES);
        self.staging.reserve(estimate + per_result);
        self.spans.reserve(results);
    }

    /// Stages one result. Only call when every frozen result has been handed out.
    pub(crate) fn push(&mut self, key: &[u8], value: &[u8]) {
        let start = self.staging.len();
        self.staging.extend_from_slice(key);
        self.staging.extend_from_slice(value);
        self.spans
            .push([start, start + key.len(), self.staging.len()]);
    }

    /// Key of the result staged last (empty if none).
    pub(crate) fn last_key(&self) -> &[u8] {
        match self.spans.last() {
            Some(&[start, end, _]) => self.staging.get(start..end).unwrap_or_default(),
            None => &[],
        }
    }

    /// Number of results staged since the last freeze.
    pub(crate) fn staged(&self) -> usize {
        self.spans.len()
    }

    /// Bytes staged since the last freeze.
    pub(crate) fn staged_bytes(&self) -> usize {
        self.staging.len()
    }

    /// Makes the staged results available to [`pop`](Self::pop).
    pub(crate) fn freeze(&mut self) {
        if let Some(per_result) = self.staging.len().checked_div(self.spans.len()) {
            self.bytes_per_result = per_result;
        }
        self.frozen = Bytes::from(std::mem::take(&mut self.staging));
        self.next = 0;
    }

    /// The next frozen result, or `None` once all are handed out (the batch is then reset).
    pub(crate) fn pop(&mut self) -> Option<(Bytes, Bytes)> {
        let Some(&[start, mid, end]) = self.spans.get(self.next) else {
            if !self.spans.is_empty() {
                self.spans.clear();
                self.frozen = Bytes::new();
            }
            return None;
        };
        self.next += 1;
        Some((self.frozen.slice(start..mid), self.frozen.slice(mid..end)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_survive_the_batch_and_later_batches() {
        let mut batch = OutputBatch::new();
        let mut held = Vec::new();
        for round in 0..3u8 {
            batch.begin(50);
            for i in 0..50u8 {
                let key = vec![round, i];
                let value = vec![i; usize::from(i) * 3];
                batch.push(&key, &value);
                assert_eq!(batch.last_key(), key.as_slice());
                held.push((key, value));
            }
            assert_eq!(batch.staged(), 50);
            batch.freeze();
            while let Some((key, value)) = batch.pop() {
                held.push((key.to_vec(), value.to_vec()));
            }
            assert_eq!(batch.staged(), 0);
            assert_eq!(batch.staged_bytes(), 0);
        }
        assert!(batch.pop().is_none());
        let (pushed, popped): (Vec<_>, Vec<_>) =
            held.chunks(50).enumerate().partition(|(i, _)| i % 2 == 0);
        for ((_, a), (_, b)) in pushed.iter().zip(&popped) {
            assert_eq!(a, b);
        }
    }
}
