//! Container mode: the agent that runs as PID 1 of the server's container and starts, watches
//! and stops servers on request ([`serve`]), and the grader-side launcher that drives it through
//! files in a shared control directory ([`AgentLauncher`]).
//!
//! # Why an agent
//!
//! Under Docker Compose the submission's server runs in its own container (`ipc: shareable`, no
//! network, read-only, limited), while the grader runs in a second container that joins its IPC
//! and PID namespaces (`ipc: "service:server"`, `pid: "service:server"`). The grader sees the
//! server's processes and queues but cannot start a process inside the other container, nor
//! `waitpid` one it did not start. The agent does both for it.
//!
//! # The file protocol
//!
//! Everything goes through a control directory shared by both containers (a volume, for example
//! `/run/poolgrade`); the submission folders must be mounted at the same paths in both.
//!
//! | file | written by | holds |
//! |---|---|---|
//! | `agent.json` | agent, at start | [`AgentInfo`]: protocol version, the agent's pid, its mode |
//! | `request.json` | launcher (write `*.tmp`, then rename) | a [`RequestFile`]: an id and a [`Request`] |
//! | `answer.json` | agent (same atomic rename) | an [`AnswerFile`]: the request's id and an [`Answer`] |
//! | `exit.json` | agent, when it reaps the server | an [`ExitRecord`]: which launch ended, and how |
//! | `output.log` | agent | the server's stdout and stderr, capped at `max_output_bytes` |
//!
//! One request is in flight at a time (the launcher serialises them); the agent takes the
//! request file, deletes it, acts, and writes the answer, which the launcher deletes after
//! reading. Every wait on either side has a deadline, so a dead agent gives
//! [`LaunchError::Isolation`] instead of a hung grader.
//!
//! # Supervision
//!
//! [`Supervision::Init`] is the container mode: the agent is PID 1 (or a child subreaper), reaps
//! every orphan, and on `stop` kills every process that descends from it. It does *not* use
//! `kill(-1, SIGKILL)`: the grader's processes share the PID namespace and the uid, and would die
//! too. [`Supervision::Children`] is for running the agent inside another process (the unit
//! tests): it only waits for the servers it started and kills their process groups and
//! descendants, and it never touches processes or queues it does not own.
//!
//! # Resource limits
//!
//! With [`Limiter::ReExecSelf`] the agent starts each server through a short-lived copy of its own
//! binary (same arguments, plus the [`LIMITED_EXEC_ENV`] variable): that copy enters [`serve`],
//! sees the variable, sets `RLIMIT_NPROC`, `RLIMIT_AS` and `RLIMIT_CPU` from the spec's
//! [`Limits`] and `exec`s the server in place, so the reported pid is the server's. No `unsafe`
//! `pre_exec` is needed. `RLIMIT_NPROC` counts every process of the uid on the host (the
//! grader's threads too, as both run as uid 10001): the container's `pids_limit` is the hard
//! fence, the rlimit a second one. [`Limiter::Off`] relies on the container's limits alone.

use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::OsString;
use std::fs;
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::sut::{Exit, LaunchError, LaunchSpec, Launcher, Limits, Sut};
use crate::mq::{self, MessageQueue, MqError};

/// Version of the file protocol; the launcher refuses an agent that speaks another one.
pub const PROTOCOL_VERSION: u32 = 1;
/// The environment variable that turns a re-executed agent into the limit-setting helper.
pub const LIMITED_EXEC_ENV: &str = "POOLGRADE_AGENT_EXEC";
/// Exit status of the helper when the server's program cannot be executed (as a shell says).
pub const EXEC_FAILED_STATUS: i32 = 127;
/// How long [`AgentLauncher::new`] waits for the agent to come up (Compose starts both
/// containers at about the same time).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the launcher waits for an answer to a quick request (launch, status, sweep).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

const HELLO_FILE: &str = "agent.json";
const REQUEST_FILE: &str = "request.json";
const ANSWER_FILE: &str = "answer.json";
const EXIT_FILE: &str = "exit.json";
const OUTPUT_FILE: &str = "output.log";

/// Failures of the agent or of the launcher's side of the protocol.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A file of the control directory could not be read or written.
    #[error("control file {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: io::Error,
    },
    /// No agent announced itself in the control directory in time.
    #[error("no agent in {ctl} after {waited:?} (is `poolgrade agent --ctl {ctl}` running in the server container, with the same volume?)")]
    NoAgent {
        /// The control directory.
        ctl: PathBuf,
        /// How long the launcher waited.
        waited: Duration,
    },
    /// The agent did not answer a request in time (it died or hangs).
    #[error("the agent in {ctl} did not answer a {op} request within {waited:?}")]
    NoAnswer {
        /// The control directory.
        ctl: PathBuf,
        /// The request.
        op: &'static str,
        /// How long the launcher waited.
        waited: Duration,
    },
    /// The agent speaks another protocol version.
    #[error("the agent speaks protocol version {found}, this grader speaks {PROTOCOL_VERSION}")]
    Version {
        /// The agent's version.
        found: u32,
    },
    /// A control file holds something that is not the protocol's JSON.
    #[error("malformed control file {path}: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The agent refused the request.
    #[error("the agent refused: {0}")]
    Refused(Refusal),
    /// The agent answered with something that does not fit the request.
    #[error("unexpected answer to a {op} request: {answer:?}")]
    Unexpected {
        /// The request.
        op: &'static str,
        /// What came back.
        answer: Box<Answer>,
    },
    /// The agent could not set itself up (signal handlers, subreaper).
    #[error("agent setup: {0}")]
    Setup(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> AgentError + '_ {
    move |source| AgentError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What the agent writes to `agent.json` when it starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInfo {
    /// [`PROTOCOL_VERSION`] of the agent.
    pub version: u32,
    /// The agent's pid in its own PID namespace (1 in a container); the grader sees the same
    /// number when it shares that namespace.
    pub agent_pid: u32,
    /// How the agent supervises its servers.
    pub supervision: Supervision,
    /// When the agent started, in milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
}

/// A request from the launcher.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Start a server (only when none is running: stop the previous one first).
    Launch {
        /// What to start.
        spec: LaunchSpec,
    },
    /// Tell the current server's pid and whether it has ended.
    Status,
    /// Kill the current server and every process it started, remove the queues, answer its exit.
    Stop,
    /// Remove the message queues in scope, answer how many.
    Sweep,
    /// Stop the current server and make [`serve`] return.
    Shutdown,
}

impl Request {
    fn op(&self) -> &'static str {
        match self {
            Request::Launch { .. } => "launch",
            Request::Status => "status",
            Request::Stop => "stop",
            Request::Sweep => "sweep",
            Request::Shutdown => "shutdown",
        }
    }
}

/// The content of `request.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestFile {
    /// Unique per request; the answer repeats it.
    pub id: String,
    /// What is asked.
    pub request: Request,
}

/// The agent's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum Answer {
    /// The server started.
    Launched {
        /// Its pid, in the agent's PID namespace.
        pid: u32,
        /// The agent's own pid, in the same namespace.
        agent_pid: u32,
        /// The agent's serial number of this launch (it tags `exit.json`).
        launch: u64,
    },
    /// The state of the current server.
    Status {
        /// Its pid, if a server was launched and not yet stopped.
        pid: Option<u32>,
        /// How it ended, if it has.
        exit: Option<Exit>,
    },
    /// The server and its processes are gone.
    Stopped {
        /// How the main process ended (`None` if no server was running).
        exit: Option<Exit>,
        /// How many processes the agent had to kill.
        killed: usize,
        /// How many message queues it removed.
        queues: usize,
    },
    /// The queues in scope were removed.
    Swept {
        /// How many were removed.
        queues: usize,
    },
    /// The agent stopped everything and is leaving.
    ShuttingDown,
    /// The request was refused.
    Refused {
        /// Why.
        refusal: Refusal,
    },
}

/// The content of `answer.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerFile {
    /// The id of the request answered.
    pub id: String,
    /// The answer.
    pub answer: Answer,
}

/// The content of `exit.json`: the agent reaped a server's main process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// The launch serial number (see [`Answer::Launched`]).
    pub launch: u64,
    /// The main process's pid.
    pub pid: u32,
    /// How it ended.
    pub exit: Exit,
}

/// Why the agent refused a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Refusal {
    /// The submission folder is missing (as the agent's container sees it).
    #[error("submission folder {dir} does not exist in the server container")]
    NoSuchDir {
        /// The folder.
        dir: PathBuf,
    },
    /// The command is empty.
    #[error("no command to run")]
    EmptyCommand,
    /// The program cannot be run.
    #[error("cannot run {program}: {reason}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        reason: String,
    },
    /// A server is still running; stop it first.
    #[error("a server (pid {pid}) is still running: stop it first")]
    Busy {
        /// The running server's pid.
        pid: u32,
    },
    /// The request file was not valid.
    #[error("bad request: {reason}")]
    BadRequest {
        /// What was wrong.
        reason: String,
    },
    /// The agent failed on its side (pipes, files).
    #[error("agent failure: {reason}")]
    Internal {
        /// What failed.
        reason: String,
    },
}

/// How the agent supervises the servers it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Supervision {
    /// Container mode: the agent is PID 1 (or makes itself a child subreaper), reaps every
    /// process that ends under it and, on stop, kills every process that descends from it.
    Init,
    /// In-process mode: only the servers it started are waited for; a stop kills each server's
    /// process group and descendants. Orphans that left both are not found.
    Children,
}

/// Which message queues a stop or a sweep removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueScope {
    /// Every queue of the IPC namespace (the server container's own namespace).
    All,
    /// Only queues with these keys (for an agent sharing the host's namespace, as in tests).
    Keys(Vec<i32>),
    /// None.
    Nothing,
}

/// How the agent applies [`Limits`] to a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Limiter {
    /// Start the server through a re-executed copy of this binary that sets the rlimits and
    /// `exec`s the server (see the module docs). Needs [`serve`] to be reached again with the
    /// same arguments, which holds for `poolgrade agent --ctl DIR`.
    ReExecSelf,
    /// Start the server directly; only the container's limits apply.
    Off,
}

/// How [`serve`] behaves.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// Supervision mode.
    pub supervision: Supervision,
    /// Which queues a stop or sweep removes.
    pub queues: QueueScope,
    /// How limits are applied.
    pub limiter: Limiter,
    /// How often the agent looks for requests and reaps children.
    pub poll: Duration,
    /// The most time a stop may take before the agent answers with what it has.
    pub stop_timeout: Duration,
    /// Whether SIGTERM, SIGINT and SIGHUP make [`serve`] stop the server and return (a PID 1
    /// without handlers ignores `docker stop`'s SIGTERM). Process-wide: off in tests.
    pub handle_signals: bool,
    /// When set to true by another thread, [`serve`] stops the server and returns.
    pub quit: Option<Arc<AtomicBool>>,
}

impl AgentOptions {
    /// The container mode: `Init` supervision, every queue of the namespace, rlimits through
    /// a re-exec, signal handlers on. What `poolgrade agent` uses.
    pub fn container() -> Self {
        Self {
            supervision: Supervision::Init,
            queues: QueueScope::All,
            limiter: Limiter::ReExecSelf,
            poll: Duration::from_millis(3),
            stop_timeout: Duration::from_secs(5),
            handle_signals: true,
            quit: None,
        }
    }

    /// The in-process mode, for tests: `Children` supervision, no queues swept, no rlimits,
    /// no signal handlers.
    pub fn in_process() -> Self {
        Self {
            supervision: Supervision::Children,
            queues: QueueScope::Nothing,
            limiter: Limiter::Off,
            handle_signals: false,
            ..Self::container()
        }
    }
}

impl Default for AgentOptions {
    fn default() -> Self {
        Self::container()
    }
}

/// What the limit-setting helper receives in [`LIMITED_EXEC_ENV`].
#[derive(Debug, Serialize, Deserialize)]
struct LimitedExec {
    limits: Limits,
    command: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// Small file helpers shared by both sides.

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Writes `value` as JSON to `dir/name` atomically: a temporary file, then a rename.
fn write_atomic<T: Serialize>(dir: &Path, name: &str, value: &T) -> Result<(), AgentError> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let text = serde_json::to_vec(value).map_err(|e| AgentError::Malformed {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    fs::write(&tmp, text).map_err(io_err(&tmp))?;
    fs::rename(&tmp, &path).map_err(io_err(&path))
}

/// Reads and parses `path`; `Ok(None)` when the file does not exist.
fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, AgentError> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| AgentError::Malformed {
                path: path.to_path_buf(),
                reason: e.to_string(),
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(AgentError::Io {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

fn remove_if_present(path: &Path) -> Result<(), AgentError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(AgentError::Io {
            path: path.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// The last `max` bytes of a file, as text (invalid UTF-8 replaced).
fn read_tail(path: &Path, max: usize) -> String {
    let Ok(mut f) = fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(max as u64);
    if f.seek(io::SeekFrom::Start(start)).is_err() {
        return String::new();
    }
    let mut buf = Vec::new();
    let _ = f.take(max as u64).read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

// ---------------------------------------------------------------------------------------------
// The agent.

/// Runs the agent on control directory `ctl` until a `shutdown` request, a termination signal
/// (with [`AgentOptions::handle_signals`]) or [`AgentOptions::quit`].
///
/// If [`LIMITED_EXEC_ENV`] is set, this process is the limit-setting helper instead: it applies
/// the limits and `exec`s the server, and never returns (it exits with [`EXEC_FAILED_STATUS`]
/// if the program cannot be run). So `poolgrade agent` must call `serve` before printing
/// anything.
///
/// Errors: the control directory cannot be created or written, or the signal handlers cannot
/// be installed. Refused requests are answered, not returned.
pub fn serve(ctl: &Path, opts: AgentOptions) -> Result<(), AgentError> {
    if let Some(raw) = std::env::var_os(LIMITED_EXEC_ENV) {
        limited_exec(raw);
    }
    fs::create_dir_all(ctl).map_err(io_err(ctl))?;
    for stale in [REQUEST_FILE, ANSWER_FILE, EXIT_FILE] {
        remove_if_present(&ctl.join(stale))?;
    }
    let me = std::process::id();
    if opts.supervision == Supervision::Init && me != 1 {
        // Orphans of the server must come to us, not to an init we do not control.
        nix::sys::prctl::set_child_subreaper(true)
            .map_err(|e| AgentError::Setup(format!("cannot become a child subreaper: {e}")))?;
    }
    let term = Arc::new(AtomicBool::new(false));
    let mut sig_ids = Vec::new();
    if opts.handle_signals {
        for sig in [
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGHUP,
        ] {
            let id = signal_hook::flag::register(sig, Arc::clone(&term))
                .map_err(|e| AgentError::Setup(format!("signal handler: {e}")))?;
            sig_ids.push(id);
        }
    }
    write_atomic(
        ctl,
        HELLO_FILE,
        &AgentInfo {
            version: PROTOCOL_VERSION,
            agent_pid: me,
            supervision: opts.supervision,
            started_unix_ms: now_ms(),
        },
    )?;
    let mut agent = Agent {
        ctl: ctl.to_path_buf(),
        opts,
        me,
        current: None,
        launches: 0,
    };
    let result = agent.run(&term);
    agent.stop();
    let _ = remove_if_present(&ctl.join(HELLO_FILE));
    for id in sig_ids {
        signal_hook::low_level::unregister(id);
    }
    result
}

/// The limit-setting helper: never returns.
fn limited_exec(raw: OsString) -> ! {
    let fail = |msg: String| -> ! {
        eprintln!("poolgrade agent: {msg}");
        std::process::exit(EXEC_FAILED_STATUS)
    };
    let Some(text) = raw.to_str() else {
        fail(format!("{LIMITED_EXEC_ENV} is not UTF-8"))
    };
    let req: LimitedExec = match serde_json::from_str(text) {
        Ok(r) => r,
        Err(e) => fail(format!("bad {LIMITED_EXEC_ENV}: {e}")),
    };
    if let Err(e) = req.limits.apply() {
        fail(format!("cannot set resource limits: {e}"));
    }
    let Some((program, args)) = req.command.split_first() else {
        fail("no command to run".into())
    };
    let err = Command::new(program)
        .args(args)
        .env_remove(LIMITED_EXEC_ENV)
        .exec();
    fail(format!("cannot run {program}: {err}"))
}

/// A server the agent started and has not yet stopped.
struct Current {
    launch: u64,
    pid: Pid,
    exit: Option<Exit>,
    drain: Option<JoinHandle<()>>,
}

struct Agent {
    ctl: PathBuf,
    opts: AgentOptions,
    me: u32,
    current: Option<Current>,
    launches: u64,
}

impl Agent {
    fn run(&mut self, term: &AtomicBool) -> Result<(), AgentError> {
        let request_path = self.ctl.join(REQUEST_FILE);
        loop {
            if term.load(Ordering::Relaxed)
                || self
                    .opts
                    .quit
                    .as_ref()
                    .is_some_and(|q| q.load(Ordering::Relaxed))
            {
                return Ok(());
            }
            self.reap();
            match fs::read(&request_path) {
                Ok(bytes) => {
                    remove_if_present(&request_path)?;
                    let (id, answer, leave) = self.handle(&bytes);
                    write_atomic(&self.ctl, ANSWER_FILE, &AnswerFile { id, answer })?;
                    if leave {
                        return Ok(());
                    }
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&request_path)(e)),
            }
            std::thread::sleep(self.opts.poll);
        }
    }

    /// Acts on one request: (id, answer, whether to leave).
    fn handle(&mut self, bytes: &[u8]) -> (String, Answer, bool) {
        let file: RequestFile = match serde_json::from_slice(bytes) {
            Ok(f) => f,
            Err(e) => {
                let id = serde_json::from_slice::<serde_json::Value>(bytes)
                    .ok()
                    .and_then(|v| v.get("id")?.as_str().map(str::to_owned))
                    .unwrap_or_default();
                let refusal = Refusal::BadRequest {
                    reason: e.to_string(),
                };
                return (id, Answer::Refused { refusal }, false);
            }
        };
        let answer = match file.request {
            Request::Launch { spec } => match self.launch(&spec) {
                Ok(a) => a,
                Err(refusal) => Answer::Refused { refusal },
            },
            Request::Status => Answer::Status {
                pid: self.current.as_ref().map(|c| c.pid.as_raw() as u32),
                exit: self.current.as_ref().and_then(|c| c.exit),
            },
            Request::Stop => {
                let (exit, killed) = self.stop();
                let queues = self.sweep();
                Answer::Stopped {
                    exit,
                    killed,
                    queues,
                }
            }
            Request::Sweep => Answer::Swept {
                queues: self.sweep(),
            },
            Request::Shutdown => {
                self.stop();
                self.sweep();
                return (file.id, Answer::ShuttingDown, true);
            }
        };
        (file.id, answer, false)
    }

    fn launch(&mut self, spec: &LaunchSpec) -> Result<Answer, Refusal> {
        if let Some(c) = &self.current {
            return Err(Refusal::Busy {
                pid: c.pid.as_raw() as u32,
            });
        }
        let Some((program, args)) = spec.command.split_first() else {
            return Err(Refusal::EmptyCommand);
        };
        if !spec.dir.is_dir() {
            return Err(Refusal::NoSuchDir {
                dir: spec.dir.clone(),
            });
        }
        resolve_program(program, &spec.dir, &spec.env).map_err(|reason| Refusal::Spawn {
            program: program.clone(),
            reason,
        })?;
        let internal = |what: &str, e: &dyn std::fmt::Display| Refusal::Internal {
            reason: format!("{what}: {e}"),
        };
        let log_path = self.ctl.join(OUTPUT_FILE);
        let log = fs::File::create(&log_path).map_err(|e| internal("output log", &e))?;
        remove_if_present(&self.ctl.join(EXIT_FILE)).map_err(|e| internal("exit file", &e))?;
        let (reader, writer) = nix::unistd::pipe().map_err(|e| internal("pipe", &e))?;
        let writer2 = writer.try_clone().map_err(|e| internal("pipe clone", &e))?;

        let mut cmd = match self.opts.limiter {
            Limiter::Off => {
                let mut c = Command::new(program);
                c.args(args);
                c
            }
            Limiter::ReExecSelf => {
                let exe = std::env::current_exe().map_err(|e| internal("own binary", &e))?;
                let payload = serde_json::to_string(&LimitedExec {
                    limits: spec.limits.clone(),
                    command: spec.command.clone(),
                })
                .map_err(|e| internal("limits", &e))?;
                let mut c = Command::new(exe);
                c.args(std::env::args_os().skip(1))
                    .env(LIMITED_EXEC_ENV, payload);
                c
            }
        };
        cmd.current_dir(&spec.dir)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(writer))
            .stderr(Stdio::from(writer2))
            .process_group(0);
        let child = cmd.spawn().map_err(|e| Refusal::Spawn {
            program: program.clone(),
            reason: e.to_string(),
        })?;
        // Our copies of the pipe's write end must go, or the drain never sees end-of-file.
        drop(cmd);
        let pid = Pid::from_raw(child.id() as i32);
        // The agent waits with waitpid itself; the std handle is not used again.
        drop(child);
        let cap = spec.limits.max_output_bytes;
        let drain = std::thread::Builder::new()
            .name("agent-drain".into())
            .spawn(move || drain_output(fs::File::from(reader), log, cap))
            .map_err(|e| internal("drain thread", &e))?;
        self.launches += 1;
        self.current = Some(Current {
            launch: self.launches,
            pid,
            exit: None,
            drain: Some(drain),
        });
        Ok(Answer::Launched {
            pid: pid.as_raw() as u32,
            agent_pid: self.me,
            launch: self.launches,
        })
    }

    /// Collects ended children without blocking, and records the main process's exit.
    fn reap(&mut self) {
        match self.opts.supervision {
            Supervision::Init => loop {
                match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) | Err(_) => break,
                    Ok(status) => self.record(status),
                }
            },
            Supervision::Children => {
                let Some(pid) = self
                    .current
                    .as_ref()
                    .filter(|c| c.exit.is_none())
                    .map(|c| c.pid)
                else {
                    return;
                };
                if let Ok(status) = waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                    self.record(status);
                }
            }
        }
    }

    fn record(&mut self, status: WaitStatus) {
        let (pid, exit) = match status {
            WaitStatus::Exited(pid, code) => (pid, Exit::Code(code)),
            WaitStatus::Signaled(pid, sig, _) => (pid, Exit::Signal(sig as i32)),
            _ => return,
        };
        let Some(c) = self.current.as_mut().filter(|c| c.pid == pid) else {
            return;
        };
        c.exit = Some(exit);
        let record = ExitRecord {
            launch: c.launch,
            pid: pid.as_raw() as u32,
            exit,
        };
        // The status request still knows the exit if this write fails.
        let _ = write_atomic(&self.ctl, EXIT_FILE, &record);
    }

    /// Kills the current server and everything it started, reaps them, and waits for its
    /// output to be drained. Returns the main process's exit and how many processes were killed.
    fn stop(&mut self) -> (Option<Exit>, usize) {
        let Some(main) = self.current.as_ref().map(|c| c.pid) else {
            return (None, 0);
        };
        let deadline = Instant::now() + self.opts.stop_timeout;
        let mut killed = HashSet::new();
        // First, before reading /proc (slow when a fork bomb starves us of CPU): the server's
        // own process group, which it got at spawn, in one signal.
        if main.as_raw() > 1 {
            let _ = kill(Pid::from_raw(-main.as_raw()), Signal::SIGKILL);
        }
        // A fork bomb forks as fast as single kills land: each round first kills whole process
        // groups (one atomic signal each; a fork racing it does not survive), then the stray
        // processes that left for groups of their own, until nothing descends from us.
        loop {
            let (targets, groups) = self.targets(main);
            if targets.is_empty() {
                break;
            }
            for g in groups {
                let _ = kill(Pid::from_raw(-g), Signal::SIGKILL);
            }
            for t in targets {
                if kill(t, Signal::SIGKILL).is_ok() {
                    killed.insert(t);
                }
            }
            self.reap();
            if Instant::now() >= deadline {
                break;
            }
        }
        // Wait for the main process's status (it may be a zombie not yet collected).
        while self.current.as_ref().is_some_and(|c| c.exit.is_none()) && Instant::now() < deadline {
            self.reap();
            std::thread::sleep(Duration::from_millis(2));
        }
        let Some(mut cur) = self.current.take() else {
            return (None, killed.len());
        };
        if let Some(drain) = cur.drain.take() {
            // The pipe closes when the last process holding it is gone.
            while !drain.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
            if drain.is_finished() {
                let _ = drain.join();
            }
        }
        (cur.exit, killed.len())
    }

    /// The live (non-zombie) processes a stop must kill, and the process groups they are in
    /// that may be signalled as a whole: never group 0 or 1 (`kill(-1)` would signal every
    /// process we may, the grader's included), never the agent's own group.
    fn targets(&self, main: Pid) -> (Vec<Pid>, Vec<i32>) {
        let table = process_table();
        let by_pid: HashMap<i32, &ProcEntry> = table.iter().map(|p| (p.pid, p)).collect();
        let mut pids = match self.opts.supervision {
            Supervision::Init => descendants(&table, self.me as i32),
            Supervision::Children => {
                let mut v = descendants(&table, main.as_raw());
                v.extend(
                    table
                        .iter()
                        .filter(|p| p.pgrp == main.as_raw() || p.pid == main.as_raw())
                        .map(|p| p.pid),
                );
                v
            }
        };
        pids.retain(|pid| by_pid.get(pid).is_some_and(|p| !p.dead) && *pid != self.me as i32);
        pids.sort_unstable();
        pids.dedup();
        let own_group = nix::unistd::getpgrp().as_raw();
        let mut groups: Vec<i32> = pids
            .iter()
            .filter_map(|pid| by_pid.get(pid).map(|p| p.pgrp))
            .filter(|&g| g > 1 && g != own_group)
            .collect();
        groups.sort_unstable();
        groups.dedup();
        (pids.into_iter().map(Pid::from_raw).collect(), groups)
    }

    /// Removes the queues in scope; returns how many were removed.
    fn sweep(&self) -> usize {
        let keys: Vec<i32> = match &self.opts.queues {
            QueueScope::Nothing => return 0,
            QueueScope::Keys(keys) => keys.clone(),
            QueueScope::All => match mq::list_queues() {
                Ok(list) => list.into_iter().map(|q| q.key).collect(),
                Err(_) => return 0,
            },
        };
        // Key 0 is IPC_PRIVATE: opening it would create a queue, and such queues cannot be
        // named by key; they die with the container's IPC namespace.
        keys.into_iter()
            .filter(|&k| k != 0)
            .filter(|&k| match MessageQueue::open(k) {
                Ok(q) => matches!(q.remove(), Ok(()) | Err(MqError::Removed)),
                Err(_) => false,
            })
            .count()
    }
}

/// Checks that `program` can be started from `dir` with `env` (a `PATH` there wins), so that a
/// missing program is refused even when the server starts through the limiter.
fn resolve_program(program: &str, dir: &Path, env: &[(String, String)]) -> Result<(), String> {
    let executable = |p: &Path| {
        fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if program.contains('/') {
        let p = dir.join(program);
        return if executable(&p) {
            Ok(())
        } else {
            Err(format!("{} is not an executable file", p.display()))
        };
    }
    let path = env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| OsString::from(v))
        .or_else(|| std::env::var_os("PATH"))
        .unwrap_or_default();
    if std::env::split_paths(&path).any(|d| executable(&d.join(program))) {
        Ok(())
    } else {
        Err("not found on PATH".into())
    }
}

/// Copies the server's output into the log, keeping at most `cap` bytes: while it runs the log
/// holds the first `cap` bytes; if more came, it ends as the first half, a marker line and the
/// last half, so both the banner and a final traceback survive. Reads until end-of-file so the
/// server never blocks on a full pipe.
fn drain_output(mut reader: fs::File, mut log: fs::File, cap: usize) {
    let mut buf = [0u8; 8192];
    let mut written = 0usize;
    let mut total = 0usize;
    let tail_cap = cap / 2;
    let mut tail: VecDeque<u8> = VecDeque::with_capacity(tail_cap);
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let chunk = &buf[..n];
        total += n;
        if written < cap {
            let take = n.min(cap - written);
            if log.write_all(&chunk[..take]).is_ok() {
                written += take;
            }
        }
        for &b in chunk.iter().rev().take(tail_cap).rev() {
            if tail.len() == tail_cap {
                tail.pop_front();
            }
            tail.push_back(b);
        }
    }
    if total > cap {
        let head = cap - tail_cap;
        let dropped = total - head - tail.len();
        if log.set_len(head as u64).is_ok() && log.seek(io::SeekFrom::Start(head as u64)).is_ok() {
            let _ = write!(log, "\n[poolgrade: {dropped} bytes of output dropped]\n");
            let (a, b) = tail.as_slices();
            let _ = log.write_all(a);
            let _ = log.write_all(b);
        }
    }
}

/// One process as `/proc/<pid>/stat` describes it.
struct ProcEntry {
    pid: i32,
    ppid: i32,
    pgrp: i32,
    /// Zombie or dead: only waits to be reaped.
    dead: bool,
}

fn process_table() -> Vec<ProcEntry> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let stat = fs::read_to_string(e.path().join("stat")).ok()?;
        // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
        let rest = &stat[stat.rfind(')')? + 1..];
        let mut f = rest.split_whitespace();
        let state = f.next()?;
        let ppid = f.next()?.parse().ok()?;
        let pgrp = f.next()?.parse().ok()?;
        Some(ProcEntry {
            pid,
            ppid,
            pgrp,
            dead: matches!(state, "Z" | "X" | "x"),
        })
    })
    .collect()
}

/// Every process whose parent chain reaches `root` (not `root` itself).
fn descendants(table: &[ProcEntry], root: i32) -> Vec<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for p in table {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    let mut out = Vec::new();
    let mut stack = vec![root];
    let mut seen = HashSet::from([root]);
    while let Some(p) = stack.pop() {
        for &c in children.get(&p).map(Vec::as_slice).unwrap_or(&[]) {
            if seen.insert(c) {
                out.push(c);
                stack.push(c);
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The launcher.

struct Channel {
    ctl: PathBuf,
    request_timeout: Duration,
    stop_timeout: Duration,
    poll: Duration,
    agent_pid: u32,
    seq: AtomicU64,
    /// Serialises requests: there is one request slot.
    slot: Mutex<()>,
}

impl Channel {
    fn request(&self, request: Request, timeout: Duration) -> Result<Answer, AgentError> {
        let _slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        let op = request.op();
        let id = format!(
            "{}-{}-{}",
            std::process::id(),
            self.seq.fetch_add(1, Ordering::Relaxed),
            now_ms()
        );
        let answer_path = self.ctl.join(ANSWER_FILE);
        let request_path = self.ctl.join(REQUEST_FILE);
        remove_if_present(&answer_path)?;
        write_atomic(
            &self.ctl,
            REQUEST_FILE,
            &RequestFile {
                id: id.clone(),
                request,
            },
        )?;
        let start = Instant::now();
        loop {
            // A half-written answer cannot be seen (atomic rename); a stale one has another id.
            if let Some(file) = read_json::<AnswerFile>(&answer_path)? {
                remove_if_present(&answer_path)?;
                if file.id == id {
                    return Ok(file.answer);
                }
            }
            if start.elapsed() >= timeout {
                // Take back a request nobody took, so a late agent does not act on it.
                if let Ok(Some(pending)) = read_json::<RequestFile>(&request_path) {
                    if pending.id == id {
                        let _ = remove_if_present(&request_path);
                    }
                }
                return Err(AgentError::NoAnswer {
                    ctl: self.ctl.clone(),
                    op,
                    waited: timeout,
                });
            }
            std::thread::sleep(self.poll);
        }
    }
}

/// The grader's side of container mode: a [`Launcher`] that has the agent in the server's
/// container start and stop servers. Cheap to clone; clones share one request slot.
#[derive(Clone)]
pub struct AgentLauncher {
    chan: Arc<Channel>,
}

impl std::fmt::Debug for AgentLauncher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentLauncher")
            .field("ctl", &self.chan.ctl)
            .field("agent_pid", &self.chan.agent_pid)
            .finish()
    }
}

impl AgentLauncher {
    /// Connects to the agent of control directory `ctl`, waiting up to
    /// [`DEFAULT_CONNECT_TIMEOUT`] for it to announce itself.
    pub fn new(ctl: impl Into<PathBuf>) -> Result<Self, AgentError> {
        Self::connect(ctl, DEFAULT_CONNECT_TIMEOUT)
    }

    /// Like [`new`](Self::new) with a chosen wait. Fails with [`AgentError::NoAgent`] if no
    /// agent announced itself in time, [`AgentError::Version`] if it speaks another protocol.
    pub fn connect(ctl: impl Into<PathBuf>, wait: Duration) -> Result<Self, AgentError> {
        let ctl = ctl.into();
        let hello = ctl.join(HELLO_FILE);
        let start = Instant::now();
        let info = loop {
            // The agent writes the file atomically; a parse error means a foreign file.
            if let Some(info) = read_json::<AgentInfo>(&hello)? {
                break info;
            }
            if start.elapsed() >= wait {
                return Err(AgentError::NoAgent { ctl, waited: wait });
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if info.version != PROTOCOL_VERSION {
            return Err(AgentError::Version {
                found: info.version,
            });
        }
        Ok(Self {
            chan: Arc::new(Channel {
                ctl,
                request_timeout: DEFAULT_REQUEST_TIMEOUT,
                stop_timeout: AgentOptions::container().stop_timeout,
                poll: Duration::from_millis(2),
                agent_pid: info.agent_pid,
                seq: AtomicU64::new(0),
                slot: Mutex::new(()),
            }),
        })
    }

    /// Sets how long quick requests may wait for an answer (default
    /// [`DEFAULT_REQUEST_TIMEOUT`]); a stop also gets the agent's stop time on top.
    pub fn with_request_timeout(self, timeout: Duration) -> Self {
        let c = &self.chan;
        Self {
            chan: Arc::new(Channel {
                ctl: c.ctl.clone(),
                request_timeout: timeout,
                stop_timeout: c.stop_timeout,
                poll: c.poll,
                agent_pid: c.agent_pid,
                seq: AtomicU64::new(c.seq.load(Ordering::Relaxed)),
                slot: Mutex::new(()),
            }),
        }
    }

    /// The control directory.
    pub fn ctl(&self) -> &Path {
        &self.chan.ctl
    }

    /// The agent's pid as it announced it (1 in a container; the grader sees the same number
    /// when it shares the server's PID namespace).
    pub fn agent_pid(&self) -> u32 {
        self.chan.agent_pid
    }

    /// Sends one request and waits for its answer (with the request timeout, plus the stop
    /// time for `stop` and `shutdown`).
    pub fn request(&self, request: Request) -> Result<Answer, AgentError> {
        let timeout = match request {
            Request::Stop | Request::Shutdown => self.chan.request_timeout + self.chan.stop_timeout,
            _ => self.chan.request_timeout,
        };
        self.chan.request(request, timeout)
    }

    /// The current server's pid and exit, as the agent knows them.
    pub fn status(&self) -> Result<(Option<u32>, Option<Exit>), AgentError> {
        match self.request(Request::Status)? {
            Answer::Status { pid, exit } => Ok((pid, exit)),
            other => Err(unexpected("status", other)),
        }
    }

    /// Removes the queues in the agent's scope; returns how many there were.
    pub fn try_sweep_queues(&self) -> Result<usize, AgentError> {
        match self.request(Request::Sweep)? {
            Answer::Swept { queues } => Ok(queues),
            other => Err(unexpected("sweep", other)),
        }
    }

    /// Makes the agent stop any server and leave (its container then exits 0).
    pub fn shutdown(&self) -> Result<(), AgentError> {
        match self.request(Request::Shutdown)? {
            Answer::ShuttingDown => Ok(()),
            other => Err(unexpected("shutdown", other)),
        }
    }
}

fn unexpected(op: &'static str, answer: Answer) -> AgentError {
    match answer {
        Answer::Refused { refusal } => AgentError::Refused(refusal),
        other => AgentError::Unexpected {
            op,
            answer: Box::new(other),
        },
    }
}

impl Launcher for AgentLauncher {
    fn launch(&self, spec: &LaunchSpec) -> Result<Box<dyn Sut>, LaunchError> {
        let isolation = |e: AgentError| LaunchError::Isolation(e.to_string());
        match self
            .request(Request::Launch { spec: spec.clone() })
            .map_err(isolation)?
        {
            Answer::Launched {
                pid,
                agent_pid,
                launch,
            } => Ok(Box::new(AgentSut {
                chan: Arc::clone(&self.chan),
                pid,
                agent_pid,
                launch,
                max_output: spec.limits.max_output_bytes,
                exit: None,
                stopped: false,
            })),
            Answer::Refused { refusal } => Err(match refusal {
                Refusal::NoSuchDir { dir } => LaunchError::NoSuchDir(dir),
                Refusal::EmptyCommand => LaunchError::EmptyCommand,
                Refusal::Spawn { program, reason } => LaunchError::Spawn { program, reason },
                other => LaunchError::Isolation(other.to_string()),
            }),
            other => Err(isolation(unexpected("launch", other))),
        }
    }

    fn sweep_queues(&self) -> usize {
        self.try_sweep_queues().unwrap_or(0)
    }
}

/// A server started by the agent.
struct AgentSut {
    chan: Arc<Channel>,
    pid: u32,
    agent_pid: u32,
    launch: u64,
    max_output: usize,
    exit: Option<Exit>,
    stopped: bool,
}

impl Sut for AgentSut {
    fn pid(&self) -> u32 {
        self.pid
    }

    fn tree_root(&self) -> u32 {
        self.agent_pid
    }

    fn poll_exit(&mut self) -> Option<Exit> {
        if self.exit.is_none() {
            // No round trip: the agent writes exit.json when it reaps the server.
            if let Ok(Some(rec)) = read_json::<ExitRecord>(&self.chan.ctl.join(EXIT_FILE)) {
                if rec.launch == self.launch {
                    self.exit = Some(rec.exit);
                }
            }
        }
        self.exit
    }

    fn kill_all(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let timeout = self.chan.request_timeout + self.chan.stop_timeout;
        // An agent that left cleanly removed its hello file: do not wait for it.
        let answer = if self.chan.ctl.join(HELLO_FILE).exists() {
            self.chan.request(Request::Stop, timeout)
        } else {
            Err(AgentError::NoAgent {
                ctl: self.chan.ctl.clone(),
                waited: Duration::ZERO,
            })
        };
        match answer {
            Ok(Answer::Stopped { exit, .. }) => {
                if self.exit.is_none() {
                    self.exit = exit;
                }
            }
            _ => {
                // The agent is gone or confused. Sharing its PID namespace, we can still kill
                // the server's process group ourselves; without it these fail harmlessly.
                let pid = Pid::from_raw(self.pid as i32);
                let _ = kill(Pid::from_raw(-(self.pid as i32)), Signal::SIGKILL);
                let _ = kill(pid, Signal::SIGKILL);
                if self.exit.is_none() && kill(pid, None) == Err(Errno::ESRCH) {
                    self.exit = Some(Exit::Signal(Signal::SIGKILL as i32));
                }
            }
        }
    }

    fn output_tail(&self) -> String {
        read_tail(&self.chan.ctl.join(OUTPUT_FILE), self.max_output.max(1))
    }
}

impl Drop for AgentSut {
    fn drop(&mut self) {
        self.kill_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An agent on a thread over a temporary control directory; dropping it shuts the agent
    /// down (which kills any server left) and joins the thread.
    struct TestAgent {
        dir: tempfile::TempDir,
        quit: Arc<AtomicBool>,
        thread: Option<JoinHandle<Result<(), AgentError>>>,
    }

    impl TestAgent {
        fn start(queues: QueueScope) -> Self {
            let dir = tempfile::tempdir().expect("tempdir");
            let quit = Arc::new(AtomicBool::new(false));
            let opts = AgentOptions {
                queues,
                quit: Some(Arc::clone(&quit)),
                ..AgentOptions::in_process()
            };
            let ctl = dir.path().join("ctl");
            let thread = std::thread::spawn(move || serve(&ctl, opts));
            Self {
                dir,
                quit,
                thread: Some(thread),
            }
        }

        fn ctl(&self) -> PathBuf {
            self.dir.path().join("ctl")
        }

        fn launcher(&self) -> AgentLauncher {
            AgentLauncher::connect(self.ctl(), Duration::from_secs(30)).expect("agent up")
        }
    }

    impl Drop for TestAgent {
        fn drop(&mut self) {
            self.quit.store(true, Ordering::Relaxed);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    fn spec(dir: &Path, script: &str) -> LaunchSpec {
        LaunchSpec {
            dir: dir.to_path_buf(),
            command: vec!["sh".into(), "-c".into(), script.into()],
            env: vec![],
            limits: Limits::default(),
        }
    }

    /// Whether a process with this pid is alive (exists and is not a zombie).
    fn alive(pid: i32) -> bool {
        process_table().iter().any(|p| p.pid == pid && !p.dead)
    }

    fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if f() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn launch_reports_pid_output_and_natural_exit() {
        let agent = TestAgent::start(QueueScope::Nothing);
        let launcher = agent.launcher();
        assert_eq!(launcher.agent_pid(), std::process::id());
        let mut s = spec(
            agent.dir.path(),
            "echo out; echo err >&2; echo \"$GREETING\"; exit 3",
        );
        s.env.push(("GREETING".into(), "hello from env".into()));
        let mut sut = launcher.launch(&s).expect("launch");
        assert!(sut.pid() > 0);
        assert_eq!(sut.tree_root(), std::process::id());
        assert_eq!(sut.wait_exit(Duration::from_secs(30)), Some(Exit::Code(3)));
        let (pid, exit) = launcher.status().expect("status");
        assert_eq!((pid, exit), (Some(sut.pid()), Some(Exit::Code(3))));
        sut.kill_all();
        let out = sut.output_tail();
        for want in ["out\n", "err\n", "hello from env\n"] {
            assert!(out.contains(want), "{want:?} not in {out:?}");
        }
        // After the stop the agent holds no server.
        assert_eq!(launcher.status().expect("status"), (None, None));
    }

    #[test]
    fn kill_all_kills_the_server_and_its_children() {
        let agent = TestAgent::start(QueueScope::Nothing);
        let launcher = agent.launcher();
        let pidfile = agent.dir.path().join("child.pid");
        let script = format!("sleep 300 & echo $! > {}; wait", pidfile.display());
        let mut sut = launcher
            .launch(&spec(agent.dir.path(), &script))
            .expect("launch");
        let main = sut.pid() as i32;
        assert!(wait_until(Duration::from_secs(30), || fs::read_to_string(
            &pidfile
        )
        .is_ok_and(|t| t.ends_with('\n'))));
        let child: i32 = fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(
            alive(child),
            "the server's child should run before the stop"
        );
        assert_eq!(sut.poll_exit(), None);
        sut.kill_all();
        assert_eq!(sut.poll_exit(), Some(Exit::Signal(9)));
        assert!(!alive(main), "main process {main} survived");
        assert!(
            wait_until(Duration::from_secs(30), || !alive(child)),
            "child {child} survived the stop"
        );
    }

    #[test]
    fn dropping_the_sut_stops_the_server() {
        let agent = TestAgent::start(QueueScope::Nothing);
        let launcher = agent.launcher();
        let sut = launcher
            .launch(&spec(agent.dir.path(), "exec sleep 300"))
            .expect("launch");
        let pid = sut.pid() as i32;
        assert!(alive(pid));
        drop(sut);
        assert!(!alive(pid), "server {pid} survived its Sut");
    }

    #[test]
    fn a_second_launch_is_refused_while_a_server_runs() {
        let agent = TestAgent::start(QueueScope::Nothing);
        let launcher = agent.launcher();
        let _first = launcher
            .launch(&spec(agent.dir.path(), "exec sleep 300"))
            .expect("launch");
        let err = launcher
            .launch(&spec(agent.dir.path(), "exit 0"))
            .err()
            .expect("second launch must fail");
        assert!(
            matches!(err, LaunchError::Isolation(ref m) if m.contains("still running")),
            "{err}"
        );
    }

    #[test]
    fn bad_specs_become_typed_launch_errors() {
        let agent = TestAgent::start(QueueScope::Nothing);
        let launcher = agent.launcher();
        let missing = agent.dir.path().join("no-such-folder");
        assert!(matches!(
            launcher.launch(&spec(&missing, "true")).err(),
            Some(LaunchError::NoSuchDir(d)) if d == missing
        ));
        let mut empty = spec(agent.dir.path(), "");
        empty.command.clear();
        assert!(matches!(
            launcher.launch(&empty).err(),
            Some(LaunchError::EmptyCommand)
        ));
        let mut nothere = spec(agent.dir.path(), "");
        nothere.command = vec!["poolgrade-no-such-program".into()];
        assert!(matches!(
            launcher.launch(&nothere).err(),
            Some(LaunchError::Spawn { program, .. }) if program == "poolgrade-no-such-program"
        ));
        // The agent is still usable afterwards.
        let mut sut = launcher
            .launch(&spec(agent.dir.path(), "exit 0"))
            .expect("launch");
        assert_eq!(sut.wait_exit(Duration::from_secs(30)), Some(Exit::Code(0)));
    }

    #[test]
    fn output_is_capped_and_keeps_head_and_tail() {
        let agent = TestAgent::start(QueueScope::Nothing);
        let launcher = agent.launcher();
        let mut s = spec(
            agent.dir.path(),
            "echo FIRST; i=0; while [ $i -lt 3000 ]; do echo line-$i; i=$((i+1)); done; echo LAST",
        );
        s.limits.max_output_bytes = 1000;
        let mut sut = launcher.launch(&s).expect("launch");
        // The server is never blocked by its output: it runs to the end.
        assert_eq!(sut.wait_exit(Duration::from_secs(60)), Some(Exit::Code(0)));
        sut.kill_all();
        let log = fs::read_to_string(agent.ctl().join(OUTPUT_FILE)).unwrap();
        assert!(log.starts_with("FIRST\n"), "{log:?}");
        assert!(log.ends_with("LAST\n"), "{log:?}");
        assert!(log.contains("bytes of output dropped"), "{log:?}");
        assert!(log.len() < 1100, "log of {} bytes", log.len());
    }

    #[test]
    fn stop_and_sweep_remove_the_queues_in_scope() {
        let key = 0x5041_0000 | (std::process::id() as i32 & 0xffff);
        let agent = TestAgent::start(QueueScope::Keys(vec![key]));
        let launcher = agent.launcher();
        let q = MessageQueue::create(key, 0o600).expect("create queue");
        assert_eq!(launcher.try_sweep_queues().expect("sweep"), 1);
        assert!(!MessageQueue::exists(key));
        assert_eq!(launcher.sweep_queues(), 0);
        // A stop sweeps too.
        let _q2 = MessageQueue::create(key, 0o600).expect("create queue");
        let mut sut = launcher
            .launch(&spec(agent.dir.path(), "exec sleep 300"))
            .expect("launch");
        sut.kill_all();
        assert!(!MessageQueue::exists(key));
        let _ = q.remove();
    }

    #[test]
    fn shutdown_stops_the_server_and_ends_serve() {
        let mut agent = TestAgent::start(QueueScope::Nothing);
        let launcher = agent.launcher();
        let sut = launcher
            .launch(&spec(agent.dir.path(), "exec sleep 300"))
            .expect("launch");
        let pid = sut.pid() as i32;
        launcher.shutdown().expect("shutdown");
        let result = agent.thread.take().unwrap().join().expect("agent thread");
        assert!(result.is_ok(), "{result:?}");
        assert!(!alive(pid), "server {pid} survived the shutdown");
        assert!(!agent.ctl().join(HELLO_FILE).exists());
        // With the agent gone, the Sut's drop falls back to killing directly, without hanging.
        drop(sut);
    }

    #[test]
    fn a_dead_agent_gives_isolation_errors_not_hangs() {
        let dir = tempfile::tempdir().unwrap();
        let err = AgentLauncher::connect(dir.path(), Duration::from_millis(100)).unwrap_err();
        assert!(matches!(err, AgentError::NoAgent { .. }), "{err}");
        // An agent that announced itself and died: requests time out with a clear error.
        write_atomic(
            dir.path(),
            HELLO_FILE,
            &AgentInfo {
                version: PROTOCOL_VERSION,
                agent_pid: 1,
                supervision: Supervision::Init,
                started_unix_ms: 0,
            },
        )
        .unwrap();
        let launcher = AgentLauncher::connect(dir.path(), Duration::from_secs(1))
            .unwrap()
            .with_request_timeout(Duration::from_millis(200));
        let err = launcher
            .launch(&spec(dir.path(), "true"))
            .err()
            .expect("no agent answers");
        assert!(
            matches!(err, LaunchError::Isolation(ref m) if m.contains("did not answer")),
            "{err}"
        );
        assert_eq!(launcher.sweep_queues(), 0);
        // The unanswered request was taken back.
        assert!(!dir.path().join(REQUEST_FILE).exists());
    }

    #[test]
    fn a_foreign_protocol_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(
            dir.path(),
            HELLO_FILE,
            &AgentInfo {
                version: PROTOCOL_VERSION + 1,
                agent_pid: 1,
                supervision: Supervision::Init,
                started_unix_ms: 0,
            },
        )
        .unwrap();
        let err = AgentLauncher::connect(dir.path(), Duration::from_secs(1)).unwrap_err();
        assert!(matches!(err, AgentError::Version { .. }), "{err}");
    }

    #[test]
    fn a_malformed_request_is_refused_and_the_agent_goes_on() {
        let agent = TestAgent::start(QueueScope::Nothing);
        let launcher = agent.launcher();
        fs::write(
            agent.ctl().join(".x.tmp"),
            br#"{"id":"bad-1","request":{"op":"dance"}}"#,
        )
        .unwrap();
        fs::rename(agent.ctl().join(".x.tmp"), agent.ctl().join(REQUEST_FILE)).unwrap();
        let answer_path = agent.ctl().join(ANSWER_FILE);
        assert!(wait_until(Duration::from_secs(30), || answer_path.exists()));
        let file: AnswerFile = read_json(&answer_path).unwrap().unwrap();
        assert_eq!(file.id, "bad-1");
        assert!(matches!(
            file.answer,
            Answer::Refused {
                refusal: Refusal::BadRequest { .. }
            }
        ));
        assert_eq!(launcher.status().expect("status"), (None, None));
    }

    #[test]
    fn descendants_follow_parent_links_only() {
        let e = |pid, ppid| ProcEntry {
            pid,
            ppid,
            pgrp: pid,
            dead: false,
        };
        let table = [e(1, 0), e(10, 1), e(11, 10), e(12, 11), e(20, 0), e(21, 20)];
        let mut d = descendants(&table, 1);
        d.sort_unstable();
        assert_eq!(d, vec![10, 11, 12]);
        assert_eq!(descendants(&table, 12), Vec::<i32>::new());
    }
}
