//! `poolgrade`: the black-box grader's command line. The logic lives in the library
//! (`poolgrade::grader`); this file parses arguments, picks reporters and maps the result to
//! an exit code.

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use poolgrade::grader::agent::{self, AgentLauncher, AgentOptions};
use poolgrade::grader::batch::{self, BatchOutcome};
use poolgrade::grader::outcome::Stage;
use poolgrade::grader::report::{HumanReporter, JsonLinesReporter, Reporter, Tee};
use poolgrade::grader::rubric::Rubric;
use poolgrade::grader::runner::{self, Executor};
use poolgrade::grader::{checks, sandbox};

const AFTER_HELP: &str = "\
Exit codes:
  0  every check passed
  1  at least one check failed
  2  could not grade at all (bad arguments, rubric error, command not found, no isolation)";

#[derive(Parser)]
#[command(
    name = "poolgrade",
    version,
    about = "Black-box grader for the Session 4 SysV time servers (thread per request and thread pool)",
    after_help = AFTER_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// A readable summary.
    Human,
    /// One JSON object per event (JSON Lines).
    Json,
}

#[derive(clap::Args)]
struct Common {
    /// Rubric file (TOML); without it the documented defaults apply.
    #[arg(long)]
    rubric: Option<PathBuf>,
    /// Folder for results.json (Gradescope), junit.xml, classroom.json, prairielearn.json.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Output on stdout.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
    /// Most checks running at once (natively, each in its own sandbox).
    #[arg(long, default_value_t = default_jobs())]
    jobs: usize,
    /// Grade through the container agent whose control folder is this (container mode).
    #[arg(long, value_name = "CTL")]
    agent: Option<PathBuf>,
}

fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()) * 8
}

#[derive(Subcommand)]
enum Cmd {
    /// Grade one stage of one server command.
    #[command(after_help = AFTER_HELP)]
    Check {
        /// The stage: spawn (a thread per request) or pool (a thread pool).
        #[arg(long)]
        stage: Stage,
        /// Pool size given to the server as TIMESERVER_WORKERS (at least 2) [default: 3, or
        /// the rubric's].
        #[arg(long)]
        workers: Option<u32>,
        /// Work delay in seconds given as TIMESERVER_DELAY in the timing checks [default:
        /// 0.4, or the rubric's].
        #[arg(long)]
        delay: Option<f64>,
        /// The folder the server runs in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        #[command(flatten)]
        common: Common,
        /// The server command, for example `python3 server_pool.py`.
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Grade submission folders with a rubric: both stages each, in parallel.
    #[command(after_help = AFTER_HELP)]
    Grade {
        #[command(flatten)]
        common: Common,
        /// Submission folders.
        #[arg(required = true, value_name = "SUBMISSION")]
        submissions: Vec<PathBuf>,
    },
    /// Run the container agent that starts servers for a grader in another container.
    Agent {
        /// The shared control folder.
        #[arg(long, default_value = "/run/poolgrade")]
        ctl: PathBuf,
    },
    #[command(name = "__check", hide = true)]
    InternalCheck,
    #[command(name = "__init", hide = true)]
    InternalInit { request: String },
    #[command(name = "__client", hide = true)]
    InternalClient {
        #[arg(long, default_value_t = 666)]
        key: i32,
        #[arg(long, default_value_t = 5.0)]
        timeout: f64,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let code = match cli.command {
        Cmd::InternalCheck => runner::check_main(),
        Cmd::InternalInit { request } => sandbox::init_main(&request),
        Cmd::InternalClient { key, timeout } => {
            checks::client_main(key, std::time::Duration::from_secs_f64(timeout.max(0.0)))
        }
        Cmd::Agent { ctl } => match agent::serve(&ctl, AgentOptions::container()) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("poolgrade agent: {e}");
                2
            }
        },
        Cmd::Check {
            stage,
            workers,
            delay,
            dir,
            common,
            command,
        } => report_errors(check(stage, workers, delay, dir, common, command)),
        Cmd::Grade {
            common,
            submissions,
        } => report_errors(grade(common, submissions)),
    };
    ExitCode::from(code.clamp(0, 255) as u8)
}

fn report_errors(result: Result<u8>) -> i32 {
    match result {
        Ok(code) => code as i32,
        Err(e) => {
            eprintln!("poolgrade: {e:#}");
            2
        }
    }
}

fn load_rubric(path: &Option<PathBuf>) -> Result<Rubric> {
    match path {
        Some(p) => Ok(Rubric::from_path(p)?),
        None => Ok(Rubric::default()),
    }
}

fn executor(common: &Common) -> Result<Executor> {
    let exe = poolgrade::grader::sandbox::own_exe();
    match &common.agent {
        Some(ctl) => {
            let launcher = AgentLauncher::new(ctl.clone())
                .with_context(|| format!("connecting to the agent at {}", ctl.display()))?;
            Ok(Executor::InProcess {
                launcher: Box::new(launcher),
                client_exe: Some(exe),
            })
        }
        None => Ok(Executor::Native {
            exe,
            jobs: common.jobs.max(1),
        }),
    }
}

/// Fails early, with exit code 2, when a stage's program cannot be found.
fn preflight(rubric: &Rubric, commands: &[(Stage, Vec<String>)]) -> Result<()> {
    if rubric.params.workers < 2 {
        bail!("workers must be at least 2 (a pool of one cannot show concurrency)");
    }
    let path = std::env::var("PATH").unwrap_or_default();
    for (stage, command) in commands {
        let Some(program) = command.first() else {
            bail!("the {stage} stage has an empty command");
        };
        if program.contains('/') && !program.starts_with('/') {
            continue; // relative to each submission folder: checked when it runs
        }
        sandbox::resolve_program(program, &path, false)
            .with_context(|| format!("the {stage} stage's command"))?;
    }
    Ok(())
}

fn reporter(format: Format) -> Tee {
    let tee = Tee::new();
    match format {
        Format::Human => tee.with(Box::new(HumanReporter::auto(io::stdout()))),
        Format::Json => tee.with(Box::new(JsonLinesReporter::new(io::stdout()))),
    }
}

fn finish(
    outcome: &BatchOutcome,
    rubric: &Rubric,
    out: &Option<PathBuf>,
    batch: bool,
) -> Result<u8> {
    if let Some(out) = out {
        batch::write_results(out, outcome, rubric, batch)
            .with_context(|| format!("writing results under {}", out.display()))?;
    }
    for e in &outcome.errors {
        eprintln!("poolgrade: {e}");
    }
    Ok(outcome.exit_code())
}

fn check(
    stage: Stage,
    workers: Option<u32>,
    delay: Option<f64>,
    dir: PathBuf,
    common: Common,
    command: Vec<String>,
) -> Result<u8> {
    let mut rubric = load_rubric(&common.rubric)?;
    if let Some(w) = workers {
        rubric.params.workers = w;
    }
    if let Some(d) = delay {
        if !(d.is_finite() && (0.0..=60.0).contains(&d)) {
            bail!("--delay must be between 0 and 60 seconds");
        }
        rubric.params.delay = std::time::Duration::from_secs_f64(d);
    }
    if !dir.is_dir() {
        bail!("submission folder {} does not exist", dir.display());
    }
    if common.agent.is_none() {
        preflight(&rubric, &[(stage, command.clone())])?;
    }
    let exec = executor(&common)?;
    let mut plan = batch::plan_for(&dir, stage, &rubric);
    plan.spec.command = command;
    let mut rep = reporter(common.format);
    let mut outcome = BatchOutcome::default();
    match runner::run_stage(&plan, &exec, &mut |e| {
        let _ = rep.on_event(e);
    }) {
        Ok(r) => outcome.reports.push(r),
        Err(e) => outcome.errors.push(e),
    }
    let _ = rep.finish();
    finish(&outcome, &rubric, &common.out, false)
}

fn grade(common: Common, submissions: Vec<PathBuf>) -> Result<u8> {
    let rubric = load_rubric(&common.rubric)?;
    let mut folders = Vec::new();
    for path in submissions {
        if path.is_dir() {
            folders.push(path);
        } else if path.exists() {
            // A shell glob such as `samples/*` also matches files: say so and go on.
            eprintln!("poolgrade: skipping {}: not a folder", path.display());
        } else {
            bail!("submission folder {} does not exist", path.display());
        }
    }
    if folders.is_empty() {
        bail!("no submission folder to grade");
    }
    let submissions = folders;
    if common.agent.is_none() {
        let commands: Vec<_> = rubric
            .enabled_stages()
            .into_iter()
            .map(|s| (s, rubric.command(s).to_vec()))
            .collect();
        preflight(&rubric, &commands)?;
    }
    let exec = executor(&common)?;
    let stages = submissions.len() * rubric.enabled_stages().len();
    let mut rep = reporter(common.format).with(Box::new(batch::ProgressLine::new(stages)));
    let outcome = batch::grade(&submissions, &rubric, &exec, &mut rep);
    let out = common
        .out
        .clone()
        .or_else(|| Some(PathBuf::from("results")));
    finish(&outcome, &rubric, &out, true)
}
