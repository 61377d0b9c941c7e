//! Container tests: the reference server in its image, probed from client containers that
//! join its IPC (and PID) namespace; the agent in the grader image, driven from the host;
//! `docker compose up` run as a newcomer types it, in a fresh copy of the repository; a
//! hostile batch through Compose with a grader killed halfway; and the unprivileged backend
//! in a container with Docker's default capabilities, as Gradescope and PrairieLearn run it.
//! Built with testcontainers and the Compose command; every container is removed when its
//! handle drops or its project goes down.
//!
//! Needs a Docker engine and the images (`scripts/build-images.sh`). When either is missing
//! the tests print `SKIPPED: ...` and return; with `REQUIRE_DOCKER=1` (as `.ci/run` sets)
//! they fail instead, so CI never passes them silently. `POOLGRADE_IMAGE` and
//! `POOLGRADE_REFERENCE_IMAGE` name other images.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serial_test::serial;
use testcontainers::core::wait::ExitWaitStrategy;
use testcontainers::core::{Mount, WaitFor};
use testcontainers::runners::SyncRunner;
use testcontainers::{Container, GenericImage, ImageExt};

use crate::common::{bin, fixtures, python_sysv_ipc};

/// An image reference split into name and tag.
fn split_ref(full: &str) -> (String, String) {
    match full.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name.to_string(), tag.to_string()),
        _ => (full.to_string(), "latest".to_string()),
    }
}

/// The grader image: `POOLGRADE_IMAGE` or `poolgrade:latest`.
fn grader_ref() -> String {
    std::env::var("POOLGRADE_IMAGE").unwrap_or_else(|_| "poolgrade:latest".into())
}

/// The reference image: `POOLGRADE_REFERENCE_IMAGE` or `poolgrade-reference:latest`.
fn reference_ref() -> String {
    std::env::var("POOLGRADE_REFERENCE_IMAGE")
        .unwrap_or_else(|_| "poolgrade-reference:latest".into())
}

/// Whether the Docker engine answers and both images exist (see
/// [`crate::common::images_available`]).
fn docker_available(test: &str) -> bool {
    crate::common::images_available(test, &[grader_ref(), reference_ref()])
}

fn image(full: &str) -> GenericImage {
    let (name, tag) = split_ref(full);
    GenericImage::new(name, tag)
}

/// The reference server, in pool or spawn mode, in a container whose IPC namespace others
/// may join. Returns once it printed its ready line.
fn start_server(mode: &str) -> Container<GenericImage> {
    image(&reference_ref())
        .with_wait_for(WaitFor::message_on_stdout("timeserver: ready"))
        .with_cmd([
            "timeserver",
            "--mode",
            mode,
            "--delay",
            "0.3",
            "--workers",
            "2",
        ])
        .with_startup_timeout(Duration::from_secs(60))
        .with_host_config_modifier(|hc| {
            hc.ipc_mode = Some("shareable".into());
            hc.network_mode = Some("none".into());
        })
        .start()
        .expect("start the server container")
}

/// Runs `cmd` in a container of `image_ref` joined to `target`'s IPC namespace (and PID
/// namespace with `share_pids`), waits for it to exit, and returns (exit code, stdout,
/// stderr).
fn run_joined(
    image_ref: &str,
    target: &Container<GenericImage>,
    share_pids: bool,
    cmd: &[&str],
) -> (Option<i64>, String, String) {
    let target = format!("container:{}", target.id());
    let client = image(image_ref)
        .with_wait_for(WaitFor::Exit(ExitWaitStrategy::new()))
        .with_cmd(cmd.iter().copied())
        .with_startup_timeout(Duration::from_secs(120))
        .with_host_config_modifier(move |hc| {
            hc.ipc_mode = Some(target.clone());
            if share_pids {
                hc.pid_mode = Some(target.clone());
            }
            hc.network_mode = Some("none".into());
        })
        .start()
        .expect("start a client container");
    let code = client.exit_code().expect("client exit code");
    let out = String::from_utf8_lossy(&client.stdout_to_vec().unwrap_or_default()).into_owned();
    let err = String::from_utf8_lossy(&client.stderr_to_vec().unwrap_or_default()).into_owned();
    (code, out, err)
}

/// Waits (with a deadline) for a container to stop running.
fn wait_stopped(c: &Container<GenericImage>, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if matches!(c.is_running(), Ok(false)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A shell script that starts `timeclient --get --pid P` for each pid at once and prints
/// `P <exit status> <reply>` per client.
fn concurrent_gets(pids: &[u32]) -> String {
    // Each client writes its exit status next to its reply (dash's `wait` keeps only one).
    let mut s = String::new();
    for p in pids {
        s.push_str(&format!(
            "( timeclient --get --pid {p} >/tmp/{p} 2>&1; echo \"$?\" >/tmp/{p}.rc ) & "
        ));
    }
    s.push_str("wait; ");
    for p in pids {
        s.push_str(&format!(
            "echo \"{p} $(cat /tmp/{p}.rc) $(cat /tmp/{p})\"; "
        ));
    }
    s
}

#[test]
#[serial(docker)]
fn concurrent_clients_in_joined_containers_each_get_their_own_reply() {
    if !docker_available("concurrent_clients_in_joined_containers_each_get_their_own_reply") {
        return;
    }
    let server = start_server("pool");
    // Two client containers at once, three clients each, all with distinct pids: a reply
    // routed to the wrong type would leave some client waiting until its timeout (exit 1).
    let groups: [&[u32]; 2] = [&[1001, 1002, 1003], &[2001, 2002, 2003]];
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = groups
            .iter()
            .map(|pids| {
                let script = concurrent_gets(pids);
                let server = &server;
                s.spawn(move || run_joined(&reference_ref(), server, false, &["sh", "-c", &script]))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client thread"))
            .collect()
    });
    for ((code, out, err), pids) in results.iter().zip(groups) {
        assert_eq!(*code, Some(0), "client container failed: {out}{err}");
        for p in pids {
            let line = out
                .lines()
                .find(|l| l.starts_with(&format!("{p} ")))
                .unwrap_or_else(|| panic!("no result for pid {p} in {out:?}"));
            assert!(
                line.starts_with(&format!("{p} 0 Server response: ")),
                "client with pid {p} got no reply: {line:?}"
            );
        }
    }
    // A client that uses its own pid (1 in its container) is routed too.
    let (code, out, err) = run_joined(&reference_ref(), &server, false, &["timeclient", "--get"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.starts_with("Server response: "), "{out:?}");
}

#[test]
#[serial(docker)]
fn the_stop_message_ends_the_server_container_with_status_0() {
    if !docker_available("the_stop_message_ends_the_server_container_with_status_0") {
        return;
    }
    let server = start_server("pool");
    let (code, out, err) = run_joined(&reference_ref(), &server, false, &["timeclient", "--stop"]);
    assert_eq!(code, Some(0), "timeclient --stop failed: {out}{err}");
    assert!(
        wait_stopped(&server, Duration::from_secs(60)),
        "the server container still runs after the stop message"
    );
    assert_eq!(server.exit_code().expect("server exit code"), Some(0));
    let log = String::from_utf8_lossy(&server.stderr_to_vec().unwrap_or_default()).into_owned();
    assert!(log.contains("stop message"), "server said: {log:?}");
}

/// Starts six clients at once from a container sharing the server's PID namespace and samples
/// `/proc/1/task` (the server is PID 1 there) until they end. Prints
/// `{"base": threads before, "new": thread ids never seen before, "ok": clients answered}`.
const THREAD_PROBE: &str = r#"
import json, os, subprocess, time
task = "/proc/1/task"
base = set(os.listdir(task))
procs = [subprocess.Popen(["timeclient", "--get", "--pid", str(300 + i)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
         for i in range(6)]
seen = set(base)
while any(p.poll() is None for p in procs):
    seen |= set(os.listdir(task))
    time.sleep(0.005)
ok = sum(1 for p in procs if p.wait() == 0)
print(json.dumps({"base": len(base), "new": len(seen - base), "ok": ok}))
"#;

fn thread_probe(mode: &str) -> serde_json::Value {
    let server = start_server(mode);
    let (code, out, err) = run_joined(
        &reference_ref(),
        &server,
        true,
        &["python3", "-c", THREAD_PROBE],
    );
    assert_eq!(code, Some(0), "thread probe failed: {out}{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("probe printed {out:?} ({e}); stderr {err:?}"));
    assert_eq!(v["ok"], 6, "not every client was answered: {v}");
    v
}

#[test]
#[serial(docker)]
fn a_pool_server_starts_no_thread_per_request_and_a_spawn_server_does() {
    if !docker_available("a_pool_server_starts_no_thread_per_request_and_a_spawn_server_does") {
        return;
    }
    let pool = thread_probe("pool");
    assert_eq!(
        pool["new"], 0,
        "the pool server started threads while serving: {pool}"
    );
    let spawn = thread_probe("spawn");
    // Each request's thread lives for the 0.3 s delay: the 5 ms sampling sees most of them.
    assert!(
        spawn["new"].as_u64().unwrap_or(0) >= 3,
        "the spawn server showed too few new threads: {spawn}"
    );
}

#[test]
#[serial(docker)]
fn the_grader_image_holds_no_reference_server() {
    if !docker_available("the_grader_image_holds_no_reference_server") {
        return;
    }
    let probe = image(&grader_ref())
        .with_wait_for(WaitFor::Exit(ExitWaitStrategy::new()))
        .with_cmd([
            "sh",
            "-c",
            "for b in timeserver timeclient primes; do command -v $b && echo FOUND $b; done; find / -xdev -name 'timeserver*' 2>/dev/null; echo done",
        ])
        .with_startup_timeout(Duration::from_secs(60))
        .start()
        .expect("start a container of the grader image");
    let out = String::from_utf8_lossy(&probe.stdout_to_vec().unwrap_or_default()).into_owned();
    assert!(out.ends_with("done\n"), "{out}");
    assert!(
        !out.contains("FOUND") && !out.contains("timeserver"),
        "{out}"
    );
}

/// The agent in the grader image, driven from the host through a bind-mounted control folder
/// (as a grader in a second container drives it): each server runs under a uid leased for it,
/// with the rlimits, and a stop kills everything of that uid, orphans and fork bombs alike.
#[test]
#[serial(docker)]
fn the_agent_in_a_container_runs_servers_under_leased_uids_and_stops_them_whole() {
    use grader::agent::AgentLauncher;
    use grader::sut::{Exit, LaunchError, LaunchSpec, Launcher, Limits};
    use std::os::unix::fs::PermissionsExt;

    if !docker_available(
        "the_agent_in_a_container_runs_servers_under_leased_uids_and_stops_them_whole",
    ) {
        return;
    }
    let ctl = tempfile::tempdir().expect("tempdir");
    let sub = tempfile::tempdir().expect("tempdir");
    std::fs::write(sub.path().join("server.py"), "print('hello')\n").unwrap();
    std::fs::set_permissions(sub.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let agent = image(&grader_ref())
        .with_cmd(["poolgrade", "agent", "--ctl", "/run/poolgrade-ctl"])
        .with_mount(Mount::bind_mount(
            ctl.path().to_string_lossy().into_owned(),
            "/run/poolgrade-ctl",
        ))
        .with_mount(Mount::bind_mount(
            sub.path().to_string_lossy().into_owned(),
            "/grading/sub",
        ))
        .with_startup_timeout(Duration::from_secs(60))
        .with_host_config_modifier(|hc| {
            hc.ipc_mode = Some("shareable".into());
            hc.network_mode = Some("none".into());
            hc.pids_limit = Some(512);
            hc.cap_drop = Some(vec!["ALL".into()]);
            hc.cap_add = Some(
                [
                    "SETUID",
                    "SETGID",
                    "KILL",
                    "CHOWN",
                    "DAC_OVERRIDE",
                    "FOWNER",
                ]
                .map(String::from)
                .to_vec(),
            );
        })
        .start()
        .expect("start the agent container");
    let launcher = AgentLauncher::connect(ctl.path(), Duration::from_secs(60))
        .expect("the agent announced itself");
    assert_eq!(
        launcher.agent_pid(),
        1,
        "the agent is not PID 1 of its container"
    );
    let spec = |script: &str| {
        let mut spec = LaunchSpec::new(
            "/grading/sub",
            vec!["python3".into(), "-c".into(), script.into()],
        );
        spec.limits = Limits {
            max_processes: 300,
            max_memory_mib: 512,
            ..Limits::default()
        };
        spec
    };
    // A server that reports its uid and leaves a detached sleeper behind.
    let mut sut = launcher
        .launch(&spec(
            "import os, subprocess, time\nprint('uid', os.getuid(), 'files', os.listdir('.'), flush=True)\nsubprocess.Popen(['setsid', 'sleep', '300'])\ntime.sleep(300)",
        ))
        .expect("launch through the agent");
    let pid = sut.pid();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !sut.output_tail().contains("uid ") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let said = sut.output_tail();
    let uid: u32 = said
        .split_whitespace()
        .nth(1)
        .and_then(|u| u.parse().ok())
        .unwrap_or_else(|| panic!("no uid in {said:?}"));
    assert!(
        uid >= 10_000 && uid != 65_534,
        "the server ran as uid {uid}"
    );
    assert!(
        said.contains("server.py"),
        "its copy of the submission: {said}"
    );
    let probe = format!("grep -E 'Max (processes|address space)' /proc/{pid}/limits; ps -o user= -e 2>/dev/null | sort -u; echo done");
    let (code, out, err) = run_joined(&grader_ref(), &agent, true, &["sh", "-c", &probe]);
    assert_eq!(code, Some(0), "probe failed: {out}{err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("Max processes") && l.split_whitespace().nth(2) == Some("300")),
        "RLIMIT_NPROC not applied: {out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains("address space") && l.contains(&(512u64 << 20).to_string())),
        "RLIMIT_AS not applied: {out}"
    );
    assert_eq!(
        sut.poll_exit(),
        None,
        "the server ended early: {}",
        sut.output_tail()
    );
    sut.kill_all();
    assert_eq!(sut.poll_exit(), Some(Exit::Signal(9)));
    drop(sut);
    let survivors = |what: &str| {
        let (code, out, err) = run_joined(
            &grader_ref(),
            &agent,
            true,
            &[
                "sh",
                "-c",
                "for p in /proc/[0-9]*; do cat $p/comm; done; echo queues $(tail -n +2 /proc/sysvipc/msg | wc -l)",
            ],
        );
        assert_eq!(code, Some(0), "{err}");
        for name in ["sleep", "python3"] {
            assert!(
                !out.lines().any(|l| l == name),
                "{name} survived {what}: {out}"
            );
        }
        assert!(out.contains("queues 0"), "queues left after {what}: {out}");
    };
    survivors("the stop of a server with a detached child");

    // A fork bomb (held by RLIMIT_NPROC and the container's pids limit) is stopped whole.
    let mut bomb = launcher
        .launch(&spec(
            "import os, sysv_ipc\nsysv_ipc.MessageQueue(666, sysv_ipc.IPC_CREAT)\nprint('armed', flush=True)\nwhile True:\n    try: os.fork()\n    except OSError: pass",
        ))
        .expect("launch the fork bomb");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !bomb.output_tail().contains("armed") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    bomb.kill_all();
    assert_eq!(
        bomb.poll_exit(),
        Some(Exit::Signal(9)),
        "{}",
        bomb.output_tail()
    );
    drop(bomb);
    survivors("the stop of a fork bomb");

    // A program that does not exist is refused with a typed error.
    let mut missing = spec("");
    missing.command = vec!["no-such-server".into()];
    let err = launcher.launch(&missing).err().expect("launch must fail");
    assert!(matches!(err, LaunchError::Spawn { .. }), "{err}");
    // `docker stop` reaches the agent (PID 1 handles SIGTERM) and it exits 0.
    agent.stop_with_timeout(Some(20)).expect("stop the agent");
    assert_eq!(agent.exit_code().expect("agent exit code"), Some(0));
}

/// Verdicts: submission -> stage -> check id -> "passed" | "failed" | "error".
type Verdicts = BTreeMap<String, BTreeMap<String, BTreeMap<String, String>>>;

/// What a check observed, from JSON Lines events (for the message of a failed assertion).
fn observed_of(jsonl: &str, submission: &str, stage: &str, id: &str) -> String {
    for line in jsonl.lines().filter(|l| l.starts_with('{')) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["event"] == "stage-finished"
            && v["report"]["submission"] == submission
            && v["report"]["stage"] == stage
        {
            for o in v["report"]["outcomes"].as_array().into_iter().flatten() {
                if o["id"] == id {
                    return format!("{}\n{}", o["observed"], o["server_output"]);
                }
            }
        }
    }
    String::new()
}

/// The verdicts of the `stage-finished` events in JSON Lines.
fn verdicts_of(jsonl: &str) -> Verdicts {
    let mut got = Verdicts::new();
    for line in jsonl.lines().filter(|l| l.starts_with('{')) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if v["event"] != "stage-finished" {
            continue;
        }
        let r = &v["report"];
        let stage = got
            .entry(r["submission"].as_str().expect("submission").to_string())
            .or_default()
            .entry(r["stage"].as_str().expect("stage").to_string())
            .or_default();
        for o in r["outcomes"].as_array().expect("outcomes") {
            stage.insert(
                o["id"].as_str().expect("id").to_string(),
                o["status"].as_str().expect("status").to_string(),
            );
        }
    }
    got
}

/// The verdicts a fixture's `expected.toml` states, in the words of the events.
fn expected_of(name: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    crate::grader::fixture_expectations(&fixtures().join("submissions").join(name))
        .verdicts
        .into_iter()
        .map(|(stage, checks)| {
            let words = checks
                .into_iter()
                .map(|(id, verdict)| {
                    let word = if verdict == "pass" {
                        "passed"
                    } else {
                        "failed"
                    };
                    (id, word.to_string())
                })
                .collect();
            (stage, words)
        })
        .collect()
}

/// `docker compose` (v2) or `docker-compose`, if either runs.
fn compose_command() -> Option<Vec<&'static str>> {
    let ok = |cmd: &[&str]| {
        Command::new(cmd[0])
            .args(&cmd[1..])
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    [vec!["docker", "compose"], vec!["docker-compose"]]
        .into_iter()
        .find(|c| ok(c))
}

fn require_compose(test: &str) -> Option<Vec<&'static str>> {
    let found = compose_command();
    if found.is_none() {
        if std::env::var("REQUIRE_DOCKER").as_deref() == Ok("1") {
            panic!("REQUIRE_DOCKER=1 but neither `docker compose` nor `docker-compose` runs");
        }
        eprintln!("SKIPPED: {test}: neither `docker compose` nor `docker-compose` runs");
    }
    found
}

/// Copies a fixture submission (its files, not `expected.toml`) into `dest`.
fn copy_fixture(name: &str, dest: &Path) {
    std::fs::create_dir_all(dest).expect("create submission folder");
    for entry in std::fs::read_dir(fixtures().join("submissions").join(name))
        .expect("fixture folder")
        .flatten()
    {
        if entry.path().is_file() && entry.file_name() != "expected.toml" {
            std::fs::copy(entry.path(), dest.join(entry.file_name())).expect("copy fixture file");
        }
    }
}

/// Ids of what compose project `project` left behind: containers, then volumes.
fn compose_leftovers(project: &str) -> Vec<String> {
    let label = format!("label=com.docker.compose.project={project}");
    let mut left = Vec::new();
    for args in [
        vec!["ps", "-aq", "--filter", &label],
        vec!["volume", "ls", "-q", "--filter", &label],
    ] {
        let out = Command::new("docker").args(&args).output().expect("docker");
        left.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(|l| format!("{} {l}", args[0])),
        );
    }
    left
}

/// Runs `compose args...` in `dir` as project `project`, with `env`, under `timeout`
/// (killed past it). Returns (exit code, stdout and stderr).
fn run_compose(
    compose: &[&str],
    dir: &Path,
    project: &str,
    env: &[(&str, &Path)],
    args: &[&str],
    timeout: Duration,
) -> (Option<i32>, String) {
    let mut cmd = Command::new(compose[0]);
    cmd.args(&compose[1..])
        .args(args)
        .current_dir(dir)
        .env("COMPOSE_PROJECT_NAME", project)
        .env("POOLGRADE_IMAGE", grader_ref())
        .env_remove("SUBMISSIONS")
        .env_remove("RESULTS")
        .env_remove("RUBRIC");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = assert_cmd::Command::from_std(cmd)
        .timeout(timeout)
        .output()
        .expect("run compose");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&child.stdout),
        String::from_utf8_lossy(&child.stderr)
    );
    (child.status.code(), log)
}

/// Takes a project down (containers and volumes), whatever happened.
struct ComposeProject<'a> {
    compose: Vec<&'static str>,
    dir: &'a Path,
    name: String,
}

impl Drop for ComposeProject<'_> {
    fn drop(&mut self) {
        let mut cmd = Command::new(self.compose[0]);
        cmd.args(&self.compose[1..])
            .args(["down", "--volumes", "--remove-orphans"])
            .current_dir(self.dir)
            .env("COMPOSE_PROJECT_NAME", &self.name);
        // A wedged engine must fail the test (its leftovers are checked), never hang it.
        let _ = assert_cmd::Command::from_std(cmd)
            .timeout(Duration::from_secs(180))
            .output();
    }
}

/// The issue's newcomer: in a fresh copy of the repository (the files git tracks, owned by
/// an ordinary user) with no `results/` folder, plain `docker compose up` grades the bundled
/// samples, writes `./results` owned by that user, and ends by itself, with the verdicts of
/// native grading.
#[test]
// Grades natively too: never beside the sandbox tests, which look for leftover sandboxes.
#[serial(docker, sandbox)]
fn docker_compose_up_in_a_fresh_copy_grades_the_samples_and_ends() {
    use std::os::unix::fs::MetadataExt;
    let test = "docker_compose_up_in_a_fresh_copy_grades_the_samples_and_ends";
    if !docker_available(test) || !python_sysv_ipc() {
        return;
    }
    let Some(compose) = require_compose(test) else {
        return;
    };
    let clone = tempfile::tempdir().expect("tempdir");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(repo)
        .output()
        .expect("git ls-files");
    for name in files.stdout.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let rel = PathBuf::from(String::from_utf8_lossy(name).into_owned());
        let (from, to) = (repo.join(&rel), clone.path().join(&rel));
        if from.is_file() {
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(&from, &to).unwrap();
        }
    }
    assert!(!clone.path().join("results").exists());
    // An ordinary user's clone.
    let user = 4242;
    Command::new("chown")
        .args(["-R", &format!("{user}:{user}")])
        .arg(clone.path())
        .status()
        .expect("chown");
    let project = format!("poolgrade-fresh-{}", std::process::id());
    let _down = ComposeProject {
        compose: compose.clone(),
        dir: clone.path(),
        name: project.clone(),
    };
    let began = Instant::now();
    let (code, log) = run_compose(
        &compose,
        clone.path(),
        &project,
        &[],
        &["up"],
        Duration::from_secs(900),
    );
    assert_eq!(code, Some(0), "`{} up` failed:\n{log}", compose.join(" "));
    eprintln!(
        "{test}: `{} up` ended by itself after {:.0} s",
        compose.join(" "),
        began.elapsed().as_secs_f64()
    );
    let results = clone.path().join("results");
    assert_eq!(
        std::fs::metadata(&results)
            .expect("./results was written")
            .uid(),
        user,
        "./results belongs to the clone's owner"
    );
    let container = verdicts_of(&std::fs::read_to_string(results.join("events.jsonl")).unwrap());
    for sample in ["alice", "bob", "carol", "dave"] {
        assert!(
            results.join(sample).join("results.json").is_file(),
            "{sample}: {log}"
        );
        assert_eq!(std::fs::metadata(results.join(sample)).unwrap().uid(), user);
    }
    assert!(results.join("gradebook.csv").is_file());
    let native = assert_cmd::Command::new(bin("poolgrade"))
        .args(["grade", "--format", "json", "--out"])
        .arg(tempfile::tempdir().unwrap().path())
        .args(["alice", "bob", "carol", "dave"].map(|s| clone.path().join("samples").join(s)))
        .timeout(Duration::from_secs(300))
        .output()
        .unwrap();
    let native = verdicts_of(&String::from_utf8_lossy(&native.stdout));
    assert_eq!(
        container, native,
        "verdicts through compose (left) versus native (right)"
    );
    drop(_down);
    assert_eq!(compose_leftovers(&project), Vec::<String>::new());
}

/// Hostile submissions through Compose beside two correct neighbours, with one grading
/// process killed halfway: the neighbours keep full marks, every attacker gets its expected
/// verdicts, the batch completes (its container stays, so `--exit-code-from report` does
/// not abort), and the killed grader costs at most the one check it held (an error).
/// `--exit-code-from report` returns the batch's status.
#[test]
// Grades in containers: never beside the native grading tests, whose cgroup outweighs a
// container's four to one and would starve the timed checks.
#[serial(docker, sandbox)]
fn a_hostile_batch_through_compose_with_a_grader_killed_completes() {
    let test = "a_hostile_batch_through_compose_with_a_grader_killed_completes";
    if !docker_available(test) {
        return;
    }
    let Some(compose) = require_compose(test) else {
        return;
    };
    let names = [
        "correct-threads-ctime",
        "correct-mp-threadpool-iso",
        "hostile-tampers-proc",
        "hostile-attacks-grader",
        "hostile-execs-reference",
        "hostile-plants-files",
        "hostile-borrows-peer",
        "hostile-exfiltrates",
    ];
    let subs = tempfile::tempdir().expect("tempdir");
    for n in names {
        copy_fixture(n, &subs.path().join(n));
    }
    let results = tempfile::tempdir().expect("tempdir");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let project = format!("poolgrade-hostile-{}", std::process::id());
    let _down = ComposeProject {
        compose: compose.clone(),
        dir: repo,
        name: project.clone(),
    };
    // Kill grader-2's grading process (SIGKILL, from the host) once grading is under way.
    let killer = {
        let project = project.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(5));
            let out = Command::new("docker")
                .args(["ps", "-q", "--filter"])
                .arg(format!("label=com.docker.compose.project={project}"))
                .args(["--filter", "label=com.docker.compose.service=grader-2"])
                .output()
                .expect("docker ps");
            let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            let top = Command::new("docker")
                .args(["top", &id, "-eo", "pid,args"])
                .output()
                .expect("docker top");
            let listing = String::from_utf8_lossy(&top.stdout).into_owned();
            let pid = listing.lines().find_map(|l| {
                let (pid, args) = l.trim().split_once(' ')?;
                args.trim()
                    .starts_with("poolgrade grade")
                    .then(|| pid.to_owned())
            });
            pid.is_some_and(|p| {
                Command::new("kill")
                    .args(["-9", &p])
                    .status()
                    .is_ok_and(|s| s.success())
            })
        })
    };
    let (code, log) = run_compose(
        &compose,
        repo,
        &project,
        &[("SUBMISSIONS", subs.path()), ("RESULTS", results.path())],
        &["up", "--exit-code-from", "report"],
        Duration::from_secs(900),
    );
    assert!(killer.join().unwrap(), "grader-2 was not killed: {log}");
    let events = std::fs::read_to_string(results.path().join("events.jsonl"))
        .unwrap_or_else(|e| panic!("no events.jsonl ({e}):\n{log}"));
    let got = verdicts_of(&events);
    // What the killed grader held: one unit, that is one check, or Exercise 1's whole stage
    // (its checks judge the same runs, so they are claimed together).
    let mut errors = 0;
    let mut lost_units = std::collections::BTreeSet::new();
    for n in names {
        let want = expected_of(n);
        // Every stage of the default rubric was graded (an Exercise 2 fixture fails
        // Exercise 1's for want of primes_pool.py, which its expected verdicts leave out).
        assert_eq!(
            got.get(n).map(BTreeMap::len),
            Some(grader::outcome::Stage::ALL.len()),
            "{n}: stages"
        );
        for (stage, checks) in &want {
            for (id, verdict) in checks {
                let actual = &got[n][stage][id];
                if actual == "error" {
                    errors += 1;
                    let unit = if stage == "primes" { "" } else { id.as_str() };
                    lost_units.insert((n, stage.clone(), unit.to_owned()));
                    continue;
                }
                assert_eq!(
                    actual,
                    verdict,
                    "{n} {stage} {id}: {}",
                    observed_of(&events, n, stage, id)
                );
            }
        }
    }
    assert!(
        lost_units.len() <= 1,
        "the killed grader cost {} units: {lost_units:?}",
        lost_units.len()
    );
    eprintln!(
        "{test}: the killed grading process cost {errors} check(s) in {} unit(s); the batch \
         completed",
        lost_units.len()
    );
    assert_eq!(code, Some(if errors > 0 { 2 } else { 1 }), "{log}");
    // The tamperer reached nothing: its output holds no trace of success.
    assert!(
        !events.contains("TAMPERED") && !events.contains("LEAKED"),
        "{events}"
    );
    drop(_down);
    assert_eq!(compose_leftovers(&project), Vec::<String>::new());
}

/// The unprivileged backend where Gradescope and PrairieLearn run graders: a container with
/// Docker's default capabilities and seccomp profile (no `CAP_SYS_ADMIN`, no namespaces).
/// `poolgrade grade` picks the backend by itself, says so in its results, and grades a
/// correct submission beside hostile ones with the expected verdicts.
#[test]
// Grades in containers: never beside the native grading tests, whose cgroup outweighs a
// container's four to one and would starve the timed checks.
#[serial(docker, sandbox)]
fn the_unprivileged_backend_grades_hostile_fixtures_in_a_default_container() {
    use std::os::unix::fs::PermissionsExt;
    let test = "the_unprivileged_backend_grades_hostile_fixtures_in_a_default_container";
    if !docker_available(test) {
        return;
    }
    let names = [
        "correct-threads-ctime",
        "hostile-plants-files",
        "hostile-attacks-grader",
        "hostile-tampers-proc",
        "hostile-execs-reference",
        "hostile-borrows-peer",
        "hostile-exfiltrates",
    ];
    let subs = tempfile::tempdir().expect("tempdir");
    for n in names {
        copy_fixture(n, &subs.path().join(n));
    }
    std::fs::set_permissions(subs.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let grader = image(&grader_ref())
        .with_wait_for(WaitFor::Exit(ExitWaitStrategy::new()))
        .with_mount(Mount::bind_mount(
            subs.path().to_string_lossy().into_owned(),
            "/grading/submissions",
        ))
        .with_cmd([
            "poolgrade",
            "grade",
            "--format",
            "json",
            "--out",
            "/grading/out",
            "--all-in",
            "/grading/submissions",
        ])
        .with_startup_timeout(Duration::from_secs(900))
        .start()
        .expect("start the grader container");
    let out = String::from_utf8_lossy(&grader.stdout_to_vec().unwrap_or_default()).into_owned();
    let err = String::from_utf8_lossy(&grader.stderr_to_vec().unwrap_or_default()).into_owned();
    assert_eq!(grader.exit_code().unwrap(), Some(1), "{err}");
    let got = verdicts_of(&out);
    for n in names {
        let want = expected_of(n);
        for (stage, checks) in &want {
            for (id, verdict) in checks {
                assert_eq!(
                    &got[n][stage][id],
                    verdict,
                    "{n} {stage} {id}: {}\n{err}",
                    observed_of(&out, n, stage, id)
                );
            }
        }
    }
    assert!(
        out.contains("\"isolation\":\"unprivileged: "),
        "the results name the backend"
    );
    assert!(!out.contains("TAMPERED") && !out.contains("LEAKED"));
}
