//! Values made once per key, with no lock held while one is made: callers for one key wait for
//! the first caller's making and share its value; callers for other keys do not wait.
use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use async_lock::OnceCell;

pub(super) struct OncePerKey<K, V> {
    // Locked only to find or drop a cell, never across an await.
    cells: Mutex<HashMap<K, Arc<OnceCell<V>>>>,
}

impl<K: Eq + Hash + Clone, V: Clone> OncePerKey<K, V> {
    pub(super) fn new() -> Self {
        OncePerKey {
            cells: Mutex::new(HashMap::new()),
        }
    }

    /// The value for `key`, made by `make` unless made before or being made. A failed (or
    /// cancelled) making leaves the key unmade: the next waiter, or a later caller, tries again.
    pub(super) async fn get_or_try_make<E, F>(
        &self,
        key: &K,
        make: impl FnOnce() -> F,
    ) -> Result<V, E>
    where
        F: Future<Output = Result<V, E>>,
    {
        let cell = self.lock().entry(key.clone()).or_default().clone();
        let made = cell.get_or_try_init(make).await.cloned();
        if made.is_err() {
            // Forget the cell when nobody else holds it (the map's and ours are the only two):
            // keys that cannot be made (a stranger with no public key) leave nothing behind.
            let mut cells = self.lock();
            if Arc::strong_count(&cell) == 2
                && cells.get(key).is_some_and(|c| Arc::ptr_eq(c, &cell))
            {
                cells.remove(key);
            }
        }
        made
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Arc<OnceCell<V>>>> {
        // A poisoned map is still a valid map: no invariant spans a panic here.
        self.cells.lock().unwrap_or_else(|p| p.into_inner())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use crate::runtime::{block_on, sleep, timeout};
    use futures_lite::future::zip;

    /// Two keys are made at the same time: each making waits for the other to start, which
    /// would never happen if makings were serialised (one client-wide lock, as before).
    #[test]
    fn different_keys_are_made_in_parallel() {
        let once = OncePerKey::<&str, u32>::new();
        let barrier = async_lock::Barrier::new(2);
        let make = |v| {
            let barrier = &barrier;
            move || async move {
                barrier.wait().await;
                Ok::<_, ()>(v)
            }
        };
        let both = zip(
            once.get_or_try_make(&"a", make(1)),
            once.get_or_try_make(&"b", make(2)),
        );
        let (a, b) = block_on(timeout(Duration::from_secs(5), both)).expect("serialised");
        assert_eq!((a, b), (Ok(1), Ok(2)));
    }

    /// Four callers for one key at once: one making, one value for all (two different shared keys for
    /// one peer would leave values encrypted with a key the peer never gets).
    #[test]
    fn one_key_is_made_once_for_concurrent_callers() {
        let once = OncePerKey::<&str, u32>::new();
        let makings = AtomicUsize::new(0);
        let call = || {
            once.get_or_try_make(&"peer", || async {
                let n = makings.fetch_add(1, Ordering::SeqCst);
                sleep(Duration::from_millis(50)).await;
                Ok::<_, ()>(100 + n as u32)
            })
        };
        let ((a, b), (c, d)) = block_on(zip(zip(call(), call()), zip(call(), call())));
        let values = [a, b, c, d];
        assert_eq!(values, [Ok(100); 4]);
        assert_eq!(makings.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_failed_making_is_tried_again_and_leaves_nothing_behind() {
        let once = OncePerKey::<&str, u32>::new();
        let failed = block_on(once.get_or_try_make(&"x", || async { Err::<u32, _>("no key") }));
        assert_eq!(failed, Err("no key"));
        assert_eq!(once.len(), 0);
        let made = block_on(once.get_or_try_make(&"x", || async { Ok::<_, &str>(7) }));
        assert_eq!(made, Ok(7));
        assert_eq!(once.len(), 1);
    }
}
