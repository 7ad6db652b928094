//! The block cache shared by every open SSTable.
//!
//! Decoded data blocks are cached under `(table_id, block_offset)` as `Arc<Block>`, so a
//! cached block stays alive while iterators use it even after eviction. The cache is split
//! into 16 shards, each a mutex-protected LRU list; a key's shard is chosen by hashing it.
//! Every shard gets an equal part of the capacity and evicts least-recently-used blocks until
//! its charged bytes (see [`Block::charge`]) fit, so total usage never exceeds the capacity.
//! A block larger than its shard's part is not cached. Capacity 0 disables caching.
//! Table ids are never reused, so blocks of deleted tables simply age out.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::sstable::block::Block;

/// Number of independently locked shards.
const SHARD_COUNT: usize = 16;
/// Marks the absence of a neighbour in the LRU list.
const NIL: usize = usize::MAX;

/// Cache key: table id and the block's file offset.
type CacheKey = (u64, u64);

/// A sharded LRU cache of decoded blocks.
#[derive(Debug)]
pub struct BlockCache {
    shards: Box<[Mutex<LruShard>]>,
    capacity: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl BlockCache {
    /// A cache holding at most `capacity_bytes` of blocks; 0 disables caching.
    pub fn new(capacity_bytes: usize) -> Arc<BlockCache> {
        let shards = (0..SHARD_COUNT)
            .map(|i| {
                let extra = usize::from(i < capacity_bytes % SHARD_COUNT);
                Mutex::new(LruShard::new(capacity_bytes / SHARD_COUNT + extra))
            })
            .collect();
        Arc::new(BlockCache {
            shards,
            capacity: capacity_bytes,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        })
    }

    /// The cached block at `block_offset` of table `table_id`, marking it recently used.
    pub fn get(&self, table_id: u64, block_offset: u64) -> Option<Arc<Block>> {
        let key = (table_id, block_offset);
        let found = self.shard(key).lock().get(key);
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Caches `block`, evicting least-recently-used blocks of its shard as needed.
    pub fn insert(&self, table_id: u64, block_offset: u64, block: Arc<Block>) {
        let key = (table_id, block_offset);
        self.shard(key).lock().insert(key, block);
    }

    /// Bytes currently charged to the cache.
    pub fn usage_bytes(&self) -> usize {
        self.shards.iter().map(|shard| shard.lock().usage).sum()
    }

    /// The configured capacity in bytes.
    pub fn capacity_bytes(&self) -> usize {
        self.capacity
    }

    /// Number of lookups that found their block.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Number of lookups that did not.
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    fn shard(&self, key: CacheKey) -> &Mutex<LruShard> {
        let index = (mix(key) >> 60) as usize % self.shards.len().max(1);
        // Length is SHARD_COUNT (never 0), so `index` is in range.
        &self.shards[index]
    }
}

/// A 64-bit mix of a cache key (used for shard selection and the shard's hash map).
#[inline]
fn mix((table_id, offset): CacheKey) -> u64 {
    let mut h = table_id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ offset;
    h ^= h >> 32;
    h = h.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    h ^ (h >> 32)
}

/// Hasher for the shard maps: folds written integers with [`mix`].
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        mix((self.0, 0))
    }
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x100_0000_01B3);
        }
    }
    fn write_u64(&mut self, value: u64) {
        self.0 = mix((self.0, value));
    }
}

/// One LRU entry in the shard's slab.
#[derive(Debug)]
struct Node {
    key: CacheKey,
    block: Option<Arc<Block>>,
    charge: usize,
    prev: usize,
    next: usize,
}

/// An LRU list threaded through a slab of nodes (indices, no pointers).
#[derive(Debug)]
struct LruShard {
    map: HashMap<CacheKey, usize, BuildHasherDefault<KeyHasher>>,
    nodes: Vec<Node>,
    free: Vec<usize>,
    /// Most recently used.
    head: usize,
    /// Least recently used.
    tail: usize,
    usage: usize,
    capacity: usize,
}

impl LruShard {
    fn new(capacity: usize) -> LruShard {
        LruShard {
            map: HashMap::default(),
            nodes: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            usage: 0,
            capacity,
        }
    }

    fn get(&mut self, key: CacheKey) -> Option<Arc<Block>> {
        let index = *self.map.get(&key)?;
        self.unlink(index);
        self.push_front(index);
        self.nodes.get(index).and_then(|node| node.block.clone())
    }

    fn insert(&mut self, key: CacheKey, block: Arc<Block>) {
        let charge = block.charge();
        if let Some(index) = self.map.remove(&key) {
            self.remove_node(index);
        }
        if charge > self.capacity {
            return;
        }
        while self.usage + charge > self.capacity && self.tail != NIL {
            let victim = self.tail;
            if let Some(node) = self.nodes.get(victim) {
                self.map.remove(&node.key);
            }
            self.remove_node(victim);
        }
        let node = Node {
            key,
            block: Some(block),
            charge,
            prev: NIL,
            next: NIL,
        };
        let index = match self.free.pop() {
            Some(index) => {
                if let Some(slot) = self.nodes.get_mut(index) {
                    *slot = node;
                }
                index
            }
            None => {
                self.nodes.push(node);
                self.nodes.len() - 1
            }
        };
        self.push_front(index);
        self.map.insert(key, index);
        self.usage += charge;
    }

    /// Unlinks a node that has already left the map and frees its slot.
    fn remove_node(&mut self, index: usize) {
        self.unlink(index);
        if let Some(node) = self.nodes.get_mut(index) {
            self.usage -= node.charge;
            node.charge = 0;
            node.block = None;
            self.free.push(index);
        }
    }

    fn unlink(&mut self, index: usize) {
        let Some((prev, next)) = self.nodes.get(index).map(|n| (n.prev, n.next)) else {
            return;
        };
        match self.nodes.get_mut(prev) {
            Some(node) => node.next = next,
            None => self.head = next,
        }
        match self.nodes.get_mut(next) {
            Some(node) => node.prev = prev,
            None => self.tail = prev,
        }
        if let Some(node) = self.nodes.get_mut(index) {
            node.prev = NIL;
            node.next = NIL;
        }
    }

    fn push_front(&mut self, index: usize) {
        let old_head = self.head;
        if let Some(node) = self.nodes.get_mut(index) {
            node.prev = NIL;
            node.next = old_head;
        }
        match self.nodes.get_mut(old_head) {
            Some(node) => node.prev = index,
            None => self.tail = index,
        }
        self.head = index;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    fn block_of(len: usize) -> Arc<Block> {
        Arc::new(Block::decode(padded(len)).unwrap())
    }

    /// A valid block of roughly `len` bytes: one entry with a value of filler bytes.
    fn padded(len: usize) -> Bytes {
        let mut builder = crate::sstable::block::BlockBuilder::new(16);
        builder.add(b"k", 1, crate::key::ValueKind::Put, &vec![7u8; len]);
        Bytes::copy_from_slice(builder.finish())
    }

    #[test]
    fn usage_never_exceeds_capacity() {
        let cache = BlockCache::new(20_000);
        let mut rng = StdRng::seed_from_u64(7);
        for i in 0..2_000u64 {
            let block = block_of(rng.random_range(10..900));
            cache.insert(i % 37, i, block);
            assert!(cache.usage_bytes() <= cache.capacity_bytes());
        }
        assert!(
            cache.usage_bytes() > 10_000,
            "cache barely used: {}",
            cache.usage_bytes()
        );
    }

    #[test]
    fn counts_hits_and_misses_and_evicts_lru() {
        let cache = BlockCache::new(16 * 1_000);
        assert!(cache.get(1, 0).is_none());
        cache.insert(1, 0, block_of(100));
        assert!(cache.get(1, 0).is_some());
        assert!(cache.get(1, 0).is_some());
        assert_eq!((cache.hits(), cache.misses()), (2, 1));

        // Fill one shard: the least recently used key of that shard goes first.
        let shard_of = |key| (mix(key) >> 60) as usize;
        let target = shard_of((1, 0));
        let same_shard: Vec<u64> = (1..10_000)
            .filter(|&o| shard_of((1, o)) == target)
            .collect();
        for &offset in same_shard.iter().take(20) {
            cache.get(1, 0); // keep (1, 0) hot
            cache.insert(1, offset, block_of(300));
        }
        assert!(cache.get(1, 0).is_some(), "hot block evicted");
        assert!(cache.get(1, same_shard[0]).is_none(), "cold block kept");
    }

    #[test]
    fn replacing_a_key_keeps_usage_exact() {
        let cache = BlockCache::new(1 << 20);
        cache.insert(3, 8, block_of(100));
        let first = cache.usage_bytes();
        cache.insert(3, 8, block_of(100));
        assert_eq!(cache.usage_bytes(), first);
    }

    #[test]
    fn zero_capacity_caches_nothing() {
        let cache = BlockCache::new(0);
        cache.insert(1, 0, block_of(10));
        assert!(cache.get(1, 0).is_none());
        assert_eq!(cache.usage_bytes(), 0);
        assert_eq!(cache.misses(), 1);
    }

    #[test]
    fn oversized_block_is_not_cached() {
        let cache = BlockCache::new(16 * 100);
        cache.insert(1, 0, block_of(5_000));
        assert!(cache.get(1, 0).is_none());
        assert_eq!(cache.usage_bytes(), 0);
    }
}
