//! The server's environment, written in one place: a clean environment (nothing of the
//! grader's is inherited), the sandbox `PATH`, and the two variables of the submission
//! contract, `TIMESERVER_DELAY` and `TIMESERVER_WORKERS`, from [`ServerParams`].

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The `PATH` a server gets unless the rubric names other folders.
pub const SANDBOX_PATH: &[&str] = &["/usr/local/bin", "/usr/bin", "/bin"];

/// [`SANDBOX_PATH`] as a list of folders.
pub fn default_path() -> Vec<PathBuf> {
    SANDBOX_PATH.iter().map(PathBuf::from).collect()
}

/// The variable that tells the server its work delay, in seconds.
pub const DELAY_VAR: &str = "TIMESERVER_DELAY";
/// The variable that tells the server its pool size.
pub const WORKERS_VAR: &str = "TIMESERVER_WORKERS";

/// What a server is told through its environment.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ServerParams {
    /// The work delay: the worker sleeps this long before replying.
    #[serde(with = "seconds")]
    pub delay: Duration,
    /// The pool size of stage 2.
    pub workers: u32,
}

impl Default for ServerParams {
    fn default() -> Self {
        Self {
            delay: Duration::ZERO,
            workers: 4,
        }
    }
}

/// A [`Duration`] as seconds (a decimal number) in JSON and TOML.
pub mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the duration as seconds.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    /// Reads seconds (finite, at least 0) as a duration.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

/// The whole environment of a server: `PATH` (the sandbox's folders, `path`), `LANG`,
/// `HOME` (`home`, a folder it may write), Python's unbuffered and no-bytecode switches, the
/// grader's `TZ` if it has one (so the server's clock reads like the grader's), the
/// contract's variables, then `extra`.
pub fn server_env(
    params: &ServerParams,
    extra: &[(String, String)],
    home: &str,
    path: &[PathBuf],
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), super::program::join_path(path)),
        ("LANG".into(), "C.UTF-8".into()),
        ("HOME".into(), home.into()),
        ("PYTHONUNBUFFERED".into(), "1".into()),
        ("PYTHONDONTWRITEBYTECODE".into(), "1".into()),
    ];
    if let Ok(tz) = std::env::var("TZ") {
        env.push(("TZ".into(), tz));
    }
    env.push((DELAY_VAR.into(), params.delay.as_secs_f64().to_string()));
    env.push((WORKERS_VAR.into(), params.workers.to_string()));
    for (k, v) in extra {
        env.retain(|(key, _)| key != k);
        env.push((k.clone(), v.clone()));
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contract_variables_are_written_once() {
        let params = ServerParams {
            delay: Duration::from_millis(400),
            workers: 3,
        };
        let env = server_env(
            &params,
            &[("EXTRA".into(), "1".into())],
            "/tmp",
            &default_path(),
        );
        let get = |k: &str| {
            let v: Vec<&String> = env
                .iter()
                .filter(|(key, _)| key == k)
                .map(|(_, v)| v)
                .collect();
            assert_eq!(v.len(), 1, "{k} once in {env:?}");
            v[0].clone()
        };
        assert_eq!(get(DELAY_VAR), "0.4");
        assert_eq!(get(WORKERS_VAR), "3");
        assert_eq!(get("PATH"), "/usr/local/bin:/usr/bin:/bin");
        assert_eq!(get("EXTRA"), "1");
        assert!(!env.iter().any(|(k, _)| k == "CARGO" || k == "RUST_LOG"));
    }
}
