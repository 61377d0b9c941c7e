//! The agent protocol's types ([`Request`], [`Answer`], the files that carry them) and the
//! small file helpers both sides use: atomic writes and tolerant reads.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::sut::{Exit, LaunchSpec};

/// Version of the file protocol; the launcher refuses an agent that speaks another one.
pub const PROTOCOL_VERSION: u32 = 2;

/// The agent's announcement.
pub const HELLO_FILE: &str = "agent.json";
/// The pending request.
pub const REQUEST_FILE: &str = "request.json";
/// The answer to it.
pub const ANSWER_FILE: &str = "answer.json";
/// The last exit of a server.
pub const EXIT_FILE: &str = "exit.json";
/// The grader's presence: milliseconds since the epoch, rewritten every second.
pub const PRESENCE_FILE: &str = "grader.alive";

/// Failures of the agent or of the launcher's side of the protocol.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A file of the control folder could not be read or written.
    #[error("control file {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: io::Error,
    },
    /// No agent announced itself in the control folder in time.
    #[error("no agent in {ctl} after {waited:?} (is `poolgrade agent --ctl {ctl}` running in the server container, with the same volume?)")]
    NoAgent {
        /// The control folder.
        ctl: PathBuf,
        /// How long the launcher waited.
        waited: Duration,
    },
    /// The agent did not answer a request in time (it died or hangs).
    #[error("the agent in {ctl} did not answer a {op} request within {waited:?}")]
    NoAnswer {
        /// The control folder.
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
    /// The agent could not set itself up (its control folder, signal handlers, its sandbox).
    #[error("agent setup: {0}")]
    Setup(String),
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> AgentError + '_ {
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
    /// The agent's pid in its own PID namespace (1 in a container).
    pub agent_pid: u32,
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
    /// Tell the current server's state and output.
    Status,
    /// Kill the current server and everything of its uid, and answer how it ended.
    Stop,
    /// Stop the current server and make the agent leave.
    Shutdown,
}

impl Request {
    /// The request's name, for messages.
    pub fn op(&self) -> &'static str {
        match self {
            Request::Launch { .. } => "launch",
            Request::Status => "status",
            Request::Stop => "stop",
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
        /// The uid (and gid) it runs as: the prober takes it as its effective uid.
        uid: u32,
        /// The agent's serial number of this launch (it tags `exit.json`).
        launch: u64,
        /// How the agent isolates it.
        isolation: String,
    },
    /// The state of the current server.
    Status {
        /// Its pid, if a server was launched and not yet stopped.
        pid: Option<u32>,
        /// How it ended, if it has.
        exit: Option<Exit>,
        /// What it printed so far (bounded).
        output: String,
    },
    /// The server and everything of its uid are gone.
    Stopped {
        /// How the main process ended (`None` if no server was running).
        exit: Option<Exit>,
        /// What it printed (bounded).
        output: String,
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

/// The content of `exit.json`: a server's main process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// The launch serial number (see [`Answer::Launched`]).
    pub launch: u64,
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
    /// The submission cannot be used as it is.
    #[error("the submission cannot be used: {reason}")]
    Submission {
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
    /// The agent's sandbox failed (a grading fault).
    #[error("the agent could not isolate the server: {reason}")]
    Isolation {
        /// What failed.
        reason: String,
    },
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Writes `value` as JSON to `dir/name` atomically: a temporary file, then a rename.
pub fn write_atomic<T: Serialize>(dir: &Path, name: &str, value: &T) -> Result<(), AgentError> {
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
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, AgentError> {
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

/// Removes `path`; a missing file is fine.
pub fn remove_if_present(path: &Path) -> Result<(), AgentError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(AgentError::Io {
            path: path.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}
