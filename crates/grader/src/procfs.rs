//! What `/proc` says about a server: the processes of its tree, their live threads and CPU
//! time, whether a thread is blocked in the message queue, and which processes run as a
//! uid. Read-only; no `unsafe`.

use std::collections::BTreeSet;
use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A thread of some process: (pid, tid) as this process's `/proc` names them.
pub type Task = (u32, u32);

fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let path = task.path().join("children");
        if let Ok(text) = fs::read_to_string(path) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    out
}

/// Every process that descends from `root` (not `root` itself), found through the
/// `children` files of `/proc/<pid>/task/<tid>/`.
pub fn descendants(root: u32) -> Vec<u32> {
    let mut seen = BTreeSet::new();
    let mut todo = children_of(root);
    while let Some(pid) = todo.pop() {
        if seen.insert(pid) {
            todo.extend(children_of(pid));
        }
    }
    seen.into_iter().collect()
}

/// The live threads of a process (empty if it is gone).
pub fn threads(pid: u32) -> Vec<u32> {
    fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The processes of one server, however the sandbox tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessSet {
    /// Every process below this one (a native sandbox's `__init`, itself not included).
    Descendants(u32),
    /// Every process whose real uid is this one (a uid leased to one server alone).
    Uid(u32),
}

impl ProcessSet {
    /// The pids in the set now.
    pub fn pids(&self) -> Vec<u32> {
        match *self {
            ProcessSet::Descendants(root) => descendants(root),
            ProcessSet::Uid(uid) => processes_run_as(uid).into_iter().collect(),
        }
    }
}

/// The live threads of every process of the set, zombies excluded.
pub fn tree_threads(set: ProcessSet) -> Vec<Task> {
    set.pids()
        .into_iter()
        .filter(|pid| !is_zombie(*pid))
        .flat_map(|pid| threads(pid).into_iter().map(move |tid| (pid, tid)))
        .collect()
}

/// Whether a process is a zombie (ended, not yet reaped) or gone.
pub fn is_zombie(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_none_or(|state| state == "Z" || state == "X"),
        Err(_) => true,
    }
}

/// CPU time of a process, in seconds: its own (user + system) and that of the children it
/// has reaped (`cutime` + `cstime`), from `/proc/<pid>/stat`; `None` once it is gone.
pub fn cpu_seconds(pid: u32) -> Option<(f64, f64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    // After the command: state is field 3, so utime (14) to cstime (17) are 11 to 14 here.
    let fields: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let [utime, stime, cutime, cstime] = fields[..] else {
        return None;
    };
    Some((
        (utime + stime) as f64 / USER_HZ,
        (cutime + cstime) as f64 / USER_HZ,
    ))
}

/// The unit of `/proc/<pid>/stat`'s times: `USER_HZ` ticks a second, 100 in the kernel's
/// user ABI on every architecture this grader builds for.
const USER_HZ: f64 = 100.0;

/// What the kernel says a thread waits in (`wchan`), for example `do_msgrcv`.
pub fn wchan(pid: u32, tid: u32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/task/{tid}/wchan"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// Whether a thread is blocked in `msgrcv`: by `wchan`, or by the syscall number when the
/// kernel hides `wchan`.
pub fn blocked_in_msgrcv(pid: u32, tid: u32) -> bool {
    if wchan(pid, tid).as_deref() == Some("do_msgrcv") {
        return true;
    }
    // x86-64: msgrcv is syscall 70. Only trusted when the thread is asleep.
    let syscall = fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall")).unwrap_or_default();
    let asleep = fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().next().map(str::to_string))
        })
        .is_some_and(|st| st == "S");
    cfg!(target_arch = "x86_64") && asleep && syscall.split_whitespace().next() == Some("70")
}

/// What a [`ThreadSampler`] saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThreadSamples {
    /// How many samples were taken.
    pub samples: usize,
    /// The most threads alive at once in the tree.
    pub peak: usize,
    /// The fewest threads alive at once.
    pub low: usize,
    /// Every distinct thread seen alive.
    pub distinct: BTreeSet<Task>,
    /// When the live count changed, and to what: the first sample, then each change.
    pub series: Vec<(Instant, usize)>,
}

/// Samples the live threads of a process tree every few milliseconds on a background
/// thread, until stopped.
pub struct ThreadSampler {
    stop: Arc<AtomicBool>,
    state: Arc<Mutex<ThreadSamples>>,
    handle: Option<JoinHandle<()>>,
}

impl ThreadSampler {
    /// Starts sampling the threads of the process set every `every`.
    pub fn start(root: ProcessSet, every: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(Mutex::new(ThreadSamples {
            low: usize::MAX,
            ..Default::default()
        }));
        let (s, st) = (stop.clone(), state.clone());
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let tasks = tree_threads(root);
                let at = Instant::now();
                if let Ok(mut g) = st.lock() {
                    if g.series.last().map(|&(_, n)| n) != Some(tasks.len()) {
                        g.series.push((at, tasks.len()));
                    }
                    g.samples += 1;
                    g.peak = g.peak.max(tasks.len());
                    g.low = g.low.min(tasks.len());
                    g.distinct.extend(tasks);
                }
                std::thread::sleep(every);
            }
        });
        Self {
            stop,
            state,
            handle: Some(handle),
        }
    }

    /// What was seen so far (the sampler keeps running).
    pub fn snapshot(&self) -> ThreadSamples {
        let mut s = self.state.lock().map(|g| g.clone()).unwrap_or_default();
        if s.samples == 0 {
            s.low = 0;
        }
        s
    }

    /// Starts a new window: forgets what was seen so far.
    pub fn reset(&self) {
        if let Ok(mut g) = self.state.lock() {
            *g = ThreadSamples {
                low: usize::MAX,
                ..Default::default()
            };
        }
    }

    /// Waits until at least `n` more samples have been taken (at most `timeout`).
    pub fn wait_samples(&self, n: usize, timeout: Duration) {
        let start = self.snapshot().samples;
        let deadline = Instant::now() + timeout;
        while self.snapshot().samples < start + n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Stops sampling and returns what was seen.
    pub fn stop(mut self) -> ThreadSamples {
        self.halt();
        self.snapshot()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for ThreadSampler {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The uids (real, effective and saved) of a process, from `/proc/<pid>/status`.
pub fn uids_of(pid: u32) -> Option<[u32; 3]> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    let ids: Vec<u32> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    Some([*ids.first()?, *ids.get(1)?, *ids.get(2)?])
}

/// The pids of this PID namespace whose real, effective or saved uid is `uid`: whether a
/// uid is in use at all.
pub fn processes_of(uid: u32) -> BTreeSet<u32> {
    pids_where(|ids| ids.contains(&uid))
}

/// The pids of this PID namespace whose *real* uid is `uid`: a server's processes. A
/// shielded prober (real uid 0, effective uid `uid`) is not one of them.
pub fn processes_run_as(uid: u32) -> BTreeSet<u32> {
    pids_where(|ids| ids[0] == uid)
}

fn pids_where(keep: impl Fn([u32; 3]) -> bool) -> BTreeSet<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return BTreeSet::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| uids_of(*pid).is_some_and(&keep))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn sees_a_child_and_its_threads() {
        let mut child = Command::new("sleep").arg("5").spawn().unwrap();
        let me = std::process::id();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !descendants(me).contains(&child.id()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(descendants(me).contains(&child.id()));
        assert_eq!(threads(child.id()), vec![child.id()]);
        assert!(!is_zombie(child.id()));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(is_zombie(child.id()));
    }

    #[test]
    fn a_new_thread_is_listed_and_seen_blocked() {
        let q = sysv_mq::MessageQueue::create_private(0o600).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let h = std::thread::spawn(move || {
            tx.send(nix::unistd::gettid().as_raw() as u32).unwrap();
            q.receive(sysv_mq::Selector::Exact(9), sysv_mq::Wait::Block)
        });
        let tid = rx.recv().unwrap();
        let me = std::process::id();
        assert!(threads(me).contains(&tid));
        let deadline = Instant::now() + Duration::from_secs(5);
        while !blocked_in_msgrcv(me, tid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(blocked_in_msgrcv(me, tid));
        assert!(!blocked_in_msgrcv(
            me,
            nix::unistd::gettid().as_raw() as u32
        ));
        q.remove().unwrap();
        assert!(h.join().unwrap().is_err());
    }
}
