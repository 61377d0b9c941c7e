//! `poolgrade`: the black-box grader's command line. The logic lives in the library
//! (`poolgrade::grader`); this file parses arguments, picks reporters and maps the result to
//! an exit code.

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use poolgrade::grader::agent::{self, AgentOptions};
use poolgrade::grader::batch::{self, BatchOutcome};
use poolgrade::grader::checks;
use poolgrade::grader::outcome::Stage;
use poolgrade::grader::report::{HumanReporter, JsonLinesReporter, Reporter, Tee};
use poolgrade::grader::rubric::Rubric;
use poolgrade::grader::runner::{self, Executor};
use poolgrade::grader::sandbox::{self, enter, local, native, Backend};

const AFTER_HELP: &str = "\
Exit codes:
  0  every check passed
  1  at least one check failed
  2  could not grade: bad arguments, rubric error, command not found, no isolation, or a
     check that could not run (reported as an error, worth 0 of its points)";

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

/// How servers are isolated (see SECURITY.md).
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Isolation {
    /// The strongest this process can have: native as root, user namespaces for an ordinary
    /// user, unprivileged for root without CAP_SYS_ADMIN (a container).
    Auto,
    /// Namespaces, a minimal root, a leased uid, a cgroup (root, CAP_SYS_ADMIN).
    Native,
    /// The native sandbox inside a user namespace (an ordinary user).
    UserNamespace,
    /// A leased uid and no namespaces, one check at a time (root without CAP_SYS_ADMIN).
    Unprivileged,
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
    /// Most checks running at once (natively; the other backends grade one at a time).
    #[arg(long, default_value_t = default_jobs())]
    jobs: usize,
    /// How to isolate the servers.
    #[arg(long, value_enum, default_value_t = Isolation::Auto)]
    isolation: Isolation,
    /// Grade through the container agent whose control folder is this (container mode).
    #[arg(long, value_name = "CTL", conflicts_with = "isolation")]
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
        /// The folder the server runs in (copied into the sandbox).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        #[command(flatten)]
        common: Common,
        /// The server command, for example `python3 server_pool.py`.
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Grade submission folders with a rubric: every stage of each, in parallel.
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
        #[arg(long, default_value = "/run/poolgrade-ctl")]
        ctl: PathBuf,
    },
    #[command(name = "__check", hide = true)]
    InternalCheck,
    #[command(name = "__init", hide = true)]
    InternalInit,
    #[command(name = "__enter", hide = true)]
    InternalEnter,
    #[command(name = "__reap", hide = true)]
    InternalReap,
    #[command(name = "__probe", hide = true)]
    InternalProbe,
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
        Cmd::InternalInit => native::init_main(),
        Cmd::InternalEnter => enter::enter_main(),
        Cmd::InternalReap => local::reap_main(),
        Cmd::InternalProbe => native::probe_main(),
        Cmd::InternalClient { key, timeout } => {
            checks::client_main(key, std::time::Duration::from_secs_f64(timeout.max(0.0)))
        }
        Cmd::Agent { ctl } => match agent::serve(&ctl, AgentOptions::default()) {
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

fn backend(common: &Common) -> Result<Backend> {
    if let Some(ctl) = &common.agent {
        return Ok(Backend::Agent { ctl: ctl.clone() });
    }
    Ok(match common.isolation {
        Isolation::Auto => Backend::detect()?,
        Isolation::Native => Backend::Native,
        Isolation::UserNamespace => Backend::UserNamespace,
        Isolation::Unprivileged => Backend::Unprivileged,
    })
}

/// The executor for these options; with the unprivileged backend, only once the rubric and
/// the submissions are out of the servers' reach.
fn executor(common: &Common, submissions: &[PathBuf]) -> Result<Executor> {
    let backend = backend(common)?;
    if backend == Backend::Unprivileged {
        local::check_exposure(common.rubric.as_deref(), submissions)?;
    }
    Ok(Executor::new(sandbox::own_exe(), common.jobs, backend))
}

/// Fails early, with exit code 2, when a stage's program cannot be found on the sandbox's
/// `PATH` (a path relative to each submission is checked when it runs).
fn preflight(rubric: &Rubric, commands: &[(Stage, Vec<String>)]) -> Result<()> {
    if rubric.params.workers < 2 {
        bail!("workers must be at least 2 (a pool of one cannot show concurrency)");
    }
    let path = &rubric.sandbox.path;
    for (stage, command) in commands {
        let Some(program) = command.first() else {
            bail!("the {stage} stage has an empty command");
        };
        if program.contains('/') && !program.starts_with('/') {
            continue;
        }
        sandbox::program::resolve(program, path, std::path::Path::new("/"))
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
    for r in &outcome.reports {
        for o in r.outcomes.iter().filter(|o| o.is_error()) {
            eprintln!(
                "poolgrade: {} {} {}: {}",
                r.submission, r.stage, o.id, o.observed
            );
        }
    }
    Ok(outcome.exit_code())
}

/// The grader's own paths that no sandbox may show: the rubric, the results folder, and
/// the folders that hold the submissions.
fn hidden_paths(
    rubric: &Option<PathBuf>,
    out: &Option<PathBuf>,
    submissions: &[PathBuf],
) -> Vec<PathBuf> {
    let mut hidden: Vec<PathBuf> = rubric.iter().chain(out.iter()).cloned().collect();
    hidden.extend(
        submissions
            .iter()
            .filter_map(|s| s.parent().map(PathBuf::from)),
    );
    hidden
        .into_iter()
        .filter_map(|p| std::fs::canonicalize(&p).ok().or(Some(p)))
        .filter(|p| p.is_absolute() && p != std::path::Path::new("/"))
        .collect()
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
    let exec = executor(&common, std::slice::from_ref(&dir))?;
    let hidden = hidden_paths(&common.rubric, &common.out, &[]);
    let mut plan = batch::plan_for(&dir, stage, &rubric, &hidden);
    plan.spec.command = command;
    let mut rep = reporter(common.format);
    let report = runner::run_stage(&plan, &exec, &mut |e| {
        let _ = rep.on_event(e);
    });
    let _ = rep.finish();
    let outcome = BatchOutcome {
        reports: vec![report],
    };
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
    if common.agent.is_none() {
        let commands: Vec<_> = rubric
            .enabled_stages()
            .into_iter()
            .map(|s| (s, rubric.command(s).to_vec()))
            .collect();
        preflight(&rubric, &commands)?;
    }
    let exec = executor(&common, &folders)?;
    let out = common
        .out
        .clone()
        .or_else(|| Some(PathBuf::from("results")));
    let hidden = hidden_paths(&common.rubric, &out, &folders);
    let stages = folders.len() * rubric.enabled_stages().len();
    let mut rep = reporter(common.format).with(Box::new(batch::ProgressLine::new(stages)));
    let outcome = batch::grade(&folders, &rubric, &hidden, &exec, &mut rep);
    finish(&outcome, &rubric, &out, true)
}
