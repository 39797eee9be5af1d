//! Memory given back after large work.
//!
//! The server's allocator (mimalloc 3) returns freed memory to the system a second
//! after it was freed (its `purge_delay`), so that memory freed and taken again at
//! once is not faulted in again. Large bodies, parsed, loaded, stored and answered
//! within that second, held their peaks side by side: the RSS rose by about twice
//! a large request's live peak, 30–50 MB over the live heap (BENCHMARKS.md, twelfth
//! section). Each thread counts the copies of bodies it makes since it last
//! settled (an HTTP worker, which interleaves requests, counts each request's
//! body and answer instead); at the end of a piece of work (a request on a worker,
//! a job on a database thread, a write group), if they came to [`LARGE_BYTES`], it
//! purges now: its own heap's free pages, and what every thread freed and the
//! allocator still holds. The cost, pages faulted in again by the next large piece
//! of work, falls on large work: the read of one document (one copy, released) stays
//! below the threshold up to 16 MiB; the deposit of one of 8 MiB or more (read,
//! parsed, stored, answered) pays it.

use std::cell::Cell;

/// Copies of bodies made by one piece of work from which it is large.
pub const LARGE_BYTES: usize = 16 * 1024 * 1024;

thread_local! {
    static HANDLED: Cell<usize> = const { Cell::new(0) };
}

/// Counts a copy of a body of `bytes` this thread made: read, parsed, loaded,
/// released or stored.
pub fn handled(bytes: usize) {
    HANDLED.with(|handled| handled.set(handled.get().saturating_add(bytes)));
}

/// At the end of a request on an HTTP worker, which interleaves requests (this
/// thread's count mixes theirs, and is dropped): purges when the request's own
/// copies came to [`LARGE_BYTES`], its body read and parsed, and its answer.
pub fn settle_request(body_bytes: usize, answer_bytes: usize) {
    HANDLED.with(|handled| handled.set(0));
    if body_bytes.saturating_mul(2).saturating_add(answer_bytes) >= LARGE_BYTES {
        purge();
    }
}

/// At the end of a piece of work on a thread that does one at a time (a job on a
/// database thread, a write group): when this thread handled [`LARGE_BYTES`] of
/// bodies or more since it last settled, freed memory goes back to the system now.
pub fn settle() {
    if HANDLED.with(|handled| handled.replace(0)) >= LARGE_BYTES {
        purge();
    }
}

/// Freed memory back to the system now.
fn purge() {
    // SAFETY: mi_collect purges the calling thread's heap and the shared arenas of
    // memory already freed; it touches nothing in use, and is a no-op where mimalloc
    // is not the global allocator (the library's own tests).
    unsafe { libmimalloc_sys::mi_collect(true) }
}
