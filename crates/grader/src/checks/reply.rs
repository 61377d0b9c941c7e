//! `reply` shows one blocked client gets exactly one reply, of type pid+3, with the date.

use std::path::Path;
use std::time::{Duration, Instant};

use super::client::real_client;
use super::support::{describe_strays, ended, missing};
use super::OutcomeBuilder;
use crate::outcome::{CheckId, Outcome};
use crate::params::CheckParams;
use crate::probe::{self, Got, Pids};
use crate::sut::{LaunchSpec, Launcher};
use crate::symptom::Symptom;
use sysv_mq::protocol;

pub(super) fn reply(
    launcher: &dyn Launcher,
    base: &LaunchSpec,
    p: &CheckParams,
    key: i32,
    client_exe: Option<&Path>,
) -> Outcome {
    let r = OutcomeBuilder::new(
        CheckId::Reply,
        "one client sent its pid (type 1) and waited, blocked, for type pid+3",
    );
    let expected = "exactly one reply of type pid+3 whose text is the current date and time";
    let mut running = or_return!(r.start(expected, launcher, base, p, key, Duration::ZERO));
    let timeout = p.start_timeout;
    let (pid, got) = match client_exe {
        Some(exe) => match real_client(exe, key, timeout, running.sut.as_ref()) {
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
                return r.diagnosed(
                    Symptom::DuplicateReplies,
                    expected,
                    format!("{} more repl(ies) of type pid+3 followed the first", dup),
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
            r.fail_as(
                missing(&[Got::Nothing], alive),
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
