//! The human reporter: a readable summary per stage for a terminal or a log.
//!
//! ```text
//! alice · stage spawn (10 checks)
//!   PASS  starts          0.31s
//!   FAIL  routing         2.10s
//!   ...
//!   routing failed:
//!         Did: ...
//!         Expected: ...
//!         Observed: ...
//!         Diagnosis: ...
//!         Hint: ...
//! alice spawn: 9/10 checks passed
//! alice · stage pool (11 checks)
//!   ERROR starts          0.02s
//!   ...
//!   starts could not be graded:
//!         ERROR: this check could not be graded (a grading fault, not a verdict on your code)
//!         Did: ...
//! alice pool: 9/11 checks passed, 1 could not be graded
//! ```
//!
//! The feedback comes after the stage's check lines, once every check has finished: a
//! failure that follows from another check's defect is only known to do so then (see
//! [`crate::diagnosis::trace`]). A check that could not be graded reads `ERROR`, its
//! feedback indented like a failure's.
//! With colour (a terminal, `NO_COLOR` unset or empty) the marks are a green ✓, a red ✗ and
//! a yellow `!`; the footer is green when every check passed, yellow when some could not be
//! graded, red otherwise.
//! Lines of one stage always stay together: the first stage to start is printed live, check
//! by check; a stage that runs at the same time (a parallel batch) is printed whole when it
//! finishes and the live one is done.

use std::io::{self, IsTerminal, Write};

use super::Reporter;
use crate::outcome::{CheckId, Event, Outcome, Stage, StageReport, Status};
use crate::report::{clean_text, error_count, feedback_text};

const GREEN: &str = "\u{1b}[32m";
const RED: &str = "\u{1b}[31m";
const YELLOW: &str = "\u{1b}[33m";
const BOLD: &str = "\u{1b}[1m";
const RESET: &str = "\u{1b}[0m";

/// Width of the id column: the longest check id.
fn id_width() -> usize {
    CheckId::ALL
        .iter()
        .map(|id| id.as_str().len())
        .max()
        .unwrap_or(0)
}

/// Prints a summary per stage: a header, one line per check, the feedback of each failure or
/// check that could not be graded, and
/// `"<submission> <stage>: N/M checks passed"` (then `", E could not be graded"` if some
/// could not).
pub struct HumanReporter<W: Write> {
    out: W,
    color: bool,
    /// The stage printed check by check.
    live: Option<(String, Stage)>,
    /// Stages that finished while another was live, printed when it is done.
    pending: Vec<StageReport>,
}

impl<W: Write + IsTerminal> HumanReporter<W> {
    /// A reporter writing to `out` (`io::stdout()`, `io::stderr()`), in colour when `out` is a
    /// terminal and `NO_COLOR` is unset or empty.
    pub fn auto(out: W) -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let color = out.is_terminal() && !no_color;
        Self::new(out, color)
    }
}

impl<W: Write> HumanReporter<W> {
    /// A reporter writing to `out`, in colour if `color`.
    pub fn new(out: W, color: bool) -> Self {
        Self {
            out,
            color,
            live: None,
            pending: Vec::new(),
        }
    }

    /// The writer back.
    pub fn into_inner(self) -> W {
        self.out
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("{code}{text}{RESET}")
        } else {
            text.to_owned()
        }
    }

    fn header(&mut self, submission: &str, stage: Stage, checks: usize) -> io::Result<()> {
        let line = format!(
            "{} · stage {stage} ({checks} checks)",
            clean_text(submission)
        );
        let line = self.paint(BOLD, &line);
        writeln!(self.out, "{line}")
    }

    fn check(&mut self, outcome: &Outcome) -> io::Result<()> {
        // Each mark and the space after it fill as many columns, so ids line up: a coloured
        // mark is one character and a space, a word is padded to five.
        let mark = if self.color {
            let (code, sign) = match outcome.status {
                Status::Passed => (GREEN, "✓"),
                Status::Failed => (RED, "✗"),
                Status::Error => (YELLOW, "!"),
            };
            format!("{} ", self.paint(code, sign))
        } else {
            let word = match outcome.status {
                Status::Passed => "PASS",
                Status::Failed => "FAIL",
                Status::Error => "ERROR",
            };
            format!("{word:<5}")
        };
        writeln!(
            self.out,
            "  {mark} {:<width$}  {:>6.2}s",
            outcome.id.as_str(),
            outcome.seconds,
            width = id_width()
        )
    }

    /// The feedback of every check of `report` that did not pass, each under its name.
    fn feedback(&mut self, report: &StageReport) -> io::Result<()> {
        for outcome in report.outcomes.iter().filter(|o| !o.passed()) {
            let what = if outcome.is_error() {
                "could not be graded"
            } else {
                "failed"
            };
            writeln!(self.out, "  {} {what}:", outcome.id)?;
            for line in clean_text(&feedback_text(outcome)).lines() {
                writeln!(self.out, "{:8}{line}", "")?;
            }
        }
        Ok(())
    }

    fn footer(&mut self, report: &StageReport) -> io::Result<()> {
        let errors = error_count(report);
        let mut line = format!(
            "{} {}: {}/{} checks passed",
            clean_text(&report.submission),
            report.stage,
            report.passed_count(),
            report.outcomes.len()
        );
        if errors > 0 {
            line.push_str(&format!(", {errors} could not be graded"));
        }
        let colour = if report.all_passed() {
            GREEN
        } else if errors > 0 {
            YELLOW
        } else {
            RED
        };
        let line = self.paint(colour, &line);
        writeln!(self.out, "{line}")
    }

    fn whole(&mut self, report: &StageReport) -> io::Result<()> {
        self.header(&report.submission, report.stage, report.outcomes.len())?;
        for o in &report.outcomes {
            self.check(o)?;
        }
        self.feedback(report)?;
        self.footer(report)
    }

    fn is_live(&self, submission: &str, stage: Stage) -> bool {
        self.live
            .as_ref()
            .is_some_and(|(s, st)| s == submission && *st == stage)
    }

    fn flush_pending(&mut self) -> io::Result<()> {
        for report in std::mem::take(&mut self.pending) {
            self.whole(&report)?;
        }
        Ok(())
    }
}

impl<W: Write> Reporter for HumanReporter<W> {
    fn on_event(&mut self, event: &Event) -> io::Result<()> {
        match event {
            Event::StageStarted {
                submission,
                stage,
                checks,
            } => {
                if self.live.is_none() {
                    self.live = Some((submission.clone(), *stage));
                    self.header(submission, *stage, checks.len())?;
                }
            }
            Event::CheckFinished {
                submission,
                stage,
                outcome,
            } => {
                if self.is_live(submission, *stage) {
                    self.check(outcome)?;
                }
            }
            Event::StageFinished { report } => {
                if self.is_live(&report.submission, report.stage) {
                    self.feedback(report)?;
                    self.footer(report)?;
                    self.live = None;
                    self.flush_pending()?;
                } else if self.live.is_some() {
                    self.pending.push(report.clone());
                } else {
                    self.whole(report)?;
                }
            }
        }
        self.out.flush()
    }

    fn finish(&mut self) -> io::Result<()> {
        self.live = None;
        self.flush_pending()?;
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures::*;
    use crate::report::ERROR_HEADLINE;

    fn render(events: &[Event], color: bool) -> String {
        let mut reporter = HumanReporter::new(Vec::new(), color);
        for e in events {
            reporter.on_event(e).expect("write");
        }
        reporter.finish().expect("finish");
        String::from_utf8(reporter.into_inner()).expect("utf-8")
    }

    /// The lines of one stage's block, as a check of their content and order.
    fn assert_block(lines: &[&str], report: &StageReport) -> usize {
        assert!(
            lines[0].starts_with(&format!("{} · stage {}", report.submission, report.stage)),
            "{:?}",
            lines[0]
        );
        let mut i = 1;
        for o in &report.outcomes {
            let words: Vec<&str> = lines[i].split_whitespace().collect();
            let mark = match o.status {
                Status::Passed => "PASS",
                Status::Failed => "FAIL",
                Status::Error => "ERROR",
            };
            assert_eq!(words[0], mark, "{}", lines[i]);
            assert_eq!(words[1], o.id.as_str());
            assert_eq!(words[2], format!("{:.2}s", o.seconds));
            // The ids line up whatever the mark.
            assert_eq!(lines[i].find(o.id.as_str()), Some(8), "{}", lines[i]);
            i += 1;
        }
        // Then the feedback of each check that did not pass, in the same order.
        for o in report.outcomes.iter().filter(|o| !o.passed()) {
            let what = if o.is_error() {
                "could not be graded"
            } else {
                "failed"
            };
            assert_eq!(lines[i], format!("  {} {what}:", o.id));
            i += 1;
            for want in clean_text(&feedback_text(o)).lines() {
                assert_eq!(lines[i].trim_start(), want.trim_start());
                assert!(lines[i].starts_with("        "), "indented: {:?}", lines[i]);
                i += 1;
            }
        }
        let errors = report.outcomes.iter().filter(|o| o.is_error()).count();
        let mut footer = format!(
            "{} {}: {}/{} checks passed",
            report.submission,
            report.stage,
            report.passed_count(),
            report.outcomes.len()
        );
        if errors > 0 {
            footer.push_str(&format!(", {errors} could not be graded"));
        }
        assert_eq!(lines[i], footer);
        i + 1
    }

    #[test]
    fn plain_output_lists_every_check_with_feedback_under_failures() {
        let reports = one_submission();
        let events: Vec<Event> = reports.iter().flat_map(StageReport::events).collect();
        let text = render(&events, false);
        assert!(!text.contains('\u{1b}') && !text.contains('\0'), "{text:?}");
        let lines: Vec<&str> = text.lines().collect();
        let mut at = 0;
        for r in &reports {
            at += assert_block(&lines[at..], r);
        }
        assert_eq!(at, lines.len());
    }

    #[test]
    fn colour_marks_and_nothing_from_the_server_reaches_the_terminal() {
        let reports = one_submission();
        let events: Vec<Event> = reports.iter().flat_map(StageReport::events).collect();
        let text = render(&events, true);
        let passed = reports.iter().map(StageReport::passed_count).sum::<usize>();
        let failed = reports.iter().map(|r| r.outcomes.len()).sum::<usize>() - passed;
        assert_eq!(text.matches(&format!("{GREEN}✓{RESET}")).count(), passed);
        assert_eq!(text.matches(&format!("{RED}✗{RESET}")).count(), failed);
        // The server's own escape sequences were dropped: only ours remain.
        assert!(!text.contains("\u{1b}]0;"), "{text:?}");
        assert!(!text.contains("\u{1b}[31mred"), "{text:?}");
    }

    #[test]
    fn checks_that_could_not_be_graded_read_error_with_feedback_and_are_counted_in_the_footer() {
        let reports = vec![
            report("alice", Stage::Spawn, &[CheckId::Reply]),
            report_with_errors("alice", Stage::Pool, &[CheckId::Drain, CheckId::Cleanup]),
            ungradable("bob", Stage::Pool),
        ];
        let events: Vec<Event> = reports.iter().flat_map(StageReport::events).collect();
        let text = render(&events, false);
        let lines: Vec<&str> = text.lines().collect();
        let mut at = 0;
        for r in &reports {
            at += assert_block(&lines[at..], r);
        }
        assert_eq!(at, lines.len());
        // Spelt out, as the course reads them.
        assert!(lines.contains(&"alice spawn: 9/10 checks passed"), "{text}");
        assert!(
            lines.contains(&"alice pool: 9/11 checks passed, 2 could not be graded"),
            "{text}"
        );
        assert!(
            lines.contains(&"bob pool: 0/11 checks passed, 11 could not be graded"),
            "{text}"
        );
        assert!(lines.contains(&"  ERROR drain             0.12s"), "{text}");
        assert!(
            lines.contains(&format!("        {ERROR_HEADLINE}").as_str()),
            "{text}"
        );
    }

    #[test]
    fn colour_marks_a_check_that_could_not_be_graded_with_a_yellow_bang() {
        let reports = [report_with_errors(
            "alice",
            Stage::Pool,
            &[CheckId::Drain, CheckId::Cleanup],
        )];
        let events: Vec<Event> = reports.iter().flat_map(StageReport::events).collect();
        let text = render(&events, true);
        assert_eq!(text.matches(&format!("{YELLOW}!{RESET}")).count(), 2);
        assert_eq!(text.matches(&format!("{GREEN}✓{RESET}")).count(), 9);
        assert_eq!(text.matches(&format!("{RED}✗{RESET}")).count(), 0);
        // Its feedback is indented under its name, like a failure's.
        assert!(
            text.contains(&format!(
                "  drain could not be graded:\n        {ERROR_HEADLINE}\n"
            )),
            "{text:?}"
        );
        assert!(
            text.contains(&format!(
                "{YELLOW}alice pool: 9/11 checks passed, 2 could not be graded{RESET}"
            )),
            "{text:?}"
        );
    }

    #[test]
    fn interleaved_stages_are_printed_as_whole_blocks() {
        let reports = several_submissions();
        let streams: Vec<Vec<Event>> = reports.iter().map(|r| r.events().collect()).collect();
        // Round-robin the event streams, as a parallel batch would.
        let longest = streams.iter().map(Vec::len).max().unwrap_or(0);
        let mut events = Vec::new();
        for i in 0..longest {
            for s in &streams {
                if let Some(e) = s.get(i) {
                    events.push(e.clone());
                }
            }
        }
        let text = render(&events, false);
        let lines: Vec<&str> = text.lines().collect();
        // Every block is intact; the first stage to start comes first.
        let mut at = 0;
        let mut seen = Vec::new();
        while at < lines.len() {
            let r = reports
                .iter()
                .find(|r| lines[at].starts_with(&format!("{} · stage {}", r.submission, r.stage)))
                .unwrap_or_else(|| panic!("no block starts at {:?}", lines[at]));
            at += assert_block(&lines[at..], r);
            seen.push((r.submission.clone(), r.stage));
        }
        assert_eq!(seen.len(), reports.len());
        assert_eq!(seen[0], (reports[0].submission.clone(), reports[0].stage));
    }
}
