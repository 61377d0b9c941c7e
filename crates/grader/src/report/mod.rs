//! Reporting grading: live reporters ([`live`]) consume the runner's
//! [`Event`](crate::outcome::Event)s as grading
//! goes (human, JSON Lines, the progress line of a batch, a collector; see [`Reporter`]);
//! result writers ([`writers`]) turn the finished [`StageReport`]s and the [`Rubric`] into the
//! grading platforms' files after grading (Gradescope, JUnit XML, GitHub Classroom,
//! PrairieLearn, a CSV gradebook). This module keeps what both share: the scores, test names
//! and feedback text, and re-exports both sides' public items.
//!
//! Like cargo-nextest, the runner only produces events; each reporter consumes them on its
//! own, so a run can print for a human and stream JSON and write files at once ([`Tee`]).
//! A finished report is replayed to live reporters as its events ([`StageReport::events`]).
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

pub mod live;
pub mod writers;

pub use live::{Collector, HumanReporter, JsonLinesReporter, ProgressReporter, Reporter, Tee};
pub use writers::{
    classroom_result, gradescope_results, junit_xml, prairielearn_results, write_classroom,
    write_gradebook, write_gradescope, write_junit, write_prairielearn, write_results,
    ClassroomResult, ClassroomTest, Gradebook, GradescopeResults, GradescopeTest,
    PrairieLearnResults, PrairieLearnTest, ReportError,
};

use crate::outcome::{Outcome, Stage, StageReport};
use crate::rubric::Rubric;

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
            symptom: (!passed).then_some(crate::symptom::Symptom::MissingReplies),
            cause: None,
            timeline: None,
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
}
