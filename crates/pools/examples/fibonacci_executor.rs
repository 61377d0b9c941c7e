//! The handout's Part II example with [`pools::Executor`], the Rust
//! `concurrent.futures.ThreadPoolExecutor`: `map`, then `submit` and `as_completed`.
//!
//! Run it with `cargo run -p pools --example fibonacci_executor`. `map` gives the results in
//! the order of the indexes; `as_completed` gives the futures in the order their tasks
//! finish, which may differ from run to run.

use pools::{as_completed, Executor, PoolError};
use rand::Rng;

/// The index and the Fibonacci number of that index (u128 holds them all up to 100).
fn fibonacci(n: u32) -> (u32, u128) {
    let (mut a, mut b) = (0u128, 1u128);
    for _ in 0..n {
        (a, b) = (b, a + b);
    }
    (n, a)
}

fn main() -> Result<(), PoolError> {
    let mut rng = rand::thread_rng();
    let indexes: Vec<u32> = (0..10).map(|_| rng.gen_range(0..=100)).collect();

    let executor = Executor::new(3)?;

    println!("Results returned via asynchronous map:");
    for result in executor.map(fibonacci, indexes.clone()) {
        println!("{:?}", result?);
    }

    println!("Results returned as Future objects as they complete:");
    let futures: Vec<_> = indexes
        .into_iter()
        .map(|index| executor.submit(move || fibonacci(index)))
        .collect();
    for mut future in as_completed(futures) {
        println!("{:?}", future.result(None)?);
    }
    Ok(())
}
