//! Owned tasks. A [`TaskSet`] belongs to the thing whose work it holds (a daemon, a session, a
//! relay): dropping the set cancels every task still in it, so nothing outlives its owner, and
//! [`TaskSet::spawn_within`] gives a task a deadline of its own.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use super::Task;

/// Tasks that end when their owner does.
#[derive(Default)]
pub struct TaskSet {
    // Locked only to push or reap, never across an await.
    tasks: Mutex<Vec<Task<()>>>,
}

impl TaskSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `fut` until it ends or the set is dropped.
    pub fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        let task = super::spawn(fut);
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }

    /// As [`spawn`](Self::spawn), and cancelled after `limit` if still running.
    pub fn spawn_within(&self, limit: Duration, fut: impl Future<Output = ()> + Send + 'static) {
        self.spawn(async move {
            let _ = super::timeout(limit, fut).await;
        });
    }

    /// Tasks still running.
    pub fn len(&self) -> usize {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.retain(|t| !t.is_finished());
        tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[test]
    fn dropping_the_set_cancels_its_tasks_and_deadlines_end_them() {
        crate::runtime::block_on(async {
            let ran_on = Arc::new(AtomicBool::new(false));
            let set = TaskSet::new();
            let flag = ran_on.clone();
            set.spawn(async move {
                crate::runtime::sleep(Duration::from_millis(200)).await;
                flag.store(true, Ordering::SeqCst);
            });
            set.spawn_within(Duration::from_millis(20), futures_lite::future::pending());
            assert_eq!(set.len(), 2);
            crate::runtime::sleep(Duration::from_millis(60)).await;
            assert_eq!(set.len(), 1, "the task past its deadline is gone");
            drop(set);
            crate::runtime::sleep(Duration::from_millis(300)).await;
            assert!(
                !ran_on.load(Ordering::SeqCst),
                "a dropped set's task ran on"
            );
        });
    }
}
