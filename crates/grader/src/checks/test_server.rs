//! A time server for the checks' own tests: a thread of the test process that speaks the wire
//! protocol on a queue whose key belongs to one test, with one defect switched on or off.
//! Its [`ThreadLauncher`] stands where a sandbox would, so a check runs end to end, in
//! process, exactly as it runs against a student's server.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::procfs::ProcessSet;
use crate::sut::ServerParams;
use crate::sut::{Exit, LaunchError, LaunchSpec, Launcher, Sut};
use sysv_mq::protocol::{self, Incoming};
use sysv_mq::{MessageQueue, MqError, Selector, Wait};

/// What the helper server gets wrong, if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Defect {
    /// None: it serves the handout's protocol.
    None,
    /// It replies to type pid, not pid+3.
    RepliesToPid,
    /// It goes on receiving after the stop message.
    IgnoresStop,
    /// It exits on the stop message without removing its queue.
    KeepsQueue,
}

/// A queue key no other test of this process and no other process's tests use:
/// `0x5000_0000 | (pid & 0xffff) << 8 | n`. Any queue left under it by an earlier run with
/// the same pid is removed.
pub(super) fn fresh_key() -> i32 {
    static NEXT: AtomicI32 = AtomicI32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) & 0xff;
    let key = 0x5000_0000 | ((std::process::id() as i32 & 0xffff) << 8) | n;
    remove_queue(key);
    key
}

/// Removes the queue with this key, if there is one; whether there was.
fn remove_queue(key: i32) -> bool {
    MessageQueue::open(key).is_ok_and(|q| q.remove().is_ok())
}

/// Removes the test's queue when the test ends, pass or fail.
pub(super) struct QueueGuard(pub(super) i32);

impl Drop for QueueGuard {
    fn drop(&mut self) {
        remove_queue(self.0);
    }
}

/// Starts helper servers on `key`, and remembers what each was told.
pub(super) struct ThreadLauncher {
    key: i32,
    defect: Defect,
    told: Mutex<Vec<ServerParams>>,
}

impl ThreadLauncher {
    /// Servers on `key` with `defect`.
    pub(super) fn new(key: i32, defect: Defect) -> Self {
        Self {
            key,
            defect,
            told: Mutex::new(Vec::new()),
        }
    }

    /// The parameters of every server started, in order.
    pub(super) fn told(&self) -> Vec<ServerParams> {
        self.told.lock().expect("told").clone()
    }
}

impl Launcher for ThreadLauncher {
    fn launch(&self, spec: &LaunchSpec) -> Result<Box<dyn Sut>, LaunchError> {
        self.told.lock().expect("told").push(spec.server);
        let (key, defect, server) = (self.key, self.defect, spec.server);
        let killed = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(String::new()));
        let thread = {
            let (killed, log) = (killed.clone(), log.clone());
            std::thread::spawn(move || serve(key, server, defect, &killed, &log))
        };
        Ok(Box::new(ThreadSut {
            key,
            thread: Some(thread),
            killed,
            log,
            exit: None,
        }))
    }

    fn sweep_queues(&self) -> usize {
        usize::from(remove_queue(self.key))
    }

    fn isolation(&self) -> String {
        "none: a server thread of the test process".into()
    }
}

/// The server's loop: requests are served each on a thread of its own (the work delay, then
/// the reply), until the stop message, or until the queue is removed under it (a kill).
fn serve(key: i32, server: ServerParams, defect: Defect, killed: &AtomicBool, log: &Mutex<String>) {
    let say = |line: String| log.lock().expect("log").push_str(&(line + "\n"));
    let queue = match MessageQueue::create(key, 0o600) {
        Ok(q) => q,
        Err(e) => return say(format!("cannot create queue {key}: {e}")),
    };
    let mut workers = Vec::new();
    loop {
        let message = match queue.receive(Selector::AtMost(protocol::STOP_TYPE), Wait::Block) {
            Ok(m) => m,
            Err(MqError::Interrupted) => continue,
            Err(e) => {
                say(format!("receive: {e}"));
                break;
            }
        };
        match protocol::decode(message.mtype, &message.body) {
            Incoming::Request { pid } => {
                let to = match defect {
                    Defect::RepliesToPid => pid,
                    _ => pid + protocol::REPLY_OFFSET,
                };
                workers.push(std::thread::spawn(move || {
                    std::thread::sleep(server.delay);
                    let _ = queue.send(to, protocol::now_text().as_bytes(), Wait::NoWait);
                }));
            }
            Incoming::Stop if defect == Defect::IgnoresStop => say("stop ignored".into()),
            Incoming::Stop => break,
            Incoming::Malformed(why) => say(format!("skipped: {why}")),
        }
    }
    for worker in workers {
        let _ = worker.join();
    }
    if defect != Defect::KeepsQueue && !killed.load(Ordering::SeqCst) {
        let _ = queue.remove();
    }
}

/// A helper server: its thread, and how it ended.
struct ThreadSut {
    key: i32,
    thread: Option<JoinHandle<()>>,
    killed: Arc<AtomicBool>,
    log: Arc<Mutex<String>>,
    exit: Option<Exit>,
}

impl Sut for ThreadSut {
    fn pid(&self) -> u32 {
        std::process::id()
    }

    fn processes(&self) -> ProcessSet {
        ProcessSet::Descendants(std::process::id())
    }

    fn poll_exit(&mut self) -> Option<Exit> {
        if self.thread.as_ref().is_some_and(JoinHandle::is_finished) {
            let _ = self.thread.take().map(JoinHandle::join);
            self.exit = Some(if self.killed.load(Ordering::SeqCst) {
                Exit::Signal(9)
            } else {
                Exit::Code(0)
            });
        }
        self.exit
    }

    fn kill_all(&mut self) {
        if self.poll_exit().is_some() {
            return;
        }
        // Removing the queue wakes the blocked receive: the thread's SIGKILL. Again and again,
        // in case the thread had yet to create it.
        self.killed.store(true, Ordering::SeqCst);
        while self.poll_exit().is_none() {
            remove_queue(self.key);
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn output_tail(&self) -> String {
        self.log.lock().expect("log").clone()
    }
}

impl Drop for ThreadSut {
    fn drop(&mut self) {
        self.kill_all();
    }
}
