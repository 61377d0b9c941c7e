//! Grading whole submission folders: turning a rubric into stage plans and grading many
//! submissions at once through the runner. Its progress is a live reporter
//! ([`crate::report::ProgressReporter`]); its result files and the class gradebook are
//! written by [`crate::report::write_results`].

use std::path::{Path, PathBuf};

#[cfg(test)]
use super::outcome::CheckId;
use super::outcome::{Outcome, Stage, StageReport, Status};
use super::report::Reporter;
use super::rubric::Rubric;
use super::runner::{self, CheckRunner, StagePlan};
use super::sut::LaunchSpec;

/// The name a submission goes by in reports: its folder's name.
pub fn submission_name(dir: &Path) -> String {
    dir.canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| dir.display().to_string())
}

/// The plan that grades `stage` of the submission in `dir` with the rubric's command;
/// `hidden` lists the grader's own paths (rubric, results, the submissions' folder) that a
/// sandbox must not show.
pub fn plan_for(dir: &Path, stage: Stage, rubric: &Rubric, hidden: &[PathBuf]) -> StagePlan {
    let mut spec = LaunchSpec::new(dir, rubric.command(stage).to_vec());
    spec.limits = rubric.limits.clone();
    spec.path = rubric.sandbox.path.clone();
    spec.hidden = hidden.to_vec();
    StagePlan {
        submission: submission_name(dir),
        stage,
        spec,
        params: rubric.params.clone(),
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
            symptom: None,
            cause: None,
            timeline: None,
        })
        .collect();
    Some(StageReport {
        submission: submission_name(dir),
        stage,
        command: rubric.command(stage).to_vec(),
        outcomes,
        seconds: 0.0,
        isolation: String::new(),
    })
}

/// What a batch produced.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// Every enabled stage of every submission (missing files and ungradable stages
    /// included), in submission then stage order.
    pub reports: Vec<StageReport>,
}

impl BatchOutcome {
    /// The exit code of the grading commands: 2 some check could not be graded, 1 a check
    /// failed, 0 all passed.
    pub fn exit_code(&self) -> u8 {
        if self.reports.iter().any(StageReport::has_errors) {
            2
        } else if self.reports.iter().all(StageReport::all_passed) {
            0
        } else {
            1
        }
    }
}

/// Grades every stage of every submission folder, streaming events to `reporter`. Every
/// enabled stage of every submission gets a complete report, graded or not.
pub fn grade(
    submissions: &[PathBuf],
    rubric: &Rubric,
    hidden: &[PathBuf],
    check_runner: &CheckRunner,
    reporter: &mut dyn Reporter,
) -> BatchOutcome {
    let mut plans = Vec::new();
    let mut order: Vec<(usize, Stage)> = Vec::new();
    let mut ready: Vec<(usize, StageReport)> = Vec::new();
    for (n, dir) in submissions.iter().enumerate() {
        for stage in rubric.enabled_stages() {
            order.push((n, stage));
            match missing_file_report(dir, stage, rubric) {
                Some(report) => ready.push((n, report)),
                None => plans.push((n, plan_for(dir, stage, rubric, hidden))),
            }
        }
    }
    for event in ready.iter().flat_map(|(_, report)| report.events()) {
        let _ = reporter.on_event(&event);
    }
    let only_plans: Vec<StagePlan> = plans.iter().map(|(_, p)| p.clone()).collect();
    let results = runner::run_plans(&only_plans, check_runner, &mut |e| {
        let _ = reporter.on_event(e);
    });
    let mut graded: Vec<(usize, StageReport)> = ready;
    graded.extend(plans.into_iter().map(|(n, _)| n).zip(results));
    let mut out = BatchOutcome::default();
    for (n, stage) in order {
        if let Some(i) = graded.iter().position(|(m, r)| *m == n && r.stage == stage) {
            out.reports.push(graded.swap_remove(i).1);
        }
    }
    let _ = reporter.finish();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures::report;

    #[test]
    fn the_exit_code_says_errors_then_failures() {
        let ok = report("alice", Stage::Pool, &[]);
        let failed = report("bob", Stage::Pool, &[CheckId::Routing]);
        let mut error = report("carol", Stage::Pool, &[]);
        error.outcomes[0] = Outcome::error(CheckId::Starts, "the sandbox failed", 0.0);
        let batch = |r: Vec<StageReport>| BatchOutcome { reports: r };
        assert_eq!(batch(vec![ok.clone()]).exit_code(), 0);
        assert_eq!(batch(vec![ok.clone(), failed.clone()]).exit_code(), 1);
        assert_eq!(batch(vec![ok, failed, error]).exit_code(), 2);
    }

    #[test]
    fn a_missing_file_fails_every_check_of_its_stage_without_a_server() {
        let dir = tempfile::tempdir().unwrap();
        let rubric = Rubric::default();
        let r = missing_file_report(dir.path(), Stage::Spawn, &rubric).expect("missing");
        assert_eq!(r.outcomes.len(), Stage::Spawn.checks().len());
        assert!(r.outcomes.iter().all(|o| o.status == Status::Failed));
        std::fs::write(dir.path().join("server_spawn.py"), "").unwrap();
        assert!(missing_file_report(dir.path(), Stage::Spawn, &rubric).is_none());
    }
}
