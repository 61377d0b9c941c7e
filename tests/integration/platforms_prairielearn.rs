//! PrairieLearn: the external-grader image `poolgrade-pl:latest` run the way PrairieLearn's
//! grader host runs a job (apps/grader-host/src/index.ts): `/grade` bind-mounted with the
//! student's files in `/grade/student` and no `/grade/results`, the question's entrypoint as
//! the container's entrypoint, a TTY, no network, a private IPC namespace, Docker's default
//! capabilities, PrairieLearn's default limits (2 GiB, 0.9 CPU, 1024 pids, no core dumps).
//! Each test reads `/grade/results/results.json` as PrairieLearn would: only after a 0 exit.
//!
//! Needs a Docker engine and the image (`scripts/build-images.sh`). When either is missing
//! the tests print `SKIPPED: ...` and return; with `REQUIRE_DOCKER=1` (as `.ci/run` sets) they
//! fail instead. `POOLGRADE_PL_IMAGE` names another image. Every container is removed (by
//! name, `docker rm -f`) when its guard drops, on failure too.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use serial_test::serial;

use crate::common::{fixtures, ChildGuard};

/// The question's `entrypoint` (deploy/prairielearn/question/info.json).
const ENTRYPOINT: &str = "/usr/local/bin/poolgrade-prairielearn";
/// Longest a job may take here: the timeout the example question sets.
const JOB_TIMEOUT: Duration = Duration::from_secs(300);

/// The image: `POOLGRADE_PL_IMAGE` or `poolgrade-pl:latest`.
fn pl_image() -> String {
    std::env::var("POOLGRADE_PL_IMAGE").unwrap_or_else(|_| "poolgrade-pl:latest".into())
}

/// Whether the Docker engine answers and the PrairieLearn image exists (see
/// [`crate::common::images_available`]).
fn docker_available(test: &str) -> bool {
    crate::common::images_available(test, &[pl_image()])
}

/// Removes the named container (running or not) when dropped.
struct ContainerGuard(String);

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "--force", "--volumes", &self.0])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A grading job's `/grade`: mode 0755 and world-readable files, the most open a platform
/// could hand over, so that the entry point must close it itself.
struct Job {
    dir: tempfile::TempDir,
}

impl Job {
    /// `/grade/student` holding `files` (name, content).
    fn with_files(files: &[(&str, &[u8])]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let student = dir.path().join("student");
        std::fs::create_dir(&student).unwrap();
        for (name, content) in files {
            std::fs::write(student.join(name), content).unwrap();
            open_up(&student.join(name), 0o644);
        }
        open_up(&student, 0o755);
        open_up(dir.path(), 0o755);
        Self { dir }
    }

    /// `/grade/student` holding a copy of the files of `src` (a sample or a fixture, without
    /// its `expected.toml`).
    fn with_copy_of(src: &Path) -> Self {
        let mut files = Vec::new();
        for e in std::fs::read_dir(src).expect("source folder").flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name != "expected.toml" && e.path().is_file() {
                files.push((name, std::fs::read(e.path()).unwrap()));
            }
        }
        let refs: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(n, c)| (n.as_str(), c.as_slice()))
            .collect();
        Self::with_files(&refs)
    }

    /// Puts `rubric` where the example question copies the course's rubric:
    /// `/grade/serverFilesCourse/poolgrade/rubric.toml`, world-readable.
    fn with_course_rubric(self, rubric: &str) -> Self {
        let course = self.dir.path().join("serverFilesCourse");
        let folder = course.join("poolgrade");
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("rubric.toml"), rubric).unwrap();
        open_up(&folder.join("rubric.toml"), 0o644);
        open_up(&folder, 0o755);
        open_up(&course, 0o755);
        self
    }

    fn grade_dir(&self) -> &Path {
        self.dir.path()
    }

    fn results_path(&self) -> PathBuf {
        self.dir.path().join("results/results.json")
    }
}

fn open_up(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A submission's files: (name, content).
type Files<'a> = Vec<(&'a str, &'a [u8])>;

/// What a job left: the container's exit code, its output, and `results.json` parsed.
struct Graded {
    exit: Option<i32>,
    log: String,
    results: Value,
    seconds: f64,
}

/// Runs the job as PrairieLearn's grader host does, waits for it (at most [`JOB_TIMEOUT`]),
/// and reads the results PrairieLearn would read.
fn run_job(job: &Job, test: &str) -> Graded {
    assert!(
        !job.grade_dir().join("results").exists(),
        "PrairieLearn does not create /grade/results"
    );
    let name = format!("poolgrade-pl-test-{}-{}", std::process::id(), test);
    let _container = ContainerGuard(name.clone());
    let mount = format!("{}:/grade", job.grade_dir().display());
    let began = Instant::now();
    let child = Command::new("docker")
        .args([
            "run",
            "--name",
            &name,
            "--network",
            "none",
            "--ipc",
            "private",
            "--memory",
            "2g",
            "--memory-swap",
            "2g",
            "--cpu-period",
            "100000",
            "--cpu-quota",
            "90000",
            "--pids-limit",
            "1024",
            "--ulimit",
            "core=0:0",
            // The grader host attaches a TTY (`Tty: true`).
            "--tty",
            "--volume",
            &mount,
            "--entrypoint",
            ENTRYPOINT,
            &pl_image(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run docker");
    let mut child = ChildGuard(child);
    // Drain the output while waiting, so a chatty job never blocks on a full pipe.
    let mut stdout = child.0.stdout.take().expect("stdout");
    let mut stderr = child.0.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    let status = child.wait_timeout(JOB_TIMEOUT);
    let seconds = began.elapsed().as_secs_f64();
    let Some(status) = status else {
        panic!("{test}: the job ran longer than the question's timeout ({JOB_TIMEOUT:?})");
    };
    let log = format!(
        "{}{}",
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default()
    );
    eprintln!("{test}: graded in {seconds:.1} s, {status}");
    let exit = status.code();
    let results = if exit == Some(0) {
        let text = std::fs::read_to_string(job.results_path())
            .unwrap_or_else(|e| panic!("{test}: no results.json after exit 0 ({e}):\n{log}"));
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{test}: results.json is not JSON ({e}):\n{text}"))
    } else {
        Value::Null
    };
    Graded {
        exit,
        log,
        results,
        seconds,
    }
}

fn tests_of(results: &Value) -> &Vec<Value> {
    results["tests"].as_array().expect("tests")
}

fn score_of(results: &Value) -> f64 {
    results["score"].as_f64().expect("score")
}

/// The student's server must not reach `/grade` after the entry point ran: mode 0700.
fn assert_grade_closed(job: &Job) {
    let mode = std::fs::metadata(job.grade_dir())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700, "/grade is left at {mode:o}");
}

/// A correct submission (samples/alice): gradable, score 1, every one of the 28 checks at
/// its full weight, and `/grade/results` created by the entry point.
#[test]
#[serial(docker, sandbox)]
fn a_correct_submission_is_gradable_with_score_1() {
    let test = "a_correct_submission_is_gradable_with_score_1";
    if !docker_available(test) {
        return;
    }
    let samples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("samples");
    let job = Job::with_copy_of(&samples.join("alice"));
    let g = run_job(&job, "alice");
    assert_eq!(g.exit, Some(0), "{}", g.log);
    assert_eq!(g.results["gradable"], true, "{}", g.results);
    assert_eq!(score_of(&g.results), 1.0, "{}", g.results);
    let tests = tests_of(&g.results);
    assert_eq!(tests.len(), 28, "{}", g.results);
    for t in tests {
        assert_eq!(t["points"], t["max_points"], "{t}");
    }
    assert_grade_closed(&job);
    eprintln!("alice: {:.1} s", g.seconds);
}

/// A broken submission (samples/bob, whose workers read the pid from a shared global): it
/// ran, so it is gradable; its routing tests earn 0 and its score is below 1.
#[test]
#[serial(docker, sandbox)]
fn a_broken_submission_is_gradable_with_routing_at_0() {
    let test = "a_broken_submission_is_gradable_with_routing_at_0";
    if !docker_available(test) {
        return;
    }
    let samples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("samples");
    let job = Job::with_copy_of(&samples.join("bob"));
    let g = run_job(&job, "bob");
    assert_eq!(g.exit, Some(0), "{}", g.log);
    assert_eq!(g.results["gradable"], true, "{}", g.results);
    let score = score_of(&g.results);
    assert!(score < 1.0, "score {score}");
    let routing: Vec<&Value> = tests_of(&g.results)
        .iter()
        .filter(|t| t["name"].as_str().is_some_and(|n| n.contains(": routing")))
        .collect();
    assert!(!routing.is_empty(), "{}", g.results);
    // bob's defect is in server_spawn.py; its pool stage is correct (samples/README.md).
    let spawn_routing = routing
        .iter()
        .find(|t| t["name"].as_str().is_some_and(|n| n.starts_with("spawn")))
        .expect("spawn routing test");
    assert_eq!(
        spawn_routing["points"].as_f64(),
        Some(0.0),
        "{spawn_routing}"
    );
    assert!(spawn_routing["max_points"].as_f64().unwrap() > 0.0);
    eprintln!("bob: score {score}, {:.1} s", g.seconds);
}

/// A stage whose server never comes up (server_spawn.py exits at once) is a grade, not a
/// format error: gradable, every spawn test at 0, the correct pool stage graded beside it.
#[test]
#[serial(docker, sandbox)]
fn a_stage_whose_server_never_starts_is_gradable_with_0_for_its_checks() {
    let test = "a_stage_whose_server_never_starts_is_gradable_with_0_for_its_checks";
    if !docker_available(test) {
        return;
    }
    let pool = std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("samples/alice/server_pool.py"),
    )
    .unwrap();
    let job = Job::with_files(&[
        ("server_spawn.py", b"raise SystemExit(1)\n"),
        ("server_pool.py", &pool),
    ]);
    let g = run_job(&job, "never-starts");
    assert_eq!(g.exit, Some(0), "{}", g.log);
    assert_eq!(g.results["gradable"], true, "{}", g.results);
    let tests = tests_of(&g.results);
    assert_eq!(tests.len(), 28, "{}", g.results);
    let (spawn, pool): (Vec<&Value>, Vec<&Value>) = tests
        .iter()
        .partition(|t| t["name"].as_str().is_some_and(|n| n.starts_with("spawn")));
    assert_eq!(spawn.len(), 10);
    for t in &spawn {
        assert_eq!(t["points"].as_f64(), Some(0.0), "{t}");
    }
    // The pool stage was graded on its own (its timed checks may vary on a loaded machine,
    // its start may not).
    let pool_starts = pool
        .iter()
        .find(|t| {
            t["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("pool: starts"))
        })
        .expect("pool starts test");
    assert_eq!(
        pool_starts["points"], pool_starts["max_points"],
        "{pool_starts}"
    );
    let score = score_of(&g.results);
    // At most the pool stage's 11 of 27 points (no primes_pool.py: Exercise 1 fails whole).
    assert!(score > 0.0 && score <= 11.0 / 27.0 + 1e-3, "score {score}");
    eprintln!("never-starts: score {score}, {:.1} s", g.seconds);
}

/// Input that is no submission at all (nothing, unrelated files, empty stage files) is not
/// gradable, so the student loses no attempt, and the format errors say what is missing.
#[test]
#[serial(docker, sandbox)]
fn input_that_is_no_submission_is_not_gradable() {
    let test = "input_that_is_no_submission_is_not_gradable";
    if !docker_available(test) {
        return;
    }
    let cases: [(&str, Files); 3] = [
        ("empty", vec![]),
        (
            "unrelated",
            vec![
                ("notes.txt", b"my answers\n"),
                ("main.py", b"print('hello')\n"),
            ],
        ),
        (
            "empty-files",
            vec![("server_spawn.py", b""), ("server_pool.py", b"")],
        ),
    ];
    for (case, files) in cases {
        let job = Job::with_files(&files);
        let g = run_job(&job, case);
        assert_eq!(g.exit, Some(0), "{case}: {}", g.log);
        assert_eq!(g.results["gradable"], false, "{case}: {}", g.results);
        let errors = g.results["format_errors"].to_string();
        assert!(
            errors.contains("server_spawn.py") && errors.contains("server_pool.py"),
            "{case}: {errors}"
        );
        assert!(
            !g.log.contains("running /usr/local/bin/poolgrade"),
            "{case}: no grading should start:\n{}",
            g.log
        );
        assert_grade_closed(&job);
    }
}

/// A course rubric in `/grade/serverFilesCourse/poolgrade/rubric.toml`, world-readable as
/// PrairieLearn copies it, is used (the entry point hands poolgrade a private copy): here it
/// turns the pool stage off, so only the 10 spawn checks are graded.
#[test]
#[serial(docker, sandbox)]
fn the_course_rubric_in_server_files_course_is_used() {
    let test = "the_course_rubric_in_server_files_course_is_used";
    if !docker_available(test) {
        return;
    }
    let samples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("samples");
    let job = Job::with_copy_of(&samples.join("alice"))
        .with_course_rubric("[stages.pool]\nenabled = false\n");
    let g = run_job(&job, "rubric");
    assert_eq!(g.exit, Some(0), "{}", g.log);
    assert_eq!(g.results["gradable"], true, "{}", g.results);
    let tests = tests_of(&g.results);
    // Stage spawn's 10 checks and Exercise 1's 7: none of the disabled pool stage.
    assert_eq!(tests.len(), 17, "{}", g.results);
    assert!(tests.iter().all(|t| t["name"]
        .as_str()
        .is_some_and(|n| n.starts_with("spawn") || n.starts_with("primes"))));
    assert_eq!(score_of(&g.results), 1.0);
}

/// A course rubric poolgrade refuses is the course's problem: not gradable (no attempt
/// lost), with a message that says so rather than blaming the files.
#[test]
#[serial(docker, sandbox)]
fn a_broken_course_rubric_is_not_gradable_and_says_it_is_the_setup() {
    let test = "a_broken_course_rubric_is_not_gradable_and_says_it_is_the_setup";
    if !docker_available(test) {
        return;
    }
    let samples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("samples");
    let job = Job::with_copy_of(&samples.join("alice"))
        .with_course_rubric("[params]\nno_such_field = 1\n");
    let g = run_job(&job, "bad-rubric");
    assert_eq!(g.exit, Some(0), "{}", g.log);
    assert_eq!(g.results["gradable"], false, "{}", g.results);
    let message = g.results["message"].as_str().unwrap();
    assert!(message.contains("grading setup"), "{message}");
    assert!(tests_of(&g.results).is_empty());
}

/// A server that attacks the job from inside the grading container
/// (tests/fixtures/submissions/hostile-writes-pl-results): it tries to write
/// `/grade/results/results.json` with a score of 1, to read the course's rubric and the
/// grader's scratch folders, and to chmod `/grade`; then it exits 1. Its score stays 0,
/// nothing it wrote reaches the results, and the rubric's text appears nowhere.
#[test]
#[serial(docker, sandbox)]
fn a_server_cannot_forge_the_results_or_read_the_course_files() {
    let test = "a_server_cannot_forge_the_results_or_read_the_course_files";
    if !docker_available(test) {
        return;
    }
    const MARKER: &str = "SECRET-RUBRIC-MARKER-7f3a";
    let job = Job::with_copy_of(&fixtures().join("submissions/hostile-writes-pl-results"))
        .with_course_rubric(&format!("# {MARKER}\n[params]\nstart_timeout = 5.0\n"));
    let g = run_job(&job, "hostile");
    assert_eq!(g.exit, Some(0), "{}", g.log);
    let text = g.results.to_string();
    assert_eq!(g.results["gradable"], true, "{text}");
    assert_eq!(score_of(&g.results), 0.0, "{text}");
    assert!(!text.contains("FORGED"), "{text}");
    assert!(!text.contains(MARKER) && !g.log.contains(MARKER), "{text}");
    assert!(
        !text.contains("forge: WROTE") && !text.contains("forge: LEAKED"),
        "{text}"
    );
    // The attack did run: its refusals are quoted in the feedback.
    assert!(
        text.contains("forge: denied WROTE /grade/results/results.json"),
        "{text}"
    );
    assert!(
        text.contains("forge: denied LEAKED /grade/serverFilesCourse/poolgrade/rubric.toml"),
        "{text}"
    );
    assert!(!job.grade_dir().join("forged").exists());
    assert_grade_closed(&job);
}
