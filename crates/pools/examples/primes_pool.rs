//! Exercise 1 of the handout with [`pools::Pool`]: random integers in [10^3, 10^6] tested
//! for primality by the pool's workers, submitted once synchronously (`map`) and once
//! asynchronously (`map_async` + `get`), each timed without any I/O in the timed region.
//!
//! Run it with `cargo run -p pools --example primes_pool [-- COUNT [WORKERS]]` (defaults:
//! 100000 integers, one worker per CPU) and vary both, as the exercise asks. For the full
//! exercise (a faster exact method, sweeps, JSON and CSV) see the `primes` binary.

use std::time::Instant;

use pools::{Pool, PoolError};
use rand::Rng;

/// The handout's `is_prime`: trial division by 2 and the odd numbers up to sqrt(n).
fn is_prime(n: u32) -> (u32, bool) {
    if n < 2 {
        return (n, false);
    }
    if n == 2 {
        return (n, true);
    }
    if n % 2 == 0 {
        return (n, false);
    }
    let sqrt_n = f64::from(n).sqrt().floor() as u32;
    for i in (3..=sqrt_n).step_by(2) {
        if n % i == 0 {
            return (n, false);
        }
    }
    (n, true)
}

/// The `n`-th command-line argument as a positive number, or `default`.
fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .filter(|&v| v > 0)
        .unwrap_or(default)
}

fn main() -> Result<(), PoolError> {
    let count = arg(1, 100_000);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = arg(2, cpus);

    let mut rng = rand::thread_rng();
    let numbers: Vec<u32> = (0..count)
        .map(|_| rng.gen_range(1_000..=1_000_000))
        .collect();
    // The pool starts before any clock, as the Python program creates its Pool first.
    let pool = Pool::new(workers)?;

    // Synchronous: `map` blocks until every answer is in.
    let input = numbers.clone();
    let start = Instant::now();
    let sync_results = pool.map(is_prime, input)?;
    let sync_seconds = start.elapsed().as_secs_f64();

    // Asynchronous: `map_async` returns at once; `get` waits for the answers.
    let input = numbers;
    let start = Instant::now();
    let mut pending = pool.map_async(is_prime, input);
    let async_results = pending.get(None)?;
    let async_seconds = start.elapsed().as_secs_f64();

    let primes = |results: &[(u32, bool)]| results.iter().filter(|(_, p)| *p).count();
    println!(
        "{count} random integers in [1000, 1000000], {workers} worker{}",
        if workers == 1 { "" } else { "s" }
    );
    println!(
        "synchronous  (map):       {} primes in {sync_seconds:.6} s",
        primes(&sync_results)
    );
    println!(
        "asynchronous (map_async): {} primes in {async_seconds:.6} s",
        primes(&async_results)
    );
    assert_eq!(
        sync_results, async_results,
        "both submissions test the same integers"
    );
    Ok(())
}
