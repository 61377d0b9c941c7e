//! Exercise 1: grading `primes_pool.py`, a program that runs to its end rather than a
//! server. The program runs twice in the sandbox, with the grader's `PRIMES_COUNT` and
//! `PRIMES_WORKERS` (then with one worker, for the speed-up), under an observation layer
//! the grader injects (`observe.py`, see [`observation`]), while `/proc` is sampled for the
//! CPU time of its worker processes. Every check of the stage judges those runs:
//!
//! | check | file |
//! |---|---|
//! | `primes-runs`, `primes-speedup` | here |
//! | `primes-pool` | `pool.rs` |
//! | `primes-sync`, `primes-async` | `submissions.rs` |
//! | `primes-correct` | `correct.rs` |
//! | `primes-timing` | `timing.rs` |
//!
//! What the layer records comes from inside the student's process and could be forged by a
//! hostile program; the checks never take its word where they can check: verdicts are
//! checked with the grader's own primality test, the workers' CPU time is read from `/proc`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::OutcomeBuilder;
use crate::outcome::{CheckId, Outcome, Stage};
use crate::params::CheckParams;
use crate::procfs;
use crate::sut::{Exit, LaunchError, LaunchSpec, Launcher};

mod correct;
mod observation;
mod pool;
mod submissions;
mod timing;

use observation::Observation;

/// The variables that tell the program its size.
pub const COUNT_VAR: &str = "PRIMES_COUNT";
/// The pool size the program is told to use.
pub const WORKERS_VAR: &str = "PRIMES_WORKERS";

/// Room for the layer's line (the verdicts of a few hundred thousand numbers) in the output
/// the sandbox keeps.
const OUTPUT_ROOM: usize = 8 << 20;

/// How much of the program's output a failed check quotes.
const QUOTED_OUTPUT: usize = 3000;

/// CPU time seen through `/proc`, in seconds.
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    /// The worker processes' (every process of the program but the main one, reaped or not).
    workers: f64,
    /// How many distinct worker processes were seen.
    processes: usize,
}

/// One run of the program.
#[derive(Debug)]
struct Run {
    /// How it ended; `None` when it was killed at the deadline.
    exit: Option<Exit>,
    /// Wall time, in seconds.
    seconds: f64,
    /// What it printed, without the layer's line.
    output: String,
    /// What the layer saw, or why there is nothing.
    obs: Result<Observation, String>,
    /// What `/proc` saw.
    cpu: Cpu,
    /// `PRIMES_WORKERS`.
    workers: u32,
}

impl Run {
    /// Whether it exited with status 0.
    fn ok(&self) -> bool {
        self.exit == Some(Exit::Code(0))
    }

    /// The end of its output, to quote.
    fn quoted_output(&self) -> Option<String> {
        let out = self.output.trim_end();
        if out.trim().is_empty() {
            return None;
        }
        let mut cut = out.len().saturating_sub(QUOTED_OUTPUT);
        while !out.is_char_boundary(cut) {
            cut += 1;
        }
        Some(out[cut..].to_owned())
    }
}

/// Why a run could not be judged at all.
enum NoRun {
    /// The command cannot carry the layer, or the program could not start: the submission's.
    Fail(String),
    /// The sandbox failed: a grading fault.
    Error(String),
}

/// The command with the layer injected: `python3 [options] -c <layer> <script> [args]`.
fn inject(command: &[String]) -> Result<Vec<String>, String> {
    let program = command.first().ok_or("no command to run")?;
    let base = program.rsplit('/').next().unwrap_or(program);
    if !base.starts_with("python") {
        return Err(format!(
            "the stage's command runs {program}, not python3: Exercise 1 is graded by running \
             the program under Python with an observation layer"
        ));
    }
    let mut i = 1;
    while i < command.len() {
        let arg = &command[i];
        match arg.as_str() {
            "-X" | "-W" => i += 2,
            "-c" | "-m" | "-" => {
                return Err(format!(
                    "the stage's command uses `python3 {arg}`: it must run the program's file"
                ))
            }
            a if a.starts_with('-') => i += 1,
            _ => break,
        }
    }
    if i >= command.len() {
        return Err("the stage's command names no program file".to_owned());
    }
    let mut out = command[..i].to_vec();
    out.push("-c".to_owned());
    out.push(observation::LAYER.to_owned());
    out.extend_from_slice(&command[i..]);
    Ok(out)
}

/// Runs the program once with `workers` workers, sampling `/proc` until it ends or the
/// deadline kills it.
fn run(
    launcher: &dyn Launcher,
    base: &LaunchSpec,
    p: &CheckParams,
    workers: u32,
) -> Result<Run, NoRun> {
    let mut spec = base.clone();
    spec.command = inject(&base.command).map_err(NoRun::Fail)?;
    let nonce = format!("{:032x}", rand::random::<u128>());
    spec.env
        .push((COUNT_VAR.into(), p.primes_count.to_string()));
    spec.env.push((WORKERS_VAR.into(), workers.to_string()));
    spec.env
        .push((observation::NONCE_VAR.into(), nonce.clone()));
    spec.limits.max_output_bytes = spec.limits.max_output_bytes.max(OUTPUT_ROOM);
    let began = Instant::now();
    let mut sut = match launcher.launch(&spec) {
        Ok(s) => s,
        Err(LaunchError::Isolation(e)) => return Err(NoRun::Error(e.to_string())),
        Err(e) => return Err(NoRun::Fail(e.to_string())),
    };
    let main = sut.pid();
    let set = sut.processes();
    let mut seen = BTreeSet::new();
    let mut cpu = Cpu::default();
    let deadline = began + p.primes_timeout;
    let exit = loop {
        // Workers' time: what the main process has reaped, plus every other live process's.
        let mut workers_now = procfs::cpu_seconds(main).map_or(0.0, |(_, reaped)| reaped);
        for pid in set.pids().into_iter().filter(|&pid| pid != main) {
            if let Some((own, reaped)) = procfs::cpu_seconds(pid) {
                workers_now += own + reaped;
                seen.insert(pid);
            }
        }
        cpu.workers = cpu.workers.max(workers_now);
        if let Some(exit) = sut.poll_exit() {
            break Some(exit);
        }
        if Instant::now() >= deadline {
            sut.kill_all();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    cpu.processes = seen.len();
    let seconds = began.elapsed().as_secs_f64();
    // The output is read on another thread: give it a moment to reach the end.
    let marker = format!("{nonce}:");
    let settle = Instant::now() + Duration::from_secs(1);
    let mut output = sut.output_tail();
    while exit.is_some() && !output.contains(&marker) && Instant::now() < settle {
        std::thread::sleep(Duration::from_millis(10));
        output = sut.output_tail();
    }
    sut.kill_all();
    let (obs, output) = observation::extract(&output, &nonce);
    Ok(Run {
        exit,
        seconds,
        output,
        obs,
        cpu,
        workers,
    })
}

/// What every check of the stage says it did.
fn did(p: &CheckParams, run: &Run) -> String {
    format!(
        "ran the program with {COUNT_VAR}={} {WORKERS_VAR}={} under an observation layer \
         that records its pool calls, clock reads and printing, and read its processes' \
         CPU time in /proc",
        p.primes_count, run.workers
    )
}

/// Grades the stage: every check of [`Stage::Primes`], in its order.
pub(crate) fn grade(launcher: &dyn Launcher, base: &LaunchSpec, p: &CheckParams) -> Vec<Outcome> {
    let began = Instant::now();
    let ids = Stage::Primes.checks();
    let main = match run(launcher, base, p, p.primes_workers) {
        Ok(run) => run,
        Err(NoRun::Error(why)) => {
            let secs = began.elapsed().as_secs_f64();
            return ids
                .iter()
                .map(|id| Outcome::error(*id, &why, secs))
                .collect();
        }
        Err(NoRun::Fail(why)) => return not_run(p, &why, began),
    };
    // The speed-up run only makes sense after a run that worked.
    let single = (main.ok() && main.obs.as_ref().is_ok_and(|o| o.pool_span().is_some()))
        .then(|| run(launcher, base, p, 1));
    ids.iter()
        .map(|&id| {
            let b = OutcomeBuilder::new(id, did(p, &main));
            let mut o = match id {
                CheckId::PrimesRuns => runs(&b, p, &main),
                CheckId::PrimesPool => pool::judge(&b, &main),
                CheckId::PrimesSync => submissions::judge(&b, &main, submissions::Kind::Sync),
                CheckId::PrimesAsync => submissions::judge(&b, &main, submissions::Kind::Async),
                CheckId::PrimesCorrect => correct::judge(&b, &main),
                CheckId::PrimesTiming => timing::judge(&b, &main),
                CheckId::PrimesSpeedup => speedup(&b, &main, single.as_ref()),
                other => Outcome::error(other, "not a check of stage primes", 0.0),
            };
            if o.is_failed() && o.server_output.is_none() {
                o.server_output = main.quoted_output();
            }
            o.seconds = began.elapsed().as_secs_f64();
            o
        })
        .collect()
}

/// Every check failed because the program could not be run at all.
fn not_run(p: &CheckParams, why: &str, began: Instant) -> Vec<Outcome> {
    Stage::Primes
        .checks()
        .iter()
        .map(|&id| {
            let b = OutcomeBuilder::new(
                id,
                format!(
                    "tried to run the program with {COUNT_VAR}={} {WORKERS_VAR}={}",
                    p.primes_count, p.primes_workers
                ),
            );
            let mut o = b.fail(
                "the program starts",
                format!("it could not be started: {why}"),
                "run it yourself as `python3 primes_pool.py` from the submission folder",
                None,
            );
            o.seconds = began.elapsed().as_secs_f64();
            o
        })
        .collect()
}

/// The hint for a check that has no observation to judge.
const NO_OBSERVATION: &str = "let the program end normally (no os._exit, no endless wait), \
                              within the deadline; see the primes-runs check";

/// The observation, or the failed outcome that says why there is none.
fn observed<'a>(
    b: &OutcomeBuilder,
    run: &'a Run,
    expected: &str,
) -> Result<&'a Observation, Box<Outcome>> {
    run.obs
        .as_ref()
        .map_err(|why| Box::new(b.fail(expected, why.clone(), NO_OBSERVATION, None)))
}

/// `primes-runs`: exit status 0 within the deadline.
fn runs(b: &OutcomeBuilder, p: &CheckParams, run: &Run) -> Outcome {
    let expected = format!(
        "exit status 0 within {:.0} s",
        p.primes_timeout.as_secs_f64()
    );
    let told = match &run.obs {
        Ok(obs) => {
            let verdicts = obs.verdicts().map_or(0, |v| v.len() as u64) + obs.oor_count;
            if verdicts < u64::from(p.primes_count) / 2 {
                format!(
                    "; its pools returned {verdicts} verdicts though {COUNT_VAR} was {} (read \
                     it: the checks need that many numbers to see the workers at work)",
                    p.primes_count
                )
            } else {
                format!("; its pools returned {verdicts} verdicts")
            }
        }
        Err(_) => String::new(),
    };
    match run.exit {
        Some(Exit::Code(0)) => b.pass(
            expected,
            format!("exit status 0 after {:.2} s{told}", run.seconds),
        ),
        None => b.fail(
            expected,
            format!(
                "still running after {:.0} s: killed",
                p.primes_timeout.as_secs_f64()
            ),
            "close the pool (use it in a `with` block) and wait only for results that come; \
             the grader's PRIMES_COUNT must finish well within the deadline",
            None,
        ),
        Some(exit) => b.fail(
            expected,
            format!("{exit} after {:.2} s{told}", run.seconds),
            "the program's output (below) ends with the error; run `python3 primes_pool.py` \
             yourself",
            None,
        ),
    }
}

/// `primes-speedup`: the pool calls' wall time with one worker over that with many
/// (informational: it passes whenever both runs worked).
fn speedup(b: &OutcomeBuilder, main: &Run, single: Option<&Result<Run, NoRun>>) -> Outcome {
    let expected = format!(
        "the program runs with {WORKERS_VAR}=1 and {WORKERS_VAR}={}, so that the speed-up can be \
         measured",
        main.workers
    );
    let span = |r: &Run| r.obs.as_ref().ok().and_then(Observation::pool_span);
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    match (span(main), single) {
        (Some(many), Some(Ok(one))) if one.ok() => match span(one) {
            Some(one_span) => b.pass(
                expected,
                format!(
                    "pool calls took {one_span:.3} s with 1 worker and {many:.3} s with {}: a \
                     speed-up of {:.2}x on {cores} CPU core(s) (informational: it depends on the \
                     machine and its load)",
                    main.workers,
                    one_span / many
                ),
            ),
            None => b.fail(
                expected,
                "with 1 worker the program made no pool call",
                "read PRIMES_WORKERS for the pool size, and nothing else",
                None,
            ),
        },
        (Some(_), Some(Ok(one))) => b.fail(
            expected,
            format!(
                "with {WORKERS_VAR}=1 the program ended with {}",
                one.exit
                    .map_or_else(|| "a kill at the deadline".to_owned(), |e| e.to_string())
            ),
            "the program must work with any pool size PRIMES_WORKERS gives",
            None,
        ),
        (Some(_), Some(Err(NoRun::Error(why)))) => Outcome::error(b.id, why.clone(), 0.0),
        (Some(_), Some(Err(NoRun::Fail(why)))) => {
            b.fail(expected, why.clone(), NO_OBSERVATION, None)
        }
        _ => b.fail(
            expected,
            "the run with the grader's pool size did not end well or made no pool call, so \
             there is nothing to compare",
            NO_OBSERVATION,
            None,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_layer_goes_before_the_program_file_after_pythons_options() {
        let got = inject(&strings(&[
            "python3",
            "-u",
            "-X",
            "dev",
            "primes_pool.py",
            "a",
        ]))
        .unwrap();
        assert_eq!(got[..4], strings(&["python3", "-u", "-X", "dev"])[..]);
        assert_eq!(got[4], "-c");
        assert_eq!(got[5], observation::LAYER);
        assert_eq!(got[6..], strings(&["primes_pool.py", "a"])[..]);
        assert!(inject(&strings(&["bash", "run.sh"])).is_err());
        assert!(inject(&strings(&["python3", "-m", "primes"])).is_err());
        assert!(inject(&strings(&["python3", "-u"])).is_err());
    }
}
