//! Copying a submission into the sandbox: the server works on a copy that belongs to the
//! grader and that it cannot change, never on the submitted folder itself.
//!
//! Only regular files and folders are copied. Symlinks, devices, pipes and sockets are left
//! out, and so are files with more than one hard link (a hard link to a file its author
//! cannot read would otherwise be read by the grader on the author's behalf). Every file is
//! opened without following symlinks and checked again once open, so a path swapped for a
//! symlink between the listing and the copy is refused. A copy is bounded in bytes, entries
//! and depth.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The bounds of a copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyLimits {
    /// Most bytes in all.
    pub max_bytes: u64,
    /// Most files and folders.
    pub max_entries: usize,
    /// Deepest folder nesting.
    pub max_depth: usize,
}

impl Default for CopyLimits {
    fn default() -> Self {
        Self {
            max_bytes: 64 << 20,
            max_entries: 10_000,
            max_depth: 32,
        }
    }
}

/// What a copy did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// Files copied.
    pub files: usize,
    /// Bytes copied.
    pub bytes: u64,
    /// Entries left out, each with why (`"link.py: a symlink"`).
    pub skipped: Vec<String>,
}

impl CopyError {
    /// The launch error this is: a submission too large is the submission's fault, an
    /// input/output error the sandbox's.
    pub fn into_launch_error(self, from: &Path) -> crate::sut::LaunchError {
        use crate::sut::LaunchError;
        match self {
            CopyError::TooLarge(why) => {
                LaunchError::Submission(format!("{} is too large to grade: {why}", from.display()))
            }
            CopyError::Io { .. } => LaunchError::Isolation(super::IsolationError::setup(
                format!("copying the submission {}", from.display()),
                self,
            )),
        }
    }
}

/// Why a copy failed.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// Reading the submission or writing the copy failed.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: String,
        /// What the system said.
        source: io::Error,
    },
    /// The submission is larger than the bounds allow.
    #[error("the submission is too large to copy: {0}")]
    TooLarge(String),
}

/// Copies the folder `from` into the existing, empty folder `to`: files mode 0644 (0755 when
/// the original is executable by its owner), folders 0755, all owned by the caller.
pub fn copy_submission(
    from: &Path,
    to: &Path,
    limits: CopyLimits,
) -> Result<CopyReport, CopyError> {
    let mut report = CopyReport::default();
    let mut entries = 0usize;
    walk(
        from,
        to,
        Path::new(""),
        0,
        limits,
        &mut entries,
        &mut report,
    )?;
    Ok(report)
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CopyError + '_ {
    move |source| CopyError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn walk(
    from: &Path,
    to: &Path,
    rel: &Path,
    depth: usize,
    limits: CopyLimits,
    entries: &mut usize,
    report: &mut CopyReport,
) -> Result<(), CopyError> {
    let mut names: Vec<_> = fs::read_dir(from)
        .map_err(io_err(from))?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    names.sort();
    for name in names {
        let src = from.join(&name);
        let dst = to.join(&name);
        let shown = rel.join(&name);
        *entries += 1;
        if *entries > limits.max_entries {
            return Err(CopyError::TooLarge(format!(
                "more than {} files and folders",
                limits.max_entries
            )));
        }
        let meta = fs::symlink_metadata(&src).map_err(io_err(&src))?;
        let kind = meta.file_type();
        if kind.is_dir() {
            if depth + 1 > limits.max_depth {
                return Err(CopyError::TooLarge(format!(
                    "folders nested deeper than {}",
                    limits.max_depth
                )));
            }
            fs::DirBuilder::new()
                .mode(0o755)
                .create(&dst)
                .map_err(io_err(&dst))?;
            fs::set_permissions(&dst, fs::Permissions::from_mode(0o755)).map_err(io_err(&dst))?;
            walk(&src, &dst, &shown, depth + 1, limits, entries, report)?;
        } else if kind.is_file() {
            if meta.nlink() > 1 {
                report.skipped.push(format!(
                    "{}: a file with several hard links",
                    shown.display()
                ));
                continue;
            }
            copy_file(&src, &dst, &shown, limits, report)?;
        } else {
            let what = if kind.is_symlink() {
                "a symlink"
            } else {
                "not a regular file"
            };
            report.skipped.push(format!("{}: {what}", shown.display()));
        }
    }
    Ok(())
}

fn copy_file(
    src: &Path,
    dst: &Path,
    shown: &Path,
    limits: CopyLimits,
    report: &mut CopyReport,
) -> Result<(), CopyError> {
    // O_NOFOLLOW: a symlink put in place since the listing fails to open; O_NONBLOCK: a pipe
    // put in its place cannot block the grader (it is refused below).
    let input = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(src);
    let mut input: File = match input {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            report
                .skipped
                .push(format!("{}: a symlink", shown.display()));
            return Ok(());
        }
        Err(e) => return Err(io_err(src)(e)),
    };
    let meta = input.metadata().map_err(io_err(src))?;
    if !meta.is_file() || meta.nlink() > 1 {
        report
            .skipped
            .push(format!("{}: changed while being copied", shown.display()));
        return Ok(());
    }
    if report.bytes + meta.len() > limits.max_bytes {
        return Err(CopyError::TooLarge(format!(
            "over {} MiB",
            limits.max_bytes >> 20
        )));
    }
    let mode = if meta.mode() & 0o100 != 0 {
        0o755
    } else {
        0o644
    };
    let mut output = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(dst)
        .map_err(io_err(dst))?;
    // Bounded even if the file grows while it is read.
    let budget = limits.max_bytes - report.bytes;
    let mut limited = (&mut input).take(budget + 1);
    let n = io::copy(&mut limited, &mut output).map_err(io_err(dst))?;
    if n > budget {
        return Err(CopyError::TooLarge(format!(
            "over {} MiB",
            limits.max_bytes >> 20
        )));
    }
    output.flush().map_err(io_err(dst))?;
    fs::set_permissions(dst, fs::Permissions::from_mode(mode)).map_err(io_err(dst))?;
    report.files += 1;
    report.bytes += n;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_files_and_folders_and_leaves_links_out() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        fs::create_dir(src.path().join("sub")).unwrap();
        fs::write(src.path().join("a.py"), "print(1)").unwrap();
        fs::write(src.path().join("sub/b.txt"), "x").unwrap();
        fs::write(src.path().join("run.sh"), "#!/bin/sh").unwrap();
        fs::set_permissions(src.path().join("run.sh"), fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", src.path().join("passwd")).unwrap();
        fs::hard_link(src.path().join("a.py"), src.path().join("hard.py")).unwrap();
        let report = copy_submission(src.path(), dst.path(), CopyLimits::default()).unwrap();
        assert_eq!(
            fs::read_to_string(dst.path().join("sub/b.txt")).unwrap(),
            "x"
        );
        assert_eq!(
            fs::metadata(dst.path().join("run.sh")).unwrap().mode() & 0o777,
            0o755
        );
        assert!(!dst.path().join("passwd").exists());
        // Both names of the hard-linked file are left out.
        assert!(!dst.path().join("a.py").exists() && !dst.path().join("hard.py").exists());
        assert_eq!(report.files, 2);
        assert_eq!(report.skipped.len(), 3, "{:?}", report.skipped);
    }

    #[test]
    fn a_copy_is_bounded() {
        let src = tempfile::tempdir().unwrap();
        fs::write(src.path().join("big"), vec![0u8; 4096]).unwrap();
        let dst = tempfile::tempdir().unwrap();
        let limits = CopyLimits {
            max_bytes: 1000,
            ..CopyLimits::default()
        };
        assert!(matches!(
            copy_submission(src.path(), dst.path(), limits),
            Err(CopyError::TooLarge(_))
        ));
    }
}
