//! `timeclient`: the reference client of the handout's Exercise 2 and a load generator
//! (see `timeserver::client`).

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args as ClapArgs, Parser, Subcommand};
use timeserver::client::{self, BenchConfig, ClientError};

/// Asks the time server for the date and time, or stops it. Without `--get` or `--stop`, shows
/// the handout's menu (1: get the date/time, 2: stop the server).
#[derive(Debug, Parser)]
#[command(
    version,
    args_conflicts_with_subcommands = true,
    after_help = "Exit codes:\n  0  success\n  1  runtime failure (no server, no reply within \
the time-out, queue removed)\n  2  usage error, or end of input at the menu"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    once: Once,
}

#[derive(Debug, ClapArgs)]
struct Once {
    /// Ask for the date and time once, without the menu.
    #[arg(long, conflicts_with = "stop")]
    get: bool,
    /// Stop the server, without the menu.
    #[arg(long)]
    stop: bool,
    /// Send this pid instead of our own (replies come as type pid + 3).
    #[arg(long, value_parser = clap::value_parser!(i64).range(1..=sysv_mq::protocol::MAX_PID))]
    pid: Option<i64>,
    #[command(flatten)]
    common: ConnectArgs,
}

#[derive(Debug, Clone, ClapArgs)]
struct ConnectArgs {
    /// Seconds to wait for a reply (a decimal number).
    #[arg(long, default_value = "5", value_parser = parse_timeout)]
    timeout: Duration,
    /// The queue key.
    #[arg(long, default_value_t = sysv_mq::protocol::DEFAULT_KEY, allow_negative_numbers = true)]
    key: i32,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Load generator: concurrent clients doing sequential round trips; prints one JSON object
    /// (requests_per_sec, p50_us, p99_us, errors, ...). Client i uses the synthetic pid
    /// 2^22 + b * 2^20 + i, with a block b drawn at random per bench (0..2043): above any real pid, below the C-int limit; two benches (say in two containers, both pid 1) share a block only by a 1-in-2043 chance.
    /// A reply slower than --timeout counts as an error and that client stops (its remaining
    /// requests count as errors too); the report is still printed and the exit code is 0.
    Bench {
        /// Concurrent clients.
        #[arg(long, default_value_t = 8,
              value_parser = clap::value_parser!(u32).range(1..=client::MAX_BENCH_CLIENTS as i64))]
        clients: u32,
        /// Round trips per client.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
        requests: u32,
        #[command(flatten)]
        common: ConnectArgs,
    },
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    match Duration::try_from_secs_f64(secs) {
        Ok(d) if !d.is_zero() => Ok(d),
        _ => Err(format!("{s:?} is not a time-out (> 0 seconds)")),
    }
}

/// Failures with their exit codes.
enum Failure {
    Runtime(anyhow::Error),
    Usage(String),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Runtime(e)
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        Failure::Runtime(e.into())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Runtime(e)) => {
            eprintln!("timeclient: {e:#}");
            ExitCode::from(1)
        }
        Err(Failure::Usage(m)) => {
            eprintln!("timeclient: {m}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    if let Some(Command::Bench {
        clients,
        requests,
        common,
    }) = cli.command
    {
        let queue = client::connect(common.key)?;
        let report = client::bench(
            &queue,
            &BenchConfig {
                clients: clients as usize,
                requests: requests as usize,
                timeout: common.timeout,
            },
        )?;
        let json = serde_json::to_string(&report).context("encoding the report")?;
        println!("{json}");
        return Ok(());
    }
    let once = cli.once;
    // Like the handout's client: connect first, then ask.
    let queue = client::connect(once.common.key)?;
    let choice = if once.get {
        1
    } else if once.stop {
        2
    } else {
        menu()?
    };
    if choice == 1 {
        let pid = once.pid.unwrap_or(std::process::id() as i64);
        let reply = client::request_time(&queue, pid, once.common.timeout)?;
        println!("Server response: {}", reply.text);
    } else {
        client::stop(&queue)?;
    }
    Ok(())
}

/// The handout's menu: asks until the answer is 1 or 2; end of input is a usage failure.
fn menu() -> Result<u8, Failure> {
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut line = String::new();
    loop {
        println!("1. to get current date/time");
        println!("2. to terminate time server");
        let _ = std::io::stdout().flush();
        line.clear();
        let n = input
            .read_line(&mut line)
            .context("reading the menu choice")?;
        if n == 0 {
            return Err(Failure::Usage(
                "end of input before a choice (1 or 2) was made".into(),
            ));
        }
        match line.trim().parse::<u8>() {
            Ok(c @ (1 | 2)) => return Ok(c),
            _ => continue,
        }
    }
}
