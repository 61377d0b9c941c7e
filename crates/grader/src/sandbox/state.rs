//! The grader's own folders on the host: a state folder that only the grader can enter
//! (uid leases, mount points, copies), and private scratch folders made the way `mkdtemp`
//! makes them: a random name, created exclusively, never a path that already existed.
//!
//! Nothing here follows a symlink or changes the mode of a folder someone else could have
//! made: an existing folder is used only if it is a real folder owned by the grader's uid
//! that nobody else can write.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::Rng;

use super::IsolationError;

/// The environment variable that names another state folder (tests, or hosts whose `/run`
/// is not writable).
pub const STATE_DIR_ENV: &str = "POOLGRADE_STATE_DIR";

/// The grader's state folder: `/run/poolgrade` for root, `$XDG_RUNTIME_DIR/poolgrade` (or
/// `/tmp/poolgrade-<uid>`) for an ordinary user, or [`STATE_DIR_ENV`]; mode 0711, so that a
/// sandbox uid can pass through it to a folder whose name it is given but can list nothing.
#[derive(Debug, Clone)]
pub struct StateDir {
    path: PathBuf,
}

impl StateDir {
    /// Opens (creating it if needed) the state folder, and checks it is safe.
    pub fn open() -> Result<Self, IsolationError> {
        let path = match std::env::var_os(STATE_DIR_ENV) {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ if nix::unistd::geteuid().is_root() => PathBuf::from("/run/poolgrade"),
            _ => match std::env::var_os("XDG_RUNTIME_DIR") {
                Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("poolgrade"),
                _ => std::env::temp_dir()
                    .join(format!("poolgrade-{}", nix::unistd::geteuid().as_raw())),
            },
        };
        ensure_dir(&path, 0o711)?;
        Ok(Self { path })
    }

    /// The state folder itself.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A sub-folder of the state folder with this mode (created if missing, checked if not).
    pub fn subdir(&self, name: &str, mode: u32) -> Result<PathBuf, IsolationError> {
        let path = self.path.join(name);
        ensure_dir(&path, mode)?;
        Ok(path)
    }
}

fn unsafe_path(path: &Path, reason: impl Into<String>) -> IsolationError {
    IsolationError::UnsafePath {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// Makes sure `path` is a real folder (not a symlink) owned by this process's effective uid,
/// that neither group nor others can write, and gives it `mode`. A missing folder is created
/// with `mode`; an existing one is only accepted (and its mode set) when it passes those
/// tests, so a folder planted by someone else is refused, never adopted.
pub fn ensure_dir(path: &Path, mode: u32) -> Result<(), IsolationError> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent() {
                if !parent.as_os_str().is_empty() && !parent.exists() {
                    fs::create_dir_all(parent).map_err(|e| {
                        IsolationError::setup(format!("creating {}", parent.display()), e)
                    })?;
                }
            }
            match fs::DirBuilder::new().mode(mode).create(path) {
                Ok(()) => {}
                // Made by someone else in between: checked below like any existing folder.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(IsolationError::setup(
                        format!("creating {}", path.display()),
                        e,
                    ))
                }
            }
        }
        Err(e) => {
            return Err(IsolationError::setup(
                format!("inspecting {}", path.display()),
                e,
            ))
        }
        Ok(_) => {}
    }
    let meta = fs::symlink_metadata(path)
        .map_err(|e| IsolationError::setup(format!("inspecting {}", path.display()), e))?;
    if meta.file_type().is_symlink() {
        return Err(unsafe_path(path, "it is a symlink"));
    }
    if !meta.is_dir() {
        return Err(unsafe_path(path, "it is not a folder"));
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(unsafe_path(
            path,
            format!(
                "it belongs to uid {}, not to the grader (uid {me})",
                meta.uid()
            ),
        ));
    }
    if meta.mode() & 0o022 != 0 && meta.mode() & 0o7777 != mode {
        return Err(unsafe_path(
            path,
            format!("others can write to it (mode {:o})", meta.mode() & 0o7777),
        ));
    }
    if meta.mode() & 0o7777 != mode {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| {
            IsolationError::setup(format!("setting the mode of {}", path.display()), e)
        })?;
    }
    Ok(())
}

/// A random name for a scratch entry: `prefix` and 16 hexadecimal digits (64 bits), so
/// nobody can create it first by guessing.
pub fn random_name(prefix: &str) -> String {
    format!("{prefix}{:016x}", rand::thread_rng().gen::<u64>())
}

/// Creates a new folder with a random name in `parent` (which the caller trusts: a folder of
/// [`StateDir`]), exclusively (an existing path is never reused), with `mode`.
pub fn private_dir(parent: &Path, prefix: &str, mode: u32) -> Result<PathBuf, IsolationError> {
    for _ in 0..16 {
        let path = parent.join(random_name(prefix));
        match fs::DirBuilder::new().mode(mode).create(&path) {
            Ok(()) => {
                // The umask may have cleared bits of `mode`; the folder is new and ours.
                fs::set_permissions(&path, fs::Permissions::from_mode(mode)).map_err(|e| {
                    IsolationError::setup(format!("setting the mode of {}", path.display()), e)
                })?;
                return Ok(path);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(IsolationError::setup(
                    format!("creating a folder in {}", parent.display()),
                    e,
                ))
            }
        }
    }
    Err(IsolationError::setup(
        format!("creating a folder in {}", parent.display()),
        "16 random names were all taken",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_dirs_are_new_random_and_private() {
        let parent = tempfile::tempdir().unwrap();
        let a = private_dir(parent.path(), "x-", 0o700).unwrap();
        let b = private_dir(parent.path(), "x-", 0o700).unwrap();
        assert_ne!(a, b);
        assert_eq!(fs::metadata(&a).unwrap().mode() & 0o7777, 0o700);
        let name = a.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with("x-") && name.len() == 18, "{name}");
    }

    #[test]
    fn a_planted_symlink_or_foreign_folder_is_refused_not_adopted() {
        let parent = tempfile::tempdir().unwrap();
        let target = parent.path().join("target");
        fs::create_dir(&target).unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o755)).unwrap();
        let link = parent.path().join("state");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = ensure_dir(&link, 0o700).unwrap_err();
        assert!(matches!(err, IsolationError::UnsafePath { .. }), "{err}");
        // The target kept its mode: nothing was chmod'ed through the link.
        assert_eq!(fs::metadata(&target).unwrap().mode() & 0o7777, 0o755);
        // A folder others can write is refused too.
        let open = parent.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        assert!(ensure_dir(&open, 0o700).is_err());
        assert_eq!(fs::metadata(&open).unwrap().mode() & 0o7777, 0o777);
        // A missing one is created with the mode; an own, safe one is accepted.
        let fresh = parent.path().join("a/b");
        ensure_dir(&fresh, 0o711).unwrap();
        assert_eq!(fs::metadata(&fresh).unwrap().mode() & 0o7777, 0o711);
        ensure_dir(&fresh, 0o711).unwrap();
    }
}
