//! What the worker says when the instance dies: wasm32 panics and failed allocations abort the
//! instance (they cannot be caught), so the panic hook leaves the message in
//! `globalThis.sciscorePanic` and the allocator notes a refused size ([`take_alloc_failure`]).

use js_sys::Reflect;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use wasm_bindgen::prelude::*;

#[wasm_bindgen(start)]
fn start() {
    std::panic::set_hook(Box::new(|info| {
        console_error_panic_hook::hook(info);
        // The trap that follows carries no message: leave it where the worker looks.
        let p = info.payload();
        let what = (p.downcast_ref::<&str>().copied())
            .or_else(|| p.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("panic");
        let at = info.location().map_or(String::new(), |l| {
            format!(" (at {}:{})", l.file(), l.line())
        });
        let _ = Reflect::set(
            &js_sys::global(),
            &"sciscorePanic".into(),
            &format!("{what}{at}").into(),
        );
    }));
}

/// The size of the last allocation the wasm heap refused (0: none since the last look). Rust
/// aborts on a failed allocation with a bare `unreachable` trap; this tells the worker that the
/// trap was the instance running out of memory, and how much it asked for.
static FAILED_ALLOC: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, noting the allocations it cannot serve in [`FAILED_ALLOC`].
struct NoteFailures;

// SAFETY: every call is forwarded unchanged to `System`; only a null result is noted.
// Not inlined: LLVM would otherwise copy dlmalloc into every allocation site (a bigger wasm).
unsafe impl GlobalAlloc for NoteFailures {
    #[inline(never)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_failure(System.alloc(layout), layout.size())
    }
    #[inline(never)]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_failure(System.alloc_zeroed(layout), layout.size())
    }
    #[inline(never)]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_failure(System.realloc(ptr, layout, new_size), new_size)
    }
    #[inline(never)]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

fn note_failure(p: *mut u8, size: usize) -> *mut u8 {
    if p.is_null() {
        FAILED_ALLOC.store(size, Ordering::Relaxed);
    }
    p
}

#[global_allocator]
static ALLOCATOR: NoteFailures = NoteFailures;

/// Bytes of the last allocation the wasm heap refused since the previous call (0: none), for the
/// worker's message after a trap; reading it touches no allocator, so it works on a dead instance.
#[wasm_bindgen(js_name = takeAllocFailure)]
pub fn take_alloc_failure() -> f64 {
    FAILED_ALLOC.swap(0, Ordering::Relaxed) as f64
}
