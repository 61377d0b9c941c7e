//! [`PoolError`]: why a pool operation gave no value, shared by [`Pool`](crate::Pool) and
//! [`Executor`](crate::Executor), and the conversion of a task's panic into one.

use std::any::Any;
use std::time::Duration;

/// Why a pool operation gave no value.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// A pool needs at least one worker.
    #[error("a pool needs at least one worker")]
    NoWorkers,
    /// The worker threads could not be started.
    #[error("cannot start the pool's workers: {0}")]
    Start(String),
    /// The result was not ready within the timeout. The task goes on running.
    #[error("no result within {0:?}")]
    Timeout(Duration),
    /// The task panicked; the message is the panic's payload when it is text.
    #[error("the task panicked: {0}")]
    Panicked(String),
    /// The result was already taken out by an earlier successful `get`/`result`.
    #[error("the result was already taken")]
    Taken,
    /// The task was dropped before it ran (its pool went away first).
    #[error("the task was dropped before it ran")]
    Cancelled,
}

/// Turns a panic payload into [`PoolError::Panicked`] with its message.
pub(crate) fn panic_error(payload: Box<dyn Any + Send>) -> PoolError {
    let message = if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a non-text panic payload)".to_string()
    };
    PoolError::Panicked(message)
}
