//! `poolgrade`: the black-box grader's command line. The logic lives in the library
//! (the `grader` crate); this file parses arguments, picks reporters and maps the result to
//! an exit code.

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use grader::agent::{self, AgentOptions};
use grader::batch::{self, BatchOutcome};
use grader::checks;
use grader::claims::{self, WorkDir};
use grader::outcome::Stage;
use grader::params::MAX_COUNT;
use grader::report::{self, HumanReporter, JsonLinesReporter, ProgressReporter, Reporter, Tee};
use grader::rubric::Rubric;
use grader::runner::{self, CheckRunner};
use grader::sandbox::{self, enter, local, native, Backend};
use grader::shard::{self, Shard};

const AFTER_HELP: &str = "\
Exit codes:
  0  every check passed
  1  at least one check failed
  2  could not grade: bad arguments, rubric error, command not found, no isolation, or a
     check that could not run (reported as an error, worth 0 of its points)";

const MERGE_HELP: &str = "\
Exit codes (those one `poolgrade grade` of the whole batch would have given):
  0  merged; every check passed (or the shards hold no submission)
  1  merged; at least one check failed
  2  could not merge (nothing written: a shard without gradebook.csv, a header or max_score
     that differs from the others', a row without its folder, a submission in two shards, an
     output folder that is not empty), could not write, or merged with a check that could
     not be graded";

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
struct GradingArgs {
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

#[derive(clap::Args)]
struct BatchArgs {
    /// Grade every folder of DIR, in name order; given several times, the first DIR that
    /// holds any folder (no submission path then shows on a command line).
    #[arg(long, value_name = "DIR")]
    all_in: Vec<PathBuf>,
    /// Submission folders.
    #[arg(value_name = "SUBMISSION", required_unless_present = "all_in")]
    submissions: Vec<PathBuf>,
}

impl BatchArgs {
    /// The submission folders: those given, or those of the first `--all-in` that has any.
    fn folders(self) -> Result<Vec<PathBuf>> {
        if !self.submissions.is_empty() {
            let mut folders = Vec::new();
            for path in self.submissions {
                if path.is_dir() {
                    folders.push(path);
                } else if path.exists() {
                    // A shell glob such as `samples/*` also matches files: say so, go on.
                    eprintln!("poolgrade: skipping {}: not a folder", path.display());
                } else {
                    bail!("submission folder {} does not exist", path.display());
                }
            }
            if folders.is_empty() {
                bail!("no submission folder to grade");
            }
            return Ok(folders);
        }
        for dir in &self.all_in {
            let found =
                claims::folders_in(dir).with_context(|| format!("listing {}", dir.display()))?;
            if !found.is_empty() {
                return Ok(found);
            }
        }
        bail!(
            "no submission folder in {}",
            self.all_in
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(" or ")
        )
    }
}

fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()) * 8
}

#[derive(Subcommand)]
enum Cmd {
    /// Grade one stage of one server command.
    #[command(after_help = AFTER_HELP)]
    Check {
        /// The stage: spawn (a thread per request), pool (a thread pool), or primes (Exercise
        /// 1: `-- python3 primes_pool.py`, run with the rubric's PRIMES_COUNT and
        /// PRIMES_WORKERS).
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
        common: GradingArgs,
        /// The server command, for example `python3 server_pool.py`.
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Grade submission folders with a rubric: every stage of each, in parallel.
    #[command(after_help = AFTER_HELP)]
    Grade {
        #[command(flatten)]
        common: GradingArgs,
        #[command(flatten)]
        batch: BatchArgs,
        /// Share the batch with other graders through this folder (see `collect`): claim
        /// one stage at a time, file its report there, and write no result files.
        #[arg(long, value_name = "DIR")]
        work: Option<PathBuf>,
        /// This grader's name in the work folder [default: the host name and pid].
        #[arg(long, requires = "work")]
        worker: Option<String>,
        /// Grade only shard INDEX of COUNT (0 <= INDEX < COUNT): the submissions, sorted by
        /// name, whose position is INDEX modulo COUNT. Every shard of a batch computes the
        /// same list, so COUNT graders (a Kubernetes Indexed Job passes
        /// $(JOB_COMPLETION_INDEX)) cover it once; join their --out folders with `merge`. A
        /// shard that holds no submission writes a gradebook with its header alone.
        #[arg(long, value_name = "INDEX/COUNT", conflicts_with = "work")]
        shard: Option<Shard>,
    },
    /// Join the --out folders of shards (`grade --shard`) into one: every submission's
    /// folder, and one gradebook.csv with every row in name order, as one run would write.
    #[command(after_help = MERGE_HELP)]
    Merge {
        /// The merged folder (new, or empty).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// The shards' result folders.
        #[arg(value_name = "SHARD_DIR", required = true)]
        shards: Vec<PathBuf>,
    },
    /// Wait until the collector of a work folder has written the results, keeping the agent
    /// company, then stop the agent: the last step of a grader container, run whether or
    /// not `grade --work` finished.
    Await {
        /// The work folder.
        #[arg(long, value_name = "DIR")]
        work: PathBuf,
        /// The agent's control folder: it is told a grader is here, then asked to leave.
        #[arg(long, value_name = "CTL")]
        agent: Option<PathBuf>,
        /// Give up after this many seconds.
        #[arg(long, value_name = "SECS", default_value_t = 3600)]
        wait: u64,
    },
    /// Collect a batch shared through a work folder (`grade --work`): wait for every stage,
    /// give up the stages whose grader died, print the report and write the result files.
    #[command(after_help = AFTER_HELP)]
    Collect {
        /// The work folder the graders share.
        #[arg(long, value_name = "DIR")]
        work: PathBuf,
        /// Rubric file (TOML): the one the graders use.
        #[arg(long)]
        rubric: Option<PathBuf>,
        /// Folder for each submission's result files and gradebook.csv.
        #[arg(long, default_value = "results")]
        out: PathBuf,
        /// Output on stdout.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        /// Also write every stage's events as JSON Lines to FILE.
        #[arg(long, value_name = "FILE")]
        events: Option<PathBuf>,
        /// Give up the stages still unfiled after this many seconds.
        #[arg(long, value_name = "SECS", default_value_t = 3600)]
        wait: u64,
        /// Give up everything when no grader has shown up after this many seconds.
        #[arg(long, value_name = "SECS", default_value_t = 300)]
        grace: u64,
        /// Give the result files to the owner of this path (a folder of the project, when
        /// the collector runs as root in a container and the results are bind-mounted).
        #[arg(long, value_name = "PATH")]
        owner_of: Option<PathBuf>,
        #[command(flatten)]
        batch: BatchArgs,
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
        #[arg(long)]
        as_uid: Option<u32>,
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
        Cmd::InternalClient {
            key,
            timeout,
            as_uid,
        } => checks::client_main(
            key,
            std::time::Duration::from_secs_f64(timeout.max(0.0)),
            as_uid,
        ),
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
            batch,
            work,
            worker,
            shard,
        } => report_errors(grade(common, batch, work, worker, shard)),
        Cmd::Merge { out, shards } => report_errors(merge(out, shards)),
        Cmd::Await { work, agent, wait } => report_errors(await_complete(work, agent, wait)),
        Cmd::Collect {
            work,
            rubric,
            out,
            format,
            events,
            wait,
            grace,
            owner_of,
            batch,
        } => report_errors(collect(
            work, rubric, out, format, events, wait, grace, owner_of, batch,
        )),
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

fn backend(common: &GradingArgs) -> Result<Backend> {
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

/// The check runner for these options; with the unprivileged backend, only once the rubric
/// and the submissions are out of the servers' reach.
fn check_runner_for(common: &GradingArgs, submissions: &[PathBuf]) -> Result<CheckRunner> {
    let backend = backend(common)?;
    if backend == Backend::Unprivileged {
        local::check_exposure(common.rubric.as_deref(), submissions)?;
    }
    Ok(CheckRunner::new(sandbox::own_exe(), common.jobs, backend))
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
        report::write_results(out, &outcome.reports, rubric, batch)
            .with_context(|| format!("writing results under {}", out.display()))?;
        // What a person opens next: the batch's index, or the one submission's report.
        let page = if batch { "index.html" } else { "report.html" };
        if !outcome.reports.is_empty() {
            eprintln!(
                "poolgrade: results in {}; open {} for the reports and timelines",
                out.display(),
                out.join(page).display()
            );
        }
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
    common: GradingArgs,
    command: Vec<String>,
) -> Result<u8> {
    let mut rubric = load_rubric(&common.rubric)?;
    if let Some(w) = workers {
        // The parameters reach each check with the rubric's range checks.
        if w > MAX_COUNT {
            bail!("--workers must be at most {MAX_COUNT}");
        }
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
    let check_runner = check_runner_for(&common, std::slice::from_ref(&dir))?;
    let hidden = hidden_paths(&common.rubric, &common.out, &[]);
    let mut plan = batch::plan_for(&dir, stage, &rubric, &hidden);
    plan.spec.command = command;
    let mut rep = reporter(common.format);
    let report = runner::run_stage(&plan, &check_runner, &mut |e| {
        let _ = rep.on_event(e);
    });
    let _ = rep.finish();
    let outcome = BatchOutcome {
        reports: vec![report],
    };
    finish(&outcome, &rubric, &common.out, false)
}

fn grade(
    common: GradingArgs,
    batch: BatchArgs,
    work: Option<PathBuf>,
    worker: Option<String>,
    shard: Option<Shard>,
) -> Result<u8> {
    let rubric = load_rubric(&common.rubric)?;
    let mut folders = batch.folders()?;
    if let Some(shard) = shard {
        let all = folders.len();
        folders = shard::select(folders, shard);
        eprintln!(
            "poolgrade: shard {shard}: {} of the batch's {all} submissions",
            folders.len()
        );
    }
    if common.agent.is_none() {
        let commands: Vec<_> = rubric
            .enabled_stages()
            .into_iter()
            .map(|s| (s, rubric.command(s).to_vec()))
            .collect();
        preflight(&rubric, &commands)?;
    }
    let check_runner = check_runner_for(&common, &folders)?;
    // The agent leaves once its grader is gone: tell it this one is here.
    let _presence = common.agent.as_deref().map(agent::Presence::start);
    let out = common
        .out
        .clone()
        .or_else(|| Some(PathBuf::from("results")));
    let hidden = hidden_paths(&common.rubric, &out, &folders);
    let stages = folders.len() * rubric.enabled_stages().len();
    let Some(dir) = work else {
        let mut rep = reporter(common.format).with(Box::new(ProgressReporter::new(stages)));
        let outcome = batch::grade(&folders, &rubric, &hidden, &check_runner, &mut rep);
        return finish(&outcome, &rubric, &out, true);
    };
    let shared = WorkDir::open(&dir).with_context(|| format!("opening {}", dir.display()))?;
    let name = worker.unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    let units = claims::units(&folders, &rubric);
    // A unit is one check, graded as a stage of one: progress counts units.
    let mut rep = reporter(common.format).with(Box::new(ProgressReporter::new(units.len())));
    let graded = claims::work(
        &units,
        &shared,
        &name,
        &rubric,
        &hidden,
        &check_runner,
        &mut rep,
    )
    .with_context(|| format!("sharing the batch through {}", dir.display()))?;
    let _ = rep.finish();
    finish(&BatchOutcome { reports: graded }, &rubric, &None, true)
}

/// `poolgrade merge`: the merged batch's status (see `MERGE_HELP`).
fn merge(out: PathBuf, shards: Vec<PathBuf>) -> Result<u8> {
    let merged = shard::merge(&shards, &out)?;
    eprintln!(
        "poolgrade: merged {} submissions from {} shards into {}",
        merged.submissions,
        merged.shards,
        out.display()
    );
    Ok(merged.status)
}

/// `poolgrade await`: exit 0 once the work folder is complete (the agent then asked to
/// leave), 2 when `wait` ran out first.
fn await_complete(work: PathBuf, ctl: Option<PathBuf>, wait: u64) -> Result<u8> {
    let shared = WorkDir::open(&work).with_context(|| format!("opening {}", work.display()))?;
    let _presence = ctl.as_deref().map(agent::Presence::start);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(wait);
    while !shared.is_complete() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let done = shared.is_complete();
    if let Some(ctl) = &ctl {
        // Last: the agent may be PID 1 of the namespace this process shares, so its leaving
        // can end this process too.
        if let Ok(a) = agent::AgentLauncher::connect(ctl, std::time::Duration::from_secs(5)) {
            let _ = a.shutdown();
        }
    }
    if !done {
        bail!("{} was not complete after {wait} s", work.display());
    }
    Ok(0)
}

#[allow(clippy::too_many_arguments)]
fn collect(
    work: PathBuf,
    rubric: Option<PathBuf>,
    out: PathBuf,
    format: Format,
    events: Option<PathBuf>,
    wait: u64,
    grace: u64,
    owner_of: Option<PathBuf>,
    batch: BatchArgs,
) -> Result<u8> {
    let rubric_file = rubric;
    let rubric = load_rubric(&rubric_file)?;
    let folders = batch.folders()?;
    let shared = WorkDir::open(&work).with_context(|| format!("opening {}", work.display()))?;
    let units = claims::units(&folders, &rubric);
    let outcome = claims::collect(
        &units,
        &shared,
        &rubric,
        std::time::Duration::from_secs(wait),
        std::time::Duration::from_secs(grace),
    );
    let mut rep = reporter(format);
    let events_file = match &events {
        Some(path) => Some(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        ),
        None => None,
    };
    if let Some(f) = events_file {
        rep.push(Box::new(JsonLinesReporter::new(io::BufWriter::new(f))));
    }
    for event in outcome.reports.iter().flat_map(|r| r.events()) {
        let _ = rep.on_event(&event);
    }
    let _ = rep.finish();
    drop(rep);
    let code = finish(&outcome, &rubric, &Some(out.clone()), true)?;
    if let Some(owner) = owner_of {
        give_to_owner_of(&owner, &out)?;
    }
    shared
        .complete(code)
        .with_context(|| format!("marking {} complete", work.display()))?;
    Ok(code)
}

/// Gives `out` and everything in it to the owner (uid and gid) of `reference`.
fn give_to_owner_of(reference: &std::path::Path, out: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(reference)
        .with_context(|| format!("reading the owner of {}", reference.display()))?;
    let (uid, gid) = (meta.uid(), meta.gid());
    let mut todo = vec![out.to_path_buf()];
    while let Some(p) = todo.pop() {
        std::os::unix::fs::lchown(&p, Some(uid), Some(gid))
            .with_context(|| format!("giving {} to uid {uid}", p.display()))?;
        if std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
            todo.extend(std::fs::read_dir(&p)?.flatten().map(|e| e.path()));
        }
    }
    Ok(())
}
