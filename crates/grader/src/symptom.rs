//! Symptoms: what a check can diagnose from what it observed of the replies, in words a
//! student reads and with the advice each calls for; and which symptom explains which, for
//! [`crate::diagnosis::trace`].

use serde::{Deserialize, Serialize};

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
    pub(crate) fn explained_by(self) -> &'static [Symptom] {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
