//! The real client process (`poolgrade __client`): the `reply` check's client, a process of
//! its own that sends its own pid, as the handout's client does, and the report it prints.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::probe::{self, Got};
use crate::sandbox::shield::Shield;
use crate::sut::IsolationError;
use crate::sut::Sut;
use sysv_mq::{self as mq, MessageQueue};

/// What a `poolgrade __client` process prints: one JSON object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum ClientReport {
    /// A reply came.
    Reply {
        /// The client's pid.
        pid: i64,
        /// The reply's type.
        mtype: i64,
        /// The reply's bytes.
        body: Vec<u8>,
        /// Seconds from the request to the reply.
        seconds: f64,
    },
    /// Nothing came before the deadline.
    Nothing {
        /// The client's pid.
        pid: i64,
    },
    /// The queue was removed while the client waited.
    Removed {
        /// The client's pid.
        pid: i64,
    },
    /// The queue refused the request (full).
    Refused {
        /// The client's pid.
        pid: i64,
        /// What the queue said.
        error: String,
    },
    /// The client could not use the queue (a grading fault).
    Fault {
        /// The client's pid.
        pid: i64,
        /// Why.
        error: String,
    },
}

/// Why the real client process told nothing: a grading fault, never the server's doing.
#[derive(Debug, thiserror::Error)]
pub(super) enum RealClientError {
    /// The shield could not be lowered to start it.
    #[error("{0}")]
    Unshield(IsolationError),
    /// The shield was lowered but the client was never spawned.
    #[error("the client was not started")]
    NeverSpawned,
    /// Starting it or waiting for it failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// It printed no [`ClientReport`].
    #[error("bad client output ({error}): {stderr}")]
    BadOutput {
        /// Why its output is no report.
        error: serde_json::Error,
        /// What it said on stderr.
        stderr: String,
    },
}

/// Runs `exe __client` as a real client process: it sends its own pid and blocks for the
/// reply, with effective uid `as_uid` when the server's queue needs it (the shield is not
/// inherited through `exec` under `no_new_privs`). Returns the client's pid and what it got;
/// `Err` is a grading fault.
pub(super) fn real_client(
    exe: &Path,
    key: i32,
    timeout: Duration,
    sut: &dyn Sut,
) -> Result<(i64, Got), RealClientError> {
    let as_uid = sut.probe_uid();
    let mut cmd = std::process::Command::new(exe);
    cmd.args([
        CLIENT_SUBCOMMAND,
        "--key",
        &key.to_string(),
        "--timeout",
        &format!("{}", timeout.as_secs_f64()),
    ]);
    if let Some(uid) = as_uid {
        cmd.args(["--as-uid", &uid.to_string()]);
    }
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    // Started as plain root: it takes the server's uid itself (see `client_main`).
    let mut child = None;
    sut.unshielded(&mut || child = Some(cmd.spawn()))
        .map_err(RealClientError::Unshield)?;
    let out = child
        .ok_or(RealClientError::NeverSpawned)?
        .and_then(|c| c.wait_with_output())?;
    let report: ClientReport =
        serde_json::from_slice(&out.stdout).map_err(|error| RealClientError::BadOutput {
            error,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })?;
    Ok(match report {
        ClientReport::Reply {
            pid,
            mtype,
            body,
            seconds,
        } => (
            pid,
            Got::Reply {
                message: mq::Message {
                    mtype,
                    body,
                    truncated: false,
                },
                latency: Duration::from_secs_f64(seconds.max(0.0)),
            },
        ),
        ClientReport::Nothing { pid } => (pid, Got::Nothing),
        ClientReport::Removed { pid } => (pid, Got::Removed),
        ClientReport::Refused { pid, error } => (pid, Got::Refused(error)),
        ClientReport::Fault { pid, error } => (pid, Got::Fault(error)),
    })
}

/// The hidden subcommand of the real client process.
pub const CLIENT_SUBCOMMAND: &str = "__client";

/// The body of `poolgrade __client`: a real client process. With `as_uid`, it first takes
/// that uid as its effective uid (real and saved stay 0: see the sandbox's shield). It sends
/// its own pid, waits blocked for pid+3 up to `timeout`, and prints one [`ClientReport`].
/// Returns the exit code.
pub fn client_main(key: i32, timeout: Duration, as_uid: Option<u32>) -> i32 {
    let pid = std::process::id() as i64;
    let print = |r: ClientReport| match serde_json::to_string(&r) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("poolgrade __client: {e}"),
    };
    let fault = |error: String| {
        print(ClientReport::Fault { pid, error });
        1
    };
    let _shield = match as_uid.map(|u| Shield::raise(u, u)) {
        Some(Err(e)) => return fault(e.to_string()),
        Some(Ok(s)) => Some(s),
        None => None,
    };
    let queue = match MessageQueue::open(key) {
        Ok(q) => q,
        Err(e) => return fault(e.to_string()),
    };
    let got = match probe::request(queue, pid) {
        Ok(mut pending) => pending.wait_until(Instant::now() + timeout),
        Err(e) => Got::from_error(&e),
    };
    match got {
        Got::Reply { message, latency } => {
            print(ClientReport::Reply {
                pid,
                mtype: message.mtype,
                body: message.body,
                seconds: latency.as_secs_f64(),
            });
            0
        }
        Got::Nothing => {
            print(ClientReport::Nothing { pid });
            1
        }
        Got::Removed => {
            print(ClientReport::Removed { pid });
            1
        }
        Got::Refused(error) => {
            print(ClientReport::Refused { pid, error });
            1
        }
        Got::Fault(e) => fault(e),
    }
}
