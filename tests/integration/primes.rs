//! Black-box tests of the `primes` binary (Exercise 1): its JSON, its answers against a plain
//! reference in every configuration, its CSV and sweep outputs, and its exit codes.
//! No timing assertions: speed is measured by `benches/primes_bench.rs` and
//! `scripts/compare-primes.sh`.

use std::path::Path;
use std::process::Command;

use assert_cmd::Command as Cmd;
use serde_json::Value;

use crate::common;

fn primes() -> Cmd {
    Cmd::new(common::bin("primes"))
}

/// The plainest definition of a prime, as the reference.
fn reference_is_prime(n: u64) -> bool {
    n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0)
}

/// Inputs with the edge cases and a spread of the handout's range, no RNG shared with the
/// binary: 0..=40, squares of primes and their neighbours, the largest u32 prime, and an
/// LCG walk over [1000, 10^6].
fn sample_inputs() -> Vec<u64> {
    let mut v: Vec<u64> = (0..=40).collect();
    v.extend([
        961,
        997 * 997,
        997 * 997 + 2,
        999_983,
        999_999,
        1_000_000,
        4_294_967_291,
    ]);
    let mut x: u64 = 12345;
    for _ in 0..3000 {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        v.push(1000 + (x >> 33) % 999_001);
    }
    v
}

fn write_inputs(dir: &Path, inputs: &[u64]) -> std::path::PathBuf {
    let path = dir.join("inputs.txt");
    let text: String = inputs.iter().map(|n| format!("{n}\n")).collect();
    std::fs::write(&path, text).unwrap();
    path
}

fn json_of(cmd: &mut Cmd) -> Value {
    let out = cmd.assert().success().get_output().stdout.clone();
    serde_json::from_slice(&out)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out)))
}

#[test]
fn json_has_the_documented_fields() {
    let v = json_of(primes().args(["--count", "2000", "--seed", "3", "--workers", "2", "--json"]));
    assert_eq!(v["count"], 2000);
    assert_eq!(v["workers"], 2);
    assert_eq!(v["method"], "trial");
    assert_eq!(v["submit"], "sync");
    assert_eq!(v["seed"], 3);
    let found = v["primes"].as_u64().expect("primes is a number");
    assert!(
        found > 0 && found < 2000,
        "{found} primes among 2000 random integers"
    );
    assert!(v["seconds"].as_f64().expect("seconds is a number") >= 0.0);
}

#[test]
fn prime_counts_match_the_reference_in_every_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = sample_inputs();
    let path = write_inputs(dir.path(), &inputs);
    let want = inputs.iter().filter(|&&n| reference_is_prime(n)).count();
    for workers in ["1", "2", "3"] {
        for method in ["trial", "fast"] {
            for submit in ["sync", "async"] {
                let v = json_of(
                    primes()
                        .args([
                            "--workers",
                            workers,
                            "--method",
                            method,
                            "--submit",
                            submit,
                            "--json",
                        ])
                        .arg("--input")
                        .arg(&path),
                );
                assert_eq!(v["count"], inputs.len() as u64);
                assert_eq!(
                    v["primes"], want as u64,
                    "{workers} workers, {method}, {submit}"
                );
                assert_eq!(v["seed"], Value::Null);
            }
        }
    }
}

#[test]
fn a_seed_gives_the_same_count_whatever_the_configuration() {
    let mut counts = Vec::new();
    for (workers, method, submit) in [
        ("1", "trial", "sync"),
        ("2", "fast", "async"),
        ("3", "fast", "sync"),
        ("2", "trial", "async"),
    ] {
        let v = json_of(primes().args([
            "--count",
            "5000",
            "--seed",
            "11",
            "--json",
            "--workers",
            workers,
            "--method",
            method,
            "--submit",
            submit,
        ]));
        counts.push(v["primes"].as_u64().unwrap());
    }
    assert!(counts.windows(2).all(|w| w[0] == w[1]), "{counts:?}");
}

#[test]
fn inputs_can_come_from_stdin() {
    let v = json_of(
        primes()
            .args(["--input", "-", "--json", "--method", "fast"])
            .write_stdin("2\n\n 15 \n17\n1000000\n"),
    );
    assert_eq!(v["count"], 4);
    assert_eq!(v["primes"], 2);
}

#[test]
fn csv_is_written_for_a_run_and_for_a_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let single = dir.path().join("single.csv");
    primes()
        .args(["--count", "500", "--seed", "1", "--workers", "1", "--csv"])
        .arg(&single)
        .assert()
        .success();
    let text = std::fs::read_to_string(&single).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "count,workers,method,submit,primes,seconds,rate,speedup,efficiency"
    );
    assert_eq!(lines.len(), 2);
    assert!(lines[1].starts_with("500,1,trial,sync,"), "{}", lines[1]);

    let grid = dir.path().join("sweep.csv");
    let out = primes()
        .args([
            "--sweep",
            "--sweep-counts",
            "300,600",
            "--sweep-workers",
            "1,2",
            "--seed",
            "5",
            "--method",
            "fast",
            "--csv",
        ])
        .arg(&grid)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let table = String::from_utf8(out).unwrap();
    assert!(
        table.contains("speedup") && table.contains("efficiency"),
        "{table}"
    );
    let text = std::fs::read_to_string(&grid).unwrap();
    let rows: Vec<Vec<&str>> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    let cells: Vec<(&str, &str)> = rows.iter().map(|r| (r[0], r[1])).collect();
    assert_eq!(
        cells,
        vec![("300", "1"), ("300", "2"), ("600", "1"), ("600", "2")]
    );
    // Same seed and size: the same primes with 1 or 2 workers.
    assert_eq!(rows[0][4], rows[1][4]);
    assert_eq!(rows[2][4], rows[3][4]);
}

#[test]
fn sweep_json_is_an_array_of_rows() {
    let v = json_of(primes().args([
        "--sweep",
        "--sweep-counts",
        "200",
        "--sweep-workers",
        "1,2",
        "--json",
        "--seed",
        "2",
    ]));
    let rows = v.as_array().expect("an array");
    assert_eq!(rows.len(), 2);
    for key in [
        "count",
        "workers",
        "method",
        "submit",
        "primes",
        "seconds",
        "rate",
        "speedup",
        "efficiency",
    ] {
        assert!(rows[1].get(key).is_some(), "missing {key}");
    }
}

#[test]
fn bad_arguments_exit_2() {
    let cases: &[&[&str]] = &[
        &["--workers", "0"],
        &["--count", "0"],
        &["--count", "ten"],
        &["--method", "slow"],
        &["--submit", "later"],
        &["--input", "x.txt", "--count", "5"],
        &["--sweep-workers", "1,2"],
        &["--sweep", "--workers", "2"],
        &["--no-such-flag"],
    ];
    for args in cases {
        primes().args(*args).assert().code(2);
    }
}

#[test]
fn unreadable_or_malformed_input_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    primes()
        .arg("--input")
        .arg(dir.path().join("missing.txt"))
        .assert()
        .code(1);
    let bad = dir.path().join("bad.txt");
    std::fs::write(&bad, "17\nseventeen\n").unwrap();
    primes()
        .arg("--input")
        .arg(&bad)
        .assert()
        .code(1)
        .stderr(predicates::str::contains("line 2"));
    primes()
        .args(["--input", "-"])
        .write_stdin("\n")
        .assert()
        .code(1);
}

#[test]
fn help_documents_the_fast_method_and_exit_codes() {
    let out = primes()
        .arg("--help")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let help = String::from_utf8(out).unwrap();
    for needle in [
        "sieve of Eratosthenes",
        "Miller-Rabin",
        "Exit codes",
        "2  bad arguments",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}");
    }
}

/// The handout program in Python and the binary agree on shared inputs.
#[test]
fn the_python_handout_program_agrees() {
    let have_python = Command::new("python3")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !have_python {
        assert!(
            std::env::var_os("CI").is_none(),
            "python3 is required in CI"
        );
        eprintln!("SKIPPED: python3 is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let inputs = sample_inputs();
    let path = write_inputs(dir.path(), &inputs);
    let script = common::fixtures().join("python/exercise1_pool.py");
    let mut py = Cmd::new("python3");
    py.arg(&script)
        .args(["--workers", "2", "--submit", "async", "--input"])
        .arg(&path);
    let python = json_of(&mut py);
    let rust = json_of(
        primes()
            .args(["--workers", "2", "--json", "--input"])
            .arg(&path),
    );
    assert_eq!(python["count"], rust["count"]);
    assert_eq!(python["primes"], rust["primes"]);
    assert_eq!(
        python["primes"],
        inputs.iter().filter(|&&n| reference_is_prime(n)).count() as u64
    );
}
