//! `starts` shows the server creates the queue with the handout's key soon after it starts.

use std::time::Duration;

use super::{not_started, start, OutcomeBuilder};
use crate::outcome::{CheckId, Outcome};
use crate::params::CheckParams;
use crate::sut::{LaunchSpec, Launcher};

pub(super) fn starts(
    launcher: &dyn Launcher,
    base: &LaunchSpec,
    p: &CheckParams,
    key: i32,
) -> Outcome {
    let r = OutcomeBuilder::new(
        CheckId::Starts,
        format!(
            "started `{}` and watched for queue {}",
            base.command.join(" "),
            key
        ),
    );
    let expected = format!(
        "queue {} exists within {:.1} s",
        key,
        p.start_timeout.as_secs_f64()
    );
    match start(launcher, base, p, key, Duration::ZERO) {
        Ok((_running, after)) => r.pass(
            expected,
            format!("queue {} appeared after {:.2} s", key, after.as_secs_f64()),
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
