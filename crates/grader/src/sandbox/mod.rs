//! The isolation layer: every way of starting a student's server goes through here, and the
//! server never runs with anything of the grader's within reach (see `SECURITY.md`).
//!
//! # Backends
//!
//! | backend | where | what isolates the server |
//! |---|---|---|
//! | [`Backend::Native`] | root on a host (or in a container with `CAP_SYS_ADMIN`) | own IPC, network, UTS, PID and mount namespaces; a minimal read-only root with the submission copied to `/submission`, fresh `/tmp`, `/var/tmp`, `/dev/shm` and its own `/proc`; a leased uid; a cgroup; rlimits |
//! | [`Backend::UserNamespace`] | an ordinary user with unprivileged user namespaces | the same namespaces and root, inside a user namespace; the server keeps the user's uid |
//! | [`Backend::Unprivileged`] | root with Docker's default capabilities (Gradescope, PrairieLearn) | a leased uid, a private copy of the submission, rlimits; the prober keeps real and saved uid 0 ([`shield`]); everything of the uid killed and removed after each check |
//! | [`Backend::Agent`] | the grader container of a Compose pair | the agent in the server container runs the unprivileged backend; the prober is shielded here |
//!
//! # Modules
//!
//! | module | owns |
//! |---|---|
//! | [`state`] | the grader's own folders: a state folder only it can enter, private scratch folders |
//! | [`uids`] | host-wide leases of sandbox uids, and the processes and IPC objects of a uid |
//! | [`copy`] | copying a submission into the sandbox (no symlinks, no hard links, bounded) |
//! | [`program`] | finding the server's program for the sandbox; hiding reference binaries |
//! | [`env`](mod@env) | the server's environment, written in one place |
//! | [`output`] | the bounded tail of what a server prints |
//! | [`cgroup`] | control groups (v1 and v2) for a native server's tree |
//! | [`rootfs`] | the native sandbox's filesystem: the mount plan and `pivot_root` |
//! | [`enter`] | `__enter`, the last step before the server: mounts, privileges, `exec` |
//! | [`native`] | the native and user-namespace backends: namespaces, `__init`, their launcher |
//! | [`local`] | the unprivileged backend: a server under a leased uid, without namespaces |
//! | [`shield`] | the prober's uid shield: the server's effective uid, real and saved uid 0 |
//!
//! The process tree of one native check:
//!
//! ```text
//! poolgrade grade ── __check   unshare(IPC|NET|UTS), leases uid U, runs the probes
//!                       └─ __init   cgroup, unshare(PID|NS), builds the root, reaps
//!                            └─ __enter → exec server   PID 1 of its PID namespace, /proc
//!                                                       mounted, pivot_root, uid U
//! ```

pub mod cgroup;
pub mod copy;
pub mod enter;
pub mod env;
pub mod local;
pub mod native;
pub mod output;
pub mod program;
pub mod rootfs;
pub mod shield;
pub mod state;
pub mod uids;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use crate::sut::IsolationError;

/// The hidden subcommand that runs one check in its own process (and, natively, namespaces).
pub const CHECK_SUBCOMMAND: &str = "__check";
/// The hidden subcommand that supervises a native server (outside its PID namespace).
pub const INIT_SUBCOMMAND: &str = "__init";
/// The hidden subcommand that takes the last steps before `exec`ing the server.
pub const ENTER_SUBCOMMAND: &str = "__enter";
/// The hidden subcommand that kills every process of a sandbox uid and removes its IPC
/// objects, running as that uid.
pub const REAP_SUBCOMMAND: &str = "__reap";

/// The program to run for the hidden subcommands: this very binary, through
/// `/proc/self/exe`, which stays valid even when the file on disk is replaced mid-run (a
/// rebuild during a long grading).
pub fn own_exe() -> PathBuf {
    let proc_exe = PathBuf::from("/proc/self/exe");
    if proc_exe.exists() {
        proc_exe
    } else {
        std::env::current_exe().unwrap_or(proc_exe)
    }
}

/// Where and how servers are isolated (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "backend", rename_all = "kebab-case")]
pub enum Backend {
    /// Root: namespaces, a minimal root, a leased uid, a cgroup.
    Native,
    /// An ordinary user: the native sandbox inside a user namespace.
    UserNamespace,
    /// Root without `CAP_SYS_ADMIN`: a leased uid and no namespaces; one check at a time.
    Unprivileged,
    /// A Compose pair: the agent whose control folder is `ctl` starts the servers.
    Agent {
        /// The control folder shared with the agent.
        ctl: PathBuf,
    },
}

impl Backend {
    /// Whether checks can run side by side: each native check has its own IPC namespace,
    /// while the other backends share one (one key 666) and grade one check at a time.
    pub fn parallel(&self) -> bool {
        matches!(self, Backend::Native | Backend::UserNamespace)
    }

    /// The best backend this process can use: native as root when it can make namespaces,
    /// the user-namespace sandbox for an ordinary user who can, and the unprivileged backend
    /// for root that cannot (a container with Docker's default capabilities). An ordinary
    /// user without user namespaces cannot isolate a server at all.
    pub fn detect() -> Result<Backend, IsolationError> {
        let root = nix::unistd::geteuid().is_root();
        if native::namespaces_work() {
            return Ok(if root {
                Backend::Native
            } else {
                Backend::UserNamespace
            });
        }
        if root && shield::can_switch_uids() {
            return Ok(Backend::Unprivileged);
        }
        Err(IsolationError::Unavailable(if root {
            "root here can neither create namespaces (CAP_SYS_ADMIN) nor switch uids (CAP_SETUID, CAP_SETGID)".into()
        } else {
            "an ordinary user without unprivileged user namespaces cannot isolate a server: run as root (or with sudo), or in the container image".into()
        }))
    }

    /// The backend's name, as `--isolation` takes it.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Native => "native",
            Backend::UserNamespace => "user-namespace",
            Backend::Unprivileged => "unprivileged",
            Backend::Agent { .. } => "agent",
        }
    }
}

impl IsolationError {
    /// A [`IsolationError::Setup`] from a step and anything displayable.
    pub fn setup(step: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        IsolationError::Setup {
            step: step.into(),
            reason: reason.to_string(),
        }
    }
}
