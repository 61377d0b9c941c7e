//! The CSV gradebook of a batch: one row per submission, with each stage's score, the total,
//! one column per check of each stage, and the errors that kept a submission from grading.
//!
//! Columns, always the same whatever the rubric:
//!
//! `submission,stage_spawn,stage_pool,score,max_score,spawn.starts,…,spawn.cleanup,pool.starts,…,pool.cleanup,error`
//!
//! - `stage_<stage>`: the points the stage earned; empty if it was not graded.
//! - `score`: the sum of the stage scores.
//! - `max_score`: the most a submission could earn in the graded stages (the stages enabled by
//!   the rubric and any stage graded for some submission), the same in every row.
//! - `<stage>.<id>`: `1` if the check passed, `0` if it failed, empty if it did not run.
//! - `error`: why the submission could not be graded, if it could not (one line).
//!
//! Fields are quoted as RFC 4180 says. Text fields (submission, error) that a spreadsheet would
//! read as a formula (starting with `=`, `+`, `-`, `@`) get a leading `'`.

use std::collections::BTreeMap;
use std::path::Path;

use super::{clean_text, round_score, stage_score, write_file, ReportError};
use crate::grader::outcome::{CheckId, Stage, StageReport};
use crate::grader::rubric::Rubric;

/// A gradebook being filled, one stage report or error at a time. Rows come out sorted by
/// submission name.
#[derive(Debug, Clone)]
pub struct Gradebook {
    rubric: Rubric,
    rows: BTreeMap<String, Row>,
}

#[derive(Debug, Clone, Default)]
struct Row {
    stages: BTreeMap<Stage, StageRow>,
    errors: Vec<String>,
}

#[derive(Debug, Clone)]
struct StageRow {
    score: f64,
    checks: BTreeMap<CheckId, bool>,
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
            checks: report.outcomes.iter().map(|o| (o.id, o.passed())).collect(),
        };
        self.rows
            .entry(report.submission.clone())
            .or_default()
            .stages
            .insert(report.stage, stage);
    }

    /// Records why `submission` could not be graded (it gets a row even with no report).
    pub fn add_error(&mut self, submission: &str, message: &str) {
        self.rows
            .entry(submission.to_owned())
            .or_default()
            .errors
            .push(message.to_owned());
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
                    fields.push(match checks.and_then(|c| c.get(id)) {
                        Some(true) => "1".to_owned(),
                        Some(false) => "0".to_owned(),
                        None => String::new(),
                    });
                }
            }
            let error = row
                .errors
                .iter()
                .map(|e| one_line(e))
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

/// Writes the gradebook of `reports` and `errors` (`(submission, message)` pairs) to `path`.
pub fn write_gradebook(
    path: &Path,
    reports: &[StageReport],
    errors: &[(String, String)],
    rubric: &Rubric,
) -> Result<(), ReportError> {
    let mut book = Gradebook::new(rubric);
    for r in reports {
        book.add_report(r);
    }
    for (submission, message) in errors {
        book.add_error(submission, message);
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
    use super::super::fixtures::*;
    use super::super::submissions;
    use super::*;

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

    #[test]
    fn one_row_per_submission_with_columns_that_line_up() {
        let rubric = rubric();
        let reports = several_submissions();
        let errors = vec![
            (
                "dave".to_owned(),
                "no server_spawn.py,\nnor \"server_pool.py\"".to_owned(),
            ),
            ("=cmd|' /C calc'!A0".to_owned(), "@SUM(1)".to_owned()),
        ];
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out/gradebook.csv");
        write_gradebook(&path, &reports, &errors, &rubric).expect("write");
        let (header, rows) = read_csv(&std::fs::read_to_string(&path).expect("read"));

        assert_eq!(header, Gradebook::header());
        assert_eq!(
            &header[..5],
            [
                "submission",
                "stage_spawn",
                "stage_pool",
                "score",
                "max_score"
            ]
        );
        assert_eq!(header.last().map(String::as_str), Some("error"));
        let checks: usize = Stage::ALL.iter().map(|s| s.checks().len()).sum();
        assert_eq!(header.len(), 5 + checks + 1);

        let mut names: Vec<String> = submissions(&reports)
            .into_iter()
            .map(str::to_owned)
            .collect();
        names.extend(errors.iter().map(|(n, _)| n.clone()));
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
                        .map_or("", |o| if o.passed() { "1" } else { "0" });
                    assert_eq!(cell, want, "{name} {stage}.{id}");
                }
            }
        }

        let row_of = |name: &str| rows.iter().find(|r| r[0] == name).expect("row");
        // Commas and quotes survive the quoting.
        assert_eq!(row_of("bob, \"the\" <builder> & co")[col("error")], "");
        assert_eq!(
            row_of("dave")[col("error")],
            "no server_spawn.py, / nor \"server_pool.py\""
        );
        // Formula-looking text is defused.
        assert_eq!(row_of("'=cmd|' /C calc'!A0")[col("error")], "'@SUM(1)");
    }

    #[test]
    fn a_later_report_replaces_an_earlier_one_and_errors_accumulate() {
        let rubric = rubric();
        let mut book = Gradebook::new(&rubric);
        book.add_report(&report(
            "eve",
            Stage::Spawn,
            &[crate::grader::outcome::CheckId::Reply],
        ));
        book.add_report(&report("eve", Stage::Spawn, &[]));
        book.add_error("eve", "first\u{1b}[31m");
        book.add_error("eve", "second");
        let (header, rows) = read_csv(&book.to_csv());
        assert_eq!(rows.len(), 1);
        let col = |name: &str| header.iter().position(|h| h == name).expect("column");
        assert_eq!(rows[0][col("spawn.reply")], "1");
        assert_eq!(rows[0][col("error")], "first; second");
        let want = expected_score(&[report("eve", Stage::Spawn, &[])], &rubric);
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
