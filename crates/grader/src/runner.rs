//! Runs a stage's checks, each against a fresh server in a process of its own, and emits
//! events as they finish.
//!
//! Every check runs in a child process (`poolgrade __check`) that gets a [`CheckRequest`] on
//! its standard input and prints one [`CheckReply`]; the runner kills it at a hard deadline.
//! The child isolates itself and its server with the request's [`Backend`] (see
//! [`super::sandbox`]): natively each check has namespaces of its own and checks run side by
//! side; the other backends share one IPC namespace, so their checks run one at a time.
//!
//! A check that cannot run (the sandbox failed, the child died or overran its deadline) is
//! [`Status::Error`](super::outcome::Status::Error): it earns nothing and every report shows
//! it as a grading fault. The runner cleans every outcome it receives
//! ([`Outcome::sanitize`]), so no reporter ever sees raw server text.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::checks;
use super::diagnosis;
use super::outcome::{CheckId, Event, Outcome, Stage, StageReport};
use super::params::CheckParams;
use super::sandbox::cgroup::Cgroup;
use super::sandbox::local::LocalLauncher;
use super::sandbox::native::{self, NativeLauncher};
use super::sandbox::{self, Backend, IsolationError, CHECK_SUBCOMMAND};
use super::sut::{LaunchSpec, Launcher};
use sysv_mq::protocol;

/// What a `__check` child is asked to do (JSON on its stdin).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckRequest {
    /// The checks: one, or every check of a stage whose checks judge the same runs
    /// ([`Stage::observed_once`]).
    pub ids: Vec<CheckId>,
    /// The server.
    pub spec: LaunchSpec,
    /// The check's parameters (the rubric's).
    pub params: CheckParams,
    /// How to isolate it.
    pub backend: Backend,
}

/// What a `__check` child prints.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckReply {
    /// The check ran (its outcome may still be an error, if its server could not be
    /// isolated).
    Outcome {
        /// The outcomes, one per requested check, in the request's order.
        outcomes: Vec<Outcome>,
        /// How the server was isolated.
        isolation: String,
    },
    /// The check could not even start: no sandbox could be set up.
    Error(IsolationError),
}

/// Everything needed to grade one stage of one submission.
#[derive(Debug, Clone)]
pub struct StagePlan {
    /// Submission name, for reports.
    pub submission: String,
    /// The stage.
    pub stage: Stage,
    /// The server to start for each check.
    pub spec: LaunchSpec,
    /// The checks' parameters (the rubric's).
    pub params: CheckParams,
    /// The checks to run, in report order.
    pub checks: Vec<CheckId>,
}

impl StagePlan {
    fn request(&self, ids: Vec<CheckId>, backend: &Backend) -> CheckRequest {
        CheckRequest {
            ids,
            spec: self.spec.clone(),
            params: self.params.clone(),
            backend: backend.clone(),
        }
    }

    /// How the checks are shared out between check processes: each alone, or all together
    /// when the stage's checks judge the same runs ([`Stage::observed_once`]). Indices into
    /// [`StagePlan::checks`].
    fn units(&self) -> Vec<Vec<usize>> {
        if self.stage.observed_once() && !self.checks.is_empty() {
            vec![(0..self.checks.len()).collect()]
        } else {
            (0..self.checks.len()).map(|i| vec![i]).collect()
        }
    }

    /// The longest a single check may take before the runner kills it: every wait inside a
    /// check has its own deadline, so this only catches a grader fault or a frozen machine.
    pub fn hard_deadline(&self) -> Duration {
        let p = &self.params;
        if self.stage.observed_once() {
            // Two runs of the program, each killed at its own deadline, and the judging.
            return Duration::from_secs_f64(30.0 + 2.0 * p.primes_timeout.as_secs_f64());
        }
        let waves = f64::from((4 * p.workers.max(1)).max(p.clients));
        Duration::from_secs_f64(
            30.0 + 4.0 * (p.start_timeout.as_secs_f64() + p.stop_timeout.as_secs_f64())
                + 3.0 * waves * p.delay.as_secs_f64(),
        )
    }
}

/// Where and how the checks run: each in a `__check` child process, up to
/// [`CheckRunner::jobs`] at once.
#[derive(Debug, Clone)]
pub struct CheckRunner {
    /// The `poolgrade` binary, re-run as `__check`.
    exe: PathBuf,
    /// Most checks at once.
    jobs: usize,
    /// How each check isolates its server.
    backend: Backend,
}

impl CheckRunner {
    /// Runs checks with `backend`, `jobs` at once where the backend allows it (one at a time
    /// where checks share an IPC namespace).
    pub fn new(exe: PathBuf, jobs: usize, backend: Backend) -> Self {
        let jobs = if backend.parallel() { jobs.max(1) } else { 1 };
        Self { exe, jobs, backend }
    }

    /// The backend.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// Most checks at once.
    pub fn jobs(&self) -> usize {
        self.jobs
    }
}

/// Runs the checks of one request in a `__check` child, with a hard deadline. Whatever
/// happens, the answer is one outcome per check (error ones if the checks could not run) and
/// the isolation it reported.
fn run_isolated(exe: &Path, req: &CheckRequest, deadline: Duration) -> (Vec<Outcome>, String) {
    let began = Instant::now();
    let error = |why: String| {
        let secs = began.elapsed().as_secs_f64();
        (
            req.ids
                .iter()
                .map(|id| Outcome::error(*id, why.clone(), secs))
                .collect(),
            String::new(),
        )
    };
    let json = match serde_json::to_vec(req) {
        Ok(j) => j,
        Err(e) => return error(format!("encoding the request: {e}")),
    };
    let mut child = match Command::new(exe)
        .arg(CHECK_SUBCOMMAND)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return error(format!("starting {}: {e}", exe.display())),
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(&json);
    }
    let (tx, rx) = mpsc::channel();
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut err = Vec::new();
        if let Some(s) = stdout.as_mut() {
            let _ = s.take(16 << 20).read_to_end(&mut out);
        }
        if let Some(s) = stderr.as_mut() {
            let _ = s.take(64 * 1024).read_to_end(&mut err);
        }
        let _ = tx.send((out, err));
    });
    let (out, err) = match rx.recv_timeout(deadline) {
        Ok(x) => x,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            return error(format!(
                "the check did not finish within its hard deadline of {:.0} s and was killed",
                deadline.as_secs_f64()
            ));
        }
    };
    let status = child.wait();
    match serde_json::from_slice::<CheckReply>(&out) {
        Ok(CheckReply::Outcome {
            mut outcomes,
            isolation,
        }) if outcomes.len() == req.ids.len()
            && outcomes.iter().zip(&req.ids).all(|(o, id)| o.id == *id) =>
        {
            outcomes.iter_mut().for_each(Outcome::sanitize);
            (outcomes, isolation)
        }
        Ok(CheckReply::Outcome { .. }) => {
            error("the check process answered for other checks than it was asked".into())
        }
        Ok(CheckReply::Error(e)) => error(e.to_string()),
        Err(_) => error(format!(
            "the check process ended ({}) without a result: {}",
            status
                .map(|s| super::sut::Exit::from(s).to_string())
                .unwrap_or_else(|e| e.to_string()),
            String::from_utf8_lossy(&err).trim()
        )),
    }
}

/// The body of `poolgrade __check`: reads a [`CheckRequest`] from stdin, isolates itself as
/// its backend says, runs the check, prints a [`CheckReply`]. Returns the exit code.
pub fn check_main() -> i32 {
    // Die with the grader, and take the namespace's init with us.
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    // Nobody but root reads this process's memory, environment or files.
    let _ = nix::sys::prctl::set_dumpable(false);
    let reply = (|| {
        let mut input = String::new();
        std::io::stdin()
            .read_to_string(&mut input)
            .map_err(|e| IsolationError::setup("reading the request", e))?;
        let req: CheckRequest = serde_json::from_str(&input)
            .map_err(|e| IsolationError::setup("decoding the request", e))?;
        let exe = sandbox::own_exe();
        let launcher: Box<dyn Launcher> = match &req.backend {
            Backend::Native | Backend::UserNamespace => {
                // First, while this process has a single thread.
                native::enter_namespaces()?;
                let launcher = NativeLauncher::new(exe.clone(), &req.backend)?;
                if req.backend == Backend::Native {
                    Cgroup::join_probe_group();
                }
                Box::new(launcher)
            }
            Backend::Unprivileged => Box::new(LocalLauncher::new(exe.clone(), true)?),
            Backend::Agent { ctl } => Box::new(
                super::agent::AgentLauncher::new(ctl.clone())
                    .map_err(|e| IsolationError::Agent(e.to_string()))?,
            ),
        };
        let outcomes = checks::run_checks(
            &req.ids,
            launcher.as_ref(),
            &req.spec,
            &req.params,
            protocol::DEFAULT_KEY,
            Some(&exe),
        );
        Ok(CheckReply::Outcome {
            outcomes,
            isolation: launcher.isolation(),
        })
    })();
    let reply = reply.unwrap_or_else(CheckReply::Error);
    match serde_json::to_string(&reply) {
        Ok(s) => {
            println!("{s}");
            0
        }
        Err(_) => 1,
    }
}

/// Grades one stage: runs its checks, calls `on_event` as each starts and finishes, and
/// returns the report with outcomes in catalogue order.
pub fn run_stage(
    plan: &StagePlan,
    check_runner: &CheckRunner,
    on_event: &mut dyn FnMut(&Event),
) -> StageReport {
    run_plans(std::slice::from_ref(plan), check_runner, on_event)
        .pop()
        .expect("one report per plan")
}

/// The progress of one plan inside [`run_plans`].
struct Progress {
    outcomes: Vec<Option<Outcome>>,
    isolation: Vec<String>,
    left: usize,
    started: Option<Instant>,
}

/// Grades several stages at once: every check of every plan goes to one shared set of
/// [`CheckRunner::jobs`] slots (checks mostly wait on delays, so slots outnumber cores). Events
/// come in the order things happen: a plan's `StageStarted` before its first check, its
/// `StageFinished` after its last. Returns one complete report per plan, in the plans' order.
pub fn run_plans(
    plans: &[StagePlan],
    check_runner: &CheckRunner,
    on_event: &mut dyn FnMut(&Event),
) -> Vec<StageReport> {
    let mut progress: Vec<Progress> = plans
        .iter()
        .map(|p| Progress {
            outcomes: vec![None; p.checks.len()],
            isolation: Vec::new(),
            left: p.checks.len(),
            started: None,
        })
        .collect();
    let mut results: Vec<Option<StageReport>> = plans.iter().map(|_| None).collect();
    let finish = |k: usize,
                  progress: &mut Vec<Progress>,
                  results: &mut Vec<Option<StageReport>>,
                  on_event: &mut dyn FnMut(&Event)| {
        let plan = &plans[k];
        let pr = &mut progress[k];
        let mut outcomes: Vec<Outcome> = pr
            .outcomes
            .iter_mut()
            .zip(&plan.checks)
            .map(|(o, id)| {
                o.take()
                    .unwrap_or_else(|| Outcome::error(*id, "the check did not run", 0.0))
            })
            .collect();
        diagnosis::trace(&mut outcomes);
        let report = StageReport {
            submission: plan.submission.clone(),
            stage: plan.stage,
            command: plan.spec.command.clone(),
            outcomes,
            seconds: pr.started.map(|t| t.elapsed().as_secs_f64()).unwrap_or(0.0),
            isolation: pr.isolation.join(" | "),
        };
        on_event(&Event::StageFinished {
            report: report.clone(),
        });
        results[k] = Some(report);
    };
    let start_plan = |k: usize, progress: &mut Vec<Progress>, on_event: &mut dyn FnMut(&Event)| {
        if progress[k].started.is_none() {
            progress[k].started = Some(Instant::now());
            on_event(&Event::StageStarted {
                submission: plans[k].submission.clone(),
                stage: plans[k].stage,
                checks: plans[k].checks.clone(),
            });
        }
    };
    for (k, p) in plans.iter().enumerate() {
        if p.checks.is_empty() {
            start_plan(k, &mut progress, on_event);
            finish(k, &mut progress, &mut results, on_event);
        }
    }
    let todo: Vec<(usize, Vec<usize>)> = plans
        .iter()
        .enumerate()
        .flat_map(|(k, p)| p.units().into_iter().map(move |u| (k, u)))
        .collect();
    let (tx, rx) = mpsc::channel();
    let mut next = 0;
    let mut running = 0;
    while next < todo.len() || running > 0 {
        while running < check_runner.jobs && next < todo.len() {
            let (k, unit) = todo[next].clone();
            next += 1;
            start_plan(k, &mut progress, on_event);
            let ids = unit.iter().map(|&i| plans[k].checks[i]).collect();
            let req = plans[k].request(ids, &check_runner.backend);
            let (exe, tx, deadline) = (
                check_runner.exe.clone(),
                tx.clone(),
                plans[k].hard_deadline(),
            );
            std::thread::spawn(move || {
                let _ = tx.send((k, unit, run_isolated(&exe, &req, deadline)));
            });
            running += 1;
        }
        let Ok((k, unit, (outcomes, isolation))) = rx.recv() else {
            break;
        };
        running -= 1;
        for (i, outcome) in unit.into_iter().zip(outcomes) {
            on_event(&Event::CheckFinished {
                submission: plans[k].submission.clone(),
                stage: plans[k].stage,
                outcome: outcome.clone(),
            });
            progress[k].outcomes[i] = Some(outcome);
            progress[k].left -= 1;
        }
        if !isolation.is_empty() && !progress[k].isolation.contains(&isolation) {
            progress[k].isolation.push(isolation);
        }
        if progress[k].left == 0 {
            finish(k, &mut progress, &mut results, on_event);
        }
    }
    results
        .into_iter()
        .zip(plans)
        .map(|(r, p)| {
            r.unwrap_or_else(|| StageReport {
                submission: p.submission.clone(),
                stage: p.stage,
                command: p.spec.command.clone(),
                outcomes: p
                    .checks
                    .iter()
                    .map(|id| Outcome::error(*id, "the stage did not finish", 0.0))
                    .collect(),
                seconds: 0.0,
                isolation: String::new(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(params: CheckParams) -> StagePlan {
        StagePlan {
            submission: "alice".into(),
            stage: Stage::Pool,
            spec: LaunchSpec::new("/submissions/alice", vec!["python3".into()]),
            params,
            checks: Stage::Pool.checks().to_vec(),
        }
    }

    #[test]
    fn the_hard_deadline_grows_with_the_delay_and_the_clients() {
        let base = CheckParams::default();
        let deadline = |p: CheckParams| plan(p).hard_deadline();
        let at_default = deadline(base.clone());
        // 30 s + 4 × (5 s + 5 s) + 3 × max(4 × 3 workers, 24 clients) × 0.4 s.
        assert_eq!(
            at_default,
            Duration::from_secs_f64(30.0 + 40.0 + 3.0 * 24.0 * 0.4)
        );
        let slower = deadline(CheckParams {
            delay: Duration::from_secs(1),
            ..base.clone()
        });
        let more_clients = deadline(CheckParams {
            clients: 48,
            ..base.clone()
        });
        assert!(slower > at_default, "{slower:?} vs {at_default:?}");
        assert!(
            more_clients > at_default,
            "{more_clients:?} vs {at_default:?}"
        );
        let no_delay = deadline(CheckParams {
            delay: Duration::ZERO,
            ..base
        });
        assert_eq!(no_delay, Duration::from_secs(70));
    }
}
