//! Black-box tests of the `timeserver` and `timeclient` binaries: routing, malformed requests,
//! draining on stop, signals, a queue removed under the server, the client's failures and the
//! bench output. Every test uses its own queue key and removes what it made.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use sysv_mq::protocol;
use sysv_mq::{MessageQueue, Selector, Wait};
use timeserver::client;

use crate::common::{self, ChildGuard, QueueGuard};

/// Generous bound for anything that should happen "soon" on a loaded machine (not a timing
/// assertion: only a guard against hanging forever).
const PATIENCE: Duration = Duration::from_secs(30);

/// A running `timeserver` and its queue; both cleaned up on drop.
pub(crate) struct RunningServer {
    pub child: ChildGuard,
    pub key: i32,
    pub ready_line: String,
    pub queue: MessageQueue,
    _queue_guard: QueueGuard,
}

impl RunningServer {
    /// Waits for the server to exit; returns its exit code and its whole stderr.
    pub fn wait_exit(&mut self) -> (Option<i32>, String) {
        let status = self
            .child
            .wait_timeout(PATIENCE)
            .expect("the server should exit");
        let mut err = String::new();
        if let Some(mut e) = self.child.0.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        (status.code(), err)
    }
}

/// Starts `timeserver --key <unique> <args>` and waits for its ready line.
pub(crate) fn start_server(args: &[&str]) -> RunningServer {
    let key = common::unique_key();
    let guard = QueueGuard(key);
    let mut child = ChildGuard(
        Command::new(common::bin("timeserver"))
            .args(["--key", &key.to_string()])
            .args(args)
            .env_remove("TIMESERVER_DELAY")
            .env_remove("TIMESERVER_WORKERS")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start timeserver"),
    );
    let stdout = child.0.stdout.take().expect("piped stdout");
    let mut ready_line = String::new();
    BufReader::new(stdout)
        .read_line(&mut ready_line)
        .expect("read the ready line");
    assert!(
        ready_line.starts_with("timeserver: ready on key"),
        "unexpected first line: {ready_line:?}"
    );
    let queue = MessageQueue::open(key).expect("the server's queue exists once it is ready");
    RunningServer {
        child,
        key,
        ready_line,
        queue,
        _queue_guard: guard,
    }
}

fn timeclient(key: i32, args: &[&str]) -> std::process::Output {
    Command::new(common::bin("timeclient"))
        .args(["--key", &key.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run timeclient")
}

#[test]
fn ready_line_names_key_mode_workers_and_delay() {
    let mut s = start_server(&["--mode", "pool", "--workers", "3", "--delay", "0.25"]);
    assert_eq!(
        s.ready_line.trim_end(),
        format!(
            "timeserver: ready on key {}, mode pool, 3 workers, delay 0.25s",
            s.key
        )
    );
    client::stop(&s.queue).unwrap();
    assert_eq!(s.wait_exit().0, Some(0));
}

#[test]
fn env_vars_set_workers_and_delay_and_flags_win() {
    let key = common::unique_key();
    let _g = QueueGuard(key);
    let mut child = ChildGuard(
        Command::new(common::bin("timeserver"))
            .args(["--key", &key.to_string(), "--workers", "2"])
            .env("TIMESERVER_WORKERS", "7")
            .env("TIMESERVER_DELAY", "0.5")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("2 workers, delay 0.5s"), "{line:?}");
    client::stop(&MessageQueue::open(key).unwrap()).unwrap();
    assert_eq!(child.wait_timeout(PATIENCE).and_then(|s| s.code()), Some(0));
}

#[test]
fn bad_flags_are_usage_errors() {
    for args in [
        &["--mode", "forking"][..],
        &["--workers", "0"],
        &["--delay", "-1"],
        &["--delay", "soon"],
    ] {
        let out = Command::new(common::bin("timeserver"))
            .args(["--key", &common::unique_key().to_string()])
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
    let help = Command::new(common::bin("timeserver"))
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("Exit codes"), "{text}");
}

/// Concurrent clients with distinct pids each get their own reply (type pid + 3), in every
/// mode; with a delay, so that they all wait at the same time.
#[test]
fn concurrent_clients_get_their_own_replies() {
    for mode in ["spawn", "pool", "inline"] {
        let mut s = start_server(&["--mode", mode, "--workers", "3", "--delay", "0.05"]);
        let q = s.queue;
        let base = 900_000 + (std::process::id() as i64 % 1000) * 100;
        let threads: Vec<_> = (0..8)
            .map(|i| std::thread::spawn(move || client::request_time(&q, base + i, PATIENCE)))
            .collect();
        for (i, t) in threads.into_iter().enumerate() {
            let reply = t.join().unwrap().expect("a reply");
            assert_eq!(reply.mtype, base + i as i64 + 3, "{mode}");
            assert!(
                protocol::is_current_datetime(&reply.text, 60),
                "{mode}: {:?}",
                reply.text
            );
        }
        // Nothing stray left behind: every reply was taken by its client.
        assert_eq!(q.stat().unwrap().messages, 0, "{mode}");
        client::stop(&q).unwrap();
        let (code, err) = s.wait_exit();
        assert_eq!(code, Some(0), "{mode}: {err}");
        assert!(err.contains("served 8 requests"), "{mode}: {err}");
    }
}

#[test]
fn malformed_requests_are_reported_and_skipped() {
    let mut s = start_server(&["--mode", "pool"]);
    let q = s.queue;
    let bad: [&[u8]; 5] = [b"abc", b"", b"-5", b"0", &[b'7'; 200]];
    for body in bad {
        q.send(1, body, Wait::Block).unwrap();
    }
    let reply = client::request_time(&q, 424_242, PATIENCE).expect("still answers");
    assert_eq!(reply.mtype, 424_245);
    // Nothing was sent back for the malformed ones.
    assert_eq!(q.stat().unwrap().messages, 0);
    client::stop(&q).unwrap();
    let (code, err) = s.wait_exit();
    assert_eq!(code, Some(0));
    let reports: Vec<&str> = err.lines().filter(|l| l.contains("malformed")).collect();
    // One line per malformed message, plus the final summary.
    assert_eq!(reports.len(), bad.len() + 1, "{err}");
    assert!(err.contains("served 1 requests"), "{err}");
    assert!(err.contains("is not a decimal pid"), "{err}");
}

/// Requests accepted before the stop are all answered, though the work delay outlasts the
/// moment the stop arrives (2 workers, 4 requests of 1 s: the last replies come in a second
/// wave).
#[test]
fn stop_drains_accepted_requests() {
    for mode in ["pool", "spawn"] {
        let mut s = start_server(&["--mode", mode, "--workers", "2", "--delay", "1"]);
        let q = s.queue;
        let sent = Arc::new(Barrier::new(5));
        let base = 800_000 + (std::process::id() as i64 % 1000) * 100;
        let waiters: Vec<_> = (0..4)
            .map(|i| {
                let sent = Arc::clone(&sent);
                std::thread::spawn(move || {
                    let pid = base + i;
                    q.send(1, &protocol::request_body(pid), Wait::Block)
                        .unwrap();
                    sent.wait();
                    q.receive(Selector::Exact(pid + 3), Wait::Block)
                })
            })
            .collect();
        sent.wait();
        // Requests (type 1) come before the stop (type 2) for the server's receive.
        client::stop(&q).unwrap();
        for w in waiters {
            let m = w
                .join()
                .unwrap()
                .expect("a reply before the queue is removed");
            let text = String::from_utf8_lossy(&m.body).into_owned();
            assert!(protocol::is_current_datetime(&text, 60), "{text}");
        }
        let (code, err) = s.wait_exit();
        assert_eq!(code, Some(0), "{mode}: {err}");
        assert!(err.contains("served 4 requests"), "{mode}: {err}");
        assert!(!MessageQueue::exists(s.key));
    }
}

#[test]
fn sigterm_and_sigint_stop_cleanly_and_remove_the_queue() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    for (mode, signal) in [
        ("pool", Signal::SIGTERM),
        ("spawn", Signal::SIGINT),
        ("inline", Signal::SIGTERM),
    ] {
        let mut s = start_server(&["--mode", mode]);
        // One request first, so the server has done real work.
        client::request_time(&s.queue, 31_337, PATIENCE).unwrap();
        kill(Pid::from_raw(s.child.0.id() as i32), signal).unwrap();
        let (code, err) = s.wait_exit();
        assert_eq!(code, Some(0), "{mode} {signal}: {err}");
        assert!(err.contains("stopped (signal)"), "{err}");
        assert!(!MessageQueue::exists(s.key), "{mode}: queue left behind");
    }
}

/// A request in progress when SIGTERM arrives is still answered.
#[test]
fn sigterm_finishes_the_request_in_progress() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let mut s = start_server(&["--mode", "pool", "--delay", "1"]);
    let q = s.queue;
    let waiter = std::thread::spawn(move || client::request_time(&q, 27_182, PATIENCE));
    // Wait until the server has taken the request off the queue (it is then "accepted").
    let deadline = std::time::Instant::now() + PATIENCE;
    while q.stat().map(|st| st.last_receive_pid).unwrap_or(0) == 0 {
        assert!(std::time::Instant::now() < deadline, "request never taken");
        std::thread::sleep(Duration::from_millis(5));
    }
    kill(Pid::from_raw(s.child.0.id() as i32), Signal::SIGTERM).unwrap();
    let reply = waiter
        .join()
        .unwrap()
        .expect("the accepted request is answered");
    assert_eq!(reply.mtype, 27_185);
    let (code, err) = s.wait_exit();
    assert_eq!(code, Some(0), "{err}");
    assert!(!MessageQueue::exists(s.key));
}

#[test]
fn queue_removed_under_the_server_is_a_clear_failure() {
    let mut s = start_server(&["--mode", "pool"]);
    s.queue.remove().unwrap();
    let (code, err) = s.wait_exit();
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("message queue {} was removed", s.key)),
        "{err}"
    );
}

#[test]
fn existing_queue_is_reported_and_used() {
    let key = common::unique_key();
    let _g = QueueGuard(key);
    let q = MessageQueue::create(key, 0o600).unwrap();
    let mut child = ChildGuard(
        Command::new(common::bin("timeserver"))
            .args(["--key", &key.to_string(), "--mode", "inline"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("ready"));
    client::request_time(&q, 55_555, PATIENCE).unwrap();
    client::stop(&q).unwrap();
    let status = child.wait_timeout(PATIENCE).unwrap();
    let mut err = String::new();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(err.contains("already existed"), "{err}");
}

#[test]
fn client_without_a_server_fails_with_a_message() {
    let key = common::unique_key();
    let k = key.to_string();
    for args in [
        &["--key", &k, "--get"][..],
        &["--key", &k, "--stop"],
        &["--key", &k],
        &["bench", "--clients", "1", "--key", &k],
    ] {
        let mut cmd = Command::new(common::bin("timeclient"));
        cmd.args(args);
        let out = cmd.stdin(Stdio::null()).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!(
                "Cannot connect to message queue {key}: no server is running"
            )),
            "{err}"
        );
    }
    assert!(!MessageQueue::exists(key));
}

#[test]
fn client_times_out_when_nobody_answers() {
    let key = common::unique_key();
    let _g = QueueGuard(key);
    let q = MessageQueue::create(key, 0o600).unwrap();
    let out = timeclient(key, &["--get", "--timeout", "0.3", "--pid", "123456"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no reply from the time server"), "{err}");
    // Only the request is left: the client cleaned up after itself.
    let m = q.receive(Selector::Any, Wait::NoWait).unwrap();
    assert_eq!((m.mtype, m.body.as_slice()), (1, &b"123456"[..]));
    assert_eq!(q.stat().unwrap().messages, 0);
}

#[test]
fn client_get_stop_pid_and_menu() {
    let mut s = start_server(&["--mode", "spawn"]);
    let out = timeclient(s.key, &["--get"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    let shown = text
        .trim()
        .strip_prefix("Server response: ")
        .unwrap_or_else(|| panic!("{text:?}"));
    assert!(protocol::is_current_datetime(shown, 60), "{shown}");

    // --pid: the request carries that pid.
    let out = timeclient(s.key, &["--get", "--pid", "4000000"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(s.queue.stat().unwrap().messages, 0);
    assert_eq!(
        timeclient(s.key, &["--get", "--pid", "0"]).status.code(),
        Some(2)
    );

    // The menu: other answers are asked again; 1 gets the time.
    let menu = |input: &str| {
        let mut child = Command::new(common::bin("timeclient"))
            .args(["--key", &s.key.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let out = menu("x\n3\n1\n");
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.matches("1. to get current date/time").count(),
        3,
        "{text}"
    );
    assert!(text.contains("Server response: "), "{text}");
    // End of input before a choice: exit 2, nothing sent.
    let out = menu("7\n");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(s.queue.stat().unwrap().messages, 0);

    let out = menu("2\n");
    assert_eq!(out.status.code(), Some(0));
    let (code, err) = s.wait_exit();
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("served 3 requests"), "{err}");
    assert!(!MessageQueue::exists(s.key));
}

#[test]
fn bench_prints_one_json_object_without_errors() {
    let mut s = start_server(&["--mode", "pool"]);
    let out = Command::new(common::bin("timeclient"))
        .args(["bench", "--clients", "4", "--requests", "50"])
        .args(["--key", &s.key.to_string()])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    for field in [
        "requests_per_sec",
        "p50_us",
        "p99_us",
        "mean_us",
        "max_us",
        "seconds",
    ] {
        assert!(v[field].is_number(), "{field} in {text}");
    }
    assert_eq!(v["errors"], 0, "{text}");
    assert_eq!(v["clients"], 4);
    assert_eq!(v["requests"], 50);
    assert_eq!(v["completed"], 200);
    assert!(v["p50_us"].as_f64() <= v["p99_us"].as_f64());
    client::stop(&s.queue).unwrap();
    let (code, err) = s.wait_exit();
    assert_eq!(code, Some(0));
    assert!(err.contains("served 200 requests"), "{err}");
}

/// The thread ids of a running process, from `/proc/<pid>/task`.
fn thread_ids(pid: u32) -> std::collections::BTreeSet<u64> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("the server's task directory")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// The pool's workers are started once and serve every burst: with 3 workers the server has
/// exactly 5 threads (workers, main, signals), and the very same ones after two bursts of 8
/// concurrent requests.
#[test]
fn pool_threads_are_started_once_and_serve_every_burst() {
    let mut s = start_server(&["--mode", "pool", "--workers", "3", "--delay", "0.02"]);
    let pid = s.child.0.id();
    // The workers start right after the ready line: wait until all are there.
    let deadline = std::time::Instant::now() + PATIENCE;
    let idle = loop {
        let ids = thread_ids(pid);
        if ids.len() >= 5 {
            break ids;
        }
        assert!(std::time::Instant::now() < deadline, "threads: {ids:?}");
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(idle.len(), 5, "{idle:?}");
    let q = s.queue;
    let base = 700_000 + (std::process::id() as i64 % 1000) * 100;
    for burst in 0..2 {
        let clients: Vec<_> = (0..8)
            .map(|i| {
                let pid = base + burst * 10 + i;
                std::thread::spawn(move || client::request_time(&q, pid, PATIENCE))
            })
            .collect();
        for c in clients {
            c.join().unwrap().expect("a reply");
        }
        assert_eq!(thread_ids(pid), idle, "after burst {burst}");
    }
    client::stop(&q).unwrap();
    let (code, err) = s.wait_exit();
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("served 16 requests"), "{err}");
}
