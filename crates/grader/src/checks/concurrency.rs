//! `concurrency` shows requests sent at once are served side by side, not one by one.

use std::time::Duration;

use super::support::{missing, missing_replies, serial_bound, serial_budget, tally};
use super::OutcomeBuilder;
use crate::outcome::{CheckId, Outcome};
use crate::params::CheckParams;
use crate::probe::Pids;
use crate::procfs::ThreadSampler;
use crate::sut::{LaunchSpec, Launcher};
use crate::symptom::Symptom;
use crate::timeline::Timeline;

pub(super) fn concurrency(
    launcher: &dyn Launcher,
    base: &LaunchSpec,
    p: &CheckParams,
    key: i32,
) -> Outcome {
    let n = 2 * p.workers as usize + 2;
    let d = p.delay.as_secs_f64();
    let r = OutcomeBuilder::new(
        CheckId::Concurrency,
        format!("{n} clients sent requests at once to a server with TIMESERVER_DELAY={d}"),
    );
    let limit = serial_bound(n, d);
    let expected = format!(
        "all served in well under the {:.1} s that one-after-another service takes (at most {:.2} s)",
        n as f64 * d,
        limit
    );
    let mut running = or_return!(r.start(&expected, launcher, base, p, key, p.delay));
    let mut pids = Pids::new();
    // Thread counts for the timeline only: every 10 ms is enough to draw them.
    let sampler = ThreadSampler::start(running.sut.processes(), Duration::from_millis(10));
    let (pending, got) =
        or_return!(r.burst_collect(&expected, &running, &mut pids, n, serial_budget(n, d, p)));
    // Served side by side: one wave of all n, one delay long.
    r.record(
        &pending,
        &got,
        &[],
        Some(&sampler.stop()),
        Timeline::waves_of(n, n, d),
    );
    let (served, lat) = tally(&got);
    let total = lat.last().copied().unwrap_or_default().as_secs_f64();
    if served == n && total <= limit {
        return r.pass(
            expected,
            format!(
                "all {n} replies within {total:.2} s (first after {:.2} s)",
                lat[0].as_secs_f64()
            ),
        );
    }
    let exit = running.sut.poll_exit();
    if served < n {
        return r.fail_as(
            missing(&got, exit),
            expected,
            missing_replies(served, n, exit),
            "every request must be answered before its timing can be judged",
            Some(running.sut.as_ref()),
        );
    }
    r.diagnosed(
        Symptom::RepliesTooLate,
        expected,
        format!("the last of {n} replies came after {total:.2} s: requests were served one after another"),
        Some(running.sut.as_ref()),
    )
}
