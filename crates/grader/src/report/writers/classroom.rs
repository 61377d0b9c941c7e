//! GitHub Classroom's grader result for one submission: the JSON its autograding reporter
//! reads (base64-encoded in a step output named `result`, for instance with
//! `echo "result=$(base64 -w0 classroom.json)" >> "$GITHUB_OUTPUT"`).
//!
//! Classroom's reporter adds up `tests[].score` over the result's `max_score`; a test has no
//! maximum of its own. So a check that could not be graded is an `"error"` test scoring 0
//! whose weight stays in `max_score`, and the whole result is `"error"`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{single_submission, write_json, ReportError};
use crate::outcome::{StageReport, Status};
use crate::report::{clean_text, feedback_text, points, round_score, test_name};
use crate::rubric::Rubric;

/// The grader result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassroomResult {
    /// Always 1.
    pub version: u32,
    /// `"error"` if some check could not be graded or nothing was graded, else `"fail"` if
    /// one failed, else `"pass"`.
    pub status: String,
    /// The sum of the weights of every check, those that could not be graded included.
    pub max_score: f64,
    /// One test per check.
    pub tests: Vec<ClassroomTest>,
}

/// One check as a Classroom test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassroomTest {
    /// `"<stage>: <id> — <title>"`.
    pub name: String,
    /// `"pass"`, `"fail"`, or `"error"` when the check could not be graded.
    pub status: String,
    /// Points earned: the weight if passed, else 0 (failed or could not be graded).
    pub score: f64,
    /// The feedback (cleaned); after [`ERROR_HEADLINE`](crate::report::ERROR_HEADLINE) when
    /// the check could not be graded.
    pub message: String,
    /// The command that ran the server.
    pub test_code: String,
    /// The student's file for the stage.
    pub filename: String,
    /// Always 0: a check is not tied to a line.
    pub line_no: u32,
    /// Milliseconds the check took.
    pub duration: u64,
}

/// Classroom's result for `reports`, which should all be of one submission.
pub fn classroom_result(reports: &[StageReport], rubric: &Rubric) -> ClassroomResult {
    let mut tests = Vec::new();
    let mut max_score = 0.0;
    for r in reports {
        let command = r.command.join(" ");
        for o in &r.outcomes {
            max_score += rubric.check_weight(o.id);
            tests.push(ClassroomTest {
                name: test_name(r.stage, o),
                status: match o.status {
                    Status::Passed => "pass",
                    Status::Failed => "fail",
                    Status::Error => "error",
                }
                .to_owned(),
                score: points(o, rubric),
                message: clean_text(&feedback_text(o)),
                test_code: clean_text(&command),
                filename: rubric.stage(r.stage).file.clone(),
                line_no: 0,
                duration: if o.seconds.is_finite() && o.seconds > 0.0 {
                    (o.seconds * 1000.0).round() as u64
                } else {
                    0
                },
            });
        }
    }
    let status = if tests.is_empty() || reports.iter().any(StageReport::has_errors) {
        "error"
    } else if tests.iter().all(|t| t.status == "pass") {
        "pass"
    } else {
        "fail"
    };
    ClassroomResult {
        version: 1,
        status: status.to_owned(),
        max_score: round_score(max_score),
        tests,
    }
}

/// Writes [`classroom_result`] for one submission's `reports` to `path`.
///
/// Fails with [`ReportError::SeveralSubmissions`] if the reports are of more than one.
pub fn write_classroom(
    path: &Path,
    reports: &[StageReport],
    rubric: &Rubric,
) -> Result<(), ReportError> {
    single_submission(path, reports)?;
    write_json(path, &classroom_result(reports, rubric))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{CheckId, Stage};
    use crate::report::fixtures::*;
    use crate::report::ERROR_HEADLINE;
    use serde_json::Value;

    fn write_and_read(reports: &[StageReport]) -> Value {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("classroom/result.json");
        write_classroom(&path, reports, &rubric()).expect("write");
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json")
    }

    #[test]
    fn result_follows_the_schema() {
        let rubric = rubric();
        let reports = one_submission();
        let json = write_and_read(&reports);
        assert_eq!(json["version"], 1);
        assert_eq!(json["status"], "fail");
        let max: f64 = reports
            .iter()
            .flat_map(|r| &r.outcomes)
            .map(|o| rubric.check_weight(o.id))
            .sum();
        assert!((json["max_score"].as_f64().expect("max_score") - max).abs() < 1e-9);

        let tests = json["tests"].as_array().expect("tests");
        let outcomes: Vec<_> = reports
            .iter()
            .flat_map(|r| r.outcomes.iter().map(move |o| (r, o)))
            .collect();
        assert_eq!(tests.len(), outcomes.len());
        let mut earned = 0.0;
        for (t, (r, o)) in tests.iter().zip(&outcomes) {
            assert_eq!(
                t["name"],
                format!("{}: {} — {}", r.stage, o.id, o.id.title()).as_str()
            );
            assert_eq!(t["status"], if o.passed() { "pass" } else { "fail" });
            let score = t["score"].as_f64().expect("score");
            assert_eq!(
                score,
                if o.passed() {
                    rubric.check_weight(o.id)
                } else {
                    0.0
                }
            );
            earned += score;
            assert_eq!(t["message"], clean_text(&o.feedback()).as_str());
            assert_eq!(t["test_code"], r.command.join(" ").as_str());
            assert_eq!(t["filename"], rubric.stage(r.stage).file.as_str());
            assert_eq!(t["line_no"], 0);
            assert_eq!(
                t["duration"].as_u64(),
                Some((o.seconds * 1000.0).round() as u64)
            );
        }
        assert!((earned - expected_score(&reports, &rubric)).abs() < 1e-9);
    }

    #[test]
    fn status_is_pass_only_when_every_check_passed_and_error_when_nothing_ran() {
        let all_pass = vec![report("alice", Stage::Pool, &[])];
        assert_eq!(write_and_read(&all_pass)["status"], "pass");
        assert_eq!(write_and_read(&[])["status"], "error");
    }

    #[test]
    fn an_ungradable_stage_gives_error_tests_at_0_whose_weights_stay_in_max_score() {
        let rubric = rubric();
        let reports = graded_beside_ungradable();
        let json = write_and_read(&reports);
        assert_eq!(json["status"], "error");
        // Spawn's 10 and pool's 13 (2.5 + 0.5 + 0 + 3 + 7 × 1): the errored checks count.
        let max = json["max_score"].as_f64().expect("max_score");
        assert!((max - 23.0).abs() < 1e-9, "{max}");
        let rubric_max = rubric.max_score(Stage::Spawn) + rubric.max_score(Stage::Pool);
        assert!((max - rubric_max).abs() < 1e-9, "{max} vs {rubric_max}");

        let tests = json["tests"].as_array().expect("tests");
        let pool_prefix = format!("{}: ", Stage::Pool);
        let (pool, spawn): (Vec<&Value>, Vec<&Value>) = tests.iter().partition(|t| {
            t["name"]
                .as_str()
                .is_some_and(|n| n.starts_with(&pool_prefix))
        });
        assert_eq!(pool.len(), Stage::Pool.checks().len());
        for t in &pool {
            assert_eq!(t["status"], "error", "{}", t["name"]);
            assert_eq!(t["score"].as_f64(), Some(0.0), "{}", t["name"]);
            let message = t["message"].as_str().expect("message");
            assert_eq!(message.lines().next(), Some(ERROR_HEADLINE), "{message}");
        }
        // The graded stage is intact: 9 of its 10 points, one failure, no error.
        assert!(spawn.iter().all(|t| t["status"] != "error"));
        assert_eq!(spawn.iter().filter(|t| t["status"] == "fail").count(), 1);
        // What Classroom's reporter computes: the scores over max_score.
        let total: f64 = tests.iter().filter_map(|t| t["score"].as_f64()).sum();
        assert!((total - 9.0).abs() < 1e-9, "{total}");
    }

    #[test]
    fn one_errored_check_makes_the_result_an_error_even_beside_failures() {
        let reports = vec![report_with_errors("alice", Stage::Pool, &[CheckId::Drain])];
        let mut with_failure = reports.clone();
        with_failure.push(report("alice", Stage::Spawn, &[CheckId::Reply]));
        assert_eq!(write_and_read(&reports)["status"], "error");
        assert_eq!(write_and_read(&with_failure)["status"], "error");
        assert_eq!(
            write_and_read(&[report("alice", Stage::Spawn, &[CheckId::Reply])])["status"],
            "fail"
        );
    }

    #[test]
    fn several_submissions_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("result.json");
        let err = write_classroom(&path, &several_submissions(), &rubric()).expect_err("several");
        assert!(matches!(err, ReportError::SeveralSubmissions { .. }));
    }
}
