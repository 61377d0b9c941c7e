//! What the checks make of what they saw: tallies of a burst's replies, the waves a pool
//! needs, the idle thread count, and the phrases their observations share.

use std::collections::BTreeSet;
use std::time::Duration;

use super::OutcomeBuilder;
use crate::outcome::Outcome;
use crate::params::CheckParams;
use crate::probe::Got;
use crate::procfs::ThreadSampler;
use crate::sut::Exit;
use crate::symptom::Symptom;
use sysv_mq as mq;

/// "; the server ended (exit status 1)" when it has ended, else nothing: the tail of an
/// observation.
pub(super) fn ended(exit: Option<Exit>) -> String {
    exit.map(|e| format!("; the server ended ({e})"))
        .unwrap_or_default()
}

/// "only 3 of 8 replies arrived", and how the server ended if it did.
pub(super) fn missing_replies(served: usize, n: usize, exit: Option<Exit>) -> String {
    format!("only {served} of {n} replies arrived{}", ended(exit))
}

/// What else was left in the queue, as the end of an observation; with the client's `pid`,
/// a remark when a message was sent to that type itself instead of pid+3.
pub(super) fn describe_strays(stray: &[mq::Message], pid: Option<i64>) -> String {
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

/// The diagnosis of a burst in which some requests got no reply: [`Symptom::MissingReplies`]
/// while the server still runs and its queue stays; none when it ended or the queue went or
/// refused a request, which the observation names as a defect of its own.
pub(super) fn missing(got: &[Got], exit: Option<Exit>) -> Option<Symptom> {
    let queue_gone = got
        .iter()
        .any(|g| matches!(g, Got::Removed | Got::Refused(_)));
    (exit.is_none() && !queue_gone).then_some(Symptom::MissingReplies)
}

/// Summarises a burst: how many got a reply, and the sorted latencies.
pub(super) fn tally(got: &[Got]) -> (usize, Vec<Duration>) {
    let mut lat: Vec<Duration> = got.iter().filter_map(|g| g.reply().map(|r| r.1)).collect();
    lat.sort();
    (lat.len(), lat)
}

/// The error outcome of a check whose clients met a fault of the grader's own (see
/// [`Got::Fault`]), if one did: such replies say nothing about the server.
pub(super) fn faulted(r: &OutcomeBuilder, got: &[Got]) -> Option<Outcome> {
    got.iter().find_map(|g| match g {
        Got::Fault(e) => Some(Outcome::error(
            r.id,
            format!("a client could not use the queue: {e}"),
            r.began.elapsed().as_secs_f64(),
        )),
        _ => None,
    })
}

/// The latest `n` concurrent requests with work delay `d` (seconds) may all be answered
/// and still count as served side by side: 0.6 of the `n * d` that serial service takes.
/// On a loaded machine parallel service takes about `d`, far under; serial takes `n * d`.
pub(super) fn serial_bound(n: usize, d: f64) -> f64 {
    0.6 * n as f64 * d
}

/// How long to wait for the replies to a burst of `n` requests with work delay `d`
/// (seconds): long enough for serial service (`n * d`), plus the start deadline as slack.
pub(super) fn serial_budget(n: usize, d: f64, p: &CheckParams) -> Duration {
    Duration::from_secs_f64(n as f64 * d) + p.start_timeout
}

/// How many waves `workers` workers need to serve `n` requests (at least one worker).
pub(super) fn waves_of(n: usize, workers: usize) -> usize {
    n.div_ceil(workers.max(1))
}

/// Waits ~150 ms with the sampler running and returns the idle thread count.
pub(super) fn idle_baseline(sampler: &ThreadSampler) -> usize {
    sampler.reset();
    std::thread::sleep(Duration::from_millis(150));
    sampler.wait_samples(3, Duration::from_secs(2));
    sampler.snapshot().peak
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{CheckId, Status};
    use mq::Message;

    fn message(mtype: i64) -> Message {
        Message {
            mtype,
            body: b"Sun Nov 29 22:40:01 2026".to_vec(),
            truncated: false,
        }
    }

    fn reply(ms: u64) -> Got {
        Got::Reply {
            message: message(7),
            latency: Duration::from_millis(ms),
        }
    }

    #[test]
    fn tally_counts_the_replies_and_sorts_their_latencies() {
        let got = [
            reply(300),
            Got::Nothing,
            reply(100),
            Got::Removed,
            reply(200),
            Got::Refused("full".into()),
        ];
        let (served, latencies) = tally(&got);
        assert_eq!(served, 3);
        assert_eq!(
            latencies,
            [100, 200, 300].map(Duration::from_millis).to_vec()
        );
        assert_eq!(tally(&[Got::Nothing]), (0, Vec::new()));
    }

    #[test]
    fn waves_of_rounds_up_and_takes_no_workers_as_one() {
        assert_eq!(waves_of(12, 3), 4);
        assert_eq!(waves_of(13, 3), 5);
        assert_eq!(waves_of(2, 3), 1);
        assert_eq!(waves_of(0, 3), 0);
        assert_eq!(waves_of(5, 0), 5);
    }

    #[test]
    fn describe_strays_remarks_a_reply_sent_to_the_pid_itself() {
        assert_eq!(
            describe_strays(&[], Some(1234)),
            "nothing else was in the queue"
        );
        let stray = [message(1234), message(99), message(1234)];
        assert_eq!(
            describe_strays(&stray, Some(1234)),
            "3 message(s) left in the queue, of type(s) {99, 1234} — type 1234 is the client's pid itself, not pid+3"
        );
        assert_eq!(
            describe_strays(&stray, Some(1231)),
            "3 message(s) left in the queue, of type(s) {99, 1234}"
        );
        assert_eq!(
            describe_strays(&stray, None),
            "3 message(s) left in the queue, of type(s) {99, 1234}"
        );
    }

    #[test]
    fn faulted_is_an_error_outcome_only_for_a_grader_fault() {
        let r = OutcomeBuilder::new(CheckId::Routing, "sent requests");
        for got in [
            reply(5),
            Got::Nothing,
            Got::Removed,
            Got::Refused("the message queue is full".into()),
        ] {
            assert_eq!(faulted(&r, &[got.clone(), reply(1)]), None, "{got:?}");
        }
        let o = faulted(
            &r,
            &[
                reply(5),
                Got::Fault("permission denied".into()),
                Got::Nothing,
            ],
        )
        .expect("a fault");
        assert_eq!(o.status, Status::Error);
        assert_eq!(o.id, CheckId::Routing);
        assert_eq!(
            o.observed,
            "the check could not be graded: a client could not use the queue: permission denied"
        );
    }

    #[test]
    fn missing_replies_tells_how_the_server_ended_if_it_did() {
        assert_eq!(missing_replies(3, 8, None), "only 3 of 8 replies arrived");
        assert_eq!(
            missing_replies(3, 8, Some(Exit::Code(1))),
            "only 3 of 8 replies arrived; the server ended (exit status 1)"
        );
    }
}
