//! Result writers: after grading, they turn the finished [`StageReport`]s and the
//! [`Rubric`] into the grading platforms' files (Gradescope, JUnit XML, GitHub Classroom,
//! PrairieLearn, a CSV gradebook) and HTML reports for people, each written whole (a
//! temporary file renamed over it). [`write_results`] writes every file of a run.

mod classroom;
mod gradebook;
mod gradescope;
mod html;
mod junit;
mod prairielearn;

use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub use classroom::{classroom_result, write_classroom, ClassroomResult, ClassroomTest};
pub use gradebook::{write_gradebook, Gradebook};
pub use gradescope::{gradescope_results, write_gradescope, GradescopeResults, GradescopeTest};
pub use html::{
    check_html, escape as html_escape, index_html, report_html, timeline_svg, write_index_html,
    write_report_html,
};
pub use junit::{junit_xml, write_junit};
pub use prairielearn::{
    prairielearn_results, write_prairielearn, PrairieLearnResults, PrairieLearnTest,
};

use crate::outcome::StageReport;
use crate::rubric::Rubric;

/// Writes `DIR/<submission>/{results.json, junit.xml, classroom.json, prairielearn.json,
/// report.html}` for each submission of `reports` and, for batches (`per_submission_dirs`),
/// `DIR/gradebook.csv` and `DIR/index.html`; without `per_submission_dirs` the files go
/// straight into `DIR`.
pub fn write_results(
    out_dir: &Path,
    reports: &[StageReport],
    rubric: &Rubric,
    per_submission_dirs: bool,
) -> Result<(), ReportError> {
    let mut names: Vec<&str> = reports.iter().map(|r| r.submission.as_str()).collect();
    names.dedup();
    for name in &names {
        let of_one: Vec<StageReport> = reports
            .iter()
            .filter(|r| r.submission == *name)
            .cloned()
            .collect();
        let dir = if per_submission_dirs {
            out_dir.join(name)
        } else {
            out_dir.to_path_buf()
        };
        write_gradescope(&dir.join("results.json"), &of_one, rubric)?;
        write_junit(&dir.join("junit.xml"), &of_one)?;
        write_classroom(&dir.join("classroom.json"), &of_one, rubric)?;
        write_prairielearn(&dir.join("prairielearn.json"), &of_one, rubric)?;
        write_report_html(&dir.join("report.html"), &of_one, rubric)?;
    }
    if per_submission_dirs {
        let mut book = Gradebook::new(rubric);
        for r in reports {
            book.add_report(r);
        }
        book.write(&out_dir.join("gradebook.csv"))?;
        write_index_html(&out_dir.join("index.html"), reports, rubric)?;
    }
    Ok(())
}

/// Why a result file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The folder of the file could not be created.
    #[error("cannot create folder {}: {source}", path.display())]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// The file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// The results could not be encoded as JSON.
    #[error("cannot encode {}: {source}", path.display())]
    Encode {
        /// The file.
        path: PathBuf,
        /// What serde_json said.
        source: serde_json::Error,
    },
    /// The format holds one submission's results but the reports are of several.
    #[error(
        "{} holds one submission's results, but the reports are of {}: {}",
        path.display(),
        submissions.len(),
        submissions.join(", ")
    )]
    SeveralSubmissions {
        /// The file.
        path: PathBuf,
        /// The submissions found.
        submissions: Vec<String>,
    },
}

/// Writes `contents` to `path`: creates the parent folders, writes a temporary file beside it
/// and renames it over `path`, so a reader never sees half a file.
pub(crate) fn write_file(path: &Path, contents: &[u8]) -> Result<(), ReportError> {
    let write_err = |source| ReportError::Write {
        path: path.to_owned(),
        source,
    };
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(dir) = parent {
        std::fs::create_dir_all(dir).map_err(|source| ReportError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
    }
    let name = path.file_name().ok_or_else(|| {
        write_err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the path names no file",
        ))
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let result = std::fs::File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(contents)?;
            f.flush()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = result {
        // Best effort: the temporary file may not even exist.
        let _ = std::fs::remove_file(&tmp);
        return Err(write_err(e));
    }
    Ok(())
}

/// Encodes `value` as pretty JSON and writes it to `path` with [`write_file`].
pub(crate) fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<(), ReportError> {
    let mut text = serde_json::to_vec_pretty(value).map_err(|source| ReportError::Encode {
        path: path.to_owned(),
        source,
    })?;
    text.push(b'\n');
    write_file(path, &text)
}

/// The one submission the reports are of (`None` when there are no reports), or
/// [`ReportError::SeveralSubmissions`].
pub(crate) fn single_submission<'a>(
    path: &Path,
    reports: &'a [StageReport],
) -> Result<Option<&'a str>, ReportError> {
    let names = submissions(reports);
    if names.len() > 1 {
        return Err(ReportError::SeveralSubmissions {
            path: path.to_owned(),
            submissions: names.into_iter().map(str::to_owned).collect(),
        });
    }
    Ok(names.first().copied())
}

/// The submissions of `reports`, each once, in order of first appearance.
pub(crate) fn submissions(reports: &[StageReport]) -> Vec<&str> {
    let mut names: Vec<&str> = Vec::new();
    for r in reports {
        if !names.contains(&r.submission.as_str()) {
            names.push(&r.submission);
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures::*;

    #[test]
    fn write_results_writes_each_submissions_files_and_the_gradebook() {
        let dir = tempfile::tempdir().expect("tempdir");
        let reports = several_submissions();
        write_results(dir.path(), &reports, &rubric(), true).expect("write");
        for name in submissions(&reports) {
            for file in [
                "results.json",
                "junit.xml",
                "classroom.json",
                "prairielearn.json",
            ] {
                assert!(dir.path().join(name).join(file).is_file(), "{name}/{file}");
            }
        }
        assert!(dir.path().join("gradebook.csv").is_file());
        // One submission, straight into the folder, without a gradebook.
        let one = tempfile::tempdir().expect("tempdir");
        write_results(one.path(), &one_submission(), &rubric(), false).expect("write");
        assert!(one.path().join("results.json").is_file());
        assert!(!one.path().join("gradebook.csv").exists());
    }

    #[test]
    fn write_file_creates_parents_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a/b/c/out.txt");
        write_file(&path, b"one").expect("write");
        write_file(&path, b"two").expect("overwrite");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "two");
        let names: Vec<_> = std::fs::read_dir(path.parent().expect("parent"))
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("out.txt")]);
    }

    #[test]
    fn write_errors_name_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("plain");
        std::fs::write(&file, "x").expect("write");
        // A folder cannot be made under a plain file.
        let path = file.join("sub/out.json");
        let err = write_file(&path, b"{}").expect_err("parent is a file");
        assert!(matches!(&err, ReportError::CreateDir { path: p, .. } if p == &file.join("sub")));
        assert!(err.to_string().contains("plain"), "{err}");
        // Nor a file where a folder is.
        let err = write_file(dir.path(), b"{}").expect_err("path is a folder");
        assert!(matches!(&err, ReportError::Write { .. }), "{err:?}");
    }
}
