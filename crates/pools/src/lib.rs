//! The process and thread pools of the handout's Part I and II, in Rust, and Exercise 1
//! (primality tests over random integers in a pool).
//!
//! | module | owns |
//! |---|---|
//! | `error` | [`PoolError`], why a pool operation gave no value |
//! | `slot` | the one-shot result slot and promise behind [`AsyncResult`] and [`Future`] |
//! | `pool` | [`Pool`] (`multiprocessing.Pool`, rayon), [`AsyncResult`], [`Unordered`] |
//! | `executor` | [`Executor`] (`ThreadPoolExecutor`, std threads), [`Future`], [`as_completed`] |
//! | [`primes`] | Exercise 1: the handout's trial division and a fast method, timed, in a pool |
//!
//! The items of `error`, `pool` and `executor` are re-exported here (`pools::Pool`,
//! `pools::Executor`, ...); `examples/` runs the handout's examples with them.
//!
//! # From Python
//!
//! The handout shows two Python APIs; this crate offers what its examples use:
//!
//! | Python | here | runs on |
//! |---|---|---|
//! | `multiprocessing.Pool(n)` | [`Pool::new`] | a rayon `ThreadPool` of `n` workers |
//! | `pool.apply(f, args)` | [`Pool::apply`] | rayon (`install`) |
//! | `pool.apply_async(f, args)` | [`Pool::apply_async`] → [`AsyncResult`] | rayon (`spawn`) |
//! | `result.get(timeout=1)` | [`AsyncResult::get`] → [`PoolError::Timeout`] | |
//! | `pool.map(f, xs)` | [`Pool::map`] | rayon (parallel iterator) |
//! | `pool.map_async(f, xs)` | [`Pool::map_async`] | rayon (`spawn` + parallel iterator) |
//! | `pool.imap_unordered(f, xs)` | [`Pool::imap_unordered`] | rayon (`spawn_fifo` per item) |
//! | `ThreadPoolExecutor(max_workers=n)` | [`Executor::new`] | `n` std threads and a job channel |
//! | `executor.submit(f, x)` | [`Executor::submit`] → [`Future`] | std threads |
//! | `executor.map(f, xs)` | [`Executor::map`] | std threads |
//! | `concurrent.futures.as_completed(fs)` | [`as_completed`] | |
//!
//! # Why rayon here and std threads there
//!
//! * **[`Pool`] uses rayon.** Part I is about *data parallelism*: CPU-bound work over a
//!   list. Rayon's work stealing splits a `map` adaptively, which is what Python's
//!   `chunksize` approximates by hand, and its workers never block. `apply` and
//!   `apply_async` go to the same workers, as they do in Python's `Pool`, so one pool of
//!   `n` workers serves every operation. `imap_unordered` spawns one job per item and
//!   hands results back through a channel as they finish.
//! * **[`Executor`] uses std threads.** Part II is about *task parallelism*: independent
//!   tasks that may block (a time server's requests, sleeps, queue calls). A task that
//!   blocks a rayon worker stalls the work stealing of everything else; a plain thread
//!   that blocks costs nothing but itself. std threads also give an exact thread count,
//!   strict FIFO start order and a real `join` on drop, like `ThreadPoolExecutor`.
//!
//! # Failures
//!
//! A task that panics comes back as [`PoolError::Panicked`] with the panic message; the
//! worker survives and the pool stays usable. Waiting with a timeout that expires gives
//! [`PoolError::Timeout`]; the task keeps running and its result can still be fetched.
//! Rust threads cannot be killed, so unlike Python's `Pool.__exit__` (which terminates
//! its workers), dropping a [`Pool`] or an [`Executor`] waits for the tasks already
//! submitted, then joins every worker.

mod error;
mod executor;
mod pool;
pub mod primes;
mod slot;

pub use error::PoolError;
pub use executor::{as_completed, AsCompleted, Executor, Future};
pub use pool::{AsyncResult, Pool, Unordered};
