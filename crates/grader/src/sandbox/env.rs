//! The server's environment, written in one place: a clean environment (nothing of the
//! grader's is inherited), the sandbox `PATH`, and the two variables of the submission
//! contract, `TIMESERVER_DELAY` and `TIMESERVER_WORKERS`, from [`ServerParams`].

use std::path::PathBuf;

use crate::sut::ServerParams;

/// The variable that tells the server its work delay, in seconds.
pub const DELAY_VAR: &str = "TIMESERVER_DELAY";
/// The variable that tells the server its pool size.
pub const WORKERS_VAR: &str = "TIMESERVER_WORKERS";

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
    use crate::sut::default_path;
    use std::time::Duration;

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
