//! Async mechanism: executor, logger, signals, timeouts. No protocol knowledge.
//!
//! Every applet runs its top-level future with [`block_on`]; tasks are spawned on one global
//! executor. The binary's processes drive it from the thread in [`block_on`] alone
//! ([`one_thread`]): with a second executor thread, async-executor wakes the other thread for
//! every task it schedules, and that hand-over cost more than half of the round-trip time a
//! tunnel adds. Blocking calls go to helper threads ([`unblock`]). Library users (the in-process
//! tests) keep one extra executor thread, so tasks they spawn run while their thread blocks.

pub mod atomic;
mod blocking;
pub mod cli;
pub mod dial;
pub mod fs;
pub mod mem;
mod tasks;
pub mod time;
mod when_woken;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use async_executor::Executor;

pub use async_executor::Task;
pub use blocking::unblock;
pub use tasks::TaskSet;
pub use time::{parse_duration, sleep, timeout, unix_millis, utc_timestamp, Backoff, Elapsed};

static ONE_THREAD: AtomicBool = AtomicBool::new(false);

/// Runs every task on the thread in [`block_on`], with no extra executor thread. Call before
/// the first [`spawn`] or [`block_on`] (the binary's `main` does).
pub fn one_thread() {
    ONE_THREAD.store(true, Ordering::Relaxed);
}

fn executor() -> &'static Executor<'static> {
    static EX: OnceLock<Executor<'static>> = OnceLock::new();
    EX.get_or_init(|| {
        if ONE_THREAD.load(Ordering::Relaxed) {
            return Executor::new();
        }
        // One extra thread runs spawned tasks even while the calling thread blocks in a call
        // that is not async.
        std::thread::Builder::new()
            .name("noports-exec".into())
            // Like the main thread's: deeply nested async state machines (TLS inside a
            // session inside a server) need more than the 2 MiB default for spawned threads.
            // Only touched pages cost memory.
            .stack_size(8 << 20)
            .spawn(|| loop {
                async_io::block_on(executor().run(futures_lite::future::pending::<()>()));
            })
            .ok();
        Executor::new()
    })
}

/// Spawn a task on the global executor. Dropping the returned [`Task`] cancels it; keep it, or
/// give it to the [`TaskSet`] of the thing that owns the work.
pub fn spawn<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> Task<T> {
    // Boxed: the executor's task code is then instantiated once per output type, not once per
    // future (kilobytes of the router binary's budget); one indirect call per poll.
    let fut: std::pin::Pin<Box<dyn Future<Output = T> + Send>> = Box::pin(fut);
    executor().spawn(fut)
}

/// Run `fut` to completion on the current thread while also driving spawned tasks. `fut` is
/// polled only when one of its own wakers fired ([`when_woken`]), not on every task's.
pub fn block_on<T>(fut: impl Future<Output = T>) -> T {
    async_io::block_on(executor().run(when_woken::WhenWoken::new(fut)))
}

/// Initialise env_logger once. `verbose` raises the default level from `warn` to `info`;
/// `RUST_LOG` always wins.
pub fn init_logging(verbose: bool) {
    init_logging_level(if verbose { "info" } else { "warn" });
}

/// Logging at `default` unless RUST_LOG says otherwise; the first call wins.
pub fn init_logging_level(default: &str) {
    let env = env_logger::Env::default().default_filter_or(default);
    let _ = env_logger::Builder::from_env(env)
        .format_timestamp_millis()
        .try_init();
}

/// Resolves when SIGINT or SIGTERM arrives.
///
/// Callers race this future against their main work (`or`), which polls it whenever the main
/// work is polled, and a poll of the signal stream tries a read of its socket first: one
/// wasted syscall per wake-up of the process. The stream is therefore polled only after its
/// own waker fired.
pub async fn shutdown_signal() {
    use async_signal::{Signal, Signals};
    use futures_lite::StreamExt;
    match Signals::new([Signal::Int, Signal::Term]) {
        Ok(mut s) => {
            let _ = when_woken::WhenWoken::new(s.next()).await;
        }
        Err(e) => {
            log::warn!("cannot install signal handlers: {e}");
            futures_lite::future::pending::<()>().await
        }
    }
}

/// SIGHUP deliveries, for services that reload their configuration on it.
pub struct Hangups(Option<async_signal::Signals>);

impl Hangups {
    /// Starts catching SIGHUP (it no longer terminates the process).
    pub fn new() -> Hangups {
        match async_signal::Signals::new([async_signal::Signal::Hup]) {
            Ok(s) => Hangups(Some(s)),
            Err(e) => {
                log::warn!("cannot install a SIGHUP handler: {e}");
                Hangups(None)
            }
        }
    }

    /// Resolves at the next SIGHUP (never, when no handler could be installed).
    pub async fn next(&mut self) {
        use futures_lite::StreamExt;
        match self.0.as_mut() {
            Some(s) => {
                let _ = s.next().await;
            }
            None => futures_lite::future::pending::<()>().await,
        }
    }
}

impl Default for Hangups {
    fn default() -> Self {
        Hangups::new()
    }
}
