//! [`Executor`], Python's `concurrent.futures.ThreadPoolExecutor` on std threads, with its
//! [`Future`] (`submit`) and [`as_completed`].

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::error::PoolError;
use crate::slot::{slot_pair, Slot};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// A pool of `n` std threads fed through a job channel, like Python's
/// `concurrent.futures.ThreadPoolExecutor`.
///
/// Dropping it closes the channel, lets the workers finish every job already submitted,
/// and joins them.
///
/// ```
/// use pools::{as_completed, Executor};
///
/// let executor = Executor::new(3)?;
/// // Results of `map` come back in input order.
/// let doubled: Vec<u32> = executor.map(|x: u32| 2 * x, vec![1, 2, 3]).collect::<Result<_, _>>()?;
/// assert_eq!(doubled, vec![2, 4, 6]);
/// // Futures from `submit`, taken as they complete.
/// let futures: Vec<_> = (1..=3u32).map(|x| executor.submit(move || x * x)).collect();
/// let mut squares = Vec::new();
/// for mut future in as_completed(futures) {
///     squares.push(future.result(None)?);
/// }
/// squares.sort();
/// assert_eq!(squares, vec![1, 4, 9]);
/// # Ok::<(), pools::PoolError>(())
/// ```
pub struct Executor {
    /// `Some` until drop, which closes the channel by dropping it.
    jobs: Option<mpsc::Sender<Job>>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Executor {
    /// Starts `workers` threads waiting for jobs.
    pub fn new(workers: usize) -> Result<Self, PoolError> {
        if workers == 0 {
            return Err(PoolError::NoWorkers);
        }
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut executor = Executor {
            jobs: Some(tx),
            threads: Vec::with_capacity(workers),
        };
        for i in 0..workers {
            let rx = rx.clone();
            let handle = thread::Builder::new()
                .name(format!("executor-worker-{i}"))
                .spawn(move || worker_loop(&rx))
                // On failure, dropping `executor` joins the workers already started.
                .map_err(|e| PoolError::Start(e.to_string()))?;
            executor.threads.push(handle);
        }
        Ok(executor)
    }

    /// How many worker threads the executor has.
    pub fn workers(&self) -> usize {
        self.threads.len()
    }

    /// Schedules `f` and returns a [`Future`] for its value (`executor.submit`).
    ///
    /// ```
    /// let executor = pools::Executor::new(1)?;
    /// let mut future = executor.submit(|| "done");
    /// assert_eq!(future.result(None)?, "done");
    /// # Ok::<(), pools::PoolError>(())
    /// ```
    pub fn submit<T, F>(&self, f: F) -> Future<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (promise, slot) = slot_pair();
        let job: Job = Box::new(move || promise.run(f));
        // The sender lives as long as `self`, and workers hold the receiver until the
        // sender is gone, so this send cannot fail; if it somehow did, the job (and its
        // promise) is dropped and the future reads `Cancelled`.
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send(job);
        }
        Future { slot }
    }

    /// Submits `f` for every item and yields the results in input order (`executor.map`).
    /// All items are submitted at once; the iterator waits for each result in turn.
    ///
    /// ```
    /// let executor = pools::Executor::new(2)?;
    /// let lengths: Result<Vec<usize>, _> = executor.map(|s: &str| s.len(), vec!["a", "bcd"]).collect();
    /// assert_eq!(lengths?, vec![1, 3]);
    /// # Ok::<(), pools::PoolError>(())
    /// ```
    pub fn map<I, T, F>(&self, f: F, items: Vec<I>) -> impl Iterator<Item = Result<T, PoolError>>
    where
        I: Send + 'static,
        T: Send + 'static,
        F: Fn(I) -> T + Sync + Send + 'static,
    {
        let f = Arc::new(f);
        let futures: Vec<Future<T>> = items
            .into_iter()
            .map(|item| {
                let f = f.clone();
                self.submit(move || f(item))
            })
            .collect();
        futures.into_iter().map(|mut future| future.result(None))
    }
}

fn worker_loop(rx: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        // The guard is a temporary: the lock is released before the job runs.
        let job = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
        match job {
            // Jobs catch their own panics (Promise::run), so the worker survives them.
            Ok(job) => job(),
            Err(_) => return, // channel closed: the executor is being dropped
        }
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        drop(self.jobs.take());
        for handle in self.threads.drain(..) {
            let _ = handle.join();
        }
    }
}

/// The pending result of [`Executor::submit`], like Python's `concurrent.futures.Future`.
pub struct Future<T> {
    slot: Arc<Slot<T>>,
}

impl<T> Future<T> {
    /// Waits for the value, at most `timeout` (`None`: as long as it takes), and takes it.
    /// Same rules as [`AsyncResult::get`](crate::AsyncResult::get).
    pub fn result(&mut self, timeout: Option<Duration>) -> Result<T, PoolError> {
        self.slot.take(timeout)
    }

    /// Whether the task has finished (successfully or not).
    pub fn done(&self) -> bool {
        self.slot.is_done()
    }
}

/// Yields the given futures as they complete, like `concurrent.futures.as_completed`.
///
/// Futures already done come first; the iterator ends when all have been yielded.
///
/// ```
/// use pools::{as_completed, Executor};
///
/// let executor = Executor::new(2)?;
/// let (go, gate) = std::sync::mpsc::channel::<()>();
/// let slow = executor.submit(move || { gate.recv().ok(); "slow" }); // waits for `go`
/// let fast = executor.submit(|| "fast");
/// let mut completed = as_completed(vec![slow, fast]);
/// assert_eq!(completed.next().unwrap().result(None)?, "fast");
/// go.send(()).unwrap();
/// assert_eq!(completed.next().unwrap().result(None)?, "slow");
/// assert!(completed.next().is_none());
/// # Ok::<(), pools::PoolError>(())
/// ```
pub fn as_completed<T>(futures: Vec<Future<T>>) -> AsCompleted<T> {
    let (tx, rx) = mpsc::channel();
    for (index, future) in futures.iter().enumerate() {
        future.slot.watch(tx.clone(), index);
    }
    AsCompleted {
        left: futures.len(),
        futures: futures.into_iter().map(Some).collect(),
        rx,
    }
}

/// Iterator returned by [`as_completed`].
pub struct AsCompleted<T> {
    /// The futures not yet yielded, by their index in the caller's list.
    futures: Vec<Option<Future<T>>>,
    /// Indexes of completed futures, in completion order.
    rx: mpsc::Receiver<usize>,
    /// How many futures are still to be yielded.
    left: usize,
}

impl<T> Iterator for AsCompleted<T> {
    type Item = Future<T>;

    fn next(&mut self) -> Option<Future<T>> {
        while self.left > 0 {
            // Every slot completes (a job dropped unrun completes as Cancelled) and sends
            // its index once; a pending slot holds a sender, so `recv` cannot fail early.
            let index = self.rx.recv().ok()?;
            if let Some(future) = self.futures.get_mut(index).and_then(Option::take) {
                self.left -= 1;
                return Some(future);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const SHORT: Duration = Duration::from_millis(20);

    /// A gate that holds tasks until the test opens it: ordering without timing.
    fn gate() -> (mpsc::Sender<()>, Arc<Mutex<mpsc::Receiver<()>>>) {
        let (tx, rx) = mpsc::channel();
        (tx, Arc::new(Mutex::new(rx)))
    }

    #[test]
    fn zero_workers_is_an_error() {
        assert!(matches!(Executor::new(0), Err(PoolError::NoWorkers)));
    }

    #[test]
    fn future_result_times_out() {
        let executor = Executor::new(1).unwrap();
        let (open, wait) = gate();
        let mut future = executor.submit(move || wait.lock().unwrap().recv().is_ok());
        assert!(matches!(
            future.result(Some(SHORT)),
            Err(PoolError::Timeout(_))
        ));
        assert!(!future.done());
        open.send(()).unwrap();
        assert!(future.result(None).unwrap());
    }

    #[test]
    fn panicking_tasks_return_errors_and_the_executor_survives() {
        let executor = Executor::new(1).unwrap();
        let mut bad = executor.submit(|| -> u8 { panic!("executor boom") });
        assert!(matches!(bad.result(None), Err(PoolError::Panicked(_))));
        // The single worker survived the panic.
        assert_eq!(executor.submit(|| 5).result(None).unwrap(), 5);
    }

    #[test]
    fn as_completed_yields_in_completion_order() {
        let executor = Executor::new(3).unwrap();
        let gates: Vec<_> = (0..3).map(|_| gate()).collect();
        let futures: Vec<Future<usize>> = gates
            .iter()
            .enumerate()
            .map(|(i, (_, wait))| {
                let wait = wait.clone();
                executor.submit(move || {
                    let _ = wait.lock().unwrap().recv();
                    i
                })
            })
            .collect();
        let mut completed = as_completed(futures);
        // Release in the order 2, 0, 1 and expect them back in that order.
        for i in [2, 0, 1] {
            gates[i].0.send(()).unwrap();
            assert_eq!(completed.next().unwrap().result(None).unwrap(), i);
        }
        assert!(completed.next().is_none());
    }

    #[test]
    fn executor_map_keeps_input_order() {
        let executor = Executor::new(3).unwrap();
        let got: Vec<u64> = executor
            .map(|x: u64| x * x, (0..50).collect())
            .map(Result::unwrap)
            .collect();
        assert_eq!(got, (0..50).map(|x| x * x).collect::<Vec<_>>());
    }

    #[test]
    fn dropping_the_executor_waits_for_submitted_work() {
        let ran = Arc::new(AtomicUsize::new(0));
        {
            let executor = Executor::new(2).unwrap();
            for _ in 0..10 {
                let ran = ran.clone();
                let _ = executor.submit(move || {
                    ran.fetch_add(1, Ordering::SeqCst);
                });
            }
        }
        assert_eq!(ran.load(Ordering::SeqCst), 10);
    }
}
