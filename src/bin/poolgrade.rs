//! `poolgrade`: the black-box grader's command line. The logic lives in the library
//! (`poolgrade::grader`); this file parses arguments, picks reporters and maps the result to
//! an exit code.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use poolgrade::grader::agent::{self, AgentLauncher, AgentOptions};
use poolgrade::grader::batch::{self, BatchOutcome, Shard, ShardError, ShardRecord};
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

const MERGE_AFTER_HELP: &str = "\
Exit codes:
  0  every check passed
  1  at least one check failed
  2  a stage could not be graded, a check is in no shard's events, a shard failed or left
     no events, or the files cannot be read";

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
        /// Grade only share I of K of the batch (1-based, e.g. 2/3): the checks whose index
        /// in the whole batch, counted from 0, is I-1 modulo K. Needs --events; writes no
        /// result files (`poolgrade merge` does, from every shard's events).
        #[arg(long, value_name = "I/K", requires = "events")]
        shard: Option<Shard>,
        /// Also write the events as JSON Lines to FILE (with --shard, between a
        /// shard-started and a shard-finished or shard-failed line). Written beside FILE
        /// and renamed to it when grading ends: once FILE exists, it is complete.
        #[arg(long, value_name = "FILE")]
        events: Option<PathBuf>,
        /// Submission folders.
        #[arg(required = true, value_name = "SUBMISSION")]
        submissions: Vec<PathBuf>,
    },
    /// Merge the events files of `grade --shard` runs into one batch: print the report and
    /// write the same result files as `grade`.
    #[command(after_help = MERGE_AFTER_HELP)]
    Merge {
        /// Rubric file (TOML), for the weights; the one the shards graded with.
        #[arg(long)]
        rubric: Option<PathBuf>,
        /// Folder for each submission's result files and gradebook.csv.
        #[arg(long, default_value = "results")]
        out: PathBuf,
        /// Output on stdout.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        /// Also write the merged events as JSON Lines to FILE.
        #[arg(long, value_name = "FILE")]
        events: Option<PathBuf>,
        /// Wait up to this many seconds for every events file to appear.
        #[arg(long, value_name = "SECS", default_value_t = 0.0)]
        wait: f64,
        /// The shards' events files (`grade --shard I/K --events FILE`), one per shard.
        #[arg(required = true, value_name = "EVENTS")]
        files: Vec<PathBuf>,
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
            shard,
            events,
            submissions,
        } => report_errors(grade(common, shard, events, submissions)),
        Cmd::Merge {
            rubric,
            out,
            format,
            events,
            wait,
            files,
        } => report_errors(merge(rubric, out, format, events, wait, files)),
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

/// A JSON Lines file written under a temporary name beside its path and renamed into place
/// by [`EventsFile::commit`], so whoever waits for the path never reads half of it.
struct EventsFile {
    path: PathBuf,
    tmp: PathBuf,
    file: SharedFile,
}

/// A file several writers append to (the events reporter and the shard records).
#[derive(Clone)]
struct SharedFile(Arc<Mutex<io::BufWriter<File>>>);

impl Write for SharedFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| io::Error::other("poisoned lock"))?
            .write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0
            .lock()
            .map_err(|_| io::Error::other("poisoned lock"))?
            .flush()
    }
}

impl EventsFile {
    fn create(path: &Path) -> Result<Self> {
        let name = path
            .file_name()
            .with_context(|| format!("--events {}: names no file", path.display()))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the folder {}", dir.display()))?;
        }
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(".partial");
        let tmp = path.with_file_name(tmp_name);
        let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        Ok(Self {
            path: path.to_owned(),
            tmp,
            file: SharedFile(Arc::new(Mutex::new(io::BufWriter::new(file)))),
        })
    }

    fn reporter(&self) -> JsonLinesReporter<SharedFile> {
        JsonLinesReporter::new(self.file.clone())
    }

    fn record(&self, record: &ShardRecord) -> Result<()> {
        let mut w = self.file.clone();
        serde_json::to_writer(&mut w, record).context("encoding a shard record")?;
        w.write_all(b"\n")
            .and_then(|()| w.flush())
            .with_context(|| format!("writing {}", self.tmp.display()))
    }

    fn commit(self) -> Result<()> {
        let mut w = self.file.clone();
        w.flush()
            .with_context(|| format!("writing {}", self.tmp.display()))?;
        std::fs::rename(&self.tmp, &self.path)
            .with_context(|| format!("renaming {} to {}", self.tmp.display(), self.path.display()))
    }
}

fn grade(
    common: Common,
    shard: Option<Shard>,
    events: Option<PathBuf>,
    submissions: Vec<PathBuf>,
) -> Result<u8> {
    let sink = events.as_deref().map(EventsFile::create).transpose()?;
    let result = grade_batch(common, shard, sink.as_ref(), submissions);
    if let Some(sink) = sink {
        if let (Err(e), Some(shard)) = (&result, shard) {
            sink.record(&ShardRecord::ShardFailed {
                shard,
                reason: format!("{e:#}"),
            })?;
        }
        sink.commit()?;
    }
    result
}

fn grade_batch(
    common: Common,
    shard: Option<Shard>,
    sink: Option<&EventsFile>,
    submissions: Vec<PathBuf>,
) -> Result<u8> {
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
    if let (Some(shard), Some(sink)) = (shard, sink) {
        sink.record(&ShardRecord::ShardStarted {
            shard,
            stages: batch::batch_stages(&submissions, &rubric),
        })?;
    }
    let exec = executor(&common)?;
    let stages = submissions.len() * rubric.enabled_stages().len();
    let mut rep = reporter(common.format).with(Box::new(batch::ProgressLine::new(stages)));
    if let Some(sink) = sink {
        rep.push(Box::new(sink.reporter()));
    }
    let outcome = batch::grade_shard(&submissions, &rubric, &exec, &mut rep, shard);
    if let (Some(shard), Some(sink)) = (shard, sink) {
        // A share's reports are partial: `poolgrade merge` writes the result files.
        sink.record(&ShardRecord::ShardFinished {
            shard,
            errors: outcome
                .errors
                .iter()
                .map(|e| ShardError {
                    submission: e.submission.clone(),
                    stage: e.stage,
                    reason: e.reason.clone(),
                })
                .collect(),
        })?;
        return finish(&outcome, &rubric, &None, true);
    }
    let out = common
        .out
        .clone()
        .or_else(|| Some(PathBuf::from("results")));
    finish(&outcome, &rubric, &out, true)
}

fn merge(
    rubric: Option<PathBuf>,
    out: PathBuf,
    format: Format,
    events: Option<PathBuf>,
    wait: f64,
    files: Vec<PathBuf>,
) -> Result<u8> {
    if !(wait.is_finite() && (0.0..=86_400.0).contains(&wait)) {
        bail!("--wait must be between 0 and 86400 seconds");
    }
    let rubric = load_rubric(&rubric)?;
    let deadline = Instant::now() + Duration::from_secs_f64(wait);
    while !files.iter().all(|f| f.exists()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut texts = Vec::new();
    let mut missing = Vec::new();
    for f in &files {
        let name = f.display().to_string();
        match std::fs::read(f) {
            Ok(bytes) => texts.push((name, String::from_utf8_lossy(&bytes).into_owned())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => missing.push(name),
            Err(e) => return Err(e).with_context(|| format!("reading {name}")),
        }
    }
    let merged = batch::merge_shards(&texts, &missing, &rubric)?;
    let sink = events.as_deref().map(EventsFile::create).transpose()?;
    let mut rep = reporter(format);
    if let Some(sink) = &sink {
        rep.push(Box::new(sink.reporter()));
    }
    for report in &merged.outcome.reports {
        batch::replay(report, &mut rep);
    }
    let _ = rep.finish();
    if let Some(sink) = sink {
        sink.commit()?;
    }
    for p in &merged.shard_problems {
        eprintln!("poolgrade: {p}");
    }
    let code = finish(&merged.outcome, &rubric, &Some(out), true)?;
    Ok(code.max(merged.exit_code()))
}
