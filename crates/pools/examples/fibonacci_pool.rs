//! The handout's Part I example with [`pools::Pool`], the Rust `multiprocessing.Pool`:
//! `apply`, `apply_async` + `get`, `map`, `map_async`, then a deliberate timeout.
//!
//! Run it with `cargo run -p pools --example fibonacci_pool`. Each call to `fibonacci` prints
//! the name of the worker thread running it, as the handout's prints
//! `multiprocessing.current_process().name`. The last task sleeps 2 s while `get` waits
//! only 0.5 s, so `get` gives `PoolError::Timeout`; the task goes on, and dropping the pool
//! at the end of `main` waits for it (Rust threads cannot be killed).

use std::thread;
use std::time::Duration;

use pools::{Pool, PoolError};
use rand::Rng;

/// The index and the Fibonacci number of that index (u128 holds them all up to 100).
fn fibonacci(n: u32) -> (u32, u128) {
    println!("{}", thread::current().name().unwrap_or("(unnamed)"));
    let (mut a, mut b) = (0u128, 1u128);
    for _ in 0..n {
        (a, b) = (b, a + b);
    }
    (n, a)
}

fn main() -> Result<(), PoolError> {
    let mut rng = rand::thread_rng();
    let indexes: Vec<u32> = (0..10).map(|_| rng.gen_range(0..=100)).collect();

    let pool = Pool::new(4)?;

    println!("*** Synchronous call in one process");
    let result = pool.apply(|| fibonacci(10))?;
    println!("{result:?}");

    println!("*** Asynchronous call in one process");
    let mut result = pool.apply_async(|| fibonacci(10));
    println!("{:?}", result.get(None)?);

    println!("*** Synchronous map");
    for x in pool.map(fibonacci, indexes.clone())? {
        println!("{x:?}");
    }

    println!("*** Asynchronous map");
    for x in pool.map_async(fibonacci, indexes).get(None)? {
        println!("{x:?}");
    }

    println!("*** Deliberate timeout");
    let mut result = pool.apply_async(|| thread::sleep(Duration::from_secs(2)));
    match result.get(Some(Duration::from_millis(500))) {
        Err(PoolError::Timeout(waited)) => {
            println!("PoolError::Timeout: no result within {waited:?}; the task goes on running")
        }
        other => println!("unexpected: {other:?}"),
    }
    // Dropping the pool here waits for the sleeping task, then joins the workers.
    Ok(())
}
