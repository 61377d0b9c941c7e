//! `pool-reuse` (stage 2) shows the pool keeps its threads: a second burst reuses them.

use std::time::Duration;

use super::support::{idle_baseline, missing, missing_replies, serial_budget, tally};
use super::OutcomeBuilder;
use crate::outcome::{CheckId, Outcome};
use crate::params::CheckParams;
use crate::probe::Pids;
use crate::procfs::ThreadSampler;
use crate::sut::{LaunchSpec, Launcher};
use crate::timeline::Timeline;

pub(super) fn pool_reuse(
    launcher: &dyn Launcher,
    base: &LaunchSpec,
    p: &CheckParams,
    key: i32,
) -> Outcome {
    let w = p.workers as usize;
    let n = 2 * w;
    let d = p.delay.as_secs_f64();
    let r = OutcomeBuilder::new(
        CheckId::PoolReuse,
        format!("two bursts of {n} requests, one after the other (TIMESERVER_WORKERS={w}, TIMESERVER_DELAY={d}), noting which threads were alive"),
    );
    let expected =
        "the second burst is served by the same threads as the first (at most 1 new thread)";
    let mut running = or_return!(r.start(expected, launcher, base, p, key, p.delay));
    let sampler = ThreadSampler::start(running.sut.processes(), Duration::from_millis(5));
    let _ = idle_baseline(&sampler);
    let mut pids = Pids::new();
    let mut sets = Vec::new();
    for _ in 0..2 {
        let (pending, got) =
            or_return!(r.burst_collect(expected, &running, &mut pids, n, serial_budget(n, d, p)));
        r.record(
            &pending,
            &got,
            &[],
            Some(&sampler.snapshot()),
            Timeline::waves_of(n, w, d),
        );
        let (served, _) = tally(&got);
        if served < n {
            let exit = running.sut.poll_exit();
            return r.fail_as(
                missing(&got, exit),
                expected,
                missing_replies(served, n, exit),
                "every request must be answered",
                Some(running.sut.as_ref()),
            );
        }
        sampler.wait_samples(2, Duration::from_secs(1));
        sets.push(sampler.snapshot().distinct);
        std::thread::sleep(Duration::from_millis(50));
    }
    let fresh = sets[1].difference(&sets[0]).count();
    let observed = format!(
        "{} distinct threads alive up to the end of the first burst, {fresh} new ones in the second",
        sets[0].len()
    );
    if fresh <= 1 {
        return r.pass(expected, observed);
    }
    r.fail(
        expected,
        observed,
        "create the pool once, before the receive loop, and keep it for the server's life; do not recreate it or its workers per request (e.g. no maxtasksperchild=1)",
        Some(running.sut.as_ref()),
    )
}
