//! Gradescope, emulated: `scripts/package-gradescope.sh` builds the autograder zip once per
//! test run, then each test starts a container with Gradescope's layout (`/autograder/source`
//! = the zip's contents, `/autograder/submission`, `/autograder/results`), as root with
//! Docker's default capabilities (no `--privileged`, no `--cap-add`), runs `setup.sh` once and
//! `run_autograder` once per submission, and reads `/autograder/results/results.json`.
//!
//! The container comes from `poolgrade-base:bookworm` (`POOLGRADE_BASE_IMAGE`), not
//! Gradescope's Ubuntu base, which cannot be fetched here (no registry); its python3 already
//! has sysv_ipc, so `setup.sh` takes the branch that installs nothing from apt. The zip holds
//! the static grader of `target/x86_64-unknown-linux-gnu/release/` as
//! `scripts/build-images.sh` leaves it (the package script runs with `--no-cargo`).
//!
//! Needs a Docker engine, the base image and that binary. When one is missing the tests
//! print `SKIPPED: ...` and return; with `REQUIRE_DOCKER=1` they fail instead. Every
//! container is removed when its guard drops, whether or not the test passed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use serial_test::serial;

/// The image the emulated Gradescope container starts from.
fn base_ref() -> String {
    std::env::var("POOLGRADE_BASE_IMAGE").unwrap_or_else(|_| "poolgrade-base:bookworm".into())
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The static grader the zip ships.
fn static_grader() -> PathBuf {
    repo().join("target/x86_64-unknown-linux-gnu/release/poolgrade")
}

/// Whether the engine answers, the base image exists (see
/// [`crate::common::images_available`]) and the static grader is built (its absence fails
/// the test under `REQUIRE_DOCKER=1` too).
fn gradescope_available(test: &str) -> bool {
    if !crate::common::images_available(test, &[base_ref()]) {
        return false;
    }
    if static_grader().is_file() {
        return true;
    }
    let why = format!(
        "no static grader {} (build it with scripts/build-images.sh)",
        static_grader().display()
    );
    if std::env::var("REQUIRE_DOCKER").as_deref() == Ok("1") {
        panic!("REQUIRE_DOCKER=1 but {why}");
    }
    eprintln!("SKIPPED: {test}: {why}");
    false
}

/// The rubric shipped in the test zip: the defaults (27 points), written out, so that the
/// rubric's way through `setup.sh` (mode 0600, out of the servers' reach) is exercised.
const RUBRIC: &str = "[gradescope]\nvisibility = \"visible\"\nstdout_visibility = \"hidden\"\n";

/// The autograder zip, built in `dir` by the package script (a second or two).
fn autograder_zip(dir: &Path) -> PathBuf {
    let rubric = dir.join("rubric.toml");
    std::fs::write(&rubric, RUBRIC).expect("write the rubric");
    let zip = dir.join("autograder.zip");
    let out = Command::new(repo().join("scripts/package-gradescope.sh"))
        .args(["--no-cargo", "--rubric"])
        .arg(&rubric)
        .arg("--output")
        .arg(&zip)
        .output()
        .expect("run scripts/package-gradescope.sh");
    assert!(
        out.status.success(),
        "package-gradescope.sh failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    zip
}

/// Runs `docker args...` under `timeout`; returns (exit code, stdout, stderr).
fn docker(args: &[&str], timeout: Duration) -> (Option<i32>, String, String) {
    let mut cmd = Command::new("docker");
    cmd.args(args);
    let out = assert_cmd::Command::from_std(cmd)
        .timeout(timeout)
        .output()
        .expect("run docker");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// One emulated Gradescope container, removed (with its volumes) on drop.
struct Gradescope {
    /// The container's name.
    id: String,
}

impl Gradescope {
    /// Starts the container, unpacks the zip into `/autograder/source` and runs `setup.sh`
    /// there as Gradescope does; then copies `run_autograder` to `/autograder/run_autograder`.
    fn build(zip: &Path) -> Gradescope {
        // Named first, so that the guard removes it even if `docker run` fails halfway.
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let gs = Gradescope {
            id: format!(
                "poolgrade-gradescope-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ),
        };
        // Docker's defaults: no --privileged, no --cap-add, the default seccomp profile.
        let (code, _, err) = docker(
            &[
                "run",
                "-d",
                "--name",
                &gs.id,
                // Gradescope's defaults: half a virtual CPU and 768 MB
                // (autograder_samples docs/troubleshooting.md).
                "--cpus",
                "0.5",
                "--memory",
                "768m",
                // Gradescope's working directory; Docker creates it.
                "--workdir",
                "/autograder",
                "--network",
                "none",
                "--label",
                "org.poolgrade.test=platforms_gradescope",
                &base_ref(),
                "sleep",
                "infinity",
            ],
            Duration::from_secs(120),
        );
        assert_eq!(code, Some(0), "docker run: {err}");
        let zip_in = format!("{}:/tmp/autograder.zip", gs.id);
        let (code, _, err) = docker(
            &["cp", &zip.to_string_lossy(), &zip_in],
            Duration::from_secs(60),
        );
        assert_eq!(code, Some(0), "docker cp of the zip: {err}");
        // Unpacked as `unzip` does: the entries' modes kept.
        gs.exec_ok(
            "unpack the zip",
            "mkdir -p /autograder/source /autograder/submission /autograder/results && \
             python3 -c 'import os, sys, zipfile\n\
z = zipfile.ZipFile(sys.argv[1])\n\
for i in z.infolist():\n    p = z.extract(i, sys.argv[2]); os.chmod(p, (i.external_attr >> 16) & 0o777)' \
             /tmp/autograder.zip /autograder/source && rm /tmp/autograder.zip",
        );
        let setup = gs.exec_ok("setup.sh", "cd /autograder/source && bash ./setup.sh");
        assert!(
            setup.contains("installed poolgrade") && setup.contains("installed the rubric"),
            "setup.sh said: {setup}"
        );
        gs.exec_ok(
            "copy run_autograder",
            "cp /autograder/source/run_autograder /autograder/run_autograder",
        );
        gs
    }

    /// Runs `sh -c script` as root in `/autograder`; returns (exit code, stdout and stderr).
    fn exec(&self, script: &str) -> (Option<i32>, String) {
        let (code, out, err) = docker(
            &["exec", "-w", "/autograder", &self.id, "sh", "-c", script],
            Duration::from_secs(600),
        );
        (code, format!("{out}{err}"))
    }

    fn exec_ok(&self, what: &str, script: &str) -> String {
        let (code, log) = self.exec(script);
        assert_eq!(code, Some(0), "{what} failed: {log}");
        log
    }

    /// Puts the files of `upload` in a fresh `/autograder/submission` and a fresh
    /// `/autograder/results`, runs `/autograder/run_autograder` with its output in
    /// `/autograder/results/stdout` (as the harness keeps it), and returns its
    /// results.json, its stdout and the seconds it took.
    fn grade(&self, upload: &Path) -> (Value, String, f64) {
        self.grade_with(upload, &[])
    }

    /// [`Self::grade`] with `env` (`NAME=value`) set for `run_autograder`.
    fn grade_with(&self, upload: &Path, env: &[&str]) -> (Value, String, f64) {
        self.exec_ok(
            "reset the submission",
            "rm -rf /autograder/submission /autograder/results && \
             mkdir -p /autograder/submission /autograder/results",
        );
        let from = format!("{}/.", upload.display());
        let to = format!("{}:/autograder/submission", self.id);
        let (code, _, err) = docker(&["cp", &from, &to], Duration::from_secs(60));
        assert_eq!(code, Some(0), "docker cp of the submission: {err}");
        let t0 = Instant::now();
        let mut args = vec!["exec", "-w", "/autograder"];
        for e in env {
            args.extend(["-e", e]);
        }
        let script = "/autograder/run_autograder > /autograder/results/stdout 2>&1";
        args.extend([self.id.as_str(), "sh", "-c", script]);
        let (code, out, err) = docker(&args, Duration::from_secs(600));
        let log = format!("{out}{err}");
        let seconds = t0.elapsed().as_secs_f64();
        let stdout = self.exec_ok("read stdout", "cat /autograder/results/stdout");
        assert_eq!(code, Some(0), "run_autograder failed: {log}{stdout}");
        let json = self.exec_ok("read results.json", "cat /autograder/results/results.json");
        let results: Value = serde_json::from_str(&json)
            .unwrap_or_else(|e| panic!("results.json is not JSON ({e}): {json}\n{stdout}"));
        (results, stdout, seconds)
    }
}

impl Drop for Gradescope {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", "-v", &self.id], Duration::from_secs(120));
    }
}

/// A folder holding `files` (relative path, content).
fn upload(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (path, text) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    dir
}

/// A sample submission's three files (two servers, Exercise 1's program), under `prefix` in
/// the upload.
fn sample(name: &str, prefix: &str) -> tempfile::TempDir {
    let read = |f: &str| std::fs::read_to_string(repo().join("samples").join(name).join(f));
    let spawn = read("server_spawn.py").expect("sample spawn server");
    let pool = read("server_pool.py").expect("sample pool server");
    let primes = read("primes_pool.py").expect("sample Exercise 1 program");
    upload(&[
        (&format!("{prefix}server_spawn.py"), &spawn),
        (&format!("{prefix}server_pool.py"), &pool),
        (&format!("{prefix}primes_pool.py"), &primes),
    ])
}

/// What the default rubric gives: 28 tests (10 + 11 Exercise 2 checks, 7 of Exercise 1),
/// worth 27 points (Exercise 1's speed-up is informational, weight 0).
const TESTS: usize = 28;
/// The points they are worth.
const MAX: f64 = 27.0;

fn score(r: &Value) -> f64 {
    r["score"].as_f64().expect("a numeric score")
}

fn tests_of(r: &Value) -> &Vec<Value> {
    r["tests"].as_array().expect("a tests array")
}

fn max_score(r: &Value) -> f64 {
    tests_of(r)
        .iter()
        .map(|t| t["max_score"].as_f64().expect("max_score"))
        .sum()
}

fn test_named<'a>(r: &'a Value, name: &str) -> &'a Value {
    tests_of(r)
        .iter()
        .find(|t| t["name"].as_str().is_some_and(|n| n.starts_with(name)))
        .unwrap_or_else(|| panic!("no test {name:?} in {r:#}"))
}

/// Gradescope's way, end to end: `setup.sh` once, then `run_autograder` on samples/alice
/// (every check passes: 27 of 27 with the default rubric, graded by the unprivileged
/// backend) and on samples/bob uploaded inside a folder (its spawn server routes replies
/// wrongly: the routing test fails and the score is below the maximum).
#[test]
// Grades timed checks in a container: never beside the native grading tests.
#[serial(docker, sandbox)]
fn gradescope_scores_a_correct_sample_full_marks_and_a_broken_one_in_a_folder_lower() {
    let test = "gradescope_scores_a_correct_sample_full_marks_and_a_broken_one_in_a_folder_lower";
    if !gradescope_available(test) {
        return;
    }
    let t0 = Instant::now();
    let packaged = tempfile::tempdir().unwrap();
    let gs = Gradescope::build(&autograder_zip(packaged.path()));
    let built = t0.elapsed().as_secs_f64();

    let alice = sample("alice", "");
    let (r, stdout, alice_secs) = gs.grade(alice.path());
    let alice_score = score(&r);
    assert_eq!(tests_of(&r).len(), TESTS, "{r:#}");
    assert_eq!(max_score(&r), MAX, "{r:#}");
    assert_eq!(score(&r), MAX, "alice: {r:#}\n{stdout}");
    assert!(tests_of(&r).iter().all(|t| t["status"] == "passed"));
    assert!(
        r["output"]
            .as_str()
            .is_some_and(|o| o.contains("isolated by unprivileged: ")),
        "the unprivileged backend graded: {}",
        r["output"]
    );

    let bob = sample("bob", "lab4/bob/");
    let (r, stdout, bob_secs) = gs.grade(bob.path());
    assert_eq!(max_score(&r), MAX, "{r:#}");
    assert!(score(&r) < MAX, "bob: {r:#}\n{stdout}");
    assert_eq!(test_named(&r, "primes: primes-correct")["status"], "passed");
    assert_eq!(test_named(&r, "spawn: routing")["status"], "failed");
    assert_eq!(test_named(&r, "spawn: routing")["score"], 0.0);
    assert_eq!(
        test_named(&r, "pool: starts")["status"],
        "passed",
        "{stdout}"
    );
    assert!(
        r["output"]
            .as_str()
            .is_some_and(|o| o.starts_with("Graded the folder lab4/bob of your upload")),
        "the output names the folder graded: {}",
        r["output"]
    );
    eprintln!(
        "gradescope emulation: container and setup.sh {built:.1} s, alice {alice_score} of {MAX} in {alice_secs:.1} s, bob {} of {MAX} in {bob_secs:.1} s, test {:.1} s",
        score(&r),
        t0.elapsed().as_secs_f64()
    );
}

/// A spawn server that tries to read the rubric and the zip, list the original submission
/// and write the results, printing what each attempt got, then exits (so its output shows in
/// the feedback of the failed `starts` check).
const HOSTILE_SPAWN: &str = r#"import os
def attempt(label, f, bad):
    try:
        f()
        print(label + ": " + bad, flush=True)
    except OSError as e:
        print(label + ": denied (" + type(e).__name__ + ")", flush=True)
attempt("rubric", lambda: open("/etc/poolgrade/rubric.toml").read(), "LEAKED")
attempt("zip-rubric", lambda: open("/autograder/source/rubric.toml").read(), "LEAKED")
attempt("source", lambda: os.listdir("/autograder/source"), "LEAKED")
attempt("submission", lambda: os.listdir("/autograder/submission"), "LEAKED")
attempt("results", lambda: open("/autograder/results/results.json", "w").write('{"score": 99}'), "TAMPERED")
attempt("planted", lambda: open("/autograder/results/planted", "w").write("x"), "TAMPERED")
"#;

/// A spawn server that starts a process in a session of its own which ignores SIGTERM and
/// SIGHUP and marks `/tmp` (so the test knows it ran), then never creates its queue.
const LINGERING_SPAWN: &str = r#"import os, signal, time
if os.fork() == 0:
    os.setsid()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    open("/tmp/lingering-%d" % os.getpid(), "w").close()
    while True:
        time.sleep(1)
while True:
    time.sleep(1)
"#;

/// Whatever the upload, `run_autograder` leaves a results.json that says what happened:
/// no server file (score 0, what is missing and what the upload holds), a hostile server (it
/// can neither read the rubric nor write in `/autograder/results`), a grading stopped at its
/// deadline (score 0, "did not finish", no sandbox process left), and a grader that cannot
/// grade at all (exit 2 on a broken rubric: score 0 and "could not grade").
#[test]
#[serial(docker, sandbox)]
fn gradescope_always_writes_results_json_and_keeps_rubric_and_results_from_servers() {
    let test = "gradescope_always_writes_results_json_and_keeps_rubric_and_results_from_servers";
    if !gradescope_available(test) {
        return;
    }
    let t0 = Instant::now();
    let packaged = tempfile::tempdir().unwrap();
    let gs = Gradescope::build(&autograder_zip(packaged.path()));

    // No server file at all.
    let none = upload(&[("answers.txt", "see attached"), ("notes/todo.md", "-")]);
    let (r, stdout, _) = gs.grade(none.path());
    assert_eq!(score(&r), 0.0, "{r:#}");
    assert_eq!(max_score(&r), MAX, "the missing checks still count: {r:#}");
    let output = r["output"].as_str().unwrap_or_default();
    assert!(
        output.contains("holds none of server_spawn.py, server_pool.py and primes_pool.py")
            && output.contains("answers.txt"),
        "the output says what is missing and what was uploaded: {output}\n{stdout}"
    );
    assert!(test_named(&r, "spawn: starts")["output"]
        .as_str()
        .is_some_and(|o| o.contains("server_spawn.py is missing")));

    // A hostile server, with no pool stage.
    let hostile = upload(&[("server_spawn.py", HOSTILE_SPAWN)]);
    let (r, stdout, _) = gs.grade(hostile.path());
    let text = r.to_string();
    assert_eq!(score(&r), 0.0, "{r:#}");
    let starts = test_named(&r, "spawn: starts")["output"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    for label in [
        "rubric",
        "zip-rubric",
        "source",
        "submission",
        "results",
        "planted",
    ] {
        assert!(
            starts.contains(&format!("{label}: denied")),
            "the server's attempt on {label} was refused: {starts}\n{stdout}"
        );
    }
    assert!(
        !text.contains("LEAKED") && !text.contains("TAMPERED"),
        "{r:#}"
    );
    let listing = gs.exec_ok(
        "list the results",
        "stat -c '%U %n' /autograder/results/* | sort",
    );
    assert_eq!(
        listing,
        "root /autograder/results/results.json\nroot /autograder/results/stdout\n"
    );

    // Past the deadline: poolgrade is stopped, and so is whatever its server started.
    let (r, stdout, secs) = gs.grade_with(
        upload(&[("server_spawn.py", LINGERING_SPAWN)]).path(),
        &["POOLGRADE_DEADLINE=3"],
    );
    assert_eq!(score(&r), 0.0, "{r:#}");
    assert!(
        r["output"]
            .as_str()
            .is_some_and(|o| o.contains("did not finish within 3 seconds")),
        "{r:#}\n{stdout}"
    );
    assert!(
        secs < 60.0,
        "run_autograder took {secs:.1} s past a 3 s deadline"
    );
    let left = gs.exec_ok(
        "look for sandbox processes",
        // Zombies are left out: PID 1 here (`sleep`) reaps no orphan.
        "ls /tmp | grep -c '^lingering-' || true; \
         for f in /proc/[0-9]*/status; do \
           awk '$1 == \"State:\" { s = $2 } $1 == \"Uid:\" { u = $2 } \
                END { if (u >= 10000 && s != \"Z\") print }' \"$f\" 2>/dev/null; \
         done | wc -l",
    );
    let counts: Vec<&str> = left.split_whitespace().collect();
    assert_ne!(
        counts[0], "0",
        "the lingering process never started: {stdout}"
    );
    assert_eq!(
        counts[1], "0",
        "a sandbox process outlived run_autograder: {stdout}"
    );

    // poolgrade exits 2 (a rubric broken after setup): a results.json still says so.
    gs.exec_ok(
        "break the rubric",
        "printf '[params]\\nworkerz = 3\\n' > /etc/poolgrade/rubric.toml",
    );
    let alice = sample("alice", "");
    let (r, stdout, _) = gs.grade(alice.path());
    assert_eq!(score(&r), 0.0, "{r:#}");
    assert!(
        r["output"]
            .as_str()
            .is_some_and(|o| o.contains("could not grade this submission")),
        "{r:#}"
    );
    assert!(
        stdout.contains("unknown field `workerz`"),
        "the instructor's stdout says why: {stdout}"
    );
    eprintln!(
        "gradescope emulation: missing, hostile and ungradable uploads in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}
