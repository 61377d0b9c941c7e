//! [`Mode`] and [`ServerConfig`]: what the server serves and how.

use std::time::Duration;

use sysv_mq::protocol;

/// How the server answers requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// One thread: receive, (wait the delay), reply, then receive again.
    Inline,
    /// A new thread for every request.
    Spawn,
    /// A fixed pool of worker threads, each receiving from the queue itself.
    Pool,
}

impl Mode {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Inline => "inline",
            Mode::Spawn => "spawn",
            Mode::Pool => "pool",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What to serve and how.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// The queue key (the handout's is [`protocol::DEFAULT_KEY`]).
    pub key: i32,
    /// How requests are answered.
    pub mode: Mode,
    /// Worker threads in [`Mode::Pool`] (at least 1; ignored by the other modes).
    pub workers: usize,
    /// Work delay before each reply, spent in the thread that replies.
    pub delay: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            key: protocol::DEFAULT_KEY,
            mode: Mode::Pool,
            workers: 4,
            delay: Duration::ZERO,
        }
    }
}
