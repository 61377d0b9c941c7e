//! GitHub Classroom, end to end but for GitHub itself: the student workflow
//! (`templates/autograde.yml`) runs its own steps here, shell and all, with the real grader,
//! and Classroom's reporter reads the `result` they output. The points the reporter would
//! send to Classroom are compared with the grader's own score for a correct, a broken and an
//! ungradable submission; plus the download's checksum guard, the release's rendering of
//! the template, and what `release.yml` publishes.
//!
//! The reporter (`classroom-resources/autograding-grading-reporter`) is not in this
//! repository: its code is GitHub's, and CI cannot download it. With `CLASSROOM_REPORTER`
//! naming a checkout of it (tag `v1`, which `@v1` runs), the tests run its own built code
//! with `node`, as the runner would; without it, they run [`reporter_rule`], this suite's
//! statement of what that code does (read from its `src/main.js` and
//! `src/notify-classroom.js` at `v1`): the points are the sum of `tests[].score` over the sum
//! of `max_score`, sent only when that maximum is above 0, and the job fails when a result's
//! status is `fail` or `error`.
//!
//! A step is taken from the workflow by its `id` and run as Actions runs a `shell: bash`
//! step (`bash --noprofile --norc -eo pipefail`), in a clean environment holding what the
//! runner and the course's variables provide. `sudo` is a stand-in that, like sudo, runs the
//! command with a reset environment (this test already runs as root). The grading tests share
//! `#[serial(sandbox)]` with the other native grader tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serial_test::serial;

use crate::common::{bin, python_sysv_ipc};
use crate::grader::sandbox_processes;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn template() -> String {
    std::fs::read_to_string(root().join("templates/autograde.yml"))
        .expect("templates/autograde.yml")
}

/// A checkout of Classroom's reporter, if `CLASSROOM_REPORTER` names one.
fn reporter_dir() -> Option<PathBuf> {
    std::env::var_os("CLASSROOM_REPORTER")
        .map(PathBuf::from)
        .filter(|d| d.join("action.yml").is_file())
}

/// Whether `program --version` runs. Classroom's tests need `node` (the reporter) and `jq`
/// (the template's result step); in CI (`CI` set) their absence is a failure, not a skip.
fn tool(program: &str) -> bool {
    let ok = Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok && std::env::var_os("CI").is_some() {
        panic!("{program} is required in CI (scripts/setup.sh installs it)");
    }
    if !ok {
        eprintln!("SKIPPED: {program} is not installed");
    }
    ok
}

/// Everything the grading tests need: python3 with sysv_ipc for the servers, jq, and node
/// when the reporter's own code runs.
fn can_grade() -> bool {
    python_sysv_ipc() && tool("jq") && (reporter_dir().is_none() || tool("node"))
}

fn indentation(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The shell script of the step with this `id` (its `run: |` block, dedented). Panics if
/// the step or its script is missing, or if the script holds a `${{ }}` expression (which
/// only Actions could expand: the template passes everything through `env`).
fn step_script(workflow: &str, id: &str) -> String {
    let lines: Vec<&str> = workflow.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.trim() == format!("id: {id}"))
        .unwrap_or_else(|| panic!("no step with id {id}"));
    let keys = indentation(lines[at]);
    let mut i = at + 1;
    loop {
        let l = lines
            .get(i)
            .unwrap_or_else(|| panic!("step {id} has no `run: |`"));
        if !l.trim().is_empty() && indentation(l) < keys {
            panic!("step {id} has no `run: |`");
        }
        if indentation(l) == keys && l.trim() == "run: |" {
            break;
        }
        i += 1;
    }
    let body: Vec<&str> = lines[i + 1..]
        .iter()
        .take_while(|l| l.trim().is_empty() || indentation(l) > keys)
        .copied()
        .collect();
    let margin = body
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| indentation(l))
        .min()
        .expect("a non-empty script");
    let script: Vec<&str> = body
        .iter()
        .map(|l| if l.len() >= margin { &l[margin..] } else { "" })
        .collect();
    let script = script.join("\n") + "\n";
    assert!(
        !script.contains("${{"),
        "step {id} expands an expression:\n{script}"
    );
    script
}

/// A runner's job: `RUNNER_TEMP`, the step-output and summary files, and a `sudo` stand-in.
struct Job {
    temp: tempfile::TempDir,
    sudo_dir: tempfile::TempDir,
}

impl Job {
    /// A job whose `sudo` runs its command as sudo would, with a reset environment plus
    /// `extra` (`NAME=value` words: what a broken runner would have).
    fn new(extra: &[String]) -> Self {
        Self::with_sudo(&format!(
            "exec env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root {} \"$@\"",
            extra.join(" ")
        ))
    }

    /// A job whose `sudo` is this shell script instead.
    fn with_sudo(script: &str) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let job = Job {
            temp: tempfile::tempdir().unwrap(),
            sudo_dir: tempfile::tempdir().unwrap(),
        };
        let sudo = job.sudo_dir.path().join("sudo");
        std::fs::write(&sudo, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&sudo, std::fs::Permissions::from_mode(0o755)).unwrap();
        for f in ["output", "summary"] {
            std::fs::write(job.temp.path().join(f), "").unwrap();
        }
        job
    }

    fn runner_temp(&self) -> &Path {
        self.temp.path()
    }

    /// Runs a step's script with the runner's variables, `workspace` as the checkout, and
    /// `vars` (the course's Actions variables, the job's `env`).
    fn run(&self, script: &str, workspace: &Path, vars: &[(&str, String)]) -> Output {
        let file = self.temp.path().join("step.sh");
        std::fs::write(&file, script).unwrap();
        let path = format!(
            "{}:/usr/local/bin:/usr/bin:/bin",
            self.sudo_dir.path().display()
        );
        let mut cmd = Command::new("bash");
        cmd.args(["--noprofile", "--norc", "-eo", "pipefail"])
            .arg(&file)
            .current_dir(workspace)
            .env_clear()
            .env("PATH", path)
            .env("HOME", self.temp.path())
            .env("CI", "true")
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_WORKSPACE", workspace)
            .env("RUNNER_TEMP", self.runner_temp())
            .env("GITHUB_OUTPUT", self.temp.path().join("output"))
            .env("GITHUB_STEP_SUMMARY", self.temp.path().join("summary"));
        for (k, v) in vars {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    /// The step output `result`: there must be exactly one.
    fn result(&self) -> String {
        let text = std::fs::read_to_string(self.temp.path().join("output")).unwrap();
        let found: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("result="))
            .collect();
        assert_eq!(found.len(), 1, "one `result` output in {text:?}");
        found[0].to_string()
    }

    fn summary(&self) -> String {
        std::fs::read_to_string(self.temp.path().join("summary")).unwrap()
    }
}

fn sha256_of(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

/// The course's variables for a download of the binary at `path` (a `file://` URL stands
/// for the release's), checked against `sha`.
fn install_vars(path: &Path, sha: &str) -> Vec<(&'static str, String)> {
    vec![
        ("POOLGRADE_REPOSITORY", "course/poolgrade".into()),
        ("POOLGRADE_VERSION", "v0.0.0-test".into()),
        ("POOLGRADE_SHA256", sha.into()),
        ("POOLGRADE_URL", format!("file://{}", path.display())),
    ]
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs the template's install and grading steps for `workspace`; returns the job.
fn grade_like_the_template(
    workspace: &Path,
    sudo_env: &[String],
    vars: &[(&'static str, String)],
) -> Job {
    crate::common::become_subreaper();
    let workflow = template();
    let job = Job::new(sudo_env);
    let grader = bin("poolgrade");
    let mut all = install_vars(&grader, &sha256_of(&grader));
    all.extend(vars.iter().cloned());
    let install = job.run(&step_script(&workflow, "install"), workspace, &all);
    assert!(install.status.success(), "install step: {}", text(&install));
    let grade = job.run(&step_script(&workflow, "poolgrade"), workspace, &all);
    assert!(grade.status.success(), "grading step: {}", text(&grade));
    assert_eq!(sandbox_processes(), Vec::<String>::new(), "processes left");
    job
}

/// What Classroom's reporter did with a result.
#[derive(Debug)]
struct Reported {
    /// The points it notified Classroom of, if any.
    points: Option<(f64, f64)>,
    /// Its exit status (1 when it marks the job failed).
    code: i32,
    stdout: String,
}

/// What Classroom's reporter does with the `result` of the runner `poolgrade`: its own code
/// when `CLASSROOM_REPORTER` names a checkout, else [`reporter_rule`].
fn report(result: &str, runner_temp: &Path) -> Reported {
    match reporter_dir() {
        Some(dir) => run_reporter(&dir, result, runner_temp),
        None => reporter_rule(result),
    }
}

/// The reporter's rule at `v1`, for CI, where its code is not at hand: the result is base64
/// of JSON (a result that is not fails the job with the parse error); the points are the
/// sum of `tests[].score` over `max_score`, notified only when `max_score` is above 0; the
/// job fails ("Some tests failed." / "Some tests errored.") when the status is `fail` or
/// `error`.
fn reporter_rule(result: &str) -> Reported {
    let parsed = base64_decode(result)
        .ok_or_else(|| "the result is not base64".to_owned())
        .and_then(|bytes| {
            serde_json::from_slice::<serde_json::Value>(&bytes).map_err(|e| e.to_string())
        });
    let results = match parsed {
        Ok(v) => v,
        Err(e) => {
            return Reported {
                points: None,
                code: 1,
                stdout: format!("::error::{e}"),
            }
        }
    };
    let max = results["max_score"].as_f64().unwrap_or(0.0);
    let points = (max > 0.0).then(|| {
        let total = results["tests"]
            .as_array()
            .map(|t| t.iter().filter_map(|t| t["score"].as_f64()).sum())
            .unwrap_or(0.0);
        (total, max)
    });
    // What it prints of each test: its name, or an errored test's message.
    let mut stdout = String::new();
    for t in results["tests"].as_array().into_iter().flatten() {
        let name = t["name"].as_str().unwrap_or_default();
        match t["status"].as_str() {
            Some("pass") => stdout.push_str(&format!("✅ {name}\n")),
            Some("error") => stdout.push_str(&format!(
                "Error: {}\n",
                t["message"].as_str().unwrap_or(name)
            )),
            _ => stdout.push_str(&format!("❌ {name}\n")),
        }
    }
    if let Some((total, max)) = points {
        stdout.push_str(&format!(
            "::notice title=Autograding complete::Points {total}/{max}\n"
        ));
    }
    let code = match results["status"].as_str() {
        Some("fail") => {
            stdout.push_str("::error::Some tests failed.\n");
            1
        }
        Some("error") => {
            stdout.push_str("::error::Some tests errored.\n");
            1
        }
        _ => 0,
    };
    Reported {
        points,
        code,
        stdout,
    }
}

/// Standard base64 (with padding), as `base64 -w0` writes it.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let text = text.trim().trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes() {
        acc = (acc << 6) | value(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Runs the reporter's own code in `dir` as `uses: ...@v1` with `runners: poolgrade` would.
fn run_reporter(dir: &Path, result: &str, runner_temp: &Path) -> Reported {
    let action = std::fs::read_to_string(dir.join("action.yml")).unwrap();
    assert!(action.contains("using: \"node20\""), "{action}");
    let main = action
        .lines()
        .find_map(|l| l.trim().strip_prefix("main:"))
        .map(|m| m.trim().trim_matches('"').to_string())
        .expect("action.yml names its main");
    let files = tempfile::tempdir_in(runner_temp).unwrap();
    for f in ["event.json", "output", "summary", "env", "path", "state"] {
        std::fs::write(
            files.path().join(f),
            if f == "event.json" { "{}" } else { "" },
        )
        .unwrap();
    }
    let out = Command::new("node")
        .arg(dir.join(&main))
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("CI", "true")
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_EVENT_NAME", "push")
        .env("GITHUB_EVENT_PATH", files.path().join("event.json"))
        .env("GITHUB_REPOSITORY", "course/assignment-student")
        .env("GITHUB_ACTOR", "student")
        .env("GITHUB_WORKFLOW", "Autograding Tests")
        .env("GITHUB_JOB", "run-autograding-tests")
        .env("GITHUB_OUTPUT", files.path().join("output"))
        .env("GITHUB_STEP_SUMMARY", files.path().join("summary"))
        .env("GITHUB_ENV", files.path().join("env"))
        .env("GITHUB_PATH", files.path().join("path"))
        .env("GITHUB_STATE", files.path().join("state"))
        .env("RUNNER_TEMP", runner_temp)
        .env("INPUT_RUNNERS", "poolgrade")
        .env("INPUT_TOKEN", "not-a-token")
        .env("POOLGRADE_RESULTS", result)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let points = stdout.lines().find_map(|l| {
        let json = l.strip_prefix("::notice title=Autograding report::")?;
        let v: serde_json::Value = serde_json::from_str(json).expect("the report is JSON");
        Some((
            v["totalPoints"].as_f64().expect("totalPoints"),
            v["maxPoints"].as_f64().expect("maxPoints"),
        ))
    });
    for line in stdout.lines().filter(|l| l.starts_with("::")) {
        eprintln!("reporter: {line}");
    }
    Reported {
        points,
        code: out.status.code().unwrap_or(-1),
        stdout: stdout + &String::from_utf8_lossy(&out.stderr),
    }
}

/// The grader's own score and maximum for one submission, from its gradebook.csv (a writer
/// other than the Classroom one).
fn gradebook_score(job: &Job, submission: &str) -> (f64, f64) {
    let path = job.runner_temp().join("poolgrade-out/gradebook.csv");
    let mut book = csv::Reader::from_path(&path).unwrap();
    let head = book.headers().unwrap().clone();
    let col = |name: &str| head.iter().position(|h| h == name).expect(name);
    let (score, max) = (col("score"), col("max_score"));
    for row in book.records() {
        let row = row.unwrap();
        if &row[0] == submission {
            return (row[score].parse().unwrap(), row[max].parse().unwrap());
        }
    }
    panic!("{submission} not in {}", path.display());
}

fn decoded(result: &str) -> serde_json::Value {
    let out = Command::new("base64")
        .arg("-d")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(result.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    serde_json::from_slice(&out.stdout).expect("result is base64 of JSON")
}

#[test]
#[serial(sandbox)]
fn classroom_gets_full_marks_for_a_correct_submission() {
    if !can_grade() {
        return;
    }
    let job = grade_like_the_template(&root().join("samples/alice"), &[], &[]);
    let got = report(&job.result(), job.runner_temp());
    assert_eq!(got.points, Some((27.0, 27.0)), "{}", got.stdout);
    assert_eq!(got.code, 0, "a full score passes the job:\n{}", got.stdout);
    assert_eq!(gradebook_score(&job, "alice"), (27.0, 27.0));
    let summary = job.summary();
    assert!(
        summary.starts_with("# Autograding: 27 / 27 points, pass"),
        "{summary}"
    );
    assert!(
        summary.contains("alice pool: 11/11 checks passed"),
        "{summary}"
    );
}

#[test]
#[serial(sandbox)]
fn classroom_gets_the_graders_score_for_a_broken_submission() {
    if !can_grade() {
        return;
    }
    let job = grade_like_the_template(&root().join("samples/bob"), &[], &[]);
    let got = report(&job.result(), job.runner_temp());
    let (score, max) = gradebook_score(&job, "bob");
    assert_eq!(max, 27.0);
    assert!(score < max, "bob fails some checks: {score}");
    assert_eq!(got.points, Some((score, max)), "{}", got.stdout);
    assert_eq!(got.code, 1, "a failed check fails the job:\n{}", got.stdout);
    assert!(
        got.stdout.contains("::error::Some tests failed."),
        "{}",
        got.stdout
    );
    assert!(got.stdout.contains("spawn: routing"), "{}", got.stdout);
    assert!(
        job.summary().contains("routing failed:"),
        "{}",
        job.summary()
    );
}

/// A runner whose grader cannot build its sandbox (its state folder is writable by
/// everyone): every check is an error worth 0, and its points stay in the maximum.
#[test]
#[serial(sandbox)]
fn classroom_counts_checks_that_could_not_be_graded_in_the_maximum() {
    use std::os::unix::fs::PermissionsExt;
    if !can_grade() {
        return;
    }
    let unsafe_state = tempfile::tempdir().unwrap();
    std::fs::set_permissions(unsafe_state.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let env = [format!(
        "POOLGRADE_STATE_DIR={}",
        unsafe_state.path().display()
    )];
    let job = grade_like_the_template(&root().join("samples/alice"), &env, &[]);
    let result = job.result();
    let json = decoded(&result);
    assert_eq!(json["status"], "error");
    let tests = json["tests"].as_array().unwrap();
    assert_eq!(tests.len(), 28);
    assert!(tests.iter().all(|t| t["status"] == "error"), "{json}");
    let got = report(&result, job.runner_temp());
    assert_eq!(got.points, Some((0.0, 27.0)), "{}", got.stdout);
    assert_eq!(gradebook_score(&job, "alice"), (0.0, 27.0));
    assert_eq!(got.code, 1, "{}", got.stdout);
    assert!(
        got.stdout.contains("::error::Some tests errored."),
        "{}",
        got.stdout
    );
    assert!(got.stdout.contains("could not be graded"), "{}", got.stdout);
    let summary = job.summary();
    assert!(
        summary.starts_with("# Autograding: 0 / 27 points, error"),
        "{summary}"
    );
    assert!(
        summary.contains("could not grade everything (exit status 2)"),
        "{summary}"
    );
}

/// Nothing graded at all (the rubric names a command the sandbox lacks: exit 2, no result
/// files): the job fails with an error result, and Classroom is sent no points.
#[test]
#[serial(sandbox)]
fn classroom_is_sent_no_points_when_nothing_could_be_graded() {
    if !can_grade() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rubric = dir.path().join("rubric.toml");
    std::fs::write(
        &rubric,
        "[stages.spawn]\ncommand = [\"no-such-interpreter\", \"{file}\"]\n",
    )
    .unwrap();
    let vars = [("POOLGRADE_RUBRIC", rubric.display().to_string())];
    let job = grade_like_the_template(&root().join("samples/alice"), &[], &vars);
    let result = job.result();
    assert_eq!(decoded(&result)["status"], "error");
    let got = report(&result, job.runner_temp());
    assert_eq!(got.points, None, "no points notice:\n{}", got.stdout);
    assert_eq!(got.code, 1, "{}", got.stdout);
    assert!(
        got.stdout
            .contains("exited with status 2 before grading any check"),
        "{}",
        got.stdout
    );
    assert!(
        job.summary().contains("no-such-interpreter"),
        "{}",
        job.summary()
    );
}

/// Linux refuses to start a program with an environment string over 128 KiB, and the
/// reporter gets the result in one: a result with long feedback is cut to fit, its points
/// unchanged. (A stand-in grader writes the long result: no real one is that talkative.)
#[test]
fn a_result_too_long_for_the_environment_is_cut_and_keeps_its_points() {
    if !(tool("jq") && tool("node")) {
        return;
    }
    let long = "x".repeat(20_000);
    let tests: Vec<serde_json::Value> = (0..21)
        .map(|i| {
            serde_json::json!({"name": format!("check {i}"), "status": if i < 5 { "fail" } else { "pass" },
                "score": if i < 5 { 0.0 } else { 1.0 }, "message": long, "test_code": "python3 x.py",
                "filename": "x.py", "line_no": 0, "duration": 1})
        })
        .collect();
    let full =
        serde_json::json!({"version": 1, "status": "fail", "max_score": 21.0, "tests": tests});
    let staged = tempfile::tempdir().unwrap();
    let file = staged.path().join("classroom.json");
    std::fs::write(&file, serde_json::to_string_pretty(&full).unwrap()).unwrap();
    let job = Job::with_sudo(&format!(
        "while [ $# -gt 0 ]; do [ \"$1\" = --out ] && out=$2; shift; done\n\
         mkdir -p \"$out/talkative\" && cp {} \"$out/talkative/classroom.json\" && exit 1",
        file.display()
    ));
    let workspace = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(job.runner_temp().join("poolgrade")).unwrap();
    let out = job.run(
        &step_script(&template(), "poolgrade"),
        workspace.path(),
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let result = job.result();
    assert!(result.len() <= 100_000, "{} bytes", result.len());
    let json = decoded(&result);
    assert_eq!(json["max_score"], 21.0);
    let tests = json["tests"].as_array().unwrap();
    assert_eq!(tests.len(), 21);
    assert!(tests
        .iter()
        .all(|t| t["message"].as_str().unwrap().contains("[cut:")));
    let got = report(&result, job.runner_temp());
    assert_eq!(got.points, Some((16.0, 21.0)), "{}", got.stdout);
    assert!(job
        .summary()
        .starts_with("# Autograding: 16 / 21 points, fail"));
}

#[test]
fn the_download_runs_nothing_whose_checksum_differs() {
    let workflow = template();
    let script = step_script(&workflow, "install");
    let job = Job::new(&[]);
    let binary = bin("poolgrade");
    let wrong = "0".repeat(64);
    let out = job.run(&script, job.runner_temp(), &install_vars(&binary, &wrong));
    let shown = text(&out);
    assert!(!out.status.success(), "{shown}");
    assert!(
        shown.contains("::error title=poolgrade checksum mismatch::"),
        "{shown}"
    );
    assert!(
        shown.contains(&sha256_of(&binary)),
        "the actual sum is shown: {shown}"
    );
    assert!(!job.runner_temp().join("poolgrade/poolgrade").exists());
    assert!(!job.runner_temp().join("poolgrade/download").exists());

    // The right sum, given in capitals with a trailing newline, is accepted.
    let sum = format!("{}\n", sha256_of(&binary).to_uppercase());
    let out = job.run(&script, job.runner_temp(), &install_vars(&binary, &sum));
    assert!(out.status.success(), "{}", text(&out));
    let installed = job.runner_temp().join("poolgrade/poolgrade");
    assert_eq!(sha256_of(&installed), sha256_of(&binary));
}

#[test]
fn the_download_names_the_variables_a_course_left_unset() {
    let script = step_script(&template(), "install");
    let job = Job::new(&[]);
    let out = job.run(&script, job.runner_temp(), &[]);
    let shown = text(&out);
    assert!(!out.status.success(), "{shown}");
    for name in [
        "POOLGRADE_SHA256",
        "POOLGRADE_REPOSITORY",
        "POOLGRADE_VERSION",
    ] {
        assert!(shown.contains(name), "{name}: {shown}");
    }
    assert!(
        shown.contains("::error title=poolgrade is not configured::"),
        "{shown}"
    );
}

#[test]
fn the_template_has_classrooms_names_and_downloads_what_a_release_publishes() {
    let workflow = template();
    assert!(workflow.contains("\nname: Autograding Tests\n"));
    assert!(workflow.contains("\n  run-autograding-tests:\n"));
    for trigger in ["push:", "repository_dispatch:", "workflow_dispatch:"] {
        assert!(workflow.contains(&format!("\n  {trigger}\n")), "{trigger}");
    }
    // The least permissions: reading the repository, nothing else (no `checks: write`).
    assert!(workflow.contains("\npermissions:\n  contents: read\n\njobs:\n"));
    assert!(!workflow.lines().any(|l| l.trim() == "checks: write"));
    assert!(workflow.contains("uses: classroom-resources/autograding-grading-reporter@v1"));
    assert!(workflow.contains("runners: poolgrade"));
    assert!(workflow.contains("POOLGRADE_RESULTS: ${{ steps.poolgrade.outputs.result }}"));
    assert!(
        !workflow.contains("cargo "),
        "student repositories compile no Rust"
    );
    let install = step_script(&workflow, "install");
    assert!(install.contains(
        "https://github.com/$POOLGRADE_REPOSITORY/releases/download/$POOLGRADE_VERSION/poolgrade-x86_64-linux"
    ));
    let release = std::fs::read_to_string(root().join(".github/workflows/release.yml")).unwrap();
    assert!(release.contains("tags: [\"v*\"]"));
    assert!(release.contains("dist/poolgrade-x86_64-linux dist/poolgrade-x86_64-linux.sha256"));
    assert!(release.contains("sha256sum poolgrade-x86_64-linux >poolgrade-x86_64-linux.sha256"));
}

#[test]
fn a_release_renders_the_template_with_itself_as_the_default() {
    let script = root().join("scripts/render-classroom-template.sh");
    let sha = "ab".repeat(32);
    let out = Command::new(&script)
        .args(["course/poolgrade", "v1.2.3", &sha.to_uppercase()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let rendered = String::from_utf8(out.stdout).unwrap();
    let original = template();
    let changed: Vec<(&str, &str)> = original
        .lines()
        .zip(rendered.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(original.lines().count(), rendered.lines().count());
    assert_eq!(
        changed.iter().map(|(_, b)| b.trim()).collect::<Vec<_>>(),
        [
            "POOLGRADE_REPOSITORY: ${{ vars.POOLGRADE_REPOSITORY || 'course/poolgrade' }}",
            "POOLGRADE_VERSION: ${{ vars.POOLGRADE_VERSION || 'v1.2.3' }}",
            format!("POOLGRADE_SHA256: ${{{{ vars.POOLGRADE_SHA256 || '{sha}' }}}}").as_str(),
        ]
    );
    // Values that could end the YAML string are refused.
    for args in [
        ["course/po'ol", "v1", sha.as_str()],
        ["course/poolgrade", "v1' }}", sha.as_str()],
        ["course/poolgrade", "v1", "abc"],
    ] {
        let out = Command::new(&script).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
    }
}
