//! Sandbox uids: a uid that no other grader on the host uses at the same time, held for one
//! check (a [`UidLease`]), and what runs or remains under a uid.
//!
//! A lease is an exclusive `flock` on `<state>/uids/<uid>.lock`, held by the check process
//! for its whole life: two graders on one host can never hand the same uid to two servers,
//! and the kernel releases the lock when the holder dies, however it dies. The uid is drawn
//! at random from a large range that the current user namespace maps (see [`UidRange`]), and
//! a uid under which some process still runs is never leased.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use rand::Rng;

use super::IsolationError;
use crate::procfs::processes_of;

/// The environment variable that sets the sandbox uid range: `START:COUNT`.
pub const UID_RANGE_ENV: &str = "POOLGRADE_UID_RANGE";

/// How long [`UidLease::acquire`] waits for a uid of the range to be free.
pub const LEASE_WAIT: Duration = Duration::from_secs(120);

/// A range of uids to draw sandbox uids from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UidRange {
    /// The first uid.
    pub start: u32,
    /// How many.
    pub len: u32,
}

impl UidRange {
    /// The range sandboxes use: inside the uids this user namespace maps, `[2^22, 2^31)` when
    /// the namespace maps it (the initial namespace does), far above the uids of people and
    /// of services and above the usual `/etc/subuid` ranges; otherwise (a container whose
    /// namespace maps 65536 uids, say) the largest mapped stretch above 10000, leaving out
    /// 65534 (`nobody`).
    ///
    /// [`UID_RANGE_ENV`] (`START:COUNT`) overrides it, for hosts whose uid map is narrow.
    pub fn for_sandboxes() -> Result<UidRange, IsolationError> {
        if let Ok(text) = std::env::var(UID_RANGE_ENV) {
            return Self::parse(&text).ok_or_else(|| {
                IsolationError::NoUid(format!(
                    "{UID_RANGE_ENV}={text:?} is not START:COUNT with 1 <= START and 1 <= COUNT"
                ))
            });
        }
        let map =
            fs::read_to_string("/proc/self/uid_map").unwrap_or_else(|_| "0 0 4294967295".into());
        Self::from_uid_map(&map).ok_or_else(|| {
            IsolationError::NoUid(format!(
                "this user namespace maps no stretch of uids above 10000 ({})",
                map.trim()
            ))
        })
    }

    /// The range chosen from the text of a `uid_map` (each line: inside, outside, count).
    pub fn from_uid_map(map: &str) -> Option<UidRange> {
        const WANT: (u64, u64) = (1 << 22, 1 << 31);
        let mut best: Option<(u64, u64)> = None;
        for line in map.lines() {
            let f: Vec<u64> = line
                .split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect();
            let [inside, _, count] = f[..] else { continue };
            let (lo, hi) = (inside, inside + count);
            // Prefer the wide range where it is mapped.
            let (a, b) = (lo.max(WANT.0), hi.min(WANT.1));
            if b > a && b - a >= 1 << 20 {
                return Some(UidRange {
                    start: a as u32,
                    len: (b - a) as u32,
                });
            }
            let (a, b) = (lo.max(10_000), hi.min(65_534));
            if b > a && best.is_none_or(|(x, y)| b - a > y - x) {
                best = Some((a, b));
            }
        }
        best.filter(|(a, b)| b - a >= 64).map(|(a, b)| UidRange {
            start: a as u32,
            len: (b - a) as u32,
        })
    }

    /// Reads `START:COUNT`.
    pub fn parse(text: &str) -> Option<UidRange> {
        let (a, b) = text.trim().split_once(':')?;
        let (start, len): (u32, u32) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
        (start >= 1 && len >= 1 && start.checked_add(len).is_some())
            .then_some(UidRange { start, len })
    }

    /// Whether `uid` lies in the range.
    pub fn contains(&self, uid: u32) -> bool {
        uid >= self.start && uid - self.start < self.len
    }
}

/// One sandbox uid, held exclusively until dropped (see the module documentation). The
/// server runs as this uid and its group of the same number.
#[derive(Debug)]
pub struct UidLease {
    uid: u32,
    path: PathBuf,
    lock: Option<Flock<File>>,
}

impl UidLease {
    /// Leases a free uid of `range`, with its lock file in `dir` (a folder only the grader
    /// can write: see [`super::state::StateDir`]). Draws at random; when every draw is busy
    /// (a small range shared by many checks) it waits for one to be freed, up to
    /// [`LEASE_WAIT`].
    pub fn acquire(dir: &Path, range: UidRange) -> Result<UidLease, IsolationError> {
        let mut rng = rand::thread_rng();
        let deadline = Instant::now() + LEASE_WAIT;
        loop {
            for _ in 0..64 {
                let uid = range.start + rng.gen_range(0..range.len);
                if let Some(lease) = Self::try_uid(dir, uid)? {
                    return Ok(lease);
                }
            }
            if Instant::now() >= deadline {
                return Err(IsolationError::NoUid(format!(
                    "every uid of {}..{} stayed leased or in use for {} s",
                    range.start,
                    range.start as u64 + range.len as u64,
                    LEASE_WAIT.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(rng.gen_range(5..25)));
        }
    }

    /// Leases `uid` if no other grader holds it and no process runs under it.
    pub fn try_uid(dir: &Path, uid: u32) -> Result<Option<UidLease>, IsolationError> {
        let path = dir.join(format!("{uid}.lock"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| IsolationError::setup(format!("opening {}", path.display()), e))?;
        let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => return Ok(None),
            Err((_, e)) => {
                return Err(IsolationError::setup(
                    format!("locking {}", path.display()),
                    e,
                ))
            }
        };
        // The holder before us may have removed the file after we opened it: then our lock is
        // on a file nobody else will ever see, and someone may lock a new one. Try another uid.
        let same = fs::symlink_metadata(&path)
            .ok()
            .zip(lock.metadata().ok())
            .is_some_and(|(a, b)| a.ino() == b.ino() && a.dev() == b.dev());
        if !same {
            return Ok(None);
        }
        let lease = UidLease {
            uid,
            path,
            lock: Some(lock),
        };
        if !processes_of(uid).is_empty() {
            // Someone's processes run under it (a server of a grader that was killed, or a
            // user): not ours to give. Dropping the lease frees the lock file.
            return Ok(None);
        }
        Ok(Some(lease))
    }

    /// The leased uid (and gid).
    pub fn uid(&self) -> u32 {
        self.uid
    }
}

impl Drop for UidLease {
    fn drop(&mut self) {
        // Remove the file while still holding the lock, then release it (see `try_uid`).
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
        drop(self.lock.take());
    }
}

/// Removes everything owned by `uid` at the top of `dir` (a world-writable folder such as
/// `/tmp`): files, symlinks (never followed) and whole folders. Returns how many entries went.
/// Call it only once no process of `uid` is left, as root.
pub fn remove_files_of(uid: u32, dir: &Path) -> io::Result<usize> {
    let mut removed = 0;
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for entry in entries.flatten() {
        let Ok(meta) = fs::symlink_metadata(entry.path()) else {
            continue;
        };
        if meta.uid() != uid {
            continue;
        }
        // `remove_dir_all` does not follow symlinks inside the folder.
        let gone = if meta.is_dir() {
            fs::remove_dir_all(entry.path())
        } else {
            fs::remove_file(entry.path())
        };
        if gone.is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn the_range_comes_from_the_uid_map() {
        assert_eq!(
            UidRange::from_uid_map("         0          0 4294967295\n"),
            Some(UidRange {
                start: 1 << 22,
                len: (1 << 31) - (1 << 22)
            })
        );
        // A container mapping 65536 uids: the stretch above 10000, without 65534.
        assert_eq!(
            UidRange::from_uid_map("0 100000 65536\n"),
            Some(UidRange {
                start: 10_000,
                len: 65_534 - 10_000
            })
        );
        // Only root mapped (an unprivileged user namespace): nothing to lease.
        assert_eq!(UidRange::from_uid_map("0 1000 1\n"), None);
        assert_eq!(
            UidRange::parse("200000:3"),
            Some(UidRange {
                start: 200_000,
                len: 3
            })
        );
        for bad in ["0:5", "5:0", "x:1", "4294967295:2", "7"] {
            assert_eq!(UidRange::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_uid_is_leased_once_at_a_time_and_freed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let uid = 3_999_999_001;
        let first = UidLease::try_uid(dir.path(), uid).unwrap().expect("free");
        assert_eq!(first.uid(), uid);
        // flock locks belong to open files: a second open in this process is refused like
        // another grader would be.
        assert!(UidLease::try_uid(dir.path(), uid).unwrap().is_none());
        drop(first);
        assert!(!dir.path().join(format!("{uid}.lock")).exists());
        let again = UidLease::try_uid(dir.path(), uid).unwrap();
        assert!(again.is_some());
    }

    #[test]
    fn a_busy_range_waits_for_a_uid_to_be_freed() {
        let dir = tempfile::tempdir().unwrap();
        let range = UidRange {
            start: 3_999_997_000,
            len: 1,
        };
        let held = UidLease::acquire(dir.path(), range).unwrap();
        let dir_path = dir.path().to_owned();
        let waiter =
            std::thread::spawn(move || UidLease::acquire(&dir_path, range).map(|l| l.uid()));
        std::thread::sleep(Duration::from_millis(200));
        assert!(!waiter.is_finished(), "the second lease must wait");
        drop(held);
        assert_eq!(waiter.join().unwrap().unwrap(), range.start);
    }

    #[test]
    fn concurrent_leases_never_share_a_uid() {
        let dir = tempfile::tempdir().unwrap();
        // A tiny range forces collisions between the threads.
        let range = UidRange {
            start: 3_999_998_000,
            len: 12,
        };
        let leases = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    let lease = UidLease::acquire(dir.path(), range).expect("a uid is free");
                    leases.lock().unwrap().push(lease);
                });
            }
        });
        let leases = leases.into_inner().unwrap();
        let uids: BTreeSet<u32> = leases.iter().map(UidLease::uid).collect();
        assert_eq!(uids.len(), 8, "{uids:?}");
        assert!(uids.iter().all(|u| range.contains(*u)));
    }

    #[test]
    fn a_uid_with_live_processes_is_not_leased() {
        let dir = tempfile::tempdir().unwrap();
        // This process runs under its own uid.
        let me = nix::unistd::geteuid().as_raw();
        assert!(processes_of(me).contains(&std::process::id()));
        assert!(UidLease::try_uid(dir.path(), me).unwrap().is_none());
    }
}
