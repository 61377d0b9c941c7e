//! The one-shot result slot shared by both pools: a [`Slot`] that a waiter reads (inside
//! [`AsyncResult`](crate::AsyncResult) and [`Future`](crate::Future)) and the [`Promise`] a
//! worker runs the task through and completes it with.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::{panic_error, PoolError};

/// What a slot holds: nothing yet, the outcome, or nothing any more (taken).
pub(crate) enum State<T> {
    Pending,
    Done(Result<T, PoolError>),
    Taken,
}

pub(crate) struct Slot<T> {
    state: Mutex<State<T>>,
    done: Condvar,
    /// `as_completed` watchers: the index to send when this slot completes.
    watchers: Mutex<Vec<(mpsc::Sender<usize>, usize)>>,
}

impl<T> Slot<T> {
    fn new() -> Arc<Self> {
        Arc::new(Slot {
            state: Mutex::new(State::Pending),
            done: Condvar::new(),
            watchers: Mutex::new(Vec::new()),
        })
    }

    fn state(&self) -> MutexGuard<'_, State<T>> {
        // The lock is never held while user code runs, so poisoning cannot leave the
        // state half-written; recover the guard.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn is_done(&self) -> bool {
        !matches!(*self.state(), State::Pending)
    }

    /// Waits until the slot is done or `timeout` passes; returns the guard.
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> (MutexGuard<'_, State<T>>, bool) {
        let mut state = self.state();
        let deadline = timeout.map(|t| Instant::now() + t);
        while matches!(*state, State::Pending) {
            match deadline {
                None => state = self.done.wait(state).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return (state, false);
                    }
                    state = self
                        .done
                        .wait_timeout(state, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
        (state, true)
    }

    pub(crate) fn take(&self, timeout: Option<Duration>) -> Result<T, PoolError> {
        let (mut state, done) = self.wait(timeout);
        if !done {
            return Err(PoolError::Timeout(timeout.unwrap_or_default()));
        }
        match std::mem::replace(&mut *state, State::Taken) {
            State::Done(result) => result,
            State::Taken => Err(PoolError::Taken),
            State::Pending => unreachable!("wait returned done on a pending slot"),
        }
    }

    /// Registers an `as_completed` watcher, or notifies it at once if already done.
    pub(crate) fn watch(&self, tx: mpsc::Sender<usize>, index: usize) {
        let state = self.state();
        if matches!(*state, State::Pending) {
            // Registered under the state lock, so `complete` cannot slip in between.
            self.watchers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((tx, index));
        } else {
            let _ = tx.send(index);
        }
    }
}

/// The writing end of a [`Slot`]: runs the task, stores its outcome, wakes waiters.
/// Dropped without completing (the job never ran), it stores [`PoolError::Cancelled`].
pub(crate) struct Promise<T>(Option<Arc<Slot<T>>>);

impl<T> Promise<T> {
    pub(crate) fn run<F: FnOnce() -> T>(mut self, f: F) {
        let result = catch_unwind(AssertUnwindSafe(f)).map_err(panic_error);
        self.complete(result);
    }

    fn complete(&mut self, result: Result<T, PoolError>) {
        let Some(slot) = self.0.take() else { return };
        let mut state = slot.state();
        *state = State::Done(result);
        let watchers =
            std::mem::take(&mut *slot.watchers.lock().unwrap_or_else(|e| e.into_inner()));
        drop(state);
        slot.done.notify_all();
        for (tx, index) in watchers {
            let _ = tx.send(index);
        }
    }
}

impl<T> Drop for Promise<T> {
    fn drop(&mut self) {
        self.complete(Err(PoolError::Cancelled));
    }
}

pub(crate) fn slot_pair<T>() -> (Promise<T>, Arc<Slot<T>>) {
    let slot = Slot::new();
    (Promise(Some(slot.clone())), slot)
}
