//! Interoperability with Python's `sysv_ipc`: the handout's own client against `timeserver`,
//! our `timeclient` against a Python pool server written as the handout asks, and the raw
//! bytes and types of messages crossing between the two languages. The handout's client has
//! key 666 built in: those tests run in a private IPC namespace (`unshare --ipc`), so they
//! never meet another queue 666.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serial_test::serial;
use sysv_mq::protocol;
use sysv_mq::{MessageQueue, Selector, Wait};

use crate::common::{self, ChildGuard, QueueGuard};

const PATIENCE: Duration = Duration::from_secs(60);

/// The `unshare` arguments that give a private IPC namespace here: `--ipc` as root, else
/// `--user --map-root-user --ipc` (unprivileged user namespaces). `None` when neither works;
/// in CI that is a failure, not a skip.
fn ipc_namespace_args() -> Option<&'static [&'static str]> {
    const CHOICES: [&[&str]; 2] = [&["--ipc"], &["--user", "--map-root-user", "--ipc"]];
    let works = |args: &[&str]| {
        Command::new("unshare")
            .args(args)
            .arg("true")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    let found = CHOICES.into_iter().find(|a| works(a));
    if found.is_none() && std::env::var_os("CI").is_some() {
        panic!("`unshare --ipc` must work in CI (root, CAP_SYS_ADMIN or user namespaces)");
    }
    if found.is_none() {
        eprintln!("SKIPPED: `unshare --ipc` is not permitted here");
    }
    found
}

fn ipc_namespaces() -> bool {
    ipc_namespace_args().is_some()
}

/// Runs a shell script in a new IPC namespace with a hard time limit; returns (exit code,
/// stdout, stderr). The script's own `timeout`s and trap keep it from leaving processes
/// behind; the namespace (and any queue in it) vanishes when its last process exits.
fn in_private_ipc(script: &str, env: &[(&str, String)]) -> (Option<i32>, String, String) {
    let ns = ipc_namespace_args().expect("checked by the caller");
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "5", "90", "unshare"])
        .args(ns)
        .args(["sh", "-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = ChildGuard(cmd.spawn().expect("run unshare"));
    let mut child = child;
    let status = child.wait_timeout(PATIENCE + Duration::from_secs(40));
    let out = {
        use std::io::Read;
        let mut o = String::new();
        let mut e = String::new();
        if let Some(mut s) = child.0.stdout.take() {
            let _ = s.read_to_string(&mut o);
        }
        if let Some(mut s) = child.0.stderr.take() {
            let _ = s.read_to_string(&mut e);
        }
        (o, e)
    };
    (status.and_then(|s| s.code()), out.0, out.1)
}

/// The handout's client (menu choice 1, then choice 2) against `timeserver` on key 666, in a
/// private IPC namespace.
fn handout_client_against(mode: &str) {
    let script = r#"
set -u
"$SERVER" --mode "$MODE" >server.out 2>server.err &
srv=$!
trap 'kill -9 $srv 2>/dev/null' EXIT
i=0
while ! grep -q ready server.out 2>/dev/null; do
  i=$((i+1)); [ $i -gt 1000 ] && { echo "NOT READY"; exit 3; }
  sleep 0.02
done
echo "--- get"
printf '1\n' | timeout 20 python3 "$CLIENT"
echo "client1_exit=$?"
echo "--- stop"
printf '2\n' | timeout 20 python3 "$CLIENT"
echo "client2_exit=$?"
i=0
while kill -0 $srv 2>/dev/null; do
  i=$((i+1)); [ $i -gt 1000 ] && { echo "SERVER STILL RUNNING"; exit 4; }
  sleep 0.02
done
wait $srv
echo "server_exit=$?"
if awk 'NR > 1 && $1 == 666 { f = 1 } END { exit !f }' /proc/sysvipc/msg; then
  echo "queue=present"
else
  echo "queue=gone"
fi
"#;
    let dir = tempfile::tempdir().unwrap();
    let script = format!("cd '{}' && {script}", dir.path().display());
    let (code, out, err) = in_private_ipc(
        &script,
        &[
            ("SERVER", common::bin("timeserver").display().to_string()),
            ("MODE", mode.to_string()),
            (
                // The handout's client exactly as printed (its `except ExistentialError`
                // is only evaluated when the queue is missing, which is not the case here).
                "CLIENT",
                common::fixtures()
                    .join("python/handout_client_verbatim.py")
                    .display()
                    .to_string(),
            ),
        ],
    );
    assert_eq!(code, Some(0), "{mode}: stdout {out}\nstderr {err}");
    let reply = out
        .lines()
        .find_map(|l| l.strip_prefix("Server response: "))
        .unwrap_or_else(|| panic!("{mode}: no reply in {out}\n{err}"));
    assert!(protocol::is_current_datetime(reply, 60), "{reply}");
    assert!(out.contains("client1_exit=0"), "{out}");
    assert!(out.contains("client2_exit=0"), "{out}");
    assert!(out.contains("server_exit=0"), "{out}\n{err}");
    assert!(out.contains("queue=gone"), "{out}");
}

#[test]
#[serial]
fn handout_client_gets_the_time_from_the_spawn_server_and_stops_it() {
    if !common::python_sysv_ipc() || !ipc_namespaces() {
        return;
    }
    handout_client_against("spawn");
}

#[test]
#[serial]
fn handout_client_gets_the_time_from_the_pool_server_and_stops_it() {
    if !common::python_sysv_ipc() || !ipc_namespaces() {
        return;
    }
    handout_client_against("pool");
}

#[test]
#[serial]
fn handout_client_without_a_server_says_so() {
    if !common::python_sysv_ipc() || !ipc_namespaces() {
        return;
    }
    let script = r#"printf '1\n' | timeout 20 python3 "$CLIENT"; echo "exit=$?""#;
    let (code, out, err) = in_private_ipc(
        script,
        &[(
            "CLIENT",
            common::fixtures()
                .join("python/handout_client.py")
                .display()
                .to_string(),
        )],
    );
    assert_eq!(code, Some(0), "{out} {err}");
    assert!(
        out.contains("Cannot connect to message queue 666 , terminating."),
        "{out} {err}"
    );
    assert!(out.contains("exit=1"), "{out}");
}

/// Our `timeclient --get` against the Python ThreadPoolExecutor server, which then stops on
/// `timeclient --stop` after its workers finish, removes its queue and exits 0.
#[test]
fn timeclient_gets_the_time_from_the_python_pool_server() {
    if !common::python_sysv_ipc() {
        return;
    }
    let key = common::unique_key();
    let _g = QueueGuard(key);
    let mut server = ChildGuard(
        Command::new("python3")
            .arg(common::fixtures().join("python/handout_pool_server.py"))
            .arg(key.to_string())
            .env("TIMESERVER_DELAY", "0.05")
            .env("TIMESERVER_WORKERS", "2")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the Python server"),
    );
    let mut line = String::new();
    BufReader::new(server.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("ready"), "{line:?}");
    let timeclient = |args: &[&str]| {
        Command::new(common::bin("timeclient"))
            .args(["--key", &key.to_string()])
            .args(args)
            .output()
            .unwrap()
    };
    let out = timeclient(&["--get", "--timeout", "30"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let shown = text
        .trim()
        .strip_prefix("Server response: ")
        .unwrap_or_else(|| panic!("{text:?}"));
    assert!(protocol::is_current_datetime(shown, 60), "{shown}");

    // A few concurrent requests through the bench, all answered.
    let out = Command::new(common::bin("timeclient"))
        .args([
            "bench",
            "--clients",
            "3",
            "--requests",
            "5",
            "--timeout",
            "30",
        ])
        .args(["--key", &key.to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["errors"].as_u64(), v["completed"].as_u64()),
        (Some(0), Some(15))
    );

    assert_eq!(timeclient(&["--stop"]).status.code(), Some(0));
    let status = server
        .wait_timeout(PATIENCE)
        .expect("the Python server stops");
    assert_eq!(status.code(), Some(0));
    assert!(!MessageQueue::exists(key));
}

/// The bytes and the type a Python peer sends are exactly what our receive returns.
#[test]
fn python_sends_our_mq_receives_exact_bytes_and_type() {
    if !common::python_sysv_ipc() {
        return;
    }
    let key = common::unique_key();
    let _g = QueueGuard(key);
    let q = MessageQueue::create(key, 0o600).unwrap();
    let py = format!(
        "import sysv_ipc; q = sysv_ipc.MessageQueue({key}); \
         q.send(b'12345', type=1); q.send(b'', type=2); \
         q.send(bytes([0, 255, 10, 13, 65]), type=2147483647)"
    );
    let out = Command::new("python3").args(["-c", &py]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let got: Vec<(i64, Vec<u8>)> = (0..3)
        .map(|_| {
            let m = q.receive(Selector::Any, Wait::NoWait).unwrap();
            (m.mtype, m.body)
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (1, b"12345".to_vec()),
            (2, Vec::new()),
            (i32::MAX as i64, vec![0, 255, 10, 13, 65]),
        ]
    );
    assert_eq!(
        protocol::decode(got[0].0, &got[0].1),
        protocol::Incoming::Request { pid: 12345 }
    );
    assert_eq!(
        protocol::decode(got[1].0, &got[1].1),
        protocol::Incoming::Stop
    );
}

/// And the reverse: what our `mq` sends, Python receives byte for byte with the same type.
#[test]
fn our_mq_sends_python_receives_exact_bytes_and_type() {
    if !common::python_sysv_ipc() {
        return;
    }
    let key = common::unique_key();
    let _g = QueueGuard(key);
    let q = MessageQueue::create(key, 0o600).unwrap();
    let text = protocol::now_text();
    q.send(4242 + 3, text.as_bytes(), Wait::Block).unwrap();
    q.send(2, b"", Wait::Block).unwrap();
    q.send(77, &[0, 255, 10, 13, 65], Wait::Block).unwrap();
    let py = format!(
        "import sysv_ipc; q = sysv_ipc.MessageQueue({key})\n\
         for t in (4245, 2, 77):\n    m, mt = q.receive(type=t, block=False)\n    \
         print(mt, m.hex())"
    );
    let out = Command::new("python3").args(["-c", &py]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let expected = format!(
        "4245 {}\n2 \n77 {}\n",
        hex(text.as_bytes()),
        hex(&[0, 255, 10, 13, 65])
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
    assert_eq!(q.stat().unwrap().messages, 0);
}
