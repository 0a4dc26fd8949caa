//! A future that is polled only after one of its own wakers fired.
//!
//! async-executor polls the future given to `block_on` on every one of its wake-ups, whatever
//! task the wake-up was for, and async-io's sockets try their read or write again on every
//! poll. Each wake-up of a process therefore cost one failed syscall for every socket the main
//! future waits on (npt's relay socket, for one, on every message of every stream).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

pub(super) struct WhenWoken<F> {
    fut: Pin<Box<F>>,
    flag: Arc<Flag>,
    /// Handed to `fut`: sets the flag and wakes whoever polls us.
    waker: Waker,
}

struct Flag {
    woken: AtomicBool,
    outer: Mutex<Option<Waker>>,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        let outer = self.outer.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(w) = outer.as_ref() {
            w.wake_by_ref();
        }
    }
}

impl<F: Future> WhenWoken<F> {
    pub(super) fn new(fut: F) -> Self {
        let flag = Arc::new(Flag {
            // The first poll always reaches `fut`.
            woken: AtomicBool::new(true),
            outer: Mutex::new(None),
        });
        WhenWoken {
            fut: Box::pin(fut),
            waker: Waker::from(flag.clone()),
            flag,
        }
    }
}

impl<F: Future> Future for WhenWoken<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        {
            let mut outer = this.flag.outer.lock().unwrap_or_else(PoisonError::into_inner);
            if !outer.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *outer = Some(cx.waker().clone());
            }
        }
        // A wake-up that lands while `fut` is being polled sets the flag again and wakes the
        // outer waker, so it is not lost.
        if !this.flag.woken.swap(false, Ordering::SeqCst) {
            return Poll::Pending;
        }
        this.fut.as_mut().poll(&mut Context::from_waker(&this.waker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Counts its polls; ready after `ready_after` polls, waking itself each time.
    struct Counting {
        polls: Arc<AtomicUsize>,
        ready_after: usize,
        wake_self: bool,
    }

    impl Future for Counting {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            let n = self.polls.fetch_add(1, Ordering::SeqCst) + 1;
            if n >= self.ready_after {
                return Poll::Ready(());
            }
            if self.wake_self {
                cx.waker().wake_by_ref();
            }
            Poll::Pending
        }
    }

    #[test]
    fn polls_the_inner_future_only_after_its_waker_fired() {
        let polls = Arc::new(AtomicUsize::new(0));
        let mut f = WhenWoken::new(Counting {
            polls: polls.clone(),
            ready_after: 3,
            wake_self: false,
        });
        let outer = Waker::noop();
        let mut cx = Context::from_waker(outer);
        assert!(Pin::new(&mut f).poll(&mut cx).is_pending());
        // Spurious polls (another task's wake-up) do not reach it.
        for _ in 0..5 {
            assert!(Pin::new(&mut f).poll(&mut cx).is_pending());
        }
        assert_eq!(polls.load(Ordering::SeqCst), 1);
        // Its own wake-up does.
        f.waker.wake_by_ref();
        assert!(Pin::new(&mut f).poll(&mut cx).is_pending());
        assert_eq!(polls.load(Ordering::SeqCst), 2);
        f.waker.wake_by_ref();
        assert!(Pin::new(&mut f).poll(&mut cx).is_ready());
    }

    #[test]
    fn a_wake_during_the_poll_is_kept() {
        let polls = Arc::new(AtomicUsize::new(0));
        let mut f = WhenWoken::new(Counting {
            polls: polls.clone(),
            ready_after: 4,
            wake_self: true,
        });
        let outer = Waker::noop();
        let mut cx = Context::from_waker(outer);
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
