//! System V message queues over `libc`, and the time server's wire protocol: the one crate of
//! the workspace with `unsafe` code, all of it in the queue module.
//!
//! | module | owns |
//! |---|---|
//! | `queue` (its items are re-exported here) | [`MessageQueue`]: `msgget`, `msgsnd`, `msgrcv`, `msgctl` with typed errors; listing and removing IPC objects |
//! | [`protocol`] | the time server's messages: request, reply and stop, the reply type |
//! | [`date_text`] | recognising the current date and time anywhere in a reply's text |
//!
//! The wire format is the one of `msgsnd(2)`, byte for byte what Python's `sysv_ipc` sends and
//! expects, so Rust and Python peers interoperate.

#[allow(unsafe_code)]
mod queue;

pub mod date_text;
pub mod protocol;

pub use queue::*;
