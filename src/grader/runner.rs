//! Runs a stage's checks, each against a fresh server, and emits events as they finish.
//!
//! Natively every check runs in a child process of its own (`poolgrade __check`), inside
//! fresh namespaces (see [`super::sandbox`]), so checks of one stage run side by side and a
//! check that goes wrong cannot touch another. The child gets a [`CheckRequest`] on stdin and
//! prints one JSON [`Outcome`]; the runner kills it at a hard deadline. In container mode the
//! checks run in this process, one at a time, through the agent's launcher.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::checks::{self, CheckParams};
use super::outcome::{CheckId, Event, Outcome, Stage, StageReport, Status};
use super::sandbox::{self, NativeLauncher, CHECK_SUBCOMMAND};
use super::sut::{LaunchSpec, Launcher};

/// What a `__check` child is asked to do (JSON on its stdin).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckRequest {
    /// The check.
    pub id: CheckId,
    /// The stage.
    pub stage: Stage,
    /// The server.
    pub spec: LaunchSpec,
    /// Queue key.
    pub key: i32,
    /// Work delay, seconds.
    pub delay: f64,
    /// Pool size.
    pub workers: usize,
    /// Routing clients.
    pub clients: usize,
    /// Start deadline, seconds.
    pub start_timeout: f64,
    /// Stop deadline, seconds.
    pub stop_timeout: f64,
}

impl CheckRequest {
    fn params(&self, client_exe: Option<PathBuf>) -> CheckParams {
        CheckParams {
            stage: self.stage,
            key: self.key,
            delay: self.delay,
            workers: self.workers,
            clients: self.clients,
            start_timeout: Duration::from_secs_f64(self.start_timeout),
            stop_timeout: Duration::from_secs_f64(self.stop_timeout),
            client_exe,
        }
    }
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
    /// Check parameters.
    pub params: CheckParams,
    /// The checks to run, in report order.
    pub checks: Vec<CheckId>,
}

impl StagePlan {
    fn request(&self, id: CheckId) -> CheckRequest {
        let p = &self.params;
        CheckRequest {
            id,
            stage: self.stage,
            spec: self.spec.clone(),
            key: p.key,
            delay: p.delay,
            workers: p.workers,
            clients: p.clients,
            start_timeout: p.start_timeout.as_secs_f64(),
            stop_timeout: p.stop_timeout.as_secs_f64(),
        }
    }

    /// The longest a single check may take before the runner kills it: every wait inside a
    /// check has its own deadline, so this only catches a grader fault or a frozen machine.
    pub fn hard_deadline(&self) -> Duration {
        let p = &self.params;
        let waves = (4 * p.workers.max(1)).max(p.clients) as f64;
        Duration::from_secs_f64(
            30.0 + 4.0 * (p.start_timeout.as_secs_f64() + p.stop_timeout.as_secs_f64())
                + 3.0 * waves * p.delay,
        )
    }
}

/// Where the checks run.
pub enum Executor {
    /// Each check in its own `__check` child process and namespaces (needs root or
    /// unprivileged user namespaces). `exe` is this program.
    Native {
        /// Path of the `poolgrade` binary.
        exe: PathBuf,
        /// Most checks running at once.
        jobs: usize,
    },
    /// In this process, one at a time, through a launcher (the container agent's).
    InProcess {
        /// The launcher.
        launcher: Box<dyn Launcher>,
        /// A real-client program (`poolgrade`), if available.
        client_exe: Option<PathBuf>,
    },
}

fn internal_failure(id: CheckId, why: String, seconds: f64) -> Outcome {
    Outcome {
        id,
        status: Status::Failed,
        did: "ran the check in an isolated process".into(),
        expected: "the check completes".into(),
        observed: why,
        hint: Some(
            "this may be a grader fault; if it repeats, report it to the course staff".into(),
        ),
        seconds,
        server_output: None,
    }
}

/// Runs one check in a `__check` child, with a hard deadline. `Err` means the check could
/// not be isolated at all: nothing was graded.
fn run_native(
    exe: &std::path::Path,
    req: &CheckRequest,
    deadline: Duration,
) -> Result<Outcome, String> {
    let began = Instant::now();
    let fail = |why: String| Ok(internal_failure(req.id, why, began.elapsed().as_secs_f64()));
    let json = match serde_json::to_vec(req) {
        Ok(j) => j,
        Err(e) => return fail(format!("encoding the request: {e}")),
    };
    let mut child = match Command::new(exe)
        .arg(CHECK_SUBCOMMAND)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return Err(format!("starting {}: {e}", exe.display())),
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
            let _ = s.read_to_end(&mut out);
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
            return fail(format!(
                "the check did not finish within its hard deadline of {:.0} s and was killed",
                deadline.as_secs_f64()
            ));
        }
    };
    let status = child.wait();
    match serde_json::from_slice::<CheckReply>(&out) {
        Ok(CheckReply::Outcome(o)) => Ok(o),
        Ok(CheckReply::Error(e)) => Err(e),
        Err(_) => fail(format!(
            "the check process ended ({}) without a result: {}",
            status
                .map(|s| sandbox::exit_of(s).to_string())
                .unwrap_or_else(|e| e.to_string()),
            String::from_utf8_lossy(&err).trim()
        )),
    }
}

/// What a `__check` child prints.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckReply {
    /// The check ran.
    Outcome(Outcome),
    /// The check could not run (isolation failed): the stage cannot be graded.
    Error(String),
}

/// The body of `poolgrade __check`: enters fresh namespaces, reads a [`CheckRequest`] from
/// stdin, runs it, prints a [`CheckReply`]. Returns the exit code.
pub fn check_main() -> i32 {
    // Die with the grader, and take the namespace's init with us.
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    let reply = (|| {
        let isolation = sandbox::enter_namespaces().map_err(|e| e.to_string())?;
        if matches!(isolation, sandbox::Isolation::Root { .. }) {
            sandbox::Cgroup::join_probe_group();
        }
        let mut input = String::new();
        std::io::stdin()
            .read_to_string(&mut input)
            .map_err(|e| format!("reading the request: {e}"))?;
        let req: CheckRequest =
            serde_json::from_str(&input).map_err(|e| format!("bad request: {e}"))?;
        let exe = sandbox::own_exe();
        let launcher = NativeLauncher::new(exe.clone(), isolation);
        let params = req.params(Some(exe));
        checks::run_check(req.id, &launcher, &req.spec, &params)
    })();
    let reply = match reply {
        Ok(o) => CheckReply::Outcome(o),
        Err(e) => CheckReply::Error(e),
    };
    match serde_json::to_string(&reply) {
        Ok(s) => {
            println!("{s}");
            0
        }
        Err(_) => 1,
    }
}

/// Why a stage could not be graded at all (as opposed to checks that failed).
#[derive(Debug, thiserror::Error)]
#[error("cannot grade {submission} ({stage}): {reason}")]
pub struct GradeError {
    /// The submission.
    pub submission: String,
    /// The stage.
    pub stage: Stage,
    /// Why.
    pub reason: String,
}

/// Grades one stage: runs its checks (in parallel natively), calls `on_event` as each
/// starts and finishes, and returns the report with outcomes in catalogue order.
pub fn run_stage(
    plan: &StagePlan,
    executor: &Executor,
    on_event: &mut dyn FnMut(&Event),
) -> Result<StageReport, GradeError> {
    run_plans(std::slice::from_ref(plan), executor, on_event)
        .pop()
        .unwrap_or_else(|| {
            Err(GradeError {
                submission: plan.submission.clone(),
                stage: plan.stage,
                reason: "nothing ran".into(),
            })
        })
}

/// The progress of one plan inside [`run_plans`].
struct Progress {
    outcomes: Vec<Option<Outcome>>,
    left: usize,
    started: Option<Instant>,
    fatal: Option<String>,
}

/// Grades several stages at once. Natively, every check of every plan goes to one shared set
/// of `jobs` worker slots (checks mostly wait on delays, so slots outnumber cores); in
/// process, plans and checks run one at a time. Events come in the order things happen:
/// a plan's `StageStarted` before its first check, its `StageFinished` after its last.
/// Returns one result per plan, in the plans' order.
pub fn run_plans(
    plans: &[StagePlan],
    executor: &Executor,
    on_event: &mut dyn FnMut(&Event),
) -> Vec<Result<StageReport, GradeError>> {
    let mut progress: Vec<Progress> = plans
        .iter()
        .map(|p| Progress {
            outcomes: vec![None; p.checks.len()],
            left: p.checks.len(),
            started: None,
            fatal: None,
        })
        .collect();
    let mut results: Vec<Option<Result<StageReport, GradeError>>> =
        plans.iter().map(|_| None).collect();
    let mut finish = |k: usize, progress: &mut Vec<Progress>, on_event: &mut dyn FnMut(&Event)| {
        let plan = &plans[k];
        let pr = &mut progress[k];
        let result = match pr.fatal.take() {
            Some(reason) => Err(GradeError {
                submission: plan.submission.clone(),
                stage: plan.stage,
                reason,
            }),
            None => {
                let outcomes = pr
                    .outcomes
                    .iter_mut()
                    .zip(&plan.checks)
                    .map(|(o, id)| {
                        o.take().unwrap_or_else(|| {
                            internal_failure(*id, "the check did not run".into(), 0.0)
                        })
                    })
                    .collect();
                let report = StageReport {
                    submission: plan.submission.clone(),
                    stage: plan.stage,
                    command: plan.spec.command.clone(),
                    outcomes,
                    seconds: pr.started.map(|t| t.elapsed().as_secs_f64()).unwrap_or(0.0),
                };
                on_event(&Event::StageFinished {
                    report: report.clone(),
                });
                Ok(report)
            }
        };
        results[k] = Some(result);
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
    match executor {
        Executor::Native { exe, jobs } => {
            let todo: Vec<(usize, usize)> = plans
                .iter()
                .enumerate()
                .flat_map(|(k, p)| (0..p.checks.len()).map(move |i| (k, i)))
                .collect();
            let (tx, rx) = mpsc::channel();
            let mut next = 0;
            let mut running = 0;
            let jobs = (*jobs).max(1);
            for (k, p) in plans.iter().enumerate() {
                if p.checks.is_empty() {
                    start_plan(k, &mut progress, on_event);
                    finish(k, &mut progress, on_event);
                }
            }
            while next < todo.len() || running > 0 {
                while running < jobs && next < todo.len() {
                    let (k, i) = todo[next];
                    next += 1;
                    if progress[k].fatal.is_some() {
                        progress[k].left -= 1;
                        if progress[k].left == 0 {
                            finish(k, &mut progress, on_event);
                        }
                        continue;
                    }
                    start_plan(k, &mut progress, on_event);
                    let req = plans[k].request(plans[k].checks[i]);
                    let (exe, tx, deadline) = (exe.clone(), tx.clone(), plans[k].hard_deadline());
                    std::thread::spawn(move || {
                        let _ = tx.send((k, i, run_native(&exe, &req, deadline)));
                    });
                    running += 1;
                }
                if running == 0 {
                    continue;
                }
                let Ok((k, i, result)) = rx.recv() else { break };
                running -= 1;
                match result {
                    Ok(outcome) => {
                        on_event(&Event::CheckFinished {
                            submission: plans[k].submission.clone(),
                            stage: plans[k].stage,
                            outcome: outcome.clone(),
                        });
                        progress[k].outcomes[i] = Some(outcome);
                    }
                    Err(reason) => {
                        progress[k].fatal.get_or_insert(reason);
                    }
                }
                progress[k].left -= 1;
                if progress[k].left == 0 {
                    finish(k, &mut progress, on_event);
                }
            }
        }
        Executor::InProcess {
            launcher,
            client_exe,
        } => {
            for (k, plan) in plans.iter().enumerate() {
                start_plan(k, &mut progress, on_event);
                for (i, id) in plan.checks.iter().enumerate() {
                    let mut params = plan.params.clone();
                    params.client_exe = client_exe.clone();
                    match checks::run_check(*id, launcher.as_ref(), &plan.spec, &params) {
                        Ok(outcome) => {
                            on_event(&Event::CheckFinished {
                                submission: plan.submission.clone(),
                                stage: plan.stage,
                                outcome: outcome.clone(),
                            });
                            progress[k].outcomes[i] = Some(outcome);
                        }
                        Err(reason) => {
                            progress[k].fatal.get_or_insert(reason);
                            break;
                        }
                    }
                }
                finish(k, &mut progress, on_event);
            }
        }
    }
    results
        .into_iter()
        .zip(plans)
        .map(|(r, p)| {
            r.unwrap_or_else(|| {
                Err(GradeError {
                    submission: p.submission.clone(),
                    stage: p.stage,
                    reason: "the stage did not finish".into(),
                })
            })
        })
        .collect()
}
