//! The JSON Lines reporter (`--format json`): each event as one JSON object on its own line,
//! flushed at once so a consumer sees grading as it goes.

use std::io::{self, Write};

use super::Reporter;
use crate::outcome::Event;

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
    use super::*;
    use crate::outcome::{CheckId, Stage, StageReport};
    use crate::report::fixtures::*;

    #[test]
    fn one_event_per_line_that_parses_back_to_the_same_event() {
        let report = report("alice", Stage::Spawn, &[CheckId::Routing]);
        let events: Vec<Event> = report.events().collect();

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

    #[test]
    fn checks_of_an_ungradable_stage_stream_with_status_error_beside_a_graded_stage() {
        let reports = graded_beside_ungradable();
        let mut reporter = JsonLinesReporter::new(Vec::new());
        for event in reports.iter().flat_map(StageReport::events) {
            reporter.on_event(&event).expect("write");
        }
        let text = String::from_utf8(reporter.into_inner()).expect("utf-8");
        let values: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON object"))
            .collect();
        let statuses = |stage: &str| -> Vec<String> {
            values
                .iter()
                .filter(|v| v["event"] == "check-finished" && v["stage"] == stage)
                .map(|v| v["outcome"]["status"].as_str().unwrap_or("?").to_owned())
                .collect()
        };
        assert_eq!(statuses("pool"), vec!["error"; Stage::Pool.checks().len()]);
        let spawn = statuses("spawn");
        assert_eq!(spawn.iter().filter(|s| *s == "passed").count(), 9);
        assert_eq!(spawn.iter().filter(|s| *s == "failed").count(), 1);
        // The finished stages come back whole, errors and isolation included.
        let finished: Vec<StageReport> = values
            .iter()
            .filter(|v| v["event"] == "stage-finished")
            .map(|v| serde_json::from_value(v["report"].clone()).expect("a report"))
            .collect();
        assert_eq!(finished, reports);
        assert!(finished[1].outcomes.iter().all(|o| o.is_error()));
    }
}
