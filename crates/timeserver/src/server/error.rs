//! [`ServerError`]: the typed failures of the server.

use sysv_mq::MqError;

/// Typed failures of the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration cannot run (for example zero workers).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The queue could not be created or opened.
    #[error("cannot create message queue {key}: {source}")]
    Open {
        /// The key.
        key: i32,
        /// The queue error.
        #[source]
        source: MqError,
    },
    /// The queue was removed while the server was running.
    #[error("message queue {key} was removed while the server was running (by `ipcrm` or another program); stopping")]
    Removed {
        /// The key.
        key: i32,
    },
    /// Receiving from the queue failed.
    #[error("receiving from message queue {key} failed: {source}")]
    Receive {
        /// The key.
        key: i32,
        /// The queue error.
        #[source]
        source: MqError,
    },
    /// Removing the queue at the end failed.
    #[error("removing message queue {key} failed: {source}")]
    Remove {
        /// The key.
        key: i32,
        /// The queue error.
        #[source]
        source: MqError,
    },
    /// A thread could not be started.
    #[error("cannot start a thread: {0}")]
    Thread(#[source] std::io::Error),
    /// Installing the signal handlers failed.
    #[error("cannot install the SIGINT/SIGTERM handlers: {0}")]
    Signals(#[source] std::io::Error),
    /// A worker thread panicked.
    #[error("a worker thread panicked")]
    WorkerPanicked,
}
