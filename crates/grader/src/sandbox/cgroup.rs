//! Control groups for a native server's whole process tree (cgroup v1 `cpu`, `pids` and
//! `memory`, or the v2 equivalents): at most half a core, a process cap that binds root too,
//! and a cap on resident memory, however many processes the server forks. The groups live
//! under `poolgrade/`, which gets four times an ordinary process's CPU weight so grading
//! keeps its pace beside a CPU hog; the check processes that time the replies sit in its
//! `probe` group.
//!
//! A group is named after the sandbox uid its server runs as (`sandbox-<uid>`), which a
//! [`super::uids::UidLease`] makes unique on the host. [`Cgroup::create`] says which limits
//! it could set and which it could not: the caller decides what a missing limit means (the
//! native backend refuses to run the server unless the rubric accepts weaker isolation).
//!
//! The hierarchy is the one mounted at `/sys/fs/cgroup`, or at `POOLGRADE_CGROUP_ROOT` when
//! the grader's environment sets it (the test suite mounts a private cgroup2 hierarchy there
//! to run the v2 code on a v1 host).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::sut::Limits;

const ROOT: &str = "/sys/fs/cgroup";

/// The folder the cgroup hierarchy is mounted at: `POOLGRADE_CGROUP_ROOT`, else `/sys/fs/cgroup`.
pub fn root() -> PathBuf {
    std::env::var_os("POOLGRADE_CGROUP_ROOT")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(ROOT), PathBuf::from)
}

/// Which cgroup hierarchy the host has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hierarchy {
    /// One controller per hierarchy (`/sys/fs/cgroup/cpu`, `/sys/fs/cgroup/pids`, …).
    V1,
    /// The unified hierarchy (`cgroup.controllers` at the top).
    V2,
}

impl Hierarchy {
    /// The hierarchy mounted at [`root()`], if any.
    pub fn detect() -> Option<Hierarchy> {
        let root = &root();
        if root.join("cpu/cgroup.procs").is_file() || root.join("pids/cgroup.procs").is_file() {
            Some(Hierarchy::V1)
        } else if root.join("cgroup.controllers").is_file() {
            Some(Hierarchy::V2)
        } else {
            None
        }
    }
}

/// One server tree's control group (a folder per controller in v1, one folder in v2). Its
/// folders are removed on drop, once the tree is gone.
#[derive(Debug)]
pub struct Cgroup {
    hierarchy: Hierarchy,
    dirs: Vec<PathBuf>,
    applied: Vec<&'static str>,
    missing: Vec<String>,
}

impl Cgroup {
    /// The group's name for the sandbox uid `uid`.
    pub fn name_for(uid: u32) -> String {
        format!("sandbox-{uid}")
    }

    /// Creates the group of sandbox uid `uid` with `limits` (half a core, `max_processes`,
    /// `max_resident_mib`). An error saying why where no cgroup hierarchy is mounted or none
    /// of its folders can be made; otherwise the group, with [`Cgroup::missing`] naming each
    /// limit that could not be written.
    pub fn create(uid: u32, limits: &Limits) -> Result<Cgroup, String> {
        let root = &root();
        let hierarchy = Hierarchy::detect()
            .ok_or_else(|| format!("no cgroup hierarchy is mounted at {}", root.display()))?;
        raise_grading_weight(root, hierarchy);
        let name = Self::name_for(uid);
        let bytes = limits.max_resident_mib.saturating_mul(1 << 20).to_string();
        let mut group = Cgroup {
            hierarchy,
            dirs: Vec::new(),
            applied: Vec::new(),
            missing: Vec::new(),
        };
        fn write(group: &mut Cgroup, dir: &Path, what: &'static str, file: &str, value: &str) {
            match fs::write(dir.join(file), value) {
                Ok(()) => group.applied.push(what),
                Err(e) => group.missing.push(format!("{what} ({file}: {e})")),
            }
        }
        match hierarchy {
            Hierarchy::V1 => {
                for ctrl in ["cpu", "pids", "memory"] {
                    if !root.join(ctrl).join("cgroup.procs").is_file() {
                        group
                            .missing
                            .push(format!("{ctrl} (no v1 {ctrl} controller)"));
                        continue;
                    }
                    let dir = root.join(ctrl).join("poolgrade").join(&name);
                    // A group left by a grader that was killed: empty, so it goes.
                    let _ = fs::remove_dir(&dir);
                    if let Err(e) = fs::create_dir_all(&dir) {
                        group
                            .missing
                            .push(format!("{ctrl} ({}: {e})", dir.display()));
                        continue;
                    }
                    match ctrl {
                        "cpu" => {
                            let ok = fs::write(dir.join("cpu.cfs_period_us"), "100000")
                                .and_then(|()| fs::write(dir.join("cpu.cfs_quota_us"), "50000"));
                            match ok {
                                Ok(()) => group.applied.push("cpu"),
                                Err(e) => group.missing.push(format!("cpu (cfs quota: {e})")),
                            }
                        }
                        "pids" => write(
                            &mut group,
                            &dir,
                            "pids",
                            "pids.max",
                            &limits.max_processes.to_string(),
                        ),
                        _ => write(&mut group, &dir, "memory", "memory.limit_in_bytes", &bytes),
                    }
                    group.dirs.push(dir);
                }
            }
            Hierarchy::V2 => {
                let parent = root.join("poolgrade");
                // Enabling the controllers for the children may fail (a controller the
                // kernel has bound to v1, or a delegated subtree that lacks it): the limit
                // files are then missing, and writing them below says which.
                enable_controllers(root);
                if let Err(e) = fs::create_dir_all(&parent) {
                    return Err(format!("{}: {e}", parent.display()));
                }
                enable_controllers(&parent);
                let dir = parent.join(&name);
                let _ = fs::remove_dir(&dir);
                if let Err(e) = fs::create_dir_all(&dir) {
                    return Err(format!("{}: {e}", dir.display()));
                }
                write(&mut group, &dir, "cpu", "cpu.max", "50000 100000");
                write(
                    &mut group,
                    &dir,
                    "pids",
                    "pids.max",
                    &limits.max_processes.to_string(),
                );
                write(&mut group, &dir, "memory", "memory.max", &bytes);
                group.dirs.push(dir);
            }
        }
        if group.dirs.is_empty() {
            return Err(group.missing.join("; "));
        }
        Ok(group)
    }

    /// Removes the (empty) group of a uid whose check was killed before it could.
    pub fn remove_stale(uid: u32) {
        let root = &root();
        let name = Self::name_for(uid);
        for dir in [
            root.join("cpu/poolgrade").join(&name),
            root.join("pids/poolgrade").join(&name),
            root.join("memory/poolgrade").join(&name),
            root.join("poolgrade").join(&name),
        ] {
            let _ = fs::remove_dir(dir);
        }
    }

    /// The limits that could not be set, each with why.
    pub fn missing(&self) -> &[String] {
        &self.missing
    }

    /// One line for the results, naming the limits set: `cgroup v1: cpu, pids, memory` (the
    /// caller names those [`Cgroup::missing`]).
    pub fn describe(&self) -> String {
        let v = match self.hierarchy {
            Hierarchy::V1 => "v1",
            Hierarchy::V2 => "v2",
        };
        format!("cgroup {v}: {}", self.applied.join(", "))
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

    /// Moves the calling process into the groups (its children follow). Returns the files
    /// that could not be written.
    pub fn join(procs_files: &[PathBuf]) -> Vec<String> {
        procs_files
            .iter()
            .filter_map(|f| {
                fs::write(f, "0")
                    .err()
                    .map(|e| format!("{}: {e}", f.display()))
            })
            .collect()
    }

    /// Moves the calling process (a check process, with its probes) into the grading
    /// subtree's `probe` group, which weighs as much as four sandboxes: the clients that time
    /// the replies must not wait behind other work on a loaded machine. Best effort: a check
    /// runs (a little less steadily under load) without it.
    pub fn join_probe_group() {
        let root = &root();
        let Some(hierarchy) = Hierarchy::detect() else {
            return;
        };
        raise_grading_weight(root, hierarchy);
        let (dir, weight_file, weight) = match hierarchy {
            Hierarchy::V1 => (root.join("cpu/poolgrade/probe"), "cpu.shares", "4096"),
            Hierarchy::V2 => (root.join("poolgrade/probe"), "cpu.weight", "400"),
        };
        if fs::create_dir_all(&dir).is_ok() {
            let _ = fs::write(dir.join(weight_file), weight);
            let _ = fs::write(dir.join("cgroup.procs"), "0");
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

/// Enables the cpu, pids and memory controllers for the children of the v2 group `dir`, one
/// at a time (a single write fails whole if any one is unavailable). Best effort: a
/// controller left off shows as a missing limit file.
fn enable_controllers(dir: &Path) {
    for ctrl in ["+cpu", "+pids", "+memory"] {
        let _ = fs::write(dir.join("cgroup.subtree_control"), ctrl);
    }
}

/// Gives the whole grading subtree (`poolgrade/`: sandboxes and probes) four times the CPU
/// weight of an ordinary process. Best effort.
fn raise_grading_weight(root: &Path, hierarchy: Hierarchy) {
    match hierarchy {
        Hierarchy::V1 => {
            let dir = root.join("cpu/poolgrade");
            if fs::create_dir_all(&dir).is_ok() {
                let _ = fs::write(dir.join("cpu.shares"), "4096");
            }
        }
        Hierarchy::V2 => {
            let dir = root.join("poolgrade");
            if fs::create_dir_all(&dir).is_ok() {
                let _ = fs::write(dir.join("cpu.weight"), "400");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_limit_is_read_from_pids_events() {
        let dir = tempfile::tempdir().unwrap();
        let events = dir.path().join("pids.events");
        fs::write(&events, "max 0\n").unwrap();
        assert!(!Cgroup::hit_process_limit(&events));
        fs::write(&events, "max 3\n").unwrap();
        assert!(Cgroup::hit_process_limit(&events));
        assert!(!Cgroup::hit_process_limit(&dir.path().join("missing")));
    }
}
