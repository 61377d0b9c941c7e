//! Root causes: the stage-level pass ([`trace`]) that finds, for a failure which follows
//! from another check's defect, the check that names it.
//!
//! One defect often fails several checks: a worker that reads the pid from a shared
//! variable loses replies in `routing`, `concurrency`, `spawn` and `drain` alike. Each check
//! diagnoses what it saw as a [`Symptom`](crate::symptom::Symptom); [`trace`] then looks across the stage and, when a
//! check that *names* a symptom (a root check: `reply`, `routing`, `concurrency`) failed with
//! a symptom the others' follow from, marks each of them with that [`Cause`] and gives them
//! the root's advice, so every failure points at the one thing to fix.

use crate::outcome::{Cause, CheckId, Outcome};

/// The checks that name a defect of replies, in the order they are trusted to: one client
/// alone (`reply`), many at once (`routing`), their timing (`concurrency`).
const ROOT_CHECKS: [CheckId; 3] = [CheckId::Reply, CheckId::Routing, CheckId::Concurrency];

/// Traces the failures of one stage to their root causes: every failed check with a
/// symptom that the symptom of an earlier-trusted failed root check explains gets that
/// [`Cause`], and the root's advice as its hint. A root check is never traced to itself,
/// and a check with no symptom, or no root to explain it, keeps its own feedback.
pub fn trace(outcomes: &mut [Outcome]) {
    let roots: Vec<Cause> = ROOT_CHECKS
        .iter()
        .filter_map(|id| {
            let o = outcomes.iter().find(|o| o.id == *id && o.is_failed())?;
            Some(Cause {
                check: *id,
                symptom: o.symptom?,
            })
        })
        .collect();
    for o in outcomes.iter_mut().filter(|o| o.is_failed()) {
        let Some(symptom) = o.symptom else { continue };
        let rank = ROOT_CHECKS.iter().position(|id| *id == o.id);
        let root = roots.iter().find(|root| {
            let earlier = match rank {
                Some(mine) => ROOT_CHECKS.iter().position(|id| *id == root.check) < Some(mine),
                None => true,
            };
            earlier && symptom.explained_by().contains(&root.symptom)
        });
        if let Some(root) = root {
            o.cause = Some(*root);
            o.hint = Some(root.symptom.advice().to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::Status;
    use crate::symptom::Symptom;

    fn outcome(id: CheckId, status: Status, symptom: Option<Symptom>) -> Outcome {
        Outcome {
            id,
            status,
            did: "did".into(),
            expected: "expected".into(),
            observed: "observed".into(),
            hint: Some(format!("own hint of {id}")),
            seconds: 0.1,
            server_output: None,
            symptom,
            cause: None,
            timeline: None,
        }
    }

    use Status::{Failed, Passed};
    use Symptom::*;

    #[test]
    fn a_duplicate_seen_by_routing_is_traced_to_reply() {
        let mut stage = vec![
            outcome(CheckId::Reply, Failed, Some(DuplicateReplies)),
            outcome(CheckId::Routing, Failed, Some(DuplicateReplies)),
            outcome(CheckId::Drain, Passed, None),
        ];
        trace(&mut stage);
        assert_eq!(stage[0].cause, None, "a root is not traced to itself");
        assert_eq!(stage[0].hint.as_deref(), Some("own hint of reply"));
        assert_eq!(
            stage[1].cause,
            Some(Cause {
                check: CheckId::Reply,
                symptom: DuplicateReplies
            })
        );
        assert_eq!(stage[1].hint.as_deref(), Some(DuplicateReplies.advice()));
        assert_eq!(stage[2].cause, None);
    }

    #[test]
    fn missing_replies_elsewhere_follow_from_misrouting_in_routing() {
        let mut stage = vec![
            outcome(CheckId::Routing, Failed, Some(MisroutedReplies)),
            outcome(CheckId::Concurrency, Failed, Some(MissingReplies)),
            outcome(CheckId::Drain, Failed, Some(MissingReplies)),
            outcome(CheckId::Termination, Failed, None),
        ];
        trace(&mut stage);
        for o in &stage[1..3] {
            assert_eq!(
                o.cause.map(|c| (c.check, c.symptom)),
                Some((CheckId::Routing, MisroutedReplies)),
                "{}",
                o.id
            );
            assert_eq!(o.hint.as_deref(), Some(MisroutedReplies.advice()));
        }
        assert_eq!(stage[3].cause, None, "no symptom, no trace");
        assert_eq!(stage[3].hint.as_deref(), Some("own hint of termination"));
    }

    #[test]
    fn a_passed_root_explains_nothing_and_unrelated_symptoms_are_kept() {
        // Drain lost replies, but routing passed: drain's own diagnosis stands.
        let mut stage = vec![
            outcome(CheckId::Routing, Passed, Some(MissingReplies)),
            outcome(CheckId::Drain, Failed, Some(MissingReplies)),
        ];
        trace(&mut stage);
        assert_eq!(stage[1].cause, None);
        // Serial service explains a slow pool, not a lost reply.
        let mut stage = vec![
            outcome(CheckId::Concurrency, Failed, Some(RepliesTooLate)),
            outcome(CheckId::PoolBounded, Failed, Some(RepliesTooLate)),
            outcome(CheckId::PoolReuse, Failed, Some(MissingReplies)),
        ];
        trace(&mut stage);
        assert_eq!(stage[1].cause.map(|c| c.check), Some(CheckId::Concurrency));
        assert_eq!(stage[2].cause, None);
    }

    #[test]
    fn a_later_root_check_is_traced_to_an_earlier_one_never_the_reverse() {
        let mut stage = vec![
            outcome(CheckId::Reply, Failed, Some(MissingReplies)),
            outcome(CheckId::Routing, Failed, Some(MissingReplies)),
        ];
        trace(&mut stage);
        assert_eq!(stage[0].cause, None);
        assert_eq!(stage[1].cause.map(|c| c.check), Some(CheckId::Reply));
    }
}
