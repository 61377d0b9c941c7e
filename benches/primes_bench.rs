//! Benchmark program (no harness): `primes` rate by worker count (1, 2, 4) for the trial and
//! fast methods on 10^6 random integers in [10^3, 10^6], best of 3 runs per cell.
//!
//! ```text
//! cargo bench --bench primes_bench
//! ```
//!
//! It prints figures and asserts nothing: speed depends on the machine and its load.

use pools::primes::{self, Method, Submit, SweepPlan};

const COUNT: usize = 1_000_000;
const SEED: u64 = 2024;

fn main() -> Result<(), primes::PrimesError> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "primes: {COUNT} integers in [{}, {}], seed {SEED}, best of 3, {cpus} CPUs",
        primes::LOW,
        primes::HIGH
    );
    for method in [Method::Trial, Method::Fast] {
        let plan = SweepPlan {
            counts: vec![COUNT],
            workers: vec![1, 2, 4],
            method,
            submit: Submit::Sync,
            seed: SEED,
            repeat: 3,
        };
        let rows = primes::sweep(&plan)?;
        println!();
        print!("{}", primes::format_table(&rows));
    }
    Ok(())
}
