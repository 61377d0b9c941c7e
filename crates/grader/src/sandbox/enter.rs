//! `__enter`: the last steps before the server, in the process that becomes it. Started as
//! root by `__init` (native) or by the unprivileged launcher, it reads an [`Entry`], mounts
//! `/proc` and enters the sandbox's root (native), sets the rlimits, drops to the sandbox
//! uid with no supplementary groups and `no_new_privs`, and `exec`s the server, so the pid
//! it was started with is the server's.
//!
//! # The hand-over
//!
//! [`spawn`] gives `__enter` one end of a socket pair as its standard input. `__enter` reads
//! the entry from it, keeps a close-on-exec duplicate and puts `/dev/null` in its place.
//! If everything works, `exec` closes the duplicate and the launcher reads end-of-file with
//! no bytes: the server is running. If a step fails, `__enter` writes why (`setup: …` for
//! the sandbox, `exec: …` for the program) and exits: the launcher tells a grading fault
//! from a submission that cannot be started, and no server output can forge either.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

use super::{IsolationError, ENTER_SUBCOMMAND};
use crate::sut::{LaunchError, Limits};

/// Exit status of `__enter` when it could not start the server.
pub const ENTER_FAILED_STATUS: i32 = 125;

/// What `__enter` writes just before `exec`.
const READY: &str = "ready: ";

/// What `__enter` does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Mount `/proc` and `pivot_root` into this prepared root (native only).
    pub root: Option<PathBuf>,
    /// The program, as a path in the sandbox (absolute, or relative to `cwd`).
    pub program: PathBuf,
    /// The program's name as the command gave it (its `argv[0]`).
    pub arg0: String,
    /// The arguments after it.
    pub args: Vec<String>,
    /// The working folder, in the sandbox.
    pub cwd: PathBuf,
    /// The whole environment (see [`super::env::server_env`]).
    pub env: Vec<(String, String)>,
    /// The rlimits.
    pub limits: Limits,
    /// Run as this uid and gid (`None`: keep the current ones, as in a user namespace).
    pub user: Option<(u32, u32)>,
    /// Send this signal to the server when the launching thread dies (the unprivileged
    /// backend: no PID namespace takes the server along).
    pub parent_death_signal: bool,
}

/// Starts `__enter` with `entry`, its output going to `stdout` and `stderr`, in a process
/// group of its own, and returns once the server runs. `Err` says whether the sandbox failed
/// ([`LaunchError::Isolation`]) or the program could not be run ([`LaunchError::Spawn`]).
pub fn spawn(
    exe: &Path,
    entry: &Entry,
    stdout: Stdio,
    stderr: Stdio,
) -> Result<Child, LaunchError> {
    let (mut ours, theirs) = UnixStream::pair()
        .map_err(|e| LaunchError::Isolation(IsolationError::setup("socketpair", e)))?;
    let json = serde_json::to_vec(entry)
        .map_err(|e| LaunchError::Isolation(IsolationError::setup("encoding the entry", e)))?;
    let mut cmd = Command::new(exe);
    cmd.arg(ENTER_SUBCOMMAND)
        .env_clear()
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(stdout)
        .stderr(stderr)
        // Its own process group: no signal meant for the grader's group reaches the server.
        .process_group(0);
    let mut child = cmd.spawn().map_err(|e| {
        LaunchError::Isolation(IsolationError::Helper(format!(
            "starting {ENTER_SUBCOMMAND}: {e}"
        )))
    })?;
    // Our copy of their end must go, or we would never read end-of-file.
    drop(cmd);
    let handed = ours
        .write_all(&json)
        .and_then(|()| ours.shutdown(std::net::Shutdown::Write));
    let _ = ours.set_read_timeout(Some(Duration::from_secs(60)));
    let mut answer = String::new();
    let read = ours.read_to_string(&mut answer);
    if let Err(e) = handed.and(read.map(|_| ())) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(LaunchError::Isolation(IsolationError::Helper(format!(
            "{ENTER_SUBCOMMAND} did not take its entry: {e}"
        ))));
    }
    let after_ready = answer.strip_prefix(READY);
    if after_ready == Some("") {
        return Ok(child);
    }
    let _ = child.wait();
    Err(match after_ready.unwrap_or(&answer).split_once(": ") {
        Some(("exec", reason)) => LaunchError::Spawn {
            program: entry.arg0.clone(),
            reason: reason.trim().to_owned(),
        },
        Some(("setup", reason)) => {
            LaunchError::Isolation(IsolationError::Helper(reason.trim().to_owned()))
        }
        _ if answer.is_empty() => LaunchError::Isolation(IsolationError::Helper(format!(
            "{ENTER_SUBCOMMAND} ended before it could start the server"
        ))),
        _ => LaunchError::Isolation(IsolationError::Helper(answer.trim().to_owned())),
    })
}

/// The body of `poolgrade __enter`: never returns when the server starts; otherwise reports
/// on the hand-over socket and returns [`ENTER_FAILED_STATUS`].
pub fn enter_main() -> i32 {
    // A close-on-exec duplicate of the socket (fd 3 or above); fd 0 becomes /dev/null.
    let status = match std::io::stdin().as_fd().try_clone_to_owned() {
        Ok(fd) => fd,
        Err(_) => return ENTER_FAILED_STATUS,
    };
    let mut status = UnixStream::from(status);
    let mut text = String::new();
    let read = status.read_to_string(&mut text);
    let mut report = |kind: &str, why: String| -> i32 {
        let _ = write!(status, "{kind}: {why}");
        ENTER_FAILED_STATUS
    };
    if let Err(e) = read {
        return report("setup", format!("reading the entry: {e}"));
    }
    let entry: Entry = match serde_json::from_str(&text) {
        Ok(e) => e,
        Err(e) => return report("setup", format!("bad entry: {e}")),
    };
    match std::fs::File::open("/dev/null") {
        Ok(null) => {
            if let Err(e) = nix::unistd::dup2(null.as_raw_fd(), 0) {
                return report("setup", format!("stdin: {e}"));
            }
        }
        Err(e) => return report("setup", format!("/dev/null: {e}")),
    }
    if let Some(root) = &entry.root {
        if let Err(e) = super::rootfs::enter(root) {
            return report("setup", e.to_string());
        }
    }
    if let Err(e) = entry.limits.apply() {
        return report("setup", format!("resource limits: {e}"));
    }
    if let Some((uid, gid)) = entry.user {
        if let Err(e) = drop_to(uid, gid) {
            return report("setup", format!("switching to uid {uid}: {e}"));
        }
    }
    if let Err(e) = nix::sys::prctl::set_no_new_privs() {
        return report("setup", format!("no_new_privs: {e}"));
    }
    // Set after the uid change, which clears it; `exec` keeps it.
    if entry.parent_death_signal {
        if let Err(e) = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL) {
            return report("setup", format!("parent-death signal: {e}"));
        }
    }
    // The last word before `exec`: if it works, the socket closes right after this line.
    let _ = report("ready", String::new());
    let err = Command::new(&entry.program)
        .arg0(&entry.arg0)
        .args(&entry.args)
        .current_dir(&entry.cwd)
        .env_clear()
        .envs(entry.env.iter().map(|(k, v)| (k, v)))
        .exec();
    report("exec", err.to_string())
}

/// Drops every privilege of a root process for good: no supplementary groups, then the gid,
/// then the uid (real, effective and saved).
pub fn drop_to(uid: u32, gid: u32) -> nix::Result<()> {
    use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};
    if nix::unistd::geteuid().is_root() {
        setgroups(&[])?;
    }
    setresgid(Gid::from_raw(gid), Gid::from_raw(gid), Gid::from_raw(gid))?;
    setresuid(Uid::from_raw(uid), Uid::from_raw(uid), Uid::from_raw(uid))
}
