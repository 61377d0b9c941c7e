//! The native sandbox's filesystem: a minimal root, built on a fresh tmpfs inside a private
//! mount namespace, that holds nothing of the grader's.
//!
//! | path | what it is |
//! |---|---|
//! | `/usr`, `/etc`, `/lib*`, `/bin`, `/sbin` | the host's, bound read-only (symlinks such as `/bin -> usr/bin` recreated) |
//! | the sandbox `PATH` folders | bound read-only at the same path; this project's binaries in them covered by an empty file |
//! | `/submission` | a copy of the submission, owned by root, read-only |
//! | `/tmp`, `/var/tmp`, `/dev/shm` | fresh tmpfs (mode 1777), gone with the check |
//! | `/dev` | `null`, `zero`, `full`, `random`, `urandom`, and `fd`, `stdin`, `stdout`, `stderr` links |
//! | `/proc` | mounted by `__enter` from inside the server's PID namespace: its processes only |
//! | the server's program | when it lives elsewhere (a reference build), that one file, read-only |
//!
//! The root itself is remounted read-only once built. [`RootPlan::build`] runs in `__init`
//! after `unshare(CLONE_NEWNS)`; [`enter`] runs in `__enter`, PID 1 of the new PID
//! namespace, and swaps the process's root for the new one with `pivot_root`.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use serde::{Deserialize, Serialize};

use super::copy::{copy_submission, CopyLimits};
use super::IsolationError;
use crate::sut::LaunchError;

/// Where the submission is inside the sandbox (and the server's working folder).
pub const SUBMISSION_DIR: &str = "/submission";

/// The host folders every native sandbox binds read-only (those that exist).
pub const SYSTEM_DIRS: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc",
];

/// The device nodes a sandbox gets.
pub const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom"];

/// Everything `__init` needs to build a sandbox's root.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RootPlan {
    /// An empty folder, private to the grader, on which the root's tmpfs is mounted.
    pub mount_point: PathBuf,
    /// The submission folder on the host, copied to [`SUBMISSION_DIR`].
    pub submission: PathBuf,
    /// Host folders bound read-only at the same path (system folders, `PATH` folders).
    pub folders: Vec<PathBuf>,
    /// Host files bound read-only at the same path (the server's program, when it lives
    /// outside those folders).
    pub files: Vec<PathBuf>,
    /// Paths inside those folders covered by an empty file or folder.
    pub masked: Vec<PathBuf>,
    /// Size of each tmpfs (the root, `/tmp`, `/var/tmp`, `/dev/shm`), in MiB.
    pub tmpfs_mib: u64,
}

impl RootPlan {
    /// The plan for a submission: the system folders and `path` folders that exist, the
    /// extra `files`, and `masked`.
    pub fn new(
        mount_point: PathBuf,
        submission: PathBuf,
        path: &[PathBuf],
        files: Vec<PathBuf>,
        masked: Vec<PathBuf>,
    ) -> Self {
        let mut folders: Vec<PathBuf> = SYSTEM_DIRS
            .iter()
            .map(PathBuf::from)
            .filter(|p| fs::symlink_metadata(p).is_ok())
            .collect();
        for p in path {
            let covered = folders.iter().any(|f| p.starts_with(f));
            if !covered && p.is_dir() {
                folders.push(p.clone());
            }
        }
        let files = files
            .into_iter()
            .filter(|f| !folders.iter().any(|d| f.starts_with(d)))
            .collect();
        Self {
            mount_point,
            submission,
            folders,
            files,
            masked,
            tmpfs_mib: 96,
        }
    }

    /// Builds the root at [`RootPlan::mount_point`]. Call it in a fresh mount namespace.
    /// Fails with [`LaunchError::Submission`] for a submission too large to copy, and
    /// [`LaunchError::Isolation`] for anything else.
    pub fn build(&self) -> Result<(), LaunchError> {
        let root = &self.mount_point;
        // Nothing mounted from here on reaches the host's namespace, and nothing mounted on
        // the host later reaches ours.
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .map_err(|e| IsolationError::setup("making mounts private", e))?;
        let size = format!("size={}m,mode=0755", self.tmpfs_mib);
        mount(
            Some("tmpfs"),
            root,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(size.as_str()),
        )
        .map_err(|e| {
            IsolationError::setup(format!("mounting the root tmpfs on {}", root.display()), e)
        })?;
        // The fresh tmpfs folders first: a PATH folder or a program that lives under /tmp on
        // the host is then bound on top of them, not hidden beneath.
        for (dir, mode) in [
            ("tmp", 0o1777),
            ("var/tmp", 0o1777),
            ("dev/shm", 0o1777),
            ("proc", 0o555),
        ] {
            make_dir(&root.join(dir), mode)?;
        }
        for dir in ["tmp", "var/tmp", "dev/shm"] {
            let opts = format!("size={}m,mode=1777", self.tmpfs_mib);
            mount(
                Some("tmpfs"),
                &root.join(dir),
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                Some(opts.as_str()),
            )
            .map_err(|e| IsolationError::setup(format!("mounting a tmpfs on /{dir}"), e))?;
        }
        for folder in &self.folders {
            bind_folder(root, folder)?;
        }
        for file in &self.files {
            bind_file(root, file, file)?;
        }
        self.devices(root)?;
        let submission = inside(root, Path::new(SUBMISSION_DIR));
        make_dir(&submission, 0o755)?;
        copy_submission(&self.submission, &submission, CopyLimits::default())
            .map_err(|e| e.into_launch_error(&self.submission))?;
        let empty_file = root.join(".empty");
        fs::write(&empty_file, b"")
            .and_then(|()| fs::set_permissions(&empty_file, fs::Permissions::from_mode(0o444)))
            .map_err(|e| IsolationError::setup("creating the mask file", e))?;
        let empty_dir = root.join(".empty.d");
        make_dir(&empty_dir, 0o555)?;
        for path in &self.masked {
            let target = inside(root, path);
            let Ok(meta) = fs::metadata(&target) else {
                continue;
            };
            let source = if meta.is_dir() {
                &empty_dir
            } else {
                &empty_file
            };
            bind(source, &target, true)
                .map_err(|e| IsolationError::setup(format!("hiding {}", path.display()), e))?;
        }
        // Last: nothing in the root can change any more (the tmpfs folders stay writable).
        mount(
            None::<&str>,
            root,
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            None::<&str>,
        )
        .map_err(|e| IsolationError::setup("making the root read-only", e))?;
        Ok(())
    }

    fn devices(&self, root: &Path) -> Result<(), IsolationError> {
        let dev = root.join("dev");
        make_dir(&dev, 0o755)?;
        for name in DEVICES {
            let host = Path::new("/dev").join(name);
            if host.exists() {
                bind_file(root, &host, &host)?;
            }
        }
        for (link, target) in [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ] {
            std::os::unix::fs::symlink(target, dev.join(link))
                .map_err(|e| IsolationError::setup(format!("creating /dev/{link}"), e))?;
        }
        Ok(())
    }
}

/// `path` (absolute, on the host) as it sits under `root`.
fn inside(root: &Path, path: &Path) -> PathBuf {
    let mut out = root.to_path_buf();
    for c in path.components() {
        if let Component::Normal(part) = c {
            out.push(part);
        }
    }
    out
}

fn make_dir(path: &Path, mode: u32) -> Result<(), IsolationError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(path)
        .and_then(|()| fs::set_permissions(path, fs::Permissions::from_mode(mode)))
        .map_err(|e| IsolationError::setup(format!("creating {}", path.display()), e))
}

/// Binds `source` onto `target`, read-only when `read_only` (a bind mount takes the flags
/// only on a remount).
fn bind(source: &Path, target: &Path, read_only: bool) -> nix::Result<()> {
    mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )?;
    if read_only {
        mount(
            None::<&str>,
            target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID,
            None::<&str>,
        )?;
    }
    Ok(())
}

/// Binds the host folder `folder` read-only at the same path under `root`; a symlink (such
/// as `/bin -> usr/bin`) is recreated instead.
fn bind_folder(root: &Path, folder: &Path) -> Result<(), IsolationError> {
    let target = inside(root, folder);
    let meta = fs::symlink_metadata(folder)
        .map_err(|e| IsolationError::setup(format!("inspecting {}", folder.display()), e))?;
    if meta.file_type().is_symlink() {
        let link = fs::read_link(folder)
            .map_err(|e| IsolationError::setup(format!("reading {}", folder.display()), e))?;
        if let Some(parent) = target.parent() {
            make_dir(parent, 0o755)?;
        }
        return std::os::unix::fs::symlink(&link, &target)
            .map_err(|e| IsolationError::setup(format!("linking {}", folder.display()), e));
    }
    make_dir(&target, 0o755)?;
    bind(folder, &target, true)
        .map_err(|e| IsolationError::setup(format!("binding {}", folder.display()), e))
}

/// Binds the host file `file` read-only at `at` (an absolute path) under `root`.
fn bind_file(root: &Path, file: &Path, at: &Path) -> Result<(), IsolationError> {
    let target = inside(root, at);
    if let Some(parent) = target.parent() {
        make_dir(parent, 0o755)?;
    }
    fs::write(&target, b"")
        .map_err(|e| IsolationError::setup(format!("creating {}", target.display()), e))?;
    // Device nodes keep working: only the root tmpfs is nodev, not this mount.
    mount(
        Some(file),
        &target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .and_then(|()| {
        mount(
            None::<&str>,
            &target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID,
            None::<&str>,
        )
    })
    .map_err(|e| IsolationError::setup(format!("binding {}", file.display()), e))
}

/// Mounts a `/proc` of the calling process's PID namespace in `root` and makes `root` the
/// process's root (`pivot_root`, the old root detached). Call it as PID 1 of the new PID
/// namespace, in the mount namespace where [`RootPlan::build`] ran.
pub fn enter(root: &Path) -> Result<(), IsolationError> {
    let proc_dir = root.join("proc");
    mount(
        Some("proc"),
        &proc_dir,
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(|e| IsolationError::setup("mounting /proc", e))?;
    nix::unistd::chdir(root).map_err(|e| IsolationError::setup("entering the new root", e))?;
    // pivot_root(".", "."): the old root ends up on top of the new one, and is detached.
    nix::unistd::pivot_root(".", ".").map_err(|e| IsolationError::setup("pivot_root", e))?;
    umount2(".", MntFlags::MNT_DETACH)
        .map_err(|e| IsolationError::setup("detaching the old root", e))?;
    nix::unistd::chdir("/").map_err(|e| IsolationError::setup("chdir /", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_placed_under_the_root() {
        assert_eq!(
            inside(Path::new("/r"), Path::new("/usr/bin/python3")),
            PathBuf::from("/r/usr/bin/python3")
        );
        assert_eq!(
            inside(Path::new("/r"), Path::new("/../x")),
            PathBuf::from("/r/x")
        );
    }

    #[test]
    fn the_plan_binds_path_folders_once_and_files_outside_them() {
        let extra = tempfile::tempdir().unwrap();
        let plan = RootPlan::new(
            PathBuf::from("/mnt/x"),
            PathBuf::from("/sub"),
            &[PathBuf::from("/usr/bin"), extra.path().to_owned()],
            vec![
                PathBuf::from("/usr/bin/python3"),
                PathBuf::from("/opt/ref/timeserver"),
            ],
            vec![],
        );
        // /usr/bin is inside /usr: not bound twice; the extra folder is bound.
        assert!(!plan.folders.contains(&PathBuf::from("/usr/bin")));
        assert!(plan.folders.contains(&extra.path().to_owned()));
        // Only the file outside the bound folders is bound on its own.
        assert_eq!(plan.files, vec![PathBuf::from("/opt/ref/timeserver")]);
    }
}
