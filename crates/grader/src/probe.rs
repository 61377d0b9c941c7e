//! The probing clients: each waits for its reply the way a real client does (a thread
//! already blocked in `msgrcv` on type pid+3 before the request leaves), with synthetic
//! distinct pids, and reports what arrived and when. Waits always have deadlines; a thread
//! still blocked when its probe gives up is abandoned and ends with the queue or the process.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use rand::Rng;

use sysv_mq::protocol;
use sysv_mq::{Message, MessageQueue, MqError, Selector, Wait};

/// What one client got.
#[derive(Debug, Clone, PartialEq)]
pub enum Got {
    /// A reply arrived after this long (measured from the request's send).
    Reply {
        /// The message.
        message: Message,
        /// Time from sending the request to receiving the reply.
        latency: Duration,
    },
    /// Nothing arrived before the deadline.
    Nothing,
    /// The queue was removed under the client (the server's doing).
    Removed,
    /// The queue refused the request: full, or its limits shrunk (the server's doing).
    Refused(String),
    /// The client could not use the queue for a reason of the grader's own (permissions,
    /// a signal): nothing is learnt about the server.
    Fault(String),
}

impl Got {
    /// What a failed send or receive means: a removed or full queue is the server's doing,
    /// anything else the grader's.
    pub fn from_error(e: &MqError) -> Got {
        match e {
            MqError::Removed => Got::Removed,
            MqError::Full | MqError::TooBig { .. } => Got::Refused(e.to_string()),
            other => Got::Fault(other.to_string()),
        }
    }
}

impl Got {
    /// The reply, if one came.
    pub fn reply(&self) -> Option<(&Message, Duration)> {
        match self {
            Got::Reply { message, latency } => Some((message, *latency)),
            _ => None,
        }
    }
}

/// One client waiting for its reply.
pub struct Pending {
    /// The (synthetic) pid the client sent.
    pub pid: i64,
    sent_at: Instant,
    rx: mpsc::Receiver<(std::result::Result<Message, MqError>, Instant)>,
    got: Option<Got>,
}

impl Pending {
    /// When the request was sent.
    pub fn sent_at(&self) -> Instant {
        self.sent_at
    }

    /// Waits until `deadline` for the reply; later calls return the same answer.
    pub fn wait_until(&mut self, deadline: Instant) -> Got {
        if let Some(got) = &self.got {
            return got.clone();
        }
        let timeout = deadline.saturating_duration_since(Instant::now());
        match self.rx.recv_timeout(timeout) {
            Ok((Ok(message), at)) => {
                let got = Got::Reply {
                    message,
                    latency: at.saturating_duration_since(self.sent_at),
                };
                self.got = Some(got.clone());
                got
            }
            Ok((Err(e), _)) => {
                let got = Got::from_error(&e);
                self.got = Some(got.clone());
                got
            }
            Err(_) => Got::Nothing,
        }
    }
}

/// A source of synthetic pids a real client could have: random, distinct, and within the
/// grader's `pid_max` (`/proc/sys/kernel/pid_max`), above the few hundred pids a system
/// takes at boot. A server in a PID namespace of its own reads that namespace's `pid_max`:
/// the machine's on older kernels, and on kernels where it is per namespace (Linux 6.14 on)
/// the kernel's largest, 4,194,304, from which a fresh namespace starts. Either way it is no
/// lower than the grader's, so a server that checks that a pid is a real one
/// (`1 <= pid <= pid_max`) accepts them all.
#[derive(Debug)]
pub struct Pids {
    max: i64,
    used: std::collections::HashSet<i64>,
}

/// The lowest synthetic pid.
pub const FIRST_PID: i64 = 300;

/// The kernel's largest pid (`/proc/sys/kernel/pid_max`), or Linux's default where it cannot
/// be read.
pub fn pid_max() -> i64 {
    std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|t| t.trim().parse::<i64>().ok())
        .filter(|m| *m > FIRST_PID + 1000)
        .unwrap_or(32_768)
        .min(protocol::MAX_PID)
}

impl Pids {
    /// A fresh source.
    pub fn new() -> Self {
        Self::up_to(pid_max())
    }

    /// A source drawing from `FIRST_PID..max`.
    pub fn up_to(max: i64) -> Self {
        Self {
            max: max.max(FIRST_PID + 2),
            used: std::collections::HashSet::new(),
        }
    }

    /// The next pid: one not given before by this source.
    pub fn take(&mut self) -> i64 {
        let mut rng = rand::thread_rng();
        loop {
            let pid = rng.gen_range(FIRST_PID..self.max);
            if self.used.insert(pid) || self.used.len() as i64 >= self.max - FIRST_PID {
                return pid;
            }
        }
    }
}

impl Default for Pids {
    fn default() -> Self {
        Self::new()
    }
}

/// Starts a thread blocked on `pid`'s reply type, and returns once the kernel shows it
/// asleep in `msgrcv` (or after 5 s where `/proc` cannot tell).
pub fn start_waiter(queue: MessageQueue, pid: i64) -> Pending {
    let (tx, rx) = mpsc::channel();
    let (tid_tx, tid_rx) = mpsc::channel();
    let reply_type = protocol::reply_type(pid).unwrap_or(i64::MAX);
    let done = Arc::new(AtomicBool::new(false));
    let done_in_thread = done.clone();
    std::thread::spawn(move || {
        let _ = tid_tx.send(nix::unistd::gettid().as_raw() as u32);
        let got = queue.receive_retrying(Selector::Exact(reply_type));
        done_in_thread.store(true, Ordering::Release);
        let _ = tx.send((got, Instant::now()));
    });
    if let Ok(tid) = tid_rx.recv_timeout(Duration::from_secs(5)) {
        let me = std::process::id();
        // Returns as soon as it is blocked; the long bound only matters on a starved machine,
        // where sending before the client waits would leave its reply exposed in the queue.
        let deadline = Instant::now() + Duration::from_secs(5);
        // A message already queued wakes it at once: then it is done, not blocked.
        while !done.load(Ordering::Acquire)
            && !super::procfs::blocked_in_msgrcv(me, tid)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    Pending {
        pid,
        sent_at: Instant::now(),
        rx,
        got: None,
    }
}

/// Sends a request for `pid` after a waiter is blocked on its reply.
pub fn request(queue: MessageQueue, pid: i64) -> std::result::Result<Pending, MqError> {
    let mut pending = start_waiter(queue, pid);
    pending.sent_at = Instant::now();
    queue.send(
        protocol::REQUEST_TYPE,
        &protocol::request_body(pid),
        Wait::NoWait,
    )?;
    Ok(pending)
}

/// Sends requests for `n` fresh pids, as close together as possible (all waiters are
/// blocked first, then every request goes out).
pub fn burst(
    queue: MessageQueue,
    pids: &mut Pids,
    n: usize,
) -> std::result::Result<Vec<Pending>, MqError> {
    let mut pending: Vec<Pending> = (0..n).map(|_| start_waiter(queue, pids.take())).collect();
    for p in &mut pending {
        p.sent_at = Instant::now();
        queue.send(
            protocol::REQUEST_TYPE,
            &protocol::request_body(p.pid),
            Wait::NoWait,
        )?;
    }
    Ok(pending)
}

/// Sends a burst like [`burst`] while a [`QueueWatcher`] looks at the queue, so that the
/// moment the server takes each request is known.
pub fn burst_watched(
    queue: MessageQueue,
    pids: &mut Pids,
    n: usize,
) -> std::result::Result<(Vec<Pending>, QueueWatcher), MqError> {
    let mut pending: Vec<Pending> = (0..n).map(|_| start_waiter(queue, pids.take())).collect();
    let watcher = QueueWatcher::start(queue);
    for p in &mut pending {
        p.sent_at = Instant::now();
        watcher.sent(p.pid, p.sent_at);
        queue.send(
            protocol::REQUEST_TYPE,
            &protocol::request_body(p.pid),
            Wait::NoWait,
        )?;
    }
    Ok((pending, watcher))
}

/// Bytes read of each message the watcher looks at: a queue's largest message by default
/// (`MSGMAX`), since reading a message in place fails when it is longer than the buffer.
const PEEK_BUFFER: usize = 8192;

/// Most messages the watcher reads in one look at the queue: far more than any burst sends,
/// few enough that a server flooding its queue costs the watcher little.
const WATCH_LIMIT: usize = 256;

/// Watches which requests are still in the queue, every millisecond or so, by reading the
/// queue in place (`MSG_COPY`, which takes nothing): a request sent and then missing from
/// two reads in a row was taken by the server at the first of them. Stops with
/// [`QueueWatcher::stop`]; on a kernel without `MSG_COPY` it sees nothing and says so.
pub struct QueueWatcher {
    queue: MessageQueue,
    stop: Arc<AtomicBool>,
    state: Arc<std::sync::Mutex<WatchState>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct WatchState {
    /// Pid → (sent, absent from the read that started at this instant, taken).
    requests: std::collections::HashMap<i64, (Instant, Option<Instant>, Option<Instant>)>,
    /// Whether reading the queue in place works here.
    works: bool,
    /// Whether a read has succeeded.
    read_once: bool,
}

impl WatchState {
    /// Reads the queue once and notes which sent requests are gone. False when the queue
    /// cannot be read (any more).
    fn read(&mut self, queue: MessageQueue) -> bool {
        let began = Instant::now();
        let mut present = std::collections::HashSet::new();
        let mut whole = false;
        for index in 0..WATCH_LIMIT {
            // Room for the largest message: MSG_COPY fails on a longer one.
            match queue.peek(index, PEEK_BUFFER) {
                Ok(m) if m.mtype == protocol::REQUEST_TYPE => {
                    if let Ok(pid) = protocol::parse_pid(&m.body) {
                        present.insert(pid);
                    }
                }
                Ok(_) => {}
                Err(MqError::NoMessage) => {
                    whole = true;
                    break;
                }
                Err(_) => {
                    // No MSG_COPY here (the first read fails), or the queue went.
                    self.works &= self.read_once;
                    return false;
                }
            }
        }
        self.read_once = true;
        if !whole {
            // A queue longer than the watcher reads (a server flooding it): the requests
            // past the limit were not seen, which says nothing about whether they were taken.
            return true;
        }
        for (pid, (sent, absent_since, taken)) in self.requests.iter_mut() {
            if taken.is_some() || *sent >= began {
                continue;
            }
            if present.contains(pid) {
                *absent_since = None;
            } else if let Some(first) = *absent_since {
                *taken = Some(first);
            } else {
                *absent_since = Some(began);
            }
        }
        true
    }
}

impl QueueWatcher {
    /// Starts watching `queue`.
    pub fn start(queue: MessageQueue) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(std::sync::Mutex::new(WatchState {
            works: true,
            ..WatchState::default()
        }));
        let (s, st) = (stop.clone(), state.clone());
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let more = st.lock().map(|mut g| g.read(queue)).unwrap_or(false);
                if !more {
                    return;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        Self {
            queue,
            stop,
            state,
            handle: Some(handle),
        }
    }

    /// Notes that the request of `pid` was sent at `at` (just before it is).
    pub fn sent(&self, pid: i64, at: Instant) {
        if let Ok(mut g) = self.state.lock() {
            g.requests.insert(pid, (at, None, None));
        }
    }

    /// Stops watching, after one last read. Returns, per pid, when its request was seen
    /// taken: at the first of two reads without it, or at the last read when only that one
    /// missed it (the request was gone by then); and whether the queue could be read.
    pub fn stop(mut self) -> (std::collections::HashMap<i64, Instant>, bool) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        let Ok(mut g) = self.state.lock() else {
            return (Default::default(), false);
        };
        if g.works {
            g.read(self.queue);
        }
        let taken = g
            .requests
            .iter()
            .filter_map(|(pid, (_, absent, taken))| taken.or(*absent).map(|t| (*pid, t)))
            .collect();
        (taken, g.works && g.read_once)
    }
}

impl Drop for QueueWatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Waits for every pending client until `deadline`.
pub fn collect(pending: &mut [Pending], deadline: Instant) -> Vec<Got> {
    pending.iter_mut().map(|p| p.wait_until(deadline)).collect()
}

/// Takes every message left in the queue (without waiting) and returns them.
pub fn drain_queue(queue: MessageQueue) -> Vec<Message> {
    let mut out = Vec::new();
    while let Ok(m) = queue.receive_max(Selector::Any, 4096, Wait::NoWait) {
        out.push(m);
        if out.len() > 10_000 {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use sysv_mq::test_support::scratch;

    /// An echo "server" on a thread: replies to each request with the given text.
    fn echo(queue: MessageQueue, n: usize, text: &'static str) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            for _ in 0..n {
                let Ok(m) = queue.receive(Selector::Exact(1), Wait::Block) else {
                    return;
                };
                let pid = protocol::parse_pid(&m.body).unwrap();
                queue.send(pid + 3, text.as_bytes(), Wait::Block).unwrap();
            }
        })
    }

    #[test]
    fn burst_clients_each_get_their_own_reply() {
        let q = scratch();
        let server = echo(q.0, 5, "hi");
        let mut pids = Pids::new();
        let mut pending = burst(q.0, &mut pids, 5).unwrap();
        let got = collect(&mut pending, Instant::now() + Duration::from_secs(10));
        server.join().unwrap();
        for (p, g) in pending.iter().zip(&got) {
            let (m, _) = g.reply().expect("a reply");
            assert_eq!(m.mtype, p.pid + 3);
            assert_eq!(m.body, b"hi");
        }
        assert!(drain_queue(q.0).is_empty());
    }

    #[test]
    fn the_watcher_sees_each_request_taken_after_it_was_sent_in_queue_order() {
        let q = scratch();
        let queue = q.0;
        // A server that takes one request every 50 ms, in queue order.
        let server = std::thread::spawn(move || {
            for _ in 0..3 {
                std::thread::sleep(Duration::from_millis(50));
                let m = queue.receive(Selector::Exact(1), Wait::Block).unwrap();
                let pid = protocol::parse_pid(&m.body).unwrap();
                queue.send(pid + 3, b"hi", Wait::Block).unwrap();
            }
        });
        let mut pids = Pids::new();
        let (mut pending, watcher) = burst_watched(q.0, &mut pids, 3).unwrap();
        let got = collect(&mut pending, Instant::now() + Duration::from_secs(10));
        server.join().unwrap();
        let (taken, works) = watcher.stop();
        if !works {
            eprintln!("SKIPPED: MSG_COPY is not built into this kernel");
            return;
        }
        assert!(got.iter().all(|g| g.reply().is_some()));
        let times: Vec<Instant> = pending
            .iter()
            .map(|p| {
                let t = taken[&p.pid];
                assert!(t >= p.sent_at(), "taken before it was sent");
                t
            })
            .collect();
        // The server takes them in the order sent, so no later request is seen taken first.
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    }

    #[test]
    fn the_watcher_claims_no_take_in_a_queue_longer_than_it_reads() {
        let q = scratch();
        // A flood the watcher cannot read to its end, then one request behind it.
        for _ in 0..WATCH_LIMIT + 10 {
            q.0.send(9, b"flood", Wait::NoWait).unwrap();
        }
        let watcher = QueueWatcher::start(q.0);
        let sent = Instant::now();
        watcher.sent(4242, sent);
        q.0.send(
            protocol::REQUEST_TYPE,
            &protocol::request_body(4242),
            Wait::NoWait,
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(30));
        let (taken, works) = watcher.stop();
        if !works {
            eprintln!("SKIPPED: MSG_COPY is not built into this kernel");
            return;
        }
        assert_eq!(taken.get(&4242), None, "nobody took the request");
    }

    #[test]
    fn a_missing_reply_is_nothing_after_the_deadline() {
        let q = scratch();
        let mut p = request(q.0, 77).unwrap();
        let got = p.wait_until(Instant::now() + Duration::from_millis(50));
        assert_eq!(got, Got::Nothing);
        // The request itself is still queued: nobody served it.
        assert_eq!(drain_queue(q.0).len(), 1);
    }

    #[test]
    fn pids_are_distinct_random_and_real_looking() {
        let max = pid_max();
        let mut pids = Pids::new();
        let a: Vec<i64> = (0..1000).map(|_| pids.take()).collect();
        let set: std::collections::BTreeSet<_> = a.iter().collect();
        assert_eq!(set.len(), a.len(), "distinct");
        assert!(
            a.iter().all(|p| (FIRST_PID..max).contains(p)),
            "within pid_max {max}"
        );
        assert!(a.iter().all(|p| protocol::reply_type(*p).is_some()));
        // Not a run of consecutive numbers: a second source draws other pids.
        let b: Vec<i64> = (0..20).map(|_| Pids::new().take()).collect();
        assert!(b.windows(2).any(|w| w[0] != w[1]));
        // A small range is used up without repeating until it must.
        let mut small = Pids::up_to(FIRST_PID + 10);
        let drawn: std::collections::BTreeSet<i64> = (0..10).map(|_| small.take()).collect();
        assert_eq!(drawn.len(), 10);
    }
}
