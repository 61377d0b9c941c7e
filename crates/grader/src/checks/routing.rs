//! `routing` shows many clients at once each get one reply, of their own type pid+3, only.

use std::collections::BTreeSet;
use std::time::Duration;

use super::support::{describe_strays, ended, missing, tally, waves_of};
use super::OutcomeBuilder;
use crate::outcome::{CheckId, Outcome};
use crate::params::CheckParams;
use crate::probe::{self, Pids};
use crate::procfs::ThreadSampler;
use crate::sut::{LaunchSpec, Launcher};
use crate::symptom::Symptom;
use sysv_mq::protocol;

pub(super) fn routing(
    launcher: &dyn Launcher,
    base: &LaunchSpec,
    p: &CheckParams,
    key: i32,
) -> Outcome {
    let n = p.clients as usize;
    let delay = p.delay.as_secs_f64() / 4.0;
    let r = OutcomeBuilder::new(
        CheckId::Routing,
        format!("{n} clients with distinct pids sent requests at once (TIMESERVER_DELAY={delay})"),
    );
    let expected =
        "each client gets exactly one reply, of its own type pid+3; nothing else left in the queue";
    let server_delay = Duration::from_secs_f64(delay);
    let mut running = or_return!(r.start(expected, launcher, base, p, key, server_delay));
    let mut pids = Pids::new();
    // Thread counts for the timeline only: every 10 ms is enough to draw them.
    let sampler = ThreadSampler::start(running.sut.processes(), Duration::from_millis(10));
    let budget = Duration::from_secs_f64(waves_of(n, 1) as f64 * delay) + p.start_timeout;
    let (pending, got) = or_return!(r.burst_collect(expected, &running, &mut pids, n, budget));
    std::thread::sleep(Duration::from_millis(300));
    let stray = probe::drain_queue(running.queue);
    r.record(&pending, &got, &stray, Some(&sampler.stop()), Vec::new());
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
    let others = stray.len() - duplicates;
    let mut observed = if served == n {
        format!("all {n} clients got a reply")
    } else {
        format!("{served} of {n} clients got a reply")
    };
    if duplicates > 0 {
        let what = if served == n {
            format!("{duplicates} more repl(ies) of their types were left in the queue")
        } else {
            format!("{duplicates} repl(ies) of our clients' types were left in the queue, several of one type while other clients got none")
        };
        observed.push_str(&format!("; {what}"));
    }
    if others > 0 {
        observed.push_str(&format!("; {}", describe_strays(&stray, None)));
    }
    observed.push_str(&ended(exit));
    let symptom = match (served == n, duplicates > 0) {
        (true, true) => Some(Symptom::DuplicateReplies),
        (false, true) => Some(Symptom::MisroutedReplies),
        (false, false) => missing(&got, exit),
        (true, false) => None,
    };
    r.fail_as(
        symptom,
        expected,
        observed,
        symptom.map_or(
            "reply to every request with type int(pid) + 3, and to nothing else",
            Symptom::advice,
        ),
        Some(running.sut.as_ref()),
    )
}
