//! The reference implementation of Exercise 2: the date/time server on a System V message
//! queue and its client.
//!
//! | module | owns |
//! |---|---|
//! | [`server`] | the server: inline (Session 2's single thread), a thread per request, a thread pool |
//! | [`client`] | the client: one request, the stop message, and the `bench` load generator |
//!
//! The `timeserver` and `timeclient` binaries of the root package are thin front ends.

pub mod client;
pub mod server;
