//! The system under test: how a server is described ([`LaunchSpec`]), started ([`Launcher`])
//! and watched or stopped ([`Sut`]), whatever runs it: a native sandbox or a container agent.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::procfs::ProcessSet;

/// The `PATH` a server gets unless the rubric names other folders.
pub const SANDBOX_PATH: &[&str] = &["/usr/local/bin", "/usr/bin", "/bin"];

/// [`SANDBOX_PATH`] as a list of folders.
pub fn default_path() -> Vec<PathBuf> {
    SANDBOX_PATH.iter().map(PathBuf::from).collect()
}

/// What a server is told through its environment.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ServerParams {
    /// The work delay: the worker sleeps this long before replying.
    #[serde(with = "seconds")]
    pub delay: Duration,
    /// The pool size of stage 2.
    pub workers: u32,
}

impl Default for ServerParams {
    fn default() -> Self {
        Self {
            delay: Duration::ZERO,
            workers: 4,
        }
    }
}

/// A [`Duration`] as seconds (a decimal number) in JSON and TOML.
pub mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the duration as seconds.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    /// Reads seconds (finite, at least 0) as a duration.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

/// Why a server could not be isolated: a failure on the grader's side, never a verdict on
/// the submission. A check that meets one reports [`crate::outcome::Status::Error`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "kebab-case")]
pub enum IsolationError {
    /// No backend can run here.
    #[error("no isolation available: {0}")]
    Unavailable(String),
    /// A system call that builds the sandbox failed.
    #[error("{step}: {reason}")]
    Setup {
        /// What was being done.
        step: String,
        /// What the system said.
        reason: String,
    },
    /// A folder or file of the grader's own is not what it must be (a symlink, another
    /// owner, a mode others can write).
    #[error("unsafe path {path}: {reason}")]
    UnsafePath {
        /// The path.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// No sandbox uid was free.
    #[error("no free sandbox uid: {0}")]
    NoUid(String),
    /// A helper process of the sandbox misbehaved or died.
    #[error("sandbox helper: {0}")]
    Helper(String),
    /// The container agent failed or could not be reached.
    #[error("agent: {0}")]
    Agent(String),
    /// Limits the backend promises could not be applied, and the rubric does not accept
    /// grading without them.
    #[error(
        "the server's limits could not be applied ({0}); poolgrade does not run a server \
         without them. To grade anyway, with weaker isolation that the results then name, set \
         `accept_missing_limits = true` under [limits] in the rubric"
    )]
    LimitsNotApplied(String),
}

/// Resource limits applied to the server and everything it starts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Most processes and threads the server may have at once (`RLIMIT_NPROC` for its uid).
    pub max_processes: u64,
    /// Most address space per process, in MiB (`RLIMIT_AS`): virtual memory, which Python
    /// threads' stacks use a lot of.
    pub max_memory_mib: u64,
    /// Most resident memory of the whole process tree, in MiB (a memory cgroup, natively as
    /// root): what keeps a few memory hogs graded side by side from exhausting the machine.
    pub max_resident_mib: u64,
    /// Most CPU time per process, in seconds (`RLIMIT_CPU`).
    pub max_cpu_secs: u64,
    /// Most bytes of the server's output (stdout and stderr) kept for feedback; the rest is
    /// read and dropped so a chatty server never blocks or fills the disk.
    pub max_output_bytes: usize,
    /// Grade even when the cgroup limits (CPU, processes, resident memory) cannot be set,
    /// for instance on a host without the controllers: the results then name each limit
    /// that is missing. Off by default: a limit that cannot be applied is an error.
    pub accept_missing_limits: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_processes: 256,
            max_memory_mib: 2048,
            max_resident_mib: 256,
            max_cpu_secs: 60,
            max_output_bytes: 16 * 1024,
            accept_missing_limits: false,
        }
    }
}

impl Limits {
    /// Applies the limits to the calling process, so that everything it starts inherits them:
    /// `RLIMIT_NPROC`, `RLIMIT_AS` and `RLIMIT_CPU` from the fields (the CPU hard limit one
    /// second above the soft one, so SIGXCPU comes before SIGKILL), no core files, files of
    /// at most 64 MiB, at most 1024 open files. A limit is never raised above its current
    /// hard value, so this works unprivileged too; a field of 0 leaves that limit alone.
    pub fn apply(&self) -> nix::Result<()> {
        use nix::sys::resource::{getrlimit, setrlimit, Resource};
        let wanted = [
            (Resource::RLIMIT_NPROC, self.max_processes, 0),
            (
                Resource::RLIMIT_AS,
                self.max_memory_mib.saturating_mul(1 << 20),
                0,
            ),
            (Resource::RLIMIT_CPU, self.max_cpu_secs, 1),
            (Resource::RLIMIT_FSIZE, 64 << 20, 0),
            (Resource::RLIMIT_NOFILE, 1024, 0),
        ];
        for (resource, value, headroom) in wanted {
            if value == 0 {
                continue;
            }
            let (_, hard) = getrlimit(resource)?;
            setrlimit(
                resource,
                value.min(hard),
                value.saturating_add(headroom).min(hard),
            )?;
        }
        setrlimit(Resource::RLIMIT_CORE, 0, 0)
    }
}

/// Everything needed to start one server.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LaunchSpec {
    /// The submission folder: copied into the sandbox, where the server runs in the copy.
    pub dir: PathBuf,
    /// Program and arguments, for example `["python3", "server_pool.py"]`.
    pub command: Vec<String>,
    /// What the server is told: `TIMESERVER_DELAY` and `TIMESERVER_WORKERS`.
    pub server: ServerParams,
    /// Further environment variables (tests).
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Resource limits.
    pub limits: Limits,
    /// The folders of the sandbox's `PATH`: bound read-only in a native sandbox.
    #[serde(default = "default_path")]
    pub path: Vec<PathBuf>,
    /// Host paths of the grader's (the rubric, the results, other submissions) that a
    /// native sandbox hides if they lie in a folder it binds.
    #[serde(default)]
    pub hidden: Vec<PathBuf>,
}

impl LaunchSpec {
    /// A spec running `command` in `dir`, with default parameters, limits and `PATH`.
    pub fn new(dir: impl Into<PathBuf>, command: Vec<String>) -> Self {
        Self {
            dir: dir.into(),
            command,
            server: ServerParams::default(),
            env: Vec::new(),
            limits: Limits::default(),
            path: default_path(),
            hidden: Vec::new(),
        }
    }
}

/// How a server process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Exit {
    /// It exited with this status.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit status {c}"),
            Exit::Signal(9) => write!(f, "killed by SIGKILL (9)"),
            Exit::Signal(s) => write!(f, "killed by signal {s}"),
        }
    }
}

/// Why a server could not be started at all: the submission's fault (no such folder or
/// program), or the sandbox's ([`LaunchError::Isolation`]).
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The submission folder does not exist or is not a folder.
    #[error("submission folder {0} does not exist")]
    NoSuchDir(PathBuf),
    /// The command is empty.
    #[error("no command to run")]
    EmptyCommand,
    /// The program could not be found or executed.
    #[error("cannot run {program}: {reason}")]
    Spawn {
        /// The program that failed.
        program: String,
        /// What the system said.
        reason: String,
    },
    /// The submission cannot be used as it is (larger than a sandbox takes).
    #[error("the submission cannot be used: {0}")]
    Submission(String),
    /// The isolation (namespaces, limits, agent) could not be set up: a grading fault.
    #[error("cannot isolate the server: {0}")]
    Isolation(#[from] IsolationError),
}

/// A running (or ended) server. Dropping it kills everything it started.
pub trait Sut: Send {
    /// The server's main process, as this process's `/proc` names it.
    fn pid(&self) -> u32;
    /// The server's processes, whose threads are counted.
    fn processes(&self) -> ProcessSet;
    /// The uid a probing process must take as its effective uid to use the server's queue
    /// (the server's own, where the prober has no `CAP_IPC_OWNER`); `None` when any will do.
    fn probe_uid(&self) -> Option<u32> {
        None
    }
    /// Runs `f` with the calling process's full privileges (the shield lowered, where there
    /// is one): to start a helper process that takes [`Sut::probe_uid`] itself.
    fn unshielded(&self, f: &mut dyn FnMut()) -> Result<(), IsolationError> {
        f();
        Ok(())
    }
    /// How the main process ended, if it has.
    fn poll_exit(&mut self) -> Option<Exit>;
    /// Kills the server and every process it started, and waits for them to go.
    fn kill_all(&mut self);
    /// The last bytes of what the server printed (stdout and stderr, interleaved).
    fn output_tail(&self) -> String;

    /// Waits up to `timeout` for the main process to end.
    fn wait_exit(&mut self, timeout: Duration) -> Option<Exit> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(exit) = self.poll_exit() {
                return Some(exit);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Starts servers in some isolation. The launcher also decides where the probing clients run:
/// they must share the server's IPC namespace.
pub trait Launcher: Send + Sync {
    /// Starts one server as `spec` says.
    fn launch(&self, spec: &LaunchSpec) -> Result<Box<dyn Sut>, LaunchError>;
    /// Removes every message queue left in the server's IPC namespace after a check, and
    /// returns how many there were. A launcher whose namespace dies with the check returns 0.
    fn sweep_queues(&self) -> usize;
    /// How the servers are isolated, in a sentence for the results.
    fn isolation(&self) -> String;
}
