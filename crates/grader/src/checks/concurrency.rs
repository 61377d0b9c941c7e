//! `concurrency` shows requests sent at once are served side by side, not one by one.

use std::time::{Duration, Instant};

use super::support::{faulted, missing_replies, tally};
use super::OutcomeBuilder;
use crate::outcome::{CheckId, Outcome};
use crate::params::CheckParams;
use crate::probe::{self, Pids};
use crate::sut::{LaunchSpec, Launcher};

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
    let limit = 0.6 * n as f64 * d;
    let expected = format!(
        "all served in well under the {:.1} s that one-after-another service takes (at most {:.2} s)",
        n as f64 * d,
        limit
    );
    let mut running = or_return!(r.start(&expected, launcher, base, p, key, p.delay));
    let mut pids = Pids::new();
    let mut pending = or_return!(r.burst(&expected, &running, &mut pids, n));
    // Deadlines from the moment the requests are out: readying the clients can take long
    // on a starved machine, and that time is not the server's.
    let began = Instant::now();
    let got = probe::collect(
        &mut pending,
        began + Duration::from_secs_f64(n as f64 * d) + p.start_timeout,
    );
    if let Some(o) = faulted(&r, &got) {
        return o;
    }
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
    let (observed, hint) = if served < n {
        (
            missing_replies(served, n, exit),
            "some requests got no reply, so their timing cannot be judged: see the routing check",
        )
    } else {
        (
            format!("the last of {n} replies came after {total:.2} s: requests were served one after another"),
            "serve each request in a thread (stage spawn) or submit it to the pool (stage pool), and sleep TIMESERVER_DELAY in that worker, not in the main loop",
        )
    };
    r.fail(expected, observed, hint, Some(running.sut.as_ref()))
}
