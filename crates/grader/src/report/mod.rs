//! The reporters: consumers of the runner's [`Event`]s (human, JSON Lines, a collector; see
//! [`Reporter`]) and writers of the grading platforms' result files from the final
//! [`StageReport`]s and the [`Rubric`] (Gradescope, JUnit XML, GitHub Classroom, PrairieLearn,
//! a CSV gradebook).
//!
//! Like cargo-nextest, the runner only produces events; each reporter consumes them on its
//! own, so a run can print for a human and stream JSON and write files at once ([`Tee`]).
//!
//! # Scores
//!
//! A check that passes earns its rubric weight ([`Rubric::check_weight`]); a failed one earns
//! 0. A stage's score is the sum over its checks, a submission's the sum over its stages.
//!
//! A check that could not run ([`Status::Error`](crate::outcome::Status::Error): the
//! sandbox failed, the check died or overran its deadline) also earns 0, and its weight stays
//! in every maximum: every stage counts its full maximum, graded or not. Every format marks such a check as an error, not
//! as a failure (a Gradescope test whose output starts with [`ERROR_HEADLINE`], a JUnit
//! `<error>`, a Classroom `"error"` test, a PrairieLearn test at 0 of its points, an `error`
//! gradebook cell, an `ERROR` line for a human).
//!
//! # Text from the server
//!
//! Feedback may quote what the server printed, which may hold anything. The runner cleans
//! every outcome as it arrives ([`crate::text`]: escapes and controls dropped,
//! bidi and zero-width characters made visible, server output behind a margin), so every
//! reporter, the JSON Lines stream included, gets cleaned text; the writers clean again
//! ([`clean_text`] is idempotent) so a report built by hand is safe too.

mod classroom;
mod gradebook;
mod gradescope;
mod human;
mod json;
mod junit;
mod prairielearn;

use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub use classroom::{classroom_result, write_classroom, ClassroomResult, ClassroomTest};
pub use gradebook::{write_gradebook, Gradebook};
pub use gradescope::{gradescope_results, write_gradescope, GradescopeResults, GradescopeTest};
pub use human::HumanReporter;
pub use json::JsonLinesReporter;
pub use junit::{junit_xml, write_junit};
pub use prairielearn::{
    prairielearn_results, write_prairielearn, PrairieLearnResults, PrairieLearnTest,
};

use super::outcome::{Event, Outcome, Stage, StageReport};
use super::rubric::Rubric;

/// A consumer of the runner's events.
///
/// The runner calls [`Reporter::on_event`] for every event in order, then
/// [`Reporter::finish`] once at the end. An error stops that reporter only: the runner decides
/// whether to go on.
pub trait Reporter {
    /// Takes one event.
    fn on_event(&mut self, event: &Event) -> io::Result<()>;

    /// Ends the run: prints what is left and flushes.
    fn finish(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<R: Reporter + ?Sized> Reporter for &mut R {
    fn on_event(&mut self, event: &Event) -> io::Result<()> {
        (**self).on_event(event)
    }
    fn finish(&mut self) -> io::Result<()> {
        (**self).finish()
    }
}

impl<R: Reporter + ?Sized> Reporter for Box<R> {
    fn on_event(&mut self, event: &Event) -> io::Result<()> {
        (**self).on_event(event)
    }
    fn finish(&mut self) -> io::Result<()> {
        (**self).finish()
    }
}

/// Sends every event to several reporters, in order. Each reporter gets every event even when
/// an earlier one fails; the first error is returned.
#[derive(Default)]
pub struct Tee {
    reporters: Vec<Box<dyn Reporter + Send>>,
}

impl Tee {
    /// A tee with no reporter yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a reporter.
    pub fn push(&mut self, reporter: Box<dyn Reporter + Send>) {
        self.reporters.push(reporter);
    }

    /// Adds a reporter, builder style.
    pub fn with(mut self, reporter: Box<dyn Reporter + Send>) -> Self {
        self.push(reporter);
        self
    }

    fn each(&mut self, mut f: impl FnMut(&mut dyn Reporter) -> io::Result<()>) -> io::Result<()> {
        let mut first = Ok(());
        for r in &mut self.reporters {
            let result = f(r.as_mut());
            if first.is_ok() {
                first = result;
            }
        }
        first
    }
}

impl Reporter for Tee {
    fn on_event(&mut self, event: &Event) -> io::Result<()> {
        self.each(|r| r.on_event(event))
    }
    fn finish(&mut self) -> io::Result<()> {
        self.each(|r| r.finish())
    }
}

/// Keeps the [`StageReport`] of every `StageFinished` event, for the file writers.
#[derive(Debug, Default, Clone)]
pub struct Collector {
    reports: Vec<StageReport>,
}

impl Collector {
    /// An empty collector.
    pub fn new() -> Self {
        Self::default()
    }

    /// The stage reports so far, in the order their stages finished.
    pub fn reports(&self) -> &[StageReport] {
        &self.reports
    }

    /// The stage reports, in the order their stages finished.
    pub fn into_reports(self) -> Vec<StageReport> {
        self.reports
    }
}

impl Reporter for Collector {
    fn on_event(&mut self, event: &Event) -> io::Result<()> {
        if let Event::StageFinished { report } = event {
            self.reports.push(report.clone());
        }
        Ok(())
    }
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

/// Points `outcome` earns: its weight if it passed, else 0 (failed, or could not be graded).
pub fn points(outcome: &Outcome, rubric: &Rubric) -> f64 {
    if outcome.passed() {
        rubric.check_weight(outcome.id)
    } else {
        0.0
    }
}

/// Points a stage report earns: the sum of its outcomes' [`points`].
pub fn stage_score(report: &StageReport, rubric: &Rubric) -> f64 {
    round_score(report.outcomes.iter().map(|o| points(o, rubric)).sum())
}

/// The most points a stage report could earn: the sum of its outcomes' weights, those that
/// could not be graded included.
pub fn stage_max_score(report: &StageReport, rubric: &Rubric) -> f64 {
    round_score(
        report
            .outcomes
            .iter()
            .map(|o| rubric.check_weight(o.id))
            .sum(),
    )
}

/// Rounds a sum of weights to 6 decimals, so `0.1 + 0.2` reads `0.3` in every report.
pub(crate) fn round_score(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// The 1-based position of `stage` in [`Stage::ALL`], used to number tests ("2.3").
pub(crate) fn stage_number(stage: Stage) -> usize {
    Stage::ALL
        .iter()
        .position(|s| *s == stage)
        .map_or(0, |i| i + 1)
}

/// A test's display name: `"<stage>: <id> — <title>"`.
pub(crate) fn test_name(stage: Stage, outcome: &Outcome) -> String {
    format!("{stage}: {} — {}", outcome.id, outcome.id.title())
}

/// The first line of the feedback of a check that could not be graded, in every format that
/// shows feedback to a student.
pub const ERROR_HEADLINE: &str =
    "ERROR: this check could not be graded (a grading fault, not a verdict on your code)";

/// The feedback of `outcome` as plain text ([`Outcome::feedback`]), after
/// [`ERROR_HEADLINE`] and a newline when the check could not be graded.
pub(crate) fn feedback_text(outcome: &Outcome) -> String {
    let feedback = outcome.feedback();
    if outcome.is_error() {
        format!("{ERROR_HEADLINE}\n{feedback}")
    } else {
        feedback
    }
}

/// How many checks of `report` could not be graded.
pub(crate) fn error_count(report: &StageReport) -> usize {
    report.outcomes.iter().filter(|o| o.is_error()).count()
}

/// One line per stage: `"<stage>: N/M checks passed, P/Q points"`, with
/// `", E could not be graded"` after the checks when some could not.
pub(crate) fn summary(reports: &[StageReport], rubric: &Rubric) -> String {
    if reports.is_empty() {
        return "No stage was graded.".to_owned();
    }
    reports
        .iter()
        .map(|r| {
            let errors = match error_count(r) {
                0 => String::new(),
                n => format!(", {n} could not be graded"),
            };
            format!(
                "{}: {}/{} checks passed{errors}, {}/{} points",
                r.stage,
                r.passed_count(),
                r.outcomes.len(),
                stage_score(r, rubric),
                stage_max_score(r, rubric)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub use crate::text::clean_text;

#[cfg(test)]
pub(crate) mod fixtures {
    //! Stage reports built by hand for the reporters' tests.

    use super::super::outcome::{CheckId, Outcome, Stage, StageReport, Status};
    use super::super::rubric::Rubric;

    /// What a misbehaving server may print: markup, quotes, escapes, NUL, bell, CR.
    pub const NASTY: &str = "Traceback <module> & \"quoted\" 'single' ]]> \u{1b}[31mred\u{1b}[0m\0nul\u{7}bell\r\nend\u{1b}]0;title\u{7}!";

    /// A rubric with uneven weights and a hidden check.
    pub fn rubric() -> Rubric {
        "[checks.routing]\nweight = 2.5\n[checks.drain]\nweight = 0.5\n[checks.concurrency]\nweight = 0\n[checks.pool-bounded]\nweight = 3\nvisibility = \"hidden\"\n"
            .parse()
            .expect("fixture rubric")
    }

    /// An outcome of check `id`; failed ones carry a hint and the nasty server output.
    pub fn outcome(id: CheckId, passed: bool, seconds: f64) -> Outcome {
        Outcome {
            id,
            status: if passed {
                Status::Passed
            } else {
                Status::Failed
            },
            did: format!("ran the {id} check with <3 clients & a \"delay\""),
            expected: "each client's own reply".to_owned(),
            observed: if passed {
                "as expected".to_owned()
            } else {
                "client 2 got 'nothing' within 2 s".to_owned()
            },
            hint: (!passed).then(|| "reply with type pid+3".to_owned()),
            seconds,
            server_output: (!passed).then(|| NASTY.to_owned()),
        }
    }

    /// A report of `stage` in which the checks named in `failing` fail.
    pub fn report(submission: &str, stage: Stage, failing: &[CheckId]) -> StageReport {
        let outcomes: Vec<Outcome> = stage
            .checks()
            .iter()
            .enumerate()
            .map(|(i, id)| outcome(*id, !failing.contains(id), 0.25 + i as f64 * 0.5))
            .collect();
        StageReport {
            submission: submission.to_owned(),
            stage,
            command: vec!["python3".to_owned(), format!("server_{stage}.py")],
            seconds: outcomes.iter().map(|o| o.seconds).sum::<f64>() + 0.75,
            outcomes,
            isolation: "native: test fixture".to_owned(),
        }
    }

    /// Why the fixtures' errored checks could not run; it needs escaping in XML.
    pub const FAULT: &str = "the sandbox failed: clone3 <EPERM> & \"no\" namespaces";

    /// A report of `stage` in which the checks named in `errored` could not be graded
    /// ([`Outcome::error`] with [`FAULT`]) and every other check passed.
    pub fn report_with_errors(submission: &str, stage: Stage, errored: &[CheckId]) -> StageReport {
        let mut report = report(submission, stage, &[]);
        for o in &mut report.outcomes {
            if errored.contains(&o.id) {
                *o = Outcome::error(o.id, FAULT, 0.125);
            }
        }
        report
    }

    /// A stage no check of which could be graded: no server was started, so no isolation
    /// is described.
    pub fn ungradable(submission: &str, stage: Stage) -> StageReport {
        StageReport {
            isolation: String::new(),
            ..report_with_errors(submission, stage, stage.checks())
        }
    }

    /// One submission: stage spawn graded (reply failed), stage pool ungradable. With
    /// [`rubric`], pool's maximum is 13 (routing 2.5, drain 0.5, concurrency 0,
    /// pool-bounded 3, seven checks at 1) and spawn earns 9 of 10.
    pub fn graded_beside_ungradable() -> Vec<StageReport> {
        vec![
            report("alice", Stage::Spawn, &[CheckId::Reply]),
            ungradable("alice", Stage::Pool),
        ]
    }

    /// One submission, both stages, with failures in each.
    pub fn one_submission() -> Vec<StageReport> {
        vec![
            report("alice", Stage::Spawn, &[CheckId::Routing, CheckId::Spawn]),
            report("alice", Stage::Pool, &[CheckId::PoolBounded]),
        ]
    }

    /// Three submissions; the second's name needs quoting in CSV and escaping in XML.
    pub fn several_submissions() -> Vec<StageReport> {
        let mut reports = one_submission();
        reports.push(report("bob, \"the\" <builder> & co", Stage::Spawn, &[]));
        reports.push(report(
            "carol",
            Stage::Pool,
            &[CheckId::Starts, CheckId::Reply, CheckId::Drain],
        ));
        reports
    }

    /// Sum of the weights of the passed checks, computed from the inputs.
    pub fn expected_score(reports: &[StageReport], rubric: &Rubric) -> f64 {
        reports
            .iter()
            .flat_map(|r| &r.outcomes)
            .filter(|o| o.passed())
            .map(|o| rubric.check_weight(o.id))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;
    use crate::outcome::CheckId;

    #[test]
    fn collector_keeps_finished_stage_reports_in_order() {
        let reports = several_submissions();
        let mut collector = Collector::new();
        for r in &reports {
            collector
                .on_event(&Event::StageStarted {
                    submission: r.submission.clone(),
                    stage: r.stage,
                    checks: r.stage.checks().to_vec(),
                })
                .expect("collect");
            collector
                .on_event(&Event::StageFinished { report: r.clone() })
                .expect("collect");
        }
        assert_eq!(collector.into_reports(), reports);
    }

    #[test]
    fn tee_gives_every_event_to_every_reporter() {
        struct Failing;
        impl Reporter for Failing {
            fn on_event(&mut self, _: &Event) -> io::Result<()> {
                Err(io::Error::other("broken pipe"))
            }
        }
        let shared = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Event>::new()));
        struct Shared(std::sync::Arc<std::sync::Mutex<Vec<Event>>>);
        impl Reporter for Shared {
            fn on_event(&mut self, e: &Event) -> io::Result<()> {
                self.0
                    .lock()
                    .map_err(|_| io::Error::other("poisoned"))?
                    .push(e.clone());
                Ok(())
            }
        }
        let mut tee = Tee::new()
            .with(Box::new(Failing))
            .with(Box::new(Shared(shared.clone())));
        let report = report("alice", Stage::Spawn, &[]);
        let event = Event::StageFinished { report };
        let err = tee.on_event(&event).expect_err("the first reporter fails");
        assert_eq!(err.to_string(), "broken pipe");
        tee.finish().expect("finish");
        assert_eq!(*shared.lock().expect("lock"), vec![event]);
    }

    #[test]
    fn scores_sum_the_weights_of_passed_checks() {
        let rubric = rubric();
        for r in several_submissions() {
            let want: f64 = expected_score(std::slice::from_ref(&r), &rubric);
            assert!((stage_score(&r, &rubric) - want).abs() < 1e-9);
            let max: f64 = r.outcomes.iter().map(|o| rubric.check_weight(o.id)).sum();
            assert!((stage_max_score(&r, &rubric) - max).abs() < 1e-9);
        }
        // The routing failure of the fixture costs its weight, not one point.
        let r = report("x", Stage::Spawn, &[CheckId::Routing]);
        assert!(
            (stage_max_score(&r, &rubric)
                - stage_score(&r, &rubric)
                - rubric.check_weight(CheckId::Routing))
            .abs()
                < 1e-9
        );
    }

    #[test]
    fn a_check_that_could_not_be_graded_earns_0_and_keeps_its_weight_in_the_maximum() {
        let rubric = rubric();
        let errored = Outcome::error(CheckId::Routing, FAULT, 0.0);
        assert_eq!(points(&errored, &rubric), 0.0);
        let r = report_with_errors("x", Stage::Pool, &[CheckId::Routing, CheckId::Drain]);
        // 13 in all (2.5 + 0.5 + 0 + 3 + 7 × 1), less routing's 2.5 and drain's 0.5.
        assert!((stage_max_score(&r, &rubric) - 13.0).abs() < 1e-9);
        assert!((stage_score(&r, &rubric) - 10.0).abs() < 1e-9);
        let u = ungradable("x", Stage::Pool);
        assert_eq!(stage_score(&u, &rubric), 0.0);
        assert!((stage_max_score(&u, &rubric) - 13.0).abs() < 1e-9);
    }

    #[test]
    fn summary_counts_checks_that_could_not_be_graded_only_when_there_are_some() {
        let rubric = rubric();
        let reports = vec![
            report("x", Stage::Spawn, &[CheckId::Reply]),
            report_with_errors("x", Stage::Pool, &[CheckId::Routing, CheckId::Drain]),
        ];
        assert_eq!(
            summary(&reports, &rubric),
            "spawn: 9/10 checks passed, 9/10 points\n\
             pool: 9/11 checks passed, 2 could not be graded, 10/13 points"
        );
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
