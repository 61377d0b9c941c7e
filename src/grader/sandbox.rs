//! Native isolation of an untrusted server: private IPC, PID, network and UTS namespaces,
//! an unprivileged uid, resource limits, and killing whole process trees at every deadline.
//!
//! The shape of one isolated check:
//!
//! ```text
//! poolgrade (grader) ── spawns ──▶ poolgrade __check   unshare(IPC|NET|UTS), runs the probes
//!                                     └─ spawns ──▶ poolgrade __init   limits, unshare(PID), reaps
//!                                                      └─ spawns ──▶ the server: PID 1 of a new
//!                                                                    PID namespace, unprivileged uid
//! ```
//!
//! The check process shares the server's IPC namespace, so its clients talk to the server's
//! key 666 and nothing else ever sees that queue: when the check process and the server are
//! gone, the kernel frees the namespace and every queue in it. The server is PID 1 of its own
//! PID namespace: when its main process ends, or is killed, every process it started dies
//! with it, however it forked or detached. `__init` (outside that namespace, single-threaded,
//! since a process that unshares its PID namespace can start no more threads) sets the limits,
//! waits for the server and reports how it ended; it dies with the check process
//! (parent-death signal) and kills the server when it does.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::sut::{Exit, LaunchError, LaunchSpec, Launcher, Limits, Sut};

/// The hidden subcommand that runs one check in its own namespaces.
pub const CHECK_SUBCOMMAND: &str = "__check";
/// The hidden subcommand that is PID 1 of a check's PID namespace.
pub const INIT_SUBCOMMAND: &str = "__init";

/// First uid of the range given to servers when the grader runs as root; each concurrent
/// check gets its own uid so that process limits never couple two gradings.
pub const SANDBOX_UID_BASE: u32 = 200_000;

/// The program to run for `__check`, `__init` and `__client`: this very binary, through
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

/// How the check process isolated itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Real root: new namespaces, and the server runs under this unprivileged uid/gid.
    Root {
        /// The uid (and gid) the server runs as.
        uid: u32,
    },
    /// An ordinary user: a user namespace maps us to root inside it; the server keeps our uid.
    User,
}

/// Moves the calling process into fresh IPC, network and UTS namespaces (and a user
/// namespace when not root). Call it first thing in a single-threaded process.
pub fn enter_namespaces() -> Result<Isolation, LaunchError> {
    let uid = nix::unistd::geteuid().as_raw();
    let gid = nix::unistd::getegid().as_raw();
    // Not the PID namespace: a process that unshares it can no longer start threads, and the
    // probes need threads. `__init` (single-threaded) takes that step for the server.
    let common = CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWUTS;
    if uid == 0 {
        nix::sched::unshare(common)
            .map_err(|e| LaunchError::Isolation(format!("unshare as root: {e}")))?;
        let slot = std::process::id() % 100_000;
        return Ok(Isolation::Root {
            uid: SANDBOX_UID_BASE + slot,
        });
    }
    nix::sched::unshare(CloneFlags::CLONE_NEWUSER | common).map_err(|e| {
        LaunchError::Isolation(format!(
            "unshare(user, ipc, net) as uid {uid}: {e} (unprivileged user namespaces may be \
             disabled; run as root or in the container image)"
        ))
    })?;
    let write = |file: &str, text: String| {
        fs::write(format!("/proc/self/{file}"), text)
            .map_err(|e| LaunchError::Isolation(format!("writing /proc/self/{file}: {e}")))
    };
    write("setgroups", "deny".into())?;
    write("uid_map", format!("0 {uid} 1"))?;
    write("gid_map", format!("0 {gid} 1"))?;
    Ok(Isolation::User)
}

/// Whether every folder on the way to `path`, and `path` itself, can be entered or read by
/// "others" (so an unprivileged uid can reach it).
fn world_reachable(path: &Path, need: u32) -> bool {
    let Ok(path) = path.canonicalize() else {
        return false;
    };
    let mut ok = path
        .metadata()
        .map(|m| m.mode() & need == need)
        .unwrap_or(false);
    for dir in path.ancestors().skip(1) {
        ok &= dir
            .metadata()
            .map(|m| m.mode() & 0o001 != 0)
            .unwrap_or(false);
    }
    ok
}

/// Finds `program` on `path_var` (or checks it when it holds a `/`; a relative path is
/// taken from `base`), keeping only places an unprivileged uid can run it from when
/// `for_other_uid` is set.
pub fn resolve_program(
    program: &str,
    path_var: &str,
    for_other_uid: bool,
) -> Result<PathBuf, LaunchError> {
    resolve_program_in(program, path_var, for_other_uid, Path::new("."))
}

fn is_executable(p: &Path) -> bool {
    p.is_file() && p.metadata().map(|m| m.mode() & 0o111 != 0).unwrap_or(false)
}

fn resolve_program_in(
    program: &str,
    path_var: &str,
    for_other_uid: bool,
    base: &Path,
) -> Result<PathBuf, LaunchError> {
    let usable = |p: &Path| is_executable(p) && (!for_other_uid || world_reachable(p, 0o005));
    if program.contains('/') {
        let p = base.join(program);
        return if usable(&p) {
            Ok(p)
        } else {
            Err(LaunchError::Spawn {
                program: program.into(),
                reason: "not an executable file the sandbox user can run".into(),
            })
        };
    }
    for dir in path_var.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(program);
        if usable(&candidate) {
            return Ok(candidate);
        }
    }
    Err(LaunchError::Spawn {
        program: program.into(),
        reason: if for_other_uid {
            format!("not found on PATH in a folder an unprivileged user can reach ({path_var})")
        } else {
            format!("not found on PATH ({path_var})")
        },
    })
}

/// Resolves the server's program for the sandbox user. A self-contained executable that
/// the grader can run but the sandbox user cannot reach (a binary under a private home, say)
/// is copied into the launch's scratch folder; an interpreter must be reachable as it is.
fn program_for_sandbox(
    program: &str,
    path_var: &str,
    sandbox_dir: &Path,
    scratch: &Path,
) -> Result<PathBuf, LaunchError> {
    if let Ok(p) = resolve_program_in(program, path_var, true, sandbox_dir) {
        return Ok(p);
    }
    let found = resolve_program_in(program, path_var, false, sandbox_dir)?;
    let name = found
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    if name.starts_with("python") || name.starts_with("pyenv") {
        return resolve_program_in(program, path_var, true, sandbox_dir);
    }
    let bin = scratch.join("bin");
    let copy = bin.join(&name);
    fs::create_dir_all(&bin)
        .and_then(|_| fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)))
        .and_then(|_| fs::copy(&found, &copy).map(|_| ()))
        .and_then(|_| fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)))
        .map_err(|e| LaunchError::Isolation(format!("copying {}: {e}", found.display())))?;
    Ok(copy)
}

/// A fresh folder for one launch, readable by everyone and writable by root only.
fn scratch_dir() -> Result<PathBuf, LaunchError> {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "poolgrade-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir_all(&dir)
        .and_then(|_| fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)))
        .map_err(|e| LaunchError::Isolation(format!("creating {}: {e}", dir.display())))?;
    Ok(dir)
}

/// Makes the submission and its program reachable for the sandbox user: a folder others
/// can already enter is used in place (the server cannot write to it unless the folder lets
/// everyone); otherwise it is copied (at most 64 MiB) into `scratch`. Returns the program.
fn sandbox_view(
    spec: &mut LaunchSpec,
    program: &str,
    path_var: &str,
    scratch: &Path,
) -> Result<PathBuf, LaunchError> {
    if !world_reachable(&spec.dir, 0o005) {
        let copy = scratch.join("submission");
        copy_submission(&spec.dir, &copy, 64 << 20)?;
        spec.dir = copy;
    }
    program_for_sandbox(program, path_var, &spec.dir, scratch)
}

/// Copies a submission folder (regular files and folders only, at most `max_bytes`) into
/// `to`, readable by everyone and writable by no one but root.
fn copy_submission(from: &Path, to: &Path, max_bytes: u64) -> Result<(), LaunchError> {
    let mut budget = max_bytes;
    fn walk(from: &Path, to: &Path, budget: &mut u64) -> std::io::Result<()> {
        fs::create_dir_all(to)?;
        fs::set_permissions(to, fs::Permissions::from_mode(0o755))?;
        for entry in fs::read_dir(from)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            let target = to.join(entry.file_name());
            if kind.is_dir() {
                walk(&entry.path(), &target, budget)?;
            } else if kind.is_file() {
                let len = entry.metadata()?.len();
                if len > *budget {
                    return Err(std::io::Error::other(
                        "the submission folder is over 64 MiB and not readable by others",
                    ));
                }
                *budget -= len;
                fs::copy(entry.path(), &target)?;
                fs::set_permissions(&target, fs::Permissions::from_mode(0o644))?;
            }
        }
        Ok(())
    }
    walk(from, to, &mut budget)
        .map_err(|e| LaunchError::Isolation(format!("copying {}: {e}", from.display())))
}

/// A control group holding one server's whole process tree (cgroup v1 `cpu`, `pids` and
/// `memory`, or the v2 equivalents): the tree gets one fair share of the CPU and at most half
/// a core (a time server needs a few milliseconds per request; a spinning one must not starve
/// the servers graded beside it), however many processes it forks, a process cap that binds
/// root too, and a cap on its resident memory. Best effort:
/// where cgroups cannot be written (no root, read-only cgroupfs) the rlimits remain.
#[derive(Debug)]
pub struct Cgroup {
    dirs: Vec<PathBuf>,
}

impl Cgroup {
    /// Creates the group `name` with the limits, or `None` where cgroups are not writable.
    pub fn create(name: &str, limits: &Limits) -> Option<Self> {
        let root = Path::new("/sys/fs/cgroup");
        let mut dirs = Vec::new();
        let quota = |dir: &Path, v2: bool| {
            let pids = fs::write(dir.join("pids.max"), limits.max_processes.to_string());
            let cpu = if v2 {
                fs::write(dir.join("cpu.max"), "50000 100000")
            } else {
                fs::write(dir.join("cpu.cfs_period_us"), "100000")
                    .and_then(|_| fs::write(dir.join("cpu.cfs_quota_us"), "50000"))
            };
            pids.is_ok() || cpu.is_ok()
        };
        let bytes = limits.max_resident_mib.saturating_mul(1 << 20).to_string();
        raise_grading_weight(root);
        if root.join("cpu/cgroup.procs").is_file() || root.join("pids/cgroup.procs").is_file() {
            for ctrl in ["cpu", "pids", "memory"] {
                let dir = root.join(ctrl).join("poolgrade").join(name);
                if root.join(ctrl).join("cgroup.procs").is_file()
                    && fs::create_dir_all(&dir).is_ok()
                {
                    if ctrl == "memory" {
                        let _ = fs::write(dir.join("memory.limit_in_bytes"), &bytes);
                    } else {
                        quota(&dir, false);
                    }
                    dirs.push(dir);
                }
            }
        } else if root.join("cgroup.controllers").is_file() {
            let parent = root.join("poolgrade");
            let _ = fs::write(root.join("cgroup.subtree_control"), "+cpu +pids +memory");
            if fs::create_dir_all(&parent).is_ok() {
                let _ = fs::write(parent.join("cgroup.subtree_control"), "+cpu +pids +memory");
                let dir = parent.join(name);
                if fs::create_dir_all(&dir).is_ok() {
                    quota(&dir, true);
                    let _ = fs::write(dir.join("memory.max"), &bytes);
                    dirs.push(dir);
                }
            }
        }
        (!dirs.is_empty()).then_some(Self { dirs })
    }

    /// Moves the calling process (a check process, with its probes) into the grading
    /// subtree's `probe` group, which weighs as much as four sandboxes: the clients that time
    /// the replies must not wait behind other work on a loaded machine. Best effort.
    pub fn join_probe_group() {
        let root = Path::new("/sys/fs/cgroup");
        raise_grading_weight(root);
        let (dir, weight_file, weight) = if root.join("cpu/cgroup.procs").is_file() {
            (root.join("cpu/poolgrade/probe"), "cpu.shares", "4096")
        } else if root.join("cgroup.controllers").is_file() {
            (root.join("poolgrade/probe"), "cpu.weight", "400")
        } else {
            return;
        };
        if fs::create_dir_all(&dir).is_ok() {
            let _ = fs::write(dir.join(weight_file), weight);
            let _ = fs::write(dir.join("cgroup.procs"), "0");
        }
    }

    /// The `cgroup.procs` files a process writes itself into to join.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// The `pids.events` file, whose `max` counter says how often a fork was refused.
    pub fn pids_events(&self) -> Option<PathBuf> {
        self.dirs
            .iter()
            .map(|d| d.join("pids.events"))
            .find(|f| f.is_file())
    }

    /// Whether the group has refused a fork for reaching its process limit.
    pub fn hit_process_limit(events: &Path) -> bool {
        fs::read_to_string(events).is_ok_and(|text| {
            text.lines()
                .filter_map(|l| l.strip_prefix("max "))
                .any(|n| n.trim().parse::<u64>().is_ok_and(|n| n > 0))
        })
    }

    /// Moves the calling process into the group (its children follow).
    pub fn join(procs_files: &[PathBuf]) {
        for f in procs_files {
            let _ = fs::write(f, "0");
        }
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        for dir in &self.dirs {
            // The group empties as the killed tree is reaped: retry for a moment.
            for _ in 0..100 {
                if fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Gives the whole grading subtree (`poolgrade/`: sandboxes and probes) four times the CPU
/// weight of an ordinary process, so that grading keeps its pace beside a CPU hog such as
/// `stress-ng`. Each sandbox inside it stays capped at half a core.
fn raise_grading_weight(root: &Path) {
    sweep_stale_groups(root);
    if root.join("cpu/cgroup.procs").is_file() {
        let dir = root.join("cpu/poolgrade");
        if fs::create_dir_all(&dir).is_ok() {
            let _ = fs::write(dir.join("cpu.shares"), "4096");
        }
    } else if root.join("cgroup.controllers").is_file() {
        let dir = root.join("poolgrade");
        if fs::create_dir_all(&dir).is_ok() {
            let _ = fs::write(dir.join("cpu.weight"), "400");
        }
    }
}

/// Removes the sandbox groups left by check processes that died without cleaning up (a
/// grader killed with SIGKILL): a group is named `<check pid>-<n>`, and only the groups whose
/// check process is gone are touched (`rmdir` refuses a group that still holds a process).
fn sweep_stale_groups(root: &Path) {
    let parents = [
        root.join("cpu/poolgrade"),
        root.join("pids/poolgrade"),
        root.join("memory/poolgrade"),
        root.join("poolgrade"),
    ];
    for parent in parents {
        let Ok(entries) = fs::read_dir(&parent) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((pid, _)) = name.split_once('-') else {
                continue;
            };
            // pid_max is small and pids come back: the owner is alive only if that pid is
            // still a check process.
            let owner_alive =
                fs::read(Path::new("/proc").join(pid).join("cmdline")).is_ok_and(|cmd| {
                    cmd.split(|b| *b == 0)
                        .any(|arg| arg == CHECK_SUBCOMMAND.as_bytes())
                });
            if pid.parse::<u32>().is_ok() && !owner_alive {
                let _ = fs::remove_dir(entry.path());
            }
        }
    }
}

/// The request a grader hands to a `__init` process on its command line.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct InitRequest {
    /// The server to run.
    pub spec: LaunchSpec,
    /// The resolved program to execute.
    pub program: PathBuf,
    /// Run as this uid/gid (only when the grader is root).
    pub run_as: Option<u32>,
    /// `cgroup.procs` files to join before starting the server.
    #[serde(default)]
    pub cgroups: Vec<PathBuf>,
    /// The group's `pids.events`: the server is killed as soon as it hits the process limit.
    #[serde(default)]
    pub pids_events: Option<PathBuf>,
}

/// Launches servers under a `__init` of their own, inside the namespaces the calling check
/// process entered with [`enter_namespaces`].
#[derive(Debug, Clone)]
pub struct NativeLauncher {
    exe: PathBuf,
    isolation: Isolation,
}

impl NativeLauncher {
    /// A launcher that re-runs `exe` (this program) as the namespace's init.
    pub fn new(exe: PathBuf, isolation: Isolation) -> Self {
        Self { exe, isolation }
    }
}

impl Launcher for NativeLauncher {
    fn launch(&self, spec: &LaunchSpec) -> Result<Box<dyn Sut>, LaunchError> {
        if !spec.dir.is_dir() {
            return Err(LaunchError::NoSuchDir(spec.dir.clone()));
        }
        let program = spec.command.first().ok_or(LaunchError::EmptyCommand)?;
        let run_as = match self.isolation {
            Isolation::Root { uid } => Some(uid),
            Isolation::User => None,
        };
        let path_var = std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into());
        let mut spec = spec.clone();
        let (resolved, scratch) = match run_as {
            Some(_) => {
                let scratch = scratch_dir()?;
                match sandbox_view(&mut spec, program, &path_var, &scratch) {
                    Ok(p) => (p, Some(scratch)),
                    Err(e) => {
                        let _ = fs::remove_dir_all(&scratch);
                        return Err(e);
                    }
                }
            }
            None => (
                resolve_program_in(program, &path_var, false, &spec.dir)?,
                None,
            ),
        };
        let copy = scratch;
        static GROUPS: AtomicUsize = AtomicUsize::new(0);
        let cgroup = run_as.and_then(|_| {
            let name = format!(
                "{}-{}",
                std::process::id(),
                GROUPS.fetch_add(1, Ordering::Relaxed)
            );
            Cgroup::create(&name, &spec.limits)
        });
        let request = InitRequest {
            spec,
            program: resolved,
            run_as,
            cgroups: cgroup.as_ref().map(Cgroup::procs_files).unwrap_or_default(),
            pids_events: cgroup.as_ref().and_then(Cgroup::pids_events),
        };
        let json = serde_json::to_string(&request)
            .map_err(|e| LaunchError::Isolation(format!("encoding the request: {e}")))?;
        let mut child = Command::new(&self.exe)
            .arg(INIT_SUBCOMMAND)
            .arg(json)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| LaunchError::Isolation(format!("starting {INIT_SUBCOMMAND}: {e}")))?;
        let init = child.id();
        let output = Arc::new(Mutex::new(Tail::new(request.spec.limits.max_output_bytes)));
        if let Some(mut err) = child.stderr.take() {
            let output = output.clone();
            std::thread::spawn(move || {
                // Large reads: a server printing megabytes costs few wake-ups to drain.
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = err.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if let Ok(mut t) = output.lock() {
                        t.push(&buf[..n]);
                    }
                }
            });
        }
        let (status_tx, status_rx) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    if status_tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let mut sut = NativeSut {
            child,
            init,
            server: 0,
            exit: None,
            status_rx,
            output,
            copy,
            _cgroup: cgroup,
        };
        match sut.status_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line == "started" => {
                let kids = super::procfs::descendants(init);
                sut.server = kids.first().copied().unwrap_or(0);
                Ok(Box::new(sut))
            }
            Ok(line) => {
                let reason = line
                    .strip_prefix("spawn-error ")
                    .unwrap_or(&line)
                    .to_string();
                Err(LaunchError::Spawn {
                    program: program.clone(),
                    reason,
                })
            }
            Err(_) => Err(LaunchError::Isolation(format!(
                "{INIT_SUBCOMMAND} did not start the server: {}",
                sut.output_tail()
            ))),
        }
    }

    fn sweep_queues(&self) -> usize {
        0
    }
}

/// The last bytes of a stream, keeping at most `cap` of them.
#[derive(Debug)]
struct Tail {
    cap: usize,
    bytes: Vec<u8>,
    dropped: u64,
}

impl Tail {
    fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(256),
            bytes: Vec::new(),
            dropped: 0,
        }
    }

    fn push(&mut self, data: &[u8]) {
        self.bytes.extend_from_slice(data);
        if self.bytes.len() > self.cap {
            let cut = self.bytes.len() - self.cap;
            self.dropped += cut as u64;
            self.bytes.drain(..cut);
        }
    }

    fn text(&self) -> String {
        let body = String::from_utf8_lossy(&self.bytes);
        if self.dropped > 0 {
            format!("[… {} earlier bytes dropped]\n{body}", self.dropped)
        } else {
            body.into_owned()
        }
    }
}

/// A server running under a native `__init`.
struct NativeSut {
    child: Child,
    init: u32,
    server: u32,
    exit: Option<Exit>,
    status_rx: mpsc::Receiver<String>,
    output: Arc<Mutex<Tail>>,
    copy: Option<PathBuf>,
    /// Removed after the tree is killed (fields drop after `Drop::drop` ran).
    _cgroup: Option<Cgroup>,
}

fn parse_exit(line: &str) -> Option<Exit> {
    let mut words = line.split_whitespace();
    match (words.next()?, words.next()?, words.next()?.parse().ok()?) {
        ("exit", "code", n) => Some(Exit::Code(n)),
        ("exit", "signal", n) => Some(Exit::Signal(n)),
        _ => None,
    }
}

impl Sut for NativeSut {
    fn pid(&self) -> u32 {
        self.server
    }

    fn tree_root(&self) -> u32 {
        self.init
    }

    fn poll_exit(&mut self) -> Option<Exit> {
        if self.exit.is_none() {
            while let Ok(line) = self.status_rx.try_recv() {
                if let Some(exit) = parse_exit(&line) {
                    self.exit = Some(exit);
                }
            }
        }
        self.exit
    }

    fn kill_all(&mut self) {
        // The server is PID 1 of its namespace: killing it kills every process it started.
        if self.server == 0 {
            self.server = super::procfs::descendants(self.init)
                .first()
                .copied()
                .unwrap_or(0);
        }
        let ns = (self.server != 0)
            .then(|| fs::read_link(format!("/proc/{}/ns/pid", self.server)).ok())
            .flatten();
        if self.server != 0 {
            let _ = nix::sys::signal::kill(Pid::from_raw(self.server as i32), Signal::SIGKILL);
        }
        let _ = nix::sys::signal::kill(Pid::from_raw(self.init as i32), Signal::SIGTERM);
        // `__init` returns once the kernel has torn the namespace down; thousands of forked
        // processes on a loaded machine can take seconds.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_)) | Err(_)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(ns) = ns {
            wait_namespace_empty(&ns, Duration::from_secs(30));
        }
    }

    fn output_tail(&self) -> String {
        self.output.lock().map(|t| t.text()).unwrap_or_default()
    }
}

impl Drop for NativeSut {
    fn drop(&mut self) {
        self.kill_all();
        if let Some(copy) = &self.copy {
            let _ = fs::remove_dir_all(copy);
        }
    }
}

/// Waits until no process of this machine lives in the PID namespace `ns` (the target of a
/// `/proc/<pid>/ns/pid` link), or `timeout` passes.
fn wait_namespace_empty(ns: &Path, timeout: Duration) {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        let alive = fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .bytes()
                    .all(|b| b.is_ascii_digit())
                    && fs::read_link(e.path().join("ns/pid")).is_ok_and(|l| l == ns)
            });
        if !alive {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The body of `poolgrade __init REQUEST`: sets the limits, starts the server as PID 1 of a
/// new PID namespace, and reports on its stdout `started`, then `exit code N` or
/// `exit signal N` when the server's main process ends (the kernel then kills whatever the
/// server left behind). Returns the process exit code.
pub fn init_main(request_json: &str) -> i32 {
    // Hear of the check process's death, whatever happens to it, and take the server along.
    let term = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        let _ = signal_hook::flag::register(sig, term.clone());
    }
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGTERM);
    let mut out = std::io::stdout();
    let request: InitRequest = match serde_json::from_str(request_json) {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(out, "spawn-error bad request: {e}");
            return 2;
        }
    };
    if let Err(e) = request.spec.limits.apply() {
        let _ = writeln!(out, "spawn-error cannot set resource limits: {e}");
        return 2;
    }
    Cgroup::join(&request.cgroups);
    if let Err(e) = nix::sched::unshare(CloneFlags::CLONE_NEWPID) {
        let _ = writeln!(out, "spawn-error cannot create a PID namespace: {e}");
        return 2;
    }
    let stderr = match std::io::stderr().as_fd().try_clone_to_owned() {
        Ok(fd) => fd,
        Err(e) => {
            let _ = writeln!(out, "spawn-error {e}");
            return 2;
        }
    };
    let mut cmd = Command::new(&request.program);
    cmd.args(&request.spec.command[1..])
        .current_dir(&request.spec.dir)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("LANG", "C.UTF-8")
        .env("HOME", "/tmp")
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .envs(request.spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::from(stderr))
        .stderr(Stdio::inherit())
        // Its own process group too, so no signal meant for the grader's group reaches it.
        .process_group(0);
    if let Ok(tz) = std::env::var("TZ") {
        cmd.env("TZ", tz);
    }
    if let Some(id) = request.run_as {
        cmd.uid(id).gid(id);
    } else if let Ok(path) = std::env::var("PATH") {
        cmd.env("PATH", path);
    }
    // The server dies with us: if the check kills `__init`, the namespace goes too.
    let server = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(out, "spawn-error {e}");
            return 127;
        }
    };
    let _ = writeln!(out, "started");
    let _ = out.flush();
    let server_pid = Pid::from_raw(server.id() as i32);
    // Wait for the server; on SIGTERM (sent by the check, or by the kernel when the check
    // process dies: our parent-death signal) kill it, which ends its whole PID namespace.
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let mut polls: u32 = 0;
    let mut limit_hit = false;
    loop {
        if term.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = nix::sys::signal::kill(server_pid, Signal::SIGKILL);
        }
        // A tree that hits its process limit is forking without bound: every refused fork
        // costs the kernel a copy of the process, for everyone on the machine. Stop it now.
        polls = polls.wrapping_add(1);
        if !limit_hit
            && polls % 5 == 0
            && request
                .pids_events
                .as_deref()
                .is_some_and(Cgroup::hit_process_limit)
        {
            eprintln!(
                "poolgrade: the server reached the limit of {} processes and threads, and was killed",
                request.spec.limits.max_processes
            );
            limit_hit = true;
            let _ = nix::sys::signal::kill(server_pid, Signal::SIGKILL);
        }
        match waitpid(server_pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => {
                let _ = writeln!(out, "exit code {code}");
                break;
            }
            Ok(WaitStatus::Signaled(_, sig, _)) => {
                let _ = writeln!(out, "exit signal {}", sig as i32);
                break;
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(_) => break,
        }
    }
    let _ = out.flush();
    drop(server);
    0
}

/// Turns a finished check process's status into an [`Exit`].
pub fn exit_of(status: std::process::ExitStatus) -> Exit {
    match (status.code(), status.signal()) {
        (Some(c), _) => Exit::Code(c),
        (None, Some(s)) => Exit::Signal(s),
        _ => Exit::Code(-1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_end() {
        let mut t = Tail::new(256);
        t.push(&[b'a'; 300]);
        t.push(b"END");
        assert!(t.text().ends_with("aEND"));
        assert!(t.text().starts_with("[… 47 earlier bytes dropped]"));
    }

    #[test]
    fn exit_lines_parse() {
        assert_eq!(parse_exit("exit code 3"), Some(Exit::Code(3)));
        assert_eq!(parse_exit("exit signal 9"), Some(Exit::Signal(9)));
        assert_eq!(parse_exit("started"), None);
    }

    #[test]
    fn programs_resolve_on_path() {
        assert!(resolve_program("sh", "/usr/bin:/bin", false).is_ok());
        assert!(matches!(
            resolve_program("no-such-program-xyz", "/usr/bin:/bin", false),
            Err(LaunchError::Spawn { .. })
        ));
    }

    #[test]
    fn a_copy_is_readable_and_bounded() {
        let src = std::env::temp_dir().join(format!("pg-copy-src-{}", std::process::id()));
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::write(src.join("a.py"), "print(1)").unwrap();
        fs::write(src.join("sub/b.txt"), "x").unwrap();
        let scratch = scratch_dir().unwrap();
        let copy = scratch.join("c");
        copy_submission(&src, &copy, 1 << 20).unwrap();
        assert_eq!(fs::read_to_string(copy.join("a.py")).unwrap(), "print(1)");
        assert_eq!(fs::read_to_string(copy.join("sub/b.txt")).unwrap(), "x");
        assert!(world_reachable(&copy.join("a.py"), 0o004));
        assert!(matches!(
            copy_submission(&src, &scratch.join("d"), 3),
            Err(LaunchError::Isolation(_))
        ));
        fs::remove_dir_all(&src).unwrap();
        fs::remove_dir_all(&scratch).unwrap();
    }
}
