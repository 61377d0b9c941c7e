//! Grading a batch in shards, past one machine: which submissions a shard grades
//! (`poolgrade grade --shard INDEX/COUNT`, one pod of a Kubernetes Indexed Job per shard) and
//! joining the shards' result folders into the folder one run would have written
//! (`poolgrade merge`).
//!
//! A shard is `INDEX/COUNT` (`0 <= INDEX < COUNT`): of the batch's submissions sorted by name
//! (the name a submission goes by in reports, [`crate::batch::submission_name`]), it grades
//! those whose position is `INDEX` modulo `COUNT`. Every shard computes the same list from the
//! same folders, whatever order the command line gave them in, so the shards of one batch
//! cover it exactly once; a shard may hold none (more shards than submissions).
//!
//! [`merge`] reads each shard's `gradebook.csv` and per-submission folders, checks that they
//! fit together (the same header as this grader writes, the same `max_score`, a row for every
//! folder, no submission in two shards), and only then writes the merged folder: each
//! submission's folder copied, and one `gradebook.csv` whose rows are the shards' rows, byte
//! for byte, in name order: the gradebook a single run over the whole batch writes.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::batch::submission_name;
use crate::report::writers::write_file;
use crate::report::{clean_text, Gradebook};

/// The gradebook's file name in a result folder.
pub const GRADEBOOK: &str = "gradebook.csv";

/// One shard of a batch: `index` of `count` (`index < count`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    index: usize,
    count: usize,
}

impl Shard {
    /// Shard `index` of `count`, or why it is not one.
    pub fn new(index: usize, count: usize) -> Result<Self, ShardError> {
        if count == 0 {
            return Err(ShardError::NoShards);
        }
        if index >= count {
            return Err(ShardError::IndexOutOfRange { index, count });
        }
        Ok(Self { index, count })
    }

    /// The shard's position, from 0.
    pub fn index(&self) -> usize {
        self.index
    }

    /// How many shards the batch is cut into.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Whether the submission at `position` (in name order) belongs to this shard.
    pub fn holds(&self, position: usize) -> bool {
        position % self.count == self.index
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = ShardError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let syntax = || ShardError::Syntax(text.to_owned());
        let (index, count) = text.split_once('/').ok_or_else(syntax)?;
        let number = |s: &str| -> Result<usize, ShardError> {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(syntax());
            }
            s.parse().map_err(|_| syntax())
        };
        Self::new(number(index)?, number(count)?)
    }
}

/// Why a text is not a shard.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    /// Not of the form `INDEX/COUNT` with two decimal numbers.
    #[error("{0:?} is not a shard: expected INDEX/COUNT, two whole numbers such as 0/4")]
    Syntax(String),
    /// `COUNT` is 0.
    #[error("a batch cannot be cut into 0 shards: COUNT must be at least 1")]
    NoShards,
    /// `INDEX` is not below `COUNT`.
    #[error("shard {index}/{count} does not exist: INDEX must be below COUNT (0 to {})", count - 1)]
    IndexOutOfRange {
        /// The index given.
        index: usize,
        /// The count given.
        count: usize,
    },
}

/// The submission folders of `shard`: `folders` sorted by submission name (then path, so
/// that the order never depends on the command line), those at a position congruent to the
/// shard's index modulo its count.
pub fn select(folders: Vec<PathBuf>, shard: Shard) -> Vec<PathBuf> {
    let mut named: Vec<(String, PathBuf)> = folders
        .into_iter()
        .map(|p| (submission_name(&p), p))
        .collect();
    named.sort();
    named
        .into_iter()
        .enumerate()
        .filter(|(n, _)| shard.holds(*n))
        .map(|(_, (_, p))| p)
        .collect()
}

/// Why shards could not be merged. Nothing is written before every shard has been read and
/// checked: only [`MergeError::Write`], [`MergeError::Copy`] and [`MergeError::Gradebook`]
/// can leave a partial output.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// No shard folder was given.
    #[error("no shard folder to merge")]
    NoShards,
    /// The output folder exists and holds something.
    #[error("{} is not empty: merge into a new or empty folder", path.display())]
    OutNotEmpty {
        /// The output folder.
        path: PathBuf,
    },
    /// A shard folder or one of its files could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// What could not be read.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// A shard has no gradebook: it did not finish, or it is not a result folder.
    #[error("{} has no {GRADEBOOK}: the shard did not finish, or it is not a folder of `poolgrade grade --out`", shard.display())]
    NoGradebook {
        /// The shard folder.
        shard: PathBuf,
    },
    /// A gradebook is not CSV as the grader writes it.
    #[error("{} is not a gradebook: {why}", path.display())]
    BadGradebook {
        /// The gradebook.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// A gradebook's header is not the one this grader writes (another version, or not a
    /// gradebook of poolgrade).
    #[error("{} has the header {found:?}, but this grader writes {expected:?}: shards must come from the same poolgrade", path.display())]
    HeaderMismatch {
        /// The gradebook.
        path: PathBuf,
        /// The header this grader writes.
        expected: String,
        /// The header found.
        found: String,
    },
    /// Two gradebooks give a different most a submission can earn: other rubrics.
    #[error("{} gives max_score {found}, but {} gives {expected}: the shards were graded with different rubrics", path.display(), first.display())]
    MaxScoreMismatch {
        /// The first gradebook that gave a max_score.
        first: PathBuf,
        /// Its max_score.
        expected: String,
        /// The gradebook that disagrees.
        path: PathBuf,
        /// Its max_score.
        found: String,
    },
    /// A shard's gradebook rows and submission folders do not match.
    #[error("{} does not match its submission folders: {why}", shard.display())]
    ShardMismatch {
        /// The shard folder.
        shard: PathBuf,
        /// What does not match.
        why: String,
    },
    /// A submission was graded in two shards.
    #[error("submission {submission:?} is in two shards: {} and {}", first.display(), second.display())]
    Duplicate {
        /// The submission's name.
        submission: String,
        /// The first shard that holds it.
        first: PathBuf,
        /// The other.
        second: PathBuf,
    },
    /// A submission's result folder holds something other than plain files.
    #[error("{} is not a plain file: a result folder holds only the grader's files", path.display())]
    UnexpectedEntry {
        /// The entry.
        path: PathBuf,
    },
    /// A file could not be copied into the output.
    #[error("cannot copy {} to {}: {source}", from.display(), to.display())]
    Copy {
        /// The source.
        from: PathBuf,
        /// The destination.
        to: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// The merged gradebook could not be written.
    #[error(transparent)]
    Gradebook(#[from] crate::report::ReportError),
    /// The output could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// What could not be written.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
}

/// What [`merge`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    /// How many shard folders were joined.
    pub shards: usize,
    /// How many submissions the merged folder holds.
    pub submissions: usize,
    /// The batch's status, as one `poolgrade grade` of the whole batch would exit: 2 a check
    /// could not be graded, 1 a check failed, 0 every check passed (or no submission).
    pub status: u8,
}

/// One row of a shard's gradebook, tied to its submission folder.
struct Row {
    name: String,
    shard: PathBuf,
    /// The plain files of its result folder.
    files: Vec<PathBuf>,
    /// The record as written, without its line end.
    raw: String,
    fields: Vec<String>,
}

/// Joins the result folders of `shards` into `out` (new, or empty): every submission's
/// folder copied, and one gradebook with every row in name order. Returns what it wrote and
/// the batch's status.
pub fn merge(shards: &[PathBuf], out: &Path) -> Result<Merged, MergeError> {
    if shards.is_empty() {
        return Err(MergeError::NoShards);
    }
    ensure_empty(out)?;
    let header = Gradebook::header();
    let max_col = column(&header, "max_score");
    let mut rows: Vec<Row> = Vec::new();
    let mut max_score: Option<(PathBuf, String)> = None;
    for shard in shards {
        let path = shard.join(GRADEBOOK);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(MergeError::NoGradebook {
                    shard: shard.clone(),
                })
            }
            Err(source) => return Err(MergeError::Read { path, source }),
        };
        let records = parse_csv(&text).map_err(|why| MergeError::BadGradebook {
            path: path.clone(),
            why,
        })?;
        let Some((_, found)) = records.first() else {
            return Err(MergeError::BadGradebook {
                path,
                why: "it is empty".into(),
            });
        };
        if *found != header {
            return Err(MergeError::HeaderMismatch {
                path,
                expected: header.join(","),
                found: found.join(","),
            });
        }
        let folders = submission_folders(shard)?;
        let body = &records[1..];
        if body.len() != folders.len() {
            return Err(MergeError::ShardMismatch {
                shard: shard.clone(),
                why: format!(
                    "{GRADEBOOK} has {} rows but the folder holds {} submission folders",
                    body.len(),
                    folders.len()
                ),
            });
        }
        // The gradebook's rows and the folders are both in name order.
        for ((raw, fields), (name, folder)) in body.iter().zip(folders) {
            if fields.len() != header.len() {
                return Err(MergeError::BadGradebook {
                    path,
                    why: format!(
                        "the row of {name:?} has {} fields, the header {}",
                        fields.len(),
                        header.len()
                    ),
                });
            }
            if !names_match(&fields[0], &name) {
                return Err(MergeError::ShardMismatch {
                    shard: shard.clone(),
                    why: format!(
                        "the row {:?} stands where the folder {name:?} is",
                        fields[0]
                    ),
                });
            }
            let max = &fields[max_col];
            match &max_score {
                None => max_score = Some((path.clone(), max.clone())),
                Some((first, expected)) if expected != max => {
                    return Err(MergeError::MaxScoreMismatch {
                        first: first.clone(),
                        expected: expected.clone(),
                        path,
                        found: max.clone(),
                    })
                }
                Some(_) => {}
            }
            rows.push(Row {
                name,
                shard: shard.clone(),
                files: plain_files(&folder)?,
                raw: raw.clone(),
                fields: fields.clone(),
            });
        }
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    for pair in rows.windows(2) {
        if pair[0].name == pair[1].name {
            return Err(MergeError::Duplicate {
                submission: pair[0].name.clone(),
                first: pair[0].shard.clone(),
                second: pair[1].shard.clone(),
            });
        }
    }
    // Everything fits: write.
    fs::create_dir_all(out).map_err(|source| MergeError::Write {
        path: out.to_owned(),
        source,
    })?;
    let mut csv = header.join(",");
    csv.push_str("\r\n");
    for row in &rows {
        copy_files(&row.files, &out.join(&row.name))?;
        csv.push_str(&row.raw);
        csv.push_str("\r\n");
    }
    let gradebook = out.join(GRADEBOOK);
    write_file(&gradebook, csv.as_bytes())?;
    Ok(Merged {
        shards: shards.len(),
        submissions: rows.len(),
        status: status(&header, &rows),
    })
}

/// The batch's status from its gradebook rows: 2 a check could not be graded, 1 a check
/// failed, 0 every check passed.
fn status(header: &[String], rows: &[Row]) -> u8 {
    let checks: Vec<usize> = header
        .iter()
        .enumerate()
        .filter(|(_, c)| c.contains('.'))
        .map(|(n, _)| n)
        .collect();
    let error_col = column(header, "error");
    let cells = || {
        rows.iter()
            .flat_map(|r| checks.iter().map(|&n| &r.fields[n]))
    };
    if cells().any(|c| c == "error") || rows.iter().any(|r| !r.fields[error_col].is_empty()) {
        2
    } else if cells().any(|c| c == "0") {
        1
    } else {
        0
    }
}

fn column(header: &[String], name: &str) -> usize {
    header
        .iter()
        .position(|c| c == name)
        .unwrap_or_else(|| panic!("the gradebook has a {name} column"))
}

/// Whether a gradebook's submission cell (decoded) is the one the grader writes for the
/// folder `name`: the name made safe, with the `'` a formula-like name gets.
fn names_match(cell: &str, name: &str) -> bool {
    let clean = clean_text(name);
    cell == clean || cell.strip_prefix('\'') == Some(clean.as_str())
}

/// `out` does not exist, or is an empty folder.
fn ensure_empty(out: &Path) -> Result<(), MergeError> {
    match fs::read_dir(out) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                Err(MergeError::OutNotEmpty {
                    path: out.to_owned(),
                })
            } else {
                Ok(())
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(MergeError::Read {
            path: out.to_owned(),
            source,
        }),
    }
}

/// A shard's submission folders (every folder in it), as (name, path), in name order.
fn submission_folders(shard: &Path) -> Result<Vec<(String, PathBuf)>, MergeError> {
    let read = |source| MergeError::Read {
        path: shard.to_owned(),
        source,
    };
    let mut folders = Vec::new();
    for entry in fs::read_dir(shard).map_err(read)? {
        let entry = entry.map_err(read)?;
        let kind = entry.file_type().map_err(read)?;
        if kind.is_dir() {
            let name = entry
                .file_name()
                .to_str()
                .map(str::to_owned)
                .ok_or_else(|| MergeError::ShardMismatch {
                    shard: shard.to_owned(),
                    why: format!("the folder name {:?} is not UTF-8", entry.file_name()),
                })?;
            folders.push((name, entry.path()));
        }
    }
    folders.sort();
    Ok(folders)
}

/// The files of a submission's result folder, all plain files (anything else is refused).
fn plain_files(folder: &Path) -> Result<Vec<PathBuf>, MergeError> {
    let read = |source| MergeError::Read {
        path: folder.to_owned(),
        source,
    };
    let mut files = Vec::new();
    for entry in fs::read_dir(folder).map_err(read)? {
        let entry = entry.map_err(read)?;
        // `file_type` does not follow symbolic links.
        if !entry.file_type().map_err(read)?.is_file() {
            return Err(MergeError::UnexpectedEntry { path: entry.path() });
        }
        files.push(entry.path());
    }
    files.sort();
    Ok(files)
}

/// Copies `files` into the new folder `to`.
fn copy_files(files: &[PathBuf], to: &Path) -> Result<(), MergeError> {
    fs::create_dir(to).map_err(|source| MergeError::Write {
        path: to.to_owned(),
        source,
    })?;
    for file in files {
        let dest = to.join(file.file_name().unwrap_or_default());
        fs::copy(file, &dest).map_err(|source| MergeError::Copy {
            from: file.clone(),
            to: dest,
            source,
        })?;
    }
    Ok(())
}

/// The records of CSV `text` (RFC 4180: fields quoted with `"`, `""` inside quotes, records
/// ending in CRLF or LF), each as its text without the line end and its decoded fields.
fn parse_csv(text: &str) -> Result<Vec<(String, Vec<String>)>, String> {
    let mut records = Vec::new();
    let mut fields: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut start = 0;
    let mut quoted = false;
    let mut at_field_start = true;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek().is_some_and(|&(_, d)| d == '"') {
                    chars.next();
                    field.push('"');
                } else {
                    quoted = false;
                }
            } else {
                field.push(c);
            }
            continue;
        }
        match c {
            '"' if at_field_start => {
                quoted = true;
                at_field_start = false;
            }
            ',' => {
                fields.push(std::mem::take(&mut field));
                at_field_start = true;
            }
            '\r' if chars.peek().is_some_and(|&(_, d)| d == '\n') => {}
            '\n' => {
                let end = if text[..i].ends_with('\r') { i - 1 } else { i };
                fields.push(std::mem::take(&mut field));
                records.push((text[start..end].to_owned(), std::mem::take(&mut fields)));
                start = i + 1;
                at_field_start = true;
            }
            '"' => return Err(format!("a quote inside an unquoted field at byte {i}")),
            _ => {
                field.push(c);
                at_field_start = false;
            }
        }
    }
    if quoted {
        return Err("a quoted field is not closed".into());
    }
    if start < text.len() {
        fields.push(field);
        records.push((text[start..].to_owned(), fields));
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{CheckId, Stage, StageReport};
    use crate::report::fixtures::{report, report_with_errors, rubric};
    use crate::report::write_results;

    #[test]
    fn a_shard_is_index_slash_count_with_index_below_count() {
        assert_eq!("0/1".parse::<Shard>(), Shard::new(0, 1));
        let s: Shard = "3/4".parse().unwrap();
        assert_eq!(
            (s.index(), s.count(), s.to_string()),
            (3, 4, "3/4".to_owned())
        );
        assert_eq!("1/0".parse::<Shard>(), Err(ShardError::NoShards));
        assert_eq!("0/0".parse::<Shard>(), Err(ShardError::NoShards));
        assert_eq!(
            "4/4".parse::<Shard>(),
            Err(ShardError::IndexOutOfRange { index: 4, count: 4 })
        );
        for bad in [
            "", "1", "/2", "1/", "-1/2", "+1/2", "1/2/3", " 1/2", "a/b", "1.0/2",
        ] {
            assert_eq!(
                bad.parse::<Shard>(),
                Err(ShardError::Syntax(bad.to_owned())),
                "{bad:?}"
            );
        }
        assert!(ShardError::IndexOutOfRange { index: 4, count: 4 }
            .to_string()
            .contains("0 to 3"));
    }

    fn paths(names: &[&str]) -> Vec<PathBuf> {
        names
            .iter()
            .map(|n| PathBuf::from(format!("/batch/{n}")))
            .collect()
    }

    fn names(folders: &[PathBuf]) -> Vec<String> {
        folders.iter().map(|p| submission_name(p)).collect()
    }

    #[test]
    fn shards_take_every_countth_submission_in_name_order_whatever_the_argument_order() {
        let given = paths(&["eve", "bob", "dave", "alice", "carol"]);
        let shard = |i, n| names(&select(given.clone(), Shard::new(i, n).unwrap()));
        assert_eq!(shard(0, 2), ["alice", "carol", "eve"]);
        assert_eq!(shard(1, 2), ["bob", "dave"]);
        assert_eq!(shard(0, 1), ["alice", "bob", "carol", "dave", "eve"]);
        assert_eq!(shard(2, 3), ["carol"]);
        // More shards than submissions: some shards hold none.
        assert_eq!(shard(6, 7), Vec::<String>::new());
        // Every submission in exactly one shard, for any count.
        for count in 1..=7 {
            let mut all: Vec<String> = (0..count).flat_map(|i| shard(i, count)).collect();
            all.sort();
            assert_eq!(
                all,
                ["alice", "bob", "carol", "dave", "eve"],
                "count {count}"
            );
        }
    }

    #[test]
    fn name_order_is_byte_order_like_the_gradebook() {
        let given = paths(&["b", "B", "a", "_z"]);
        assert_eq!(
            names(&select(given, Shard::new(0, 1).unwrap())),
            ["B", "_z", "a", "b"]
        );
    }

    /// Writes the result folder of `reports` (as `grade --out` does) under `dir/name`.
    fn shard_dir(dir: &Path, name: &str, reports: &[StageReport]) -> PathBuf {
        let out = dir.join(name);
        write_results(&out, reports, &rubric(), true).unwrap();
        out
    }

    fn both_stages(name: &str, failing: &[CheckId]) -> Vec<StageReport> {
        vec![
            report(name, Stage::Spawn, failing),
            report(name, Stage::Pool, failing),
        ]
    }

    fn batch() -> Vec<StageReport> {
        let mut all = Vec::new();
        for (name, failing) in [
            ("alice", vec![]),
            ("bob", vec![CheckId::Routing]),
            ("carol", vec![]),
            ("=dave, \"the\" hacker", vec![CheckId::Starts]),
            ("eve", vec![]),
        ] {
            all.extend(both_stages(name, &failing));
        }
        all
    }

    fn of(reports: &[StageReport], names: &[&str]) -> Vec<StageReport> {
        reports
            .iter()
            .filter(|r| names.contains(&r.submission.as_str()))
            .cloned()
            .collect()
    }

    #[test]
    fn merging_shards_gives_the_gradebook_and_folders_of_one_run() {
        let tmp = tempfile::tempdir().unwrap();
        let all = batch();
        let whole = shard_dir(tmp.path(), "whole", &all);
        let a = shard_dir(tmp.path(), "a", &of(&all, &["alice", "carol", "eve"]));
        let b = shard_dir(
            tmp.path(),
            "b",
            &of(&all, &["bob", "=dave, \"the\" hacker"]),
        );
        let empty = shard_dir(tmp.path(), "empty", &[]);
        let out = tmp.path().join("merged");
        let merged = merge(&[b.clone(), empty, a.clone()], &out).unwrap();
        assert_eq!(
            merged,
            Merged {
                shards: 3,
                submissions: 5,
                status: 1
            }
        );
        assert_eq!(
            fs::read_to_string(out.join(GRADEBOOK)).unwrap(),
            fs::read_to_string(whole.join(GRADEBOOK)).unwrap()
        );
        for name in ["alice", "bob", "carol", "=dave, \"the\" hacker", "eve"] {
            let from = if ["bob", "=dave, \"the\" hacker"].contains(&name) {
                &b
            } else {
                &a
            };
            for file in [
                "results.json",
                "junit.xml",
                "classroom.json",
                "prairielearn.json",
            ] {
                assert_eq!(
                    fs::read(out.join(name).join(file)).unwrap(),
                    fs::read(from.join(name).join(file)).unwrap(),
                    "{name}/{file}"
                );
            }
        }
    }

    #[test]
    fn the_merged_status_is_the_one_run_status() {
        let tmp = tempfile::tempdir().unwrap();
        let passing = shard_dir(tmp.path(), "p", &both_stages("alice", &[]));
        let run = |shards: &[PathBuf], name: &str| merge(shards, &tmp.path().join(name)).unwrap();
        assert_eq!(run(std::slice::from_ref(&passing), "o1").status, 0);
        let failing = shard_dir(tmp.path(), "f", &both_stages("bob", &[CheckId::Routing]));
        assert_eq!(run(&[passing.clone(), failing.clone()], "o2").status, 1);
        let errored = shard_dir(
            tmp.path(),
            "e",
            &[report_with_errors("carol", Stage::Pool, &[CheckId::Drain])],
        );
        assert_eq!(run(&[passing, failing, errored], "o3").status, 2);
        let none = shard_dir(tmp.path(), "n", &[]);
        assert_eq!(run(&[none], "o4").submissions, 0);
    }

    #[test]
    fn a_submission_in_two_shards_is_refused_and_nothing_is_written() {
        let tmp = tempfile::tempdir().unwrap();
        let a = shard_dir(tmp.path(), "a", &both_stages("alice", &[]));
        let b = shard_dir(tmp.path(), "b", &both_stages("alice", &[CheckId::Routing]));
        let out = tmp.path().join("merged");
        let err = merge(&[a.clone(), b.clone()], &out).unwrap_err();
        assert!(
            matches!(&err, MergeError::Duplicate { submission, first, second }
                if submission == "alice" && *first == a && *second == b),
            "{err:?}"
        );
        assert!(err.to_string().contains("two shards"), "{err}");
        assert!(!out.exists());
        // The same shard twice is the same mistake.
        assert!(matches!(
            merge(&[a.clone(), a], &out),
            Err(MergeError::Duplicate { .. })
        ));
    }

    #[test]
    fn a_gradebook_with_another_header_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let a = shard_dir(tmp.path(), "a", &both_stages("alice", &[]));
        let b = shard_dir(tmp.path(), "b", &both_stages("bob", &[]));
        let path = b.join(GRADEBOOK);
        let text = fs::read_to_string(&path).unwrap();
        // Two columns swapped: same names, another order.
        fs::write(
            &path,
            text.replacen("stage_spawn,stage_pool", "stage_pool,stage_spawn", 1),
        )
        .unwrap();
        let out = tmp.path().join("merged");
        let err = merge(&[a, b], &out).unwrap_err();
        assert!(
            matches!(&err, MergeError::HeaderMismatch { path: p, .. } if *p == path),
            "{err:?}"
        );
        assert!(!out.exists());
    }

    #[test]
    fn shards_graded_with_other_rubrics_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let a = shard_dir(tmp.path(), "a", &both_stages("alice", &[]));
        let b = tmp.path().join("b");
        let other: crate::rubric::Rubric = "[checks.routing]\nweight = 7\n".parse().unwrap();
        write_results(&b, &both_stages("bob", &[]), &other, true).unwrap();
        let err = merge(&[a, b], &tmp.path().join("merged")).unwrap_err();
        assert!(
            matches!(err, MergeError::MaxScoreMismatch { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn an_unfinished_or_tampered_shard_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("merged");
        // No gradebook: the shard did not finish.
        let a = shard_dir(tmp.path(), "a", &both_stages("alice", &[]));
        fs::remove_file(a.join(GRADEBOOK)).unwrap();
        assert!(matches!(
            merge(std::slice::from_ref(&a), &out),
            Err(MergeError::NoGradebook { shard }) if shard == a
        ));
        // A folder without a row, and a row without its folder.
        let b = shard_dir(tmp.path(), "b", &both_stages("bob", &[]));
        fs::create_dir(b.join("mallory")).unwrap();
        assert!(matches!(
            merge(std::slice::from_ref(&b), &out),
            Err(MergeError::ShardMismatch { .. })
        ));
        fs::rename(b.join("bob"), b.join("bobby")).unwrap();
        fs::remove_dir(b.join("mallory")).unwrap();
        assert!(matches!(
            merge(std::slice::from_ref(&b), &out),
            Err(MergeError::ShardMismatch { .. })
        ));
        // A symbolic link in a submission's folder is not copied.
        let c = shard_dir(tmp.path(), "c", &both_stages("carol", &[]));
        std::os::unix::fs::symlink("/etc/shadow", c.join("carol/shadow")).unwrap();
        assert!(matches!(
            merge(std::slice::from_ref(&c), &out),
            Err(MergeError::UnexpectedEntry { .. })
        ));
        // A gradebook cut in the middle of a quoted field.
        let d = shard_dir(tmp.path(), "d", &both_stages("dave", &[]));
        fs::write(d.join(GRADEBOOK), "submission,\"stage_spawn\r\n").unwrap();
        assert!(matches!(
            merge(std::slice::from_ref(&d), &out),
            Err(MergeError::BadGradebook { .. })
        ));
        assert!(matches!(merge(&[], &out), Err(MergeError::NoShards)));
    }

    #[test]
    fn the_output_folder_must_be_new_or_empty() {
        let tmp = tempfile::tempdir().unwrap();
        let a = shard_dir(tmp.path(), "a", &both_stages("alice", &[]));
        let out = tmp.path().join("merged");
        fs::create_dir(&out).unwrap();
        merge(std::slice::from_ref(&a), &out).expect("an empty folder will do");
        let err = merge(std::slice::from_ref(&a), &out).unwrap_err();
        assert!(matches!(err, MergeError::OutNotEmpty { .. }), "{err:?}");
    }

    #[test]
    fn csv_records_keep_their_text_and_decode_quotes() {
        let text = "a,b\r\n\"x, \"\"y\"\"\",2\r\n\"multi\nline\",3\nlast,4";
        let records = parse_csv(text).unwrap();
        assert_eq!(records.len(), 4);
        assert_eq!(records[1].0, "\"x, \"\"y\"\"\",2");
        assert_eq!(records[1].1, ["x, \"y\"", "2"]);
        assert_eq!(records[2].1, ["multi\nline", "3"]);
        assert_eq!(
            records[3],
            ("last,4".to_owned(), vec!["last".into(), "4".into()])
        );
        assert!(parse_csv("a\"b,c\r\n").is_err());
    }
}
