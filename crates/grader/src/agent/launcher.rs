//! The grader's side of container mode: an [`AgentLauncher`] has the agent in the server's
//! container start and stop servers, and (as a check process) takes each server's uid as its
//! effective uid while it probes ([`Shield`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::wire::{
    now_ms, read_json, remove_if_present, write_atomic, AgentError, AgentInfo, Answer, AnswerFile,
    ExitRecord, Refusal, Request, RequestFile, ANSWER_FILE, EXIT_FILE, HELLO_FILE, PRESENCE_FILE,
    PROTOCOL_VERSION, REQUEST_FILE,
};
use crate::procfs::ProcessSet;
use crate::sandbox::shield::{self, Shield};
use crate::sut::IsolationError;
use crate::sut::{Exit, LaunchError, LaunchSpec, Launcher, Sut};

/// How long [`AgentLauncher::new`] waits for the agent to come up (Compose starts both
/// containers at about the same time).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the launcher waits for an answer to a request (a stop kills a whole uid).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(45);

/// The request slot of one control folder.
struct Channel {
    ctl: PathBuf,
    request_timeout: Duration,
    poll: Duration,
    seq: AtomicU64,
    /// Serialises requests: there is one request slot.
    slot: Mutex<()>,
}

impl Channel {
    fn request(&self, request: Request) -> Result<Answer, AgentError> {
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
            if start.elapsed() >= self.request_timeout {
                // Take back a request nobody took, so a late agent does not act on it.
                if let Ok(Some(pending)) = read_json::<RequestFile>(&request_path) {
                    if pending.id == id {
                        let _ = remove_if_present(&request_path);
                    }
                }
                return Err(AgentError::NoAnswer {
                    ctl: self.ctl.clone(),
                    op,
                    waited: self.request_timeout,
                });
            }
            std::thread::sleep(self.poll);
        }
    }
}

/// The grader's presence in a control folder: rewritten every second until dropped, so the
/// agent knows it is not alone ([`super::server::AgentOptions::orphan_after`]).
pub struct Presence {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Presence {
    /// Starts marking the grader present in `ctl`.
    pub fn start(ctl: &Path) -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (ctl, s) = (ctl.to_path_buf(), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let _ = write_atomic(&ctl, PRESENCE_FILE, &now_ms());
                std::thread::sleep(Duration::from_millis(500));
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Presence {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A [`Launcher`] that asks the agent of a control folder. Cheap to clone; clones share one
/// request slot.
#[derive(Clone)]
pub struct AgentLauncher {
    chan: Arc<Channel>,
    agent_pid: u32,
    shield: bool,
    described: Arc<Mutex<String>>,
}

impl std::fmt::Debug for AgentLauncher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentLauncher")
            .field("ctl", &self.chan.ctl)
            .field("agent_pid", &self.agent_pid)
            .finish()
    }
}

impl AgentLauncher {
    /// Connects to the agent of control folder `ctl`, waiting up to
    /// [`DEFAULT_CONNECT_TIMEOUT`] for it to announce itself. The launcher shields the calling
    /// process while a server runs (see [`Shield`]): use it in a check process only.
    pub fn new(ctl: impl Into<PathBuf>) -> Result<Self, AgentError> {
        Ok(Self::connect(ctl, DEFAULT_CONNECT_TIMEOUT)?.with_shield(true))
    }

    /// Connects without the shield (for tests and tools that do not probe), waiting `wait`.
    /// Fails with [`AgentError::NoAgent`] if no agent announced itself in time,
    /// [`AgentError::Version`] if it speaks another protocol.
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
                poll: Duration::from_millis(2),
                seq: AtomicU64::new(0),
                slot: Mutex::new(()),
            }),
            agent_pid: info.agent_pid,
            shield: false,
            described: Arc::new(Mutex::new(String::new())),
        })
    }

    /// Whether the calling process takes each server's uid as its effective uid while the
    /// server runs.
    pub fn with_shield(mut self, shield: bool) -> Self {
        self.shield = shield;
        self
    }

    /// Sets how long requests may wait for an answer (default [`DEFAULT_REQUEST_TIMEOUT`]).
    pub fn with_request_timeout(self, timeout: Duration) -> Self {
        let c = &self.chan;
        Self {
            chan: Arc::new(Channel {
                ctl: c.ctl.clone(),
                request_timeout: timeout,
                poll: c.poll,
                seq: AtomicU64::new(c.seq.load(Ordering::Relaxed)),
                slot: Mutex::new(()),
            }),
            ..self
        }
    }

    /// The control folder.
    pub fn ctl(&self) -> &Path {
        &self.chan.ctl
    }

    /// The agent's pid as it announced it (1 in a container).
    pub fn agent_pid(&self) -> u32 {
        self.agent_pid
    }

    /// Sends one request and waits for its answer.
    pub fn request(&self, request: Request) -> Result<Answer, AgentError> {
        self.chan.request(request)
    }

    /// The current server's pid and exit, as the agent knows them.
    pub fn status(&self) -> Result<(Option<u32>, Option<Exit>), AgentError> {
        match self.request(Request::Status)? {
            Answer::Status { pid, exit, .. } => Ok((pid, exit)),
            other => Err(unexpected("status", other)),
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
        let isolation =
            |e: AgentError| LaunchError::Isolation(IsolationError::Agent(e.to_string()));
        match self
            .request(Request::Launch { spec: spec.clone() })
            .map_err(isolation)?
        {
            Answer::Launched {
                pid,
                uid,
                launch,
                isolation: described,
            } => {
                if let Ok(mut d) = self.described.lock() {
                    *d = described;
                }
                let shield = if self.shield {
                    Some(Shield::raise(uid, uid).map_err(LaunchError::Isolation)?)
                } else {
                    None
                };
                Ok(Box::new(AgentSut {
                    chan: Arc::clone(&self.chan),
                    pid,
                    uid,
                    launch,
                    exit: None,
                    output: None,
                    shield,
                }))
            }
            Answer::Refused { refusal } => Err(match refusal {
                Refusal::NoSuchDir { dir } => LaunchError::NoSuchDir(dir),
                Refusal::EmptyCommand => LaunchError::EmptyCommand,
                Refusal::Spawn { program, reason } => LaunchError::Spawn { program, reason },
                Refusal::Submission { reason } => LaunchError::Submission(reason),
                other => LaunchError::Isolation(IsolationError::Agent(other.to_string())),
            }),
            other => Err(isolation(unexpected("launch", other))),
        }
    }

    fn sweep_queues(&self) -> usize {
        // The agent removes the uid's IPC objects when it stops the server.
        0
    }

    fn isolation(&self) -> String {
        self.described.lock().map(|d| d.clone()).unwrap_or_default()
    }
}

/// A server started by the agent.
struct AgentSut {
    chan: Arc<Channel>,
    pid: u32,
    uid: u32,
    launch: u64,
    exit: Option<Exit>,
    /// The output, once stopped.
    output: Option<String>,
    shield: Option<Shield>,
}

impl Sut for AgentSut {
    fn pid(&self) -> u32 {
        self.pid
    }

    fn processes(&self) -> ProcessSet {
        ProcessSet::Uid(self.uid)
    }

    fn probe_uid(&self) -> Option<u32> {
        Some(self.uid)
    }

    fn unshielded(&self, f: &mut dyn FnMut()) -> Result<(), IsolationError> {
        shield::lowered_if(self.shield.as_ref(), f)
    }

    fn poll_exit(&mut self) -> Option<Exit> {
        if self.exit.is_none() {
            // No round trip: the agent writes exit.json when its server ends.
            if let Ok(Some(rec)) = read_json::<ExitRecord>(&self.chan.ctl.join(EXIT_FILE)) {
                if rec.launch == self.launch {
                    self.exit = Some(rec.exit);
                }
            }
        }
        self.exit
    }

    fn kill_all(&mut self) {
        if self.output.is_some() {
            return;
        }
        drop(self.shield.take());
        match self.chan.request(Request::Stop) {
            Ok(Answer::Stopped { exit, output }) => {
                if self.exit.is_none() {
                    self.exit = exit;
                }
                self.output = Some(output);
            }
            other => {
                self.output = Some(format!(
                    "[poolgrade: the agent did not stop the server: {other:?}]"
                ));
            }
        }
    }

    fn output_tail(&self) -> String {
        if let Some(out) = &self.output {
            return out.clone();
        }
        match self.chan.request(Request::Status) {
            Ok(Answer::Status { output, .. }) => output,
            _ => String::new(),
        }
    }
}

impl Drop for AgentSut {
    fn drop(&mut self) {
        self.kill_all();
    }
}
