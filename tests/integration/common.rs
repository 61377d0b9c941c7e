//! Shared test helpers: unique queue keys, guards that kill processes and remove queues on
//! drop, and paths to the crate's binaries and fixtures.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use sysv_mq::MessageQueue;

/// A queue key no other test of this run uses: distinct per process and per call, far from
/// the handout's 666.
pub fn unique_key() -> i32 {
    static NEXT: AtomicI32 = AtomicI32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    0x3000_0000 | ((std::process::id() as i32 & 0xffff) << 8) | (n & 0xff)
}

/// Path of one of the crate's binaries, built by cargo for this test run.
pub fn bin(name: &str) -> PathBuf {
    assert_cmd::cargo::cargo_bin(name)
}

/// The folder `tests/fixtures`.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Whether `python3` with `sysv_ipc` is available. Interop tests need it; `.ci/run` installs
/// it, so in CI (`CI` set) its absence is a failure, not a skip.
pub fn python_sysv_ipc() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import sysv_ipc"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok && std::env::var_os("CI").is_some() {
        panic!("python3 with sysv_ipc is required in CI (run .ci/run, which installs it)");
    }
    if !ok {
        eprintln!("SKIPPED: python3 with sysv_ipc is not installed");
    }
    ok
}

/// Kills (SIGKILL) and reaps a child process when dropped.
pub struct ChildGuard(pub Child);

impl ChildGuard {
    /// Waits up to `timeout` for the child to exit on its own; returns its exit code.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.0.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Removes the queue with this key (if any) when dropped.
pub struct QueueGuard(pub i32);

impl Drop for QueueGuard {
    fn drop(&mut self) {
        if let Ok(q) = MessageQueue::open(self.0) {
            let _ = q.remove();
        }
    }
}

/// Waits until a queue with `key` exists, up to `timeout`.
pub fn wait_for_queue(key: i32, timeout: Duration) -> Option<MessageQueue> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(q) = MessageQueue::open(key) {
            return Some(q);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Makes this test process a child subreaper (once): processes orphaned below it are
/// reparented to it instead of to init, so a test can find what a grader left behind.
pub fn become_subreaper() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
    });
}

/// Every process whose parent chain reaches `root` (not `root` itself).
pub fn descendants(root: u32) -> Vec<u32> {
    grader::procfs::descendants(root)
}

/// Whether the Docker engine answers and every image of `images` exists. If not: panics with
/// `REQUIRE_DOCKER=1` (as `.ci/run` sets, so CI never passes a container test silently),
/// otherwise prints `SKIPPED: <test>: <why>` and returns false.
pub fn images_available(test: &str, images: &[String]) -> bool {
    let mut why = None;
    for image in images {
        match Command::new("docker")
            .args(["image", "inspect", "--format", "{{.Id}}", image])
            .output()
        {
            Err(e) => why = Some(format!("cannot run the docker client: {e}")),
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                why = Some(format!(
                "no Docker engine or no image {image} (build it with scripts/build-images.sh): {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ))
            }
        }
    }
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
