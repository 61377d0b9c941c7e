//! The black-box test suite: one integration-test binary (as ripgrep does), one module per
//! area. Every test that starts a server uses its own queue key or its own IPC namespace and
//! removes what it made, so the suite leaves `ipcs -q` empty.

mod common;

mod containers;
mod grader;
mod interop;
mod isolation;
mod platforms_classroom;
mod platforms_gradescope;
mod platforms_kubernetes;
mod platforms_prairielearn;
mod primes;
mod reports;
mod server;
