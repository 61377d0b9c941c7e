//! The threat model's native defences, each proven by a hostile fixture graded beside
//! correct neighbours (see `SECURITY.md`). The corpus batch of the `grader` module is the
//! hostile batch: it runs with a rubric that holds a secret marker, its results go to a
//! folder anyone could read, and these tests look at what it left behind and what its
//! feedback says. A later run grades the attackers again, alone, with those results on disk.
//!
//! Every test here would fail if its defence went: without the private mount namespace
//! the plants land in the host's /tmp and the borrower finds its peers (both seen with the
//! unprivileged backend on a host whose folders are world-readable); without a PID
//! namespace and /proc of its own, the exfiltrator prints the grader's command lines.

use std::path::{Path, PathBuf};
use std::time::Duration;

use assert_cmd::Command;
use serial_test::serial;

use crate::common::{bin, fixtures, python_sysv_ipc};
use crate::grader::{corpus, digest, graded_corpus, open_tempdir, sandbox_processes};

/// The outcomes of one submission in JSON Lines events: (stage, outcome) pairs.
fn outcomes_of(stdout: &str, submission: &str) -> Vec<(String, serde_json::Value)> {
    let mut out = Vec::new();
    for line in stdout.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["event"] != "stage-finished" || v["report"]["submission"] != submission {
            continue;
        }
        let stage = v["report"]["stage"].as_str().unwrap_or_default().to_owned();
        for o in v["report"]["outcomes"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            out.push((stage.clone(), o));
        }
    }
    out
}

/// The share of a fixture's checks that passed, in the stages of its exercise (those its
/// `expected.toml` lists: an Exercise 2 fixture has no `primes_pool.py`).
fn pass_rate(stdout: &str, submission: &str) -> f64 {
    let stages =
        crate::grader::fixture_expectations(&fixtures().join("submissions").join(submission))
            .verdicts;
    let all: Vec<_> = outcomes_of(stdout, submission)
        .into_iter()
        .filter(|(stage, _)| stages.contains_key(stage))
        .collect();
    assert!(!all.is_empty(), "{submission} was not graded");
    all.iter().filter(|(_, o)| o["status"] == "passed").count() as f64 / all.len() as f64
}

/// Every text a student reads of a submission's feedback.
fn feedback_of(stdout: &str, submission: &str) -> String {
    outcomes_of(stdout, submission)
        .iter()
        .map(|(_, o)| {
            format!(
                "{} {} {} {} {}",
                o["did"], o["expected"], o["observed"], o["hint"], o["server_output"]
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Names that start with `pgplant` (what the hostile fixtures plant) under `dir`, down to
/// `depth` levels, without following symlinks.
fn plants_under(dir: &Path, depth: usize, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if e.file_name().to_string_lossy().starts_with("pgplant") {
            found.push(path.clone());
        }
        let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
        if is_dir && depth > 0 && !path.starts_with("/proc") && !path.starts_with("/sys") {
            plants_under(&path, depth - 1, found);
        }
    }
}

#[test]
#[serial(sandbox)]
fn nothing_a_server_planted_reaches_the_host_or_changes_a_submission() {
    if !python_sysv_ipc() {
        return;
    }
    let graded = graded_corpus();
    // The planter was graded (and passed: planting is all it does wrong).
    assert_eq!(pass_rate(&graded.stdout, "hostile-plants-files"), 1.0);
    let mut found = Vec::new();
    for dir in [
        "/tmp", "/var/tmp", "/dev/shm", "/run", "/var", "/home", "/srv", "/opt", "/work",
    ] {
        plants_under(Path::new(dir), 5, &mut found);
    }
    assert_eq!(
        found,
        Vec::<PathBuf>::new(),
        "planted files reached the host"
    );
    // The submissions (the corpus itself) are exactly as they were.
    assert_eq!(
        digest(&fixtures().join("submissions")),
        graded.corpus_before,
        "a submission folder changed during grading"
    );
    // The results folder holds the result files and nothing a server wrote.
    for entry in std::fs::read_dir(graded.out.path()).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(
            name == "gradebook.csv"
                || name == "index.html"
                || corpus().iter().any(|d| d.ends_with(&name)),
            "unexpected entry {name} in the results folder"
        );
    }
}

#[test]
#[serial(sandbox)]
fn no_feedback_quotes_the_rubric_a_peer_or_the_grader() {
    if !python_sysv_ipc() {
        return;
    }
    let graded = graded_corpus();
    let leak = feedback_of(&graded.stdout, "hostile-exfiltrates");
    // It did print what it saw: its own command line, so the check is not vacuous.
    assert!(leak.contains("cmdline 1: python3"), "{leak}");
    let forbidden: Vec<String> = [
        graded.marker.clone(),
        graded.rubric_dir.path().display().to_string(),
        graded.out.path().display().to_string(),
        fixtures().join("submissions").display().to_string(),
        "__check".into(),
        "__init".into(),
        "poolgrade grade".into(),
    ]
    .into_iter()
    .chain(
        corpus()
            .iter()
            .map(|d| d.file_name().unwrap().to_string_lossy().into_owned())
            .filter(|n| n != "hostile-exfiltrates"),
    )
    .collect();
    for secret in &forbidden {
        assert!(
            !leak.contains(secret.as_str()),
            "the feedback quotes {secret:?}"
        );
    }
    // No other submission's feedback carries the rubric's secret either.
    assert!(!graded.stdout.contains(&graded.marker));
}

#[test]
#[serial(sandbox)]
fn attackers_fail_and_their_neighbours_keep_full_marks() {
    if !python_sysv_ipc() {
        return;
    }
    let graded = graded_corpus();
    for correct in corpus()
        .iter()
        .map(|d| d.file_name().unwrap().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("correct-"))
    {
        assert_eq!(
            pass_rate(&graded.stdout, &correct),
            1.0,
            "{correct} lost marks"
        );
    }
    // Attacking the grader costs the attacker nothing, and the batch completed.
    assert_eq!(pass_rate(&graded.stdout, "hostile-attacks-grader"), 1.0);
    for borrower in ["hostile-borrows-peer", "hostile-execs-reference"] {
        let rate = pass_rate(&graded.stdout, borrower);
        assert!(
            rate < 0.5,
            "{borrower} scored {rate} by running someone else's server"
        );
    }
    assert_eq!(sandbox_processes(), Vec::<String>::new());
}

/// The attackers again, alone, after the batch: with the batch's results on disk and
/// whatever the planter and the borrower left (nothing, if the sandbox holds), beside two
/// correct neighbours; in the human format, whose lines a person reads.
#[test]
#[serial(sandbox)]
fn a_later_run_finds_no_cache_no_plant_and_no_forged_line() {
    if !python_sysv_ipc() {
        return;
    }
    let first = graded_corpus();
    let names = [
        "hostile-borrows-peer",
        "hostile-forges-report",
        "hostile-exfiltrates",
        "correct-threads-ctime",
        "correct-mp-threadpool-iso",
    ];
    let out = open_tempdir();
    // These are Exercise 2 submissions: Exercise 1's stage is not graded.
    let rubric_dir = open_tempdir();
    let rubric = rubric_dir.path().join("rubric.toml");
    std::fs::write(&rubric, "[stages.primes]\nenabled = false\n").unwrap();
    let run = Command::new(bin("poolgrade"))
        .args(["grade", "--jobs", "8", "--rubric"])
        .arg(&rubric)
        .arg("--out")
        .arg(out.path())
        .args(names.map(|n| fixtures().join("submissions").join(n)))
        .env("NO_COLOR", "1")
        .timeout(Duration::from_secs(600))
        .output()
        .unwrap();
    let human = String::from_utf8_lossy(&run.stdout).into_owned();
    let score = |name: &str| -> (f64, f64) {
        let v: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.path().join(name).join("results.json")).unwrap(),
        )
        .unwrap();
        let max: f64 = v["tests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["max_score"].as_f64().unwrap())
            .sum();
        (v["score"].as_f64().unwrap(), max)
    };
    for correct in ["correct-threads-ctime", "correct-mp-threadpool-iso"] {
        let (got, max) = score(correct);
        assert_eq!(got, max, "{correct} lost marks in the later run:\n{human}");
    }
    let (got, max) = score("hostile-borrows-peer");
    assert!(
        got < max / 2.0,
        "the borrower scored {got}/{max} in a later run"
    );
    // Every PASS line is the grader's: exactly as many as checks that passed.
    let passed: usize = names.iter().map(|n| score(n).0 as usize).sum();
    let pass_lines = human.lines().filter(|l| l.starts_with("  PASS  ")).count();
    assert_eq!(
        pass_lines, passed,
        "a forged PASS line got through:\n{human}"
    );
    assert!(human.contains("| hostile-forges-report pool: 11/11 checks passed"));
    // No invisible or escape character in any report.
    let mut texts = vec![("stdout".to_string(), human.clone())];
    let mut todo = vec![out.path().to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                todo.push(e.path());
            } else {
                texts.push((
                    e.path().display().to_string(),
                    std::fs::read_to_string(e.path()).unwrap_or_default(),
                ));
            }
        }
    }
    for (name, text) in &texts {
        for bad in ['\u{202e}', '\u{202c}', '\u{200b}', '\u{1b}', '\u{7}'] {
            assert!(!text.contains(bad), "{name} carries {:?}", bad);
        }
    }
    assert!(human.contains("[U+202E]"), "the override is shown as text");
    // The exfiltrator, with the first batch's results on disk, still quotes none of them.
    let leak =
        std::fs::read_to_string(out.path().join("hostile-exfiltrates/results.json")).unwrap();
    for secret in [
        first.out.path().display().to_string(),
        "correct-executor-datetime".into(),
        first.marker.clone(),
    ] {
        assert!(
            !leak.contains(&secret),
            "the later feedback quotes {secret}"
        );
    }
    assert_eq!(sandbox_processes(), Vec::<String>::new());
}

/// A reference server on the sandbox's PATH is hidden from every server but itself: the
/// rubric adds a folder holding `timeserver` to the PATH; the attacker finds it there (the
/// folder is world-readable and on its PATH) only if the mask fails.
#[test]
#[serial(sandbox)]
fn a_reference_server_on_the_path_is_hidden() {
    use std::os::unix::fs::PermissionsExt;
    if !python_sysv_ipc() {
        return;
    }
    let tools = open_tempdir();
    let copy = tools.path().join("timeserver");
    std::fs::copy(bin("timeserver"), &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    let rubric = tools.path().join("rubric.toml");
    std::fs::write(
        &rubric,
        format!(
            "[sandbox]\npath = [\"{}\", \"/usr/local/bin\", \"/usr/bin\", \"/bin\"]\n[stages.spawn]\nenabled = false\n[stages.primes]\nenabled = false\n",
            tools.path().display()
        ),
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let run = Command::new(bin("poolgrade"))
        .args(["grade", "--format", "json", "--rubric"])
        .arg(&rubric)
        .arg("--out")
        .arg(out.path())
        .arg(fixtures().join("submissions/hostile-execs-reference"))
        .timeout(Duration::from_secs(300))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let rate = pass_rate(&stdout, "hostile-execs-reference");
    assert_eq!(rate, 0.0, "the reference server was reachable: {stdout}");
    let feedback = feedback_of(&stdout, "hostile-execs-reference");
    assert!(feedback.contains("no reference server found"), "{feedback}");
    // The same command line grades the reference server itself: not hidden from itself.
    let empty = tempfile::tempdir().unwrap();
    Command::new(bin("poolgrade"))
        .args(["check", "--stage", "pool", "--rubric"])
        .arg(&rubric)
        .arg("--dir")
        .arg(empty.path())
        .args(["--", "timeserver", "--mode", "pool"])
        .timeout(Duration::from_secs(300))
        .assert()
        .success();
}

/// Two graders at once over a range of three sandbox uids: every check of both leases one,
/// and no two servers that ran at the same time had the same uid.
#[test]
#[serial(sandbox)]
fn two_graders_never_give_one_uid_to_two_servers_at_once() {
    if !python_sysv_ipc() {
        return;
    }
    let probe = fixtures().join("probes/uid-window");
    let range = "3999000000:3";
    let run = || {
        let probe = probe.clone();
        std::thread::spawn(move || {
            Command::new(bin("poolgrade"))
                .args(["check", "--stage", "pool", "--format", "json", "--dir"])
                .arg(&probe)
                .args(["--", "python3", "server_pool.py"])
                .env("POOLGRADE_UID_RANGE", range)
                .timeout(Duration::from_secs(600))
                .output()
                .unwrap()
        })
    };
    let (a, b) = (run(), run());
    let outputs = [a.join().unwrap(), b.join().unwrap()];
    let mut windows: Vec<(u32, f64, f64)> = Vec::new();
    for out in &outputs {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            !text.contains("\"error\""),
            "a check could not be graded: {text}"
        );
        for line in text.lines().filter(|l| l.contains("check-finished")) {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            for l in v["outcome"]["server_output"]
                .as_str()
                .unwrap_or_default()
                .lines()
            {
                let f: Vec<&str> = l.trim_start_matches("| ").split_whitespace().collect();
                if f.first() == Some(&"uid-window") {
                    windows.push((
                        f[1].parse().unwrap(),
                        f[2].parse().unwrap(),
                        f[3].parse().unwrap(),
                    ));
                }
            }
        }
    }
    // Every check of both graders started a server (11 each; some start it more than once).
    assert!(windows.len() >= 22, "{} servers seen", windows.len());
    let uids: std::collections::BTreeSet<u32> = windows.iter().map(|w| w.0).collect();
    assert!(
        uids.iter()
            .all(|u| (3_999_000_000..3_999_000_003).contains(u)),
        "{uids:?}"
    );
    for (i, a) in windows.iter().enumerate() {
        for b in &windows[i + 1..] {
            let overlap = a.1 < b.2 && b.1 < a.2;
            assert!(
                !(a.0 == b.0 && overlap),
                "uid {} ran two servers at once: {a:?} {b:?}",
                a.0
            );
        }
    }
}

/// A check process that dies (as one killed by an attacker would, if it could) makes that
/// check an error worth 0 of its weight, in every result format, and the stage keeps its
/// full maximum; the grader exits 2.
#[test]
#[serial(sandbox)]
fn a_check_that_dies_is_an_error_counted_at_its_full_maximum() {
    use std::process::Stdio;
    if !python_sysv_ipc() {
        return;
    }
    let rubric_dir = tempfile::tempdir().unwrap();
    let rubric = rubric_dir.path().join("rubric.toml");
    std::fs::write(
        &rubric,
        "[stages.spawn]\nenabled = false\n[stages.primes]\nenabled = false\n[params]\ndelay = 1.0\n",
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut grader = std::process::Command::new(bin("poolgrade"))
        .args(["grade", "--jobs", "4", "--rubric"])
        .arg(&rubric)
        .arg("--out")
        .arg(out.path())
        .arg(fixtures().join("submissions/correct-threads-ctime"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let me = grader.id();
    // Kill the first check process that shows up, once it has started its server.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut killed = false;
    while !killed && std::time::Instant::now() < deadline {
        for pid in crate::common::descendants(me) {
            let cmd = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let parent_is_grader = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')
                        .map(|(_, r)| r.split_whitespace().nth(1).map(str::to_owned))
                })
                .flatten()
                == Some(me.to_string());
            let has_server = !crate::common::descendants(pid).is_empty();
            if parent_is_grader && cmd.contains("__check") && has_server {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
                killed = true;
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(killed, "no check process appeared");
    let status = grader.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(2),
        "a check that could not run makes the exit status 2"
    );
    let dir = out.path().join("correct-threads-ctime");
    let json = |f: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join(f)).unwrap()).unwrap()
    };
    let gs = json("results.json");
    let tests = gs["tests"].as_array().unwrap();
    assert_eq!(tests.len(), 11, "every check of the stage is reported");
    let max: f64 = tests.iter().map(|t| t["max_score"].as_f64().unwrap()).sum();
    assert_eq!(max, 11.0, "the maximum keeps the errored check");
    assert_eq!(gs["score"].as_f64(), Some(10.0));
    let errored: Vec<&serde_json::Value> = tests
        .iter()
        .filter(|t| {
            t["output"]
                .as_str()
                .unwrap_or_default()
                .starts_with("ERROR")
        })
        .collect();
    assert_eq!(errored.len(), 1, "{gs}");
    assert_eq!(errored[0]["score"].as_f64(), Some(0.0));
    let junit = std::fs::read_to_string(dir.join("junit.xml")).unwrap();
    assert_eq!(junit.matches("<error ").count(), 1, "{junit}");
    assert_eq!(junit.matches("<failure ").count(), 0, "{junit}");
    let classroom = json("classroom.json");
    assert_eq!(classroom["status"], "error");
    let c_tests = classroom["tests"].as_array().unwrap();
    assert_eq!(c_tests.iter().filter(|t| t["status"] == "error").count(), 1);
    assert_eq!(classroom["max_score"].as_f64(), Some(11.0));
    let pl = json("prairielearn.json");
    let pl_score = pl["score"].as_f64().unwrap();
    assert!(
        (pl_score - 10.0 / 11.0).abs() < 1e-6,
        "PrairieLearn score {pl_score}"
    );
    let book = std::fs::read_to_string(out.path().join("gradebook.csv")).unwrap();
    assert!(book.contains("error"), "{book}");
    assert_eq!(sandbox_processes(), Vec::<String>::new());
}

/// Grades the pool stage of a correct fixture with `POOLGRADE_CGROUP_ROOT=cgroup_root`
/// (through `wrap`, a command prefix such as `unshare -m`), with or without the rubric's
/// `accept_missing_limits`; returns (exit code, stdout, stderr).
fn check_with_cgroup_root(
    wrap: &[&str],
    cgroup_root: &Path,
    accept: bool,
) -> (i32, String, String) {
    let rubric_dir = tempfile::tempdir().unwrap();
    let rubric = rubric_dir.path().join("rubric.toml");
    std::fs::write(
        &rubric,
        format!("[limits]\naccept_missing_limits = {accept}\n"),
    )
    .unwrap();
    let (program, prefix) = match wrap.split_first() {
        Some((p, rest)) => (p.to_string(), rest.to_vec()),
        None => (bin("poolgrade").display().to_string(), Vec::new()),
    };
    let mut cmd = std::process::Command::new(program);
    cmd.args(prefix);
    if !wrap.is_empty() {
        cmd.arg(bin("poolgrade"));
    }
    let run = cmd
        .args(["check", "--stage", "pool", "--format", "json", "--rubric"])
        .arg(&rubric)
        .arg("--dir")
        .arg(fixtures().join("submissions/correct-threads-ctime"))
        .args(["--", "python3", "server_pool.py"])
        .env("POOLGRADE_CGROUP_ROOT", cgroup_root)
        .output()
        .unwrap();
    (
        run.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&run.stdout).into_owned(),
        String::from_utf8_lossy(&run.stderr).into_owned(),
    )
}

/// A cgroup limit that cannot be set is an error, never dropped silently: with no cgroup
/// hierarchy where the grader looks, every check could not be graded (exit 2) and says how
/// to accept weaker isolation; with the rubric's `accept_missing_limits`, the stage grades
/// and its results name the missing limits.
#[test]
#[serial(sandbox)]
fn a_limit_that_cannot_be_set_is_an_error_unless_the_rubric_accepts_it() {
    if !python_sysv_ipc() {
        return;
    }
    let nowhere = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = check_with_cgroup_root(&[], nowhere.path(), false);
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("could not be applied") && stderr.contains("accept_missing_limits"),
        "the error says what is missing and how to accept it: {stderr}"
    );
    assert!(stderr.contains("no cgroup hierarchy"), "{stderr}");
    let (code, stdout, stderr) = check_with_cgroup_root(&[], nowhere.path(), true);
    assert_eq!(
        code, 0,
        "accepted, a correct server passes: {stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("WEAKER ISOLATION") && stdout.contains("no cgroup hierarchy"),
        "the results name the weaker isolation: {stdout}"
    );
}

/// The cgroup v2 code on this host: a private mount of the unified hierarchy (cgroup2), in
/// a mount namespace of its own. Where the kernel has bound cpu, pids and memory to v1 (as
/// here), v2 offers none of them: the group is made and joined, its limits cannot be set,
/// and that is an error; accepted, the stage grades in a v2 group and the group is gone
/// afterwards. Where v2 has the controllers (GitHub's runners), the limits are set and the
/// first run passes instead; the test says which it saw.
#[test]
#[serial(sandbox)]
fn the_cgroup_v2_code_runs_on_a_private_unified_hierarchy() {
    if !python_sysv_ipc() {
        return;
    }
    let mount = tempfile::tempdir().unwrap();
    let m = mount.path().display().to_string();
    // mount, run the grader (its arguments follow), list what is left, unmount.
    let script = format!(
        "mount -t cgroup2 none {m} || exit 97; \"$@\"; rc=$?; \
         ls {m}/poolgrade | grep sandbox- >&2; cat {m}/cgroup.controllers >&2; \
         umount {m}; exit $rc"
    );
    let wrap = [
        "unshare",
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        &script,
        "sh",
    ];
    let (code, stdout, stderr) = check_with_cgroup_root(&wrap, mount.path(), false);
    assert_ne!(code, 97, "mounting cgroup2 failed: {stderr}");
    let controllers = stderr.lines().last().unwrap_or_default().to_owned();
    let has_all = ["cpu", "pids", "memory"]
        .iter()
        .all(|c| controllers.split_whitespace().any(|w| w == *c));
    eprintln!("cgroup2 controllers here: {controllers:?}");
    if has_all {
        assert_eq!(code, 0, "v2 with its controllers: {stdout}\n{stderr}");
        assert!(stdout.contains("cgroup v2: cpu, pids, memory"), "{stdout}");
    } else {
        assert_eq!(code, 2, "{stdout}\n{stderr}");
        assert!(stderr.contains("could not be applied"), "{stderr}");
        let (code, stdout, stderr) = check_with_cgroup_root(&wrap, mount.path(), true);
        assert_eq!(code, 0, "{stdout}\n{stderr}");
        assert!(
            stdout.contains("cgroup v2: ") && stdout.contains("WEAKER ISOLATION"),
            "{stdout}"
        );
    }
    assert!(
        !stderr.contains("sandbox-"),
        "a sandbox group outlived its check: {stderr}"
    );
}
