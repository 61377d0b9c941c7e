//! The check catalogue: one file per check, each a function that starts a fresh server
//! through a [`Launcher`], probes it over the queue and through `/proc`, stops it, and
//! returns an [`Outcome`] that says what it did, what it expected, what it observed, and a
//! hint. This module owns the dispatch by [`CheckId`] ([`run_check`]) and what every check
//! shares to start and stop its server and to build its outcome; `support.rs` holds what
//! they share to make sense of what they saw, and `client.rs` the real client process.
//!
//! Timing rules hold on a loaded machine: load only delays replies, so a check never
//! passes because a reply came *early*, and every "fast enough" bound keeps a wide margin
//! (at least one work delay plus a second and a half).
//!
//! Every check reads the same [`CheckParams`] (the rubric's `[params]`) and finds its
//! server's queue under the key it is given: [`protocol::DEFAULT_KEY`] when grading.

use std::cell::RefCell;
use std::path::Path;
use std::time::{Duration, Instant};

use super::outcome::{CheckId, Outcome, Stage, Status};
use super::params::CheckParams;
use super::probe::{self, Pids};
use super::sut::IsolationError;
use super::sut::ServerParams;
use super::sut::{Exit, LaunchError, LaunchSpec, Launcher, Sut};
use super::symptom::Symptom;
use super::timeline::{Observed, Timeline, Wave};
use sysv_mq::protocol;
use sysv_mq::{self as mq, MessageQueue, Wait};

/// Evaluates to the value of an `Ok`, or returns the `Err`'s outcome from the check: for the
/// steps (starting the server, sending a burst) whose failure already decides the verdict.
macro_rules! or_return {
    ($step:expr) => {
        match $step {
            Ok(value) => value,
            Err(outcome) => return *outcome,
        }
    };
}

mod client;
mod support;

mod cleanup;
mod concurrency;
mod drain;
mod no_theft;
mod pool_bounded;
mod pool_reuse;
mod primes;
mod reply;
mod robustness;
mod routing;
mod spawn;
mod starts;
mod termination;

#[cfg(test)]
mod test_server;
#[cfg(test)]
mod tests;

pub use client::{client_main, ClientReport, CLIENT_SUBCOMMAND};

/// Runs check `id` against a fresh server described by `base`, whose queue has key `key`,
/// and stops it. A check whose sandbox could not be set up comes back as
/// [`Status::Error`]: nothing about the submission was learnt. `client_exe` is the program
/// run as a real client process (`poolgrade __client`), or `None` for an in-process client.
pub fn run_check(
    id: CheckId,
    launcher: &dyn Launcher,
    base: &LaunchSpec,
    p: &CheckParams,
    key: i32,
    client_exe: Option<&Path>,
) -> Outcome {
    let outcome = match id {
        CheckId::Starts => starts::starts(launcher, base, p, key),
        CheckId::Reply => reply::reply(launcher, base, p, key, client_exe),
        CheckId::Routing => routing::routing(launcher, base, p, key),
        CheckId::NoTheft => no_theft::no_theft(launcher, base, p, key),
        CheckId::Concurrency => concurrency::concurrency(launcher, base, p, key),
        CheckId::Spawn => spawn::spawn(launcher, base, p, key),
        CheckId::PoolBounded => pool_bounded::pool_bounded(launcher, base, p, key),
        CheckId::PoolReuse => pool_reuse::pool_reuse(launcher, base, p, key),
        CheckId::Robustness => robustness::robustness(launcher, base, p, key),
        CheckId::Termination => termination::termination(launcher, base, p, key),
        CheckId::Drain => drain::drain(launcher, base, p, key),
        CheckId::Cleanup => cleanup::cleanup(launcher, base, p, key),
        CheckId::PrimesRuns
        | CheckId::PrimesPool
        | CheckId::PrimesSync
        | CheckId::PrimesAsync
        | CheckId::PrimesCorrect
        | CheckId::PrimesTiming
        | CheckId::PrimesSpeedup => {
            // Exercise 1's checks judge the same runs: they run together, in `run_checks`.
            return run_checks(&[id], launcher, base, p, key, client_exe)
                .pop()
                .unwrap_or_else(|| Outcome::error(id, "the check did not run", 0.0));
        }
    };
    launcher.sweep_queues();
    outcome
}

/// Runs checks `ids` (one check, or every check of a stage whose checks judge the same runs,
/// [`crate::outcome::Stage::observed_once`]) and returns their outcomes in the order of `ids`.
pub fn run_checks(
    ids: &[CheckId],
    launcher: &dyn Launcher,
    base: &LaunchSpec,
    p: &CheckParams,
    key: i32,
    client_exe: Option<&Path>,
) -> Vec<Outcome> {
    if !ids.is_empty() && ids.iter().all(|id| Stage::Primes.checks().contains(id)) {
        let all = primes::grade(launcher, base, p);
        launcher.sweep_queues();
        return ids
            .iter()
            .map(|id| {
                all.iter()
                    .find(|o| o.id == *id)
                    .cloned()
                    .unwrap_or_else(|| Outcome::error(*id, "the check did not run", 0.0))
            })
            .collect();
    }
    ids.iter()
        .map(|id| run_check(*id, launcher, base, p, key, client_exe))
        .collect()
}

/// Builds outcomes with the check's id and timing filled in, and the timeline of its bursts
/// (see [`OutcomeBuilder::record`]).
struct OutcomeBuilder {
    id: CheckId,
    began: Instant,
    did: String,
    timeline: RefCell<Option<Timeline>>,
    watcher: RefCell<Option<probe::QueueWatcher>>,
}

impl OutcomeBuilder {
    fn new(id: CheckId, did: impl Into<String>) -> Self {
        Self {
            id,
            began: Instant::now(),
            did: did.into(),
            timeline: RefCell::new(None),
            watcher: RefCell::new(None),
        }
    }

    /// Records the last burst ([`OutcomeBuilder::burst`]) on the check's timeline: when
    /// each request was sent, taken and answered (`got`, in the order of `pending`), the
    /// replies of its type left over in `stray`, the server's thread counts if `threads`
    /// were sampled, and the `waves` the check expects. Every outcome built afterwards
    /// carries the timeline; a second burst joins the first.
    fn record(
        &self,
        pending: &[probe::Pending],
        got: &[probe::Got],
        stray: &[mq::Message],
        threads: Option<&crate::procfs::ThreadSamples>,
        waves: Vec<Wave>,
    ) {
        let end = Instant::now();
        let (taken, watched) = match self.watcher.borrow_mut().take() {
            Some(w) => w.stop(),
            None => (Default::default(), false),
        };
        let observed: Vec<Observed> = pending
            .iter()
            .zip(got)
            .map(|(p, g)| {
                let reply = g.reply().map(|(_, latency)| p.sent_at() + latency);
                Observed {
                    pid: p.pid,
                    sent: p.sent_at(),
                    // Seen gone by then; a request answered earlier was taken before that.
                    taken: taken.get(&p.pid).map(|&t| reply.map_or(t, |r| t.min(r))),
                    reply,
                    extra: stray
                        .iter()
                        .filter(|m| Some(m.mtype) == protocol::reply_type(p.pid))
                        .count(),
                }
            })
            .collect();
        let series = threads.map(|t| t.series.as_slice()).unwrap_or_default();
        let burst = Timeline::build(self.began, &observed, series, waves, end, watched);
        let mut slot = self.timeline.borrow_mut();
        match slot.as_mut() {
            Some(t) => t.extend(burst),
            None => *slot = Some(burst),
        }
    }

    fn pass(&self, expected: impl Into<String>, observed: impl Into<String>) -> Outcome {
        Outcome {
            id: self.id,
            status: Status::Passed,
            did: self.did.clone(),
            expected: expected.into(),
            observed: observed.into(),
            hint: None,
            seconds: self.began.elapsed().as_secs_f64(),
            server_output: None,
            symptom: None,
            cause: None,
            timeline: self.timeline.borrow().clone(),
        }
    }

    fn fail(
        &self,
        expected: impl Into<String>,
        observed: impl Into<String>,
        hint: impl Into<String>,
        server: Option<&dyn Sut>,
    ) -> Outcome {
        Outcome {
            id: self.id,
            status: Status::Failed,
            did: self.did.clone(),
            expected: expected.into(),
            observed: observed.into(),
            hint: Some(hint.into()),
            seconds: self.began.elapsed().as_secs_f64(),
            server_output: server
                .map(|s| s.output_tail())
                .filter(|t| !t.trim().is_empty()),
            symptom: None,
            cause: None,
            timeline: self.timeline.borrow().clone(),
        }
    }

    /// A failure diagnosed as `symptom`: the symptom's advice is the hint.
    fn diagnosed(
        &self,
        symptom: Symptom,
        expected: impl Into<String>,
        observed: impl Into<String>,
        server: Option<&dyn Sut>,
    ) -> Outcome {
        let mut o = self.fail(expected, observed, symptom.advice(), server);
        o.symptom = Some(symptom);
        o
    }

    /// A failure with its own hint, more precise than the symptom's advice, diagnosed as
    /// `symptom` when there is one (the stage's [`crate::diagnosis::trace`] may still point
    /// it at another check's defect).
    fn fail_as(
        &self,
        symptom: Option<Symptom>,
        expected: impl Into<String>,
        observed: impl Into<String>,
        hint: impl Into<String>,
        server: Option<&dyn Sut>,
    ) -> Outcome {
        let mut o = self.fail(expected, observed, hint, server);
        o.symptom = symptom;
        o
    }
}

impl OutcomeBuilder {
    /// Starts a fresh server with this work delay; if it never comes up, the failed outcome.
    fn start(
        &self,
        expected: &str,
        launcher: &dyn Launcher,
        base: &LaunchSpec,
        p: &CheckParams,
        key: i32,
        delay: Duration,
    ) -> Result<StartedServer, Box<Outcome>> {
        start(launcher, base, p, key, delay)
            .map(|(running, _)| running)
            .map_err(|ns| Box::new(not_started(self, expected, ns)))
    }

    /// Sends a burst of `n` requests from fresh pids; if the queue refuses them, the failed
    /// outcome.
    fn burst(
        &self,
        expected: &str,
        running: &StartedServer,
        pids: &mut Pids,
        n: usize,
    ) -> Result<Vec<probe::Pending>, Box<Outcome>> {
        let (pending, watcher) = probe::burst_watched(running.queue, pids, n).map_err(|e| {
            Box::new(self.fail(
                expected,
                format!("sending failed: {e}"),
                "keep the queue open while serving",
                Some(running.sut.as_ref()),
            ))
        })?;
        *self.watcher.borrow_mut() = Some(watcher);
        Ok(pending)
    }

    /// Sends a burst of `n` requests ([`OutcomeBuilder::burst`]) and waits for every reply
    /// until `budget` after the requests are out: readying the clients can take long on a
    /// starved machine, and that time is not the server's. The outcome to return instead if
    /// the queue refused the requests or a client met a fault of the grader's own.
    fn burst_collect(
        &self,
        expected: &str,
        running: &StartedServer,
        pids: &mut Pids,
        n: usize,
        budget: Duration,
    ) -> Result<(Vec<probe::Pending>, Vec<probe::Got>), Box<Outcome>> {
        let mut pending = self.burst(expected, running, pids, n)?;
        let got = probe::collect(&mut pending, Instant::now() + budget);
        match support::faulted(self, &got) {
            Some(o) => Err(Box::new(o)),
            None => Ok((pending, got)),
        }
    }

    /// One request, answered, before anything is measured: a server that builds its pool at
    /// the first request (`multiprocessing.pool.ThreadPool` created lazily, with its helper
    /// threads) then has it, so the pool counts as idle, not as growth. If the request gets
    /// no reply within `patience`, the failed outcome.
    fn warm_up(
        &self,
        expected: &str,
        running: &mut StartedServer,
        pids: &mut Pids,
        patience: Duration,
    ) -> Result<(), Box<Outcome>> {
        let got = match probe::request(running.queue, pids.take()) {
            Ok(mut pending) => pending.wait_until(Instant::now() + patience),
            Err(e) => probe::Got::from_error(&e),
        };
        if let Some(o) = support::faulted(self, std::slice::from_ref(&got)) {
            return Err(Box::new(o));
        }
        match got {
            probe::Got::Reply { .. } => Ok(()),
            other => Err(Box::new(self.fail_as(
                support::missing(std::slice::from_ref(&other), running.sut.poll_exit()),
                expected,
                format!(
                    "the first request (a warm-up, before counting threads) got no reply within {:.1} s ({other:?})",
                    patience.as_secs_f64()
                ),
                "every request must be answered",
                Some(running.sut.as_ref()),
            ))),
        }
    }
}

/// A started server with its queue.
struct StartedServer {
    sut: Box<dyn Sut>,
    queue: MessageQueue,
}

impl Drop for StartedServer {
    fn drop(&mut self) {
        self.sut.kill_all();
    }
}

/// Why a server did not come up, as an observation and a hint; or the sandbox failed,
/// which says nothing about the server.
struct NotStarted {
    observed: String,
    hint: String,
    sut: Option<Box<dyn Sut>>,
    isolation: Option<IsolationError>,
}

/// `base` with the server told this work delay and the pool size: what the server's
/// environment says ([`super::sandbox::env::server_env`] writes it from the spec).
fn spec_with(base: &LaunchSpec, delay: Duration, workers: u32) -> LaunchSpec {
    let mut spec = base.clone();
    spec.server = ServerParams { delay, workers };
    spec
}

/// Starts a server and waits for its queue. A server that exits first, or never creates the
/// key, is reported with what the namespace shows instead.
fn start(
    launcher: &dyn Launcher,
    base: &LaunchSpec,
    p: &CheckParams,
    key: i32,
    delay: Duration,
) -> Result<(StartedServer, Duration), NotStarted> {
    let spec = spec_with(base, delay, p.workers);
    let mut sut = launcher.launch(&spec).map_err(|e| NotStarted {
        observed: format!("the server could not be started: {e}"),
        hint: "check the file name and the command in the submission contract".into(),
        sut: None,
        isolation: match e {
            LaunchError::Isolation(why) => Some(why),
            _ => None,
        },
    })?;
    // The server's time starts once it exists: the sandbox's own work (copying the
    // submission, leasing a uid, an agent's round trip) is not the server's to pay for.
    let began = Instant::now();
    let deadline = began + p.start_timeout;
    loop {
        if let Ok(queue) = MessageQueue::open(key) {
            return Ok((StartedServer { sut, queue }, began.elapsed()));
        }
        if let Some(exit) = sut.poll_exit() {
            // It may have created the queue just before exiting.
            if let Ok(queue) = MessageQueue::open(key) {
                return Ok((StartedServer { sut, queue }, began.elapsed()));
            }
            return Err(NotStarted {
                observed: format!("the server ended ({exit}) without creating queue {}", key),
                hint: "run the server by hand and read its error (see the server output below)"
                    .into(),
                sut: Some(sut),
                isolation: None,
            });
        }
        if Instant::now() >= deadline {
            let others: Vec<String> = mq::list_queues()
                .unwrap_or_default()
                .into_iter()
                .filter(|q| q.key != key)
                .map(|q| format!("{} (0x{:x})", q.key, q.key))
                .collect();
            let (observed, hint) = if others.is_empty() {
                (
                    format!(
                        "no queue with key {} after {:.1} s, and no other queue either",
                        key,
                        p.start_timeout.as_secs_f64()
                    ),
                    format!(
                        "create the queue first thing: sysv_ipc.MessageQueue({}, sysv_ipc.IPC_CREAT)",
                        key
                    ),
                )
            } else {
                (
                    format!(
                        "no queue with key {} after {:.1} s, but a queue with key {} appeared",
                        key,
                        p.start_timeout.as_secs_f64(),
                        others.join(", ")
                    ),
                    format!("the key must be {} (as in the handout's client)", key),
                )
            };
            return Err(NotStarted {
                observed,
                hint,
                sut: Some(sut),
                isolation: None,
            });
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The outcome of a check whose server never came up (an error if the sandbox failed).
fn not_started(r: &OutcomeBuilder, expected: &str, ns: NotStarted) -> Outcome {
    if let Some(why) = ns.isolation {
        return Outcome::error(r.id, why.to_string(), r.began.elapsed().as_secs_f64());
    }
    let mut o = r.fail(
        expected,
        format!("{} (see the `starts` check)", ns.observed),
        ns.hint,
        ns.sut.as_deref(),
    );
    if let Some(mut sut) = ns.sut {
        sut.kill_all();
        o.server_output = Some(sut.output_tail()).filter(|t| !t.trim().is_empty());
    }
    o
}

/// Sends the stop message (type 2) and waits up to the stop timeout for the server to exit:
/// how it ended, or `None` if it is still running.
fn stop_and_wait(
    running: &mut StartedServer,
    p: &CheckParams,
) -> Result<Option<Exit>, mq::MqError> {
    running.queue.send(protocol::STOP_TYPE, b"", Wait::NoWait)?;
    Ok(running.sut.wait_exit(p.stop_timeout))
}
