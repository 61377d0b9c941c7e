//! The progress reporter of a batch: how many stages are done and how many had failures, as
//! a redrawn line on a terminal or a plain line per finished stage otherwise, on stderr.

use std::io::{IsTerminal, Write};
use std::time::Instant;

use super::Reporter;
use crate::outcome::Event;

/// Shows how far a batch is: a redrawn line on a terminal, plain lines otherwise.
pub struct ProgressReporter {
    total: usize,
    done: usize,
    failed: usize,
    began: Instant,
    terminal: bool,
}

impl ProgressReporter {
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

impl Reporter for ProgressReporter {
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
