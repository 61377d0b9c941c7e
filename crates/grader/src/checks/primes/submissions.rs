//! `primes-sync` and `primes-async`: at least one synchronous and one asynchronous
//! submission on a `multiprocessing.Pool` that returned verdicts. A `ProcessPoolExecutor`
//! does not count here: the exercise asks for `multiprocessing.Pool`'s two ways.

use super::{observed, OutcomeBuilder, Run};
use crate::outcome::Outcome;

/// Which way of submitting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// `apply`, `map`, `starmap`, `imap`, `imap_unordered`.
    Sync,
    /// `apply_async`, `map_async`, `starmap_async`.
    Async,
}

impl Kind {
    fn tag(self) -> &'static str {
        match self {
            Kind::Sync => "sync",
            Kind::Async => "async",
        }
    }

    fn methods(self) -> &'static str {
        match self {
            Kind::Sync => "apply, map, starmap, imap or imap_unordered",
            Kind::Async => "apply_async, map_async or starmap_async",
        }
    }
}

/// Judges the run for `kind`.
pub(super) fn judge(b: &OutcomeBuilder, run: &Run, kind: Kind) -> Outcome {
    let expected = format!(
        "at least one {} submission on a multiprocessing.Pool ({}) that returns primality \
         verdicts",
        if kind == Kind::Sync {
            "synchronous"
        } else {
            "asynchronous"
        },
        kind.methods()
    );
    let obs = match observed(b, run, &expected) {
        Ok(o) => o,
        Err(o) => return *o,
    };
    if let Some(call) = obs.working_calls(kind.tag()).next() {
        let more = obs.working_calls(kind.tag()).count() - 1;
        return b.pass(
            expected,
            format!(
                "{}.{} returned {} verdict(s){}",
                call.pool,
                call.method,
                call.verdicts,
                if more > 0 {
                    format!(", and {more} more such call(s)")
                } else {
                    String::new()
                }
            ),
        );
    }
    let idle: Vec<&str> = obs
        .calls
        .iter()
        .filter(|c| c.kind == kind.tag())
        .map(|c| c.method.as_str())
        .collect();
    let executor = obs.calls.iter().any(|c| c.kind == "executor");
    let (observed, hint) = if !idle.is_empty() {
        (
            format!(
                "{} was called but returned no verdict{}",
                idle.join(", "),
                if obs.unrecognised.is_empty() {
                    String::new()
                } else {
                    format!(" (its results: {})", obs.unrecognised.join(", "))
                }
            ),
            "submit the primality test itself, on the generated numbers, and wait for its \
             results (.get() on an AsyncResult) before the pool closes"
                .to_owned(),
        )
    } else if executor {
        (
            "only a concurrent.futures.ProcessPoolExecutor was used".to_owned(),
            format!(
                "Exercise 1 asks for multiprocessing.Pool and its own methods: submit with {}",
                kind.methods()
            ),
        )
    } else {
        (
            format!("no {} call on a multiprocessing.Pool", kind.methods()),
            format!(
                "the handout asks for at least one synchronous and one asynchronous way: use {}",
                kind.methods()
            ),
        )
    };
    b.fail(expected, observed, hint, None)
}
