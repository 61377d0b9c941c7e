//! `no-theft` shows the server never takes the replies that wait in the queue for clients.
//!
//! Three replies are left in the queue, then a quiet window follows in which nothing may be
//! received: there is no request or stop to take, only the replies. The queue's own counters
//! tell whether the server took one anyway, even if it put it back (a server that receives
//! every type and re-sends what is not a request passes the late readers, but spins on the
//! replies): the message count dips below the replies waiting, or `msg_rtime` (the last
//! receive, to the second) moves; the window is longer than a second for that. Then late
//! readers fetch the replies.

use std::time::{Duration, Instant};

use super::support::ended;
use super::OutcomeBuilder;
use crate::outcome::{CheckId, Outcome};
use crate::params::CheckParams;
use crate::probe::{self, Pids};
use crate::sut::{LaunchSpec, Launcher};
use sysv_mq::protocol;
use sysv_mq::Wait;

pub(super) fn no_theft(
    launcher: &dyn Launcher,
    base: &LaunchSpec,
    p: &CheckParams,
    key: i32,
) -> Outcome {
    let k = 3;
    let r = OutcomeBuilder::new(
        CheckId::NoTheft,
        format!("{k} clients sent requests but started reading only after the replies were sent"),
    );
    let expected = "the replies wait in the queue until their clients read them";
    let mut running = or_return!(r.start(expected, launcher, base, p, key, Duration::ZERO));
    let mut pids = Pids::new();
    let me = std::process::id() as i32;
    let chosen: Vec<i64> = (0..k).map(|_| pids.take()).collect();
    // One at a time, so that no other defect (a race between concurrent requests) can
    // hide or fake a theft: each reply must sit in the queue before the next request.
    for pid in &chosen {
        if let Err(e) = running.queue.send(
            protocol::REQUEST_TYPE,
            &protocol::request_body(*pid),
            Wait::NoWait,
        ) {
            return r.fail(
                expected,
                format!("sending failed: {e}"),
                "keep the queue open while serving",
                Some(running.sut.as_ref()),
            );
        }
        let deadline = Instant::now() + p.start_timeout;
        while Instant::now() < deadline {
            match running.queue.stat() {
                // The server sent something since our request: its reply.
                Ok(s) if s.last_send_pid != me => break,
                Ok(_) => std::thread::sleep(Duration::from_millis(2)),
                Err(_) => break,
            }
        }
    }
    // The quiet window: every message in the queue is a reply; nothing may be received.
    let watched = watch_quiet_queue(&running.queue, QUIET_WINDOW);
    let mut got = 0;
    for pid in &chosen {
        let mut w = probe::start_waiter(running.queue, *pid);
        if w.wait_until(Instant::now() + Duration::from_millis(700))
            .reply()
            .is_some()
        {
            got += 1;
        }
    }
    if got == k && watched.untouched() {
        return r.pass(
            expected,
            format!(
                "nothing was received from the queue in a {:.1} s quiet window, and all {k} late readers got their replies",
                QUIET_WINDOW.as_secs_f64()
            ),
        );
    }
    let exit = running.sut.poll_exit();
    let mut observed = if got == k {
        format!("all {k} late readers got their replies, but")
    } else {
        format!("only {got} of {k} late readers got a reply, and")
    };
    observed.push_str(&watched.describe(QUIET_WINDOW));
    observed.push_str(&ended(exit));
    r.fail(
        expected,
        observed,
        "the server must receive only requests and stops: use mq.receive(type=-2) (or type=1 and type=2 separately); type=0 also takes replies meant for clients",
        Some(running.sut.as_ref()),
    )
}

/// How long the queue is watched while only replies wait in it: more than the one second
/// `msg_rtime` counts in, so a receive always shows.
const QUIET_WINDOW: Duration = Duration::from_millis(1200);

/// What the queue showed during the quiet window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Watched {
    /// Messages at the start (the replies).
    start_count: u64,
    /// The fewest messages seen.
    lowest_count: u64,
    /// Whether the last-receive time moved: a message was taken.
    received: bool,
}

impl Watched {
    fn untouched(&self) -> bool {
        !self.received && self.lowest_count >= self.start_count
    }

    /// " the server took messages from the queue while only replies waited in it (...)"
    fn describe(&self, window: Duration) -> String {
        if self.untouched() {
            return format!(
                " nothing was received from the queue in the {:.1} s quiet window",
                window.as_secs_f64()
            );
        }
        let mut signs = Vec::new();
        if self.lowest_count < self.start_count {
            signs.push(format!(
                "its message count fell from {} to {}",
                self.start_count, self.lowest_count
            ));
        }
        if self.received {
            signs.push("its last-receive time moved".to_owned());
        }
        format!(
            " during a {:.1} s window in which only replies waited in the queue, the server took messages from it ({}): it receives replies meant for clients, even if it puts them back",
            window.as_secs_f64(),
            signs.join(", ")
        )
    }
}

/// Samples the queue's counters every millisecond for `window`.
fn watch_quiet_queue(queue: &sysv_mq::MessageQueue, window: Duration) -> Watched {
    let first = queue.stat().ok();
    let start_count = first.map_or(0, |s| s.messages);
    let start_rtime = first.map_or(0, |s| s.last_receive_time);
    let mut watched = Watched {
        start_count,
        lowest_count: start_count,
        received: false,
    };
    let end = Instant::now() + window;
    while Instant::now() < end {
        if let Ok(s) = queue.stat() {
            watched.lowest_count = watched.lowest_count.min(s.messages);
            watched.received |= s.last_receive_time != start_rtime;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    watched
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_left_alone_is_untouched_and_a_taken_reply_is_seen() {
        let q = sysv_mq::test_support::scratch();
        for i in 0..3 {
            q.0.send(100 + i, b"reply", Wait::NoWait).unwrap();
        }
        let quiet = watch_quiet_queue(&q.0, Duration::from_millis(1100));
        assert!(quiet.untouched(), "{quiet:?}");
        // A thief that takes a reply and puts it back, over and over.
        let queue = q.0;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s2 = stop.clone();
        let thief = std::thread::spawn(move || {
            while !s2.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(m) = queue.receive(sysv_mq::Selector::Any, Wait::NoWait) {
                    let _ = queue.send(m.mtype, &m.body, Wait::NoWait);
                }
            }
        });
        let seen = watch_quiet_queue(&q.0, Duration::from_millis(1100));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        thief.join().unwrap();
        assert!(!seen.untouched(), "{seen:?}");
        assert!(seen.describe(QUIET_WINDOW).contains("took messages"));
    }
}
