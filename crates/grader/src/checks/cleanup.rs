//! `cleanup` shows a server that stops removes its queue.

use std::time::Duration;

use super::{stop_and_wait, OutcomeBuilder};
use crate::outcome::{CheckId, Outcome};
use crate::params::CheckParams;
use crate::sut::{LaunchSpec, Launcher};
use sysv_mq::MessageQueue;

pub(super) fn cleanup(
    launcher: &dyn Launcher,
    base: &LaunchSpec,
    p: &CheckParams,
    key: i32,
) -> Outcome {
    let r = OutcomeBuilder::new(
        CheckId::Cleanup,
        "sent the stop message to an idle server, and looked for the queue after it exited",
    );
    let expected = format!("queue {} no longer exists once the server has stopped", key);
    let mut running = or_return!(r.start(&expected, launcher, base, p, key, Duration::ZERO));
    match stop_and_wait(&mut running, p) {
        Ok(Some(_)) => {
            if MessageQueue::exists(key) {
                let left = running.queue.stat().map(|s| s.messages).unwrap_or(0);
                r.fail(
                    expected,
                    format!("the server exited but queue {} is still there ({left} message(s) in it)", key),
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
