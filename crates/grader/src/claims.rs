//! Sharing a batch between several graders through a folder they all mount (Compose pairs,
//! Kubernetes pods): each check of each stage of each submission is a unit that one grader
//! claims, grades and files (Exercise 1's stage is one unit: its checks judge the same runs); a collector waits for every unit, puts each stage back
//! together, and turns a unit whose grader died or froze into a check that could not be
//! graded (0 of its weight), while the others go on. Units this small keep the graders
//! evenly busy: a failing check that waits out its deadline holds one grader, not a stage.
//!
//! # The folder
//!
//! | path | written by | means |
//! |---|---|---|
//! | `claims/<unit>` | a grader, created exclusively | this grader took the unit (its name inside) |
//! | `done/<unit>.json` | the grader, renamed into place | the unit's [`Filed`] outcome |
//! | `workers/<name>` | each grader, every second | its heartbeat (milliseconds since the epoch) |
//! | `workers/<name>.finished` | a grader with nothing left to claim | it will claim no more |
//! | `complete` | the collector, last | the results are written (the exit code inside) |
//!
//! Every participant computes the same units from the same submissions and rubric
//! ([`units`]): the submission folders in name order, each enabled stage, each check of the
//! stage in catalogue order (or the whole stage, for Exercise 1). A unit's file name is made of positions (`u0003-pool-05`),
//! never of a name a student chose.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::batch::{self, BatchOutcome};
use super::outcome::{CheckId, Outcome, Stage, StageReport};
use super::report::Reporter;
use super::rubric::Rubric;
use super::runner::{self, CheckRunner};

/// How long a grader's heartbeat may be silent before its claimed unit is given up.
pub const STALE_AFTER: Duration = Duration::from_secs(20);

/// One check of one stage of one submission, or every check of a stage whose checks judge
/// the same runs ([`Stage::observed_once`]): what a grader claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// Position of the submission in the batch.
    pub index: usize,
    /// The submission folder.
    pub dir: PathBuf,
    /// The stage.
    pub stage: Stage,
    /// The checks, in catalogue order.
    pub checks: Vec<CheckId>,
    /// Position of the first check in the stage's catalogue.
    pub position: usize,
}

impl Unit {
    /// The unit's file name: `u0003-pool-05`.
    pub fn key(&self) -> String {
        format!("u{:04}-{}-{:02}", self.index, self.stage, self.position)
    }
}

/// What a grader files for a unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Filed {
    /// The checks' outcomes, in the unit's order.
    pub outcomes: Vec<Outcome>,
    /// How its server was isolated.
    pub isolation: String,
    /// The command that ran the server.
    pub command: Vec<String>,
}

/// The units of a batch, in batch order: every check of every enabled stage of every
/// submission.
pub fn units(submissions: &[PathBuf], rubric: &Rubric) -> Vec<Unit> {
    let mut out = Vec::new();
    for (index, dir) in submissions.iter().enumerate() {
        for stage in rubric.enabled_stages() {
            if stage.observed_once() {
                out.push(Unit {
                    index,
                    dir: dir.clone(),
                    stage,
                    checks: stage.checks().to_vec(),
                    position: 0,
                });
                continue;
            }
            for (position, check) in stage.checks().iter().enumerate() {
                out.push(Unit {
                    index,
                    dir: dir.clone(),
                    stage,
                    checks: vec![*check],
                    position,
                });
            }
        }
    }
    out
}

/// The submission folders in `dir`, in name order (hidden entries and files left out).
pub fn folders_in(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)?
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    out.sort();
    Ok(out)
}

/// A worker's name as it may appear in a file name.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Writes `bytes` to `path` through a temporary file and a rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    fs::write(&tmp, bytes)?;
    fs::rename(&tmp, path)
}

/// The shared folder of a distributed batch (see the module documentation).
#[derive(Debug, Clone)]
pub struct WorkDir {
    root: PathBuf,
}

impl WorkDir {
    /// Opens the folder, creating its sub-folders.
    pub fn open(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        for sub in ["claims", "done", "workers"] {
            fs::create_dir_all(root.join(sub))?;
        }
        Ok(Self { root })
    }

    /// Takes `unit` for `worker` if no one has: `Ok(true)` when it is now ours. The claim
    /// appears whole, with the worker's name in it: it is a hard link to a file written
    /// first, and `link(2)` fails when the name exists.
    pub fn claim(&self, unit: &Unit, worker: &str) -> io::Result<bool> {
        let path = self.root.join("claims").join(unit.key());
        let tmp =
            self.root
                .join("claims")
                .join(format!(".{}.{}.tmp", unit.key(), sanitize(worker)));
        fs::write(&tmp, worker.as_bytes())?;
        let linked = fs::hard_link(&tmp, &path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Files a graded unit.
    pub fn finish(&self, unit: &Unit, filed: &Filed) -> io::Result<()> {
        let json = serde_json::to_vec(filed).map_err(io::Error::other)?;
        write_atomic(
            &self.root.join("done").join(format!("{}.json", unit.key())),
            &json,
        )
    }

    /// Records that `worker` is alive now.
    pub fn heartbeat(&self, worker: &str) -> io::Result<()> {
        write_atomic(
            &self.root.join("workers").join(worker),
            now_ms().to_string().as_bytes(),
        )
    }

    /// Records that `worker` will claim nothing more.
    pub fn finished(&self, worker: &str) -> io::Result<()> {
        fs::write(
            self.root.join("workers").join(format!("{worker}.finished")),
            b"",
        )
    }

    /// Records that the results are written, with the batch's exit code.
    pub fn complete(&self, code: u8) -> io::Result<()> {
        write_atomic(&self.root.join("complete"), code.to_string().as_bytes())
    }

    /// Whether the collector has written the results.
    pub fn is_complete(&self) -> bool {
        self.root.join("complete").is_file()
    }

    fn done(&self, unit: &Unit) -> Option<Filed> {
        let text = fs::read(self.root.join("done").join(format!("{}.json", unit.key()))).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Who claimed `unit`, and when (ms since the epoch).
    fn claimed_by(&self, unit: &Unit) -> Option<(String, u64)> {
        let path = self.root.join("claims").join(unit.key());
        let name = fs::read_to_string(&path).ok()?;
        let when = fs::metadata(&path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as u64);
        Some((name.trim().to_owned(), when))
    }

    /// Whether the grader `name`, holding a claim made at `claimed` (ms), still works on it:
    /// its heartbeat, read now, is fresh and it has not finished. A grader whose heartbeat
    /// file is not there (yet) counts as alive until the claim itself is stale.
    fn still_working(&self, name: &str, claimed: u64, now: u64) -> bool {
        let stale = STALE_AFTER.as_millis() as u64;
        let dir = self.root.join("workers");
        if dir.join(format!("{name}.finished")).exists() {
            return false;
        }
        match fs::read_to_string(dir.join(name))
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
        {
            Some(beat) => now.saturating_sub(beat) < stale,
            None => now.saturating_sub(claimed) < stale,
        }
    }

    /// Each worker's last heartbeat (ms since the epoch) and whether it finished.
    fn workers(&self) -> Vec<(String, u64, bool)> {
        let dir = self.root.join("workers");
        let Ok(entries) = fs::read_dir(&dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.ends_with(".finished") || name.contains(".tmp") {
                    return None;
                }
                let beat = fs::read_to_string(e.path()).ok()?.trim().parse().ok()?;
                let finished = dir.join(format!("{name}.finished")).exists();
                Some((name, beat, finished))
            })
            .collect()
    }
}

/// Beats for `worker` every second until dropped.
pub struct Heartbeat {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Heartbeat {
    /// Starts beating now.
    pub fn start(work: &WorkDir, worker: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (w, name, s) = (work.clone(), worker.to_owned(), Arc::clone(&stop));
        let _ = w.heartbeat(&name);
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let _ = w.heartbeat(&name);
                for _ in 0..10 {
                    if s.load(Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The grader's loop: claims units one after the other, grades each (its events go to
/// `reporter`, as a stage of one check), files it, and returns the outcomes it graded once
/// nothing is left.
pub fn work(
    units: &[Unit],
    work: &WorkDir,
    worker: &str,
    rubric: &Rubric,
    hidden: &[PathBuf],
    check_runner: &CheckRunner,
    reporter: &mut dyn Reporter,
) -> io::Result<Vec<StageReport>> {
    let _beat = Heartbeat::start(work, worker);
    let mut graded = Vec::new();
    for unit in units {
        if !work.claim(unit, worker)? {
            continue;
        }
        let report = match batch::missing_file_report(&unit.dir, unit.stage, rubric) {
            Some(mut report) => {
                report.outcomes.retain(|o| unit.checks.contains(&o.id));
                for event in report.events() {
                    let _ = reporter.on_event(&event);
                }
                report
            }
            None => {
                let mut plan = batch::plan_for(&unit.dir, unit.stage, rubric, hidden);
                plan.checks = unit.checks.clone();
                runner::run_stage(&plan, check_runner, &mut |e| {
                    let _ = reporter.on_event(e);
                })
            }
        };
        let outcomes = unit
            .checks
            .iter()
            .map(|id| {
                report
                    .outcomes
                    .iter()
                    .find(|o| o.id == *id)
                    .cloned()
                    .unwrap_or_else(|| Outcome::error(*id, "the check did not run", 0.0))
            })
            .collect();
        work.finish(
            unit,
            &Filed {
                outcomes,
                isolation: report.isolation.clone(),
                command: report.command.clone(),
            },
        )?;
        graded.push(report);
    }
    work.finished(worker)?;
    Ok(graded)
}

/// The collector's loop: waits until every unit is filed or given up, and returns the whole
/// batch, each stage put back together in catalogue order. A unit is given up when the
/// grader that claimed it has not beaten for [`STALE_AFTER`], when every grader has
/// finished or gone silent without claiming it, when no grader has shown up `grace` after
/// the start, or when `wait` runs out.
pub fn collect(
    units: &[Unit],
    work: &WorkDir,
    rubric: &Rubric,
    wait: Duration,
    grace: Duration,
) -> BatchOutcome {
    let began = Instant::now();
    let stale_ms = STALE_AFTER.as_millis() as u64;
    let mut filed: Vec<Option<Filed>> = vec![None; units.len()];
    loop {
        let workers = work.workers();
        let now = now_ms();
        let any_alive = workers
            .iter()
            .any(|(_, beat, finished)| !finished && now.saturating_sub(*beat) < stale_ms);
        let out_of_time = began.elapsed() >= wait;
        let nobody_came = workers.is_empty() && began.elapsed() >= grace;
        let mut pending = 0;
        for (unit, slot) in units.iter().zip(filed.iter_mut()) {
            if slot.is_some() {
                continue;
            }
            if let Some(done) = work.done(unit) {
                *slot = Some(done);
                continue;
            }
            let why = match work.claimed_by(unit) {
                Some((w, when)) if !work.still_working(&w, when, now_ms()) => Some(format!(
                    "its grader ({w}) stopped before it finished the check"
                )),
                None if !any_alive && !workers.is_empty() => {
                    Some("every grader ended without taking this check".to_owned())
                }
                _ if nobody_came => Some(format!("no grader started within {} s", grace.as_secs())),
                _ if out_of_time => Some(format!(
                    "the batch did not finish within {} s",
                    wait.as_secs()
                )),
                _ => None,
            };
            match why {
                // A grader that stopped may still have filed it in the meantime.
                Some(why) => {
                    *slot = Some(work.done(unit).unwrap_or_else(|| {
                        Filed {
                            outcomes: unit
                                .checks
                                .iter()
                                .map(|id| Outcome::error(*id, why.clone(), 0.0))
                                .collect(),
                            isolation: String::new(),
                            command: rubric.command(unit.stage).to_vec(),
                        }
                    }))
                }
                None => pending += 1,
            }
        }
        if pending == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let mut reports: Vec<StageReport> = Vec::new();
    for (unit, filed) in units.iter().zip(filed.into_iter().flatten()) {
        let fresh = reports
            .last()
            .is_none_or(|r| r.stage != unit.stage || unit.position == 0);
        if fresh {
            reports.push(StageReport {
                submission: batch::submission_name(&unit.dir),
                stage: unit.stage,
                command: filed.command.clone(),
                outcomes: Vec::new(),
                seconds: 0.0,
                isolation: String::new(),
            });
        }
        let report = reports.last_mut().expect("a stage was just started");
        report.seconds += filed.outcomes.iter().map(|o| o.seconds).sum::<f64>();
        if !filed.isolation.is_empty() && !report.isolation.contains(&filed.isolation) {
            if !report.isolation.is_empty() {
                report.isolation.push_str(" | ");
            }
            report.isolation.push_str(&filed.isolation);
        }
        report.outcomes.extend(filed.outcomes);
    }
    for report in &mut reports {
        crate::diagnosis::trace(&mut report.outcomes);
    }
    BatchOutcome { reports }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(n: usize) -> (tempfile::TempDir, Vec<PathBuf>) {
        let dir = tempfile::tempdir().unwrap();
        let subs = (0..n)
            .map(|i| {
                let d = dir.path().join(format!("s{i}"));
                fs::create_dir(&d).unwrap();
                d
            })
            .collect();
        (dir, subs)
    }

    fn passed(unit: &Unit) -> Filed {
        Filed {
            outcomes: unit.checks.iter().map(|id| outcome(*id)).collect(),
            isolation: "native: test".into(),
            command: vec!["python3".into()],
        }
    }

    fn outcome(id: CheckId) -> Outcome {
        Outcome {
            id,
            status: crate::outcome::Status::Passed,
            did: "d".into(),
            expected: "e".into(),
            observed: "o".into(),
            hint: None,
            seconds: 0.5,
            server_output: None,
            symptom: None,
            cause: None,
            timeline: None,
        }
    }

    #[test]
    fn every_unit_is_claimed_once_whoever_asks() {
        let (_d, subs) = batch(3);
        let rubric = Rubric::default();
        let units = units(&subs, &rubric);
        // A unit per check, but one for all of Exercise 1's checks (they judge the same runs).
        let per_submission: usize = Stage::ALL
            .iter()
            .map(|s| {
                if s.observed_once() {
                    1
                } else {
                    s.checks().len()
                }
            })
            .sum();
        assert_eq!(units.len(), 3 * per_submission);
        let keys: std::collections::BTreeSet<String> = units.iter().map(Unit::key).collect();
        assert_eq!(keys.len(), units.len(), "keys are distinct");
        let w = tempfile::tempdir().unwrap();
        let work = WorkDir::open(w.path()).unwrap();
        let winners: Vec<bool> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|i| {
                    let (work, unit) = (&work, &units[2]);
                    s.spawn(move || work.claim(unit, &format!("g{i}")).unwrap())
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(winners.iter().filter(|w| **w).count(), 1);
    }

    #[test]
    fn a_unit_whose_grader_went_silent_is_an_error_and_the_rest_is_kept() {
        let (_d, subs) = batch(1);
        let rubric = Rubric::default();
        let units = units(&subs, &rubric);
        let w = tempfile::tempdir().unwrap();
        let work = WorkDir::open(w.path()).unwrap();
        // g1 graded all but the pool stage's last check and finished; g2 claimed that one and
        // went silent.
        let at = units
            .iter()
            .rposition(|u| u.stage == Stage::Pool)
            .expect("a pool unit");
        let last = &units[at];
        for unit in units.iter().filter(|u| *u != last) {
            assert!(work.claim(unit, "g1").unwrap());
            work.finish(unit, &passed(unit)).unwrap();
        }
        work.heartbeat("g1").unwrap();
        work.finished("g1").unwrap();
        assert!(work.claim(last, "g2").unwrap());
        let old = now_ms() - STALE_AFTER.as_millis() as u64 - 1000;
        fs::write(w.path().join("workers/g2"), old.to_string()).unwrap();
        let outcome = collect(
            &units,
            &work,
            &rubric,
            Duration::from_secs(30),
            Duration::from_secs(30),
        );
        assert_eq!(
            outcome.reports.len(),
            Stage::ALL.len(),
            "every stage, put back together"
        );
        let spawn = &outcome.reports[0];
        assert_eq!(spawn.stage, Stage::Spawn);
        assert!(spawn.all_passed());
        assert_eq!(spawn.outcomes.len(), Stage::Spawn.checks().len());
        assert_eq!(spawn.isolation, "native: test");
        let pool = &outcome.reports[1];
        let ids: Vec<CheckId> = pool.outcomes.iter().map(|o| o.id).collect();
        assert_eq!(ids, Stage::Pool.checks(), "catalogue order");
        let lost = pool.outcomes.last().unwrap();
        assert!(lost.is_error());
        assert!(lost.observed.contains("g2"), "{}", lost.observed);
        assert_eq!(pool.outcomes.iter().filter(|o| o.is_error()).count(), 1);
        // Exercise 1's unit filed all its checks at once, and they come back in order.
        let primes = &outcome.reports[2];
        let ids: Vec<CheckId> = primes.outcomes.iter().map(|o| o.id).collect();
        assert_eq!(ids, Stage::Primes.checks());
        assert!(primes.all_passed());
        assert_eq!(outcome.exit_code(), 2);
    }

    #[test]
    fn with_no_grader_at_all_the_collector_gives_up_after_the_grace() {
        let (_d, subs) = batch(1);
        let rubric = Rubric::default();
        let units = units(&subs, &rubric);
        let w = tempfile::tempdir().unwrap();
        let work = WorkDir::open(w.path()).unwrap();
        let began = Instant::now();
        let outcome = collect(
            &units,
            &work,
            &rubric,
            Duration::from_secs(60),
            Duration::from_millis(300),
        );
        assert!(began.elapsed() < Duration::from_secs(10));
        assert_eq!(outcome.reports.len(), Stage::ALL.len());
        assert!(outcome
            .reports
            .iter()
            .all(|r| r.outcomes.iter().all(Outcome::is_error)));
    }
}
