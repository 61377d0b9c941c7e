//! What grading produces, as data: stages, check ids, each check's outcome with its feedback,
//! and the events the runner emits for the reporters to consume.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::symptom::Symptom;
use super::text;

/// The two stages of Exercise 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// Stage 1: a new thread per request.
    Spawn,
    /// Stage 2: a thread pool.
    Pool,
    /// Exercise 1: primality tests in a `multiprocessing.Pool` (`primes_pool.py`).
    Primes,
}

impl Stage {
    /// Every stage: Exercise 2's two servers, then Exercise 1's program (the time server
    /// came first in this grader; reports keep that order).
    pub const ALL: [Stage; 3] = [Stage::Spawn, Stage::Pool, Stage::Primes];

    /// The stage's name on the command line and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Spawn => "spawn",
            Stage::Pool => "pool",
            Stage::Primes => "primes",
        }
    }

    /// Whether the stage grades a program that runs to its end (Exercise 1) rather than a
    /// server: its checks all judge the same runs, so they run together, in one process.
    pub fn observed_once(self) -> bool {
        self == Stage::Primes
    }

    /// The checks that grade this stage, in the order they run and are reported.
    pub fn checks(self) -> &'static [CheckId] {
        use CheckId::*;
        match self {
            Stage::Spawn => &[
                Starts,
                Reply,
                Routing,
                NoTheft,
                Concurrency,
                Spawn,
                Robustness,
                Termination,
                Drain,
                Cleanup,
            ],
            Stage::Pool => &[
                Starts,
                Reply,
                Routing,
                NoTheft,
                Concurrency,
                PoolBounded,
                PoolReuse,
                Robustness,
                Termination,
                Drain,
                Cleanup,
            ],
            Stage::Primes => &[
                PrimesRuns,
                PrimesPool,
                PrimesSync,
                PrimesAsync,
                PrimesCorrect,
                PrimesTiming,
                PrimesSpeedup,
            ],
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Stage {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "spawn" => Ok(Stage::Spawn),
            "pool" => Ok(Stage::Pool),
            "primes" => Ok(Stage::Primes),
            other => Err(format!(
                "unknown stage {other:?} (expected spawn, pool or primes)"
            )),
        }
    }
}

/// The fixed ids of the check catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckId {
    /// The server creates the queue within a deadline.
    Starts,
    /// One client gets exactly one reply of type pid+3 reading as the current date and time.
    Reply,
    /// Concurrent clients each get exactly their own reply.
    Routing,
    /// A client that reads late still gets its reply.
    NoTheft,
    /// With a work delay, concurrent requests are served in parallel.
    Concurrency,
    /// Stage spawn: live threads rise with concurrent load.
    Spawn,
    /// Stage pool: serving threads stay bounded by the pool size; service comes in waves.
    PoolBounded,
    /// Stage pool: the same threads serve successive bursts.
    PoolReuse,
    /// Malformed requests neither crash nor stall the server.
    Robustness,
    /// An empty type-2 message stops the server with exit status 0.
    Termination,
    /// Requests accepted before the stop still get their replies.
    Drain,
    /// The queue is gone once the server has stopped.
    Cleanup,
    /// Exercise 1: the program exits 0 within the deadline.
    PrimesRuns,
    /// Exercise 1: the work happens in a pool of worker processes.
    PrimesPool,
    /// Exercise 1: at least one synchronous submission on the pool did real work.
    PrimesSync,
    /// Exercise 1: at least one asynchronous submission on the pool did real work.
    PrimesAsync,
    /// Exercise 1: every verdict the pool returned is right, about a number in range.
    PrimesCorrect,
    /// Exercise 1: the printed time is the time of the pool calls, without printing or
    /// drawing the numbers, and the workers print nothing.
    PrimesTiming,
    /// Exercise 1 (informational): the speed-up from one worker to many.
    PrimesSpeedup,
}

impl CheckId {
    /// Every check id.
    pub const ALL: [CheckId; 19] = [
        CheckId::Starts,
        CheckId::Reply,
        CheckId::Routing,
        CheckId::NoTheft,
        CheckId::Concurrency,
        CheckId::Spawn,
        CheckId::PoolBounded,
        CheckId::PoolReuse,
        CheckId::Robustness,
        CheckId::Termination,
        CheckId::Drain,
        CheckId::Cleanup,
        CheckId::PrimesRuns,
        CheckId::PrimesPool,
        CheckId::PrimesSync,
        CheckId::PrimesAsync,
        CheckId::PrimesCorrect,
        CheckId::PrimesTiming,
        CheckId::PrimesSpeedup,
    ];

    /// The check's id, as in reports and rubrics.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckId::Starts => "starts",
            CheckId::Reply => "reply",
            CheckId::Routing => "routing",
            CheckId::NoTheft => "no-theft",
            CheckId::Concurrency => "concurrency",
            CheckId::Spawn => "spawn",
            CheckId::PoolBounded => "pool-bounded",
            CheckId::PoolReuse => "pool-reuse",
            CheckId::Robustness => "robustness",
            CheckId::Termination => "termination",
            CheckId::Drain => "drain",
            CheckId::Cleanup => "cleanup",
            CheckId::PrimesRuns => "primes-runs",
            CheckId::PrimesPool => "primes-pool",
            CheckId::PrimesSync => "primes-sync",
            CheckId::PrimesAsync => "primes-async",
            CheckId::PrimesCorrect => "primes-correct",
            CheckId::PrimesTiming => "primes-timing",
            CheckId::PrimesSpeedup => "primes-speedup",
        }
    }

    /// A one-line description of what the check shows.
    pub fn title(self) -> &'static str {
        match self {
            CheckId::Starts => "the server creates the queue with the key within a deadline",
            CheckId::Reply => {
                "one client gets exactly one reply of type pid+3 with the current date and time"
            }
            CheckId::Routing => "concurrent clients each get exactly their own reply",
            CheckId::NoTheft => "a client that reads its reply late still gets it",
            CheckId::Concurrency => "concurrent requests are served in parallel",
            CheckId::Spawn => "a new thread serves each request",
            CheckId::PoolBounded => "serving threads stay bounded by the pool size",
            CheckId::PoolReuse => "the same threads serve successive bursts",
            CheckId::Robustness => "malformed requests neither crash nor stall the server",
            CheckId::Termination => "an empty type-2 message stops the server with status 0",
            CheckId::Drain => "requests accepted before the stop still get replies",
            CheckId::Cleanup => "the queue is gone once the server has stopped",
            CheckId::PrimesRuns => "the program exits with status 0 within the deadline",
            CheckId::PrimesPool => "the primality tests run in a pool of worker processes",
            CheckId::PrimesSync => "a synchronous submission on the pool tests numbers",
            CheckId::PrimesAsync => "an asynchronous submission on the pool tests numbers",
            CheckId::PrimesCorrect => {
                "every verdict the pool returned is right, about a number in [10^3, 10^6]"
            }
            CheckId::PrimesTiming => {
                "the printed time is that of the pool calls, without printing or drawing numbers"
            }
            CheckId::PrimesSpeedup => "speed-up from one worker to many (informational)",
        }
    }

    /// The check's weight when the rubric does not set one: 1, except the informational
    /// speed-up (0).
    pub fn default_weight(self) -> f64 {
        match self {
            CheckId::PrimesSpeedup => 0.0,
            _ => 1.0,
        }
    }
}

impl fmt::Display for CheckId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CheckId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CheckId::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown check id {s:?}"))
    }
}

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The server showed the behaviour.
    Passed,
    /// It did not, or could not be observed doing so.
    Failed,
    /// The check could not run: the grader or its isolation failed, so nothing was learnt
    /// about the submission. It earns 0 of its weight, like a failure, and every report
    /// marks it as an error (a grading fault to look at, not a verdict).
    Error,
}

impl Status {
    /// `"passed"`, `"failed"` or `"error"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Failed => "failed",
            Status::Error => "error",
        }
    }
}

/// The root cause of a failure that follows from another check's defect: that check, and
/// the symptom it diagnosed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cause {
    /// The check that names the defect.
    pub check: CheckId,
    /// Its diagnosis.
    pub symptom: Symptom,
}

/// One check's result, with feedback a student can act on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// Which check.
    pub id: CheckId,
    /// The verdict.
    pub status: Status,
    /// What the check did.
    pub did: String,
    /// What it expected to see.
    pub expected: String,
    /// What it observed.
    pub observed: String,
    /// A hint to act on (failed checks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// Wall time of the check, in seconds.
    pub seconds: f64,
    /// The end of what the server printed, when it helps (failed checks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_output: Option<String>,
    /// What the observation shows went wrong with the replies, when the check could tell
    /// (failed checks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symptom: Option<Symptom>,
    /// The check that names the defect this failure follows from, when another one does
    /// (set across the stage by [`crate::diagnosis::trace`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<Cause>,
    /// What a timed check saw, request by request, when it sent several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<crate::timeline::Timeline>,
}

impl Outcome {
    /// The outcome of a check that could not run (see [`Status::Error`]): `why` says what
    /// failed on the grader's side.
    pub fn error(id: CheckId, why: impl Into<String>, seconds: f64) -> Self {
        Outcome {
            id,
            status: Status::Error,
            did: "tried to run the check in its sandbox".into(),
            expected: "the check runs to a verdict".into(),
            observed: format!("the check could not be graded: {}", why.into()),
            hint: Some(
                "this is a grading fault, not a verdict on your code: the course staff will look at it"
                    .into(),
            ),
            seconds,
            server_output: None,
            symptom: None,
            cause: None,
            timeline: None,
        }
    }

    /// Whether the check passed.
    pub fn passed(&self) -> bool {
        self.status == Status::Passed
    }

    /// Whether the check ran and failed ([`Status::Failed`]).
    pub fn is_failed(&self) -> bool {
        self.status == Status::Failed
    }

    /// Whether the check could not run ([`Status::Error`]).
    pub fn is_error(&self) -> bool {
        self.status == Status::Error
    }

    /// Makes every text of the outcome safe to show ([`text::clean_text`]): they quote what
    /// the server printed or replied. The runner applies it to every outcome it receives,
    /// so every report, the JSON stream included, carries only cleaned text.
    pub fn sanitize(&mut self) {
        for field in [&mut self.did, &mut self.expected, &mut self.observed] {
            *field = text::clean_text(field);
        }
        if let Some(hint) = &mut self.hint {
            *hint = text::clean_text(hint);
        }
        if let Some(out) = &mut self.server_output {
            *out = text::clean_text(out);
        }
    }

    /// The feedback as plain text: did, expected, observed, the diagnosis (with the check
    /// that names the root cause, when another one does), hint, server output.
    pub fn feedback(&self) -> String {
        let mut text = format!(
            "Did: {}\nExpected: {}\nObserved: {}",
            self.did, self.expected, self.observed
        );
        match (self.symptom, self.cause) {
            (_, Some(cause)) => text.push_str(&format!(
                "\nDiagnosis: this follows from the defect the `{}` check names: {}",
                cause.check,
                cause.symptom.describe()
            )),
            (Some(symptom), None) => {
                text.push_str("\nDiagnosis: ");
                text.push_str(symptom.describe());
            }
            (None, None) => {}
        }
        if let Some(hint) = &self.hint {
            text.push_str("\nHint: ");
            text.push_str(hint);
        }
        if let Some(out) = &self.server_output {
            if !out.trim().is_empty() {
                // Exercise 1 grades a program, not a server.
                let whose = if Stage::Primes.checks().contains(&self.id) {
                    "Program"
                } else {
                    "Server"
                };
                text.push_str(&format!("\n{whose} output (end), quoted:\n"));
                text.push_str(&text::quote_output(out));
            }
        }
        text
    }
}

/// All the outcomes of one stage of one submission.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageReport {
    /// The submission's name (its folder name).
    pub submission: String,
    /// The stage graded.
    pub stage: Stage,
    /// The command that ran the server.
    pub command: Vec<String>,
    /// One outcome per check, in catalogue order.
    pub outcomes: Vec<Outcome>,
    /// Wall time of the whole stage, in seconds.
    pub seconds: f64,
    /// How the stage's servers were isolated (for example `native: own IPC, network, UTS,
    /// PID and mount namespaces; ...`), as the sandbox described it; empty when no server
    /// was started.
    #[serde(default)]
    pub isolation: String,
}

impl StageReport {
    /// Whether every check passed.
    pub fn all_passed(&self) -> bool {
        self.outcomes.iter().all(Outcome::passed)
    }

    /// How many checks passed.
    pub fn passed_count(&self) -> usize {
        self.outcomes.iter().filter(|o| o.passed()).count()
    }

    /// Whether some check could not be graded ([`Status::Error`]).
    pub fn has_errors(&self) -> bool {
        self.outcomes.iter().any(Outcome::is_error)
    }

    /// The stage as the events the runner would have emitted for it, in order:
    /// `StageStarted` (with the check ids of the outcomes), one `CheckFinished` per outcome,
    /// `StageFinished` (with this report). This is how a finished report is replayed to the
    /// live reporters.
    pub fn events(&self) -> impl Iterator<Item = Event> + '_ {
        let started = Event::StageStarted {
            submission: self.submission.clone(),
            stage: self.stage,
            checks: self.outcomes.iter().map(|o| o.id).collect(),
        };
        let checks = self.outcomes.iter().map(|o| Event::CheckFinished {
            submission: self.submission.clone(),
            stage: self.stage,
            outcome: o.clone(),
        });
        let finished = std::iter::once_with(|| Event::StageFinished {
            report: self.clone(),
        });
        std::iter::once(started).chain(checks).chain(finished)
    }
}

/// What the runner tells the reporters, as grading goes (cargo-nextest style: the runner
/// produces events; human, JSON and file reporters consume them separately).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// A stage of a submission starts.
    StageStarted {
        /// Submission name.
        submission: String,
        /// Stage.
        stage: Stage,
        /// Checks that will run.
        checks: Vec<CheckId>,
    },
    /// A check finished.
    CheckFinished {
        /// Submission name.
        submission: String,
        /// Stage.
        stage: Stage,
        /// Its outcome.
        outcome: Outcome,
    },
    /// A stage finished.
    StageFinished {
        /// The whole stage's report.
        report: StageReport,
    },
}
