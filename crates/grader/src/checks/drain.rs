//! `drain` shows requests taken before the stop message still get their replies.

use std::time::{Duration, Instant};

use super::support::{ended, faulted, tally};
use super::OutcomeBuilder;
use crate::outcome::{CheckId, Outcome};
use crate::params::CheckParams;
use crate::probe::{self, Got, Pids};
use crate::procfs::ThreadSampler;
use crate::sut::{LaunchSpec, Launcher};
use crate::symptom::Symptom;
use sysv_mq::protocol;
use sysv_mq::Wait;

pub(super) fn drain(
    launcher: &dyn Launcher,
    base: &LaunchSpec,
    p: &CheckParams,
    key: i32,
) -> Outcome {
    let k = (p.workers as usize).max(2);
    let d = p.delay.as_secs_f64();
    let r = OutcomeBuilder::new(
        CheckId::Drain,
        format!("{k} requests to a server with TIMESERVER_DELAY={d}; once it had taken them all from the queue, the stop message"),
    );
    let expected = "every request taken before the stop still gets its reply";
    let mut running = or_return!(r.start(expected, launcher, base, p, key, p.delay));
    let mut pids = Pids::new();
    // Thread counts for the timeline only: every 10 ms is enough to draw them.
    let sampler = ThreadSampler::start(running.sut.processes(), Duration::from_millis(10));
    let mut pending = or_return!(r.burst(expected, &running, &mut pids, k));
    // Wait until the server has taken every request (the queue holds no request).
    let deadline = Instant::now() + p.start_timeout;
    while Instant::now() < deadline {
        match running.queue.stat() {
            Ok(s) if s.messages == 0 => break,
            Ok(_) => std::thread::sleep(Duration::from_millis(2)),
            Err(_) => break,
        }
    }
    let began = Instant::now();
    if let Err(e) = running.queue.send(protocol::STOP_TYPE, b"", Wait::NoWait) {
        return r.fail(
            expected,
            format!("could not send the stop message: {e}"),
            "keep the queue open until the stop message arrives",
            Some(running.sut.as_ref()),
        );
    }
    let got = probe::collect(
        &mut pending,
        began + Duration::from_secs_f64(k as f64 * d) + p.stop_timeout,
    );
    if let Some(o) = faulted(&r, &got) {
        return o;
    }
    r.record(&pending, &got, &[], Some(&sampler.stop()), Vec::new());
    let (served, _) = tally(&got);
    if served == k {
        return r.pass(
            expected,
            format!("all {k} replies arrived after the stop message"),
        );
    }
    let removed = got.iter().any(|g| matches!(g, Got::Removed));
    let mut observed = format!("only {served} of {k} accepted requests got a reply");
    if removed {
        observed.push_str("; the queue was removed while they waited");
    }
    observed.push_str(&ended(running.sut.poll_exit()));
    // Replies lost at the stop are this check's own defect, unless they were lost the way
    // `routing` loses them (the stage's trace decides).
    r.fail_as(
        Some(Symptom::MissingReplies),
        expected,
        observed,
        "on the stop message, stop receiving but let the workers finish before removing the queue and exiting: thread.join() for each thread, executor.shutdown(wait=True), or pool.close() then pool.join() for a multiprocessing pool (leaving a `with Pool(...)` block calls terminate(), which drops the requests in flight)",
        Some(running.sut.as_ref()),
    )
}
