//! Grading whole submission folders: turning a rubric into stage plans, grading many
//! submissions at once through the runner, showing progress, and writing each submission's
//! result files and the class gradebook; sharding a batch over several graders ([`Shard`])
//! and merging their event files back into one batch ([`merge_shards`]).
//!
//! # Shards
//!
//! A batch is a list of jobs, one per check of every enabled stage of every submission, in
//! submission, stage and [`Stage::checks`] order (a stage whose file is missing counts too).
//! Shard `I/K` (1-based: `1/3`, `2/3`, `3/3`) grades the jobs whose 0-based index `j` has
//! `j % K == I - 1`, and reports them with the usual events: its `StageStarted`,
//! `CheckFinished` and `StageFinished` carry only its share of each stage. Its events file
//! (JSON Lines, see [`ShardLine`]) starts with a [`ShardRecord::ShardStarted`] naming every
//! stage of the batch and ends with [`ShardRecord::ShardFinished`] (its stages that could not
//! be graded) or [`ShardRecord::ShardFailed`] (it could not grade at all).

use std::collections::BTreeMap;
use std::fmt;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::checks::CheckParams;
use super::outcome::{CheckId, Event, Outcome, Stage, StageReport, Status};
use super::report::{self, Gradebook, ReportError, Reporter};
use super::rubric::Rubric;
use super::runner::{self, Executor, GradeError, StagePlan};
use super::sut::LaunchSpec;

/// The name a submission goes by in reports: its folder's name.
pub fn submission_name(dir: &Path) -> String {
    dir.canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| dir.display().to_string())
}

/// Check parameters for `stage` from the rubric.
pub fn params_for(rubric: &Rubric, stage: Stage) -> CheckParams {
    let p = &rubric.params;
    let mut params = CheckParams::new(stage);
    params.delay = p.delay.as_secs_f64();
    params.workers = p.workers as usize;
    params.clients = p.clients as usize;
    params.start_timeout = p.start_timeout;
    params.stop_timeout = p.stop_timeout;
    params
}

/// The plan that grades `stage` of the submission in `dir` with the rubric's command.
pub fn plan_for(dir: &Path, stage: Stage, rubric: &Rubric) -> StagePlan {
    StagePlan {
        submission: submission_name(dir),
        stage,
        spec: LaunchSpec {
            dir: dir.to_path_buf(),
            command: rubric.command(stage).to_vec(),
            env: rubric.params.server_env(),
            limits: rubric.limits.clone(),
        },
        params: params_for(rubric, stage),
        checks: stage.checks().to_vec(),
    }
}

/// A stage whose file the submission lacks: every check fails at once, saying so, and no
/// server is started.
pub fn missing_file_report(dir: &Path, stage: Stage, rubric: &Rubric) -> Option<StageReport> {
    let file = &rubric.stage(stage).file;
    if file.is_empty() || dir.join(file).is_file() {
        return None;
    }
    let outcomes = stage
        .checks()
        .iter()
        .map(|id| Outcome {
            id: *id,
            status: Status::Failed,
            did: format!("looked for {file} in the submission"),
            expected: format!("{file} exists (the stage {stage} server)"),
            observed: format!("{file} is missing, so stage {stage} could not run"),
            hint: Some(format!(
                "name your stage {stage} server {file}, at the top of the submission folder"
            )),
            seconds: 0.0,
            server_output: None,
        })
        .collect();
    Some(StageReport {
        submission: submission_name(dir),
        stage,
        command: rubric.command(stage).to_vec(),
        outcomes,
        seconds: 0.0,
    })
}

/// Shows how far a batch is: a redrawn line on a terminal, plain lines otherwise.
pub struct ProgressLine {
    total: usize,
    done: usize,
    failed: usize,
    began: Instant,
    terminal: bool,
}

impl ProgressLine {
    /// Progress over `total` stages, drawn on stderr.
    pub fn new(total: usize) -> Self {
        Self {
            total,
            done: 0,
            failed: 0,
            began: Instant::now(),
            terminal: std::io::stderr().is_terminal(),
        }
    }
}

impl Reporter for ProgressLine {
    fn on_event(&mut self, event: &Event) -> std::io::Result<()> {
        let Event::StageFinished { report } = event else {
            return Ok(());
        };
        self.done += 1;
        if !report.all_passed() {
            self.failed += 1;
        }
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let width = 30;
            let filled = width * self.done / self.total.max(1);
            write!(
                err,
                "\r[{}{}] {}/{} stages, {} with failures, {:.0}s ",
                "#".repeat(filled),
                "-".repeat(width - filled),
                self.done,
                self.total,
                self.failed,
                self.began.elapsed().as_secs_f64()
            )?;
            if self.done == self.total {
                writeln!(err)?;
            }
        } else {
            writeln!(
                err,
                "[{}/{}] {} {}: {}/{} checks passed ({:.1}s)",
                self.done,
                self.total,
                report.submission,
                report.stage,
                report.passed_count(),
                report.outcomes.len(),
                report.seconds
            )?;
        }
        err.flush()
    }
}

/// What a batch produced.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// Every stage graded (missing files included), in submission then stage order.
    pub reports: Vec<StageReport>,
    /// Stages that could not be graded at all.
    pub errors: Vec<GradeError>,
}

impl BatchOutcome {
    /// The exit code of the grading commands: 0 all passed, 1 a check failed, 2 something
    /// could not be graded.
    pub fn exit_code(&self) -> u8 {
        if !self.errors.is_empty() {
            2
        } else if self.reports.iter().all(StageReport::all_passed) {
            0
        } else {
            1
        }
    }
}

/// Sends a finished stage to `reporter` as if it had just run: `StageStarted`, one
/// `CheckFinished` per outcome, `StageFinished`.
pub fn replay(report: &StageReport, reporter: &mut dyn Reporter) {
    let _ = reporter.on_event(&Event::StageStarted {
        submission: report.submission.clone(),
        stage: report.stage,
        checks: report.outcomes.iter().map(|o| o.id).collect(),
    });
    for outcome in &report.outcomes {
        let _ = reporter.on_event(&Event::CheckFinished {
            submission: report.submission.clone(),
            stage: report.stage,
            outcome: outcome.clone(),
        });
    }
    let _ = reporter.on_event(&Event::StageFinished {
        report: report.clone(),
    });
}

/// Grades every stage of every submission folder, streaming events to `reporter`.
pub fn grade(
    submissions: &[PathBuf],
    rubric: &Rubric,
    executor: &Executor,
    reporter: &mut dyn Reporter,
) -> BatchOutcome {
    grade_shard(submissions, rubric, executor, reporter, None)
}

/// Like [`grade`], but with `Some(shard)` grades only that shard's jobs (see the module
/// documentation): its reports hold only those checks, and stages with none are left out.
pub fn grade_shard(
    submissions: &[PathBuf],
    rubric: &Rubric,
    executor: &Executor,
    reporter: &mut dyn Reporter,
    shard: Option<Shard>,
) -> BatchOutcome {
    let mut plans = Vec::new();
    let mut order: Vec<(usize, Stage)> = Vec::new();
    let mut ready: Vec<(usize, StageReport)> = Vec::new();
    let mut job = 0;
    for (n, dir) in submissions.iter().enumerate() {
        for stage in rubric.enabled_stages() {
            // Which of this stage's checks are ours: all of them without a shard.
            let first = job;
            let len = stage.checks().len();
            job += len;
            let mine = |i: usize| shard.is_none_or(|s| s.owns(first + i));
            if !(0..len).any(mine) {
                continue;
            }
            order.push((n, stage));
            match missing_file_report(dir, stage, rubric) {
                Some(mut report) => {
                    let mut i = 0;
                    report.outcomes.retain(|_| {
                        i += 1;
                        mine(i - 1)
                    });
                    ready.push((n, report));
                }
                None => {
                    let mut plan = plan_for(dir, stage, rubric);
                    let mut i = 0;
                    plan.checks.retain(|_| {
                        i += 1;
                        mine(i - 1)
                    });
                    plans.push((n, plan));
                }
            }
        }
    }
    for (_, report) in &ready {
        replay(report, reporter);
    }
    let only_plans: Vec<StagePlan> = plans.iter().map(|(_, p)| p.clone()).collect();
    let results = runner::run_plans(&only_plans, executor, &mut |e| {
        let _ = reporter.on_event(e);
    });
    let mut out = BatchOutcome::default();
    let mut graded: Vec<(usize, StageReport)> = ready;
    for ((n, _), result) in plans.into_iter().zip(results) {
        match result {
            Ok(report) => graded.push((n, report)),
            Err(e) => out.errors.push(e),
        }
    }
    for (n, stage) in order {
        if let Some(i) = graded.iter().position(|(m, r)| *m == n && r.stage == stage) {
            out.reports.push(graded.swap_remove(i).1);
        }
    }
    let _ = reporter.finish();
    out
}

/// One share of a batch: `index` of `count`, 1-based (`"2/3"` on the command line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// Which share, from 1 to `count`.
    pub index: usize,
    /// How many shares the batch is cut into.
    pub count: usize,
}

impl Shard {
    /// Whether job `job` (0-based, in batch order) belongs to this shard.
    pub fn owns(&self, job: usize) -> bool {
        self.count > 0 && job % self.count == self.index.wrapping_sub(1)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("bad shard {s:?}: expected I/K with 1 <= I <= K, for example 2/3");
        let (i, k) = s.split_once('/').ok_or_else(bad)?;
        let index: usize = i.trim().parse().map_err(|_| bad())?;
        let count: usize = k.trim().parse().map_err(|_| bad())?;
        if count == 0 || index == 0 || index > count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

/// A stage of a submission, as shard records name it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StageKey {
    /// The submission's name.
    pub submission: String,
    /// The stage.
    pub stage: Stage,
}

/// Every stage a batch grades, in batch order.
pub fn batch_stages(submissions: &[PathBuf], rubric: &Rubric) -> Vec<StageKey> {
    submissions
        .iter()
        .flat_map(|dir| {
            let submission = submission_name(dir);
            rubric
                .enabled_stages()
                .into_iter()
                .map(move |stage| StageKey {
                    submission: submission.clone(),
                    stage,
                })
        })
        .collect()
}

/// A stage a shard could not grade (a [`GradeError`] as data).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardError {
    /// The submission.
    pub submission: String,
    /// The stage.
    pub stage: Stage,
    /// Why.
    pub reason: String,
}

/// The lines of a shard's events file that are not grading events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum ShardRecord {
    /// The first line: which shard, and every stage of the whole batch.
    ShardStarted {
        /// The shard.
        shard: Shard,
        /// Every stage of the batch (not only this shard's), in batch order.
        stages: Vec<StageKey>,
    },
    /// The last line of a shard that graded its share.
    ShardFinished {
        /// The shard.
        shard: Shard,
        /// Its stages that could not be graded.
        errors: Vec<ShardError>,
    },
    /// The last line of a shard that could not grade at all.
    ShardFailed {
        /// The shard.
        shard: Shard,
        /// Why.
        reason: String,
    },
}

/// One line of a shard's events file: a grading [`Event`] or a [`ShardRecord`], both tagged
/// by `"event"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ShardLine {
    /// A grading event.
    Event(Event),
    /// A shard record.
    Record(ShardRecord),
}

/// Why shard events files could not be merged at all.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// A line is neither an event nor a shard record.
    #[error("{file}, line {line}: not a poolgrade event: {reason}")]
    BadLine {
        /// The file.
        file: String,
        /// 1-based line number.
        line: usize,
        /// What serde said.
        reason: String,
    },
    /// The files disagree on the number of shards.
    #[error("the events files disagree on the number of shards: {0:?}")]
    ShardCounts(Vec<usize>),
}

/// What [`merge_shards`] made of the files.
#[derive(Debug, Default)]
pub struct Merged {
    /// The stages put back together; a stage that a shard could not grade, or with checks
    /// that no shard graded, is a [`GradeError`].
    pub outcome: BatchOutcome,
    /// Shards that are missing, failed or did not finish, said in a sentence each.
    pub shard_problems: Vec<String>,
}

impl Merged {
    /// The exit code of `poolgrade merge`: [`BatchOutcome::exit_code`], or 2 when a shard
    /// has a problem.
    pub fn exit_code(&self) -> u8 {
        if self.shard_problems.is_empty() {
            self.outcome.exit_code()
        } else {
            2
        }
    }
}

/// Puts a sharded batch back together from its shards' events files, given as
/// `(name, contents)`; `missing` names files that never appeared (each is a shard problem).
///
/// Each stage's outcomes come from the `CheckFinished` events of every shard, in
/// [`Stage::checks`] order (the first, if a check is reported twice); its command from a
/// shard's `StageFinished` (else the rubric's); its seconds are the longest any shard spent
/// on it (the shards grade in step, so this is about the stage's wall time).
pub fn merge_shards(
    files: &[(String, String)],
    missing: &[String],
    rubric: &Rubric,
) -> Result<Merged, MergeError> {
    type Key = (String, Stage);
    let mut stages: Vec<StageKey> = Vec::new();
    let mut counts: Vec<usize> = Vec::new();
    let mut started: BTreeMap<usize, ()> = BTreeMap::new();
    let mut finished: BTreeMap<usize, Vec<ShardError>> = BTreeMap::new();
    let mut failed: BTreeMap<usize, String> = BTreeMap::new();
    let mut outcomes: BTreeMap<Key, BTreeMap<CheckId, Outcome>> = BTreeMap::new();
    let mut commands: BTreeMap<Key, Vec<String>> = BTreeMap::new();
    let mut seconds: BTreeMap<Key, f64> = BTreeMap::new();
    for (file, text) in files {
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let parsed: ShardLine =
                serde_json::from_str(line).map_err(|e| MergeError::BadLine {
                    file: file.clone(),
                    line: n + 1,
                    reason: e.to_string(),
                })?;
            let mut note_shard = |shard: &Shard| {
                if !counts.contains(&shard.count) {
                    counts.push(shard.count);
                }
            };
            match parsed {
                ShardLine::Record(ShardRecord::ShardStarted { shard, stages: s }) => {
                    note_shard(&shard);
                    started.insert(shard.index, ());
                    for key in s {
                        if !stages.contains(&key) {
                            stages.push(key);
                        }
                    }
                }
                ShardLine::Record(ShardRecord::ShardFinished { shard, errors }) => {
                    note_shard(&shard);
                    finished.insert(shard.index, errors);
                }
                ShardLine::Record(ShardRecord::ShardFailed { shard, reason }) => {
                    note_shard(&shard);
                    failed.insert(shard.index, reason);
                }
                ShardLine::Event(Event::CheckFinished {
                    submission,
                    stage,
                    outcome,
                }) => {
                    outcomes
                        .entry((submission, stage))
                        .or_default()
                        .entry(outcome.id)
                        .or_insert(outcome);
                }
                ShardLine::Event(Event::StageFinished { report }) => {
                    let key = (report.submission.clone(), report.stage);
                    commands.entry(key.clone()).or_insert(report.command);
                    let s = seconds.entry(key).or_insert(0.0);
                    *s = s.max(report.seconds);
                }
                ShardLine::Event(Event::StageStarted { .. }) => {}
            }
        }
    }
    if counts.len() > 1 {
        return Err(MergeError::ShardCounts(counts));
    }
    let count = counts.first().copied().unwrap_or(0);
    let mut problems: Vec<String> = missing
        .iter()
        .map(|f| format!("{f} did not appear: its shard left no events"))
        .collect();
    if count == 0 && missing.is_empty() {
        problems.push("no shard record in the events files: nothing to merge".into());
    }
    for index in 1..=count {
        let shard = Shard { index, count };
        if let Some(reason) = failed.get(&index) {
            problems.push(format!("shard {shard} could not grade: {reason}"));
        } else if !finished.contains_key(&index) {
            problems.push(if started.contains_key(&index) {
                format!("shard {shard} did not finish (its events end early)")
            } else {
                format!("shard {shard} left no events")
            });
        }
    }
    let mut merged = Merged::default();
    for key in stages {
        let k = (key.submission.clone(), key.stage);
        let reasons: Vec<String> = finished
            .values()
            .flatten()
            .filter(|e| e.submission == key.submission && e.stage == key.stage)
            .map(|e| e.reason.clone())
            .collect();
        let mut got = outcomes.remove(&k).unwrap_or_default();
        let absent: Vec<&str> = key
            .stage
            .checks()
            .iter()
            .filter(|id| !got.contains_key(id))
            .map(|id| id.as_str())
            .collect();
        if !reasons.is_empty() || !absent.is_empty() {
            let mut reason = reasons.join("; ");
            if !absent.is_empty() {
                if !reason.is_empty() {
                    reason.push_str("; ");
                }
                reason.push_str(&format!("no shard graded {}", absent.join(", ")));
                if !problems.is_empty() {
                    reason.push_str(&format!(" ({})", problems.join("; ")));
                }
            }
            merged.outcome.errors.push(GradeError {
                submission: key.submission,
                stage: key.stage,
                reason,
            });
            continue;
        }
        let outcomes = key
            .stage
            .checks()
            .iter()
            .filter_map(|id| got.remove(id))
            .collect();
        merged.outcome.reports.push(StageReport {
            command: commands
                .remove(&k)
                .unwrap_or_else(|| rubric.command(key.stage).to_vec()),
            seconds: seconds.get(&k).copied().unwrap_or(0.0),
            submission: key.submission,
            stage: key.stage,
            outcomes,
        });
    }
    merged.shard_problems = problems;
    Ok(merged)
}

/// Writes `DIR/<submission>/{results.json, junit.xml, classroom.json, prairielearn.json}`
/// for each submission and, for batches, `DIR/gradebook.csv`.
pub fn write_results(
    out_dir: &Path,
    outcome: &BatchOutcome,
    rubric: &Rubric,
    per_submission_dirs: bool,
) -> Result<(), ReportError> {
    let mut names: Vec<&str> = outcome
        .reports
        .iter()
        .map(|r| r.submission.as_str())
        .collect();
    names.dedup();
    for name in &names {
        let reports: Vec<StageReport> = outcome
            .reports
            .iter()
            .filter(|r| r.submission == *name)
            .cloned()
            .collect();
        let dir = if per_submission_dirs {
            out_dir.join(name)
        } else {
            out_dir.to_path_buf()
        };
        report::write_gradescope(&dir.join("results.json"), &reports, rubric)?;
        report::write_junit(&dir.join("junit.xml"), &reports)?;
        report::write_classroom(&dir.join("classroom.json"), &reports, rubric)?;
        report::write_prairielearn(&dir.join("prairielearn.json"), &reports, rubric)?;
    }
    if per_submission_dirs {
        let mut book = Gradebook::new(rubric);
        for r in &outcome.reports {
            book.add_report(r);
        }
        for e in &outcome.errors {
            book.add_error(&e.submission, &e.reason);
        }
        book.write(&out_dir.join("gradebook.csv"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grader::report::fixtures::report;

    #[test]
    fn shards_parse_and_split_the_jobs_exactly_once() {
        assert_eq!("2/3".parse(), Ok(Shard { index: 2, count: 3 }));
        assert_eq!(Shard { index: 2, count: 3 }.to_string(), "2/3");
        for bad in ["0/3", "4/3", "3", "a/b", "1/0", "-1/2", ""] {
            assert!(bad.parse::<Shard>().is_err(), "{bad:?} parsed");
        }
        for count in 1..6 {
            for job in 0..40 {
                let owners = (1..=count)
                    .filter(|&index| Shard { index, count }.owns(job))
                    .count();
                assert_eq!(owners, 1, "job {job} of {count} shards");
            }
        }
    }

    /// The events files `count` shards would write for `reports`, splitting the batch's
    /// checks as `grade --shard` does; shards listed in `lost` write nothing.
    fn shard_files(reports: &[StageReport], count: usize, lost: &[usize]) -> Vec<(String, String)> {
        let stages: Vec<StageKey> = reports
            .iter()
            .map(|r| StageKey {
                submission: r.submission.clone(),
                stage: r.stage,
            })
            .collect();
        (1..=count)
            .filter(|i| !lost.contains(i))
            .map(|index| {
                let shard = Shard { index, count };
                let mut lines = vec![ShardLine::Record(ShardRecord::ShardStarted {
                    shard,
                    stages: stages.clone(),
                })];
                let mut job = 0;
                for r in reports {
                    let mut part = r.clone();
                    part.outcomes.clear();
                    for o in &r.outcomes {
                        if shard.owns(job) {
                            lines.push(ShardLine::Event(Event::CheckFinished {
                                submission: r.submission.clone(),
                                stage: r.stage,
                                outcome: o.clone(),
                            }));
                            part.outcomes.push(o.clone());
                        }
                        job += 1;
                    }
                    part.seconds = index as f64;
                    lines.push(ShardLine::Event(Event::StageFinished { report: part }));
                }
                lines.push(ShardLine::Record(ShardRecord::ShardFinished {
                    shard,
                    errors: vec![],
                }));
                let text: Vec<String> = lines
                    .iter()
                    .map(|l| serde_json::to_string(l).expect("encode"))
                    .collect();
                (format!("shard-{index}.jsonl"), text.join("\n"))
            })
            .collect()
    }

    #[test]
    fn merging_every_shard_gives_back_the_whole_batch() {
        let reports = vec![
            report("alice", Stage::Spawn, &[CheckId::Routing]),
            report("alice", Stage::Pool, &[]),
            report("bob", Stage::Pool, &[CheckId::Drain]),
        ];
        let rubric = Rubric::default();
        // Reversed file order: the merge does not depend on it.
        let mut files = shard_files(&reports, 3, &[]);
        files.reverse();
        let merged = merge_shards(&files, &[], &rubric).expect("merge");
        assert!(
            merged.shard_problems.is_empty(),
            "{:?}",
            merged.shard_problems
        );
        assert!(
            merged.outcome.errors.is_empty(),
            "{:?}",
            merged.outcome.errors
        );
        assert_eq!(merged.outcome.reports.len(), reports.len());
        for (got, want) in merged.outcome.reports.iter().zip(&reports) {
            assert_eq!(got.outcomes, want.outcomes);
            assert_eq!((&got.submission, got.stage), (&want.submission, want.stage));
            assert_eq!(got.command, want.command);
            assert_eq!(got.seconds, 3.0, "the longest shard's time");
        }
        assert_eq!(merged.exit_code(), 1, "a check failed");
    }

    #[test]
    fn a_lost_shard_leaves_its_checks_ungraded_and_exits_2() {
        let reports = vec![report("alice", Stage::Pool, &[])];
        let files = shard_files(&reports, 3, &[2]);
        let merged =
            merge_shards(&files, &["shard-2.jsonl".into()], &Rubric::default()).expect("merge");
        assert_eq!(merged.exit_code(), 2);
        assert!(merged.outcome.reports.is_empty());
        let err = &merged.outcome.errors[0];
        // Shard 2 of 3 had jobs 1, 4, 7, 10 of the pool stage's 11 checks.
        let lost: Vec<&str> = [1, 4, 7, 10]
            .iter()
            .map(|&i| Stage::Pool.checks()[i].as_str())
            .collect();
        assert!(
            err.reason
                .contains(&format!("no shard graded {}", lost.join(", "))),
            "{}",
            err.reason
        );
        assert!(merged
            .shard_problems
            .iter()
            .any(|p| p.contains("shard-2.jsonl")));
        // A line that is not an event is an error naming the file and the line.
        let bad = vec![(
            "x.jsonl".to_string(),
            "{}\n{\"event\":\"nope\"}".to_string(),
        )];
        let err = merge_shards(&bad, &[], &Rubric::default()).expect_err("bad line");
        assert!(err.to_string().contains("x.jsonl, line 1"), "{err}");
    }
}
