//! One reply, the current time sent to `pid + 3` after the work delay ([`reply`]), with the
//! per-thread [`Clock`] that formats it and the [`Tally`] of replies sent.

use std::time::Duration;

use sysv_mq::protocol;
use sysv_mq::{MessageQueue, MqError};

/// The outcome of one reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sent {
    Ok,
    Failed,
    Removed,
}

/// The reply text of the current second, formatted once per second per replying thread:
/// [`protocol::now_text`] only changes when the wall-clock second does, and formatting it is
/// the largest user-space cost of a reply.
#[derive(Debug, Default)]
pub(super) struct Clock {
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
pub(super) fn reply(queue: &MessageQueue, clock: &mut Clock, pid: i64, delay: Duration) -> Sent {
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
pub(super) struct Tally {
    pub(super) sent: u64,
    pub(super) failed: u64,
    pub(super) removed: bool,
}

impl Tally {
    pub(super) fn add(&mut self, s: Sent) {
        match s {
            Sent::Ok => self.sent += 1,
            Sent::Failed => self.failed += 1,
            Sent::Removed => self.removed = true,
        }
    }
    pub(super) fn merge(&mut self, o: Tally) {
        self.sent += o.sent;
        self.failed += o.failed;
        self.removed |= o.removed;
    }
}
