//! poolgrade: the reference implementation and black-box autograder of the Session 4 lab on
//! thread and process pools (the handout is `docs/handout.txt`).
//!
//! # Layout
//!
//! The crate is a library with thin binaries in `src/bin/`; each module owns one concern.
//!
//! | module | owns |
//! |---|---|
//! | [`mq`] | System V message queues over `libc`: the only `unsafe` code of the crate |
//! | [`protocol`] | the time server's wire protocol: request, reply and stop messages, date texts |
//! | [`server`] | the reference time server: inline, thread-per-request and pool modes |
//! | [`client`] | the reference client: one request, stop, and the `bench` load generator |
//! | [`pools`] | the process/thread pools of the handout's Part I and II, in Rust |
//! | [`primes`] | Exercise 1: primality tests over random integers, timed, in a pool |
//! | [`grader`] | the black-box grader: sandbox, checks, reports, rubric and batches |
//!
//! Binaries: `timeserver`, `timeclient`, `primes`, `poolgrade`. Their exit codes are
//! documented in each binary's `--help` and in the README.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod grader;
#[allow(unsafe_code)]
pub mod mq;
pub mod pools;
pub mod primes;
pub mod protocol;
pub mod server;
