//! PrairieLearn's `/grade/results/results.json` for one submission: `score` from 0 to 1 and a
//! test per check worth its rubric weight.
//!
//! A check that could not be graded is a test at 0 of its weight whose message starts with
//! [`ERROR_HEADLINE`](crate::report::ERROR_HEADLINE); its weight stays in the maximum that `score`
//! divides by, and the results stay `gradable` (the course counts it 0 of its maximum).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{single_submission, write_json, ReportError};
use crate::outcome::{Outcome, StageReport};
use crate::report::{clean_text, feedback_text, points, round_score, summary, test_name};
use crate::rubric::Rubric;

/// The whole `results.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrairieLearnResults {
    /// Always true: a failed check is a grade, not a grading failure, and a check that could
    /// not be graded counts 0 of its maximum rather than voiding the grade.
    pub gradable: bool,
    /// Points earned over points possible (every check's weight, those that could not be
    /// graded included), from 0 to 1 (1 when every check passed, even if the weights add up
    /// to 0).
    pub score: f64,
    /// One line per stage.
    pub message: String,
    /// One test per check.
    pub tests: Vec<PrairieLearnTest>,
}

/// One check as a PrairieLearn test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrairieLearnTest {
    /// `"<stage>: <id> — <title>"`.
    pub name: String,
    /// What the check shows.
    pub description: String,
    /// Points earned: the weight if passed, else 0 (failed or could not be graded).
    pub points: f64,
    /// The check's weight, whether or not it could be graded.
    pub max_points: f64,
    /// Did, expected, observed, hint; after [`ERROR_HEADLINE`](crate::report::ERROR_HEADLINE)
    /// when the check could not be graded.
    pub message: String,
    /// The end of what the server printed (cleaned), if the check kept it.
    pub output: String,
}

/// PrairieLearn's results for `reports`, which should all be of one submission.
pub fn prairielearn_results(reports: &[StageReport], rubric: &Rubric) -> PrairieLearnResults {
    let tests: Vec<PrairieLearnTest> = reports
        .iter()
        .flat_map(|r| {
            r.outcomes.iter().map(move |o| PrairieLearnTest {
                name: test_name(r.stage, o),
                description: o.id.title().to_owned(),
                points: points(o, rubric),
                max_points: rubric.check_weight(o.id),
                message: clean_text(&feedback_text(&Outcome {
                    server_output: None,
                    symptom: None,
                    cause: None,
                    timeline: None,
                    ..o.clone()
                })),
                output: o
                    .server_output
                    .as_deref()
                    .map(clean_text)
                    .unwrap_or_default(),
            })
        })
        .collect();
    let earned: f64 = tests.iter().map(|t| t.points).sum();
    let max: f64 = tests.iter().map(|t| t.max_points).sum();
    let score = if max > 0.0 {
        (earned / max).clamp(0.0, 1.0)
    } else if !tests.is_empty() && reports.iter().all(StageReport::all_passed) {
        1.0
    } else {
        0.0
    };
    PrairieLearnResults {
        gradable: true,
        score: round_score(score),
        message: summary(reports, rubric),
        tests,
    }
}

/// Writes [`prairielearn_results`] for one submission's `reports` to `path`.
///
/// Fails with [`ReportError::SeveralSubmissions`] if the reports are of more than one.
pub fn write_prairielearn(
    path: &Path,
    reports: &[StageReport],
    rubric: &Rubric,
) -> Result<(), ReportError> {
    single_submission(path, reports)?;
    write_json(path, &prairielearn_results(reports, rubric))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::Stage;
    use crate::report::fixtures::*;
    use crate::report::ERROR_HEADLINE;
    use serde_json::Value;

    fn write_and_read(reports: &[StageReport], rubric: &Rubric) -> Value {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("grade/results/results.json");
        write_prairielearn(&path, reports, rubric).expect("write");
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json")
    }

    #[test]
    fn an_ungradable_stage_scores_0_of_its_points_and_stays_in_the_maximum_of_the_score() {
        let rubric = rubric();
        let reports = graded_beside_ungradable();
        let json = write_and_read(&reports, &rubric);
        // Spawn earns 9 of 10; pool 0 of 13 (2.5 + 0.5 + 0 + 3 + 7 × 1).
        let score = json["score"].as_f64().expect("score");
        assert!((score - 9.0 / 23.0).abs() < 1e-6, "{score}");
        assert_eq!(json["gradable"], true);
        let message = json["message"].as_str().expect("message");
        assert!(
            message.contains("pool: 0/11 checks passed, 11 could not be graded, 0/13 points"),
            "{message}"
        );

        let tests = json["tests"].as_array().expect("tests");
        let pool_prefix = format!("{}: ", Stage::Pool);
        let (pool, spawn): (Vec<&Value>, Vec<&Value>) = tests.iter().partition(|t| {
            t["name"]
                .as_str()
                .is_some_and(|n| n.starts_with(&pool_prefix))
        });
        assert_eq!(pool.len(), Stage::Pool.checks().len());
        for (t, id) in pool.iter().zip(Stage::Pool.checks()) {
            assert_eq!(t["points"].as_f64(), Some(0.0), "{id}");
            assert_eq!(t["max_points"].as_f64(), Some(rubric.check_weight(*id)));
            let message = t["message"].as_str().expect("message");
            assert_eq!(message.lines().next(), Some(ERROR_HEADLINE), "{message}");
            assert!(message.contains(FAULT), "{message}");
        }
        let spawn_points: f64 = spawn.iter().filter_map(|t| t["points"].as_f64()).sum();
        assert!((spawn_points - 9.0).abs() < 1e-9, "{spawn_points}");
    }

    #[test]
    fn results_follow_the_schema_with_a_fractional_score() {
        let rubric = rubric();
        let reports = one_submission();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("grade/results/results.json");
        write_prairielearn(&path, &reports, &rubric).expect("write");
        let json: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");

        let max: f64 = reports
            .iter()
            .flat_map(|r| &r.outcomes)
            .map(|o| rubric.check_weight(o.id))
            .sum();
        let score = json["score"].as_f64().expect("score");
        assert!((score - expected_score(&reports, &rubric) / max).abs() < 1e-6);
        assert!(score > 0.0 && score < 1.0);
        assert_eq!(json["gradable"], true);

        let tests = json["tests"].as_array().expect("tests");
        let outcomes: Vec<_> = reports.iter().flat_map(|r| &r.outcomes).collect();
        assert_eq!(tests.len(), outcomes.len());
        for (t, o) in tests.iter().zip(outcomes) {
            let weight = rubric.check_weight(o.id);
            assert_eq!(t["max_points"].as_f64(), Some(weight));
            assert_eq!(
                t["points"].as_f64(),
                Some(if o.passed() { weight } else { 0.0 })
            );
            let message = t["message"].as_str().expect("message");
            assert!(
                message.contains(&format!("Observed: {}", o.observed)),
                "{message}"
            );
            assert!(!message.contains("Server output"), "{message}");
            let want_output = o
                .server_output
                .as_deref()
                .map(clean_text)
                .unwrap_or_default();
            assert_eq!(t["output"], want_output.as_str());
        }
    }
}
