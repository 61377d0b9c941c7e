//! The reference client: one request, stop, and the `bench` load generator.
//!
//! A client sends its pid as a type-1 request and waits, with a blocking receive of type
//! `pid + 3`, for the reply, exactly as the handout's Python client does. Time-outs never leave
//! a thread blocked: when a wait lasts too long, a *wake-up* message of the client's own reply
//! type is sent, which the waiting receive takes and recognises (its text starts with a NUL
//! byte and carries a sequence number, which no time server reply does). Wake-ups and late
//! replies still queued for our types are drained afterwards.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use sysv_mq::protocol;
use sysv_mq::{MessageQueue, MqError, Selector, Wait};

/// The prefix of wake-up messages (never the start of a real reply).
const WAKE_PREFIX: &[u8] = b"\0poolgrade-timeout ";

/// The first synthetic pid of the bench: `2^22`, above Linux's largest `pid_max`, so a
/// synthetic pid is never the pid of a real process waiting on the same queue.
pub const SYNTHETIC_PID_BASE: i64 = 1 << 22;
/// Clients of one bench use consecutive synthetic pids inside a block of this size.
pub const SYNTHETIC_BLOCK: i64 = 1 << 20;
/// The number of blocks: `BASE + BLOCKS * BLOCK` stays below [`protocol::MAX_PID`].
pub const SYNTHETIC_BLOCKS: i64 = 2043;
/// The most clients one bench runs.
pub const MAX_BENCH_CLIENTS: usize = 4096;

/// Typed failures of the client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No queue with this key: no server is running.
    #[error("Cannot connect to message queue {key}: no server is running")]
    NoServer {
        /// The key.
        key: i32,
    },
    /// No reply came within the time-out.
    #[error("no reply from the time server within {0:?} (is it running and serving this key?)")]
    Timeout(Duration),
    /// The queue was removed (the server stopped) before the reply came.
    #[error("the message queue was removed before the reply came (the server stopped)")]
    Removed,
    /// The pid cannot be used in the protocol.
    #[error("pid {0} is out of range 1..={max}", max = protocol::MAX_PID)]
    BadPid(i64),
    /// Invalid bench parameters.
    #[error("invalid bench parameters: {0}")]
    BadBench(String),
    /// Any other queue failure.
    #[error("message queue error: {0}")]
    Queue(#[source] MqError),
    /// A thread could not be started.
    #[error("cannot start a thread: {0}")]
    Thread(#[source] std::io::Error),
}

impl From<MqError> for ClientError {
    fn from(e: MqError) -> Self {
        match e {
            MqError::Removed => ClientError::Removed,
            other => ClientError::Queue(other),
        }
    }
}

/// A reply from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The reply text (lossily decoded as UTF-8).
    pub text: String,
    /// The message type it came with (`pid + 3`).
    pub mtype: i64,
    /// From sending the request to receiving the reply.
    pub elapsed: Duration,
}

/// Opens the server's queue; a missing queue is [`ClientError::NoServer`].
pub fn connect(key: i32) -> Result<MessageQueue, ClientError> {
    match MessageQueue::open(key) {
        Ok(q) => Ok(q),
        Err(MqError::NotFound { key }) => Err(ClientError::NoServer { key }),
        Err(e) => Err(ClientError::Queue(e)),
    }
}

/// Sends the stop message (type 2, empty).
pub fn stop(queue: &MessageQueue) -> Result<(), ClientError> {
    queue.send_retrying(protocol::STOP_TYPE, b"")?;
    Ok(())
}

fn wake_text(seq: u64) -> Vec<u8> {
    let mut v = WAKE_PREFIX.to_vec();
    v.extend_from_slice(seq.to_string().as_bytes());
    v
}

/// What a received message of our reply type is.
enum Received {
    Reply(Vec<u8>),
    /// A wake-up with this sequence number.
    Wake(Option<u64>),
}

fn classify(body: Vec<u8>) -> Received {
    match body.strip_prefix(WAKE_PREFIX) {
        Some(rest) => Received::Wake(std::str::from_utf8(rest).ok().and_then(|s| s.parse().ok())),
        None => Received::Reply(body),
    }
}

/// Takes every queued message of this type (wake-ups and late replies), without waiting.
fn drain(queue: &MessageQueue, mtype: i64) {
    while queue
        .receive_max(
            Selector::Exact(mtype),
            protocol::MAX_REPLY_LEN,
            Wait::NoWait,
        )
        .is_ok()
    {}
}

/// Sends one request as `pid` and waits up to `timeout` for the reply (blocking receive of
/// type `pid + 3` in a helper thread, woken by a wake-up message on time-out).
pub fn request_time(
    queue: &MessageQueue,
    pid: i64,
    timeout: Duration,
) -> Result<Reply, ClientError> {
    let mtype = protocol::reply_type(pid).ok_or(ClientError::BadPid(pid))?;
    let q = *queue;
    let start = Instant::now();
    q.send_retrying(protocol::REQUEST_TYPE, &protocol::request_body(pid))?;
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::Builder::new()
        .name("reply-waiter".into())
        .spawn(move || {
            let got = q.receive_retrying_max(mtype);
            let _ = tx.send(got);
        })
        .map_err(ClientError::Thread)?;
    let result = match rx.recv_timeout(timeout) {
        Ok(got) => got,
        Err(_) => {
            // Wake the waiter; if the queue is gone it has already woken with Removed.
            let _ = q.send(mtype, &wake_text(0), Wait::NoWait);
            let _ = waiter.join();
            drain(&q, mtype);
            return Err(ClientError::Timeout(timeout));
        }
    };
    let _ = waiter.join();
    let elapsed = start.elapsed();
    let msg = result?;
    match classify(msg.body) {
        Received::Reply(body) => Ok(Reply {
            text: String::from_utf8_lossy(&body).into_owned(),
            mtype: msg.mtype,
            elapsed,
        }),
        // Somebody else's wake-up for this type (another client with our pid): treat as no
        // reply rather than wait again without a bound.
        Received::Wake(_) => Err(ClientError::Timeout(timeout)),
    }
}

/// A blocking receive of exactly `mtype`, small buffer, retried on `EINTR`.
trait ReceiveReply {
    fn receive_retrying_max(&self, mtype: i64) -> Result<sysv_mq::Message, MqError>;
}

impl ReceiveReply for MessageQueue {
    fn receive_retrying_max(&self, mtype: i64) -> Result<sysv_mq::Message, MqError> {
        loop {
            match self.receive_max(Selector::Exact(mtype), protocol::MAX_REPLY_LEN, Wait::Block) {
                Err(MqError::Interrupted) => continue,
                other => return other,
            }
        }
    }
}

/// Parameters of [`bench()`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchConfig {
    /// Concurrent client threads (1..=[`MAX_BENCH_CLIENTS`]).
    pub clients: usize,
    /// Sequential round trips per client (at least 1).
    pub requests: usize,
    /// The longest wait for one reply; a longer one counts as an error and that client gives
    /// up its remaining requests (they count as errors too).
    pub timeout: Duration,
}

/// The result of [`bench()`], printed as one JSON object by `timeclient bench`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchReport {
    /// Client threads.
    pub clients: usize,
    /// Requests per client.
    pub requests: usize,
    /// Round trips that got a reply.
    pub completed: u64,
    /// Requests without a reply: time-outs, queue errors, and the requests a client did not
    /// send after its time-out.
    pub errors: u64,
    /// Wall-clock seconds from the common start to the last client's end.
    pub seconds: f64,
    /// Completed round trips per second.
    pub requests_per_sec: f64,
    /// Mean round-trip latency, microseconds.
    pub mean_us: f64,
    /// Median round-trip latency, microseconds.
    pub p50_us: f64,
    /// 99th-percentile round-trip latency, microseconds.
    pub p99_us: f64,
    /// Largest round-trip latency, microseconds.
    pub max_us: f64,
    /// The first synthetic pid (client `i` uses `first_pid + i`).
    pub first_pid: i64,
}

/// The synthetic pid of bench client `i` in block `block`:
/// `2^22 + (block mod 2043) * 2^20 + i`. Above every real pid (Linux caps `pid_max` at
/// `2^22`), and always at most [`protocol::MAX_PID`] so that Python servers can reply to it.
/// Each bench draws its block at random, not from its own pid: two benches in different PID
/// namespaces (two containers, both pid 1) must not share reply types.
pub fn synthetic_pid(block: u32, i: usize) -> i64 {
    SYNTHETIC_PID_BASE + (block as i64 % SYNTHETIC_BLOCKS) * SYNTHETIC_BLOCK + i as i64
}

/// The start line of the bench clients: `None` while waiting, then go (`true`) or abort.
#[derive(Default)]
struct Gate {
    state: Mutex<Option<bool>>,
    opened: Condvar,
}

impl Gate {
    fn open(&self, go: bool) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = Some(go);
        self.opened.notify_all();
    }

    fn wait(&self) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(go) = *s {
                return go;
            }
            s = self.opened.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Per-client state shared with the watchdog.
#[derive(Default)]
struct ClientSlot {
    /// Microseconds since the bench start at which the pending request was sent, plus one;
    /// 0 when the client is not waiting.
    waiting_since: AtomicU64,
    /// Sequence number of the pending request.
    seq: AtomicU64,
    /// The last sequence number woken by the watchdog.
    woken: AtomicU64,
}

/// Runs `config.clients` client threads against the server of `queue`; each does
/// `config.requests` sequential round trips with its own synthetic pid.
pub fn bench(queue: &MessageQueue, config: &BenchConfig) -> Result<BenchReport, ClientError> {
    if config.clients == 0 || config.clients > MAX_BENCH_CLIENTS {
        return Err(ClientError::BadBench(format!(
            "clients must be 1..={MAX_BENCH_CLIENTS}"
        )));
    }
    if config.requests == 0 {
        return Err(ClientError::BadBench("requests must be at least 1".into()));
    }
    let q = *queue;
    let block = rand::Rng::gen_range(&mut rand::thread_rng(), 0..SYNTHETIC_BLOCKS as u32);
    let first_pid = synthetic_pid(block, 0);
    let slots: Arc<Vec<ClientSlot>> =
        Arc::new((0..config.clients).map(|_| ClientSlot::default()).collect());
    let gate = Arc::new(Gate::default());
    let done = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let timeout_us = config.timeout.as_micros().min(u64::MAX as u128) as u64;

    let mut handles = Vec::with_capacity(config.clients);
    for i in 0..config.clients {
        let (slots, my_gate) = (Arc::clone(&slots), Arc::clone(&gate));
        let requests = config.requests;
        let pid = first_pid + i as i64;
        let spawned = std::thread::Builder::new()
            .name(format!("client-{i}"))
            .stack_size(256 * 1024)
            .spawn(move || {
                if my_gate.wait() {
                    bench_client(&q, pid, requests, &slots[i], t0)
                } else {
                    (Vec::new(), 0)
                }
            });
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => {
                gate.open(false);
                for h in handles {
                    let _ = h.join();
                }
                return Err(ClientError::Thread(e));
            }
        }
    }

    let watchdog = {
        let (slots, done) = (Arc::clone(&slots), Arc::clone(&done));
        let tick = (config.timeout / 4).clamp(Duration::from_millis(5), Duration::from_millis(100));
        std::thread::Builder::new()
            .name("bench-watchdog".into())
            .spawn(move || {
                while !done.load(Ordering::Acquire) {
                    std::thread::sleep(tick);
                    let now = t0.elapsed().as_micros() as u64;
                    for (i, s) in slots.iter().enumerate() {
                        let since = s.waiting_since.load(Ordering::Acquire);
                        if since == 0 || now.saturating_sub(since - 1) <= timeout_us {
                            continue;
                        }
                        let seq = s.seq.load(Ordering::Acquire);
                        if s.woken.load(Ordering::Acquire) == seq {
                            continue;
                        }
                        let mtype = first_pid + i as i64 + protocol::REPLY_OFFSET;
                        // On a full queue, try again at the next tick.
                        if q.send(mtype, &wake_text(seq), Wait::NoWait).is_ok() {
                            s.woken.store(seq, Ordering::Release);
                        }
                    }
                }
            })
    };
    let watchdog = match watchdog {
        Ok(w) => w,
        Err(e) => {
            gate.open(false);
            for h in handles {
                let _ = h.join();
            }
            return Err(ClientError::Thread(e));
        }
    };

    let start = Instant::now();
    gate.open(true);
    let mut latencies: Vec<u32> = Vec::with_capacity(config.clients * config.requests);
    let mut errors = 0u64;
    for h in handles {
        match h.join() {
            Ok((lat, err)) => {
                latencies.extend_from_slice(&lat);
                errors += err;
            }
            Err(_) => errors += config.requests as u64,
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    done.store(true, Ordering::Release);
    let _ = watchdog.join();
    for i in 0..config.clients {
        drain(&q, first_pid + i as i64 + protocol::REPLY_OFFSET);
    }

    latencies.sort_unstable();
    let completed = latencies.len() as u64;
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let rank = ((p / 100.0) * latencies.len() as f64).ceil() as usize;
        latencies[rank.clamp(1, latencies.len()) - 1] as f64
    };
    let mean_us = if latencies.is_empty() {
        0.0
    } else {
        latencies.iter().map(|&l| l as f64).sum::<f64>() / latencies.len() as f64
    };
    Ok(BenchReport {
        clients: config.clients,
        requests: config.requests,
        completed,
        errors,
        seconds,
        requests_per_sec: if seconds > 0.0 {
            completed as f64 / seconds
        } else {
            0.0
        },
        mean_us,
        p50_us: pct(50.0),
        p99_us: pct(99.0),
        max_us: latencies.last().map_or(0.0, |&l| l as f64),
        first_pid,
    })
}

/// One bench client: returns its latencies (µs) and its error count.
fn bench_client(
    q: &MessageQueue,
    pid: i64,
    requests: usize,
    slot: &ClientSlot,
    t0: Instant,
) -> (Vec<u32>, u64) {
    let mtype = pid + protocol::REPLY_OFFSET;
    let body = protocol::request_body(pid);
    let mut lat = Vec::with_capacity(requests);
    for n in 0..requests {
        let seq = n as u64 + 1;
        slot.seq.store(seq, Ordering::Release);
        let sent_at = Instant::now();
        slot.waiting_since.store(
            sent_at.duration_since(t0).as_micros() as u64 + 1,
            Ordering::Release,
        );
        if q.send_retrying(protocol::REQUEST_TYPE, &body).is_err() {
            slot.waiting_since.store(0, Ordering::Release);
            return (lat, (requests - n) as u64);
        }
        let outcome = loop {
            match q.receive_retrying_max(mtype) {
                Ok(m) => match classify(m.body) {
                    Received::Reply(_) => break true,
                    // A wake-up for this request: time-out.
                    Received::Wake(Some(s)) if s == seq => break false,
                    // A stale wake-up (the reply won the race): keep waiting.
                    Received::Wake(_) => continue,
                },
                Err(_) => break false,
            }
        };
        slot.waiting_since.store(0, Ordering::Release);
        if !outcome {
            return (lat, (requests - n) as u64);
        }
        lat.push(sent_at.elapsed().as_micros().min(u32::MAX as u128) as u32);
    }
    (lat, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_pids_are_above_real_pids_and_fit_a_c_int() {
        for own in [1u32, 2042, 2043, 4_194_303, u32::MAX] {
            let first = synthetic_pid(own, 0);
            let last = synthetic_pid(own, MAX_BENCH_CLIENTS - 1);
            assert!(first >= SYNTHETIC_PID_BASE);
            assert!(protocol::reply_type(last).is_some(), "{own}: {last}");
        }
        const {
            assert!(
                SYNTHETIC_PID_BASE + SYNTHETIC_BLOCKS * SYNTHETIC_BLOCK - 1 <= protocol::MAX_PID
            )
        };
    }

    #[test]
    fn wake_ups_are_told_from_replies() {
        assert!(matches!(classify(wake_text(7)), Received::Wake(Some(7))));
        assert!(matches!(
            classify(b"Wed Nov 25 14:23:00 2026".to_vec()),
            Received::Reply(_)
        ));
    }

    #[test]
    fn request_times_out_without_a_server_and_leaves_only_the_request() {
        let q = MessageQueue::create_private(0o600).unwrap();
        let got = request_time(&q, 4242, Duration::from_millis(100));
        assert!(matches!(got, Err(ClientError::Timeout(_))), "{got:?}");
        let s = q.stat().unwrap();
        assert_eq!(s.messages, 1, "only the unanswered request stays");
        q.remove().unwrap();
    }

    #[test]
    fn bench_counts_time_outs_as_errors() {
        let q = MessageQueue::create_private(0o600).unwrap();
        let report = bench(
            &q,
            &BenchConfig {
                clients: 2,
                requests: 3,
                timeout: Duration::from_millis(50),
            },
        )
        .unwrap();
        assert_eq!(report.errors, 6);
        assert_eq!(report.completed, 0);
        q.remove().unwrap();
    }

    #[test]
    fn request_answered_by_a_fake_server() {
        let q = MessageQueue::create_private(0o600).unwrap();
        let server = std::thread::spawn(move || {
            let m = q.receive(Selector::Exact(1), Wait::Block).unwrap();
            let pid = protocol::parse_pid(&m.body).unwrap();
            q.send(pid + 3, b"Wed Nov 25 14:23:00 2026", Wait::Block)
                .unwrap();
        });
        let r = request_time(&q, 77, Duration::from_secs(10)).unwrap();
        server.join().unwrap();
        assert_eq!(r.mtype, 80);
        assert_eq!(r.text, "Wed Nov 25 14:23:00 2026");
        q.remove().unwrap();
    }
}
