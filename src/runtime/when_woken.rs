//! A future that is polled only after one of its own wakers fired.
//!
//! async-executor polls the future given to `block_on` on every one of its wake-ups, whatever
//! task the wake-up was for, and async-io's sockets try their read or write again on every
//! poll. Each wake-up of a process therefore cost one failed syscall for every socket the main
//! future waits on (npt's relay socket, for one, on every message of every stream).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use atomic_waker::AtomicWaker;

/// Polls `fut` only after one of the wakers it was given fired (and on the first poll).
pub(super) struct WhenWoken<F> {
    fut: Pin<Box<F>>,
    gate: Gate,
}

impl<F: Future> WhenWoken<F> {
    pub(super) fn new(fut: F) -> Self {
        WhenWoken {
            fut: Box::pin(fut),
            gate: Gate::new(),
        }
    }
}

impl<F: Future> Future for WhenWoken<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        match this.gate.open(cx) {
            Some(waker) => this.fut.as_mut().poll(&mut Context::from_waker(waker)),
            None => Poll::Pending,
        }
    }
}

/// The part that does not depend on the future's type (one copy in the binary).
struct Gate {
    flag: Arc<Flag>,
    /// Handed to the future: sets the flag and wakes whoever polls the gate.
    waker: Waker,
}

struct Flag {
    woken: AtomicBool,
    outer: AtomicWaker,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        self.outer.wake();
    }
}

impl Gate {
    fn new() -> Gate {
        let flag = Arc::new(Flag {
            // The first poll always reaches the future.
            woken: AtomicBool::new(true),
            outer: AtomicWaker::new(),
        });
        Gate {
            waker: Waker::from(flag.clone()),
            flag,
        }
    }

    /// The waker to poll the future with, if it was woken since its last poll. A wake-up that
    /// lands while the future is being polled sets the flag again and wakes `cx`, so it is not
    /// lost.
    fn open(&self, cx: &Context<'_>) -> Option<&Waker> {
        self.flag.outer.register(cx.waker());
        self.flag
            .woken
            .swap(false, Ordering::SeqCst)
            .then_some(&self.waker)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Counts its polls; ready after `ready_after` polls, waking itself each time if asked.
    struct Counting {
        polls: Arc<AtomicUsize>,
        ready_after: usize,
        wake_self: bool,
        /// The waker of its last poll.
        last: Arc<std::sync::Mutex<Option<Waker>>>,
    }

    impl Future for Counting {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            let n = self.polls.fetch_add(1, Ordering::SeqCst) + 1;
            *self.last.lock().unwrap() = Some(cx.waker().clone());
            if n >= self.ready_after {
                return Poll::Ready(());
            }
            if self.wake_self {
                cx.waker().wake_by_ref();
            }
            Poll::Pending
        }
    }

    fn counting(ready_after: usize, wake_self: bool) -> (Counting, Arc<AtomicUsize>) {
        let polls = Arc::new(AtomicUsize::new(0));
        let c = Counting {
            polls: polls.clone(),
            ready_after,
            wake_self,
            last: Arc::default(),
        };
        (c, polls)
    }

    #[test]
    fn polls_the_inner_future_only_after_its_waker_fired() {
        let (c, polls) = counting(3, false);
        let last = c.last.clone();
        let mut f = WhenWoken::new(c);
        let mut cx = Context::from_waker(Waker::noop());
        assert!(Pin::new(&mut f).poll(&mut cx).is_pending());
        // Spurious polls (another task's wake-up) do not reach it.
        for _ in 0..5 {
            assert!(Pin::new(&mut f).poll(&mut cx).is_pending());
        }
        assert_eq!(polls.load(Ordering::SeqCst), 1);
        // Its own wake-up does.
        let inner = last.lock().unwrap().clone().unwrap();
        inner.wake_by_ref();
        assert!(Pin::new(&mut f).poll(&mut cx).is_pending());
        assert_eq!(polls.load(Ordering::SeqCst), 2);
        inner.wake_by_ref();
        assert!(Pin::new(&mut f).poll(&mut cx).is_ready());
    }

    #[test]
    fn a_wake_during_the_poll_is_kept() {
        let (c, polls) = counting(4, true);
        let mut f = WhenWoken::new(c);
        let mut cx = Context::from_waker(Waker::noop());
        let mut n = 0;
        while Pin::new(&mut f).poll(&mut cx).is_pending() {
            n += 1;
            assert!(n < 10, "the self-wake was lost");
        }
        assert_eq!(polls.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn runs_through_block_on() {
        let got = crate::runtime::block_on(async {
            crate::runtime::sleep(std::time::Duration::from_millis(5)).await;
            crate::runtime::spawn(async { 7 }).await
        });
        assert_eq!(got, 7);
    }
}
