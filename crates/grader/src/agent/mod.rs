//! Container mode: the agent that runs in the server's container and starts, watches and
//! stops servers there ([`server::serve`]), and the grader-side launcher that drives it
//! through files in a shared control folder ([`launcher::AgentLauncher`]).
//!
//! # Why an agent
//!
//! Under Docker Compose (or in a Kubernetes pod) the submission's server runs in one
//! container and the grader in another that joins its IPC and PID namespaces. The grader
//! sees the server's processes and queues but cannot start a process in the other container.
//! The agent does that for it, with the unprivileged backend
//! ([`crate::sandbox::local`]): each server under a uid leased for it alone, on a
//! private copy of its submission, and everything of that uid killed and removed when it
//! stops. The agent and the grader run as root (real uid 0), so no server can signal,
//! ptrace or read either of them; the grader's check process takes the server's uid as its
//! effective uid only ([`crate::sandbox::shield`]) to use the server's queue.
//!
//! # The file protocol
//!
//! Everything goes through a control folder shared by the two containers (a tmpfs volume,
//! mode 0700, owned by root: no server's uid can open it). The submission folders must be
//! mounted at the same paths in both.
//!
//! | file | written by | holds |
//! |---|---|---|
//! | `agent.json` | agent, at start | [`AgentInfo`]: protocol version, the agent's pid |
//! | `request.json` | launcher (write `.*.tmp`, then rename) | a [`wire::RequestFile`]: an id and a [`Request`] |
//! | `answer.json` | agent (same atomic rename) | an [`wire::AnswerFile`]: the request's id and an [`Answer`] |
//! | `exit.json` | agent, when its server ends | an [`ExitRecord`]: which launch ended, and how |
//! | `grader.alive` | grader, every second | its presence: an agent whose grader has gone leaves |
//!
//! One request is in flight at a time (the launcher serialises them); the agent takes the
//! request file, deletes it, acts, and writes the answer, which the launcher deletes after
//! reading. Every wait on either side has a deadline, so a dead agent gives an isolation
//! error (the check is a grading fault) instead of a hung grader.
//!
//! | module | owns |
//! |---|---|
//! | [`wire`] | the protocol's types and its atomic file helpers |
//! | [`server`] | the agent: the request loop over the unprivileged launcher |
//! | [`launcher`] | the grader's side: a [`crate::sut::Launcher`] that asks the agent |

pub mod launcher;
pub mod server;
pub mod wire;

pub use launcher::{AgentLauncher, Presence};
pub use server::{serve, AgentOptions};
pub use wire::{AgentError, AgentInfo, Answer, ExitRecord, Refusal, Request, PROTOCOL_VERSION};
