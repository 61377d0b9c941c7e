//! The native backends: a check process in fresh IPC, network and UTS namespaces (and, for an
//! ordinary user, a user namespace), and each server under a `__init` of its own, PID 1 of a
//! new PID namespace in a private mount namespace with a root of its own ([`super::rootfs`]).
//!
//! The check process shares the server's IPC namespace, so its clients talk to the server's
//! key 666 and nothing else ever sees that queue: when the check and the server are gone,
//! the kernel frees the namespace and every queue in it. The server is PID 1 of its own PID
//! namespace: when it ends, or is killed, every process it started dies with it, however it
//! forked or detached, and the grader waits until the namespace is empty. `__init` (outside
//! that namespace, and single-threaded, since a process that unshares its PID namespace can
//! start no more threads) joins the cgroup, builds the root, starts `__enter`, reports how
//! the server ended, and dies with the check process (parent-death signal), taking the
//! server along.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::cgroup::Cgroup;
use super::enter::{self, Entry};
use super::output::{self, SharedTail};
use super::program::{self, Program};
use super::rootfs::{RootPlan, SUBMISSION_DIR};
use super::state::StateDir;
use super::uids::{UidLease, UidRange};
use super::{env, own_exe, Backend, IsolationError, INIT_SUBCOMMAND};
use crate::procfs::ProcessSet;
use crate::sut::{Exit, LaunchError, LaunchSpec, Launcher, Sut};

/// The hidden subcommand that tells whether namespaces can be made here.
pub const PROBE_SUBCOMMAND: &str = "__probe";

fn ns_flags() -> CloneFlags {
    CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWUTS
}

/// Moves the calling process into fresh IPC, network and UTS namespaces (inside a new user
/// namespace for an ordinary user). Call it first thing in a single-threaded process.
pub fn enter_namespaces() -> Result<(), IsolationError> {
    let uid = nix::unistd::geteuid().as_raw();
    let gid = nix::unistd::getegid().as_raw();
    // Not the PID namespace: a process that unshares it can no longer start threads, and the
    // probes need threads. `__init` (single-threaded) takes that step for the server.
    if uid == 0 {
        return nix::sched::unshare(ns_flags())
            .map_err(|e| IsolationError::setup("unshare(IPC, NET, UTS) as root", e));
    }
    nix::sched::unshare(CloneFlags::CLONE_NEWUSER | ns_flags()).map_err(|e| {
        IsolationError::setup(
            format!("unshare(USER, IPC, NET, UTS) as uid {uid}"),
            format!("{e} (unprivileged user namespaces may be disabled: run as root)"),
        )
    })?;
    let write = |file: &str, text: String| {
        fs::write(format!("/proc/self/{file}"), text)
            .map_err(|e| IsolationError::setup(format!("writing /proc/self/{file}"), e))
    };
    write("setgroups", "deny".into())?;
    write("uid_map", format!("0 {uid} 1"))?;
    write("gid_map", format!("0 {gid} 1"))
}

/// The body of `poolgrade __probe`: makes every namespace a native sandbox needs, and a
/// tmpfs mount, and exits 0 if all of it worked.
pub fn probe_main() -> i32 {
    if enter_namespaces().is_err() {
        return 1;
    }
    if nix::sched::unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID).is_err() {
        return 1;
    }
    use nix::mount::{mount, MsFlags};
    let private = mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    );
    let tmpfs = mount(
        Some("tmpfs"),
        "/tmp",
        Some("tmpfs"),
        MsFlags::empty(),
        Some("size=1m"),
    );
    i32::from(private.is_err() || tmpfs.is_err())
}

/// Whether this process can make the namespaces of a native sandbox (asks a `__probe`).
pub fn namespaces_work() -> bool {
    Command::new(own_exe())
        .arg(PROBE_SUBCOMMAND)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// What a check process hands to its `__init`, on its standard input.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InitRequest {
    /// The root to build.
    pub plan: RootPlan,
    /// What `__enter` does.
    pub entry: Entry,
    /// `cgroup.procs` files to join before anything else.
    pub cgroups: Vec<PathBuf>,
    /// The group's `pids.events`: the server is killed as soon as it hits the process limit.
    pub pids_events: Option<PathBuf>,
    /// The process limit, for the message when it is hit.
    pub max_processes: u64,
    /// The pid of the check process that starts `__init`: if it is no longer `__init`'s
    /// parent once the parent-death signal is armed, it died first, and no server starts.
    pub parent: u32,
}

/// Launches servers under a `__init` of their own, inside the namespaces the calling check
/// process entered with [`enter_namespaces`]. One launcher serves one check: it holds the
/// check's uid lease and the empty folder the root is mounted on.
#[derive(Debug)]
pub struct NativeLauncher {
    exe: PathBuf,
    lease: Option<UidLease>,
    mount_point: PathBuf,
    /// How the last server was isolated, for the results.
    described: Mutex<String>,
}

impl NativeLauncher {
    /// A launcher for `backend` (native or user-namespace), re-running `exe` for `__init`.
    /// As root it leases a sandbox uid for the check.
    pub fn new(exe: PathBuf, backend: &Backend) -> Result<Self, IsolationError> {
        let state = StateDir::open()?;
        let roots = state.subdir("roots", 0o700)?;
        let (lease, mount_point) = match backend {
            Backend::Native => {
                let uids = state.subdir("uids", 0o700)?;
                sweep_stale(&uids, &roots);
                let lease = UidLease::acquire(&uids, UidRange::for_sandboxes()?)?;
                let point = roots.join(lease.uid().to_string());
                // Left by a grader that was killed while this uid was its: empty, ours now.
                let _ = fs::remove_dir(&point);
                fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&point)
                    .map_err(|e| {
                        IsolationError::setup(format!("creating {}", point.display()), e)
                    })?;
                (Some(lease), point)
            }
            _ => (None, super::state::private_dir(&roots, "r-", 0o700)?),
        };
        Ok(Self {
            exe,
            lease,
            mount_point,
            described: Mutex::new(String::new()),
        })
    }

    /// The sandbox uid (native only).
    pub fn uid(&self) -> Option<u32> {
        self.lease.as_ref().map(UidLease::uid)
    }
}

/// Removes what checks killed mid-run left behind (their own `Drop` never ran): for every
/// uid of `roots` or `uids` that no one leases any more, its empty mount point, its cgroup
/// and its lock file. A uid still leased is left alone.
fn sweep_stale(uids: &Path, roots: &Path) {
    let named = |dir: &Path, suffix: &str| -> Vec<u32> {
        fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_suffix(suffix)?.parse().ok()
            })
            .collect()
    };
    let mut stale = named(roots, "");
    stale.extend(named(uids, ".lock"));
    stale.sort_unstable();
    stale.dedup();
    for uid in stale {
        // Holding the lease proves no check owns the uid; dropping it removes the lock file.
        if let Ok(Some(_lease)) = UidLease::try_uid(uids, uid) {
            let _ = fs::remove_dir(roots.join(uid.to_string()));
            Cgroup::remove_stale(uid);
        }
    }
}

impl Drop for NativeLauncher {
    fn drop(&mut self) {
        // Empty on the host: the root was mounted on it only in the sandbox's namespace.
        let _ = fs::remove_dir(&self.mount_point);
    }
}

impl Launcher for NativeLauncher {
    fn launch(&self, spec: &LaunchSpec) -> Result<Box<dyn Sut>, LaunchError> {
        if !spec.dir.is_dir() {
            return Err(LaunchError::NoSuchDir(spec.dir.clone()));
        }
        let (arg0, args) = spec
            .command
            .split_first()
            .ok_or(LaunchError::EmptyCommand)?;
        let prog = program::resolve(arg0, &spec.path, &spec.dir)?;
        let mut masked = program::masked_files(&spec.path, &prog);
        masked.extend(spec.hidden.iter().cloned());
        let plan = RootPlan::new(
            self.mount_point.clone(),
            spec.dir.clone(),
            &spec.path,
            prog.host_path().map(Path::to_owned).into_iter().collect(),
            masked,
        );
        let in_sandbox = match &prog {
            Program::InSubmission(p) => Path::new(SUBMISSION_DIR).join(p),
            Program::Host(p) => p.clone(),
        };
        let entry = Entry {
            root: Some(self.mount_point.clone()),
            program: in_sandbox,
            arg0: arg0.clone(),
            args: args.to_vec(),
            cwd: PathBuf::from(SUBMISSION_DIR),
            env: env::server_env(&spec.server, &spec.env, "/tmp", &spec.path),
            limits: spec.limits.clone(),
            user: self.uid().map(|u| (u, u)),
            parent_death_signal: false,
        };
        // As root, the cgroup's limits are part of the isolation: one that cannot be set
        // stops the launch unless the rubric accepts weaker isolation, which the results
        // then name. Without a uid (a user namespace) the backend promises rlimits only.
        let (cgroup, not_set) = match self.uid().map(|u| Cgroup::create(u, &spec.limits)) {
            None => (None, Vec::new()),
            Some(Ok(g)) => {
                let missing = g.missing().to_vec();
                (Some(g), missing)
            }
            Some(Err(why)) => (None, vec![format!("cpu, pids, memory ({why})")]),
        };
        if !not_set.is_empty() && !spec.limits.accept_missing_limits {
            return Err(LaunchError::Isolation(IsolationError::LimitsNotApplied(
                format!("cgroup limits not set: {}", not_set.join("; ")),
            )));
        }
        let mut isolation = vec![match self.uid() {
            Some(_) => format!("native: own IPC, network, UTS, PID and mount namespaces; a minimal read-only root with the submission copied to {SUBMISSION_DIR}, fresh /tmp, /var/tmp and /dev/shm, own /proc; a uid leased for this check alone"),
            None => format!("user namespace: own user, IPC, network, UTS, PID and mount namespaces; a minimal read-only root with the submission copied to {SUBMISSION_DIR}, fresh /tmp, /var/tmp and /dev/shm, own /proc; the grader's own uid"),
        }];
        isolation.push(match (&cgroup, self.uid()) {
            (Some(g), _) => g.describe(),
            (None, None) => "no cgroup (rlimits only)".into(),
            (None, Some(_)) => "no cgroup".into(),
        });
        if !not_set.is_empty() {
            isolation.push(format!(
                "WEAKER ISOLATION accepted by the rubric (limits.accept_missing_limits): not set: {}",
                not_set.join("; ")
            ));
        }
        if let Ok(mut d) = self.described.lock() {
            *d = isolation.join("; ");
        }
        let request = InitRequest {
            plan,
            entry,
            cgroups: cgroup.as_ref().map(Cgroup::procs_files).unwrap_or_default(),
            pids_events: cgroup.as_ref().and_then(Cgroup::pids_events),
            max_processes: spec.limits.max_processes,
            parent: std::process::id(),
        };
        let json = serde_json::to_vec(&request).map_err(|e| {
            LaunchError::Isolation(IsolationError::setup("encoding the request", e))
        })?;
        let mut child = Command::new(&self.exe)
            .arg(INIT_SUBCOMMAND)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                LaunchError::Isolation(IsolationError::Helper(format!(
                    "starting {INIT_SUBCOMMAND}: {e}"
                )))
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(&json);
        }
        let init = child.id();
        let output = match child.stderr.take() {
            Some(err) => output::capture(err, spec.limits.max_output_bytes),
            None => output::capture(std::io::empty(), 256),
        };
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
            _cgroup: cgroup,
        };
        match sut.status_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) if line == "started" => {
                let kids = crate::procfs::descendants(init);
                sut.server = kids.first().copied().unwrap_or(0);
                Ok(Box::new(sut))
            }
            Ok(line) => Err(match line.split_once(' ') {
                Some(("spawn-error", reason)) => LaunchError::Spawn {
                    program: arg0.clone(),
                    reason: reason.to_owned(),
                },
                Some(("submission-error", reason)) => LaunchError::Submission(reason.to_owned()),
                Some((_, reason)) => {
                    LaunchError::Isolation(IsolationError::Helper(reason.to_owned()))
                }
                None => LaunchError::Isolation(IsolationError::Helper(line)),
            }),
            Err(_) => Err(LaunchError::Isolation(IsolationError::Helper(format!(
                "{INIT_SUBCOMMAND} did not start the server: {}",
                sut.output_tail()
            )))),
        }
    }

    fn sweep_queues(&self) -> usize {
        // The IPC namespace dies with the check process, and every queue in it.
        0
    }

    fn isolation(&self) -> String {
        self.described.lock().map(|d| d.clone()).unwrap_or_default()
    }
}

/// A server running under a native `__init`.
struct NativeSut {
    child: Child,
    init: u32,
    server: u32,
    exit: Option<Exit>,
    status_rx: mpsc::Receiver<String>,
    output: SharedTail,
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

    fn processes(&self) -> ProcessSet {
        ProcessSet::Descendants(self.init)
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
            self.server = crate::procfs::descendants(self.init)
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
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
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
        output::text_of(&self.output)
    }
}

impl Drop for NativeSut {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// Waits until no process of this machine lives in the PID namespace `ns` (the target of a
/// `/proc/<pid>/ns/pid` link), or `timeout` passes.
fn wait_namespace_empty(ns: &Path, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
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

/// The body of `poolgrade __init`: reads an [`InitRequest`] on its standard input, joins the
/// cgroup, enters new PID and mount namespaces, builds the root, starts `__enter` (the
/// server), and reports on its stdout `started` (or `setup-error …`, `spawn-error …`), then
/// `exit code N` or `exit signal N` when the server's main process ends (the kernel then
/// kills whatever the server left behind). Returns the process exit code.
pub fn init_main() -> i32 {
    // Hear of the check process's death, whatever happens to it, and take the server along.
    let term = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        let _ = signal_hook::flag::register(sig, term.clone());
    }
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGTERM);
    let mut out = std::io::stdout();
    let mut say = |line: String| {
        let _ = writeln!(out, "{}", line.replace('\n', " "));
        let _ = out.flush();
    };
    let mut text = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut text) {
        say(format!("setup-error reading the request: {e}"));
        return 2;
    }
    let request: InitRequest = match serde_json::from_str(&text) {
        Ok(r) => r,
        Err(e) => {
            say(format!("setup-error bad request: {e}"));
            return 2;
        }
    };
    // The parent-death signal was armed above: a check process that died before that
    // sent none, and its orphan must not start a server nobody will stop.
    if nix::unistd::getppid().as_raw() as u32 != request.parent {
        say("setup-error the check process is gone".into());
        return 2;
    }
    let failed = Cgroup::join(&request.cgroups);
    if !failed.is_empty() {
        say(format!(
            "setup-error joining the cgroup: {}",
            failed.join("; ")
        ));
        return 2;
    }
    if let Err(e) = nix::sched::unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID) {
        say(format!("setup-error unshare(NS, PID): {e}"));
        return 2;
    }
    match request.plan.build() {
        Ok(()) => {}
        Err(LaunchError::Submission(why)) => {
            say(format!("submission-error {why}"));
            return 2;
        }
        Err(e) => {
            say(format!("setup-error {e}"));
            return 2;
        }
    }
    let stderr = match std::io::stderr().as_fd().try_clone_to_owned() {
        Ok(fd) => fd,
        Err(e) => {
            say(format!("setup-error {e}"));
            return 2;
        }
    };
    if term.load(Ordering::Relaxed) {
        say("setup-error stopped before the server started".into());
        return 2;
    }
    let server = match enter::spawn(
        &own_exe(),
        &request.entry,
        Stdio::from(stderr),
        Stdio::inherit(),
    ) {
        Ok(child) => child,
        Err(LaunchError::Spawn { reason, .. }) => {
            say(format!("spawn-error {reason}"));
            return 127;
        }
        Err(e) => {
            say(format!("setup-error {e}"));
            return 2;
        }
    };
    say("started".into());
    let server_pid = Pid::from_raw(server.id() as i32);
    // Wait for the server; on SIGTERM (sent by the check, or by the kernel when the check
    // process dies: our parent-death signal) kill it, which ends its whole PID namespace.
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let mut polls: u32 = 0;
    let mut limit_hit = false;
    loop {
        if term.load(Ordering::Relaxed) {
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
                request.max_processes
            );
            limit_hit = true;
            let _ = nix::sys::signal::kill(server_pid, Signal::SIGKILL);
        }
        match waitpid(server_pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => {
                say(format!("exit code {code}"));
                break;
            }
            Ok(WaitStatus::Signaled(_, sig, _)) => {
                say(format!("exit signal {}", sig as i32));
                break;
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(_) => break,
        }
    }
    drop(server);
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_lines_parse() {
        assert_eq!(parse_exit("exit code 3"), Some(Exit::Code(3)));
        assert_eq!(parse_exit("exit signal 9"), Some(Exit::Signal(9)));
        assert_eq!(parse_exit("started"), None);
    }
}
