//! Pool mode: `workers` threads started once, each receiving from the queue and replying
//! itself ([`Server::serve_pool`]); what they share ([`WorkerPool`]) and how one stop message
//! stops them all ([`WorkerPool::stop_others`]).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use sysv_mq::protocol::{self, Incoming, Malformed};
use sysv_mq::{MessageQueue, MqError, Selector, Wait};

use super::reply::{reply, Clock, Tally};
use super::{Served, Server, ServerError, StopCause};

impl Server {
    /// Pool mode: `workers` threads that each receive from the queue and reply themselves.
    pub(super) fn serve_pool(&self, mut on_malformed: impl FnMut(i64, &Malformed)) -> Served {
        let pool = Arc::new(WorkerPool {
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
}

/// What the pool's workers share.
#[derive(Debug)]
struct WorkerPool {
    queue: MessageQueue,
    key: i32,
    delay: Duration,
    /// Set by [`StopHandle::request_stop`](super::StopHandle::request_stop).
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

/// Counts a worker out of [`WorkerPool::running`] however it ends (a panic included).
struct RunningGuard<'a>(&'a AtomicUsize);

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl WorkerPool {
    fn halted(&self) -> bool {
        self.stopping.load(Ordering::SeqCst) || self.requested.load(Ordering::SeqCst)
    }

    /// One worker: receive a request from the queue, reply to it, until stopped.
    fn work(&self, malformed: &mpsc::Sender<(i64, Malformed)>) -> WorkerEnd {
        let _running = RunningGuard(&self.running);
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

#[cfg(test)]
mod tests {
    use sysv_mq::protocol;
    use sysv_mq::{MqError, Wait};

    use super::super::tests::{private_config, server_on};
    use crate::server::{Mode, StopCause};

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
        let summary = server.run(|_, _| {}).unwrap();
        assert_eq!(summary.served, 10);
        assert_eq!(summary.cause, StopCause::StopMessage);
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
        let summary = server_on(config, q)
            .run(|t, m| seen.push((t, m.clone(), std::thread::current().id())))
            .unwrap();
        assert_eq!(summary.malformed, 3);
        assert_eq!(seen.len(), 3);
        assert!(seen.iter().all(|(t, _, id)| *t == 1 && *id == caller));
        // The type-7 message was never taken (AtMost(2)); it went with the queue.
        assert!(matches!(q.stat(), Err(MqError::Removed)));
    }
}
