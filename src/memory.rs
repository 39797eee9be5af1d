//! Memory given back after large work.
//!
//! The server's allocator (mimalloc) keeps what a thread frees in that thread's own
//! heap and returns it to the system later, when that thread next allocates. Large
//! bodies pass through several threads (an HTTP worker reads and parses one, a
//! database thread loads or stores it), and a thread that then waits, or the other
//! worker taking the next large body, held its peak beside the next one's: about
//! 30 MB over what the largest request needs at once (BENCHMARKS.md, twelfth
//! section). Each thread counts the bodies it handles; at the end of its piece of
//! work (a request on a worker, a job on a database thread, a write group), if they
//! came to [`LARGE_BYTES`], it gives back at once what it freed. The cost, pages
//! faulted in again by the next large piece of work, falls on large work only: a
//! read of one document of a few megabytes stays below the threshold.

use std::cell::Cell;

/// Bodies handled by one piece of work from which it is large.
pub const LARGE_BYTES: usize = 8 * 1024 * 1024;

thread_local! {
    static HANDLED: Cell<usize> = const { Cell::new(0) };
}

/// Counts a body of `bytes` this thread read, parsed, loaded or wrote.
pub fn handled(bytes: usize) {
    HANDLED.with(|handled| handled.set(handled.get().saturating_add(bytes)));
}

/// At the end of a piece of work: when this thread handled [`LARGE_BYTES`] of
/// bodies or more since its last, what it freed goes back to the system now.
pub fn settle() {
    if HANDLED.with(|handled| handled.replace(0)) >= LARGE_BYTES {
        // SAFETY: mi_collect trims the calling thread's heap and the shared arenas
        // of memory already freed; it touches nothing in use.
        unsafe { libmimalloc_sys::mi_collect(true) }
    }
}
