//! Finding the server's program for the sandbox, and hiding this project's own binaries
//! from it.
//!
//! A command's first word is found the way a shell finds it, but on the sandbox's `PATH`
//! (never the grader's): a name with a `/` is a path (relative ones lie in the submission),
//! any other name is looked up in the `PATH` folders. Inside a native sandbox, every binary
//! of this project that sits in one of those folders ([`REFERENCE_BINARIES`], and the
//! grader's own executable) is covered by an empty file, so `os.execvp("timeserver", ...)`
//! cannot borrow the reference server.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::sut::LaunchError;

/// This project's binaries: a server must never reach them by name.
pub const REFERENCE_BINARIES: &[&str] = &["timeserver", "timeclient", "primes", "poolgrade"];

/// Where the server's program is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// A path inside the submission (the command's first word, relative, with a `/`).
    InSubmission(PathBuf),
    /// A file outside the submission, by its absolute path on the host.
    Host(PathBuf),
}

impl Program {
    /// The host file, for a program outside the submission.
    pub fn host_path(&self) -> Option<&Path> {
        match self {
            Program::Host(p) => Some(p),
            Program::InSubmission(_) => None,
        }
    }
}

fn executable_by_others(meta: &fs::Metadata) -> bool {
    meta.is_file() && meta.mode() & 0o001 != 0
}

/// Finds the command's program: `program` with a `/` is a path (relative to the submission
/// folder `dir`), otherwise it is looked up in `path`. The file must be one that any uid may
/// execute (mode `o+x`), since the server does not run as the grader.
pub fn resolve(program: &str, path: &[PathBuf], dir: &Path) -> Result<Program, LaunchError> {
    let refuse = |reason: String| LaunchError::Spawn {
        program: program.to_owned(),
        reason,
    };
    if program.contains('/') {
        let p = Path::new(program);
        if p.is_absolute() {
            let meta = fs::metadata(p).map_err(|e| refuse(e.to_string()))?;
            return if executable_by_others(&meta) {
                Ok(Program::Host(p.to_owned()))
            } else {
                Err(refuse(
                    "not a file that the sandbox user may execute (it needs mode o+x)".into(),
                ))
            };
        }
        return if dir.join(p).is_file() {
            Ok(Program::InSubmission(p.to_owned()))
        } else {
            Err(refuse(format!(
                "no such file in the submission ({})",
                dir.display()
            )))
        };
    }
    for folder in path {
        let candidate = folder.join(program);
        if fs::metadata(&candidate).is_ok_and(|m| executable_by_others(&m)) {
            return Ok(Program::Host(candidate));
        }
    }
    Err(refuse(format!(
        "not found on the sandbox PATH ({}) as a file any user may execute",
        join_path(path)
    )))
}

/// The folders of a `PATH`, joined with `:`.
pub fn join_path(path: &[PathBuf]) -> String {
    path.iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

/// The files a native sandbox covers: each of [`REFERENCE_BINARIES`] in each `PATH` folder,
/// and the grader's own executable, except the program the command runs (grading the
/// reference server itself is allowed).
pub fn masked_files(path: &[PathBuf], program: &Program) -> Vec<PathBuf> {
    let own = fs::canonicalize("/proc/self/exe").ok();
    let keep = program.host_path().and_then(|p| fs::canonicalize(p).ok());
    let mut out = Vec::new();
    for folder in path {
        for name in REFERENCE_BINARIES {
            let candidate = folder.join(name);
            if fs::symlink_metadata(&candidate).is_ok() {
                out.push(candidate);
            }
        }
    }
    out.extend(own);
    out.retain(|p| fs::canonicalize(p).ok() != keep);
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn programs_resolve_on_the_sandbox_path_only() {
        let sys = vec![PathBuf::from("/usr/bin"), PathBuf::from("/bin")];
        let here = Path::new(".");
        assert!(matches!(resolve("sh", &sys, here), Ok(Program::Host(p)) if p.ends_with("sh")));
        assert!(matches!(
            resolve("no-such-program-xyz", &sys, here),
            Err(LaunchError::Spawn { .. })
        ));
        // A relative path is the submission's.
        let sub = tempfile::tempdir().unwrap();
        fs::write(sub.path().join("run.sh"), "#!/bin/sh\n").unwrap();
        assert_eq!(
            resolve("./run.sh", &sys, sub.path()).unwrap(),
            Program::InSubmission(PathBuf::from("./run.sh"))
        );
        assert!(resolve("./missing.sh", &sys, sub.path()).is_err());
    }

    #[test]
    fn a_file_only_its_owner_may_run_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("server");
        fs::write(&bin, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o700)).unwrap();
        assert!(resolve(bin.to_str().unwrap(), &[], dir.path()).is_err());
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
        assert!(resolve(bin.to_str().unwrap(), &[], dir.path()).is_ok());
    }

    #[test]
    fn reference_binaries_on_the_path_are_masked_but_not_the_program_itself() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["timeserver", "timeclient", "python3"] {
            let p = dir.path().join(name);
            fs::write(&p, "#!/bin/sh\n").unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        }
        let path = vec![dir.path().to_owned()];
        let python = resolve("python3", &path, dir.path()).unwrap();
        let masked = masked_files(&path, &python);
        assert!(masked.contains(&dir.path().join("timeserver")));
        assert!(masked.contains(&dir.path().join("timeclient")));
        assert!(!masked.contains(&dir.path().join("python3")));
        // Grading the reference server itself: it stays, the client is still hidden.
        let server = resolve("timeserver", &path, dir.path()).unwrap();
        let masked = masked_files(&path, &server);
        assert!(!masked.contains(&dir.path().join("timeserver")));
        assert!(masked.contains(&dir.path().join("timeclient")));
    }
}
