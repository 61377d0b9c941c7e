//! Container tests: the reference server in the `poolgrade:latest` image, probed from client
//! containers that join its IPC (and PID) namespace, and the container-mode agent driven from
//! the host. Built with testcontainers; every container is removed when its handle drops.
//!
//! Needs a Docker engine and the image (`scripts/build-images.sh`). When either is missing the
//! tests print `SKIPPED: ...` and return; with `REQUIRE_DOCKER=1` (as `.ci/run` sets) they fail
//! instead, so CI never passes them silently. `POOLGRADE_IMAGE` names another image.
//!
//! Grading through `docker-compose.yml` (three agent/grader pairs and a merging report
//! container, run by `scripts/compose-grade.sh`) is compared with native grading, check by
//! check, on a correct and a broken fixture; that test also needs `docker compose` or
//! `docker-compose`, and python3 with sysv_ipc for the native side.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serial_test::serial;
use testcontainers::core::wait::ExitWaitStrategy;
use testcontainers::core::{Mount, WaitFor};
use testcontainers::runners::SyncRunner;
use testcontainers::{Container, GenericImage, ImageExt};

/// The image under test: `POOLGRADE_IMAGE` or `poolgrade:latest`.
fn image_ref() -> (String, String) {
    let full = std::env::var("POOLGRADE_IMAGE").unwrap_or_else(|_| "poolgrade:latest".into());
    match full.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name.to_string(), tag.to_string()),
        _ => (full, "latest".to_string()),
    }
}

/// Whether the Docker engine answers and the image exists. If not: panics with
/// `REQUIRE_DOCKER=1`, otherwise prints `SKIPPED: <test>: <why>` and returns false.
fn docker_available(test: &str) -> bool {
    let (name, tag) = image_ref();
    let why = match Command::new("docker")
        .args([
            "image",
            "inspect",
            "--format",
            "{{.Id}}",
            &format!("{name}:{tag}"),
        ])
        .output()
    {
        Err(e) => Some(format!("cannot run the docker client: {e}")),
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "no Docker engine or no image {name}:{tag} (build it with scripts/build-images.sh): {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
    };
    match why {
        None => true,
        Some(why) if std::env::var("REQUIRE_DOCKER").as_deref() == Ok("1") => {
            panic!("REQUIRE_DOCKER=1 but {why}")
        }
        Some(why) => {
            eprintln!("SKIPPED: {test}: {why}");
            false
        }
    }
}

fn image() -> GenericImage {
    let (name, tag) = image_ref();
    GenericImage::new(name, tag)
}

/// The reference server, in pool or spawn mode, in a container whose IPC namespace others
/// may join. Returns once it printed its ready line.
fn start_server(mode: &str) -> Container<GenericImage> {
    image()
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

/// Runs `cmd` in a container joined to `server`'s IPC namespace (and PID namespace with
/// `share_pids`), waits for it to exit, and returns (exit code, stdout, stderr).
fn run_client(
    server: &Container<GenericImage>,
    share_pids: bool,
    cmd: &[&str],
) -> (Option<i64>, String, String) {
    let target = format!("container:{}", server.id());
    let client = image()
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
                s.spawn(move || run_client(server, false, &["sh", "-c", &script]))
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
    let (code, out, err) = run_client(&server, false, &["timeclient", "--get"]);
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
    let (code, out, err) = run_client(&server, false, &["timeclient", "--stop"]);
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
    let (code, out, err) = run_client(&server, true, &["python3", "-c", THREAD_PROBE]);
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

/// The container-mode agent, driven from the host through a bind-mounted control directory:
/// launch, limits, output, stop (killing an orphan that left the process group) and queues.
#[test]
#[serial(docker)]
fn the_agent_in_a_container_launches_limits_and_stops_servers() {
    use poolgrade::grader::agent::AgentLauncher;
    use poolgrade::grader::sut::{Exit, LaunchSpec, Launcher, Limits};
    use std::os::unix::fs::PermissionsExt;

    if !docker_available("the_agent_in_a_container_launches_limits_and_stops_servers") {
        return;
    }
    let ctl = tempfile::tempdir().expect("tempdir");
    // The agent runs as uid 10001: let it write the control files.
    std::fs::set_permissions(ctl.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let agent = image()
        .with_cmd(["poolgrade", "agent", "--ctl", "/run/poolgrade"])
        .with_mount(Mount::bind_mount(
            ctl.path().to_string_lossy().into_owned(),
            "/run/poolgrade",
        ))
        .with_startup_timeout(Duration::from_secs(60))
        .with_host_config_modifier(|hc| {
            hc.ipc_mode = Some("shareable".into());
            hc.network_mode = Some("none".into());
            hc.pids_limit = Some(512);
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

    let spec = |command: &[&str]| {
        let mut spec = LaunchSpec::new("/work", command.iter().map(|s| s.to_string()).collect());
        spec.limits = Limits {
            max_processes: 300,
            max_memory_mib: 512,
            ..Limits::default()
        };
        spec
    };
    // A server whose shell also leaves a sleeper in its own session: the stop must kill both.
    let mut sut = launcher
        .launch(&spec(&[
            "sh",
            "-c",
            "setsid sleep 300 & exec timeserver --mode pool --workers 2",
        ]))
        .expect("launch through the agent");
    let pid = sut.pid();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !sut.output_tail().contains("timeserver: ready") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let probe = format!(
        "grep -E 'Max (processes|address space)' /proc/{pid}/limits; timeclient --get --pid 4242"
    );
    let (code, out, err) = run_client(&agent, true, &["sh", "-c", &probe]);
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
    assert!(out.contains("Server response: "), "no reply: {out}");
    assert_eq!(
        sut.poll_exit(),
        None,
        "the server ended early: {}",
        sut.output_tail()
    );
    sut.kill_all();
    assert_eq!(sut.poll_exit(), Some(Exit::Signal(9)));
    assert!(
        sut.output_tail().contains("timeserver: ready"),
        "{}",
        sut.output_tail()
    );
    drop(sut);
    let survivors = |what: &str| {
        let (code, out, err) = run_client(
            &agent,
            true,
            &[
                "sh",
                "-c",
                "for p in /proc/[0-9]*; do cat $p/comm; done; echo queues $(tail -n +2 /proc/sysvipc/msg | wc -l)",
            ],
        );
        assert_eq!(code, Some(0), "{err}");
        for name in ["sleep", "timeserver", "python3"] {
            assert!(
                !out.lines().any(|l| l == name),
                "{name} survived {what}: {out}"
            );
        }
        assert!(out.contains("queues 0"), "queues left after {what}: {out}");
    };
    survivors("the stop of a server with an orphan");

    // A fork bomb (held by RLIMIT_NPROC and the container's pids limit) is stopped whole.
    let mut bomb = launcher
        .launch(&spec(&[
            "python3",
            "-c",
            "import os, sysv_ipc\nsysv_ipc.MessageQueue(666, sysv_ipc.IPC_CREAT)\nprint('armed', flush=True)\nwhile True:\n    try: os.fork()\n    except OSError: pass",
        ]))
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
    let err = launcher
        .launch(&spec(&["no-such-server"]))
        .err()
        .expect("launch must fail");
    assert!(
        matches!(err, poolgrade::grader::sut::LaunchError::Spawn { .. }),
        "{err}"
    );
    // `docker stop` reaches the agent (PID 1 handles SIGTERM) and it exits 0.
    agent.stop_with_timeout(Some(20)).expect("stop the agent");
    assert_eq!(agent.exit_code().expect("agent exit code"), Some(0));
}

/// Verdicts: submission -> stage -> check id -> "passed" | "failed".
type Verdicts = BTreeMap<String, BTreeMap<String, BTreeMap<String, String>>>;

/// The verdicts of the `stage-finished` events in JSON Lines (`grade --format json`, or the
/// merged `events.jsonl` of a compose run).
fn verdicts_of(jsonl: &str) -> Verdicts {
    let mut got = Verdicts::new();
    for line in jsonl.lines().filter(|l| !l.trim().is_empty()) {
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

/// Copies a fixture submission (its files, not `expected.toml`) into `dest`, readable by the
/// containers' uid 10001.
fn copy_submission(from: &Path, dest: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dest).expect("create submission folder");
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o755)).unwrap();
    for entry in std::fs::read_dir(from).expect("fixture folder").flatten() {
        let path = entry.path();
        if path.is_file() && entry.file_name() != "expected.toml" {
            let to = dest.join(entry.file_name());
            std::fs::copy(&path, &to).expect("copy fixture file");
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o644)).unwrap();
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

/// The issue's comparison: a correct and a broken submission graded natively and through
/// Docker Compose (sharded over three agent/grader pairs, merged by the report container)
/// get the same verdict for every check of both stages, the same exit status, the result
/// files, and nothing is left behind.
#[test]
// Also grades natively: never beside the grader tests, which look for leftover sandboxes.
#[serial(docker, sandbox)]
fn compose_grading_gives_the_native_verdicts_check_by_check() {
    use crate::common::{bin, fixtures, python_sysv_ipc};
    let test = "compose_grading_gives_the_native_verdicts_check_by_check";
    if !docker_available(test) {
        return;
    }
    let Some(compose) = compose_command() else {
        if std::env::var("REQUIRE_DOCKER").as_deref() == Ok("1") {
            panic!("REQUIRE_DOCKER=1 but neither `docker compose` nor `docker-compose` runs");
        }
        eprintln!("SKIPPED: {test}: neither `docker compose` nor `docker-compose` runs");
        return;
    };
    if !python_sysv_ipc() {
        eprintln!("SKIPPED: {test}: no python3 with sysv_ipc for the native side");
        return;
    }
    let names = ["correct-threads-ctime", "shared-pid-race"];
    let subs = tempfile::tempdir().expect("tempdir");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(subs.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    for name in names {
        copy_submission(
            &fixtures().join("submissions").join(name),
            &subs.path().join(name),
        );
    }

    let native_out = tempfile::tempdir().expect("tempdir");
    let native = Command::new(bin("poolgrade"))
        .args(["grade", "--format", "json", "--out"])
        .arg(native_out.path())
        .args(names.map(|n| subs.path().join(n)))
        .output()
        .expect("run poolgrade grade");
    let native_code = native.status.code();
    assert!(
        matches!(native_code, Some(0 | 1)),
        "native grading failed: {}",
        String::from_utf8_lossy(&native.stderr)
    );
    let native_verdicts = verdicts_of(&String::from_utf8_lossy(&native.stdout));

    let results = tempfile::tempdir().expect("tempdir");
    let project = format!("poolgrade-test-{}", std::process::id());
    let (name, tag) = image_ref();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/compose-grade.sh");
    let run = Command::new(&script)
        .arg(subs.path())
        .arg(results.path())
        .env("POOLGRADE_IMAGE", format!("{name}:{tag}"))
        .env("COMPOSE_PROJECT_NAME", &project)
        .env_remove("RUBRIC")
        .output()
        .expect("run scripts/compose-grade.sh");
    let log = format!(
        "{} ({}):\n{}{}",
        script.display(),
        compose.join(" "),
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let left = compose_leftovers(&project);
    assert!(left.is_empty(), "compose left {left:?} behind");
    assert_eq!(
        run.status.code(),
        native_code,
        "the compose run exits with the native status; {log}"
    );
    let merged = std::fs::read_to_string(results.path().join("events.jsonl"))
        .unwrap_or_else(|e| panic!("no merged events.jsonl ({e}); {log}"));
    let container_verdicts = verdicts_of(&merged);

    // Both submissions, both stages, every check of each: a comparison of nothing passes
    // nothing.
    for n in names {
        let stages = native_verdicts.get(n).map_or(0, |s| s.len());
        assert_eq!(stages, 2, "native grading of {n} has {stages} stages");
    }
    let all: Vec<&String> = native_verdicts
        .values()
        .flat_map(|s| s.values())
        .flat_map(|c| c.values())
        .collect();
    assert!(
        all.iter().any(|v| *v == "passed") && all.iter().any(|v| *v == "failed"),
        "the fixtures should give both verdicts natively: {native_verdicts:?}"
    );
    assert_eq!(
        container_verdicts, native_verdicts,
        "verdicts through compose (left) versus native (right)"
    );

    // The report container wrote the same result files as native grading.
    for n in names {
        for file in [
            "results.json",
            "junit.xml",
            "classroom.json",
            "prairielearn.json",
        ] {
            let path = results.path().join(n).join(file);
            assert!(path.is_file(), "{} missing; {log}", path.display());
        }
        let gradescope: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(results.path().join(n).join("results.json")).unwrap(),
        )
        .expect("results.json parses");
        let checks: usize = native_verdicts[n].values().map(|c| c.len()).sum();
        assert_eq!(
            gradescope["tests"].as_array().map(|t| t.len()),
            Some(checks),
            "{n}: one Gradescope test per check"
        );
    }
    assert!(results.path().join("gradebook.csv").is_file(), "{log}");
}
