//! Inline and spawn modes: the calling thread receives every message
//! ([`Server::serve_receiving`]) and hands each request to a [`Dispatcher`], which replies
//! inline or starts a thread per request.

use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use sysv_mq::protocol::{self, Incoming, Malformed};
use sysv_mq::{MessageQueue, MqError, Selector, Wait};

use super::reply::{reply, Clock, Sent, Tally};
use super::{Mode, Served, Server, ServerConfig, ServerError, StopCause};

impl Server {
    /// Inline and spawn modes: this thread receives every message.
    pub(super) fn serve_receiving(&self, mut on_malformed: impl FnMut(i64, &Malformed)) -> Served {
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
