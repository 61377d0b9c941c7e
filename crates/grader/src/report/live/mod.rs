//! Live reporters: the consumers of the runner's [`Event`]s as grading goes. The
//! [`Reporter`] trait, [`Tee`] (several reporters at once), [`Collector`] (keeps the finished
//! [`StageReport`]s for the writers), the human reporter, the JSON Lines stream and the
//! progress line of a batch.
//!
//! A finished report reaches a live reporter again through [`StageReport::events`], as the
//! events the runner would have emitted for it.

mod human;
mod json;
mod progress;

use std::io;

pub use human::HumanReporter;
pub use json::JsonLinesReporter;
pub use progress::ProgressReporter;

use crate::outcome::{Event, StageReport};

/// A consumer of the runner's events.
///
/// The runner calls [`Reporter::on_event`] for every event in order, then
/// [`Reporter::finish`] once at the end. An error stops that reporter only: the runner decides
/// whether to go on.
pub trait Reporter {
    /// Takes one event.
    fn on_event(&mut self, event: &Event) -> io::Result<()>;

    /// Ends the run: prints what is left and flushes.
    fn finish(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<R: Reporter + ?Sized> Reporter for &mut R {
    fn on_event(&mut self, event: &Event) -> io::Result<()> {
        (**self).on_event(event)
    }
    fn finish(&mut self) -> io::Result<()> {
        (**self).finish()
    }
}

impl<R: Reporter + ?Sized> Reporter for Box<R> {
    fn on_event(&mut self, event: &Event) -> io::Result<()> {
        (**self).on_event(event)
    }
    fn finish(&mut self) -> io::Result<()> {
        (**self).finish()
    }
}

/// Sends every event to several reporters, in order. Each reporter gets every event even when
/// an earlier one fails; the first error is returned.
#[derive(Default)]
pub struct Tee {
    reporters: Vec<Box<dyn Reporter + Send>>,
}

impl Tee {
    /// A tee with no reporter yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a reporter.
    pub fn push(&mut self, reporter: Box<dyn Reporter + Send>) {
        self.reporters.push(reporter);
    }

    /// Adds a reporter, builder style.
    pub fn with(mut self, reporter: Box<dyn Reporter + Send>) -> Self {
        self.push(reporter);
        self
    }

    fn each(&mut self, mut f: impl FnMut(&mut dyn Reporter) -> io::Result<()>) -> io::Result<()> {
        let mut first = Ok(());
        for r in &mut self.reporters {
            let result = f(r.as_mut());
            if first.is_ok() {
                first = result;
            }
        }
        first
    }
}

impl Reporter for Tee {
    fn on_event(&mut self, event: &Event) -> io::Result<()> {
        self.each(|r| r.on_event(event))
    }
    fn finish(&mut self) -> io::Result<()> {
        self.each(|r| r.finish())
    }
}

/// Keeps the [`StageReport`] of every `StageFinished` event, for the file writers.
#[derive(Debug, Default, Clone)]
pub struct Collector {
    reports: Vec<StageReport>,
}

impl Collector {
    /// An empty collector.
    pub fn new() -> Self {
        Self::default()
    }

    /// The stage reports so far, in the order their stages finished.
    pub fn reports(&self) -> &[StageReport] {
        &self.reports
    }

    /// The stage reports, in the order their stages finished.
    pub fn into_reports(self) -> Vec<StageReport> {
        self.reports
    }
}

impl Reporter for Collector {
    fn on_event(&mut self, event: &Event) -> io::Result<()> {
        if let Event::StageFinished { report } = event {
            self.reports.push(report.clone());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{CheckId, Stage};
    use crate::report::fixtures::*;

    #[test]
    fn collector_keeps_finished_stage_reports_in_order() {
        let reports = several_submissions();
        let mut collector = Collector::new();
        for event in reports.iter().flat_map(StageReport::events) {
            collector.on_event(&event).expect("collect");
        }
        assert_eq!(collector.into_reports(), reports);
    }

    #[test]
    fn tee_gives_every_event_to_every_reporter() {
        struct Failing;
        impl Reporter for Failing {
            fn on_event(&mut self, _: &Event) -> io::Result<()> {
                Err(io::Error::other("broken pipe"))
            }
        }
        let shared = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Event>::new()));
        struct Shared(std::sync::Arc<std::sync::Mutex<Vec<Event>>>);
        impl Reporter for Shared {
            fn on_event(&mut self, e: &Event) -> io::Result<()> {
                self.0
                    .lock()
                    .map_err(|_| io::Error::other("poisoned"))?
                    .push(e.clone());
                Ok(())
            }
        }
        let mut tee = Tee::new()
            .with(Box::new(Failing))
            .with(Box::new(Shared(shared.clone())));
        let report = report("alice", Stage::Spawn, &[]);
        let event = Event::StageFinished { report };
        let err = tee.on_event(&event).expect_err("the first reporter fails");
        assert_eq!(err.to_string(), "broken pipe");
        tee.finish().expect("finish");
        assert_eq!(*shared.lock().expect("lock"), vec![event]);
    }

    #[test]
    fn a_finished_report_replays_as_the_events_the_runner_emits() {
        let r = report_with_errors("alice", Stage::Pool, &[CheckId::Drain]);
        let events: Vec<Event> = r.events().collect();
        assert_eq!(events.len(), r.outcomes.len() + 2);
        assert_eq!(
            events[0],
            Event::StageStarted {
                submission: r.submission.clone(),
                stage: r.stage,
                checks: r.outcomes.iter().map(|o| o.id).collect(),
            }
        );
        for (event, outcome) in events[1..=r.outcomes.len()].iter().zip(&r.outcomes) {
            assert_eq!(
                event,
                &Event::CheckFinished {
                    submission: r.submission.clone(),
                    stage: r.stage,
                    outcome: outcome.clone(),
                }
            );
        }
        assert_eq!(
            events.last(),
            Some(&Event::StageFinished { report: r.clone() })
        );
        // The check ids are the outcomes', not the stage's catalogue.
        let mut one = r.clone();
        one.outcomes.retain(|o| o.id == CheckId::Drain);
        assert!(matches!(
            one.events().next(),
            Some(Event::StageStarted { checks, .. }) if checks == vec![CheckId::Drain]
        ));
    }
}
