//! `pool-bounded` (stage 2) shows the pool stays at `TIMESERVER_WORKERS` threads, in waves.
//!
//! The idle thread count is taken after one warm-up request has been answered, so a pool
//! the server builds lazily at its first request (with `multiprocessing`'s three helper
//! threads) is idle by then, not growth.

use std::time::Duration;

use super::support::{idle_baseline, missing, tally, waves_of};
use super::OutcomeBuilder;
use crate::outcome::{CheckId, Outcome};
use crate::params::CheckParams;
use crate::probe::Pids;
use crate::procfs::ThreadSampler;
use crate::sut::{LaunchSpec, Launcher};
use crate::symptom::Symptom;
use crate::timeline::Timeline;

pub(super) fn pool_bounded(
    launcher: &dyn Launcher,
    base: &LaunchSpec,
    p: &CheckParams,
    key: i32,
) -> Outcome {
    let w = p.workers as usize;
    let n = 4 * w;
    let d = p.delay.as_secs_f64();
    let waves = waves_of(n, w);
    let r = OutcomeBuilder::new(
        CheckId::PoolBounded,
        format!("after one warm-up request, {n} concurrent requests to a server with TIMESERVER_WORKERS={w} and TIMESERVER_DELAY={d}, counting its live threads in /proc"),
    );
    let late = Duration::from_secs_f64(waves as f64 * d + d + 1.5);
    let expected = format!(
        "live threads rise by at most {} over the idle count; at most {w} replies in the first wave (before {:.2} s); all {n} in {waves} waves (by {:.2} s)",
        w + 1,
        1.5 * d,
        late.as_secs_f64()
    );
    let mut running = or_return!(r.start(&expected, launcher, base, p, key, p.delay));
    let mut pids = Pids::new();
    or_return!(r.warm_up(
        &expected,
        &mut running,
        &mut pids,
        p.delay + p.start_timeout
    ));
    let sampler = ThreadSampler::start(running.sut.processes(), Duration::from_millis(5));
    let baseline = idle_baseline(&sampler);
    sampler.reset();
    let (pending, got) =
        or_return!(r.burst_collect(&expected, &running, &mut pids, n, late + p.start_timeout));
    sampler.wait_samples(2, Duration::from_secs(1));
    let seen = sampler.snapshot();
    r.record(
        &pending,
        &got,
        &[],
        Some(&seen),
        Timeline::waves_of(n, w, d),
    );
    let (served, lat) = tally(&got);
    let rise = seen.peak.saturating_sub(baseline);
    let first_wave = lat.iter().filter(|l| l.as_secs_f64() < 1.5 * d).count();
    let total = lat.last().copied().unwrap_or_default();
    let observed = format!(
        "{baseline} thread(s) idle, peak {} under load (rise {rise}); {first_wave} replies in the first wave; {served} of {n} served, the last after {:.2} s",
        seen.peak,
        total.as_secs_f64()
    );
    let bounded = rise <= w + 1;
    let in_waves = first_wave <= w && served == n && total <= late;
    if bounded && in_waves {
        return r.pass(expected, observed);
    }
    let exit = running.sut.poll_exit();
    let server = Some(running.sut.as_ref());
    if !bounded {
        return r.fail(
            expected,
            observed,
            format!("create the pool once, with TIMESERVER_WORKERS ({w}) workers, and submit requests to it: no new thread per request"),
            server,
        );
    }
    if served < n {
        return r.fail_as(
            missing(&got, exit),
            expected,
            observed,
            "every request must be answered",
            server,
        );
    }
    if first_wave > w && total.as_secs_f64() < 0.9 * d {
        // All in the first wave, and before one delay: the pool may be right, the sleep is
        // missing, so the waves cannot be seen.
        return r.diagnosed(Symptom::RepliesBeforeDelay, expected, observed, server);
    }
    if first_wave > w {
        return r.fail(
            expected,
            observed,
            format!("the pool serves more than TIMESERVER_WORKERS={w} requests at once: size it from the environment variable"),
            server,
        );
    }
    r.fail_as(
        Some(Symptom::RepliesTooLate),
        expected,
        observed,
        format!("requests were served by fewer than {w} workers at a time: size the pool from TIMESERVER_WORKERS and sleep in the worker, not the main loop"),
        server,
    )
}
