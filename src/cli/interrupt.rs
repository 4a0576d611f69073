//! SIGTERM and SIGINT as a request to stop (`batch`): the handler only records the signal; a
//! second one ends the process at once, as without the handler.

use std::sync::atomic::{AtomicI32, Ordering};

/// The signal received, 0 before any.
pub static STOP: AtomicI32 = AtomicI32::new(0);

#[cfg(unix)]
mod sys {
    pub const SIGINT: i32 = 2;
    pub const SIGTERM: i32 = 15;
    /// `SIG_DFL`.
    pub const DEFAULT: usize = 0;
    extern "C" {
        // POSIX signal(2); `sighandler_t` is a pointer-sized function address.
        pub fn signal(signum: i32, handler: usize) -> usize;
    }
}

#[cfg(unix)]
extern "C" fn on_signal(signum: i32) {
    // Only async-signal-safe work here: an atomic store and signal(2).
    STOP.store(signum, Ordering::Relaxed);
    // SAFETY: signal(2) with SIG_DFL is async-signal-safe and takes any valid signal number.
    unsafe {
        sys::signal(signum, sys::DEFAULT);
    }
}

/// Installs the handler for SIGTERM and SIGINT (where there are signals).
pub fn catch() {
    #[cfg(unix)]
    for s in [sys::SIGINT, sys::SIGTERM] {
        let handler: extern "C" fn(i32) = on_signal;
        // SAFETY: `on_signal` only stores an atomic and restores the default action.
        unsafe {
            sys::signal(s, handler as usize);
        }
    }
}
