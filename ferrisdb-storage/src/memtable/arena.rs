//! A bump allocator for skip-list nodes: memory is carved out of large chunks and released
//! all at once when the arena drops.
//!
//! Why: a memtable never frees an entry before the whole memtable goes, so per-entry `malloc`
//! and `free` buy nothing. Carving nodes out of chunks saves those calls, keeps neighbouring
//! inserts close together, and makes the memtable's size exact: [`Arena::allocated_bytes`] is
//! the memory the chunks hold, which is what the flush threshold should compare against.
//!
//! Chunks start small (so a tiny memtable stays tiny) and double up to [`MAX_CHUNK`]. An
//! allocation bigger than a quarter of that gets a chunk of its own, so a large value does not
//! waste the rest of the current chunk.
//!
//! Full-size chunks are 2 MiB and 2 MiB-aligned, and on Linux are marked for transparent huge
//! pages (`madvise(MADV_HUGEPAGE)`): a search through a large memtable touches nodes spread
//! over tens of megabytes, and with 4 KiB pages nearly every step is a TLB miss as well as a
//! cache miss (a costly one under virtualization). Where huge pages are unavailable the advice
//! is ignored and nothing else changes.
//!
//! On Linux the chunks come straight from the kernel (`mmap`) and go straight back
//! (`munmap`) when the memtable drops. Through `malloc` they did not: glibc raises its mmap
//! threshold to the size of the first big block freed, so after the first memtable every 2
//! MiB chunk came from its heaps, and a flushed memtable's chunks stayed resident in free
//! lists: `ferrisdb bench engine` at 10M keys was resident at 357 MiB with 55 MiB accounted
//! for by memtables, cache, indexes and filters (see `engine_bench/memory.rs`).

use std::alloc::{self, Layout};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;

/// Alignment of every allocation (the nodes hold `u64`s and pointers).
pub(crate) const ALIGN: usize = 8;
/// Size of the first chunk.
const FIRST_CHUNK: usize = 4 << 10;
/// Chunks double in size up to this: one huge page on x86-64 and most arm64 kernels.
const MAX_CHUNK: usize = 2 << 20;

/// The chunk allocator. `Send + Sync`: allocation takes a short mutex.
pub(crate) struct Arena {
    state: Mutex<State>,
    /// Bytes of every chunk allocated so far.
    allocated: AtomicUsize,
}

struct State {
    /// Next free byte of the current chunk (dangling while there is none).
    cursor: NonNull<u8>,
    /// Bytes left after `cursor` in the current chunk.
    remaining: usize,
    /// Size of the next shared chunk.
    next_chunk: usize,
    /// Every chunk, for freeing on drop.
    chunks: Vec<(NonNull<u8>, Layout)>,
}

// SAFETY: the raw pointers in `State` point to chunks this arena owns exclusively; they are
// only dereferenced by callers of `allocate`, each of which gets a disjoint range, and the
// chunks are freed only by `Drop`, which has `&mut self`.
unsafe impl Send for Arena {}
// SAFETY: as above; all mutation of `State` happens under the mutex.
unsafe impl Sync for Arena {}

impl Arena {
    /// An empty arena; the first chunk is allocated on first use.
    pub(crate) fn new() -> Self {
        Arena {
            state: Mutex::new(State {
                cursor: NonNull::dangling(),
                remaining: 0,
                next_chunk: FIRST_CHUNK,
                chunks: Vec::new(),
            }),
            allocated: AtomicUsize::new(0),
        }
    }

    /// Bytes held by the arena's chunks (including the unused tail of the current one).
    pub(crate) fn allocated_bytes(&self) -> usize {
        self.allocated.load(Ordering::Relaxed)
    }

    /// `size` bytes (rounded up to [`ALIGN`]), aligned to [`ALIGN`], uninitialized, valid until
    /// the arena drops and handed out to no one else. Aborts like `Box::new` if memory runs
    /// out.
    pub(crate) fn allocate(&self, size: usize) -> NonNull<u8> {
        let size = size.max(1).next_multiple_of(ALIGN);
        if size > MAX_CHUNK / 4 {
            return self.new_chunk(size, &mut self.state.lock().chunks);
        }
        let mut state = self.state.lock();
        if state.remaining < size {
            // At least twice the last chunk, and big enough for `size` (≤ MAX_CHUNK / 4).
            let mut chunk_size = state.next_chunk;
            while chunk_size < size {
                chunk_size *= 2;
            }
            state.next_chunk = (chunk_size * 2).min(MAX_CHUNK);
            state.cursor = self.new_chunk(chunk_size, &mut state.chunks);
            state.remaining = chunk_size;
        }
        let out = state.cursor;
        // SAFETY: `size <= remaining`, so the new cursor is within (or one past the end of)
        // the current chunk.
        state.cursor = unsafe { out.add(size) };
        state.remaining -= size;
        out
    }

    fn new_chunk(&self, size: usize, chunks: &mut Vec<(NonNull<u8>, Layout)>) -> NonNull<u8> {
        // A full-size chunk is aligned to its size so that it can be one huge page.
        let align = if size == MAX_CHUNK { MAX_CHUNK } else { ALIGN };
        let Ok(layout) = Layout::from_size_align(size, align) else {
            panic!("arena chunk of {size} bytes overflows the address space");
        };
        let ptr = chunk_alloc(layout);
        if size == MAX_CHUNK {
            advise_huge_pages(ptr, size);
        }
        chunks.push((ptr, layout));
        self.allocated.fetch_add(size, Ordering::Relaxed);
        #[cfg(test)]
        tests::LIVE_BYTES.with(|live| live.set(live.get() + size as isize));
        ptr
    }
}

/// A chunk of `layout.size()` bytes aligned to `layout.align()`, from the kernel: an
/// anonymous private mapping (zero-filled, faulted in as it is touched), trimmed to the
/// alignment. Aborts like `Box::new` if the kernel refuses.
#[cfg(target_os = "linux")]
fn chunk_alloc(layout: Layout) -> NonNull<u8> {
    let page = page_size();
    let len = layout.size().next_multiple_of(page);
    // Room to slide to the alignment, when it exceeds the page alignment mmap gives.
    let slack = if layout.align() > page {
        layout.align()
    } else {
        0
    };
    let total = len + slack;
    // SAFETY: a fresh anonymous mapping; no existing memory is touched.
    let mapped = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            total,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if mapped == libc::MAP_FAILED {
        alloc::handle_alloc_error(layout);
    }
    let base = mapped as usize;
    let start = base.next_multiple_of(layout.align().max(page));
    let head = start - base;
    let tail = total - head - len;
    // SAFETY: `[base, start)` and `[start + len, base + total)` lie inside the mapping just
    // made, are page-aligned (base, start and len are multiples of the page size) and are
    // handed to no one: unmapping them leaves exactly `[start, start + len)`.
    unsafe {
        if head > 0 {
            libc::munmap(mapped, head);
        }
        if tail > 0 {
            libc::munmap((start + len) as *mut libc::c_void, tail);
        }
    }
    match NonNull::new(start as *mut u8) {
        Some(ptr) => ptr,
        None => alloc::handle_alloc_error(layout),
    }
}

/// Returns a chunk from [`chunk_alloc`] to the kernel.
///
/// # Safety
/// `ptr` and `layout` are one chunk's, freed once, and nothing uses its memory any more.
#[cfg(target_os = "linux")]
unsafe fn chunk_free(ptr: NonNull<u8>, layout: Layout) {
    let len = layout.size().next_multiple_of(page_size());
    // SAFETY: by the caller's contract, `[ptr, ptr + len)` is exactly the mapping left by
    // `chunk_alloc` for this layout, and unused.
    unsafe {
        libc::munmap(ptr.as_ptr().cast(), len);
    }
}

/// The kernel's page size (4 KiB if it cannot be asked).
#[cfg(target_os = "linux")]
fn page_size() -> usize {
    // SAFETY: sysconf reads a constant of the system; no memory is involved.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size)
        .ok()
        .filter(|s| s.is_power_of_two())
        .unwrap_or(4096)
}

/// A chunk from the global allocator (where the kernel is not asked directly).
#[cfg(not(target_os = "linux"))]
fn chunk_alloc(layout: Layout) -> NonNull<u8> {
    // SAFETY: `layout` has a non-zero size (every chunk is at least `ALIGN` bytes).
    let ptr = unsafe { alloc::alloc(layout) };
    match NonNull::new(ptr) {
        Some(ptr) => ptr,
        None => alloc::handle_alloc_error(layout),
    }
}

/// Returns a chunk from [`chunk_alloc`] to the global allocator.
///
/// # Safety
/// `ptr` and `layout` are one chunk's, freed once, and nothing uses its memory any more.
#[cfg(not(target_os = "linux"))]
unsafe fn chunk_free(ptr: NonNull<u8>, layout: Layout) {
    // SAFETY: by the caller's contract.
    unsafe { alloc::dealloc(ptr.as_ptr(), layout) };
}

/// Asks the kernel to back `[ptr, ptr + len)` with transparent huge pages. Advice only: the
/// result is ignored (the kernel may lack THP or have it disabled).
#[cfg(target_os = "linux")]
fn advise_huge_pages(ptr: NonNull<u8>, len: usize) {
    // SAFETY: the range is one chunk this arena just allocated and owns; MADV_HUGEPAGE changes
    // how it is backed, never its contents or validity.
    unsafe {
        libc::madvise(ptr.as_ptr().cast(), len, libc::MADV_HUGEPAGE);
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages(_ptr: NonNull<u8>, _len: usize) {}

impl Drop for Arena {
    fn drop(&mut self) {
        for (ptr, layout) in self.state.get_mut().chunks.drain(..) {
            // SAFETY: each chunk was allocated by `new_chunk` with exactly this layout and is
            // freed once; `&mut self` proves nobody still uses memory carved from it.
            unsafe { chunk_free(ptr, layout) };
            #[cfg(test)]
            tests::LIVE_BYTES.with(|live| live.set(live.get() - layout.size() as isize));
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::cell::Cell;

    use super::*;

    thread_local! {
        /// Chunk bytes allocated minus freed on this thread.
        pub(crate) static LIVE_BYTES: Cell<isize> = const { Cell::new(0) };
    }

    pub(crate) fn live_bytes() -> isize {
        LIVE_BYTES.with(Cell::get)
    }

    #[test]
    fn allocations_are_aligned_disjoint_and_writable() {
        let arena = Arena::new();
        let mut ranges = Vec::new();
        for size in (0..2_000).map(|i| 1 + i % 300) {
            let ptr = arena.allocate(size);
            assert_eq!(ptr.as_ptr() as usize % ALIGN, 0);
            // SAFETY: `allocate` handed out `size` writable bytes to this test alone.
            unsafe { ptr.as_ptr().write_bytes(size as u8, size) };
            ranges.push((ptr.as_ptr() as usize, size));
        }
        // Every range still holds what was written to it: no two overlap.
        for &(start, size) in &ranges {
            // SAFETY: as above; the arena is still alive.
            let bytes = unsafe { std::slice::from_raw_parts(start as *const u8, size) };
            assert!(bytes.iter().all(|&b| b == size as u8));
        }
        ranges.sort_unstable();
        for pair in ranges.windows(2) {
            assert!(pair[0].0 + pair[0].1 <= pair[1].0);
        }
    }

    #[test]
    fn chunks_grow_and_large_allocations_get_their_own() {
        let before = live_bytes();
        {
            let arena = Arena::new();
            assert_eq!(arena.allocated_bytes(), 0);
            arena.allocate(100);
            assert_eq!(arena.allocated_bytes(), FIRST_CHUNK);
            // Filling the first chunk takes a second one of twice the size.
            arena.allocate(FIRST_CHUNK);
            assert_eq!(arena.allocated_bytes(), FIRST_CHUNK * 3);
            // A large allocation is a chunk of exactly its size; the current one stays.
            let large = arena.allocate(MAX_CHUNK);
            assert_eq!(arena.allocated_bytes(), FIRST_CHUNK * 3 + MAX_CHUNK);
            // A full-size chunk is aligned to its size (to be one huge page).
            assert_eq!(large.as_ptr() as usize % MAX_CHUNK, 0);
            arena.allocate(8);
            assert_eq!(arena.allocated_bytes(), FIRST_CHUNK * 3 + MAX_CHUNK);
            assert_eq!(live_bytes() - before, arena.allocated_bytes() as isize);
        }
        assert_eq!(live_bytes(), before);
    }

    #[test]
    fn chunks_of_any_size_and_alignment_are_writable_and_freed() {
        for (size, align) in [
            (ALIGN, ALIGN),
            (FIRST_CHUNK, ALIGN),
            (600_001, ALIGN),
            (MAX_CHUNK, MAX_CHUNK),
            (3 * MAX_CHUNK + 8, MAX_CHUNK),
        ] {
            let layout = Layout::from_size_align(size, align).unwrap();
            let ptr = chunk_alloc(layout);
            assert_eq!(ptr.as_ptr() as usize % align, 0, "{size} at {align}");
            // SAFETY: the chunk is `size` bytes, owned by this test alone.
            unsafe {
                ptr.as_ptr().write_bytes(0xA5, size);
                assert_eq!(*ptr.as_ptr().add(size - 1), 0xA5);
                chunk_free(ptr, layout);
            }
        }
    }

    #[test]
    fn a_first_allocation_larger_than_the_first_chunk_fits() {
        let arena = Arena::new();
        let size = MAX_CHUNK / 4;
        let ptr = arena.allocate(size);
        // SAFETY: `allocate` handed out `size` writable bytes to this test alone.
        unsafe { ptr.as_ptr().write_bytes(1, size) };
        assert_eq!(arena.allocated_bytes(), MAX_CHUNK / 4);
        // The next chunk keeps doubling from there.
        arena.allocate(8);
        arena.allocate(MAX_CHUNK / 4);
        assert_eq!(arena.allocated_bytes(), MAX_CHUNK / 4 + MAX_CHUNK / 2);
    }

    #[test]
    fn concurrent_allocations_do_not_overlap() {
        let arena = Arena::new();
        let per_thread: Vec<Vec<(usize, usize)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4u8)
                .map(|t| {
                    let arena = &arena;
                    scope.spawn(move || {
                        (0..5_000)
                            .map(|i| {
                                let size = 8 + (i * 7 + usize::from(t)) % 200;
                                let ptr = arena.allocate(size);
                                // SAFETY: these bytes were handed to this thread alone.
                                unsafe { ptr.as_ptr().write_bytes(t, size) };
                                (ptr.as_ptr() as usize, size)
                            })
                            .collect()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (t, ranges) in per_thread.iter().enumerate() {
            for &(start, size) in ranges {
                // SAFETY: the arena is alive and nobody writes any more.
                let bytes = unsafe { std::slice::from_raw_parts(start as *const u8, size) };
                assert!(bytes.iter().all(|&b| usize::from(b) == t));
            }
        }
    }
}
