//! The grader, black-box: the fixture corpus graded once and compared, check by check, with
//! the verdicts kept as data in each fixture's `expected.toml`; the reference server passing
//! every check in both modes; the result files parsed back; the exit-code contract; and
//! hostile submissions contained with nothing left behind.
//!
//! The tests run one at a time (`#[serial(sandbox)]`, shared with the container test that
//! also grades natively): "no sandboxed process is left" looks at the whole machine, and two
//! graders at once would see each other's live servers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use assert_cmd::Command;
use predicates::prelude::*;
use serial_test::serial;

use crate::common::{bin, fixtures, python_sysv_ipc};

/// Every fixture submission folder, sorted.
pub(crate) fn corpus() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures().join("submissions"))
        .expect("tests/fixtures/submissions")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("expected.toml").is_file())
        .collect();
    dirs.sort();
    dirs
}

/// Expected verdicts: submission -> stage -> check id -> "pass" | "fail".
pub(crate) type Expected = BTreeMap<String, BTreeMap<String, BTreeMap<String, String>>>;

/// What a fixture's `expected.toml` holds: the verdicts per stage (`[spawn]`, `[pool]`:
/// check id -> "pass" | "fail"), the diagnosis of named failures (`[diagnosis.<stage>]`:
/// check id -> "<symptom>" or "<symptom> from <check>"), and text their feedback must
/// contain (`[feedback.<stage>]`: check id -> text).
pub(crate) struct Expectations {
    pub verdicts: BTreeMap<String, BTreeMap<String, String>>,
    pub diagnosis: BTreeMap<String, BTreeMap<String, String>>,
    pub feedback: BTreeMap<String, BTreeMap<String, String>>,
}

/// Reads `dir/expected.toml` (see [`Expectations`]).
pub(crate) fn fixture_expectations(dir: &Path) -> Expectations {
    let text = std::fs::read_to_string(dir.join("expected.toml")).unwrap();
    let value: toml::Table = text
        .parse()
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let strings = |v: &toml::Value| -> BTreeMap<String, String> {
        v.as_table()
            .expect("a table of check ids")
            .iter()
            .map(|(id, x)| (id.clone(), x.as_str().expect("a string").to_string()))
            .collect()
    };
    let per_stage = |key: &str| -> BTreeMap<String, BTreeMap<String, String>> {
        value
            .get(key)
            .and_then(toml::Value::as_table)
            .map(|t| t.iter().map(|(st, v)| (st.clone(), strings(v))).collect())
            .unwrap_or_default()
    };
    Expectations {
        verdicts: ["spawn", "pool", "primes"]
            .into_iter()
            .filter_map(|st| Some((st.to_string(), strings(value.get(st)?))))
            .collect(),
        diagnosis: per_stage("diagnosis"),
        feedback: per_stage("feedback"),
    }
}

fn expected(dirs: &[PathBuf]) -> Expected {
    dirs.iter()
        .map(|d| {
            (
                d.file_name().unwrap().to_string_lossy().into_owned(),
                fixture_expectations(d).verdicts,
            )
        })
        .collect()
}

/// Processes left alive by a sandboxed server of *this* test run: the test process is a
/// child subreaper, so whatever a grader it started leaves behind becomes its descendant;
/// of those, the ones running as a sandbox uid. Other graders on the machine are not seen.
pub(crate) fn sandbox_processes() -> Vec<String> {
    crate::common::become_subreaper();
    let range = grader::sandbox::uids::UidRange::for_sandboxes().expect("uid range");
    let me = std::process::id();
    let mut out = Vec::new();
    for pid in crate::common::descendants(me) {
        let Some([uid, ..]) = grader::procfs::uids_of(pid) else {
            continue;
        };
        if range.contains(uid) && !grader::procfs::is_zombie(pid) {
            let cmd = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            out.push(format!("{pid} uid {uid}: {}", cmd.replace('\0', " ")));
        }
    }
    out
}

/// The corpus graded once, in one batch (hostile fixtures beside correct neighbours), for
/// every test of this module and of `isolation`: its events as JSON lines, its results
/// folder, its exit status, and what the hostile tests look for.
pub(crate) struct Graded {
    pub stdout: String,
    pub out: tempfile::TempDir,
    pub status: i32,
    /// A secret only the rubric holds: no feedback may quote it.
    pub marker: String,
    /// The rubric's folder (readable by everyone, like the results: only the sandbox keeps
    /// a server from them).
    pub rubric_dir: tempfile::TempDir,
    /// A digest of every file of the corpus before grading.
    pub corpus_before: String,
}

/// A folder readable and enterable by everyone (a plain tempdir is mode 0700, which would
/// hide it from a server even without a sandbox, and prove nothing).
pub(crate) fn open_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// Every file under `dir` with its size and a hash of its bytes, one line each, sorted.
pub(crate) fn digest(dir: &Path) -> String {
    use std::hash::{Hash, Hasher};
    let mut lines = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                todo.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap_or_default();
                let mut h = std::collections::hash_map::DefaultHasher::new();
                bytes.hash(&mut h);
                lines.push(format!("{} {} {:x}", p.display(), bytes.len(), h.finish()));
            }
        }
    }
    lines.sort();
    lines.join("\n")
}

pub(crate) fn graded_corpus() -> &'static Graded {
    static GRADED: OnceLock<Graded> = OnceLock::new();
    GRADED.get_or_init(|| {
        crate::common::become_subreaper();
        let corpus_before = digest(&fixtures().join("submissions"));
        let out = open_tempdir();
        let rubric_dir = open_tempdir();
        let marker = format!("rubric-secret-{:x}", rand::random::<u64>());
        let rubric = rubric_dir.path().join("rubric.toml");
        std::fs::write(&rubric, format!("# {marker}\n[params]\nworkers = 3\n")).unwrap();
        let output = Command::new(bin("poolgrade"))
            .args(["grade", "--format", "json", "--rubric"])
            .arg(&rubric)
            .arg("--out")
            .arg(out.path())
            .args(corpus())
            .timeout(Duration::from_secs(900))
            .output()
            .unwrap();
        Graded {
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            out,
            status: output.status.code().unwrap_or(-1),
            marker,
            rubric_dir,
            corpus_before,
        }
    })
}

/// The verdicts the grader gave, from its JSON Lines `stage-finished` events.
pub(crate) fn verdicts(stdout: &str) -> Expected {
    let mut got = Expected::new();
    for ((sub, stage, id), o) in outcomes(stdout) {
        let verdict = match o.status {
            grader::outcome::Status::Passed => "pass",
            grader::outcome::Status::Failed => "fail",
            grader::outcome::Status::Error => "error",
        };
        got.entry(sub)
            .or_default()
            .entry(stage)
            .or_default()
            .insert(id, verdict.to_string());
    }
    got
}

#[test]
#[serial(sandbox)]
fn corpus_verdicts_match_the_expected_data() {
    if !python_sysv_ipc() {
        return;
    }
    let dirs = corpus();
    assert!(
        dirs.len() >= 15,
        "the corpus has {} submissions",
        dirs.len()
    );
    let want = expected(&dirs);
    let graded = graded_corpus();
    let got = verdicts(&graded.stdout);
    let mut misgrades = Vec::new();
    for (sub, stages) in &want {
        for (stage, checks) in stages {
            for (id, verdict) in checks {
                let actual = got
                    .get(sub)
                    .and_then(|s| s.get(stage))
                    .and_then(|c| c.get(id))
                    .map(String::as_str)
                    .unwrap_or("missing");
                if actual != verdict {
                    misgrades.push(format!(
                        "{sub} {stage} {id}: expected {verdict}, got {actual}"
                    ));
                }
            }
        }
    }
    assert!(
        misgrades.is_empty(),
        "{} misgrade(s):\n{}",
        misgrades.len(),
        misgrades.join("\n")
    );
    // Some submissions fail, so the batch exits 1.
    assert_eq!(graded.status, 1);
}

/// The outcomes the grader gave, from its JSON Lines `stage-finished` events (diagnosed
/// across each stage): (submission, stage, check id) -> outcome.
fn outcomes(stdout: &str) -> BTreeMap<(String, String, String), grader::outcome::Outcome> {
    let mut got = BTreeMap::new();
    for line in stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("each line is JSON");
        if v["event"] != "stage-finished" {
            continue;
        }
        let r: grader::outcome::StageReport =
            serde_json::from_value(v["report"].clone()).expect("a stage report");
        for o in r.outcomes {
            got.insert(
                (r.submission.clone(), r.stage.to_string(), o.id.to_string()),
                o,
            );
        }
    }
    got
}

#[test]
#[serial(sandbox)]
fn cascading_failures_name_their_root_cause() {
    use grader::symptom::Symptom;
    if !python_sysv_ipc() {
        return;
    }
    let graded = graded_corpus();
    let got = outcomes(&graded.stdout);
    let mut wrong = Vec::new();
    let mut named = 0;
    for dir in corpus() {
        let sub = dir.file_name().unwrap().to_string_lossy().into_owned();
        let want = fixture_expectations(&dir);
        for (stage, checks) in &want.diagnosis {
            for (id, diagnosis) in checks {
                named += 1;
                let key = (sub.clone(), stage.clone(), id.clone());
                let Some(o) = got.get(&key) else {
                    wrong.push(format!("{sub} {stage} {id}: not graded"));
                    continue;
                };
                let (symptom, root) = match diagnosis.split_once(" from ") {
                    Some((s, root)) => (s, Some(root)),
                    None => (diagnosis.as_str(), None),
                };
                let symptom: Symptom = symptom.parse().unwrap();
                let feedback = o.feedback();
                let (cause_check, root_symptom) = match o.cause {
                    Some(c) => (Some(c.check.to_string()), c.symptom),
                    None => (None, symptom),
                };
                if o.symptom != Some(symptom) || cause_check.as_deref() != root {
                    wrong.push(format!(
                        "{sub} {stage} {id}: expected {diagnosis:?}, got {:?} from {:?}",
                        o.symptom, cause_check
                    ));
                }
                // What the student reads names the root cause, and where it is shown.
                let mut must = vec![root_symptom.describe().to_string()];
                if let Some(r) = root {
                    // A traced failure names the check that shows the defect, and its fix.
                    must.push(format!("the `{r}` check"));
                    must.push(root_symptom.advice().to_string());
                }
                for text in must {
                    if !feedback.contains(&text) {
                        wrong.push(format!(
                            "{sub} {stage} {id}: feedback lacks {text:?}:\n{feedback}"
                        ));
                    }
                }
            }
        }
        for (stage, checks) in &want.feedback {
            for (id, text) in checks {
                named += 1;
                let key = (sub.clone(), stage.clone(), id.clone());
                let feedback = got.get(&key).map(|o| o.feedback()).unwrap_or_default();
                if !feedback.contains(text.as_str()) {
                    wrong.push(format!(
                        "{sub} {stage} {id}: feedback lacks {text:?}:\n{feedback}"
                    ));
                }
            }
        }
    }
    assert!(
        named >= 20,
        "only {named} diagnoses are named in the corpus"
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
#[serial(sandbox)]
fn corpus_result_files_parse_back_and_agree() {
    if !python_sysv_ipc() {
        return;
    }
    let graded = graded_corpus();
    let got = verdicts(&graded.stdout);
    for (sub, stages) in &got {
        let dir = graded.out.path().join(sub);
        // Gradescope: one test per check, score = the weights of the passed checks (the
        // default rubric's: 1, and 0 for the informational primes-speedup).
        let results: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("results.json")).unwrap()).unwrap();
        let tests = results["tests"].as_array().unwrap();
        let checks: usize = stages.values().map(BTreeMap::len).sum();
        let passed = stages
            .values()
            .flat_map(|c| c.values())
            .filter(|v| *v == "pass")
            .count();
        let rubric = grader::rubric::Rubric::default();
        let points: f64 = stages
            .values()
            .flat_map(|c| c.iter())
            .filter(|(_, v)| *v == "pass")
            .map(|(id, _)| rubric.check_weight(id.parse().expect("a check id")))
            .sum();
        assert_eq!(tests.len(), checks, "{sub}: Gradescope tests");
        assert_eq!(results["score"].as_f64().unwrap(), points, "{sub}: score");
        for t in tests {
            let status = t["status"].as_str().unwrap();
            assert!(status == "passed" || status == "failed");
            assert!(t["tags"].as_array().is_some_and(|a| !a.is_empty()));
        }
        // JUnit: one testcase per check, one failure element per failed check.
        let xml = std::fs::read_to_string(dir.join("junit.xml")).unwrap();
        let doc = roxmltree::Document::parse(&xml).expect("junit.xml is well-formed XML");
        let cases: Vec<_> = doc
            .descendants()
            .filter(|n| n.has_tag_name("testcase"))
            .collect();
        assert_eq!(cases.len(), checks, "{sub}: JUnit testcases");
        assert!(cases.iter().all(|c| c.attribute("classname").is_some()));
        let failures = cases
            .iter()
            .filter(|c| c.children().any(|k| k.has_tag_name("failure")))
            .count();
        assert_eq!(failures, checks - passed, "{sub}: JUnit failures");
    }
    let book = std::fs::read_to_string(graded.out.path().join("gradebook.csv")).unwrap();
    assert_eq!(
        book.lines().count(),
        got.len() + 1,
        "gradebook: a header and a row each"
    );
}

#[test]
#[serial(sandbox)]
fn corpus_grading_leaves_no_process_and_no_queue() {
    if !python_sysv_ipc() {
        return;
    }
    let _ = graded_corpus();
    // The grader returned: every sandbox is gone with it.
    assert_eq!(sandbox_processes(), Vec::<String>::new());
    let leftovers: Vec<_> = sysv_mq::list_queues()
        .unwrap()
        .into_iter()
        .filter(|q| q.key == 666)
        .collect();
    assert!(leftovers.is_empty(), "queue 666 leaked: {leftovers:?}");
}

/// An empty folder for a server that needs no files (the reference server): `check` copies
/// its `--dir` (the current folder by default) into the sandbox.
fn empty_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn timeserver_check(stage: &str, mode: &str) -> assert_cmd::assert::Assert {
    let dir = empty_dir();
    Command::new(bin("poolgrade"))
        .args(["check", "--stage", stage, "--dir"])
        .arg(dir.path())
        .arg("--")
        .arg(bin("timeserver"))
        .args(["--mode", mode])
        .timeout(Duration::from_secs(120))
        .assert()
}

#[test]
#[serial(sandbox)]
fn the_reference_server_passes_every_spawn_check() {
    timeserver_check("spawn", "spawn")
        .success()
        .stdout(predicate::str::contains("10/10 checks passed"));
}

#[test]
#[serial(sandbox)]
fn the_reference_server_passes_every_pool_check() {
    timeserver_check("pool", "pool")
        .success()
        .stdout(predicate::str::contains("11/11 checks passed"));
}

#[test]
#[serial(sandbox)]
fn the_reference_pool_fails_the_spawn_stage_and_inline_fails_concurrency() {
    timeserver_check("spawn", "pool")
        .code(1)
        .stdout(predicate::str::is_match(r"FAIL\s+spawn").unwrap());
    timeserver_check("pool", "inline")
        .code(1)
        .stdout(predicate::str::is_match(r"FAIL\s+concurrency").unwrap());
}

#[test]
#[serial(sandbox)]
fn check_writes_gradescope_and_junit_for_one_stage() {
    let out = tempfile::tempdir().unwrap();
    let dir = empty_dir();
    Command::new(bin("poolgrade"))
        .args(["check", "--stage", "pool", "--out"])
        .arg(out.path())
        .arg("--dir")
        .arg(dir.path())
        .arg("--")
        .arg(bin("timeserver"))
        .args(["--mode", "pool"])
        .timeout(Duration::from_secs(120))
        .assert()
        .success();
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("results.json")).unwrap()).unwrap();
    assert_eq!(results["tests"].as_array().unwrap().len(), 11);
    assert_eq!(results["score"].as_f64(), Some(11.0));
    let xml = std::fs::read_to_string(out.path().join("junit.xml")).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let ids: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .filter_map(|n| n.attribute("name"))
        .collect();
    for id in ["starts", "routing", "pool-bounded", "pool-reuse", "cleanup"] {
        assert!(ids.iter().any(|n| n.contains(id)), "{id} in {ids:?}");
    }
}

#[test]
#[serial(sandbox)]
fn a_missing_command_cannot_be_graded() {
    Command::new(bin("poolgrade"))
        .args(["check", "--stage", "pool", "--", "no-such-server-program"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no-such-server-program"));
}

#[test]
#[serial(sandbox)]
fn bad_arguments_cannot_be_graded() {
    Command::new(bin("poolgrade"))
        .args(["check", "--stage", "threads", "--", "true"])
        .assert()
        .code(2);
    Command::new(bin("poolgrade"))
        .args(["grade", "/no/such/folder"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("/no/such/folder"));
}

#[test]
#[serial(sandbox)]
fn a_broken_rubric_names_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let rubric = dir.path().join("rubric.toml");
    std::fs::write(
        &rubric,
        "[params]\nworkers = 3\n[checks.no-such-check]\nweight = 1\n",
    )
    .unwrap();
    Command::new(bin("poolgrade"))
        .args(["grade", "--rubric"])
        .arg(&rubric)
        .arg(dir.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no-such-check"));
}

/// Grades one hostile fixture alone and returns (exit code, JSON lines).
fn grade_one(name: &str) -> (i32, String) {
    crate::common::become_subreaper();
    let out = tempfile::tempdir().unwrap();
    let output = Command::new(bin("poolgrade"))
        .args(["grade", "--format", "json", "--out"])
        .arg(out.path())
        .arg(fixtures().join("submissions").join(name))
        .timeout(Duration::from_secs(300))
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

fn assert_contained(name: &str) {
    if !python_sysv_ipc() {
        return;
    }
    let (code, stdout) = grade_one(name);
    let got = verdicts(&stdout);
    assert!(got.contains_key(name), "{name} was graded: {stdout}");
    assert_eq!(code, 1, "{name}: graded as failing, not a grader error");
    assert_eq!(
        sandbox_processes(),
        Vec::<String>::new(),
        "{name}: processes left"
    );
}

#[test]
#[serial(sandbox)]
fn a_fork_bomb_is_contained() {
    assert_contained("hostile-fork-bomb");
}

#[test]
#[serial(sandbox)]
fn a_memory_hog_is_contained() {
    assert_contained("hostile-memory-hog");
}

#[test]
#[serial(sandbox)]
fn an_infinite_loop_is_contained() {
    assert_contained("hostile-infinite-loop");
}

#[test]
#[serial(sandbox)]
fn a_queue_flood_is_contained() {
    assert_contained("hostile-queue-flood");
}

#[test]
#[serial(sandbox)]
fn a_server_deleting_the_queue_is_contained() {
    assert_contained("hostile-deletes-queue");
}

#[test]
#[serial(sandbox)]
fn an_escaping_daemon_dies_with_its_server() {
    if !python_sysv_ipc() {
        return;
    }
    let (_, stdout) = grade_one("hostile-escapes");
    assert!(verdicts(&stdout).contains_key("hostile-escapes"));
    assert_eq!(sandbox_processes(), Vec::<String>::new());
}

#[test]
#[serial(sandbox)]
fn megabytes_of_output_are_capped_in_the_feedback() {
    if !python_sysv_ipc() {
        return;
    }
    let (_, stdout) = grade_one("hostile-spammy-output");
    for line in stdout.lines() {
        assert!(
            line.len() < 64 * 1024,
            "an event line of {} bytes",
            line.len()
        );
    }
}

/// The sandbox's isolation, seen from inside: the server's network namespace has only a
/// loopback interface, and it does not run as root.
#[test]
#[serial(sandbox)]
fn the_server_runs_without_network_and_without_root() {
    if !python_sysv_ipc() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let probe = Path::new(dir.path()).join("server_pool.py");
    std::fs::write(
        &probe,
        r#"import os, sys, sysv_ipc
# /proc/self/net/dev lists this process's network namespace (sysfs would show the host's).
names = [l.split(":")[0].strip() for l in open("/proc/self/net/dev").read().splitlines()[2:]]
print("uid", os.getuid(), "interfaces", ",".join(sorted(names)), "end", file=sys.stderr)
mq = sysv_ipc.MessageQueue(666, sysv_ipc.IPC_CREAT)
sys.exit(3 if os.getuid() == 0 else 0)
"#,
    )
    .unwrap();
    // The server exits at once: `starts` passes (the queue was made) and `termination`
    // fails; its output, quoted in the feedback, shows what it saw.
    let output = Command::new(bin("poolgrade"))
        .args(["check", "--stage", "pool", "--format", "json", "--dir"])
        .arg(dir.path())
        .args(["--", "python3", "server_pool.py"])
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("interfaces lo end"), "{text}");
    if nix::unistd::geteuid().is_root() {
        assert!(!text.contains("uid 0 "), "the server ran as root: {text}");
    }
}
