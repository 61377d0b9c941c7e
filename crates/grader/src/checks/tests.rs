//! The checks end to end, in process, against the helper server of [`super::test_server`]:
//! each check passes against the correct server and fails against the defect it exists to
//! catch. Checks that count the server's threads (spawn, pool-bounded, pool-reuse) are not
//! tested here: the threads of the test process would blur the count.

use std::time::Duration;

use super::test_server::{fresh_key, Defect, QueueGuard, ThreadLauncher};
use super::{run_check, spec_with};
use crate::outcome::{CheckId, Outcome, Status};
use crate::params::CheckParams;
use crate::sut::LaunchSpec;
use crate::sut::ServerParams;
use sysv_mq::MessageQueue;

/// Parameters for the helper server: a thread answers in microseconds, so the checks' own
/// deadlines are ample even when shortened to keep failing tests short.
fn params() -> CheckParams {
    CheckParams {
        delay: Duration::from_millis(200),
        workers: 3,
        clients: 8,
        start_timeout: Duration::from_secs(2),
        stop_timeout: Duration::from_secs(2),
        ..CheckParams::default()
    }
}

/// Runs check `id` against a helper server with `defect`, on a key of the test's own; the
/// outcome, and what each server started was told. The queue is gone afterwards.
fn run(id: CheckId, defect: Defect, p: &CheckParams) -> (Outcome, Vec<ServerParams>) {
    let key = fresh_key();
    let _guard = QueueGuard(key);
    let launcher = ThreadLauncher::new(key, defect);
    let base = LaunchSpec::new("/nonexistent", vec!["helper-server".into()]);
    let outcome = run_check(id, &launcher, &base, p, key, None);
    assert!(
        !MessageQueue::exists(key),
        "{id}: queue {key} outlived the check"
    );
    (outcome, launcher.told())
}

fn assert_status(outcome: &Outcome, status: Status) {
    assert_eq!(outcome.status, status, "{outcome:#?}");
}

#[test]
fn spec_with_sets_the_server_params_and_nothing_else() {
    let mut base = LaunchSpec::new("/submissions/alice", vec!["python3".into(), "s.py".into()]);
    base.env = vec![("EXTRA".into(), "1".into())];
    base.hidden = vec!["/grader/rubric.toml".into()];
    let spec = spec_with(&base, Duration::from_millis(250), 7);
    assert_eq!(
        spec.server,
        ServerParams {
            delay: Duration::from_millis(250),
            workers: 7
        }
    );
    assert_eq!(
        LaunchSpec {
            server: base.server,
            ..spec
        },
        base
    );
}

#[test]
fn reply_passes_against_a_correct_server() {
    let (outcome, _) = run(CheckId::Reply, Defect::None, &params());
    assert_status(&outcome, Status::Passed);
    assert!(outcome.observed.starts_with("reply "), "{outcome:#?}");
}

#[test]
fn reply_fails_against_a_server_replying_to_type_pid_and_says_so() {
    let (outcome, _) = run(CheckId::Reply, Defect::RepliesToPid, &params());
    assert_status(&outcome, Status::Failed);
    assert!(
        outcome
            .observed
            .contains("is the client's pid itself, not pid+3"),
        "{outcome:#?}"
    );
}

#[test]
fn routing_passes_when_every_client_gets_its_own_reply() {
    let (outcome, _) = run(CheckId::Routing, Defect::None, &params());
    assert_status(&outcome, Status::Passed);
    assert_eq!(
        outcome.observed,
        "all 8 clients got their own reply; queue left empty"
    );
}

#[test]
fn routing_fails_when_replies_go_to_type_pid() {
    let (outcome, _) = run(CheckId::Routing, Defect::RepliesToPid, &params());
    assert_status(&outcome, Status::Failed);
    assert!(
        outcome.observed.starts_with("0 of 8 clients got a reply"),
        "{outcome:#?}"
    );
}

#[test]
fn routing_tells_the_server_a_quarter_of_the_delay_and_the_pool_size() {
    let (_, told) = run(CheckId::Routing, Defect::None, &params());
    assert_eq!(
        told,
        [ServerParams {
            delay: Duration::from_millis(50),
            workers: 3
        }]
    );
}

#[test]
fn termination_passes_when_the_server_exits_on_the_stop_message() {
    let (outcome, told) = run(CheckId::Termination, Defect::None, &params());
    assert_status(&outcome, Status::Passed);
    assert!(
        outcome.observed.starts_with("exited with status 0"),
        "{outcome:#?}"
    );
    assert_eq!(
        told[0].delay,
        Duration::ZERO,
        "an idle server needs no delay"
    );
}

#[test]
fn termination_fails_when_the_server_ignores_the_stop_message() {
    let (outcome, _) = run(CheckId::Termination, Defect::IgnoresStop, &params());
    assert_status(&outcome, Status::Failed);
    assert_eq!(
        outcome.observed,
        "still running 2.0 s after the stop message"
    );
}

#[test]
fn cleanup_passes_when_the_server_removes_its_queue() {
    let (outcome, _) = run(CheckId::Cleanup, Defect::None, &params());
    assert_status(&outcome, Status::Passed);
}

#[test]
fn cleanup_fails_when_the_server_leaves_its_queue_behind() {
    let (outcome, _) = run(CheckId::Cleanup, Defect::KeepsQueue, &params());
    assert_status(&outcome, Status::Failed);
    assert!(
        outcome.observed.starts_with("the server exited but queue"),
        "{outcome:#?}"
    );
}
