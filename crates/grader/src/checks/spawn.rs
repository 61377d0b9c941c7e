//! `spawn` (stage 1) shows each request gets a new thread: the live threads rise, and renew.

use std::collections::BTreeSet;
use std::time::Duration;

use super::support::{idle_baseline, missing, missing_replies, serial_bound, serial_budget, tally};
use super::OutcomeBuilder;
use crate::outcome::{CheckId, Outcome};
use crate::params::CheckParams;
use crate::probe::Pids;
use crate::procfs::ThreadSampler;
use crate::sut::{LaunchSpec, Launcher};
use crate::symptom::Symptom;
use crate::timeline::Timeline;

pub(super) fn spawn(
    launcher: &dyn Launcher,
    base: &LaunchSpec,
    p: &CheckParams,
    key: i32,
) -> Outcome {
    let n = 2 * p.workers as usize + 2;
    let d = p.delay.as_secs_f64();
    let need = (3 * n).div_ceil(4);
    let r = OutcomeBuilder::new(
        CheckId::Spawn,
        format!("two bursts of {n} concurrent requests (TIMESERVER_DELAY={d}), counting the server's live threads in /proc"),
    );
    let expected = format!(
        "live threads rise by at least {need} under {n} concurrent requests, and the second burst is served by at least {need} new threads"
    );
    let mut running = or_return!(r.start(&expected, launcher, base, p, key, p.delay));
    let sampler = ThreadSampler::start(running.sut.processes(), Duration::from_millis(5));
    let baseline = idle_baseline(&sampler);
    let mut pids = Pids::new();
    let mut seen_before: BTreeSet<_> = sampler.snapshot().distinct;
    let mut rises = Vec::new();
    let mut fresh = Vec::new();
    // The latest reply of either burst.
    let mut last = Duration::ZERO;
    for _ in 0..2 {
        sampler.reset();
        let (pending, got) =
            or_return!(r.burst_collect(&expected, &running, &mut pids, n, serial_budget(n, d, p)));
        sampler.wait_samples(2, Duration::from_secs(1));
        let seen = sampler.snapshot();
        // A thread per request: one wave of all n.
        r.record(
            &pending,
            &got,
            &[],
            Some(&seen),
            Timeline::waves_of(n, n, d),
        );
        let (served, lat) = tally(&got);
        if served < n {
            let exit = running.sut.poll_exit();
            return r.fail_as(
                missing(&got, exit),
                &expected,
                missing_replies(served, n, exit),
                "every request must be answered",
                Some(running.sut.as_ref()),
            );
        }
        last = last.max(lat.last().copied().unwrap_or_default());
        rises.push(seen.peak.saturating_sub(baseline));
        fresh.push(seen.distinct.difference(&seen_before).count());
        seen_before.extend(seen.distinct);
    }
    let mut observed = format!(
        "{baseline} thread(s) when idle; under load the count rose by {} then {}; {} then {} new threads appeared",
        rises[0], rises[1], fresh[0], fresh[1]
    );
    let rose = rises.iter().all(|x| *x >= need);
    if rose && fresh[1] >= need {
        return r.pass(expected, observed);
    }
    let server = Some(running.sut.as_ref());
    if rose {
        return r.fail(
            expected,
            observed,
            "the second burst reused threads: stage 1 must start a new threading.Thread for every request (a pool belongs to stage 2)",
            server,
        );
    }
    // Threads that never overlap: either each is done at once (no delay slept), or the
    // requests were served one after another; the reply times tell which.
    observed.push_str(&format!(
        "; every reply came within {:.2} s",
        last.as_secs_f64()
    ));
    if last.as_secs_f64() < 0.9 * d {
        return r.diagnosed(Symptom::RepliesBeforeDelay, expected, observed, server);
    }
    if last.as_secs_f64() > serial_bound(n, d) {
        return r.diagnosed(Symptom::RepliesTooLate, expected, observed, server);
    }
    r.fail(
        expected,
        observed,
        "start a new threading.Thread(target=..., args=(pid,)) for every request, and do the work (including the delay) in it",
        server,
    )
}
