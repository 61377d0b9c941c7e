//! The agent: PID 1 of a server container, it answers the grader's requests by starting,
//! watching and stopping one server at a time with the unprivileged launcher (a fresh
//! leased uid for every server), reaps the orphans that come to it as PID 1, and leaves on
//! `shutdown` or SIGTERM.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

use super::wire::{
    io_err, now_ms, read_json, remove_if_present, write_atomic, AgentError, AgentInfo, Answer,
    AnswerFile, ExitRecord, Refusal, Request, RequestFile, ANSWER_FILE, EXIT_FILE, HELLO_FILE,
    PRESENCE_FILE, PROTOCOL_VERSION, REQUEST_FILE,
};
use crate::sandbox::local::LocalLauncher;
use crate::sandbox::{own_exe, state};
use crate::sut::{LaunchError, LaunchSpec, Launcher, Sut};

/// How [`serve`] behaves.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// How often the agent looks for requests and reaps children.
    pub poll: Duration,
    /// Whether SIGTERM, SIGINT and SIGHUP make [`serve`] stop the server and return (a PID 1
    /// without handlers ignores `docker stop`'s SIGTERM). Process-wide.
    pub handle_signals: bool,
    /// When set to true by another thread, [`serve`] stops the server and returns.
    pub quit: Option<Arc<AtomicBool>>,
    /// The program re-run for `__enter` and `__reap` (this binary by default).
    pub exe: PathBuf,
    /// Leave when the grader's presence file (`grader.alive`) was seen and then not renewed
    /// for this long: a grader that died must not leave its agent, and with it `docker
    /// compose up`, running for ever. `None`: never.
    pub orphan_after: Option<Duration>,
    /// Leave when no grader has shown itself this long after the start. `None`: never.
    pub no_grader_after: Option<Duration>,
}

impl Default for AgentOptions {
    fn default() -> Self {
        Self {
            poll: Duration::from_millis(3),
            handle_signals: true,
            quit: None,
            exe: own_exe(),
            orphan_after: Some(Duration::from_secs(60)),
            no_grader_after: Some(Duration::from_secs(900)),
        }
    }
}

/// A server the agent started and has not yet stopped.
struct Current {
    launch: u64,
    sut: Box<dyn Sut>,
    exit_written: bool,
    /// Holds the uid lease until the server is stopped.
    _launcher: LocalLauncher,
}

/// Runs the agent on control folder `ctl` (created mode 0700 if missing; refused if someone
/// else owns it or others may write it) until a `shutdown` request, a termination signal
/// (with [`AgentOptions::handle_signals`]) or [`AgentOptions::quit`].
///
/// Errors: the control folder is unsafe or cannot be written, or the signal handlers cannot
/// be installed. Refused requests are answered, not returned.
pub fn serve(ctl: &Path, opts: AgentOptions) -> Result<(), AgentError> {
    state::ensure_dir(ctl, 0o700).map_err(|e| AgentError::Setup(e.to_string()))?;
    for stale in [REQUEST_FILE, ANSWER_FILE, EXIT_FILE] {
        remove_if_present(&ctl.join(stale))?;
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
            agent_pid: std::process::id(),
            started_unix_ms: now_ms(),
        },
    )?;
    let mut agent = Agent {
        ctl: ctl.to_path_buf(),
        opts,
        current: None,
        launches: 0,
    };
    let result = agent.run(&term);
    agent.stop();
    let _ = remove_if_present(&ctl.join(HELLO_FILE));
    if term.load(Ordering::Relaxed) && std::process::id() == 1 {
        // Stopped by Docker (Compose stops every container at once): the grader sharing our
        // PID namespace is being stopped too. Leaving first would kill its processes under
        // Docker's feet, a race that can leave the engine believing a dead container runs.
        // Let it go first.
        wait_alone(Duration::from_secs(4));
    }
    for id in sig_ids {
        signal_hook::low_level::unregister(id);
    }
    result
}

struct Agent {
    ctl: PathBuf,
    opts: AgentOptions,
    current: Option<Current>,
    launches: u64,
}

impl Agent {
    fn run(&mut self, term: &AtomicBool) -> Result<(), AgentError> {
        let request_path = self.ctl.join(REQUEST_FILE);
        let began = Instant::now();
        let mut polls: u64 = 0;
        loop {
            let quit = self
                .opts
                .quit
                .as_ref()
                .is_some_and(|q| q.load(Ordering::Relaxed));
            if term.load(Ordering::Relaxed) || quit {
                return Ok(());
            }
            polls += 1;
            if polls % 100 == 0 {
                if let Some(why) = self.alone(began) {
                    eprintln!("poolgrade agent: leaving: {why}");
                    return Ok(());
                }
            }
            self.watch();
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

    /// Why the agent should leave for want of a grader, if it should.
    fn alone(&self, began: Instant) -> Option<String> {
        let seen: Option<u64> = read_json(&self.ctl.join(PRESENCE_FILE)).ok().flatten();
        match seen {
            Some(ms) => {
                let silent = Duration::from_millis(now_ms().saturating_sub(ms));
                self.opts
                    .orphan_after
                    .filter(|limit| silent > *limit)
                    .map(|_| format!("the grader has been silent for {} s", silent.as_secs()))
            }
            None => self
                .opts
                .no_grader_after
                .filter(|limit| began.elapsed() > *limit)
                .map(|limit| format!("no grader showed up within {} s", limit.as_secs())),
        }
    }

    /// Notes the current server's exit in `exit.json`, and reaps orphans (as PID 1, every
    /// process whose parent died comes to the agent).
    fn watch(&mut self) {
        let server = self.current.as_ref().map(|c| c.sut.pid());
        reap_orphans(server);
        let Some(cur) = self.current.as_mut() else {
            return;
        };
        if cur.exit_written {
            return;
        }
        if let Some(exit) = cur.sut.poll_exit() {
            let record = ExitRecord {
                launch: cur.launch,
                exit,
            };
            // The status request still knows the exit if this write fails.
            cur.exit_written = write_atomic(&self.ctl, EXIT_FILE, &record).is_ok();
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
            Request::Status => match self.current.as_mut() {
                Some(cur) => Answer::Status {
                    pid: Some(cur.sut.pid()),
                    exit: cur.sut.poll_exit(),
                    output: cur.sut.output_tail(),
                },
                None => Answer::Status {
                    pid: None,
                    exit: None,
                    output: String::new(),
                },
            },
            Request::Stop => {
                let (exit, output) = self.stop();
                Answer::Stopped { exit, output }
            }
            Request::Shutdown => {
                self.stop();
                return (file.id, Answer::ShuttingDown, true);
            }
        };
        (file.id, answer, false)
    }

    fn launch(&mut self, spec: &LaunchSpec) -> Result<Answer, Refusal> {
        if let Some(c) = &self.current {
            return Err(Refusal::Busy { pid: c.sut.pid() });
        }
        let launcher =
            LocalLauncher::new(self.opts.exe.clone(), false).map_err(|e| Refusal::Isolation {
                reason: e.to_string(),
            })?;
        let _ = remove_if_present(&self.ctl.join(EXIT_FILE));
        let sut = launcher.launch(spec).map_err(|e| match e {
            LaunchError::NoSuchDir(dir) => Refusal::NoSuchDir { dir },
            LaunchError::EmptyCommand => Refusal::EmptyCommand,
            LaunchError::Spawn { program, reason } => Refusal::Spawn { program, reason },
            LaunchError::Submission(reason) => Refusal::Submission { reason },
            LaunchError::Isolation(e) => Refusal::Isolation {
                reason: e.to_string(),
            },
        })?;
        self.launches += 1;
        let answer = Answer::Launched {
            pid: sut.pid(),
            uid: launcher.uid(),
            launch: self.launches,
            isolation: format!("container agent: {}", launcher.isolation()),
        };
        self.current = Some(Current {
            launch: self.launches,
            sut,
            exit_written: false,
            _launcher: launcher,
        });
        Ok(answer)
    }

    /// Stops the current server: everything of its uid killed and removed, its lease freed.
    fn stop(&mut self) -> (Option<crate::sut::Exit>, String) {
        let Some(mut cur) = self.current.take() else {
            return (None, String::new());
        };
        cur.sut.kill_all();
        let exit = cur.sut.poll_exit();
        let output = cur.sut.output_tail();
        (exit, output)
    }
}

/// Waits until no other live process is in sight (in a container, the agent's PID namespace:
/// the grader's processes), reaping orphans, or `timeout` passes.
fn wait_alone(timeout: Duration) {
    let me = std::process::id();
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        reap_orphans(None);
        let others = fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| *pid != me && !crate::procfs::is_zombie(*pid))
            .count();
        if others == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for every zombie child of this process except `skip` (the current server, whose
/// status its launcher collects).
fn reap_orphans(skip: Option<u32>) {
    let me = std::process::id();
    let Ok(dir) = fs::read_dir("/proc") else {
        return;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if Some(pid) == skip {
            continue;
        }
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let (state, ppid) = (f.next(), f.next().and_then(|p| p.parse::<u32>().ok()));
        if state == Some("Z") && ppid == Some(me) {
            let _ = waitpid(Pid::from_raw(pid as i32), Some(WaitPidFlag::WNOHANG));
        }
    }
}
