//! The one way this crate takes a `std::sync::Mutex`.
//!
//! A poisoned mutex means a thread panicked while holding it. Every mutex here
//! guards plain bookkeeping (maps, counters, buffers) that stays usable after
//! such a panic, and a server that stops answering because one request
//! panicked is worse than one that carries on with the data as it was left.
//! So a lock is always taken, poisoned or not, and callers never branch on
//! poisoning.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, recovering the guard if an earlier holder panicked.
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_mutex_still_hands_out_its_data() {
        let m = std::sync::Arc::new(Mutex::new(1));
        let held = std::sync::Arc::clone(&m);
        let _ = std::thread::spawn(move || {
            let _g = lock(&held);
            panic!("poison the mutex");
        })
        .join();
        assert!(m.is_poisoned());
        *lock(&m) += 1;
        assert_eq!(*lock(&m), 2);
    }
}
