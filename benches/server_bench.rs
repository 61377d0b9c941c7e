//! Time-server benchmark (`cargo bench --bench server_bench`): starts the release `timeserver`
//! in inline, spawn and pool modes on a private queue key, drives each with the library's load
//! generator (`timeserver::client::bench`) with 1, 8 and 32 clients, without and with a 2 ms
//! work delay, and prints one table of requests/s, p50 and p99 from the same run, so that the
//! cost of a thread per request shows next to the pool and the single-threaded baseline.
//!
//! Environment: `BENCH_REQUESTS` (total round trips per cell without delay, default 6000; a
//! fifth of it with the delay), `BENCH_WORKERS` (pool size, default 4).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sysv_mq::MessageQueue;
use timeserver::client::{self, BenchConfig, BenchReport};

/// The server under test; killed, reaped and its queue removed on drop.
struct Server {
    child: Child,
    key: i32,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(q) = MessageQueue::open(self.key) {
            let _ = client::stop(&q);
        }
        // Give it a moment to stop on its own, then make sure.
        for _ in 0..200 {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Ok(q) = MessageQueue::open(self.key) {
            let _ = q.remove();
        }
    }
}

/// The `timeserver` binary: the one cargo built for this bench, else next to the bench
/// executable, else `target/release`.
fn timeserver() -> PathBuf {
    if let Some(p) = option_env!("CARGO_BIN_EXE_timeserver") {
        return PathBuf::from(p);
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent().and_then(|d| d.parent()) {
            let p = dir.join("timeserver");
            if p.exists() {
                return p;
            }
        }
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/timeserver")
}

/// A key no one else uses: created exclusively (then removed) to be sure it is free.
fn private_key(n: i32) -> i32 {
    let base = 0x5342_0000 | ((std::process::id() as i32 & 0x3ff) << 6);
    (0..64)
        .map(|i| base + ((n * 7 + i) & 0x3f))
        .find(|&k| match MessageQueue::create_exclusive(k, 0o600) {
            Ok(q) => {
                let _ = q.remove();
                true
            }
            Err(_) => false,
        })
        .expect("a free queue key")
}

fn start(mode: &str, workers: usize, delay: Duration, key: i32) -> Server {
    let mut child = Command::new(timeserver())
        .args(["--mode", mode, "--key", &key.to_string()])
        .args(["--workers", &workers.to_string()])
        .args(["--delay", &delay.as_secs_f64().to_string()])
        .env_remove("TIMESERVER_DELAY")
        .env_remove("TIMESERVER_WORKERS")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", timeserver().display()));
    let stdout = child.stdout.take().expect("piped stdout");
    let server = Server { child, key };
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the ready line");
    assert!(line.contains("ready"), "timeserver did not start: {line:?}");
    server
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: run a quick smoke
    // pass then so the bench stays compiled and working without taking minutes.
    let quick = !std::env::args().any(|a| a == "--bench");
    let total = if quick {
        200
    } else {
        env_usize("BENCH_REQUESTS", 6000)
    };
    let workers = env_usize("BENCH_WORKERS", 4);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "time servers: {} ({cpus} CPUs), pool of {workers}, {total} round trips per cell \
         without delay, {} with",
        timeserver().display(),
        total / 5
    );
    println!(
        "{:<7} {:>6} {:>8} {:>12} {:>10} {:>10} {:>7}",
        "mode", "delay", "clients", "requests/s", "p50 us", "p99 us", "errors"
    );
    let mut n = 0;
    for delay_ms in [0u64, 2] {
        let delay = Duration::from_millis(delay_ms);
        for clients in [1usize, 8, 32] {
            let cell_total = if delay_ms == 0 { total } else { total / 5 };
            let requests = (cell_total / clients).max(1);
            for mode in ["inline", "spawn", "pool"] {
                n += 1;
                let key = private_key(n);
                let server = start(mode, workers, delay, key);
                let queue = MessageQueue::open(key).expect("the server's queue");
                let report: BenchReport = client::bench(
                    &queue,
                    &BenchConfig {
                        clients,
                        requests,
                        timeout: Duration::from_secs(10),
                    },
                )
                .expect("bench");
                drop(server);
                println!(
                    "{:<7} {:>4}ms {:>8} {:>12.0} {:>10.0} {:>10.0} {:>7}",
                    mode,
                    delay_ms,
                    clients,
                    report.requests_per_sec,
                    report.p50_us,
                    report.p99_us,
                    report.errors
                );
            }
        }
    }
}
