//! The JSON Lines reporter (`--format json`): each event as one JSON object on its own line,
//! flushed at once so a consumer sees grading as it goes.

use std::io::{self, Write};

use super::Reporter;
use crate::grader::outcome::Event;

/// Writes every event as one line of JSON: the [`Event`]'s serde form, tagged by `"event"`
/// (`stage-started`, `check-finished`, `stage-finished`). Text is kept exactly as the
/// runner gave it; JSON escapes control characters.
pub struct JsonLinesReporter<W: Write> {
    out: W,
}

impl<W: Write> JsonLinesReporter<W> {
    /// A reporter writing to `out` (for instance `io::stdout()`).
    pub fn new(out: W) -> Self {
        Self { out }
    }

    /// The writer back.
    pub fn into_inner(self) -> W {
        self.out
    }
}

impl<W: Write> Reporter for JsonLinesReporter<W> {
    fn on_event(&mut self, event: &Event) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, event)?;
        self.out.write_all(b"\n")?;
        self.out.flush()
    }

    fn finish(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;
    use crate::grader::outcome::{CheckId, Stage};

    #[test]
    fn one_event_per_line_that_parses_back_to_the_same_event() {
        let report = report("alice", Stage::Spawn, &[CheckId::Routing]);
        let mut events = vec![Event::StageStarted {
            submission: report.submission.clone(),
            stage: report.stage,
            checks: report.stage.checks().to_vec(),
        }];
        events.extend(report.outcomes.iter().map(|o| Event::CheckFinished {
            submission: report.submission.clone(),
            stage: report.stage,
            outcome: o.clone(),
        }));
        events.push(Event::StageFinished {
            report: report.clone(),
        });

        let mut reporter = JsonLinesReporter::new(Vec::new());
        for e in &events {
            reporter.on_event(e).expect("write");
        }
        reporter.finish().expect("finish");
        let text = String::from_utf8(reporter.into_inner()).expect("utf-8");

        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), events.len());
        assert!(text.ends_with('\n'));
        for (line, event) in lines.iter().zip(&events) {
            let value: serde_json::Value = serde_json::from_str(line).expect("a JSON object");
            assert!(value.is_object());
            let back: Event = serde_json::from_value(value.clone()).expect("an event");
            // The nasty server output, NUL and escape included, survives exactly.
            assert_eq!(&back, event);
            let tag = match event {
                Event::StageStarted { .. } => "stage-started",
                Event::CheckFinished { .. } => "check-finished",
                Event::StageFinished { .. } => "stage-finished",
            };
            assert_eq!(value["event"], tag);
        }
        assert!(text.contains("\\u0000") && text.contains("\\u001b"));
    }
}
