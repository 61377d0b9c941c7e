//! The unprivileged backend: where a grader is root but cannot make namespaces (a container
//! with Docker's default capabilities, as on Gradescope and PrairieLearn), the server runs
//! under a leased uid of its own, on a private copy of its submission, with rlimits, and
//! everything of that uid is killed and removed after the check.
//!
//! What keeps the server from the grader here is the uid alone: it cannot signal, ptrace or
//! read the grader's processes (they keep real and saved uid 0, see [`super::shield`]), nor
//! open the grader's files (mode 0700, or under folders it cannot enter), nor list where its
//! own copy lives (`<state>/copies`, mode 0711). It shares the machine's `/tmp`, `/proc` and
//! IPC namespace, so the checks run one at a time, and after each check [`REAP_SUBCOMMAND`]
//! (running as the uid) kills every process of the uid and removes its IPC objects, and the
//! launcher removes whatever the uid left in the world-writable folders
//! ([`WORLD_WRITABLE`]).

use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::copy::{copy_submission, CopyLimits};
use super::enter::{self, Entry};
use super::output::{self, SharedTail};
use super::program::{self, Program};
use super::shield::{self, Shield};
use super::state::{private_dir, StateDir};
use super::uids::{self, UidLease, UidRange};
use super::{env, IsolationError, REAP_SUBCOMMAND};
use crate::procfs::ProcessSet;
use crate::sut::{Exit, LaunchError, LaunchSpec, Launcher, Sut};
use sysv_mq as mq;

/// The folders every uid may write to, where a server's leftovers are looked for.
pub const WORLD_WRITABLE: &[&str] = &["/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/dev/mqueue"];

/// Whether every folder on the way to `path`, and `path` itself with `need` (`0o005`: read
/// and execute), are open to "others", so an unprivileged uid can reach it.
pub fn world_reachable(path: &Path, need: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(path) = path.canonicalize() else {
        return false;
    };
    path.metadata().is_ok_and(|m| m.mode() & need == need)
        && path
            .ancestors()
            .skip(1)
            .all(|dir| dir.metadata().is_ok_and(|m| m.mode() & 0o001 != 0))
}

/// Refuses a grading the unprivileged backend cannot keep apart. Its servers share the
/// grader's filesystem, so whatever the sandbox uid can read, they read: a rubric readable
/// by everyone, or (when a batch holds several submissions) a submission folder everyone
/// can reach, from which a server could take a peer's work.
pub fn check_exposure(
    rubric: Option<&Path>,
    submissions: &[PathBuf],
) -> Result<(), IsolationError> {
    if let Some(r) = rubric {
        if world_reachable(r, 0o004) {
            return Err(IsolationError::UnsafePath {
                path: r.to_owned(),
                reason: "the unprivileged backend's servers could read this rubric: make it readable by the grader only (chmod 600, or a folder of mode 700)".into(),
            });
        }
    }
    if submissions.len() > 1 {
        if let Some(open) = submissions.iter().find(|d| world_reachable(d, 0o005)) {
            return Err(IsolationError::UnsafePath {
                path: open.clone(),
                reason: "with several submissions, the unprivileged backend's servers could read each other's: keep them under a folder only the grader can enter (chmod 700), or grade one per container".into(),
            });
        }
    }
    Ok(())
}

/// Starts servers under one leased uid without namespaces. One launcher serves one check (a
/// check process) or, in the agent, one server at a time.
#[derive(Debug)]
pub struct LocalLauncher {
    exe: PathBuf,
    copies: PathBuf,
    lease: UidLease,
    /// Whether the calling process shields itself ([`Shield`]) while a server runs: the
    /// check process does, to use the server's queue; the agent does not probe.
    shield: bool,
}

impl LocalLauncher {
    /// A launcher that leases a sandbox uid and re-runs `exe` for `__enter` and `__reap`.
    pub fn new(exe: PathBuf, shield: bool) -> Result<Self, IsolationError> {
        let state = StateDir::open()?;
        let uids = state.subdir("uids", 0o700)?;
        let copies = state.subdir("copies", 0o711)?;
        let lease = UidLease::acquire(&uids, UidRange::for_sandboxes()?)?;
        Ok(Self {
            exe,
            copies,
            lease,
            shield,
        })
    }

    /// The sandbox uid.
    pub fn uid(&self) -> u32 {
        self.lease.uid()
    }
}

impl Launcher for LocalLauncher {
    fn launch(&self, spec: &LaunchSpec) -> Result<Box<dyn Sut>, LaunchError> {
        if !spec.dir.is_dir() {
            return Err(LaunchError::NoSuchDir(spec.dir.clone()));
        }
        let (arg0, args) = spec
            .command
            .split_first()
            .ok_or(LaunchError::EmptyCommand)?;
        let uid = self.uid();
        // Whatever an earlier server of this uid left must not meet this one.
        reap(&self.exe, uid).map_err(LaunchError::Isolation)?;
        let prog = program::resolve(arg0, &spec.path, &spec.dir)?;
        if let Program::Host(p) = &prog {
            if !world_reachable(p, 0o001) {
                return Err(LaunchError::Spawn {
                    program: arg0.clone(),
                    reason: format!(
                        "{} is in a folder the sandbox user cannot enter",
                        p.display()
                    ),
                });
            }
        }
        let copy = private_dir(&self.copies, "c-", 0o755).map_err(LaunchError::Isolation)?;
        let copied = copy_submission(&spec.dir, &copy, CopyLimits::default());
        if let Err(e) = copied {
            let _ = fs::remove_dir_all(&copy);
            return Err(e.into_launch_error(&spec.dir));
        }
        let entry = Entry {
            root: None,
            program: match &prog {
                Program::InSubmission(p) => copy.join(p),
                Program::Host(p) => p.clone(),
            },
            arg0: arg0.clone(),
            args: args.to_vec(),
            cwd: copy.clone(),
            env: env::server_env(&spec.server, &spec.env, "/tmp", &spec.path),
            limits: spec.limits.clone(),
            user: Some((uid, uid)),
            parent_death_signal: true,
        };
        let pipe = nix::unistd::pipe()
            .map_err(|e| LaunchError::Isolation(IsolationError::setup("pipe", e)));
        let (reader, writer) = match pipe {
            Ok(p) => p,
            Err(e) => {
                let _ = fs::remove_dir_all(&copy);
                return Err(e);
            }
        };
        let writer2 = writer
            .try_clone()
            .map_err(|e| LaunchError::Isolation(IsolationError::setup("pipe", e)))?;
        let child = match enter::spawn(&self.exe, &entry, Stdio::from(writer), Stdio::from(writer2))
        {
            Ok(c) => c,
            Err(e) => {
                let _ = reap(&self.exe, uid);
                let _ = fs::remove_dir_all(&copy);
                return Err(e);
            }
        };
        let output = output::capture(File::from(reader), spec.limits.max_output_bytes);
        let shield = if self.shield {
            match Shield::raise(uid, uid) {
                Ok(s) => Some(s),
                Err(e) => {
                    let _ = reap(&self.exe, uid);
                    let _ = fs::remove_dir_all(&copy);
                    return Err(LaunchError::Isolation(e));
                }
            }
        } else {
            None
        };
        Ok(Box::new(LocalSut {
            exe: self.exe.clone(),
            uid,
            child: Mutex::new(child),
            exit: None,
            output,
            shield,
            copy: Some(copy),
        }))
    }

    fn sweep_queues(&self) -> usize {
        // `__reap` removed the uid's IPC objects when the server was stopped.
        0
    }

    fn isolation(&self) -> String {
        "unprivileged: a uid leased for this check alone, no namespaces (no CAP_SYS_ADMIN): a private read-only copy of the submission, rlimits, the prober at real and saved uid 0, every process, IPC object and file of the uid removed afterwards".into()
    }
}

/// A server started by a [`LocalLauncher`].
struct LocalSut {
    exe: PathBuf,
    uid: u32,
    child: Mutex<Child>,
    exit: Option<Exit>,
    output: SharedTail,
    shield: Option<Shield>,
    copy: Option<PathBuf>,
}

impl Sut for LocalSut {
    fn pid(&self) -> u32 {
        self.child.lock().map(|c| c.id()).unwrap_or(0)
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
            if let Ok(mut child) = self.child.lock() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.exit = Some(Exit::from(status));
                }
            }
        }
        self.exit
    }

    fn kill_all(&mut self) {
        if self.copy.is_none() {
            return;
        }
        // Root again: the files left in /tmp are the uid's, and only root may remove them.
        drop(self.shield.take());
        let _ = reap(&self.exe, self.uid);
        if let Ok(mut child) = self.child.lock() {
            let _ = child.kill();
            if let Ok(status) = child.wait() {
                self.exit.get_or_insert(Exit::from(status));
            }
        }
        for dir in WORLD_WRITABLE {
            let _ = uids::remove_files_of(self.uid, Path::new(dir));
        }
        if let Some(copy) = self.copy.take() {
            let _ = fs::remove_dir_all(copy);
        }
    }

    fn output_tail(&self) -> String {
        output::text_of(&self.output)
    }
}

impl Drop for LocalSut {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// Kills every process of `uid` and removes its IPC objects, through a `__reap` running as
/// that uid; then waits until no live process of the uid is left.
pub fn reap(exe: &Path, uid: u32) -> Result<(), IsolationError> {
    let live = || {
        crate::procfs::processes_run_as(uid)
            .into_iter()
            .filter(|pid| !crate::procfs::is_zombie(*pid))
            .count()
    };
    let has_ipc = || {
        mq::list_ipc_objects()
            .iter()
            .any(|o| o.uid == uid || o.cuid == uid)
    };
    if live() == 0 && !has_ipc() {
        return Ok(());
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // std sets the uid and gid (and drops supplementary groups) before `exec`.
        let status = Command::new(exe)
            .arg(REAP_SUBCOMMAND)
            .env_clear()
            .uid(uid)
            .gid(uid)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| IsolationError::Helper(format!("starting {REAP_SUBCOMMAND}: {e}")))?;
        if status.success() && live() == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(IsolationError::Helper(format!(
                "{} process(es) of uid {uid} survived {REAP_SUBCOMMAND}",
                live()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The body of `poolgrade __reap`, run as a sandbox uid: signals SIGKILL to every process
/// it may signal (`kill(-1)`: all of its uid, in one pass the kernel makes atomic against
/// `fork`) until none is left, then removes the IPC objects the uid owns or created. Exit
/// status 0 when done, 1 when processes survived.
pub fn reap_main() -> i32 {
    let me = nix::unistd::getuid().as_raw();
    if me == 0 {
        // Never as root: kill(-1) would reach every process of the machine.
        return 2;
    }
    let everyone = Pid::from_raw(-1);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let _ = kill(everyone, Signal::SIGKILL);
        // ESRCH: no process left that this uid may signal. Zombies still count until
        // their parent reaps them, so also look at what is still alive.
        let none = kill(everyone, None) == Err(Errno::ESRCH);
        let alive = crate::procfs::processes_run_as(me)
            .into_iter()
            .filter(|pid| *pid != std::process::id() && !crate::procfs::is_zombie(*pid))
            .count();
        if none || alive == 0 {
            break;
        }
        if Instant::now() >= deadline {
            return 1;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    for obj in mq::list_ipc_objects() {
        if obj.uid == me || obj.cuid == me {
            let _ = mq::remove_ipc_object(obj.kind, obj.id);
        }
    }
    0
}

impl From<std::process::ExitStatus> for Exit {
    fn from(status: std::process::ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(c), _) => Exit::Code(c),
            (None, Some(s)) => Exit::Signal(s),
            _ => Exit::Code(-1),
        }
    }
}
