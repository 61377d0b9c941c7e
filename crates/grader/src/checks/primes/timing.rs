//! `primes-timing`: the program prints a time, and that time is an interval it measured
//! around its pool calls with nothing else inside: no printing, no drawing of the numbers,
//! and the pool calls under way for most of it.
//! The workers print nothing. A printed number is matched with the difference of two clock
//! reads of the student's file (same clock, read before the print), within the printed
//! rounding; the layer noted at each read how many writes, random draws and pool calls the
//! main process had made, so what lies between two reads is known exactly.

use super::observation::{ClockRead, Observation};
use super::{observed, OutcomeBuilder, Run};
use crate::outcome::Outcome;

/// Most clock reads before a print that are paired with each other.
const READS_PER_PRINT: usize = 200;

/// The pool calls must fill at least this share of a timed interval...
const POOL_SHARE: f64 = 0.5;
/// ...unless what is left is under this many seconds (an interval around one tiny call).
const SLACK: f64 = 0.005;

/// A printed time matched with an interval.
#[derive(Debug, Clone)]
struct Match {
    printed: f64,
    line: String,
    measured: f64,
    calls: u64,
    writes: u64,
    draws: u64,
    /// The interval on the layer's monotonic clock, in seconds.
    span: f64,
    /// The wall time, in seconds, the pool calls took within the interval.
    pooled: f64,
}

impl Match {
    /// Whether the pool calls fill the interval (all of it but [`SLACK`], or [`POOL_SHARE`]).
    fn filled(&self) -> bool {
        self.pooled >= POOL_SHARE * self.span || self.span - self.pooled <= SLACK
    }

    fn clean(&self) -> bool {
        self.calls > 0 && self.writes == 0 && self.draws == 0 && self.filled()
    }
}

/// The wall time within `[from, to]` (`CLOCK_MONOTONIC` seconds) during which some pool call
/// was under way (from its submission to its last result).
fn pooled(obs: &Observation, from: f64, to: f64) -> f64 {
    let mut spans: Vec<(f64, f64)> = obs
        .calls
        .iter()
        .map(|c| (c.t0.max(from), c.t1.unwrap_or(to).min(to)))
        .filter(|(a, b)| b > a)
        .collect();
    spans.sort_by(|x, y| x.0.total_cmp(&y.0));
    let mut total = 0.0;
    let mut reach = f64::NEG_INFINITY;
    for (a, b) in spans {
        let a = a.max(reach);
        if b > a {
            total += b - a;
            reach = b;
        }
    }
    total
}

/// A number of seconds as printed in feedback: at most nine decimals, without float noise.
fn secs(x: f64) -> String {
    format!("{}", (x * 1e9).round() / 1e9)
}

/// Every (printed time, interval) pair that agree.
fn matches(obs: &Observation) -> Vec<Match> {
    let mut out = Vec::new();
    for (when, printed, rounding, line) in &obs.times {
        let before: Vec<&ClockRead> = obs.clock.iter().filter(|r| r.0 <= *when).collect();
        let reads = &before[before.len().saturating_sub(READS_PER_PRINT)..];
        for (j, end) in reads.iter().enumerate() {
            for start in &reads[..j] {
                if start.1 != end.1 {
                    continue;
                }
                let measured = end.2 - start.2;
                if measured <= 0.0 {
                    continue;
                }
                // The printed rounding, and float noise.
                if (printed - measured).abs() <= rounding + 1e-6 + 1e-3 * measured {
                    out.push(Match {
                        printed: *printed,
                        line: line.clone(),
                        measured,
                        calls: end.5 - start.5,
                        writes: end.3 - start.3,
                        draws: end.4 - start.4,
                        span: end.0 - start.0,
                        pooled: pooled(obs, start.0, end.0),
                    });
                }
            }
        }
    }
    out
}

/// Judges the run.
pub(super) fn judge(b: &OutcomeBuilder, run: &Run) -> Outcome {
    let expected = "a printed time that equals an interval the program measured (time.time, \
                    time.perf_counter or time.monotonic) around its pool calls, with no printing \
                    and no drawing of random numbers inside; and no printing in the workers";
    let obs = match observed(b, run, expected) {
        Ok(o) => o,
        Err(o) => return *o,
    };
    if obs.worker_writes > 0 {
        return b.fail(
            expected,
            format!(
                "the worker processes printed {} time(s), the first: {:?}",
                obs.worker_writes,
                obs.worker_sample.trim_end()
            ),
            "print nothing in the function the workers run: printing is input/output inside \
             the measured pool work; print the results in the main process, after the timing",
            None,
        );
    }
    if obs.clock.is_empty() {
        return b.fail(
            expected,
            "the program's file read no clock (time.time, time.perf_counter or time.monotonic)",
            "take start = time.time() just before the pool calls and end = time.time() just \
             after, then print end - start",
            None,
        );
    }
    if obs.times.is_empty() {
        return b.fail(
            expected,
            "the program printed no number that can be a time (one with a decimal point, or \
             followed by s or ms)",
            "print the measured time in seconds, for example print(f\"{end - start:.4f} s\")",
            None,
        );
    }
    let all = matches(obs);
    if let Some(m) = all.iter().find(|m| m.clean()) {
        return b.pass(
            expected,
            format!(
                "printed {} s ({:?}), an interval of {:.6} s the program measured around {} pool \
                 call(s), under way for {:.3} s of it, with no printing or drawing inside",
                secs(m.printed),
                m.line.trim(),
                m.measured,
                m.calls,
                m.pooled
            ),
        );
    }
    let with_pool: Vec<&Match> = all.iter().filter(|m| m.calls > 0).collect();
    let (observed, hint) = if let Some(m) = with_pool.iter().find(|m| m.writes > 0) {
        (
            format!(
                "printed {} s ({:?}): the interval it measured holds {} write(s) to the output \
                 besides the pool calls",
                secs(m.printed),
                m.line.trim(),
                m.writes
            ),
            "stop the clock before printing: collect the results, take end = time.time(), then \
             print",
        )
    } else if let Some(m) = with_pool.iter().find(|m| m.draws > 0) {
        (
            format!(
                "printed {} s ({:?}): the interval it measured also draws {} random number(s)",
                secs(m.printed),
                m.line.trim(),
                m.draws
            ),
            "generate the numbers before starting the clock: time the pool work alone",
        )
    } else if let Some(m) = with_pool.iter().find(|m| !m.filled()) {
        (
            format!(
                "printed {} s ({:?}): of the {:.3} s it measured, its pool calls took {:.3} s; \
                 the rest is other work",
                secs(m.printed),
                m.line.trim(),
                m.span,
                m.pooled
            ),
            "start the clock just before the pool calls and stop it just after them",
        )
    } else if let Some(m) = all.first() {
        (
            format!(
                "printed {} s ({:?}): the interval it measured holds no pool call",
                secs(m.printed),
                m.line.trim()
            ),
            "time the pool calls: start the clock just before them and stop it just after",
        )
    } else {
        let printed: Vec<String> = obs
            .times
            .iter()
            .take(5)
            .map(|t| format!("{} ({:?})", secs(t.1), t.3.trim()))
            .collect();
        (
            format!(
                "no printed number equals an interval between two clock reads of the program; \
                 printed: {}",
                printed.join(", ")
            ),
            "print end - start itself, in seconds (or in ms, saying so), after measuring it",
        )
    };
    b.fail(expected, observed, hint, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A program that read `clock` at 1 s and 2 s (0.5 s apart on its clock), with
    /// `between` (writes, draws, pool calls) made in between, and printed `printed` at 3 s.
    fn observation(between: (u64, u64, u64), printed: f64, rounding: f64) -> Observation {
        let (w, r, c) = between;
        Observation {
            clock: vec![
                (1.0, "perf".into(), 10.0, 5, 100, 0),
                (1.5, "perf".into(), 10.5, 5 + w, 100 + r, c),
            ],
            times: vec![(3.0, printed, rounding, format!("took {printed} s"))],
            // The pool call under way for 0.4 s of the 0.5 s.
            calls: vec![call(1.05, 1.45)],
            ..Observation::default()
        }
    }

    fn call(t0: f64, t1: f64) -> super::super::observation::Call {
        super::super::observation::Call {
            kind: "sync".into(),
            method: "map".into(),
            pool: "Pool".into(),
            t0,
            t1: Some(t1),
            verdicts: 10,
        }
    }

    #[test]
    fn a_printed_time_matches_the_interval_it_rounds() {
        let clean = matches(&observation((0, 0, 2), 0.5, 0.005));
        assert_eq!(clean.len(), 1);
        assert!(clean[0].clean(), "{clean:?}");
        // 0.49 printed with two decimals is not 0.5.
        assert!(matches(&observation((0, 0, 2), 0.49, 0.005)).is_empty());
        // A print before the second read cannot report it.
        let mut early = observation((0, 0, 2), 0.5, 0.005);
        early.times[0].0 = 1.4;
        assert!(matches(&early).is_empty());
        // Two clocks are never mixed.
        let mut mixed = observation((0, 0, 2), 0.5, 0.005);
        mixed.clock[1].1 = "time".into();
        assert!(matches(&mixed).is_empty());
    }

    #[test]
    fn what_lies_between_the_reads_decides() {
        let printing = matches(&observation((3, 0, 2), 0.5, 0.005));
        assert_eq!(printing[0].writes, 3);
        assert!(!printing[0].clean());
        let drawing = matches(&observation((0, 1000, 2), 0.5, 0.005));
        assert_eq!(drawing[0].draws, 1000);
        assert!(!drawing[0].clean());
        let no_pool = matches(&observation((0, 0, 0), 0.5, 0.005));
        assert!(!no_pool[0].clean());
        // A pool call under way for 0.1 s of the 0.5 s: the interval times other work.
        let mut other_work = observation((0, 0, 2), 0.5, 0.005);
        other_work.calls = vec![call(1.35, 1.45)];
        let m = matches(&other_work);
        assert!((m[0].pooled - 0.1).abs() < 1e-9, "{m:?}");
        assert!(!m[0].filled() && !m[0].clean());
        // Two overlapping calls count their union once.
        other_work.calls = vec![call(1.0, 1.3), call(1.2, 1.4)];
        assert!((matches(&other_work)[0].pooled - 0.4).abs() < 1e-9);
    }
}
