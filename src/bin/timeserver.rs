//! `timeserver`: the reference time server of the handout's Exercise 2 (see `timeserver::server`).

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use timeserver::server::{Mode, Server, ServerConfig, StopOnSignals};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ModeArg {
    /// Single-threaded: reply from the receiving thread (Session 2's server, the baseline).
    Inline,
    /// A new thread per request.
    Spawn,
    /// A fixed pool of worker threads, started once, each receiving requests from the queue
    /// itself and replying.
    Pool,
}

/// Serves the current date and time over a System V message queue: requests are type 1 with
/// the client's pid as text, replies go to type pid + 3, an empty type-2 message stops the
/// server.
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "On a stop message (type 2), SIGINT or SIGTERM the server stops accepting \
requests, finishes the ones it accepted, removes the queue and exits.\n\n\
Exit codes:\n  0  stopped cleanly (queue removed)\n  1  runtime failure (queue cannot be \
created, removed under the server, ...)\n  2  usage error"
)]
struct Args {
    /// How requests are answered.
    #[arg(long, value_enum, default_value = "pool")]
    mode: ModeArg,
    /// Worker threads of the pool.
    #[arg(long, env = "TIMESERVER_WORKERS", default_value_t = 4,
          value_parser = clap::value_parser!(u16).range(1..))]
    workers: u16,
    /// Work delay, in seconds (a decimal number), spent before each reply.
    #[arg(long, env = "TIMESERVER_DELAY", default_value = "0", value_parser = parse_delay)]
    delay: Duration,
    /// The queue key.
    #[arg(long, default_value_t = sysv_mq::protocol::DEFAULT_KEY, allow_negative_numbers = true)]
    key: i32,
}

fn parse_delay(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{s:?} is not a delay (>= 0 seconds)"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("timeserver: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let mode = match args.mode {
        ModeArg::Inline => Mode::Inline,
        ModeArg::Spawn => Mode::Spawn,
        ModeArg::Pool => Mode::Pool,
    };
    let config = ServerConfig {
        key: args.key,
        mode,
        workers: args.workers as usize,
        delay: args.delay,
    };
    let server = Server::open(config.clone())?;
    if server.existed() {
        eprintln!(
            "timeserver: message queue {} already existed; using it (stale messages in it will be read)",
            config.key
        );
    }
    let signals = StopOnSignals::install(server.stop_handle());
    let signals = match signals {
        Ok(s) => s,
        Err(e) => {
            let _ = server.queue().remove();
            return Err(e.into());
        }
    };
    let how = match mode {
        Mode::Pool => format!("mode pool, {} workers", config.workers),
        Mode::Spawn => "mode spawn, a thread per request".to_string(),
        Mode::Inline => "mode inline, a single thread".to_string(),
    };
    {
        let mut out = std::io::stdout().lock();
        // A closed stdout must not stop the server: the line is informative.
        let _ = writeln!(
            out,
            "timeserver: ready on key {}, {how}, delay {}s",
            config.key,
            config.delay.as_secs_f64()
        );
        let _ = out.flush();
    }
    let summary = server
        .run(|mtype, reason| {
            eprintln!("timeserver: skipped a malformed message of type {mtype}: {reason}");
        })
        .context("the server failed")?;
    drop(signals);
    eprintln!(
        "timeserver: stopped ({}); served {} requests, skipped {} malformed, {} failed replies",
        match summary.cause {
            timeserver::server::StopCause::StopMessage => "stop message",
            timeserver::server::StopCause::Requested => "signal",
        },
        summary.served,
        summary.malformed,
        summary.failed_replies
    );
    Ok(())
}
