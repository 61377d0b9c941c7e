//! The reference time server: inline, thread-per-request and pool modes.
//!
//! The server owns one System V queue (created with mode `0o666` so that clients of other
//! users can write to it). It receives only types 1 (requests) and 2 (stop), with
//! [`Selector::AtMost(2)`](sysv_mq::Selector::AtMost), so it never takes a reply meant for a
//! client, and every queued request comes before a queued stop. Each request is answered with
//! [`protocol::now_text`] under type `pid + 3`:
//!
//! - [`Mode::Inline`]: the single-threaded server of Session 2, replying from the receiving
//!   thread (the baseline);
//! - [`Mode::Spawn`]: the calling thread receives and starts a new thread per request; all are
//!   joined when the server stops;
//! - [`Mode::Pool`]: `workers` threads started once, each of which blocks in `msgrcv` on the
//!   queue itself and replies to what it took. There is no dispatcher: the kernel's queue *is*
//!   the pool's task queue.
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
//! [`crate::mq`].
//!
//! # Stopping
//!
//! A type-2 message, or [`StopHandle::request_stop`] (which the signal thread of
//! [`StopOnSignals`] calls on SIGINT/SIGTERM), stops the server; it then finishes every request
//! it already accepted (taken off the queue), removes the queue and returns a [`Report`].
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

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use sysv_mq::protocol::{self, Incoming, Malformed};
use sysv_mq::{MessageQueue, MqError, Selector, Wait};

/// How the server answers requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// One thread: receive, (wait the delay), reply, then receive again.
    Inline,
    /// A new thread for every request.
    Spawn,
    /// A fixed pool of worker threads, each receiving from the queue itself.
    Pool,
}

impl Mode {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Inline => "inline",
            Mode::Spawn => "spawn",
            Mode::Pool => "pool",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What to serve and how.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// The queue key (the handout's is [`protocol::DEFAULT_KEY`]).
    pub key: i32,
    /// How requests are answered.
    pub mode: Mode,
    /// Worker threads in [`Mode::Pool`] (at least 1; ignored by the other modes).
    pub workers: usize,
    /// Work delay before each reply, spent in the thread that replies.
    pub delay: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            key: protocol::DEFAULT_KEY,
            mode: Mode::Pool,
            workers: 4,
            delay: Duration::ZERO,
        }
    }
}

/// Why the server stopped accepting requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopCause {
    /// A stop message (type 2) was received.
    StopMessage,
    /// [`Server::request_stop`] was called (for example by a signal).
    Requested,
}

/// What a server run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Requests answered.
    pub served: u64,
    /// Messages skipped as malformed.
    pub malformed: u64,
    /// Replies that could not be sent (other than because the queue was removed).
    pub failed_replies: u64,
    /// Why the server stopped.
    pub cause: StopCause,
}

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

/// A server whose queue is open, ready to [`run`](Server::run).
#[derive(Debug)]
pub struct Server {
    config: ServerConfig,
    queue: MessageQueue,
    existed: bool,
    stop: Arc<AtomicBool>,
}

/// A handle that asks a running server to stop; cheap to clone and send to other threads.
#[derive(Debug, Clone)]
pub struct StopHandle {
    queue: MessageQueue,
    stop: Arc<AtomicBool>,
}

impl StopHandle {
    /// Asks the server to stop: sets the stop flag and puts a stop message on the queue (without
    /// blocking, retrying while the queue is full) so that a blocked receive wakes up. Returns
    /// quietly if the queue is already gone.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        loop {
            match self.queue.send(protocol::STOP_TYPE, b"", Wait::NoWait) {
                Err(MqError::Full) | Err(MqError::Interrupted) => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                // Sent, or the queue is gone (then the server is stopping anyway).
                _ => return,
            }
        }
    }
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
    pub fn run(self, on_malformed: impl FnMut(i64, &Malformed)) -> Result<Report, ServerError> {
        let outcome = match self.config.mode {
            Mode::Pool => self.serve_pool(on_malformed),
            Mode::Inline | Mode::Spawn => self.serve_receiving(on_malformed),
        };
        self.finish(outcome)
    }

    /// Inline and spawn modes: this thread receives every message.
    fn serve_receiving(&self, mut on_malformed: impl FnMut(i64, &Malformed)) -> Served {
        let key = self.config.key;
        let mut dispatcher = Dispatcher::new(&self.config, self.queue);
        let mut malformed = 0u64;
        let mut outcome = Ok(StopCause::Requested);
        // Requests are at most MAX_REQUEST_LEN bytes; one more byte tells "too long" from
        // "exactly right" and keeps the receive buffer small.
        let limit = protocol::MAX_REQUEST_LEN + 1;
        loop {
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            let msg = match self
                .queue
                .receive_max(Selector::AtMost(2), limit, Wait::Block)
            {
                Ok(m) => m,
                Err(MqError::Interrupted) => continue,
                Err(MqError::Removed) => {
                    outcome = Err(ServerError::Removed { key });
                    break;
                }
                Err(source) => {
                    outcome = Err(ServerError::Receive { key, source });
                    break;
                }
            };
            match protocol::decode(msg.mtype, &msg.body) {
                Incoming::Request { pid } => {
                    if let Err(e) = dispatcher.dispatch(pid) {
                        // Cannot start a thread: stop, but still finish what was accepted.
                        outcome = Err(e);
                        break;
                    }
                }
                Incoming::Stop => {
                    // The stop message of request_stop() carries no mark: the flag tells.
                    outcome = Ok(self.stop_cause());
                    break;
                }
                Incoming::Malformed(reason) => {
                    malformed += 1;
                    on_malformed(msg.mtype, &reason);
                    if matches!(reason, Malformed::StopWithText { .. }) {
                        // Still a stop, as the protocol documents.
                        outcome = Ok(StopCause::StopMessage);
                        break;
                    }
                }
            }
        }
        // Finish what was accepted, whatever the reason for stopping.
        let finished = dispatcher.finish();
        Served {
            outcome,
            finished,
            malformed,
        }
    }

    /// Pool mode: `workers` threads that each receive from the queue and reply themselves.
    fn serve_pool(&self, mut on_malformed: impl FnMut(i64, &Malformed)) -> Served {
        let pool = Arc::new(Pool {
            queue: self.queue,
            key: self.config.key,
            delay: self.config.delay,
            requested: Arc::clone(&self.stop),
            stopping: AtomicBool::new(false),
            running: AtomicUsize::new(0),
        });
        let (report, reports) = mpsc::channel::<(i64, Malformed)>();
        let mut workers = Vec::with_capacity(self.config.workers);
        let mut outcome = Ok(StopCause::Requested);
        for i in 0..self.config.workers {
            let (p, r) = (Arc::clone(&pool), report.clone());
            // Counted before it starts, so that a stop broadcast never misses it.
            pool.running.fetch_add(1, Ordering::SeqCst);
            let spawned = std::thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || p.work(&r));
            match spawned {
                Ok(h) => workers.push(h),
                Err(e) => {
                    pool.running.fetch_sub(1, Ordering::SeqCst);
                    // Stop the workers already started; they finish what they took.
                    pool.stop_others(0);
                    outcome = Err(ServerError::Thread(e));
                    break;
                }
            }
        }
        // The channel ends when the last worker has dropped its sender.
        drop(report);
        let mut malformed = 0u64;
        for (mtype, reason) in reports {
            malformed += 1;
            on_malformed(mtype, &reason);
        }
        let mut tally = Tally::default();
        let mut cause = None;
        let mut failure = None;
        let mut panicked = false;
        for h in workers {
            match h.join() {
                Ok(end) => {
                    tally.merge(end.tally);
                    cause = cause.or(end.cause);
                    if failure.is_none() {
                        failure = end.error;
                    }
                }
                Err(_) => panicked = true,
            }
        }
        if let Ok(c) = &mut outcome {
            // No worker took a stop message: the flag of request_stop() stopped them.
            *c = cause.unwrap_or(StopCause::Requested);
            if let Some(e) = failure {
                outcome = Err(e);
            }
        }
        let finished = if panicked {
            Err(ServerError::WorkerPanicked)
        } else {
            Ok((tally.sent, tally.failed, tally.removed))
        };
        Served {
            outcome,
            finished,
            malformed,
        }
    }

    /// Why a stop message stops the server: the flag of request_stop() tells a signal's.
    fn stop_cause(&self) -> StopCause {
        if self.stop.load(Ordering::SeqCst) {
            StopCause::Requested
        } else {
            StopCause::StopMessage
        }
    }

    /// Removes the queue (on failure too: it may already be gone) and builds the report.
    fn finish(self, served: Served) -> Result<Report, ServerError> {
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
        Ok(Report {
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

/// The outcome of one reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    Ok,
    Failed,
    Removed,
}

/// The reply text of the current second, formatted once per second per replying thread:
/// [`protocol::now_text`] only changes when the wall-clock second does, and formatting it is
/// the largest user-space cost of a reply.
#[derive(Debug, Default)]
struct Clock {
    second: Option<u64>,
    text: String,
}

impl Clock {
    fn now_text(&mut self) -> &str {
        let second = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .ok();
        if second.is_none() || second != self.second {
            self.text = protocol::now_text();
            self.second = second;
        }
        &self.text
    }
}

/// Waits the delay, then sends the current time to `pid`.
fn reply(queue: &MessageQueue, clock: &mut Clock, pid: i64, delay: Duration) -> Sent {
    if !delay.is_zero() {
        std::thread::sleep(delay);
    }
    // decode() only yields pids in 1..=MAX_PID, so the type always exists.
    let Some(mtype) = protocol::reply_type(pid) else {
        return Sent::Failed;
    };
    let text = clock.now_text();
    match queue.send_retrying(mtype, text.as_bytes()) {
        Ok(()) => Sent::Ok,
        Err(MqError::Removed) => Sent::Removed,
        Err(_) => Sent::Failed,
    }
}

/// Counts of replies: (sent, failed, queue removed seen).
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    sent: u64,
    failed: u64,
    removed: bool,
}

impl Tally {
    fn add(&mut self, s: Sent) {
        match s {
            Sent::Ok => self.sent += 1,
            Sent::Failed => self.failed += 1,
            Sent::Removed => self.removed = true,
        }
    }
    fn merge(&mut self, o: Tally) {
        self.sent += o.sent;
        self.failed += o.failed;
        self.removed |= o.removed;
    }
}

/// What the pool's workers share.
#[derive(Debug)]
struct Pool {
    queue: MessageQueue,
    key: i32,
    delay: Duration,
    /// Set by [`StopHandle::request_stop`].
    requested: Arc<AtomicBool>,
    /// Set by the first worker that takes a stop message (or sees the queue gone).
    stopping: AtomicBool,
    /// Workers started and not yet finished.
    running: AtomicUsize,
}

/// How one pool worker ended.
#[derive(Debug, Default)]
struct WorkerEnd {
    tally: Tally,
    /// Set when this worker took a stop message.
    cause: Option<StopCause>,
    /// Set when this worker's receive failed.
    error: Option<ServerError>,
}

/// Counts a worker out of [`Pool::running`] however it ends (a panic included).
struct Running<'a>(&'a AtomicUsize);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Pool {
    fn halted(&self) -> bool {
        self.stopping.load(Ordering::SeqCst) || self.requested.load(Ordering::SeqCst)
    }

    /// One worker: receive a request from the queue, reply to it, until stopped.
    fn work(&self, malformed: &mpsc::Sender<(i64, Malformed)>) -> WorkerEnd {
        let _running = Running(&self.running);
        let mut end = WorkerEnd::default();
        let mut clock = Clock::default();
        // Requests are at most MAX_REQUEST_LEN bytes; one more byte tells "too long" from
        // "exactly right" and keeps the receive buffer small.
        let limit = protocol::MAX_REQUEST_LEN + 1;
        while !self.halted() {
            let msg = match self
                .queue
                .receive_max(Selector::AtMost(2), limit, Wait::Block)
            {
                Ok(m) => m,
                Err(MqError::Interrupted) => continue,
                Err(MqError::Removed) => {
                    // Every blocked worker wakes with the same error; busy ones see the mark.
                    self.stopping.store(true, Ordering::SeqCst);
                    end.error = Some(ServerError::Removed { key: self.key });
                    break;
                }
                Err(source) => {
                    self.stop_others(1);
                    end.error = Some(ServerError::Receive {
                        key: self.key,
                        source,
                    });
                    break;
                }
            };
            match protocol::decode(msg.mtype, &msg.body) {
                Incoming::Request { pid } => {
                    end.tally
                        .add(reply(&self.queue, &mut clock, pid, self.delay));
                }
                Incoming::Stop => {
                    end.cause = Some(self.stop_others(1));
                    break;
                }
                Incoming::Malformed(reason) => {
                    // Still a stop, as the protocol documents.
                    let stop = matches!(reason, Malformed::StopWithText { .. });
                    // The receiver is the thread that joins us: it outlives every sender.
                    let _ = malformed.send((msg.mtype, reason));
                    if stop {
                        self.stop_others(1);
                        end.cause = Some(StopCause::StopMessage);
                        break;
                    }
                }
            }
        }
        end
    }

    /// Marks the pool stopping and, the first time, puts one empty stop message on the queue
    /// for each running worker other than the caller (`own` is 1 when the caller is one of
    /// them), so that every worker blocked in `msgrcv` wakes. Returns why the pool stops.
    fn stop_others(&self, own: usize) -> StopCause {
        let cause = if self.requested.load(Ordering::SeqCst) {
            StopCause::Requested
        } else {
            StopCause::StopMessage
        };
        if self.stopping.swap(true, Ordering::SeqCst) {
            // Another worker already woke the others.
            return cause;
        }
        // A worker that exits on the mark takes no stop message, so one per worker counted
        // now is enough (a leftover stop is removed with the queue).
        let target = self.running.load(Ordering::SeqCst).saturating_sub(own);
        let mut sent = 0;
        while sent < target && self.running.load(Ordering::SeqCst) > own {
            match self.queue.send(protocol::STOP_TYPE, b"", Wait::NoWait) {
                Ok(()) => sent += 1,
                // Full: the messages in it wake the receivers; retry until there is room.
                Err(MqError::Full) | Err(MqError::Interrupted) => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                // Removed (every receiver wakes anyway) or a failure we cannot fix here.
                Err(_) => break,
            }
        }
        cause
    }
}

/// Hands accepted requests to whatever answers them in the configured mode.
enum Dispatcher {
    Inline {
        queue: MessageQueue,
        delay: Duration,
        tally: Tally,
        clock: Clock,
    },
    Spawn {
        queue: MessageQueue,
        delay: Duration,
        threads: Vec<JoinHandle<Sent>>,
        tally: Tally,
        panicked: bool,
    },
}

impl Dispatcher {
    /// The dispatcher of inline or spawn mode (a pool has none: see [`Server::serve_pool`]).
    fn new(config: &ServerConfig, queue: MessageQueue) -> Self {
        let delay = config.delay;
        match config.mode {
            Mode::Inline | Mode::Pool => Dispatcher::Inline {
                queue,
                delay,
                tally: Tally::default(),
                clock: Clock::default(),
            },
            Mode::Spawn => Dispatcher::Spawn {
                queue,
                delay,
                threads: Vec::new(),
                tally: Tally::default(),
                panicked: false,
            },
        }
    }

    fn dispatch(&mut self, pid: i64) -> Result<(), ServerError> {
        match self {
            Dispatcher::Inline {
                queue,
                delay,
                tally,
                clock,
            } => tally.add(reply(queue, clock, pid, *delay)),
            Dispatcher::Spawn {
                queue,
                delay,
                threads,
                tally,
                panicked,
            } => {
                let (q, d) = (*queue, *delay);
                let h = std::thread::Builder::new()
                    .spawn(move || reply(&q, &mut Clock::default(), pid, d))
                    .map_err(ServerError::Thread)?;
                threads.push(h);
                // Reap finished threads now and then so the list stays short.
                if threads.len() >= 64 {
                    let mut i = 0;
                    while i < threads.len() {
                        if threads[i].is_finished() {
                            match threads.swap_remove(i).join() {
                                Ok(s) => tally.add(s),
                                Err(_) => *panicked = true,
                            }
                        } else {
                            i += 1;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Waits for every accepted request; returns (served, failed, queue removed seen).
    fn finish(self) -> Result<(u64, u64, bool), ServerError> {
        let (tally, panicked) = match self {
            Dispatcher::Inline { tally, .. } => (tally, false),
            Dispatcher::Spawn {
                threads,
                mut tally,
                mut panicked,
                ..
            } => {
                for h in threads {
                    match h.join() {
                        Ok(s) => tally.add(s),
                        Err(_) => panicked = true,
                    }
                }
                (tally, panicked)
            }
        };
        if panicked {
            return Err(ServerError::WorkerPanicked);
        }
        Ok((tally.sent, tally.failed, tally.removed))
    }
}

/// A thread that turns SIGINT and SIGTERM into [`StopHandle::request_stop`]. Dropping it
/// unregisters the handlers and joins the thread.
pub struct StopOnSignals {
    handle: signal_hook::iterator::Handle,
    thread: Option<JoinHandle<()>>,
}

impl StopOnSignals {
    /// Installs the handlers and starts the thread.
    pub fn install(stop: StopHandle) -> Result<Self, ServerError> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals =
            signal_hook::iterator::Signals::new([SIGINT, SIGTERM]).map_err(ServerError::Signals)?;
        let handle = signals.handle();
        let thread = std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                if signals.forever().next().is_some() {
                    stop.request_stop();
                }
            })
            .map_err(ServerError::Thread)?;
        Ok(Self {
            handle,
            thread: Some(thread),
        })
    }
}

impl Drop for StopOnSignals {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for StopOnSignals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StopOnSignals").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A queue no key names, removed at the end of the test.
    fn private_config(mode: Mode) -> (ServerConfig, MessageQueue) {
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

    fn server_on(config: ServerConfig, queue: MessageQueue) -> Server {
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
            let report = server.run(|t, m| seen.push((t, m.clone()))).unwrap();
            assert_eq!(report.served, 3, "{mode}");
            assert_eq!(report.malformed, 1, "{mode}");
            assert_eq!(report.cause, StopCause::StopMessage);
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
    fn stop_handle_stops_a_waiting_server() {
        for mode in [Mode::Inline, Mode::Spawn, Mode::Pool] {
            let (mut config, q) = private_config(mode);
            // Eight idle pool workers, all blocked in msgrcv: one stop message must wake all.
            config.workers = 8;
            let server = server_on(config, q);
            let stop = server.stop_handle();
            let t = std::thread::spawn(move || server.run(|_, _| {}));
            stop.request_stop();
            let report = t.join().unwrap().unwrap();
            assert_eq!(report.served, 0, "{mode}");
            assert_eq!(report.cause, StopCause::Requested, "{mode}");
            assert!(matches!(q.stat(), Err(MqError::Removed)), "{mode}");
        }
    }

    #[test]
    fn one_stop_message_stops_every_pool_worker_after_the_queued_requests() {
        let (mut config, q) = private_config(Mode::Pool);
        config.workers = 5;
        for pid in 200..210 {
            q.send(1, &protocol::request_body(pid), Wait::Block)
                .unwrap();
        }
        q.send(2, b"", Wait::Block).unwrap();
        let server = server_on(config, q);
        // The replies stay queued and go with the queue: the count is what matters.
        let report = server.run(|_, _| {}).unwrap();
        assert_eq!(report.served, 10);
        assert_eq!(report.cause, StopCause::StopMessage);
        assert!(matches!(q.stat(), Err(MqError::Removed)));
    }

    #[test]
    fn pool_reports_malformed_messages_on_the_calling_thread() {
        let (mut config, q) = private_config(Mode::Pool);
        config.workers = 3;
        for body in [&b"x"[..], b"", b"-1"] {
            q.send(1, body, Wait::Block).unwrap();
        }
        q.send(7, b"?", Wait::Block).unwrap();
        q.send(2, b"", Wait::Block).unwrap();
        let caller = std::thread::current().id();
        let mut seen = Vec::new();
        let report = server_on(config, q)
            .run(|t, m| seen.push((t, m.clone(), std::thread::current().id())))
            .unwrap();
        assert_eq!(report.malformed, 3);
        assert_eq!(seen.len(), 3);
        assert!(seen.iter().all(|(t, _, id)| *t == 1 && *id == caller));
        // The type-7 message was never taken (AtMost(2)); it went with the queue.
        assert!(matches!(q.stat(), Err(MqError::Removed)));
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
