//! Gradescope's `results.json` (written to `/autograder/results/results.json` on Gradescope)
//! for one submission: a test per check, worth its rubric weight.
//!
//! Gradescope knows only `passed` and `failed`: a check that could not be graded is a
//! `failed` test at 0 of its weight whose output starts with
//! [`ERROR_HEADLINE`](crate::report::ERROR_HEADLINE).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{single_submission, write_json, ReportError};
use crate::outcome::{Outcome, StageReport, Status};
use crate::report::{
    clean_text, feedback_text, points, round_score, stage_number, summary, test_name,
};
use crate::rubric::{Rubric, Visibility};

/// The whole `results.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GradescopeResults {
    /// Points earned: the sum of the weights of the passed checks.
    pub score: f64,
    /// Seconds the grading took, rounded.
    pub execution_time: u64,
    /// A short summary, one line per stage, then `"<stage>: isolated by <how>"` for each
    /// stage whose servers the sandbox described.
    pub output: String,
    /// Who sees the result ([`crate::rubric::GradescopeOptions`]).
    pub visibility: Visibility,
    /// Who sees the autograder's standard output.
    pub stdout_visibility: Visibility,
    /// One test per check.
    pub tests: Vec<GradescopeTest>,
}

/// One check as a Gradescope test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GradescopeTest {
    /// `"<stage>: <id> — <title>"`.
    pub name: String,
    /// Points earned: the weight if passed, else 0 (failed or could not be graded).
    pub score: f64,
    /// The check's weight, whether or not it could be graded.
    pub max_score: f64,
    /// `"passed"` or `"failed"`; a check that could not be graded is `"failed"`.
    pub status: String,
    /// The feedback: did, expected, observed, hint, server output (cleaned); after
    /// [`ERROR_HEADLINE`](crate::report::ERROR_HEADLINE) when the check could not be graded.
    pub output: String,
    /// Always `"text"`.
    pub output_format: String,
    /// `"stage:<stage>"` and `"check:<id>"`.
    pub tags: Vec<String>,
    /// Who sees it, from the rubric.
    pub visibility: Visibility,
    /// `"<stage number>.<check number>"`, both 1-based: `"1.1"`, …, `"2.11"`.
    pub number: String,
}

/// Gradescope's results for `reports`, which should all be of one submission.
pub fn gradescope_results(reports: &[StageReport], rubric: &Rubric) -> GradescopeResults {
    let tests = reports
        .iter()
        .flat_map(|r| {
            r.outcomes.iter().enumerate().map(move |(i, o)| {
                let (output, format) = output_of(o);
                GradescopeTest {
                    name: test_name(r.stage, o),
                    score: points(o, rubric),
                    max_score: rubric.check_weight(o.id),
                    status: if o.passed() { "passed" } else { "failed" }.to_owned(),
                    output,
                    output_format: format.to_owned(),
                    tags: vec![format!("stage:{}", r.stage), format!("check:{}", o.id)],
                    visibility: rubric.visibility(o.id),
                    number: format!("{}.{}", stage_number(r.stage), i + 1),
                }
            })
        })
        .collect::<Vec<_>>();
    let seconds: f64 = reports.iter().map(|r| r.seconds).sum();
    GradescopeResults {
        score: round_score(tests.iter().map(|t| t.score).sum()),
        execution_time: if seconds.is_finite() && seconds > 0.0 {
            seconds.round() as u64
        } else {
            0
        },
        output: output(reports, rubric),
        visibility: rubric.gradescope.visibility,
        stdout_visibility: rubric.gradescope.stdout_visibility,
        tests,
    }
}

/// Largest HTML output of one test: a failed check's timeline is left out past this, so
/// that results.json stays far under Gradescope's size limits.
pub const HTML_OUTPUT_LIMIT: usize = 48 * 1024;

/// A test's output and its format: for a failed check with a timeline, the feedback and
/// the timeline as HTML (Gradescope shows it drawn); otherwise the feedback as text.
fn output_of(o: &Outcome) -> (String, &'static str) {
    if o.status == Status::Failed && o.timeline.is_some() {
        let html = super::check_html(o);
        if html.len() <= HTML_OUTPUT_LIMIT {
            return (html, "html");
        }
    }
    (clean_text(&feedback_text(o)), "text")
}

/// The top-level output: [`summary`], then one line per stage whose isolation is described.
fn output(reports: &[StageReport], rubric: &Rubric) -> String {
    let mut text = summary(reports, rubric);
    for r in reports {
        let isolation = clean_text(&r.isolation)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        if !isolation.is_empty() {
            text.push_str(&format!("\n{}: isolated by {isolation}", r.stage));
        }
    }
    text
}

/// Writes Gradescope's `results.json` for one submission's `reports` to `path`.
///
/// Fails with [`ReportError::SeveralSubmissions`] if the reports are of more than one.
pub fn write_gradescope(
    path: &Path,
    reports: &[StageReport],
    rubric: &Rubric,
) -> Result<(), ReportError> {
    single_submission(path, reports)?;
    write_json(path, &gradescope_results(reports, rubric))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{CheckId, Stage};
    use crate::report::fixtures::*;
    use crate::report::ERROR_HEADLINE;
    use serde_json::Value;

    fn read(path: &Path) -> Value {
        serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("json")
    }

    #[test]
    fn a_failed_check_with_a_timeline_shows_it_as_html_with_its_text_escaped() {
        use crate::timeline::{RequestOutcome, RequestTrace, Timeline};
        let rubric = rubric();
        let mut reports = vec![report("alice", Stage::Pool, &[CheckId::Routing])];
        let timeline = Timeline {
            offset_s: 0.5,
            requests: vec![RequestTrace {
                pid: 301,
                sent_s: 0.0,
                taken_s: None,
                reply_s: None,
                outcome: RequestOutcome::Missing,
            }],
            threads: vec![],
            waves: vec![],
            end_s: 1.0,
            queue_watched: false,
        };
        for o in &mut reports[0].outcomes {
            o.timeline = Some(timeline.clone());
        }
        let results = gradescope_results(&reports, &rubric);
        for t in &results.tests {
            if t.status == "failed" {
                assert_eq!(t.output_format, "html", "{}", t.name);
                assert!(t.output.contains("<svg") && t.output.contains("<pre>"));
                assert!(!t.output.contains("<3 clients"), "text is escaped");
                assert!(t.output.contains("&lt;3 clients"));
            } else {
                assert_eq!(t.output_format, "text", "a passed check stays text");
            }
        }
    }

    #[test]
    fn results_json_follows_the_schema_and_sums_passed_weights() {
        let rubric = rubric();
        let reports = one_submission();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("autograder/results/results.json");
        write_gradescope(&path, &reports, &rubric).expect("write");
        let json = read(&path);

        let score = json["score"].as_f64().expect("score");
        assert!((score - expected_score(&reports, &rubric)).abs() < 1e-9);
        let seconds: f64 = reports.iter().map(|r| r.seconds).sum();
        assert_eq!(
            json["execution_time"].as_u64(),
            Some(seconds.round() as u64)
        );
        assert_eq!(json["visibility"], "visible");
        assert_eq!(json["stdout_visibility"], "hidden");
        let output = json["output"].as_str().expect("output");
        for r in &reports {
            let line = format!(
                "{}: {}/{} checks passed",
                r.stage,
                r.passed_count(),
                r.outcomes.len()
            );
            assert!(output.contains(&line), "{output}");
        }

        let tests = json["tests"].as_array().expect("tests");
        let outcomes: Vec<_> = reports
            .iter()
            .flat_map(|r| r.outcomes.iter().map(move |o| (r.stage, o)))
            .collect();
        assert_eq!(tests.len(), outcomes.len());
        let mut per_stage = std::collections::HashMap::new();
        for (test, (stage, o)) in tests.iter().zip(&outcomes) {
            let n = per_stage.entry(*stage).or_insert(0);
            *n += 1;
            let weight = rubric.check_weight(o.id);
            assert_eq!(
                test["name"],
                format!("{stage}: {} — {}", o.id, o.id.title()).as_str()
            );
            assert_eq!(test["max_score"].as_f64(), Some(weight));
            assert_eq!(
                test["score"].as_f64(),
                Some(if o.passed() { weight } else { 0.0 })
            );
            assert_eq!(test["status"], if o.passed() { "passed" } else { "failed" });
            assert_eq!(test["output_format"], "text");
            assert_eq!(test["output"], clean_text(&o.feedback()).as_str());
            assert_eq!(test["visibility"], rubric.visibility(o.id).as_str());
            let tags: Vec<&str> = test["tags"]
                .as_array()
                .expect("tags")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            assert_eq!(tags, [format!("stage:{stage}"), format!("check:{}", o.id)]);
            let number = format!(
                "{}.{n}",
                Stage::ALL.iter().position(|s| s == stage).expect("stage") + 1
            );
            assert_eq!(test["number"], number.as_str());
        }
        // The hidden check of the rubric is hidden.
        let hidden = tests
            .iter()
            .find(|t| t["tags"][1] == "check:pool-bounded")
            .expect("pool-bounded test");
        assert_eq!(hidden["visibility"], "hidden");
    }

    #[test]
    fn server_output_is_kept_readable_and_stripped_of_controls() {
        let rubric = rubric();
        let reports = vec![report("alice", Stage::Spawn, &[CheckId::Reply])];
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("results.json");
        write_gradescope(&path, &reports, &rubric).expect("write");
        let json = read(&path);
        let failed = json["tests"]
            .as_array()
            .expect("tests")
            .iter()
            .find(|t| t["status"] == "failed")
            .expect("a failed test");
        let output = failed["output"].as_str().expect("output");
        // Behind the quoting margin, so no line of it passes for the grader's own.
        assert!(
            output.contains(&crate::text::quote_output(NASTY)),
            "{output}"
        );
        assert!(output.contains("Hint: reply with type pid+3"), "{output}");
        assert!(
            !output.contains('\u{1b}') && !output.contains('\0'),
            "{output:?}"
        );
    }

    #[test]
    fn an_ungradable_stage_scores_0_of_its_full_weight_in_failed_tests_marked_error() {
        let rubric = rubric();
        let reports = graded_beside_ungradable();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("results.json");
        write_gradescope(&path, &reports, &rubric).expect("write");
        let json = read(&path);
        let tests = json["tests"].as_array().expect("tests");
        let of_stage = |stage: Stage| -> Vec<&Value> {
            tests
                .iter()
                .filter(|t| t["tags"][0] == format!("stage:{stage}").as_str())
                .collect()
        };

        // Every pool check is a failed test at 0 of its own weight, marked as an error.
        let pool = of_stage(Stage::Pool);
        assert_eq!(pool.len(), Stage::Pool.checks().len());
        let mut pool_max = 0.0;
        for (t, id) in pool.iter().zip(Stage::Pool.checks()) {
            assert_eq!(t["tags"][1], format!("check:{id}").as_str());
            assert_eq!(t["score"].as_f64(), Some(0.0), "{id}");
            assert_eq!(t["max_score"].as_f64(), Some(rubric.check_weight(*id)));
            assert_eq!(t["status"], "failed");
            let output = t["output"].as_str().expect("output");
            let first = output.lines().next().unwrap_or_default();
            assert_eq!(first, ERROR_HEADLINE, "{id}");
            assert!(output.contains(&clean_text(FAULT)), "{output}");
            pool_max += t["max_score"].as_f64().expect("max_score");
        }
        // The uneven weights all count: 2.5 + 0.5 + 0 + 3 + 7 × 1.
        assert!((pool_max - 13.0).abs() < 1e-9, "{pool_max}");

        // The graded stage keeps its points: 10 minus the failed reply.
        let spawn = of_stage(Stage::Spawn);
        let spawn_score: f64 = spawn.iter().filter_map(|t| t["score"].as_f64()).sum();
        assert!((spawn_score - 9.0).abs() < 1e-9, "{spawn_score}");
        assert!(spawn.iter().all(|t| {
            !t["output"]
                .as_str()
                .unwrap_or_default()
                .contains(ERROR_HEADLINE)
        }));
        assert!((json["score"].as_f64().expect("score") - 9.0).abs() < 1e-9);

        // The summary says so; only the stage that started servers says how they were isolated.
        let output = json["output"].as_str().expect("output");
        let lines: Vec<&str> = output.lines().collect();
        assert_eq!(
            lines,
            [
                "spawn: 9/10 checks passed, 9/10 points",
                "pool: 0/11 checks passed, 11 could not be graded, 0/13 points",
                "spawn: isolated by native: test fixture",
            ]
        );
    }

    #[test]
    fn several_submissions_are_refused_with_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("results.json");
        let err = write_gradescope(&path, &several_submissions(), &rubric()).expect_err("several");
        match &err {
            ReportError::SeveralSubmissions {
                path: p,
                submissions,
            } => {
                assert_eq!(p, &path);
                assert_eq!(submissions.len(), 3);
            }
            other => panic!("expected SeveralSubmissions, got {other:?}"),
        }
        assert!(!path.exists());
    }

    #[test]
    fn no_reports_give_a_zero_score_and_no_tests() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("results.json");
        write_gradescope(&path, &[], &rubric()).expect("write");
        let json = read(&path);
        assert_eq!(json["score"].as_f64(), Some(0.0));
        assert_eq!(json["tests"].as_array().map(Vec::len), Some(0));
    }
}
