//! The reference time server: inline, thread-per-request and pool modes.
//!
//! The server owns one System V queue (created with mode `0o666` so that clients of other
//! users can write to it). It receives only types 1 (requests) and 2 (stop), with
//! [`Selector::AtMost(2)`](sysv_mq::Selector::AtMost), so it never takes a reply meant for a
//! client, and every queued request comes before a queued stop. Each request is answered with
//! [`protocol::now_text`](sysv_mq::protocol::now_text) under type `pid + 3`:
//!
//! - [`Mode::Inline`]: the single-threaded server of Session 2, replying from the receiving
//!   thread (the baseline);
//! - [`Mode::Spawn`]: the calling thread receives and starts a new thread per request; all are
//!   joined when the server stops;
//! - [`Mode::Pool`]: `workers` threads started once, each of which blocks in `msgrcv` on the
//!   queue itself and replies to what it took. There is no dispatcher: the kernel's queue *is*
//!   the pool's task queue.
//!
//! # Layout
//!
//! | file | owns |
//! |---|---|
//! | `mod.rs` | [`Server`]: open the queue, [`run`](Server::run), remove it; [`ServerSummary`] |
//! | `config.rs` | [`Mode`] and [`ServerConfig`] |
//! | `error.rs` | [`ServerError`] |
//! | `stop.rs` | [`StopHandle`] and [`StopOnSignals`]: asking a running server to stop |
//! | `receiving.rs` | inline and spawn modes: the calling thread receives, a dispatcher replies |
//! | `pool.rs` | pool mode: the workers that each receive and reply, and how they all stop |
//! | `reply.rs` | one reply (the current time to `pid + 3`) and the counts of replies |
//!
//! # Why the pool has no dispatcher
//!
//! A receiving thread that hands each pid to a worker (through a channel or a
//! `Mutex`+`Condvar` queue) costs a second wake-up per request: the kernel wakes the
//! receiver, which wakes a worker. Measured with 8 clients and no work delay, that handoff
//! made the pool slower than the single-threaded server (about 0.9 task switches per request
//! against 0.4). When every idle worker waits in `msgrcv` itself, `msgsnd` hands a request
//! straight to one of them (Linux gives a message directly to a waiting receiver): one
//! wake-up per request, and the worker that wakes is the one that replies, after the work
//! delay. It is still a bounded pool: exactly `workers` serving threads for the server's life,
//! so at most `workers` requests are in progress at once, and the same threads serve every
//! burst. The hot path allocates nothing of its own: the reply text is formatted once per
//! second per worker, and the only allocations are the small message buffers of
//! [`sysv_mq`].
//!
//! # Stopping
//!
//! A type-2 message, or [`StopHandle::request_stop`] (which the signal thread of
//! [`StopOnSignals`] calls on SIGINT/SIGTERM), stops the server; it then finishes every request
//! it already accepted (taken off the queue), removes the queue and returns a [`ServerSummary`].
//! There is a single stop path: a signal sets a flag and sends a stop message to the queue,
//! which wakes a receiver; the flag makes the stop win even while requests keep arriving (with
//! `AtMost(2)` a steady stream of requests would otherwise always pass before it). Requests
//! queued before a stop message are still served, because `AtMost(2)` hands them out first.
//!
//! In a pool, the worker that takes a stop message marks the server stopping and puts one
//! empty type-2 message on the queue for each other worker still running (without blocking,
//! retrying while the queue is full); every worker finishes the request it holds, then either
//! sees the mark or takes one of those stops, and exits. The calling thread joins them all and
//! removes the queue. A queue removed under the server wakes every blocked worker with
//! [`MqError::Removed`]; they all exit and [`Server::run`] returns [`ServerError::Removed`].
//! Malformed messages taken by a worker are passed to the calling thread over a channel, so
//! the `on_malformed` callback always runs on the thread that called [`Server::run`].

mod config;
mod error;
mod pool;
mod receiving;
mod reply;
mod stop;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use sysv_mq::protocol::Malformed;
use sysv_mq::{MessageQueue, MqError};

pub use config::{Mode, ServerConfig};
pub use error::ServerError;
pub use stop::{StopHandle, StopOnSignals};

/// Why the server stopped accepting requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopCause {
    /// A stop message (type 2) was received.
    StopMessage,
    /// [`StopHandle::request_stop`] was called (for example by a signal).
    Requested,
}

/// What a server run did: the summary [`Server::run`] returns once the queue is removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSummary {
    /// Requests answered.
    pub served: u64,
    /// Messages skipped as malformed.
    pub malformed: u64,
    /// Replies that could not be sent (other than because the queue was removed).
    pub failed_replies: u64,
    /// Why the server stopped.
    pub cause: StopCause,
}

/// A server whose queue is open, ready to [`run`](Server::run).
#[derive(Debug)]
pub struct Server {
    config: ServerConfig,
    queue: MessageQueue,
    existed: bool,
    stop: Arc<AtomicBool>,
}

impl Server {
    /// Creates (or opens) the queue of `config.key` with mode `0o666`.
    pub fn open(config: ServerConfig) -> Result<Self, ServerError> {
        if config.mode == Mode::Pool && config.workers == 0 {
            return Err(ServerError::Config(
                "a pool needs at least one worker".into(),
            ));
        }
        let key = config.key;
        let (queue, existed) = match MessageQueue::create_exclusive(key, 0o666) {
            Ok(q) => (q, false),
            Err(MqError::AlreadyExists { .. }) => (
                MessageQueue::create(key, 0o666)
                    .map_err(|source| ServerError::Open { key, source })?,
                true,
            ),
            Err(source) => return Err(ServerError::Open { key, source }),
        };
        Ok(Self {
            config,
            queue,
            existed,
            stop: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Whether the queue already existed before [`open`](Self::open) (a stale queue, or another
    /// server on the same key).
    pub fn existed(&self) -> bool {
        self.existed
    }

    /// The server's queue.
    pub fn queue(&self) -> MessageQueue {
        self.queue
    }

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// A handle that stops the server from another thread.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            queue: self.queue,
            stop: Arc::clone(&self.stop),
        }
    }

    /// Serves until stopped, then finishes the accepted requests and removes the queue.
    /// `on_malformed` is told about every skipped message (its type and the reason); it runs
    /// on the calling thread in every mode.
    pub fn run(
        self,
        on_malformed: impl FnMut(i64, &Malformed),
    ) -> Result<ServerSummary, ServerError> {
        let outcome = match self.config.mode {
            Mode::Pool => self.serve_pool(on_malformed),
            Mode::Inline | Mode::Spawn => self.serve_receiving(on_malformed),
        };
        self.finish(outcome)
    }

    /// Why a stop message stops the server: the flag of request_stop() tells a signal's.
    fn stop_cause(&self) -> StopCause {
        if self.stop.load(Ordering::SeqCst) {
            StopCause::Requested
        } else {
            StopCause::StopMessage
        }
    }

    /// Removes the queue (on failure too: it may already be gone) and builds the summary.
    fn finish(self, served: Served) -> Result<ServerSummary, ServerError> {
        let key = self.config.key;
        let Served {
            outcome,
            finished,
            malformed,
        } = served;
        let (cause, (served, failed_replies, removed)) = match (outcome, finished) {
            (Ok(cause), Ok(f)) => (cause, f),
            (Err(e), _) | (_, Err(e)) => {
                // Leave no queue behind on a failure either (it may already be gone).
                let _ = self.queue.remove();
                return Err(e);
            }
        };
        if removed {
            return Err(ServerError::Removed { key });
        }
        match self.queue.remove() {
            Ok(()) => {}
            Err(MqError::Removed) => return Err(ServerError::Removed { key }),
            Err(source) => return Err(ServerError::Remove { key, source }),
        }
        Ok(ServerSummary {
            served,
            malformed,
            failed_replies,
            cause,
        })
    }
}

/// What serving did, before the queue is removed.
struct Served {
    /// Why the serving stopped, or the failure that stopped it.
    outcome: Result<StopCause, ServerError>,
    /// The replies once every accepted request was finished: (sent, failed, removed seen).
    finished: Result<(u64, u64, bool), ServerError>,
    /// Messages skipped as malformed.
    malformed: u64,
}

#[cfg(test)]
pub(super) mod tests {
    use std::time::Duration;

    use sysv_mq::protocol;
    use sysv_mq::{Selector, Wait};

    use super::*;

    /// A queue no key names, removed at the end of the test.
    pub(super) fn private_config(mode: Mode) -> (ServerConfig, MessageQueue) {
        let q = MessageQueue::create_private(0o600).expect("private queue");
        (
            ServerConfig {
                key: 0,
                mode,
                workers: 2,
                delay: Duration::ZERO,
            },
            q,
        )
    }

    /// A server on `queue` without opening it by key.
    pub(super) fn server_on(config: ServerConfig, queue: MessageQueue) -> Server {
        Server {
            config,
            queue,
            existed: false,
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    #[test]
    fn every_mode_answers_skips_malformed_and_stops() {
        for mode in [Mode::Inline, Mode::Spawn, Mode::Pool] {
            let (config, q) = private_config(mode);
            q.send(1, b"abc", Wait::Block).unwrap();
            q.send(1, b"100", Wait::Block).unwrap();
            q.send(1, b"101", Wait::Block).unwrap();
            q.send(2, b"", Wait::Block).unwrap();
            // Queued after the stop, but AtMost(2) takes every request first.
            q.send(1, b"102", Wait::Block).unwrap();
            let mut seen = Vec::new();
            let server = server_on(config, q);
            // Replies are queued, then the queue is removed: read them from a watcher that
            // runs while the server does.
            let watcher = std::thread::spawn(move || {
                (103..=105)
                    .map(|t| q.receive(Selector::Exact(t), Wait::Block).map(|m| m.body))
                    .collect::<Vec<_>>()
            });
            let summary = server.run(|t, m| seen.push((t, m.clone()))).unwrap();
            assert_eq!(summary.served, 3, "{mode}");
            assert_eq!(summary.malformed, 1, "{mode}");
            assert_eq!(summary.cause, StopCause::StopMessage);
            assert_eq!(seen.len(), 1);
            assert!(matches!(seen[0].1, Malformed::NotANumber { .. }));
            let replies = watcher.join().unwrap();
            // Each reply was read before the removal, or the queue was removed first: never a
            // wrong text.
            for body in replies.into_iter().flatten() {
                let text = String::from_utf8(body).unwrap();
                assert!(protocol::is_current_datetime(&text, 5), "{text}");
            }
            assert!(matches!(q.stat(), Err(MqError::Removed)));
        }
    }

    #[test]
    fn removal_under_the_server_is_an_error() {
        for mode in [Mode::Spawn, Mode::Pool] {
            let (mut config, q) = private_config(mode);
            config.workers = 4;
            let server = server_on(config, q);
            let t = std::thread::spawn(move || server.run(|_, _| {}));
            std::thread::sleep(Duration::from_millis(50));
            q.remove().unwrap();
            // Every pool worker must exit, or this join never returns.
            let got = t.join().unwrap();
            assert!(
                matches!(got, Err(ServerError::Removed { .. })),
                "{mode}: {got:?}"
            );
        }
    }

    #[test]
    fn zero_workers_is_a_config_error() {
        let config = ServerConfig {
            workers: 0,
            ..ServerConfig::default()
        };
        assert!(matches!(Server::open(config), Err(ServerError::Config(_))));
    }
}
