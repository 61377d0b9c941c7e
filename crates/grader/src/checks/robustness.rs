//! `robustness` shows malformed requests neither kill the server nor stop its answers.

use std::time::{Duration, Instant};

use super::support::faulted;
use super::OutcomeBuilder;
use crate::outcome::{CheckId, Outcome};
use crate::params::CheckParams;
use crate::probe::{self, Got, Pids};
use crate::sut::{LaunchSpec, Launcher};
use sysv_mq::Wait;

pub(super) fn robustness(
    launcher: &dyn Launcher,
    base: &LaunchSpec,
    p: &CheckParams,
    key: i32,
) -> Outcome {
    let bad: Vec<(&str, i64, Vec<u8>)> = vec![
        ("non-numeric text", 1, b"hello".to_vec()),
        ("empty text", 1, Vec::new()),
        ("oversized text (1000 digits)", 1, vec![b'9'; 1000]),
        ("negative pid", 1, b"-5".to_vec()),
        ("non-UTF-8 bytes", 1, vec![0xff, 0xfe, 0x00]),
        ("unknown type 7", 7, b"junk".to_vec()),
    ];
    let r = OutcomeBuilder::new(
        CheckId::Robustness,
        "sent malformed requests one by one (non-numeric, empty, oversized, negative pid, non-UTF-8, unknown type), each followed by a valid request",
    );
    let expected = "the server stays alive and answers the valid request after each malformed one";
    let mut running = or_return!(r.start(expected, launcher, base, p, key, Duration::ZERO));
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
