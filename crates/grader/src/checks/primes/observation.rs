//! What Exercise 1's observation layer (`observe.py`) saw inside the student's program, as
//! data: the pools it created, the calls made on them with the verdicts they returned, the
//! clock reads of the student's files, what it printed and when it drew random numbers.
//! This module owns the layer's wire format: finding its line in the program's output by the
//! run's nonce, and decoding it with limits (the output is the student's).

use std::io::Read;

use base64::Engine as _;
use serde::Deserialize;

/// The layer, run as `python3 -c <LAYER> primes_pool.py`.
pub(crate) const LAYER: &str = include_str!("observe.py");

/// The variable that hands the layer the run's nonce (removed before the student's code runs).
pub(crate) const NONCE_VAR: &str = "POOLGRADE_OBSERVE";

/// What starts the layer's line: then the nonce, a colon, base64 of zlib of JSON.
const MARKER: &str = "@@poolgrade:";

/// Most bytes the layer's JSON or its verdicts may inflate to (a forged line is no bomb).
const MAX_INFLATED: u64 = 64 << 20;

/// A pool the program created.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct PoolSeen {
    /// `Pool`, `ThreadPool` or `ProcessPoolExecutor`.
    pub kind: String,
    /// Where it was created: `guarded` (under `if __name__ == "__main__":`), `unguarded`
    /// (by the module's top-level code outside that test) or `unknown`.
    #[serde(rename = "where")]
    pub place: String,
}

/// One submission of work on a pool.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Call {
    /// `sync`, `async` (a `multiprocessing.Pool` method) or `executor`.
    pub kind: String,
    /// The method, for example `map_async`.
    pub method: String,
    /// The class of the pool it was made on.
    pub pool: String,
    /// When it was made (`CLOCK_MONOTONIC` seconds).
    pub t0: f64,
    /// When its results were all in, if they came.
    pub t1: Option<f64>,
    /// How many verdicts its results held.
    pub verdicts: u64,
}

/// A clock read: (when, family, value in seconds, writes, random draws and pool calls so far).
pub(crate) type ClockRead = (f64, String, f64, u64, u64, u64);

/// What the layer saw.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Observation {
    /// Pools created by the main process.
    pub pools: Vec<PoolSeen>,
    /// Submissions on them, in order.
    pub calls: Vec<Call>,
    /// Clock reads of the student's files: when, clock family, value in seconds, and how
    /// many writes, random draws and pool calls the main process had made by then.
    pub clock: Vec<ClockRead>,
    /// Numbers printed that may be times: (when the line ended, seconds, rounding, line).
    pub times: Vec<(f64, f64, f64, String)>,
    /// Verdicts returned with a number out of [10^3, 10^6]: how many, and some of them.
    pub oor_count: u64,
    /// Some of those numbers.
    pub out_of_range: Vec<serde_json::Value>,
    /// Results that were no verdict: how many, and some of them.
    pub unrecognised_count: u64,
    /// Some of those results, as `repr` shows them.
    pub unrecognised: Vec<String>,
    /// The main process's CPU time (seconds) at its first pool call, and at exit.
    pub cpu_first_call: Option<f64>,
    /// The main process's CPU time at exit.
    pub cpu_exit: f64,
    /// The CPU time the layer spent recording results (in the main process, from its first
    /// pool call on), to take off the main process's.
    pub layer_cpu: f64,
    /// How many writes the worker processes made, and the first one.
    pub worker_writes: u64,
    /// The start of the first write of a worker.
    pub worker_sample: String,
    /// The in-range verdicts: base64 of zlib of little-endian u32 deltas of the sorted
    /// values `2n + verdict`.
    pub(crate) pairs: String,
    /// `pairs`, decoded once by [`extract`]; `None` if they are broken.
    #[serde(skip)]
    pub(crate) decoded: Option<Vec<(u32, bool)>>,
}

impl Observation {
    /// The in-range verdicts (n, claimed prime), sorted by n; `None` if the data is broken.
    pub fn verdicts(&self) -> Option<&[(u32, bool)]> {
        self.decoded.as_deref()
    }

    /// Decodes [`Observation::pairs`].
    fn decode_pairs(&self) -> Option<Vec<(u32, bool)>> {
        let bytes = inflate(&self.pairs)?;
        if bytes.len() % 4 != 0 {
            return None;
        }
        let mut value: u32 = 0;
        let mut out = Vec::with_capacity(bytes.len() / 4);
        for chunk in bytes.chunks_exact(4) {
            let delta = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            value = value.checked_add(delta)?;
            out.push((value >> 1, value & 1 == 1));
        }
        Some(out)
    }

    /// Calls on a `multiprocessing.Pool` (or a subclass) of this kind that returned verdicts.
    pub fn working_calls<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Call> + 'a {
        self.calls
            .iter()
            .filter(move |c| c.kind == kind && c.verdicts > 0)
    }

    /// The wall time from the first pool call to the last result, in seconds.
    pub fn pool_span(&self) -> Option<f64> {
        let start = self.calls.iter().map(|c| c.t0).reduce(f64::min)?;
        let end = self.calls.iter().filter_map(|c| c.t1).reduce(f64::max)?;
        (end > start).then_some(end - start)
    }
}

/// Finds the layer's line for `nonce` in `output` and decodes it; also returns the output
/// without any line that carries the marker. `Err` says why there is no observation.
pub(crate) fn extract(output: &str, nonce: &str) -> (Result<Observation, String>, String) {
    let ours = format!("{MARKER}{nonce}:");
    let mut found = None;
    let mut rest = String::with_capacity(output.len().min(1 << 20));
    for line in output.split_inclusive('\n') {
        if let Some(at) = line.find(&ours) {
            found = Some(line[at + ours.len()..].trim_end().to_owned());
            continue;
        }
        // A marker line without the nonce is someone else's (a forgery): shown, never read.
        rest.push_str(line);
    }
    let obs = match found {
        None => Err(
            "the observation layer wrote nothing: the program did not end through \
                     Python's normal exit (killed, os._exit, or still running at the deadline)"
                .to_owned(),
        ),
        Some(data) => inflate(&data)
            .and_then(|json| serde_json::from_slice::<Observation>(&json).ok())
            .map(|mut obs| {
                obs.decoded = obs.decode_pairs();
                obs
            })
            .ok_or_else(|| "the observation layer's record could not be read".to_owned()),
    };
    (obs, rest)
}

/// base64, then zlib, with [`MAX_INFLATED`] as the limit.
fn inflate(data: &str) -> Option<Vec<u8>> {
    let packed = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .ok()?;
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(packed.as_slice())
        .take(MAX_INFLATED + 1)
        .read_to_end(&mut out)
        .ok()?;
    (out.len() as u64 <= MAX_INFLATED).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn pack(bytes: &[u8]) -> String {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(bytes).unwrap();
        base64::engine::general_purpose::STANDARD.encode(z.finish().unwrap())
    }

    fn line(nonce: &str, json: &serde_json::Value) -> String {
        format!("{MARKER}{nonce}:{}\n", pack(json.to_string().as_bytes()))
    }

    #[test]
    fn only_the_line_with_the_runs_nonce_is_read_and_every_marker_line_of_ours_is_cut() {
        let values: Vec<u32> = vec![1009 * 2 + 1, 1011 * 2, 1013 * 2 + 1];
        let mut deltas = Vec::new();
        let mut last = 0;
        for v in values {
            deltas.extend_from_slice(&(v - last).to_le_bytes());
            last = v;
        }
        let real = serde_json::json!({"pairs": pack(&deltas), "cpu_exit": 0.5,
            "calls": [{"kind": "sync", "method": "map", "pool": "Pool", "t0": 1.0, "t1": 2.0,
                       "items": 3, "verdicts": 3}]});
        let forged = serde_json::json!({"cpu_exit": 99.0});
        let output = format!(
            "hello\n{}map: 1.0 s\n{}",
            line("guessed", &forged),
            line("n0nce", &real)
        );
        let (obs, rest) = extract(&output, "n0nce");
        let obs = obs.expect("the real line");
        assert_eq!(obs.cpu_exit, 0.5);
        assert_eq!(
            obs.verdicts().unwrap(),
            [(1009, true), (1011, false), (1013, true)]
        );
        assert_eq!(obs.working_calls("sync").count(), 1);
        assert_eq!(obs.pool_span(), Some(1.0));
        // The forgery stays in the output the student sees; our line does not.
        assert!(rest.contains("guessed"), "{rest}");
        assert!(!rest.contains("n0nce"), "{rest}");
        let (none, _) = extract(&output, "other");
        assert!(none.is_err());
    }

    #[test]
    fn a_broken_or_inflating_record_is_no_observation() {
        let (obs, _) = extract(&format!("{MARKER}n:not-base64!\n"), "n");
        assert!(obs.is_err());
        let bomb = pack(&vec![b' '; (MAX_INFLATED + 10) as usize]);
        let (obs, _) = extract(&format!("{MARKER}n:{bomb}\n"), "n");
        assert!(obs.is_err());
    }
}
