//! The knobs of the checks, from the rubric's `[params]` table down to each check.
//!
//! One type, [`CheckParams`], makes the whole trip: the rubric reads it from TOML (with the
//! range checks below), the runner carries it to each check's process inside the check's
//! request (JSON, durations as seconds), and every check reads it. The server hears of two
//! of its fields, the work delay and the pool size, through its environment alone (see
//! [`super::sandbox::env::server_env`]).

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use super::sut::seconds;

/// Most concurrent clients or pool workers a rubric may ask for (a guard against typos).
pub const MAX_COUNT: u32 = 1024;

/// Longest duration, in seconds, a rubric parameter may have (a guard against typos).
pub const MAX_SECONDS: f64 = 3600.0;

/// The parameters the checks use (the rubric's `[params]` table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CheckParams {
    /// The work delay given to the server as `TIMESERVER_DELAY` for the delay-based checks
    /// (concurrency, spawn, pool-bounded, pool-reuse, drain; routing gives a quarter of it,
    /// the other checks none). Default 0.4 s; at most [`MAX_SECONDS`].
    #[serde(serialize_with = "seconds::serialize", deserialize_with = "de_seconds")]
    pub delay: Duration,
    /// The pool size given to the server as `TIMESERVER_WORKERS`. Default 3; 1 to [`MAX_COUNT`].
    #[serde(deserialize_with = "de_count")]
    pub workers: u32,
    /// Concurrent clients of the routing check. Default 24; 1 to [`MAX_COUNT`].
    #[serde(deserialize_with = "de_count")]
    pub clients: u32,
    /// How long the server has to create its queue. Default 5 s; more than 0.
    #[serde(
        serialize_with = "seconds::serialize",
        deserialize_with = "de_positive_seconds"
    )]
    pub start_timeout: Duration,
    /// How long the server has to exit after a stop message. Default 5 s; more than 0.
    #[serde(
        serialize_with = "seconds::serialize",
        deserialize_with = "de_positive_seconds"
    )]
    pub stop_timeout: Duration,
    /// Exercise 1: how many numbers the program is told to test (`PRIMES_COUNT`). Default
    /// 100000; 1 to [`MAX_PRIMES_COUNT`].
    #[serde(deserialize_with = "de_primes_count")]
    pub primes_count: u32,
    /// Exercise 1: the pool size the program is told to use (`PRIMES_WORKERS`); the
    /// speed-up compares it with one worker. Default 4; 1 to [`MAX_COUNT`].
    #[serde(deserialize_with = "de_count")]
    pub primes_workers: u32,
    /// Exercise 1: how long one run of the program may take. Default 30 s; more than 0.
    #[serde(
        serialize_with = "seconds::serialize",
        deserialize_with = "de_positive_seconds"
    )]
    pub primes_timeout: Duration,
}

/// Most numbers a rubric may ask an Exercise 1 program to test.
pub const MAX_PRIMES_COUNT: u32 = 10_000_000;

impl Default for CheckParams {
    fn default() -> Self {
        Self {
            delay: Duration::from_millis(400),
            workers: 3,
            clients: 24,
            start_timeout: Duration::from_secs(5),
            stop_timeout: Duration::from_secs(5),
            primes_count: 100_000,
            primes_workers: 4,
            primes_timeout: Duration::from_secs(30),
        }
    }
}

/// A number of seconds that is no duration parameter: not finite, negative, over
/// [`MAX_SECONDS`], or zero where the parameter must be positive.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error(
    "{secs} is not a duration in seconds from {} to {}",
    if *.allow_zero { "0" } else { "more than 0" },
    MAX_SECONDS
)]
struct SecondsOutOfRange {
    secs: f64,
    allow_zero: bool,
}

fn seconds_in_range(secs: f64, allow_zero: bool) -> Result<Duration, SecondsOutOfRange> {
    if !secs.is_finite() || secs < 0.0 || (!allow_zero && secs == 0.0) || secs > MAX_SECONDS {
        return Err(SecondsOutOfRange { secs, allow_zero });
    }
    Ok(Duration::from_secs_f64(secs))
}

fn de_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    seconds_in_range(f64::deserialize(d)?, true).map_err(serde::de::Error::custom)
}

fn de_positive_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    seconds_in_range(f64::deserialize(d)?, false).map_err(serde::de::Error::custom)
}

fn de_count<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    count_up_to(d, MAX_COUNT)
}

fn de_primes_count<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    count_up_to(d, MAX_PRIMES_COUNT)
}

/// A whole number from 1 to `max`.
fn count_up_to<'de, D: Deserializer<'de>>(d: D, max: u32) -> Result<u32, D::Error> {
    let n = i64::deserialize(d)?;
    if (1..=i64::from(max)).contains(&n) {
        // The range check makes the conversion lossless.
        Ok(n as u32)
    } else {
        Err(serde::de::Error::custom(format!(
            "{n} is out of range: expected 1 to {max}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_seconds_say_which_range() {
        assert_eq!(
            seconds_in_range(-1.0, true).unwrap_err().to_string(),
            "-1 is not a duration in seconds from 0 to 3600"
        );
        assert_eq!(
            seconds_in_range(0.0, false).unwrap_err().to_string(),
            "0 is not a duration in seconds from more than 0 to 3600"
        );
        assert!(seconds_in_range(f64::NAN, true).is_err());
        assert!(seconds_in_range(3600.5, true).is_err());
        assert_eq!(seconds_in_range(0.0, true), Ok(Duration::ZERO));
        assert_eq!(
            seconds_in_range(3600.0, false),
            Ok(Duration::from_secs(3600))
        );
    }

    #[test]
    fn the_params_cross_to_a_check_process_as_seconds_and_come_back_equal() {
        let params = CheckParams {
            delay: Duration::from_millis(250),
            workers: 5,
            clients: 7,
            start_timeout: Duration::from_millis(2500),
            stop_timeout: Duration::from_millis(500),
            primes_count: 5000,
            primes_workers: 2,
            primes_timeout: Duration::from_millis(1500),
        };
        let json = serde_json::to_value(&params).expect("serialize");
        assert_eq!(
            json,
            serde_json::json!({
                "delay": 0.25, "workers": 5, "clients": 7,
                "start_timeout": 2.5, "stop_timeout": 0.5,
                "primes_count": 5000, "primes_workers": 2, "primes_timeout": 1.5
            })
        );
        let back: CheckParams = serde_json::from_value(json).expect("deserialize");
        assert_eq!(back, params);
    }

    #[test]
    fn a_check_request_with_out_of_range_params_is_refused() {
        for bad in [
            serde_json::json!({ "workers": 0 }),
            serde_json::json!({ "clients": 5000 }),
            serde_json::json!({ "delay": -0.5 }),
            serde_json::json!({ "stop_timeout": 0.0 }),
            serde_json::json!({ "key": 666 }),
            serde_json::json!({ "primes_count": 0 }),
            serde_json::json!({ "primes_count": 20_000_000 }),
            serde_json::json!({ "primes_timeout": 0.0 }),
        ] {
            assert!(
                serde_json::from_value::<CheckParams>(bad.clone()).is_err(),
                "{bad} was accepted"
            );
        }
    }
}
