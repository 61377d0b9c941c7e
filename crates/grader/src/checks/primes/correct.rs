//! `primes-correct`: every verdict the pool returned is right, checked with the grader's own
//! primality test, and every number lies in [10^3, 10^6].

use super::{observed, OutcomeBuilder, Run};
use crate::outcome::Outcome;

/// The range the handout draws the numbers from.
pub(super) const LOW: u32 = 1_000;
/// Its top.
pub(super) const HIGH: u32 = 1_000_000;

/// `sieve[n]` is whether n is prime, for n up to [`HIGH`].
fn sieve() -> Vec<bool> {
    let n = HIGH as usize;
    let mut prime = vec![true; n + 1];
    prime[0] = false;
    prime[1] = false;
    let mut i = 2;
    while i * i <= n {
        if prime[i] {
            let mut j = i * i;
            while j <= n {
                prime[j] = false;
                j += i;
            }
        }
        i += 1;
    }
    prime
}

/// The smallest factor of a composite `n` above 1.
fn smallest_factor(n: u32) -> u32 {
    (2..)
        .take_while(|d| d * d <= n)
        .find(|d| n % d == 0)
        .unwrap_or(n)
}

/// Judges the run.
pub(super) fn judge(b: &OutcomeBuilder, run: &Run) -> Outcome {
    let expected = "every (n, verdict) the pool returned is right, every n in [10^3, 10^6], and \
                    every result a verdict: (n, True/False) as the handout's is_prime returns, or \
                    a plain bool";
    let obs = match observed(b, run, expected) {
        Ok(o) => o,
        Err(o) => return *o,
    };
    let Some(verdicts) = obs.verdicts() else {
        return b.fail(
            expected,
            "the observation layer's verdicts could not be read",
            super::NO_OBSERVATION,
            None,
        );
    };
    let total = verdicts.len() as u64 + obs.oor_count;
    if total == 0 && obs.unrecognised_count == 0 {
        return b.fail(
            expected,
            "the pool returned no verdict",
            "test the numbers in the pool and collect the results",
            None,
        );
    }
    let prime = sieve();
    let wrong: Vec<(u32, bool)> = verdicts
        .iter()
        .copied()
        .filter(|&(n, v)| !(LOW..=HIGH).contains(&n) || prime[n as usize] != v)
        .collect();
    let mut problems = Vec::new();
    if !wrong.is_empty() {
        let examples: Vec<String> = wrong
            .iter()
            .take(3)
            .map(|&(n, v)| {
                if v {
                    let f = smallest_factor(n);
                    format!("{n} reported prime ({f} x {})", n / f)
                } else {
                    format!("{n} reported not prime (it is prime)")
                }
            })
            .collect();
        problems.push(format!(
            "{} of {} verdicts are wrong, for example {}",
            wrong.len(),
            verdicts.len(),
            examples.join("; ")
        ));
    }
    if obs.oor_count > 0 {
        let examples: Vec<String> = obs.out_of_range.iter().map(|v| v.to_string()).collect();
        problems.push(format!(
            "{} number(s) outside [10^3, 10^6], for example {}",
            obs.oor_count,
            examples.join(", ")
        ));
    }
    if obs.unrecognised_count > 0 {
        problems.push(format!(
            "{} result(s) are no verdict: {}",
            obs.unrecognised_count,
            obs.unrecognised.join(", ")
        ));
    }
    if problems.is_empty() {
        let primes = verdicts.iter().filter(|(_, v)| *v).count();
        b.pass(
            expected,
            format!(
                "all {} verdicts right ({primes} primes), every number in [10^3, 10^6]",
                verdicts.len()
            ),
        )
    } else {
        b.fail(
            expected,
            problems.join("; "),
            "draw the numbers with random.randint(10**3, 10**6), test divisors up to and \
             including the square root (range(3, isqrt(n) + 1, 2)), and return (n, True/False) \
             or a bool",
            None,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grader_knows_its_primes() {
        let p = sieve();
        assert!(p[1009] && p[999_983] && p[2]);
        assert!(!p[961] && !p[1_000_000] && !p[1001]);
        assert_eq!(p.iter().filter(|x| **x).count(), 78_498);
        assert_eq!(smallest_factor(961), 31);
    }
}
