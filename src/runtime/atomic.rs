//! `AtomicU64` for every target. 32-bit MIPS (OpenWrt's mips_24kc and mipsel_24kc) has no
//! 64-bit atomics; there a lock-protected counter with the same methods stands in. Byte
//! counters need 64 bits: a tunnel moves more than 4 GiB in a long session.

#[cfg(target_has_atomic = "64")]
pub use std::sync::atomic::AtomicU64;

#[cfg(not(target_has_atomic = "64"))]
pub use fallback::AtomicU64;

#[cfg(not(target_has_atomic = "64"))]
mod fallback {
    use std::sync::atomic::Ordering;
    use std::sync::Mutex;

    /// The subset of `std::sync::atomic::AtomicU64` the crate uses. Every operation takes
    /// the lock, which is at least as strong as any `Ordering`.
    #[derive(Debug, Default)]
    pub struct AtomicU64(Mutex<u64>);

    impl AtomicU64 {
        pub const fn new(v: u64) -> Self {
            AtomicU64(Mutex::new(v))
        }

        fn with<R>(&self, f: impl FnOnce(&mut u64) -> R) -> R {
            // A poisoned counter still holds a valid number.
            let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut g)
        }

        pub fn load(&self, _: Ordering) -> u64 {
            self.with(|v| *v)
        }

        pub fn store(&self, n: u64, _: Ordering) {
            self.with(|v| *v = n)
        }

        pub fn fetch_add(&self, n: u64, _: Ordering) -> u64 {
            self.with(|v| std::mem::replace(v, v.wrapping_add(n)))
        }

        pub fn fetch_sub(&self, n: u64, _: Ordering) -> u64 {
            self.with(|v| std::mem::replace(v, v.wrapping_sub(n)))
        }

        pub fn swap(&self, n: u64, _: Ordering) -> u64 {
            self.with(|v| std::mem::replace(v, n))
        }
    }
}
