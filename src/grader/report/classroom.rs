//! GitHub Classroom's grader result for one submission: the JSON its autograding reporter
//! reads (base64-encoded in a step output named `result`, for instance with
//! `echo "result=$(base64 -w0 classroom.json)" >> "$GITHUB_OUTPUT"`).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{
    clean_text, points, round_score, single_submission, test_name, write_json, ReportError,
};
use crate::grader::outcome::StageReport;
use crate::grader::rubric::Rubric;

/// The grader result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassroomResult {
    /// Always 1.
    pub version: u32,
    /// `"pass"` if every check passed, `"fail"` if one failed, `"error"` if nothing was graded.
    pub status: String,
    /// The sum of the weights of the checks run.
    pub max_score: f64,
    /// One test per check.
    pub tests: Vec<ClassroomTest>,
}

/// One check as a Classroom test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassroomTest {
    /// `"<stage>: <id> — <title>"`.
    pub name: String,
    /// `"pass"` or `"fail"`.
    pub status: String,
    /// Points earned: the weight if passed, else 0.
    pub score: f64,
    /// The feedback (cleaned).
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
                status: if o.passed() { "pass" } else { "fail" }.to_owned(),
                score: points(o, rubric),
                message: clean_text(&o.feedback()),
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
    let status = if tests.is_empty() {
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
    use super::super::fixtures::*;
    use super::*;
    use crate::grader::outcome::Stage;
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
    fn several_submissions_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("result.json");
        let err = write_classroom(&path, &several_submissions(), &rubric()).expect_err("several");
        assert!(matches!(err, ReportError::SeveralSubmissions { .. }));
    }
}
