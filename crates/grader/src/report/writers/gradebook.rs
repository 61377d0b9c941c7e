//! The CSV gradebook of a batch: one row per submission, with each stage's score, the total,
//! one column per check of each stage, and the checks that could not be graded.
//!
//! Columns, always the same whatever the rubric:
//!
//! `submission,stage_spawn,stage_pool,score,max_score,spawn.starts,…,spawn.cleanup,pool.starts,…,pool.cleanup,error`
//!
//! - `stage_<stage>`: the points the stage earned, out of its full maximum: a check that
//!   could not be graded earns 0, so a stage none of whose checks could be graded reads `0`;
//!   empty if the stage was not graded for the submission.
//! - `score`: the sum of the stage scores.
//! - `max_score`: the most a submission could earn in the graded stages (the stages enabled by
//!   the rubric and any stage graded for some submission, every check's weight counted,
//!   those that could not be graded included), the same in every row.
//! - `<stage>.<id>`: `1` if the check passed, `0` if it failed, `error` if it could not be
//!   graded (a grading fault, not a verdict), empty if it did not run.
//! - `error`: which checks could not be graded and why, on one line, one entry per stage and
//!   reason (`pool (all 11 checks): the check could not be graded: …` or
//!   `pool (drain, cleanup): …`, entries separated by `; `); empty when every check was graded.
//!
//! Fields are quoted as RFC 4180 says. Text fields (submission, error) that a spreadsheet would
//! read as a formula (starting with `=`, `+`, `-`, `@`) get a leading `'`.

use std::collections::BTreeMap;
use std::path::Path;

use super::{write_file, ReportError};
use crate::outcome::{CheckId, Stage, StageReport, Status};
use crate::report::{clean_text, round_score, stage_score};
use crate::rubric::Rubric;

/// A gradebook being filled, one stage report at a time. Rows come out sorted by submission
/// name.
#[derive(Debug, Clone)]
pub struct Gradebook {
    rubric: Rubric,
    rows: BTreeMap<String, SubmissionRow>,
}

#[derive(Debug, Clone, Default)]
struct SubmissionRow {
    stages: BTreeMap<Stage, StageRow>,
}

#[derive(Debug, Clone)]
struct StageRow {
    score: f64,
    checks: BTreeMap<CheckId, Status>,
    /// The `error` column's entries for the stage (see the module doc).
    faults: Vec<String>,
}

/// The `error` column's entries for `report`: its checks that could not be graded, grouped
/// by what they observed (why), in catalogue order.
fn faults(report: &StageReport) -> Vec<String> {
    let mut groups: Vec<(String, Vec<CheckId>)> = Vec::new();
    for o in report.outcomes.iter().filter(|o| o.is_error()) {
        let why = one_line(&o.observed);
        match groups.iter_mut().find(|(w, _)| *w == why) {
            Some((_, ids)) => ids.push(o.id),
            None => groups.push((why, vec![o.id])),
        }
    }
    groups
        .into_iter()
        .map(|(why, ids)| {
            let which = if ids.len() == report.outcomes.len() && ids.len() > 1 {
                format!("all {} checks", ids.len())
            } else {
                ids.iter()
                    .map(|id| id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            format!("{} ({which}): {why}", report.stage)
        })
        .collect()
}

impl Gradebook {
    /// An empty gradebook scored with `rubric`.
    pub fn new(rubric: &Rubric) -> Self {
        Self {
            rubric: rubric.clone(),
            rows: BTreeMap::new(),
        }
    }

    /// Adds a stage report; a later report of the same submission and stage replaces it.
    pub fn add_report(&mut self, report: &StageReport) {
        let stage = StageRow {
            score: stage_score(report, &self.rubric),
            checks: report.outcomes.iter().map(|o| (o.id, o.status)).collect(),
            faults: faults(report),
        };
        self.rows
            .entry(report.submission.clone())
            .or_default()
            .stages
            .insert(report.stage, stage);
    }

    /// The column names.
    pub fn header() -> Vec<String> {
        let mut columns: Vec<String> = vec!["submission".to_owned()];
        columns.extend(Stage::ALL.iter().map(|s| format!("stage_{s}")));
        columns.push("score".to_owned());
        columns.push("max_score".to_owned());
        for stage in Stage::ALL {
            columns.extend(stage.checks().iter().map(|id| format!("{stage}.{id}")));
        }
        columns.push("error".to_owned());
        columns
    }

    /// The most a submission can earn in the graded stages.
    pub fn max_score(&self) -> f64 {
        let graded = |s: Stage| {
            self.rubric.stage(s).enabled || self.rows.values().any(|r| r.stages.contains_key(&s))
        };
        round_score(
            Stage::ALL
                .into_iter()
                .filter(|s| graded(*s))
                .map(|s| self.rubric.max_score(s))
                .sum(),
        )
    }

    /// The gradebook as CSV text: the header, then one line per submission.
    pub fn to_csv(&self) -> String {
        let mut csv = line(Self::header().iter().map(|c| field(c, false)));
        let max = number(self.max_score());
        for (name, row) in &self.rows {
            let mut fields = vec![field(name, true)];
            for stage in Stage::ALL {
                fields.push(
                    row.stages
                        .get(&stage)
                        .map_or(String::new(), |s| number(s.score)),
                );
            }
            let total: f64 = row.stages.values().map(|s| s.score).sum();
            fields.push(number(total));
            fields.push(max.clone());
            for stage in Stage::ALL {
                let checks = row.stages.get(&stage).map(|s| &s.checks);
                for id in stage.checks() {
                    fields.push(
                        match checks.and_then(|c| c.get(id)) {
                            Some(Status::Passed) => "1",
                            Some(Status::Failed) => "0",
                            Some(Status::Error) => "error",
                            None => "",
                        }
                        .to_owned(),
                    );
                }
            }
            let error = row
                .stages
                .values()
                .flat_map(|s| &s.faults)
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join("; ");
            fields.push(field(&error, true));
            csv.push_str(&line(fields.into_iter()));
        }
        csv
    }

    /// Writes [`Gradebook::to_csv`] to `path`.
    pub fn write(&self, path: &Path) -> Result<(), ReportError> {
        write_file(path, self.to_csv().as_bytes())
    }
}

/// Writes the gradebook of `reports` to `path`.
pub fn write_gradebook(
    path: &Path,
    reports: &[StageReport],
    rubric: &Rubric,
) -> Result<(), ReportError> {
    let mut book = Gradebook::new(rubric);
    for r in reports {
        book.add_report(r);
    }
    book.write(path)
}

fn line(fields: impl Iterator<Item = String>) -> String {
    let mut text = fields.collect::<Vec<_>>().join(",");
    text.push_str("\r\n");
    text
}

fn number(x: f64) -> String {
    round_score(x).to_string()
}

/// `text` cleaned and on one line: newlines and tabs become spaces, runs of them one.
fn one_line(text: &str) -> String {
    clean_text(text)
        .split(['\n', '\t'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" / ")
}

/// One CSV field: controls dropped, quoted when it holds a comma, quote, newline or outer
/// space; a text field that a spreadsheet would read as a formula gets a leading `'`.
fn field(raw: &str, text: bool) -> String {
    let mut value = clean_text(raw);
    if text && value.starts_with(['=', '+', '-', '@']) {
        value.insert(0, '\'');
    }
    let needs_quotes = value.contains([',', '"', '\n', '\r'])
        || value.starts_with([' ', '\t'])
        || value.ends_with([' ', '\t']);
    if needs_quotes {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::super::submissions;
    use super::*;
    use crate::report::fixtures::*;

    fn read_csv(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(text.as_bytes());
        let header = reader
            .headers()
            .expect("header")
            .iter()
            .map(str::to_owned)
            .collect();
        let rows = reader
            .records()
            .map(|r| r.expect("record").iter().map(str::to_owned).collect())
            .collect();
        (header, rows)
    }

    /// The cell a check's outcome should read as.
    fn cell_of(status: Status) -> &'static str {
        match status {
            Status::Passed => "1",
            Status::Failed => "0",
            Status::Error => "error",
        }
    }

    #[test]
    fn one_row_per_submission_with_columns_that_line_up() {
        let rubric = rubric();
        let mut reports = several_submissions();
        reports.push(report(
            "=cmd|' /C calc'!A0",
            Stage::Spawn,
            &[CheckId::Reply],
        ));
        reports.push(report_with_errors(
            "dave",
            Stage::Pool,
            &[CheckId::Drain, CheckId::Cleanup],
        ));
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out/gradebook.csv");
        write_gradebook(&path, &reports, &rubric).expect("write");
        let (header, rows) = read_csv(&std::fs::read_to_string(&path).expect("read"));

        assert_eq!(header, Gradebook::header());
        assert_eq!(
            &header[..6],
            [
                "submission",
                "stage_spawn",
                "stage_pool",
                "stage_primes",
                "score",
                "max_score"
            ]
        );
        assert_eq!(header.last().map(String::as_str), Some("error"));
        let checks: usize = Stage::ALL.iter().map(|s| s.checks().len()).sum();
        assert_eq!(header.len(), 1 + Stage::ALL.len() + 2 + checks + 1);

        let mut names: Vec<String> = submissions(&reports)
            .into_iter()
            .map(str::to_owned)
            .collect();
        names.sort();
        let shown: Vec<String> = rows
            .iter()
            .map(|r| r[0].trim_start_matches('\'').to_owned())
            .collect();
        assert_eq!(shown, names, "one row per submission, sorted");

        let col = |name: &str| header.iter().position(|h| h == name).expect("column");
        let max: f64 = Stage::ALL.iter().map(|s| rubric.max_score(*s)).sum();
        for row in &rows {
            assert_eq!(row.len(), header.len(), "{row:?}");
            let name = row[0].trim_start_matches('\'');
            let mine: Vec<_> = reports.iter().filter(|r| r.submission == name).collect();
            let want = expected_score(
                &mine.iter().map(|r| (*r).clone()).collect::<Vec<_>>(),
                &rubric,
            );
            let score: f64 = row[col("score")].parse().expect("score");
            assert!((score - want).abs() < 1e-6, "{name}: {score} vs {want}");
            let max_cell: f64 = row[col("max_score")].parse().expect("max_score");
            assert!((max_cell - max).abs() < 1e-6);
            for stage in Stage::ALL {
                let stage_report = mine.iter().find(|r| r.stage == stage);
                let cell = &row[col(&format!("stage_{stage}"))];
                match stage_report {
                    Some(r) => {
                        let want = expected_score(std::slice::from_ref(*r), &rubric);
                        let got: f64 = cell.parse().expect("stage score");
                        assert!((got - want).abs() < 1e-6);
                    }
                    None => assert_eq!(cell, "", "{name} {stage}"),
                }
                for id in stage.checks() {
                    let cell = &row[col(&format!("{stage}.{id}"))];
                    let want = stage_report
                        .and_then(|r| r.outcomes.iter().find(|o| o.id == *id))
                        .map_or("", |o| cell_of(o.status));
                    assert_eq!(cell, want, "{name} {stage}.{id}");
                }
            }
        }

        let row_of = |name: &str| rows.iter().find(|r| r[0] == name).expect("row");
        // Commas and quotes survive the quoting.
        assert_eq!(row_of("bob, \"the\" <builder> & co")[col("error")], "");
        // The errored checks are named with why, on one line.
        assert_eq!(
            row_of("dave")[col("error")],
            format!("pool (drain, cleanup): the check could not be graded: {FAULT}")
        );
        // A formula-looking name is defused with a leading quote.
        assert_eq!(row_of("'=cmd|' /C calc'!A0")[col("spawn.reply")], "0");
        assert!(rows.iter().all(|r| !r[0].starts_with('=')));
    }

    #[test]
    fn an_ungradable_stage_reads_error_in_every_check_cell_and_0_of_the_full_maximum() {
        let rubric = rubric();
        let reports = graded_beside_ungradable();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("gradebook.csv");
        write_gradebook(&path, &reports, &rubric).expect("write");
        let (header, rows) = read_csv(&std::fs::read_to_string(&path).expect("read"));
        assert_eq!(rows.len(), 1);
        let row = &rows[0];
        let col = |name: &str| header.iter().position(|h| h == name).expect("column");

        // Pool: every check reads `error`, the stage 0; its 13 points (2.5 + 0.5 + 0 + 3 +
        // 7 × 1) stay in max_score beside spawn's 10 and Exercise 1's 6 (enabled, though
        // not in these reports).
        for id in Stage::Pool.checks() {
            assert_eq!(row[col(&format!("pool.{id}"))], "error", "pool.{id}");
        }
        assert_eq!(row[col("stage_pool")], "0");
        assert_eq!(row[col("max_score")], "29");
        assert_eq!(
            row[col("error")],
            format!("pool (all 11 checks): the check could not be graded: {FAULT}")
        );
        // Spawn keeps its points: 10 less the failed reply.
        assert_eq!(row[col("stage_spawn")], "9");
        assert_eq!(row[col("score")], "9");
        assert_eq!(row[col("spawn.reply")], "0");
        assert_eq!(row[col("spawn.routing")], "1");
    }

    #[test]
    fn a_later_report_replaces_an_earlier_one_and_its_errors() {
        let rubric = rubric();
        let mut book = Gradebook::new(&rubric);
        book.add_report(&report_with_errors("eve", Stage::Spawn, &[CheckId::Reply]));
        book.add_report(&report("eve", Stage::Spawn, &[]));
        book.add_report(&report_with_errors("eve", Stage::Pool, &[CheckId::Starts]));
        let (header, rows) = read_csv(&book.to_csv());
        assert_eq!(rows.len(), 1);
        let col = |name: &str| header.iter().position(|h| h == name).expect("column");
        assert_eq!(rows[0][col("spawn.reply")], "1");
        assert_eq!(rows[0][col("pool.starts")], "error");
        // Only the pool error is left: the spawn one went with its report.
        assert_eq!(
            rows[0][col("error")],
            format!("pool (starts): the check could not be graded: {FAULT}")
        );
        let want = expected_score(
            &[
                report("eve", Stage::Spawn, &[]),
                report_with_errors("eve", Stage::Pool, &[CheckId::Starts]),
            ],
            &rubric,
        );
        assert!((rows[0][col("score")].parse::<f64>().expect("score") - want).abs() < 1e-6);
    }

    #[test]
    fn fields_are_quoted_only_when_needed() {
        assert_eq!(field("plain", true), "plain");
        assert_eq!(field("a,b", true), "\"a,b\"");
        assert_eq!(field("say \"hi\"", true), "\"say \"\"hi\"\"\"");
        assert_eq!(field(" padded", true), "\" padded\"");
        assert_eq!(field("-1", true), "'-1");
        assert_eq!(field("nul\0bell\u{7}", true), "nulbell");
    }
}
