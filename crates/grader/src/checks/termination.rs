//! `termination` shows the stop message (type 2) makes an idle server exit 0, in time.

use std::time::{Duration, Instant};

use super::{stop_and_wait, OutcomeBuilder};
use crate::outcome::{CheckId, Outcome};
use crate::params::CheckParams;
use crate::sut::{Exit, LaunchSpec, Launcher};

pub(super) fn termination(
    launcher: &dyn Launcher,
    base: &LaunchSpec,
    p: &CheckParams,
    key: i32,
) -> Outcome {
    let r = OutcomeBuilder::new(
        CheckId::Termination,
        "sent an empty message of type 2 to an idle server",
    );
    let expected = format!(
        "the server exits with status 0 within {:.1} s",
        p.stop_timeout.as_secs_f64()
    );
    let mut running = or_return!(r.start(&expected, launcher, base, p, key, Duration::ZERO));
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
