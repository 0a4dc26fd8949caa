//! Deadlines and retry pacing.
use std::future::Future;
use std::time::Duration;

use async_io::Timer;
use futures_lite::FutureExt;

/// A wait ran past its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

impl std::fmt::Display for Elapsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "timed out")
    }
}
impl std::error::Error for Elapsed {}

pub async fn sleep(d: Duration) {
    Timer::after(d).await;
}

/// Run `fut` with a deadline.
pub async fn timeout<T>(d: Duration, fut: impl Future<Output = T>) -> Result<T, Elapsed> {
    let deadline = async {
        Timer::after(d).await;
        Err(Elapsed)
    };
    async { Ok(fut.await) }.or(deadline).await
}

/// Exponential backoff with full jitter, reset after a healthy run.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            base,
            max,
            attempt: 0,
        }
    }

    /// The delay before the next attempt: uniformly random in [cap/2, cap], cap doubling each time.
    pub fn next_delay(&mut self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(16)).unwrap_or(u32::MAX);
        let cap = self.base.saturating_mul(factor).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let mut r = [0u8; 4];
        let _ = getrandom::getrandom(&mut r);
        let frac = u32::from_le_bytes(r) as f64 / u32::MAX as f64;
        let half = cap / 2;
        half + half.mul_f64(frac)
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}
