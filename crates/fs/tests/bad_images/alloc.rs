//! A counting global allocator for the campaign binary: live heap bytes and their peak, so the
//! watchdog can stop a case whose memory grows without bound, and any single allocation above
//! [`ALLOC_MAX_BYTES`] aborts at once (a decoder sizing a buffer from a corrupt field).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// No allocation of a correct mount, walk or operation on an 8 MiB image comes near this.
pub const ALLOC_MAX_BYTES: usize = 256 << 20;

pub struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
static PEAK_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Heap bytes in use now.
pub fn live_bytes() -> usize {
    LIVE_BYTES.load(Ordering::Relaxed)
}

/// The most heap bytes in use at once so far.
pub fn peak_bytes() -> usize {
    PEAK_BYTES.load(Ordering::Relaxed)
}

fn too_big(size: usize) -> ! {
    // No formatting machinery here: it allocates.
    let msg = b"bad_images: a single allocation above ALLOC_MAX_BYTES (unbounded memory)\n";
    // SAFETY: writing a static buffer to stderr; no memory is shared.
    unsafe {
        libc::write(2, msg.as_ptr().cast(), msg.len());
    }
    let _ = size;
    std::process::abort()
}

fn grew(size: usize) {
    let now = LIVE_BYTES.fetch_add(size, Ordering::Relaxed) + size;
    PEAK_BYTES.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call forwards to `System` with the caller's layout; the counters are plain
// atomics and never affect the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > ALLOC_MAX_BYTES {
            too_big(layout.size());
        }
        grew(layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > ALLOC_MAX_BYTES {
            too_big(layout.size());
        }
        grew(layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > ALLOC_MAX_BYTES {
            too_big(new_size);
        }
        if new_size >= layout.size() {
            grew(new_size - layout.size());
        } else {
            LIVE_BYTES.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
