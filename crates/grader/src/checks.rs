//! The check catalogue: one function per check id. Each starts a fresh server through a
//! [`Launcher`], probes it over the queue and through `/proc`, stops it, and returns an
//! [`Outcome`] that says what it did, what it expected, what it observed, and a hint.
//!
//! Timing rules hold on a loaded machine: load only delays replies, so a check never
//! passes because a reply came *early*, and every "fast enough" bound keeps a wide margin
//! (at least one work delay plus a second and a half).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::outcome::{CheckId, Outcome, Stage, Status};
use super::probe::{self, Got, Pids};
use super::procfs::ThreadSampler;
use super::sandbox::env::{seconds, ServerParams};
use super::sandbox::IsolationError;
use super::sut::{Exit, LaunchError, LaunchSpec, Launcher, Sut};
use sysv_mq::protocol;
use sysv_mq::{self as mq, MessageQueue, Wait};

/// The knobs of one stage's checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckParams {
    /// The stage graded.
    pub stage: Stage,
    /// The queue key the server must create (666).
    pub key: i32,
    /// The work delay (seconds) given to the server as `TIMESERVER_DELAY` in the
    /// delay-based checks; other checks give it 0 (routing gives a quarter of it).
    pub delay: f64,
    /// The pool size given as `TIMESERVER_WORKERS` (at least 2).
    pub workers: usize,
    /// Concurrent clients of the routing check.
    pub clients: usize,
    /// How long a server may take to create its queue.
    #[serde(with = "seconds")]
    pub start_timeout: Duration,
    /// How long a server may take to exit after the stop message.
    #[serde(with = "seconds")]
    pub stop_timeout: Duration,
}

impl CheckParams {
    /// Defaults for a stage: delay 0.4 s, 3 workers, 24 clients, 5 s deadlines.
    pub fn new(stage: Stage) -> Self {
        Self {
            stage,
            key: protocol::DEFAULT_KEY,
            delay: 0.4,
            workers: 3,
            clients: 24,
            start_timeout: Duration::from_secs(5),
            stop_timeout: Duration::from_secs(5),
        }
    }
}

/// Builds outcomes with the check's id and timing filled in.
struct Report {
    id: CheckId,
    began: Instant,
    did: String,
}

impl Report {
    fn new(id: CheckId, did: impl Into<String>) -> Self {
        Self {
            id,
            began: Instant::now(),
            did: did.into(),
        }
    }

    fn pass(&self, expected: impl Into<String>, observed: impl Into<String>) -> Outcome {
        Outcome {
            id: self.id,
            status: Status::Passed,
            did: self.did.clone(),
            expected: expected.into(),
            observed: observed.into(),
            hint: None,
            seconds: self.began.elapsed().as_secs_f64(),
            server_output: None,
        }
    }

    fn fail(
        &self,
        expected: impl Into<String>,
        observed: impl Into<String>,
        hint: impl Into<String>,
        server: Option<&dyn Sut>,
    ) -> Outcome {
        Outcome {
            id: self.id,
            status: Status::Failed,
            did: self.did.clone(),
            expected: expected.into(),
            observed: observed.into(),
            hint: Some(hint.into()),
            seconds: self.began.elapsed().as_secs_f64(),
            server_output: server
                .map(|s| s.output_tail())
                .filter(|t| !t.trim().is_empty()),
        }
    }
}

/// Evaluates to the value of an `Ok`, or returns the `Err`'s outcome from the check: for the
/// steps (starting the server, sending a burst) whose failure already decides the verdict.
macro_rules! or_return {
    ($step:expr) => {
        match $step {
            Ok(value) => value,
            Err(outcome) => return *outcome,
        }
    };
}

impl Report {
    /// Starts a fresh server with this work delay; if it never comes up, the failed outcome.
    fn start(
        &self,
        expected: &str,
        launcher: &dyn Launcher,
        base: &LaunchSpec,
        p: &CheckParams,
        delay: f64,
    ) -> Result<Running, Box<Outcome>> {
        start(launcher, base, p, delay)
            .map(|(running, _)| running)
            .map_err(|ns| Box::new(not_started(self, expected, ns)))
    }

    /// Sends a burst of `n` requests from fresh pids; if the queue refuses them, the failed
    /// outcome.
    fn burst(
        &self,
        expected: &str,
        running: &Running,
        pids: &mut Pids,
        n: usize,
    ) -> Result<Vec<probe::Pending>, Box<Outcome>> {
        probe::burst(running.queue, pids, n).map_err(|e| {
            Box::new(self.fail(
                expected,
                format!("sending failed: {e}"),
                "keep the queue open while serving",
                Some(running.sut.as_ref()),
            ))
        })
    }
}

/// "; the server ended (exit status 1)" when it has ended, else nothing: the tail of an
/// observation.
fn ended(exit: Option<Exit>) -> String {
    exit.map(|e| format!("; the server ended ({e})"))
        .unwrap_or_default()
}

/// "only 3 of 8 replies arrived", and how the server ended if it did.
fn missing_replies(served: usize, n: usize, exit: Option<Exit>) -> String {
    format!("only {served} of {n} replies arrived{}", ended(exit))
}

/// A started server with its queue.
struct Running {
    sut: Box<dyn Sut>,
    queue: MessageQueue,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.sut.kill_all();
    }
}

/// Why a server did not come up, as an observation and a hint; or the sandbox failed,
/// which says nothing about the server.
struct NotStarted {
    observed: String,
    hint: String,
    sut: Option<Box<dyn Sut>>,
    isolation: Option<IsolationError>,
}

fn spec_with(base: &LaunchSpec, delay: f64, workers: usize) -> LaunchSpec {
    let mut spec = base.clone();
    spec.server = ServerParams {
        delay: Duration::from_secs_f64(delay.max(0.0)),
        workers: workers as u32,
    };
    spec
}

/// Starts a server and waits for its queue. A server that exits first, or never creates the
/// key, is reported with what the namespace shows instead.
fn start(
    launcher: &dyn Launcher,
    base: &LaunchSpec,
    p: &CheckParams,
    delay: f64,
) -> Result<(Running, Duration), NotStarted> {
    let spec = spec_with(base, delay, p.workers);
    let mut sut = launcher.launch(&spec).map_err(|e| NotStarted {
        observed: format!("the server could not be started: {e}"),
        hint: "check the file name and the command in the submission contract".into(),
        sut: None,
        isolation: match e {
            LaunchError::Isolation(why) => Some(why),
            _ => None,
        },
    })?;
    // The server's time starts once it exists: the sandbox's own work (copying the
    // submission, leasing a uid, an agent's round trip) is not the server's to pay for.
    let began = Instant::now();
    let deadline = began + p.start_timeout;
    loop {
        if let Ok(queue) = MessageQueue::open(p.key) {
            return Ok((Running { sut, queue }, began.elapsed()));
        }
        if let Some(exit) = sut.poll_exit() {
            // It may have created the queue just before exiting.
            if let Ok(queue) = MessageQueue::open(p.key) {
                return Ok((Running { sut, queue }, began.elapsed()));
            }
            return Err(NotStarted {
                observed: format!("the server ended ({exit}) without creating queue {}", p.key),
                hint: "run the server by hand and read its error (see the server output below)"
                    .into(),
                sut: Some(sut),
                isolation: None,
            });
        }
        if Instant::now() >= deadline {
            let others: Vec<String> = mq::list_queues()
                .unwrap_or_default()
                .into_iter()
                .filter(|q| q.key != p.key)
                .map(|q| format!("{} (0x{:x})", q.key, q.key))
                .collect();
            let (observed, hint) = if others.is_empty() {
                (
                    format!(
                        "no queue with key {} after {:.1} s, and no other queue either",
                        p.key,
                        p.start_timeout.as_secs_f64()
                    ),
                    format!(
                        "create the queue first thing: sysv_ipc.MessageQueue({}, sysv_ipc.IPC_CREAT)",
                        p.key
                    ),
                )
            } else {
                (
                    format!(
                        "no queue with key {} after {:.1} s, but a queue with key {} appeared",
                        p.key,
                        p.start_timeout.as_secs_f64(),
                        others.join(", ")
                    ),
                    format!("the key must be {} (as in the handout's client)", p.key),
                )
            };
            return Err(NotStarted {
                observed,
                hint,
                sut: Some(sut),
                isolation: None,
            });
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Runs check `id` against a fresh server described by `base`, and stops it. A check
/// whose sandbox could not be set up comes back as [`Status::Error`]: nothing about the
/// submission was learnt. `client_exe` is the program run as a real client process
/// (`poolgrade __client`), or `None` for an in-process client.
pub fn run_check(
    id: CheckId,
    launcher: &dyn Launcher,
    base: &LaunchSpec,
    p: &CheckParams,
    client_exe: Option<&std::path::Path>,
) -> Outcome {
    let outcome = match id {
        CheckId::Starts => starts(launcher, base, p),
        CheckId::Reply => reply(launcher, base, p, client_exe),
        CheckId::Routing => routing(launcher, base, p),
        CheckId::NoTheft => no_theft(launcher, base, p),
        CheckId::Concurrency => concurrency(launcher, base, p),
        CheckId::Spawn => spawn(launcher, base, p),
        CheckId::PoolBounded => pool_bounded(launcher, base, p),
        CheckId::PoolReuse => pool_reuse(launcher, base, p),
        CheckId::Robustness => robustness(launcher, base, p),
        CheckId::Termination => termination(launcher, base, p),
        CheckId::Drain => drain(launcher, base, p),
        CheckId::Cleanup => cleanup(launcher, base, p),
    };
    launcher.sweep_queues();
    outcome
}

/// The outcome of a check whose server never came up (an error if the sandbox failed).
fn not_started(r: &Report, expected: &str, ns: NotStarted) -> Outcome {
    if let Some(why) = ns.isolation {
        return Outcome::error(r.id, why.to_string(), r.began.elapsed().as_secs_f64());
    }
    let mut o = r.fail(
        expected,
        format!("{} (see the `starts` check)", ns.observed),
        ns.hint,
        ns.sut.as_deref(),
    );
    if let Some(mut sut) = ns.sut {
        sut.kill_all();
        o.server_output = Some(sut.output_tail()).filter(|t| !t.trim().is_empty());
    }
    o
}

fn starts(launcher: &dyn Launcher, base: &LaunchSpec, p: &CheckParams) -> Outcome {
    let r = Report::new(
        CheckId::Starts,
        format!(
            "started `{}` and watched for queue {}",
            base.command.join(" "),
            p.key
        ),
    );
    let expected = format!(
        "queue {} exists within {:.1} s",
        p.key,
        p.start_timeout.as_secs_f64()
    );
    match start(launcher, base, p, 0.0) {
        Ok((_running, after)) => r.pass(
            expected,
            format!(
                "queue {} appeared after {:.2} s",
                p.key,
                after.as_secs_f64()
            ),
        ),
        Err(ns) => {
            let observed = ns.observed.clone();
            let mut o = not_started(&r, &expected, ns);
            if !o.is_error() {
                o.observed = observed;
            }
            o
        }
    }
}

fn describe_strays(stray: &[mq::Message], pid: Option<i64>) -> String {
    if stray.is_empty() {
        return "nothing else was in the queue".into();
    }
    let types: BTreeSet<i64> = stray.iter().map(|m| m.mtype).collect();
    let mut text = format!(
        "{} message(s) left in the queue, of type(s) {:?}",
        stray.len(),
        types
    );
    if let Some(pid) = pid {
        if types.contains(&pid) {
            text.push_str(&format!(
                " — type {pid} is the client's pid itself, not pid+3"
            ));
        }
    }
    text
}

fn reply(
    launcher: &dyn Launcher,
    base: &LaunchSpec,
    p: &CheckParams,
    client_exe: Option<&std::path::Path>,
) -> Outcome {
    let r = Report::new(
        CheckId::Reply,
        "one client sent its pid (type 1) and waited, blocked, for type pid+3",
    );
    let expected = "exactly one reply of type pid+3 whose text is the current date and time";
    let mut running = or_return!(r.start(expected, launcher, base, p, 0.0));
    let timeout = p.start_timeout;
    let (pid, got) = match client_exe {
        Some(exe) => match real_client(exe, p.key, timeout, running.sut.as_ref()) {
            Ok(x) => x,
            Err(e) => {
                return Outcome::error(
                    r.id,
                    format!("the client process failed: {e}"),
                    r.began.elapsed().as_secs_f64(),
                )
            }
        },
        None => {
            let pid = Pids::new().take();
            match probe::request(running.queue, pid) {
                Ok(mut pending) => (pid, pending.wait_until(Instant::now() + timeout)),
                Err(e) => (pid, Got::from_error(&e)),
            }
        }
    };
    std::thread::sleep(Duration::from_millis(300));
    let stray = probe::drain_queue(running.queue);
    let dup = stray
        .iter()
        .filter(|m| Some(m.mtype) == protocol::reply_type(pid))
        .count();
    match got {
        Got::Reply { message, latency } => {
            let text = String::from_utf8_lossy(&message.body).to_string();
            if dup > 0 {
                return r.fail(
                    expected,
                    format!("{} more repl(ies) of type pid+3 followed the first", dup),
                    "send exactly one reply per request",
                    Some(running.sut.as_ref()),
                );
            }
            if !protocol::is_current_datetime(&text, 300) {
                return r.fail(
                    expected,
                    format!("the reply came, but its text {text:?} does not read as the current date and time"),
                    "reply with time.ctime() or str(datetime.datetime.now()), encoded",
                    Some(running.sut.as_ref()),
                );
            }
            r.pass(
                expected,
                format!(
                    "reply {text:?} of type {} after {:.0} ms",
                    message.mtype,
                    latency.as_secs_f64() * 1000.0
                ),
            )
        }
        Got::Nothing => {
            let alive = running.sut.poll_exit();
            let mut observed = format!(
                "no reply of type pid+3 = {} within {:.1} s; {}",
                pid + protocol::REPLY_OFFSET,
                timeout.as_secs_f64(),
                describe_strays(&stray, Some(pid))
            );
            observed.push_str(&ended(alive));
            r.fail(
                expected,
                observed,
                "reply with mq.send(text, type=pid + 3), where pid is the number in the request",
                Some(running.sut.as_ref()),
            )
        }
        Got::Removed => {
            let _ = running.sut.poll_exit();
            r.fail(
                expected,
                "the queue was removed while the client waited for its reply",
                "do not remove the queue while clients wait for replies",
                Some(running.sut.as_ref()),
            )
        }
        Got::Refused(e) => r.fail(
            expected,
            format!("the queue refused the client's request: {e}"),
            "keep the queue usable: read requests as they come, and never fill it or shrink its limits",
            Some(running.sut.as_ref()),
        ),
        Got::Fault(e) => Outcome::error(
            r.id,
            format!("the client could not use the queue: {e}"),
            r.began.elapsed().as_secs_f64(),
        ),
    }
}

/// What a `poolgrade __client` process prints: one JSON object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum ClientReport {
    /// A reply came.
    Reply {
        /// The client's pid.
        pid: i64,
        /// The reply's type.
        mtype: i64,
        /// The reply's bytes.
        body: Vec<u8>,
        /// Seconds from the request to the reply.
        seconds: f64,
    },
    /// Nothing came before the deadline.
    Nothing {
        /// The client's pid.
        pid: i64,
    },
    /// The queue was removed while the client waited.
    Removed {
        /// The client's pid.
        pid: i64,
    },
    /// The queue refused the request (full).
    Refused {
        /// The client's pid.
        pid: i64,
        /// What the queue said.
        error: String,
    },
    /// The client could not use the queue (a grading fault).
    Fault {
        /// The client's pid.
        pid: i64,
        /// Why.
        error: String,
    },
}

/// Runs `exe __client` as a real client process: it sends its own pid and blocks for the
/// reply, with effective uid `as_uid` when the server's queue needs it (the shield is not
/// inherited through `exec` under `no_new_privs`). Returns the client's pid and what it got;
/// `Err` is a grading fault.
fn real_client(
    exe: &std::path::Path,
    key: i32,
    timeout: Duration,
    sut: &dyn Sut,
) -> Result<(i64, Got), String> {
    let as_uid = sut.probe_uid();
    let mut cmd = std::process::Command::new(exe);
    cmd.args([
        CLIENT_SUBCOMMAND,
        "--key",
        &key.to_string(),
        "--timeout",
        &format!("{}", timeout.as_secs_f64()),
    ]);
    if let Some(uid) = as_uid {
        cmd.args(["--as-uid", &uid.to_string()]);
    }
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    // Started as plain root: it takes the server's uid itself (see `client_main`).
    let mut child = None;
    sut.unshielded(&mut || child = Some(cmd.spawn()))
        .map_err(|e| e.to_string())?;
    let out = child
        .ok_or("the client was not started")?
        .and_then(|c| c.wait_with_output())
        .map_err(|e| e.to_string())?;
    let report: ClientReport = serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "bad client output ({e}): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })?;
    Ok(match report {
        ClientReport::Reply {
            pid,
            mtype,
            body,
            seconds,
        } => (
            pid,
            Got::Reply {
                message: mq::Message {
                    mtype,
                    body,
                    truncated: false,
                },
                latency: Duration::from_secs_f64(seconds.max(0.0)),
            },
        ),
        ClientReport::Nothing { pid } => (pid, Got::Nothing),
        ClientReport::Removed { pid } => (pid, Got::Removed),
        ClientReport::Refused { pid, error } => (pid, Got::Refused(error)),
        ClientReport::Fault { pid, error } => (pid, Got::Fault(error)),
    })
}

/// The hidden subcommand of the real client process.
pub const CLIENT_SUBCOMMAND: &str = "__client";

/// The body of `poolgrade __client`: a real client process. With `as_uid`, it first takes
/// that uid as its effective uid (real and saved stay 0: see the sandbox's shield). It sends
/// its own pid, waits blocked for pid+3 up to `timeout`, and prints one [`ClientReport`].
/// Returns the exit code.
pub fn client_main(key: i32, timeout: Duration, as_uid: Option<u32>) -> i32 {
    let pid = std::process::id() as i64;
    let print = |r: ClientReport| match serde_json::to_string(&r) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("poolgrade __client: {e}"),
    };
    let fault = |error: String| {
        print(ClientReport::Fault { pid, error });
        1
    };
    let _shield = match as_uid.map(|u| super::sandbox::shield::Shield::raise(u, u)) {
        Some(Err(e)) => return fault(e.to_string()),
        Some(Ok(s)) => Some(s),
        None => None,
    };
    let queue = match MessageQueue::open(key) {
        Ok(q) => q,
        Err(e) => return fault(e.to_string()),
    };
    let got = match probe::request(queue, pid) {
        Ok(mut pending) => pending.wait_until(Instant::now() + timeout),
        Err(e) => Got::from_error(&e),
    };
    match got {
        Got::Reply { message, latency } => {
            print(ClientReport::Reply {
                pid,
                mtype: message.mtype,
                body: message.body,
                seconds: latency.as_secs_f64(),
            });
            0
        }
        Got::Nothing => {
            print(ClientReport::Nothing { pid });
            1
        }
        Got::Removed => {
            print(ClientReport::Removed { pid });
            1
        }
        Got::Refused(error) => {
            print(ClientReport::Refused { pid, error });
            1
        }
        Got::Fault(e) => fault(e),
    }
}

/// Summarises a burst: how many got a reply, and the sorted latencies.
fn tally(got: &[Got]) -> (usize, Vec<Duration>) {
    let mut lat: Vec<Duration> = got.iter().filter_map(|g| g.reply().map(|r| r.1)).collect();
    lat.sort();
    (lat.len(), lat)
}

/// The error outcome of a check whose clients met a fault of the grader's own (see
/// [`Got::Fault`]), if one did: such replies say nothing about the server.
fn faulted(r: &Report, got: &[Got]) -> Option<Outcome> {
    got.iter().find_map(|g| match g {
        Got::Fault(e) => Some(Outcome::error(
            r.id,
            format!("a client could not use the queue: {e}"),
            r.began.elapsed().as_secs_f64(),
        )),
        _ => None,
    })
}

fn waves_of(n: usize, workers: usize) -> usize {
    n.div_ceil(workers.max(1))
}

fn routing(launcher: &dyn Launcher, base: &LaunchSpec, p: &CheckParams) -> Outcome {
    let n = p.clients;
    let delay = p.delay / 4.0;
    let r = Report::new(
        CheckId::Routing,
        format!("{n} clients with distinct pids sent requests at once (TIMESERVER_DELAY={delay})"),
    );
    let expected =
        "each client gets exactly one reply, of its own type pid+3; nothing else left in the queue";
    let mut running = or_return!(r.start(expected, launcher, base, p, delay));
    let mut pids = Pids::new();
    let mut pending = or_return!(r.burst(expected, &running, &mut pids, n));
    let budget = Duration::from_secs_f64(waves_of(n, 1) as f64 * delay) + p.start_timeout;
    let got = probe::collect(&mut pending, Instant::now() + budget);
    if let Some(o) = faulted(&r, &got) {
        return o;
    }
    std::thread::sleep(Duration::from_millis(300));
    let stray = probe::drain_queue(running.queue);
    let ours: BTreeSet<i64> = pending
        .iter()
        .map(|x| x.pid + protocol::REPLY_OFFSET)
        .collect();
    let duplicates = stray.iter().filter(|m| ours.contains(&m.mtype)).count();
    let (served, _) = tally(&got);
    let exit = running.sut.poll_exit();
    if served == n && stray.is_empty() {
        return r.pass(
            expected,
            format!("all {n} clients got their own reply; queue left empty"),
        );
    }
    let mut observed = format!("{served} of {n} clients got a reply");
    if duplicates > 0 {
        observed.push_str(&format!(
            "; {duplicates} extra repl(ies) to our clients were left in the queue (some clients got more than one, others none)"
        ));
    }
    let others = stray.len() - duplicates;
    if others > 0 {
        observed.push_str(&format!("; {}", describe_strays(&stray, None)));
    }
    observed.push_str(&ended(exit));
    let hint = if duplicates > 0 {
        "each worker must use the pid of its own request: pass it as an argument to the thread or task, not through a shared variable"
    } else {
        "reply to every request with type int(pid) + 3, from the thread that serves it"
    };
    r.fail(expected, observed, hint, Some(running.sut.as_ref()))
}

fn no_theft(launcher: &dyn Launcher, base: &LaunchSpec, p: &CheckParams) -> Outcome {
    let k = 3;
    let r = Report::new(
        CheckId::NoTheft,
        format!("{k} clients sent requests but started reading only after the replies were sent"),
    );
    let expected = "the replies wait in the queue until their clients read them";
    let mut running = or_return!(r.start(expected, launcher, base, p, 0.0));
    let mut pids = Pids::new();
    let me = std::process::id() as i32;
    let chosen: Vec<i64> = (0..k).map(|_| pids.take()).collect();
    // One at a time, so that no other defect (a race between concurrent requests) can
    // hide or fake a theft: each reply must sit in the queue before the next request.
    for pid in &chosen {
        if let Err(e) = running.queue.send(
            protocol::REQUEST_TYPE,
            &protocol::request_body(*pid),
            Wait::NoWait,
        ) {
            return r.fail(
                expected,
                format!("sending failed: {e}"),
                "keep the queue open while serving",
                Some(running.sut.as_ref()),
            );
        }
        let deadline = Instant::now() + p.start_timeout;
        while Instant::now() < deadline {
            match running.queue.stat() {
                // The server sent something since our request: its reply.
                Ok(s) if s.last_send_pid != me => break,
                Ok(_) => std::thread::sleep(Duration::from_millis(2)),
                Err(_) => break,
            }
        }
    }
    // Give a thief every chance to take them.
    std::thread::sleep(Duration::from_millis(300));
    let mut got = 0;
    for pid in &chosen {
        let mut w = probe::start_waiter(running.queue, *pid);
        if w.wait_until(Instant::now() + Duration::from_millis(700))
            .reply()
            .is_some()
        {
            got += 1;
        }
    }
    if got == k {
        return r.pass(expected, format!("all {k} late readers got their replies"));
    }
    let exit = running.sut.poll_exit();
    let mut observed = format!("only {got} of {k} late readers got a reply");
    observed.push_str(&ended(exit));
    r.fail(
        expected,
        observed,
        "the server must receive only requests and stops: use mq.receive(type=-2) (or type=1 and type=2 separately); type=0 also takes replies meant for clients",
        Some(running.sut.as_ref()),
    )
}

fn concurrency(launcher: &dyn Launcher, base: &LaunchSpec, p: &CheckParams) -> Outcome {
    let n = 2 * p.workers + 2;
    let d = p.delay;
    let r = Report::new(
        CheckId::Concurrency,
        format!("{n} clients sent requests at once to a server with TIMESERVER_DELAY={d}"),
    );
    let limit = 0.6 * n as f64 * d;
    let expected = format!(
        "all served in well under the {:.1} s that one-after-another service takes (at most {:.2} s)",
        n as f64 * d,
        limit
    );
    let mut running = or_return!(r.start(&expected, launcher, base, p, d));
    let mut pids = Pids::new();
    let mut pending = or_return!(r.burst(&expected, &running, &mut pids, n));
    // Deadlines from the moment the requests are out: readying the clients can take long
    // on a starved machine, and that time is not the server's.
    let began = Instant::now();
    let got = probe::collect(
        &mut pending,
        began + Duration::from_secs_f64(n as f64 * d) + p.start_timeout,
    );
    if let Some(o) = faulted(&r, &got) {
        return o;
    }
    let (served, lat) = tally(&got);
    let total = lat.last().copied().unwrap_or_default().as_secs_f64();
    if served == n && total <= limit {
        return r.pass(
            expected,
            format!(
                "all {n} replies within {total:.2} s (first after {:.2} s)",
                lat[0].as_secs_f64()
            ),
        );
    }
    let exit = running.sut.poll_exit();
    let (observed, hint) = if served < n {
        (
            missing_replies(served, n, exit),
            "some requests got no reply, so their timing cannot be judged: see the routing check",
        )
    } else {
        (
            format!("the last of {n} replies came after {total:.2} s: requests were served one after another"),
            "serve each request in a thread (stage spawn) or submit it to the pool (stage pool), and sleep TIMESERVER_DELAY in that worker, not in the main loop",
        )
    };
    r.fail(expected, observed, hint, Some(running.sut.as_ref()))
}

/// Waits ~150 ms with the sampler running and returns the idle thread count.
fn idle_baseline(sampler: &ThreadSampler) -> usize {
    sampler.reset();
    std::thread::sleep(Duration::from_millis(150));
    sampler.wait_samples(3, Duration::from_secs(2));
    sampler.snapshot().peak
}

fn spawn(launcher: &dyn Launcher, base: &LaunchSpec, p: &CheckParams) -> Outcome {
    let n = 2 * p.workers + 2;
    let d = p.delay;
    let need = (3 * n).div_ceil(4);
    let r = Report::new(
        CheckId::Spawn,
        format!("two bursts of {n} concurrent requests (TIMESERVER_DELAY={d}), counting the server's live threads in /proc"),
    );
    let expected = format!(
        "live threads rise by at least {need} under {n} concurrent requests, and the second burst is served by at least {need} new threads"
    );
    let mut running = or_return!(r.start(&expected, launcher, base, p, d));
    let sampler = ThreadSampler::start(running.sut.processes(), Duration::from_millis(5));
    let baseline = idle_baseline(&sampler);
    let mut pids = Pids::new();
    let mut seen_before: BTreeSet<_> = sampler.snapshot().distinct;
    let mut rises = Vec::new();
    let mut fresh = Vec::new();
    for _ in 0..2 {
        sampler.reset();
        let mut pending = or_return!(r.burst(&expected, &running, &mut pids, n));
        // Deadlines from the moment the requests are out: readying the clients can take long
        // on a starved machine, and that time is not the server's.
        let began = Instant::now();
        let got = probe::collect(
            &mut pending,
            began + Duration::from_secs_f64(n as f64 * d) + p.start_timeout,
        );
        if let Some(o) = faulted(&r, &got) {
            return o;
        }
        sampler.wait_samples(2, Duration::from_secs(1));
        let seen = sampler.snapshot();
        let (served, _) = tally(&got);
        if served < n {
            let exit = running.sut.poll_exit();
            return r.fail(
                &expected,
                missing_replies(served, n, exit),
                "every request must be answered (see the routing and concurrency checks)",
                Some(running.sut.as_ref()),
            );
        }
        rises.push(seen.peak.saturating_sub(baseline));
        fresh.push(seen.distinct.difference(&seen_before).count());
        seen_before.extend(seen.distinct);
    }
    let observed = format!(
        "{baseline} thread(s) when idle; under load the count rose by {} then {}; {} then {} new threads appeared",
        rises[0], rises[1], fresh[0], fresh[1]
    );
    if rises.iter().all(|x| *x >= need) && fresh[1] >= need {
        return r.pass(expected, observed);
    }
    let hint = if rises.iter().all(|x| *x >= need) {
        "the second burst reused threads: stage 1 must start a new threading.Thread for every request (a pool belongs to stage 2)"
    } else {
        "start a new threading.Thread(target=..., args=(pid,)) for every request, and do the work (including the delay) in it"
    };
    r.fail(expected, observed, hint, Some(running.sut.as_ref()))
}

fn pool_bounded(launcher: &dyn Launcher, base: &LaunchSpec, p: &CheckParams) -> Outcome {
    let w = p.workers;
    let n = 4 * w;
    let d = p.delay;
    let waves = waves_of(n, w);
    let r = Report::new(
        CheckId::PoolBounded,
        format!("{n} concurrent requests to a server with TIMESERVER_WORKERS={w} and TIMESERVER_DELAY={d}, counting its live threads in /proc"),
    );
    let late = Duration::from_secs_f64(waves as f64 * d + d + 1.5);
    let expected = format!(
        "live threads rise by at most {} over the idle count; at most {w} replies in the first wave (before {:.2} s); all {n} in {waves} waves (by {:.2} s)",
        w + 1,
        1.5 * d,
        late.as_secs_f64()
    );
    let running = or_return!(r.start(&expected, launcher, base, p, d));
    let sampler = ThreadSampler::start(running.sut.processes(), Duration::from_millis(5));
    let baseline = idle_baseline(&sampler);
    sampler.reset();
    let mut pids = Pids::new();
    let mut pending = or_return!(r.burst(&expected, &running, &mut pids, n));
    // Deadlines from the moment the requests are out: readying the clients can take long
    // on a starved machine, and that time is not the server's.
    let began = Instant::now();
    let got = probe::collect(&mut pending, began + late + p.start_timeout);
    if let Some(o) = faulted(&r, &got) {
        return o;
    }
    sampler.wait_samples(2, Duration::from_secs(1));
    let seen = sampler.snapshot();
    let (served, lat) = tally(&got);
    let rise = seen.peak.saturating_sub(baseline);
    let first_wave = lat.iter().filter(|l| l.as_secs_f64() < 1.5 * d).count();
    let total = lat.last().copied().unwrap_or_default();
    let observed = format!(
        "{baseline} thread(s) idle, peak {} under load (rise {rise}); {first_wave} replies in the first wave; {served} of {n} served, the last after {:.2} s",
        seen.peak,
        total.as_secs_f64()
    );
    let bounded = rise <= w + 1;
    let in_waves = first_wave <= w && served == n && total <= late;
    if bounded && in_waves {
        return r.pass(expected, observed);
    }
    let hint = if !bounded {
        format!("create the pool once, with TIMESERVER_WORKERS ({w}) workers, and submit requests to it: no new thread per request")
    } else if first_wave > w {
        format!("the pool serves more than TIMESERVER_WORKERS={w} requests at once: size it from the environment variable")
    } else if served < n {
        "some requests were never answered (see routing)".to_string()
    } else {
        format!("requests were served by fewer than {w} workers at a time: size the pool from TIMESERVER_WORKERS and sleep in the worker, not the main loop")
    };
    r.fail(expected, observed, hint, Some(running.sut.as_ref()))
}

fn pool_reuse(launcher: &dyn Launcher, base: &LaunchSpec, p: &CheckParams) -> Outcome {
    let w = p.workers;
    let n = 2 * w;
    let d = p.delay;
    let r = Report::new(
        CheckId::PoolReuse,
        format!("two bursts of {n} requests, one after the other (TIMESERVER_WORKERS={w}, TIMESERVER_DELAY={d}), noting which threads were alive"),
    );
    let expected =
        "the second burst is served by the same threads as the first (at most 1 new thread)";
    let mut running = or_return!(r.start(expected, launcher, base, p, d));
    let sampler = ThreadSampler::start(running.sut.processes(), Duration::from_millis(5));
    let _ = idle_baseline(&sampler);
    let mut pids = Pids::new();
    let mut sets = Vec::new();
    for _ in 0..2 {
        let mut pending = or_return!(r.burst(expected, &running, &mut pids, n));
        // Deadlines from the moment the requests are out: readying the clients can take long
        // on a starved machine, and that time is not the server's.
        let began = Instant::now();
        let got = probe::collect(
            &mut pending,
            began + Duration::from_secs_f64(n as f64 * d) + p.start_timeout,
        );
        if let Some(o) = faulted(&r, &got) {
            return o;
        }
        let (served, _) = tally(&got);
        if served < n {
            let exit = running.sut.poll_exit();
            return r.fail(
                expected,
                missing_replies(served, n, exit),
                "every request must be answered (see routing)",
                Some(running.sut.as_ref()),
            );
        }
        sampler.wait_samples(2, Duration::from_secs(1));
        sets.push(sampler.snapshot().distinct);
        std::thread::sleep(Duration::from_millis(50));
    }
    let fresh = sets[1].difference(&sets[0]).count();
    let observed = format!(
        "{} distinct threads alive up to the end of the first burst, {fresh} new ones in the second",
        sets[0].len()
    );
    if fresh <= 1 {
        return r.pass(expected, observed);
    }
    r.fail(
        expected,
        observed,
        "create the pool once, before the receive loop, and keep it for the server's life; do not recreate it or its workers per request (e.g. no maxtasksperchild=1)",
        Some(running.sut.as_ref()),
    )
}

fn robustness(launcher: &dyn Launcher, base: &LaunchSpec, p: &CheckParams) -> Outcome {
    let bad: Vec<(&str, i64, Vec<u8>)> = vec![
        ("non-numeric text", 1, b"hello".to_vec()),
        ("empty text", 1, Vec::new()),
        ("oversized text (1000 digits)", 1, vec![b'9'; 1000]),
        ("negative pid", 1, b"-5".to_vec()),
        ("non-UTF-8 bytes", 1, vec![0xff, 0xfe, 0x00]),
        ("unknown type 7", 7, b"junk".to_vec()),
    ];
    let r = Report::new(
        CheckId::Robustness,
        "sent malformed requests one by one (non-numeric, empty, oversized, negative pid, non-UTF-8, unknown type), each followed by a valid request",
    );
    let expected = "the server stays alive and answers the valid request after each malformed one";
    let mut running = or_return!(r.start(expected, launcher, base, p, 0.0));
    let mut pids = Pids::new();
    for (what, mtype, body) in &bad {
        if let Err(e) = running.queue.send(*mtype, body, Wait::NoWait) {
            return r.fail(
                expected,
                format!("could not send the {what}: {e}"),
                "keep the queue open while serving",
                Some(running.sut.as_ref()),
            );
        }
        let pid = pids.take();
        let got = match probe::request(running.queue, pid) {
            Ok(mut pending) => pending.wait_until(Instant::now() + p.start_timeout),
            Err(e) => Got::from_error(&e),
        };
        if let Some(o) = faulted(&r, std::slice::from_ref(&got)) {
            return o;
        }
        if got.reply().is_none() {
            std::thread::sleep(Duration::from_millis(100));
            let state = match running.sut.poll_exit() {
                Some(exit) => format!("the server ended ({exit})"),
                None => "the server is still running but stopped answering".to_string(),
            };
            return r.fail(
                expected,
                format!("after the {what} ({} bytes, type {mtype}), a valid request got no reply: {state}", body.len()),
                "validate each request before using it: catch ValueError (int() of bad text) and errors from send, in the worker, and skip that request",
                Some(running.sut.as_ref()),
            );
        }
    }
    r.pass(
        expected,
        format!(
            "answered a valid request after each of the {} malformed messages",
            bad.len()
        ),
    )
}

fn stop_and_wait(running: &mut Running, p: &CheckParams) -> Result<Option<Exit>, mq::MqError> {
    running.queue.send(protocol::STOP_TYPE, b"", Wait::NoWait)?;
    Ok(running.sut.wait_exit(p.stop_timeout))
}

fn termination(launcher: &dyn Launcher, base: &LaunchSpec, p: &CheckParams) -> Outcome {
    let r = Report::new(
        CheckId::Termination,
        "sent an empty message of type 2 to an idle server",
    );
    let expected = format!(
        "the server exits with status 0 within {:.1} s",
        p.stop_timeout.as_secs_f64()
    );
    let mut running = or_return!(r.start(&expected, launcher, base, p, 0.0));
    let began = Instant::now();
    match stop_and_wait(&mut running, p) {
        Ok(Some(Exit::Code(0))) => r.pass(
            expected,
            format!("exited with status 0 after {:.2} s", began.elapsed().as_secs_f64()),
        ),
        Ok(Some(exit)) => r.fail(
            expected,
            format!("the server ended with {exit}"),
            "after the stop message, let the main thread return normally (or sys.exit(0)); do not raise or exit non-zero",
            Some(running.sut.as_ref()),
        ),
        Ok(None) => r.fail(
            expected,
            format!("still running {:.1} s after the stop message", p.stop_timeout.as_secs_f64()),
            "when a message of type 2 arrives, leave the receive loop, wait for the workers, remove the queue and return",
            Some(running.sut.as_ref()),
        ),
        Err(e) => r.fail(
            expected,
            format!("could not send the stop message: {e}"),
            "keep the queue open until the stop message arrives",
            Some(running.sut.as_ref()),
        ),
    }
}

fn drain(launcher: &dyn Launcher, base: &LaunchSpec, p: &CheckParams) -> Outcome {
    let k = p.workers.max(2);
    let d = p.delay;
    let r = Report::new(
        CheckId::Drain,
        format!("{k} requests to a server with TIMESERVER_DELAY={d}; once it had taken them all from the queue, the stop message"),
    );
    let expected = "every request taken before the stop still gets its reply";
    let mut running = or_return!(r.start(expected, launcher, base, p, d));
    let mut pids = Pids::new();
    let mut pending = or_return!(r.burst(expected, &running, &mut pids, k));
    // Wait until the server has taken every request (the queue holds no request).
    let deadline = Instant::now() + p.start_timeout;
    while Instant::now() < deadline {
        match running.queue.stat() {
            Ok(s) if s.messages == 0 => break,
            Ok(_) => std::thread::sleep(Duration::from_millis(2)),
            Err(_) => break,
        }
    }
    let began = Instant::now();
    if let Err(e) = running.queue.send(protocol::STOP_TYPE, b"", Wait::NoWait) {
        return r.fail(
            expected,
            format!("could not send the stop message: {e}"),
            "keep the queue open until the stop message arrives",
            Some(running.sut.as_ref()),
        );
    }
    let got = probe::collect(
        &mut pending,
        began + Duration::from_secs_f64(k as f64 * d) + p.stop_timeout,
    );
    if let Some(o) = faulted(&r, &got) {
        return o;
    }
    let (served, _) = tally(&got);
    if served == k {
        return r.pass(
            expected,
            format!("all {k} replies arrived after the stop message"),
        );
    }
    let removed = got.iter().any(|g| matches!(g, Got::Removed));
    let mut observed = format!("only {served} of {k} accepted requests got a reply");
    if removed {
        observed.push_str("; the queue was removed while they waited");
    }
    observed.push_str(&ended(running.sut.poll_exit()));
    r.fail(
        expected,
        observed,
        "on the stop message, stop receiving but wait for the workers (thread.join() / executor.shutdown(wait=True)) before removing the queue and exiting",
        Some(running.sut.as_ref()),
    )
}

fn cleanup(launcher: &dyn Launcher, base: &LaunchSpec, p: &CheckParams) -> Outcome {
    let r = Report::new(
        CheckId::Cleanup,
        "sent the stop message to an idle server, and looked for the queue after it exited",
    );
    let expected = format!(
        "queue {} no longer exists once the server has stopped",
        p.key
    );
    let mut running = or_return!(r.start(&expected, launcher, base, p, 0.0));
    match stop_and_wait(&mut running, p) {
        Ok(Some(_)) => {
            if MessageQueue::exists(p.key) {
                let left = running.queue.stat().map(|s| s.messages).unwrap_or(0);
                r.fail(
                    expected,
                    format!("the server exited but queue {} is still there ({left} message(s) in it)", p.key),
                    "remove the queue before exiting: mq.remove()",
                    Some(running.sut.as_ref()),
                )
            } else {
                r.pass(expected, "the queue was gone when the server had exited")
            }
        }
        Ok(None) => r.fail(
            expected,
            format!(
                "could not be judged: the server was still running {:.1} s after the stop message (see termination)",
                p.stop_timeout.as_secs_f64()
            ),
            "stop on the type-2 message, then remove the queue",
            Some(running.sut.as_ref()),
        ),
        Err(e) => r.fail(
            expected,
            format!("could not send the stop message: {e}"),
            "keep the queue open until the stop message arrives",
            Some(running.sut.as_ref()),
        ),
    }
}
