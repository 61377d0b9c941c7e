//! `primes-pool`: the primality tests run in a pool of worker processes. The layer says which
//! pools were created and where; `/proc` says which worker processes ran and how much CPU
//! time they used, which the main process cannot forge.

use super::{observed, OutcomeBuilder, Run};
use crate::outcome::Outcome;

/// The workers must use at least half the CPU time the main process uses from its first
/// pool call on (not more than it: with the handout's cheap `is_prime`, sending a number and
/// taking its verdict back costs the main process about as much as the test costs a worker;
/// the fixtures' correct programs sit at 1.4 to 2.7 times, token pool calls at 0)...
const OVER_MAIN_AFTER_FIRST_CALL: f64 = 0.5;
/// ...and at least this share of the main process's whole CPU time (start-up and drawing
/// the numbers included), so that token pool calls beside a serial loop do not pass.
const SHARE_OF_MAIN_TOTAL: f64 = 0.25;

/// Judges the run.
pub(super) fn judge(b: &OutcomeBuilder, run: &Run) -> Outcome {
    let expected = "a multiprocessing.Pool (or a ProcessPoolExecutor) created under \
                    `if __name__ == \"__main__\":`, whose worker processes do the testing: at \
                    least half the main process's CPU time from its first pool call on, and a \
                    quarter of its whole";
    let obs = match observed(b, run, expected) {
        Ok(o) => o,
        Err(o) => return *o,
    };
    let process_pools: Vec<_> = obs
        .pools
        .iter()
        .filter(|p| p.kind != "ThreadPool")
        .collect();
    if obs.pools.is_empty() {
        return b.fail(
            expected,
            "the program created no pool",
            "create the pool with `multiprocessing.Pool(processes=...)` and test the numbers in \
             its workers",
            None,
        );
    }
    if process_pools.is_empty() {
        return b.fail(
            expected,
            "the program's pool is a ThreadPool: its workers are threads of the main process, \
             and Python runs one thread's Python code at a time",
            "use multiprocessing.Pool, whose workers are processes",
            None,
        );
    }
    if let Some(p) = process_pools.iter().find(|p| p.place == "unguarded") {
        return b.fail(
            expected,
            format!(
                "the {} is created by the module's top-level code, outside \
                 `if __name__ == \"__main__\":`",
                p.kind
            ),
            "create the pool under `if __name__ == \"__main__\":`: with the spawn and forkserver \
             start methods (macOS, Windows, and Linux from Python 3.14) every worker imports \
             the module, and would create pools of its own",
            None,
        );
    }
    if run.cpu.processes == 0 {
        return b.fail(
            expected,
            "no worker process of the pool was seen in /proc",
            "test the numbers in the pool's worker processes",
            None,
        );
    }
    let workers = run.cpu.workers;
    // Without the layer's own bookkeeping, which ran in the main process.
    let layer = obs.layer_cpu.clamp(0.0, obs.cpu_exit);
    let main_total = obs.cpu_exit - layer;
    let main_after = obs
        .cpu_first_call
        .map_or(main_total, |c| (main_total - c).max(0.0));
    let figures = format!(
        "{} worker process(es) used {workers:.2} s of CPU time; the main process {main_after:.2} s \
         from its first pool call on, {main_total:.2} s in all",
        run.cpu.processes
    );
    if workers > OVER_MAIN_AFTER_FIRST_CALL * main_after
        && workers >= SHARE_OF_MAIN_TOTAL * main_total
    {
        b.pass(expected, figures)
    } else {
        b.fail(
            expected,
            figures,
            "the workers must do the testing: send the numbers in large tasks (map or map_async \
             with a chunksize, apply_async on chunks); one task per number costs the main \
             process more than the test costs a worker; and read PRIMES_COUNT, so that there is \
             enough work to see",
            None,
        )
    }
}
