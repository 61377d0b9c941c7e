//! The reference time server: inline, thread-per-request and pool modes.
//!
//! The server owns one System V queue (created with mode `0o666` so that clients of other
//! users can write to it). It receives only types 1 (requests) and 2 (stop), with
//! [`Selector::AtMost(2)`](crate::mq::Selector::AtMost), so it never takes a reply meant for a
//! client, and every queued request comes before a queued stop. Each request is answered with
//! [`protocol::now_text`] under type `pid + 3`:
//!
//! - [`Mode::Inline`]: the single-threaded server of Session 2, replying from the receiving
//!   thread (the baseline);
//! - [`Mode::Spawn`]: a new thread per request, all joined when the server stops;
//! - [`Mode::Pool`]: a fixed set of worker threads fed by an in-process channel; the only thing
//!   that crosses it is the client's pid (an `i64`), so a request costs no allocation there.
//!
//! Stopping: a type-2 message, or [`Server::request_stop`] (which the signal thread of
//! [`StopOnSignals`] calls on SIGINT/SIGTERM), ends the receive loop; the server then finishes
//! every request it already accepted, removes the queue and returns a [`Report`]. There is a
//! single stop path: a signal sends the stop message to the queue, which wakes the receiver;
//! a flag set at the same time makes the stop win even while requests keep arriving (with
//! `AtMost(2)` a steady stream of requests would otherwise always pass before it).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::mq::{MessageQueue, MqError, Selector, Wait};
use crate::protocol::{self, Incoming, Malformed};

/// How the server answers requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// One thread: receive, (wait the delay), reply, then receive again.
    Inline,
    /// A new thread for every request.
    Spawn,
    /// A fixed pool of worker threads fed by a channel.
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
    /// `on_malformed` is told about every skipped message (its type and the reason).
    pub fn run(self, mut on_malformed: impl FnMut(i64, &Malformed)) -> Result<Report, ServerError> {
        let key = self.config.key;
        let mut dispatcher = Dispatcher::new(&self.config, self.queue)?;
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
                    outcome = Ok(if self.stop.load(Ordering::Relaxed) {
                        StopCause::Requested
                    } else {
                        StopCause::StopMessage
                    });
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

/// The work queue of the pool: pids waiting for a worker, fed by the receiving thread.
///
/// A `Mutex<VecDeque>` and a `Condvar`, with one refinement for the hot path: the feeder
/// wakes a worker (a `futex` system call) only when one is asleep and not already being woken,
/// so while every worker is busy a request costs a lock and a push, nothing more.
#[derive(Debug, Default)]
struct WorkQueue {
    state: Mutex<WorkState>,
    ready: Condvar,
}

#[derive(Debug, Default)]
struct WorkState {
    pids: VecDeque<i64>,
    closed: bool,
    /// Workers waiting on `ready` that no notification has been sent for yet (a spurious
    /// wake-up may leave this one too high, which only costs an unneeded notification).
    sleepers: usize,
}

impl WorkQueue {
    fn push(&self, pid: i64) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.pids.push_back(pid);
        let wake = s.sleepers > 0;
        if wake {
            s.sleepers -= 1;
        }
        drop(s);
        if wake {
            self.ready.notify_one();
        }
    }

    fn close(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
        self.ready.notify_all();
    }

    /// The next pid, or `None` once the queue is closed and empty.
    fn pop(&self) -> Option<i64> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(pid) = s.pids.pop_front() {
                return Some(pid);
            }
            if s.closed {
                return None;
            }
            s.sleepers += 1;
            s = self.ready.wait(s).unwrap_or_else(|p| p.into_inner());
        }
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
    Pool {
        work: Arc<WorkQueue>,
        workers: Vec<JoinHandle<Tally>>,
    },
}

impl Dispatcher {
    fn new(config: &ServerConfig, queue: MessageQueue) -> Result<Self, ServerError> {
        let delay = config.delay;
        Ok(match config.mode {
            Mode::Inline => Dispatcher::Inline {
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
            Mode::Pool => {
                let work = Arc::new(WorkQueue::default());
                let mut workers = Vec::with_capacity(config.workers);
                for i in 0..config.workers {
                    let feed = Arc::clone(&work);
                    let spawned = std::thread::Builder::new()
                        .name(format!("worker-{i}"))
                        .spawn(move || {
                            let mut tally = Tally::default();
                            let mut clock = Clock::default();
                            while let Some(pid) = feed.pop() {
                                tally.add(reply(&queue, &mut clock, pid, delay));
                            }
                            tally
                        });
                    match spawned {
                        Ok(h) => workers.push(h),
                        Err(e) => {
                            work.close();
                            for h in workers {
                                let _ = h.join();
                            }
                            return Err(ServerError::Thread(e));
                        }
                    }
                }
                Dispatcher::Pool { work, workers }
            }
        })
    }

    fn dispatch(&mut self, pid: i64) -> Result<(), ServerError> {
        match self {
            Dispatcher::Inline {
                queue,
                delay,
                tally,
                clock,
            } => tally.add(reply(queue, clock, pid, *delay)),
            Dispatcher::Pool { work, .. } => work.push(pid),
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
            Dispatcher::Pool { work, workers } => {
                work.close();
                let mut tally = Tally::default();
                let mut panicked = false;
                for h in workers {
                    match h.join() {
                        Ok(t) => tally.merge(t),
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
        let (config, q) = private_config(Mode::Pool);
        let server = server_on(config, q);
        let stop = server.stop_handle();
        let t = std::thread::spawn(move || server.run(|_, _| {}));
        stop.request_stop();
        let report = t.join().unwrap().unwrap();
        assert_eq!(report.served, 0);
        assert!(matches!(q.stat(), Err(MqError::Removed)));
    }

    #[test]
    fn removal_under_the_server_is_an_error() {
        let (config, q) = private_config(Mode::Spawn);
        let server = server_on(config, q);
        let t = std::thread::spawn(move || server.run(|_, _| {}));
        std::thread::sleep(Duration::from_millis(50));
        q.remove().unwrap();
        let got = t.join().unwrap();
        assert!(matches!(got, Err(ServerError::Removed { .. })), "{got:?}");
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
