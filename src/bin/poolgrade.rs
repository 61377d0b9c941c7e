//! `poolgrade`: the black-box grader's command line. All logic lives in the library
//! (`poolgrade::grader`); this file parses arguments and maps results to exit codes.
//!
//! Exit codes: 0 every check passed; 1 a check failed; 2 could not grade (bad arguments,
//! command not found, no isolation).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use poolgrade::grader::checks::CheckParams;
use poolgrade::grader::outcome::{Event, Stage, Status};
use poolgrade::grader::runner::{self, Executor, StagePlan};
use poolgrade::grader::sut::{LaunchSpec, Limits};
use poolgrade::grader::{checks, sandbox};

#[derive(Parser)]
#[command(
    name = "poolgrade",
    version,
    about = "Black-box grader for the Session 4 time servers"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Grade one stage of one server command.
    Check {
        /// The stage: spawn (thread per request) or pool.
        #[arg(long)]
        stage: Stage,
        /// Pool size given to the server as TIMESERVER_WORKERS.
        #[arg(long, default_value_t = 3)]
        workers: usize,
        /// Work delay given to the server as TIMESERVER_DELAY in the timing checks.
        #[arg(long, default_value_t = 0.4)]
        delay: f64,
        /// The submission folder the server runs in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The server command.
        #[arg(last = true, required = true)]
        command: Vec<String>,
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
    let cli = Cli::parse();
    match cli.command {
        Cmd::InternalCheck => ExitCode::from(runner::check_main() as u8),
        Cmd::InternalInit { request } => ExitCode::from(sandbox::init_main(&request) as u8),
        Cmd::InternalClient { key, timeout } => ExitCode::from(checks::client_main(
            key,
            std::time::Duration::from_secs_f64(timeout),
        ) as u8),
        Cmd::Check {
            stage,
            workers,
            delay,
            dir,
            command,
        } => {
            let exe = std::env::current_exe().expect("current exe");
            let mut params = CheckParams::new(stage);
            params.workers = workers;
            params.delay = delay;
            let plan = StagePlan {
                submission: dir
                    .file_name()
                    .map(|s| s.to_string_lossy().to_string())
                    .unwrap_or_default(),
                stage,
                spec: LaunchSpec {
                    dir: dir.clone(),
                    command,
                    env: vec![],
                    limits: Limits::default(),
                },
                params,
                checks: stage.checks().to_vec(),
            };
            let exec = Executor::Native { exe, jobs: 4 };
            let mut print = |e: &Event| {
                if let Event::CheckFinished { outcome, .. } = e {
                    let mark = if outcome.status == Status::Passed {
                        "PASS"
                    } else {
                        "FAIL"
                    };
                    println!(
                        "{mark} {} ({:.2}s)\n  {}",
                        outcome.id,
                        outcome.seconds,
                        outcome.feedback().replace('\n', "\n  ")
                    );
                }
            };
            match runner::run_stage(&plan, &exec, &mut print) {
                Ok(r) => {
                    println!(
                        "{}/{} passed in {:.2}s",
                        r.passed_count(),
                        r.outcomes.len(),
                        r.seconds
                    );
                    if r.all_passed() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    }
                }
                Err(e) => {
                    eprintln!("poolgrade: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}
