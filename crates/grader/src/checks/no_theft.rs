//! `no-theft` shows the server never takes the replies that wait in the queue for clients.

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
    // Give a thief every chance to take them.
    std::thread::sleep(Duration::from_millis(300));
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
    if got == k {
        return r.pass(expected, format!("all {k} late readers got their replies"));
    }
    let exit = running.sut.poll_exit();
    let mut observed = format!("only {got} of {k} late readers got a reply");
    observed.push_str(&ended(exit));
    r.fail(
        expected,
        observed,
        "the server must receive only requests and stops: use mq.receive(type=-2) (or type=1 and type=2 separately); type=0 also takes replies meant for clients",
        Some(running.sut.as_ref()),
    )
}
