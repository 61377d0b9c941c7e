//! Exercise 1: primality tests over random integers, timed, in a pool.
//!
//! The handout asks for random integers in [10^3, 10^6] tested by the workers of a pool,
//! submitted synchronously and asynchronously, timed without I/O in the timed region. This
//! module holds the whole exercise; the `primes` binary only parses arguments and prints.
//!
//! * Inputs: [`generate`] (seeded, reproducible) or [`parse_inputs`] (one integer a line).
//! * Tests: [`is_prime_trial`] is the handout's trial division; [`Sieve`] is the fast,
//!   exact method (see [`Method::Fast`]); [`is_prime_miller_rabin`] covers numbers above
//!   the sieve's reach.
//! * Runs: [`run`] times one configuration on a [`Pool`]; [`sweep`] times a grid of
//!   worker counts and input sizes and derives speedup and efficiency.
//!
//! # The timed region
//!
//! [`run`] starts the pool's workers *before* the clock starts (as the Python program
//! creates its `Pool` first), then times: building the sieve (fast method), submitting the
//! work, and collecting every answer. Reading or generating the inputs and printing are
//! outside it.

use std::io::{BufRead, Write};
use std::sync::Arc;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::{Pool, PoolError};

/// The handout's lower bound for the random integers.
pub const LOW: u32 = 1_000;
/// The handout's upper bound for the random integers (inclusive).
pub const HIGH: u32 = 1_000_000;
/// The largest sieve [`Method::Fast`] builds (2^24, a 1 MiB bit table); larger inputs go
/// to [`is_prime_miller_rabin`].
pub const SIEVE_LIMIT: u32 = 1 << 24;

/// Why a run could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PrimesError {
    /// The pool failed (could not start, or a task panicked).
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// An input line is not an integer in 0..=4294967295.
    #[error("line {line}: {text:?} is not an integer in 0..=4294967295")]
    BadLine {
        /// 1-based line number.
        line: usize,
        /// The offending text, trimmed.
        text: String,
    },
    /// The inputs could not be read.
    #[error("cannot read the inputs: {0}")]
    Read(#[source] std::io::Error),
    /// There is nothing to test.
    #[error("no integers to test")]
    Empty,
}

/// How each integer is tested.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// The handout's trial division by 2 and the odd numbers up to sqrt(n).
    Trial,
    /// A sieve of Eratosthenes over the odd numbers up to the largest input (at most
    /// [`SIEVE_LIMIT`]), built once per run inside the timed region, then one bit lookup
    /// per integer. Exact; inputs above the limit use deterministic Miller–Rabin.
    Fast,
}

/// How the work is handed to the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Submit {
    /// `Pool::map`: the caller blocks until every answer is in (Python's `pool.map`).
    Sync,
    /// `Pool::map_async`, then `get` on the pending result (Python's `pool.map_async`).
    Async,
}

impl Method {
    /// The lowercase name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Method::Trial => "trial",
            Method::Fast => "fast",
        }
    }
}

impl Submit {
    /// The lowercase name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Submit::Sync => "sync",
            Submit::Async => "async",
        }
    }
}

/// The handout's `is_prime`: 2, then odd divisors from 3 to floor(sqrt(n)), stopping at
/// the first that divides.
///
/// The divisors and their order are the handout's. Only the test "does `i` divide `n`" is
/// computed differently for `i` below [`INVERSE_TABLE_END`]: a multiplication by the
/// inverse of `i` modulo 2^32 and a comparison instead of a hardware division (the
/// strength reduction compilers apply to constant divisors; Granlund & Montgomery, 1994).
/// It is exact, and about 3x faster; larger divisors (inputs above 2^20) use `%`.
///
/// ```
/// use pools::primes::is_prime_trial;
/// assert!(is_prime_trial(2) && is_prime_trial(999_983));
/// assert!(!is_prime_trial(1) && !is_prime_trial(1_000_000) && !is_prime_trial(997 * 997));
/// ```
pub fn is_prime_trial(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    if n == 2 {
        return true;
    }
    if n % 2 == 0 {
        return false;
    }
    let sqrt_n = floor_sqrt(n);
    let mut i = 3;
    while i <= sqrt_n && i < INVERSE_TABLE_END {
        let (inverse, limit) = ODD_INVERSES[(i / 2) as usize];
        // For odd i: i divides n exactly when n * i^-1 (mod 2^32) <= (2^32 - 1) / i.
        if n.wrapping_mul(inverse) <= limit {
            return false;
        }
        i += 2;
    }
    while i <= sqrt_n {
        if n % i == 0 {
            return false;
        }
        i += 2;
    }
    true
}

/// Odd divisors below this are tested by [`is_prime_trial`] with a multiplication; it
/// covers every divisor the handout's range needs (sqrt(10^6) = 1000).
pub const INVERSE_TABLE_END: u32 = 1024;

/// For each odd d = 2k + 1 below [`INVERSE_TABLE_END`], at index k: (d^-1 mod 2^32,
/// (2^32 - 1) / d). Computed at compile time.
const ODD_INVERSES: [(u32, u32); (INVERSE_TABLE_END / 2) as usize] = {
    let mut table = [(0u32, 0u32); (INVERSE_TABLE_END / 2) as usize];
    let mut k = 0;
    while k < table.len() {
        let d = 2 * k as u32 + 1;
        // Newton's iteration: d * d = 1 (mod 8) for odd d, and each step doubles the
        // correct low bits: 3, 6, 12, 24, 48 >= 32.
        let mut x = d;
        let mut step = 0;
        while step < 4 {
            x = x.wrapping_mul(2u32.wrapping_sub(d.wrapping_mul(x)));
            step += 1;
        }
        table[k] = (x, u32::MAX / d);
        k += 1;
    }
    table
};

/// floor(sqrt(n)), exact for every `u32` (an `f64` square root is correctly rounded, and
/// no square of an integer lies within its rounding error of a `u32`).
fn floor_sqrt(n: u32) -> u32 {
    (n as f64).sqrt() as u32
}

/// Deterministic Miller–Rabin: bases 2, 7 and 61 decide every n < 4,759,123,141, so
/// every `u32`, exactly.
///
/// ```
/// use pools::primes::is_prime_miller_rabin;
/// assert!(is_prime_miller_rabin(4_294_967_291)); // the largest u32 prime
/// assert!(!is_prime_miller_rabin(3_215_031_751)); // a strong pseudoprime to 2, 3, 5, 7
/// ```
pub fn is_prime_miller_rabin(n: u32) -> bool {
    const SMALL: [u32; 12] = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37];
    for p in SMALL {
        if n == p {
            return true;
        }
        if n % p == 0 {
            return false;
        }
    }
    if n < 41 {
        return n > 1;
    }
    let n64 = n as u64;
    let s = (n - 1).trailing_zeros();
    let d = (n - 1) >> s;
    let mul = |a: u64, b: u64| a * b % n64;
    'bases: for a in [2u64, 7, 61] {
        if a % n64 == 0 {
            continue; // n = 61: a base that is a multiple of n says nothing
        }
        // x = a^d mod n
        let (mut x, mut base, mut e) = (1u64, a % n64, d);
        while e > 0 {
            if e & 1 == 1 {
                x = mul(x, base);
            }
            base = mul(base, base);
            e >>= 1;
        }
        if x == 1 || x == n64 - 1 {
            continue;
        }
        for _ in 1..s {
            x = mul(x, x);
            if x == n64 - 1 {
                continue 'bases;
            }
        }
        return false;
    }
    true
}

/// A sieve of Eratosthenes over the odd numbers up to a limit, one bit each.
///
/// ```
/// use pools::primes::Sieve;
/// let sieve = Sieve::new(1_000_000);
/// assert!(sieve.is_prime(999_983) && !sieve.is_prime(999_981));
/// assert!(sieve.is_prime(4_294_967_291)); // above the limit: Miller–Rabin
/// ```
pub struct Sieve {
    /// Bit `i` set: the odd number `2i + 1` is composite (1 counts as composite).
    composite: Vec<u64>,
    limit: u32,
}

impl Sieve {
    /// Sieves the odd numbers up to `min(limit, SIEVE_LIMIT)`.
    pub fn new(limit: u32) -> Self {
        let limit = limit.min(SIEVE_LIMIT);
        let odds = limit as usize / 2 + 1; // odd numbers 1, 3, ..., <= limit (+ slack)
        let mut composite = vec![0u64; odds.div_ceil(64)];
        composite[0] |= 1; // 1 is not prime
        let mut p = 3usize;
        while p * p <= limit as usize {
            if composite[p / 2 / 64] >> (p / 2 % 64) & 1 == 0 {
                // Odd multiples of p from p², stepping 2p (index step p).
                let mut i = p * p / 2;
                while i < odds {
                    composite[i / 64] |= 1 << (i % 64);
                    i += p;
                }
            }
            p += 2;
        }
        Sieve { composite, limit }
    }

    /// Whether `n` is prime: a bit lookup up to the limit, Miller–Rabin above it.
    #[inline]
    pub fn is_prime(&self, n: u32) -> bool {
        if n > self.limit {
            return is_prime_miller_rabin(n); // never taken below the limit: predictable
        }
        // Branch-free below the limit: random inputs are odd or even at random, and a
        // mispredicted `if n % 2 == 0` would cost more than the lookup itself. For an even
        // n, the bit read is that of n - 1 and is ignored.
        let i = (n / 2) as usize;
        let odd_prime = self.composite[i / 64] >> (i % 64) & 1 == 0;
        (odd_prime & (n % 2 == 1)) | (n == 2)
    }
}

/// `count` integers drawn uniformly from [`LOW`]..=[`HIGH`]; the same seed gives the same
/// integers on every machine (rand's `StdRng`, ChaCha12).
pub fn generate(count: usize, seed: u64) -> Vec<u32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..count).map(|_| rng.gen_range(LOW..=HIGH)).collect()
}

/// Reads one integer per line; blank lines are skipped, spaces trimmed.
///
/// ```
/// let got = pools::primes::parse_inputs("7\n\n 1000 \n".as_bytes())?;
/// assert_eq!(got, vec![7, 1000]);
/// assert!(pools::primes::parse_inputs("12x\n".as_bytes()).is_err());
/// # Ok::<(), pools::primes::PrimesError>(())
/// ```
pub fn parse_inputs(reader: impl BufRead) -> Result<Vec<u32>, PrimesError> {
    let mut inputs = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(PrimesError::Read)?;
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        let n = text.parse().map_err(|_| PrimesError::BadLine {
            line: i + 1,
            text: text.chars().take(40).collect(),
        })?;
        inputs.push(n);
    }
    Ok(inputs)
}

/// The outcome of one timed run.
#[derive(Debug, Clone)]
pub struct Run {
    /// Whether each input is prime, in input order.
    pub flags: Vec<bool>,
    /// How many inputs are prime.
    pub primes: usize,
    /// Seconds spent in the timed region.
    pub seconds: f64,
}

/// Tests every input in a pool of `workers` with `method`, submitted as `submit`, timed.
///
/// ```
/// use pools::primes::{run, Method, Submit};
/// let r = run(vec![2, 9, 11, 1_000_000], 2, Method::Fast, Submit::Async)?;
/// assert_eq!(r.flags, vec![true, false, true, false]);
/// assert_eq!(r.primes, 2);
/// # Ok::<(), pools::primes::PrimesError>(())
/// ```
pub fn run(
    inputs: Vec<u32>,
    workers: usize,
    method: Method,
    submit: Submit,
) -> Result<Run, PrimesError> {
    if inputs.is_empty() {
        return Err(PrimesError::Empty);
    }
    let pool = Pool::new(workers)?;
    let start = Instant::now();
    let flags = match method {
        Method::Trial => submit_all(&pool, submit, inputs, is_prime_trial)?,
        Method::Fast => {
            let largest = inputs.iter().copied().max().unwrap_or(0);
            let sieve = Arc::new(Sieve::new(largest));
            submit_all(&pool, submit, inputs, move |n| sieve.is_prime(n))?
        }
    };
    let primes = flags.iter().filter(|&&p| p).count();
    let seconds = start.elapsed().as_secs_f64();
    Ok(Run {
        flags,
        primes,
        seconds,
    })
}

fn submit_all<F>(
    pool: &Pool,
    submit: Submit,
    inputs: Vec<u32>,
    test: F,
) -> Result<Vec<bool>, PoolError>
where
    F: Fn(u32) -> bool + Sync + Send + 'static,
{
    match submit {
        Submit::Sync => pool.map(test, inputs),
        Submit::Async => pool.map_async(test, inputs).get(None),
    }
}

/// One line of a report: a run or a sweep cell.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// How many integers were tested.
    pub count: usize,
    /// Worker count of the pool.
    pub workers: usize,
    /// The primality test.
    pub method: Method,
    /// How the work was submitted.
    pub submit: Submit,
    /// How many integers were prime.
    pub primes: usize,
    /// Seconds in the timed region (the best of the repeats in a sweep).
    pub seconds: f64,
    /// Integers tested per second.
    pub rate: f64,
    /// Time of the sweep's baseline (fewest workers) over this time; 1 for a single run.
    pub speedup: f64,
    /// Speedup per worker, relative to the baseline: `speedup * base_workers / workers`.
    pub efficiency: f64,
}

impl Row {
    /// A row for one run, with speedup and efficiency of 1.
    pub fn single(count: usize, workers: usize, method: Method, submit: Submit, run: &Run) -> Self {
        Row {
            count,
            workers,
            method,
            submit,
            primes: run.primes,
            seconds: run.seconds,
            rate: count as f64 / run.seconds.max(1e-9),
            speedup: 1.0,
            efficiency: 1.0,
        }
    }
}

/// What a sweep covers.
#[derive(Debug, Clone)]
pub struct SweepPlan {
    /// Input sizes.
    pub counts: Vec<usize>,
    /// Worker counts; the smallest is the baseline of speedup and efficiency.
    pub workers: Vec<usize>,
    /// The primality test.
    pub method: Method,
    /// How the work is submitted.
    pub submit: Submit,
    /// Seed of the inputs (one set of inputs per count, shared by all worker counts).
    pub seed: u64,
    /// Runs per cell; the fastest is kept.
    pub repeat: usize,
}

/// Runs every (count, workers) cell of `plan`, in order, and derives speedup and
/// efficiency against the smallest worker count of each input size.
pub fn sweep(plan: &SweepPlan) -> Result<Vec<Row>, PrimesError> {
    let mut workers = plan.workers.clone();
    workers.sort_unstable();
    workers.dedup();
    let mut rows = Vec::new();
    for &count in &plan.counts {
        let inputs = generate(count, plan.seed);
        let mut baseline: Option<(usize, f64)> = None;
        for &w in &workers {
            let mut best: Option<Run> = None;
            for _ in 0..plan.repeat.max(1) {
                let r = run(inputs.clone(), w, plan.method, plan.submit)?;
                if best.as_ref().is_none_or(|b| r.seconds < b.seconds) {
                    best = Some(r);
                }
            }
            let best = best.ok_or(PrimesError::Empty)?;
            let mut row = Row::single(count, w, plan.method, plan.submit, &best);
            let (base_w, base_s) = *baseline.get_or_insert((w, best.seconds));
            row.speedup = base_s / best.seconds.max(1e-9);
            row.efficiency = row.speedup * base_w as f64 / w as f64;
            rows.push(row);
        }
    }
    Ok(rows)
}

/// The rows as an aligned text table.
pub fn format_table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:>10} {:>7} {:>6} {:>6} {:>9} {:>11} {:>14} {:>8} {:>10}\n",
        "count",
        "workers",
        "method",
        "submit",
        "primes",
        "seconds",
        "rate (/s)",
        "speedup",
        "efficiency"
    );
    for r in rows {
        out.push_str(&format!(
            "{:>10} {:>7} {:>6} {:>6} {:>9} {:>11.6} {:>14.0} {:>8.2} {:>10.2}\n",
            r.count,
            r.workers,
            r.method.name(),
            r.submit.name(),
            r.primes,
            r.seconds,
            r.rate,
            r.speedup,
            r.efficiency
        ));
    }
    out
}

/// Writes the rows as CSV with a header line.
pub fn write_csv(rows: &[Row], mut out: impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "count,workers,method,submit,primes,seconds,rate,speedup,efficiency"
    )?;
    for r in rows {
        writeln!(
            out,
            "{},{},{},{},{},{:.9},{:.3},{:.4},{:.4}",
            r.count,
            r.workers,
            r.method.name(),
            r.submit.name(),
            r.primes,
            r.seconds,
            r.rate,
            r.speedup,
            r.efficiency
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plainest possible definition, as the reference.
    fn reference(n: u32) -> bool {
        let n = n as u64;
        n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0)
    }

    #[test]
    fn trial_sieve_and_miller_rabin_agree_with_the_reference() {
        let sieve = Sieve::new(20_000);
        for n in 0..20_000 {
            let want = reference(n);
            assert_eq!(is_prime_trial(n), want, "trial {n}");
            assert_eq!(sieve.is_prime(n), want, "sieve {n}");
            assert_eq!(is_prime_miller_rabin(n), want, "miller-rabin {n}");
        }
    }

    #[test]
    fn miller_rabin_is_exact_on_hard_and_large_numbers() {
        // Around squares of primes, u32::MAX, and strong pseudoprimes to small bases.
        let mut samples: Vec<u32> = vec![
            u32::MAX,
            u32::MAX - 4,
            2_147_483_647,
            25_326_001,
            3_215_031_751,
        ];
        samples.extend((4_294_960_000..=u32::MAX).step_by(7));
        samples.extend([65_521u32, 65_519].iter().flat_map(|&p| {
            let sq = p * p;
            [sq - 2, sq, sq + 2]
        }));
        for n in samples {
            assert_eq!(is_prime_miller_rabin(n), reference(n), "{n}");
            assert_eq!(is_prime_trial(n), reference(n), "{n}");
        }
    }

    #[test]
    fn the_inverse_table_inverts_and_tests_divisibility_exactly() {
        for (k, &(inverse, _)) in ODD_INVERSES.iter().enumerate() {
            assert_eq!(
                (2 * k as u32 + 1).wrapping_mul(inverse),
                1,
                "d = {}",
                2 * k + 1
            );
        }
        // Trial division against the reference over a third of the handout range.
        for n in (LOW..=HIGH).step_by(3) {
            assert_eq!(is_prime_trial(n), reference(n), "{n}");
        }
    }

    #[test]
    fn sieve_counts_the_primes_below_a_million() {
        let sieve = Sieve::new(HIGH);
        assert_eq!((0..=HIGH).filter(|&n| sieve.is_prime(n)).count(), 78_498);
    }

    #[test]
    fn generate_is_reproducible_and_in_range() {
        let a = generate(1000, 42);
        assert_eq!(a, generate(1000, 42));
        assert_ne!(a, generate(1000, 43));
        assert!(a.iter().all(|n| (LOW..=HIGH).contains(n)));
    }

    #[test]
    fn every_configuration_gives_the_reference_answers() {
        let inputs = generate(5_000, 7);
        let want: Vec<bool> = inputs.iter().map(|&n| reference(n)).collect();
        for workers in [1, 2, 3] {
            for method in [Method::Trial, Method::Fast] {
                for submit in [Submit::Sync, Submit::Async] {
                    let r = run(inputs.clone(), workers, method, submit).unwrap();
                    assert_eq!(r.flags, want, "{workers} {method:?} {submit:?}");
                    assert_eq!(r.primes, want.iter().filter(|&&p| p).count());
                }
            }
        }
    }

    #[test]
    fn parse_inputs_reports_the_bad_line() {
        match parse_inputs("5\n-3\n".as_bytes()) {
            Err(PrimesError::BadLine { line: 2, text }) => assert_eq!(text, "-3"),
            other => panic!("{other:?}"),
        }
        assert!(run(Vec::new(), 1, Method::Trial, Submit::Sync).is_err());
    }

    #[test]
    fn sweep_rows_cover_the_grid_with_a_unit_baseline() {
        let plan = SweepPlan {
            counts: vec![200, 300],
            workers: vec![2, 1],
            method: Method::Fast,
            submit: Submit::Sync,
            seed: 1,
            repeat: 1,
        };
        let rows = sweep(&plan).unwrap();
        let cells: Vec<(usize, usize)> = rows.iter().map(|r| (r.count, r.workers)).collect();
        assert_eq!(cells, vec![(200, 1), (200, 2), (300, 1), (300, 2)]);
        assert_eq!(rows[0].speedup, 1.0);
        assert_eq!(rows[0].primes, rows[1].primes);
        let mut csv = Vec::new();
        write_csv(&rows, &mut csv).unwrap();
        assert_eq!(String::from_utf8(csv).unwrap().lines().count(), 5);
        assert_eq!(format_table(&rows).lines().count(), 5);
    }
}
