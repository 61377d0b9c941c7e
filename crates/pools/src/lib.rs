//! The process and thread pools of the handout's Part I and II, in Rust, and Exercise 1
//! (primality tests over random integers in a pool).
//!
//! | module | owns |
//! |---|---|
//! | `pool` (its items are re-exported here) | [`Pool`] (`multiprocessing.Pool`) and [`Executor`] (`ThreadPoolExecutor`) |
//! | [`primes`] | Exercise 1: the handout's trial division and a fast method, timed, in a pool |

mod pool;
pub mod primes;

pub use pool::*;
