//! `primes`: the handout's Exercise 1 (see `pools::primes`): primality tests of random
//! integers in a pool, timed.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use pools::primes::{self, Method, Row, Submit, SweepPlan, HIGH, LOW};
use serde::Serialize;

/// Tests the primality of random integers in [1000, 1000000] in a pool of workers and times it
/// (the clock covers building the sieve, submitting and collecting; not the pool's start-up,
/// the inputs or any output).
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "Methods:\n  trial  the handout's is_prime: trial division by 2 and the odd numbers up to \
sqrt(n),\n         stopping at the first divisor; divisors below 1024 are tested exactly by a\n         multiplication by their inverse mod 2^32 rather than a division.\n  fast   a sieve of Eratosthenes over the odd numbers up to the largest input (one bit \
each,\n         62.5 KiB for 10^6, so it stays in cache), built once per run inside the timed\n         \
region, then one bit lookup per integer. It is exact, and faster here than\n         \
deterministic Miller-Rabin (three modular exponentiations per candidate); inputs\n         \
above 2^24 use Miller-Rabin with bases 2, 7, 61 (exact for every 32-bit integer).\n\n\
Submission:\n  sync   Pool::map (the caller blocks until every answer is in)\n  async  \
Pool::map_async, then get() on the pending result\n\n\
Exit codes:\n  0  success\n  1  runtime failure (unreadable or malformed --input, unwritable --csv)\n  \
2  bad arguments"
)]
struct Cli {
    /// How many random integers to test.
    #[arg(long, default_value_t = 100_000, conflicts_with = "input",
          value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    count: u64,
    /// Seed of the random integers (default: a random seed, shown in the output).
    #[arg(long, conflicts_with = "input")]
    seed: Option<u64>,
    /// Read the integers from FILE instead, one per line ("-": standard input). Reading is
    /// not timed.
    #[arg(long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// Worker threads in the pool (default: the number of CPUs).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    workers: Option<u64>,
    /// The primality test.
    #[arg(long, value_enum, default_value_t = Method::Trial)]
    method: Method,
    /// How the work is submitted to the pool.
    #[arg(long, value_enum, default_value_t = Submit::Sync)]
    submit: Submit,
    /// Time every combination of --sweep-counts and --sweep-workers and print a table with
    /// time, rate, speedup and efficiency (relative to the fewest workers).
    #[arg(long, conflicts_with_all = ["input", "workers", "count"])]
    sweep: bool,
    /// Worker counts of the sweep, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4", requires = "sweep",
          value_parser = clap::value_parser!(u64).range(1..=1024))]
    sweep_workers: Vec<u64>,
    /// Input sizes of the sweep, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000", requires = "sweep",
          value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    sweep_counts: Vec<u64>,
    /// Runs per sweep cell; the fastest is reported.
    #[arg(long, default_value_t = 1, requires = "sweep",
          value_parser = clap::value_parser!(u64).range(1..=100))]
    repeat: u64,
    /// Print one JSON object (a sweep: a JSON array of rows) instead of text.
    #[arg(long)]
    json: bool,
    /// Also write the rows as CSV to FILE.
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,
}

/// The JSON summary of a single run (`--json` without `--sweep`).
#[derive(Serialize)]
struct RunSummary {
    count: usize,
    workers: usize,
    method: Method,
    submit: Submit,
    /// `null` when the integers came from --input.
    seed: Option<u64>,
    primes: usize,
    seconds: f64,
    rate: f64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("primes: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let seed = cli.seed.unwrap_or_else(rand::random);
    let rows = if cli.sweep {
        let plan = SweepPlan {
            counts: cli.sweep_counts.iter().map(|&c| c as usize).collect(),
            workers: cli.sweep_workers.iter().map(|&w| w as usize).collect(),
            method: cli.method,
            submit: cli.submit,
            seed,
            repeat: cli.repeat as usize,
        };
        let rows = primes::sweep(&plan)?;
        if cli.json {
            println!("{}", serde_json::to_string(&rows)?);
        } else {
            println!("seed {seed}");
            print!("{}", primes::format_table(&rows));
        }
        rows
    } else {
        let (inputs, seed) = match &cli.input {
            Some(path) => (read_inputs(path)?, None),
            None => (primes::generate(cli.count as usize, seed), Some(seed)),
        };
        let workers = match cli.workers {
            Some(w) => w as usize,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let count = inputs.len();
        let outcome = primes::run(inputs, workers, cli.method, cli.submit)?;
        let row = Row::single(count, workers, cli.method, cli.submit, &outcome);
        if cli.json {
            let summary = RunSummary {
                count,
                workers,
                method: cli.method,
                submit: cli.submit,
                seed,
                primes: row.primes,
                seconds: row.seconds,
                rate: row.rate,
            };
            println!("{}", serde_json::to_string(&summary)?);
        } else {
            let origin = match seed {
                Some(seed) => format!("random in [{LOW}, {HIGH}], seed {seed}"),
                None => "from the input".to_string(),
            };
            println!(
                "{count} integers ({origin}), {workers} workers, method {}, submit {}: \
                 {} primes in {:.6} s ({:.0} integers/s)",
                cli.method.name(),
                cli.submit.name(),
                row.primes,
                row.seconds,
                row.rate
            );
        }
        vec![row]
    };
    if let Some(path) = &cli.csv {
        let file =
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        let mut out = BufWriter::new(file);
        primes::write_csv(&rows, &mut out)
            .and_then(|()| out.flush())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn read_inputs(path: &PathBuf) -> anyhow::Result<Vec<u32>> {
    let inputs = if path.as_os_str() == "-" {
        primes::parse_inputs(std::io::stdin().lock())?
    } else {
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        primes::parse_inputs(BufReader::new(file))
            .with_context(|| format!("in {}", path.display()))?
    };
    anyhow::ensure!(!inputs.is_empty(), "no integers in {}", path.display());
    Ok(inputs)
}
