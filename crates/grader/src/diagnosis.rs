//! Root causes: the symptoms a check can diagnose from what it observed, the advice each
//! calls for, and the stage-level pass ([`trace`]) that finds, for a failure which follows
//! from another check's defect, the check that names it.
//!
//! One defect often fails several checks: a worker that reads the pid from a shared
//! variable loses replies in `routing`, `concurrency`, `spawn` and `drain` alike. Each check
//! diagnoses what it saw as a [`Symptom`]; [`trace`] then looks across the stage and, when a
//! check that *names* a symptom (a root check: `reply`, `routing`, `concurrency`) failed with
//! a symptom the others' follow from, marks each of them with that [`Cause`] and gives them
//! the root's advice, so every failure points at the one thing to fix.

use serde::{Deserialize, Serialize};

use crate::outcome::{CheckId, Outcome};

/// What a failed check's observation shows went wrong, at the level of replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Symptom {
    /// Every request was answered, and more replies of the same types followed.
    DuplicateReplies,
    /// Replies of our clients' types piled up while other clients got none: replies were sent
    /// to the wrong pid.
    MisroutedReplies,
    /// Some requests were never answered, while the server ran and the queue stayed.
    MissingReplies,
    /// Replies came before the work delay had passed: the worker does not sleep it.
    RepliesBeforeDelay,
    /// Every reply came, but one after another: the requests were served serially.
    RepliesTooLate,
}

impl Symptom {
    /// Every symptom.
    pub const ALL: [Symptom; 5] = [
        Symptom::DuplicateReplies,
        Symptom::MisroutedReplies,
        Symptom::MissingReplies,
        Symptom::RepliesBeforeDelay,
        Symptom::RepliesTooLate,
    ];

    /// The symptom's name in `expected.toml` and the JSON events.
    pub fn as_str(self) -> &'static str {
        match self {
            Symptom::DuplicateReplies => "duplicate-replies",
            Symptom::MisroutedReplies => "misrouted-replies",
            Symptom::MissingReplies => "missing-replies",
            Symptom::RepliesBeforeDelay => "replies-before-delay",
            Symptom::RepliesTooLate => "replies-too-late",
        }
    }

    /// What the symptom means, as the diagnosis line of the feedback.
    pub fn describe(self) -> &'static str {
        match self {
            Symptom::DuplicateReplies => "each request is answered more than once",
            Symptom::MisroutedReplies => {
                "replies go to the wrong client: several replies carried the type of one client while others got none"
            }
            Symptom::MissingReplies => "some requests were never answered",
            Symptom::RepliesBeforeDelay => {
                "the replies came before TIMESERVER_DELAY had passed: the worker does not sleep the delay"
            }
            Symptom::RepliesTooLate => {
                "the requests were served one after another, not side by side"
            }
        }
    }

    /// What to change, as the hint of the feedback.
    pub fn advice(self) -> &'static str {
        match self {
            Symptom::DuplicateReplies => {
                "send exactly one reply per request: a retry loop around mq.send needs a break once the send succeeds"
            }
            Symptom::MisroutedReplies => {
                "each worker must use the pid of its own request: pass it as an argument to the thread or task, not through a variable the main loop overwrites"
            }
            Symptom::MissingReplies => {
                "reply to every request with mq.send(text, type=int(pid) + 3), from the thread that serves it"
            }
            Symptom::RepliesBeforeDelay => {
                "sleep float(os.environ.get('TIMESERVER_DELAY', '0')) seconds in the worker before it replies: the grader sets the delay so that it can see the threads at work"
            }
            Symptom::RepliesTooLate => {
                "hand each request to a new thread (stage spawn) or to the pool (stage pool) and go straight back to receiving; sleep TIMESERVER_DELAY in the worker, not in the main loop"
            }
        }
    }

    /// The symptoms a check that observed `self` may owe to a root check: the root's symptom
    /// explains this one (a reply lost to misrouting is a missing reply elsewhere).
    fn explained_by(self) -> &'static [Symptom] {
        match self {
            Symptom::DuplicateReplies => &[Symptom::DuplicateReplies],
            Symptom::MisroutedReplies => &[Symptom::MisroutedReplies],
            Symptom::MissingReplies => &[Symptom::MisroutedReplies, Symptom::MissingReplies],
            Symptom::RepliesBeforeDelay => &[Symptom::RepliesBeforeDelay],
            Symptom::RepliesTooLate => &[Symptom::RepliesTooLate],
        }
    }
}

impl std::fmt::Display for Symptom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Symptom {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Symptom::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| format!("unknown symptom {s:?}"))
    }
}

/// The root cause of a failure that follows from another check's defect: that check, and
/// the symptom it diagnosed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cause {
    /// The check that names the defect.
    pub check: CheckId,
    /// Its diagnosis.
    pub symptom: Symptom,
}

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
        }
    }

    use Status::{Failed, Passed};
    use Symptom::*;

    #[test]
    fn names_and_parsing_agree() {
        for s in Symptom::ALL {
            assert_eq!(s.as_str().parse::<Symptom>(), Ok(s));
            assert_eq!(s.to_string(), s.as_str());
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
        assert!("sleepy".parse::<Symptom>().is_err());
    }

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
