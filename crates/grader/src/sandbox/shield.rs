//! The prober's uid shield. Without `CAP_IPC_OWNER` (root in a container lacks it), only the
//! queue's owner may use a queue made with mode 0600, `sysv_ipc`'s default. So while it
//! probes, the check process takes the server's uid as its *effective* uid, and keeps uid 0
//! as its real and saved uid: `(0, U, 0)`.
//!
//! That is enough to use the server's queue (SysV IPC checks the effective uid), and the
//! server cannot touch the prober: `kill(2)` needs the sender's real or effective uid to
//! match the target's real or saved uid (0 here), `ptrace(2)` needs all three to match, and
//! changing credentials made the process non-dumpable, which closes its `/proc/<pid>/`
//! `environ`, `mem`, `fd` and `root` to the server's uid.
//!
//! The thread that raises the shield keeps filesystem uid 0 (`setfsuid`), and so do the
//! threads and processes it starts afterwards: the grader's own files (the agent's control
//! folder, mode 0700) stay within its reach, while SysV IPC, which checks the effective uid,
//! sees `U`. The filesystem uid plays no part in who may signal or trace the process.

use nix::unistd::{setresgid, setresuid, Gid, Uid};

use super::IsolationError;

/// Whether this process has `CAP_SETUID` and `CAP_SETGID` in its effective set (root in a
/// container with Docker's default capabilities has both).
pub fn can_switch_uids() -> bool {
    const CAP_SETGID: u32 = 6;
    const CAP_SETUID: u32 = 7;
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    let caps = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    caps & (1 << CAP_SETUID) != 0 && caps & (1 << CAP_SETGID) != 0
}

/// While alive, the calling process runs with effective uid and gid `U` and real and saved
/// uid and gid 0 (every thread: the C library changes them process-wide). Dropping it
/// restores uid 0 everywhere.
#[derive(Debug)]
pub struct Shield {
    uid: u32,
}

impl Shield {
    /// Takes `(0, uid, 0)` and `(0, gid, 0)`. Needs root.
    pub fn raise(uid: u32, gid: u32) -> Result<Shield, IsolationError> {
        let root_u = Uid::from_raw(0);
        let root_g = Gid::from_raw(0);
        // The gid first, while the effective uid is still 0.
        setresgid(root_g, Gid::from_raw(gid), root_g)
            .and_then(|()| setresuid(root_u, Uid::from_raw(uid), root_u))
            .map_err(|e| IsolationError::setup(format!("taking effective uid {uid}"), e))?;
        // Files as root again (for this thread and what it starts); it returns the old value.
        nix::unistd::setfsgid(root_g);
        nix::unistd::setfsuid(root_u);
        Ok(Shield { uid })
    }

    /// The effective uid it holds.
    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// Runs `f` as plain root, then takes the uid again: for starting a process that must
    /// begin as root (a program `exec`ed under `no_new_privs` by a process of uids `(0, U, 0)`
    /// gets uid 0 and no effective capability, so it could not take `U` itself).
    pub fn lowered<R>(&self, f: impl FnOnce() -> R) -> Result<R, IsolationError> {
        let root_u = Uid::from_raw(0);
        let root_g = Gid::from_raw(0);
        setresuid(root_u, root_u, root_u)
            .and_then(|()| setresgid(root_g, root_g, root_g))
            .map_err(|e| IsolationError::setup("lowering the shield", e))?;
        let out = f();
        setresgid(root_g, Gid::from_raw(self.uid), root_g)
            .and_then(|()| setresuid(root_u, Uid::from_raw(self.uid), root_u))
            .map_err(|e| {
                IsolationError::setup(format!("taking effective uid {} again", self.uid), e)
            })?;
        nix::unistd::setfsgid(root_g);
        nix::unistd::setfsuid(root_u);
        Ok(out)
    }
}

/// Runs `f` with the shield lowered if there is one ([`Shield::lowered`]), else as it is:
/// what a server's [`crate::sut::Sut::unshielded`] does whatever its backend.
pub fn lowered_if(shield: Option<&Shield>, f: impl FnOnce()) -> Result<(), IsolationError> {
    match shield {
        Some(shield) => shield.lowered(f),
        None => {
            f();
            Ok(())
        }
    }
}

impl Drop for Shield {
    fn drop(&mut self) {
        let root_u = Uid::from_raw(0);
        let root_g = Gid::from_raw(0);
        // The uid first: the real uid 0 allows it, and gives back the power to set the gid.
        let _ = setresuid(root_u, root_u, root_u);
        let _ = setresgid(root_g, root_g, root_g);
    }
}
