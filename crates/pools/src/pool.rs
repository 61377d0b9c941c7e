//! The process/thread pools of the handout's Part I and II, in Rust.
//!
//! The handout shows two Python APIs; this module offers what its examples use:
//!
//! | Python | here | runs on |
//! |---|---|---|
//! | `multiprocessing.Pool(n)` | [`Pool::new`] | a rayon `ThreadPool` of `n` workers |
//! | `pool.apply(f, args)` | [`Pool::apply`] | rayon (`install`) |
//! | `pool.apply_async(f, args)` | [`Pool::apply_async`] → [`AsyncResult`] | rayon (`spawn`) |
//! | `result.get(timeout=1)` | [`AsyncResult::get`] → [`PoolError::Timeout`] | |
//! | `pool.map(f, xs)` | [`Pool::map`] | rayon (parallel iterator) |
//! | `pool.map_async(f, xs)` | [`Pool::map_async`] | rayon (`spawn` + parallel iterator) |
//! | `pool.imap_unordered(f, xs)` | [`Pool::imap_unordered`] | rayon (`spawn_fifo` per item) |
//! | `ThreadPoolExecutor(max_workers=n)` | [`Executor::new`] | `n` std threads and a job channel |
//! | `executor.submit(f, x)` | [`Executor::submit`] → [`Future`] | std threads |
//! | `executor.map(f, xs)` | [`Executor::map`] | std threads |
//! | `concurrent.futures.as_completed(fs)` | [`as_completed`] | |
//!
//! # Why rayon here and std threads there
//!
//! * **[`Pool`] uses rayon.** Part I is about *data parallelism*: CPU-bound work over a
//!   list. Rayon's work stealing splits a `map` adaptively, which is what Python's
//!   `chunksize` approximates by hand, and its workers never block. `apply` and
//!   `apply_async` go to the same workers, as they do in Python's `Pool`, so one pool of
//!   `n` workers serves every operation. `imap_unordered` spawns one job per item and
//!   hands results back through a channel as they finish.
//! * **[`Executor`] uses std threads.** Part II is about *task parallelism*: independent
//!   tasks that may block (a time server's requests, sleeps, queue calls). A task that
//!   blocks a rayon worker stalls the work stealing of everything else; a plain thread
//!   that blocks costs nothing but itself. std threads also give an exact thread count,
//!   strict FIFO start order and a real `join` on drop, like `ThreadPoolExecutor`.
//!
//! # Failures
//!
//! A task that panics comes back as [`PoolError::Panicked`] with the panic message; the
//! worker survives and the pool stays usable. Waiting with a timeout that expires gives
//! [`PoolError::Timeout`]; the task keeps running and its result can still be fetched.
//! Rust threads cannot be killed, so unlike Python's `Pool.__exit__` (which terminates
//! its workers), dropping a [`Pool`] or an [`Executor`] waits for the tasks already
//! submitted, then joins every worker.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use rayon::prelude::*;

/// Why a pool operation gave no value.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// A pool needs at least one worker.
    #[error("a pool needs at least one worker")]
    NoWorkers,
    /// The worker threads could not be started.
    #[error("cannot start the pool's workers: {0}")]
    Start(String),
    /// The result was not ready within the timeout. The task goes on running.
    #[error("no result within {0:?}")]
    Timeout(Duration),
    /// The task panicked; the message is the panic's payload when it is text.
    #[error("the task panicked: {0}")]
    Panicked(String),
    /// The result was already taken out by an earlier successful `get`/`result`.
    #[error("the result was already taken")]
    Taken,
    /// The task was dropped before it ran (its pool went away first).
    #[error("the task was dropped before it ran")]
    Cancelled,
}

// ---------------------------------------------------------------------------------------
// A one-shot result slot shared by AsyncResult (rayon) and Future (std threads).
// ---------------------------------------------------------------------------------------

enum State<T> {
    Pending,
    Done(Result<T, PoolError>),
    Taken,
}

struct Slot<T> {
    state: Mutex<State<T>>,
    done: Condvar,
    /// `as_completed` watchers: the index to send when this slot completes.
    watchers: Mutex<Vec<(mpsc::Sender<usize>, usize)>>,
}

impl<T> Slot<T> {
    fn new() -> Arc<Self> {
        Arc::new(Slot {
            state: Mutex::new(State::Pending),
            done: Condvar::new(),
            watchers: Mutex::new(Vec::new()),
        })
    }

    fn state(&self) -> MutexGuard<'_, State<T>> {
        // The lock is never held while user code runs, so poisoning cannot leave the
        // state half-written; recover the guard.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_done(&self) -> bool {
        !matches!(*self.state(), State::Pending)
    }

    /// Waits until the slot is done or `timeout` passes; returns the guard.
    fn wait(&self, timeout: Option<Duration>) -> (MutexGuard<'_, State<T>>, bool) {
        let mut state = self.state();
        let deadline = timeout.map(|t| Instant::now() + t);
        while matches!(*state, State::Pending) {
            match deadline {
                None => state = self.done.wait(state).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return (state, false);
                    }
                    state = self
                        .done
                        .wait_timeout(state, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
        (state, true)
    }

    fn take(&self, timeout: Option<Duration>) -> Result<T, PoolError> {
        let (mut state, done) = self.wait(timeout);
        if !done {
            return Err(PoolError::Timeout(timeout.unwrap_or_default()));
        }
        match std::mem::replace(&mut *state, State::Taken) {
            State::Done(result) => result,
            State::Taken => Err(PoolError::Taken),
            State::Pending => unreachable!("wait returned done on a pending slot"),
        }
    }

    /// Registers an `as_completed` watcher, or notifies it at once if already done.
    fn watch(&self, tx: mpsc::Sender<usize>, index: usize) {
        let state = self.state();
        if matches!(*state, State::Pending) {
            // Registered under the state lock, so `complete` cannot slip in between.
            self.watchers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((tx, index));
        } else {
            let _ = tx.send(index);
        }
    }
}

/// The writing end of a [`Slot`]: runs the task, stores its outcome, wakes waiters.
/// Dropped without completing (the job never ran), it stores [`PoolError::Cancelled`].
struct Promise<T>(Option<Arc<Slot<T>>>);

impl<T> Promise<T> {
    fn run<F: FnOnce() -> T>(mut self, f: F) {
        let result = catch_unwind(AssertUnwindSafe(f)).map_err(panic_error);
        self.complete(result);
    }

    fn complete(&mut self, result: Result<T, PoolError>) {
        let Some(slot) = self.0.take() else { return };
        let mut state = slot.state();
        *state = State::Done(result);
        let watchers =
            std::mem::take(&mut *slot.watchers.lock().unwrap_or_else(|e| e.into_inner()));
        drop(state);
        slot.done.notify_all();
        for (tx, index) in watchers {
            let _ = tx.send(index);
        }
    }
}

impl<T> Drop for Promise<T> {
    fn drop(&mut self) {
        self.complete(Err(PoolError::Cancelled));
    }
}

fn slot_pair<T>() -> (Promise<T>, Arc<Slot<T>>) {
    let slot = Slot::new();
    (Promise(Some(slot.clone())), slot)
}

/// Turns a panic payload into [`PoolError::Panicked`] with its message.
fn panic_error(payload: Box<dyn Any + Send>) -> PoolError {
    let message = if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a non-text panic payload)".to_string()
    };
    PoolError::Panicked(message)
}

// ---------------------------------------------------------------------------------------
// Pool: multiprocessing.Pool on rayon.
// ---------------------------------------------------------------------------------------

/// A pool of `n` workers for data parallelism, like Python's `multiprocessing.Pool`.
///
/// Dropping it waits for the jobs already spawned (`apply_async`, `map_async`,
/// `imap_unordered`) to finish, then for every worker to exit. Do not drop a pool from
/// inside one of its own tasks.
///
/// ```
/// use pools::Pool;
///
/// fn fibonacci(n: u64) -> (u64, u64) {
///     let (mut a, mut b) = (0u64, 1u64);
///     for _ in 0..n {
///         (a, b) = (b, a.wrapping_add(b));
///     }
///     (n, a)
/// }
///
/// let pool = Pool::new(4)?;
/// assert_eq!(pool.apply(|| fibonacci(10))?, (10, 55));
/// assert_eq!(pool.map(fibonacci, vec![1, 2, 3])?, vec![(1, 1), (2, 1), (3, 2)]);
/// # Ok::<(), pools::PoolError>(())
/// ```
pub struct Pool {
    /// `Some` until drop, which takes it out to shut it down.
    inner: Option<rayon::ThreadPool>,
    workers: usize,
    /// Count of workers that have left, signalled by rayon's exit handler.
    exited: Arc<(Mutex<usize>, Condvar)>,
}

impl Pool {
    /// Starts a pool of `workers` threads.
    pub fn new(workers: usize) -> Result<Self, PoolError> {
        if workers == 0 {
            return Err(PoolError::NoWorkers);
        }
        let exited = Arc::new((Mutex::new(0usize), Condvar::new()));
        let on_exit = exited.clone();
        let inner = rayon::ThreadPoolBuilder::new()
            .num_threads(workers)
            .thread_name(|i| format!("pool-worker-{i}"))
            .exit_handler(move |_| {
                let (count, cv) = &*on_exit;
                *count.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                cv.notify_all();
            })
            .build()
            .map_err(|e| PoolError::Start(e.to_string()))?;
        Ok(Pool {
            inner: Some(inner),
            workers,
            exited,
        })
    }

    /// How many workers the pool has.
    pub fn workers(&self) -> usize {
        self.workers
    }

    fn rayon(&self) -> &rayon::ThreadPool {
        self.inner
            .as_ref()
            .expect("the rayon pool is present until drop")
    }

    /// Runs `f` on a worker and waits for its value (`pool.apply`).
    ///
    /// ```
    /// let pool = pools::Pool::new(2)?;
    /// assert_eq!(pool.apply(|| 6 * 7)?, 42);
    /// assert!(pool.apply(|| -> u8 { panic!("boom") }).is_err());
    /// # Ok::<(), pools::PoolError>(())
    /// ```
    pub fn apply<T, F>(&self, f: F) -> Result<T, PoolError>
    where
        T: Send,
        F: FnOnce() -> T + Send,
    {
        self.rayon()
            .install(|| catch_unwind(AssertUnwindSafe(f)))
            .map_err(panic_error)
    }

    /// Starts `f` on a worker and returns at once (`pool.apply_async`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use pools::{Pool, PoolError};
    ///
    /// let pool = Pool::new(2)?;
    /// let mut quick = pool.apply_async(|| 6 * 7);
    /// assert_eq!(quick.get(None)?, 42);
    ///
    /// // The handout's "deliberate timeout": this task waits until we let it go.
    /// let (go, gate) = std::sync::mpsc::channel::<()>();
    /// let mut slow = pool.apply_async(move || gate.recv().is_ok());
    /// assert!(matches!(slow.get(Some(Duration::from_millis(10))), Err(PoolError::Timeout(_))));
    /// go.send(()).unwrap(); // the task went on running; its result is still there
    /// slow.wait();
    /// assert!(slow.ready());
    /// assert!(slow.get(None)?);
    /// # Ok::<(), PoolError>(())
    /// ```
    pub fn apply_async<T, F>(&self, f: F) -> AsyncResult<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (promise, slot) = slot_pair();
        self.rayon().spawn(move || promise.run(f));
        AsyncResult { slot }
    }

    /// Applies `f` to every item in parallel; the results keep the input order (`pool.map`).
    /// If any call panics, the whole map is [`PoolError::Panicked`].
    ///
    /// ```
    /// let pool = pools::Pool::new(2)?;
    /// let squares = pool.map(|x: u32| x * x, (1..=4).collect())?;
    /// assert_eq!(squares, vec![1, 4, 9, 16]);
    /// # Ok::<(), pools::PoolError>(())
    /// ```
    pub fn map<I, T, F>(&self, f: F, items: Vec<I>) -> Result<Vec<T>, PoolError>
    where
        I: Send,
        T: Send,
        F: Fn(I) -> T + Sync + Send,
    {
        self.apply(|| items.into_par_iter().map(f).collect())
    }

    /// Starts a [`Pool::map`] and returns at once (`pool.map_async`).
    ///
    /// ```
    /// let pool = pools::Pool::new(2)?;
    /// let mut pending = pool.map_async(|x: u32| x + 1, vec![1, 2, 3]);
    /// assert_eq!(pending.get(None)?, vec![2, 3, 4]);
    /// # Ok::<(), pools::PoolError>(())
    /// ```
    pub fn map_async<I, T, F>(&self, f: F, items: Vec<I>) -> AsyncResult<Vec<T>>
    where
        I: Send + 'static,
        T: Send + 'static,
        F: Fn(I) -> T + Sync + Send + 'static,
    {
        // Inside a spawned job, parallel iterators run on this same pool.
        self.apply_async(move || items.into_par_iter().map(f).collect())
    }

    /// Applies `f` to every item; yields each result as soon as it is ready, in completion
    /// order (`pool.imap_unordered`). A call that panics yields [`PoolError::Panicked`]
    /// and the others go on.
    ///
    /// ```
    /// let pool = pools::Pool::new(2)?;
    /// let mut got: Vec<u32> = pool
    ///     .imap_unordered(|x: u32| x * 10, vec![1, 2, 3])
    ///     .collect::<Result<_, _>>()?;
    /// got.sort();
    /// assert_eq!(got, vec![10, 20, 30]);
    /// # Ok::<(), pools::PoolError>(())
    /// ```
    pub fn imap_unordered<I, T, F>(&self, f: F, items: Vec<I>) -> Unordered<T>
    where
        I: Send + 'static,
        T: Send + 'static,
        F: Fn(I) -> T + Sync + Send + 'static,
    {
        let f = Arc::new(f);
        let (tx, rx) = mpsc::channel();
        for item in items {
            let (f, tx) = (f.clone(), tx.clone());
            self.rayon().spawn_fifo(move || {
                let result = catch_unwind(AssertUnwindSafe(|| f(item))).map_err(panic_error);
                let _ = tx.send(result);
            });
        }
        Unordered { rx }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Dropping rayon's pool only asks its threads to stop once the spawned jobs are
        // done; wait for each of them to leave, so that drop joins like Python's `with`.
        drop(self.inner.take());
        let (count, cv) = &*self.exited;
        let mut exited = count.lock().unwrap_or_else(|e| e.into_inner());
        while *exited < self.workers {
            exited = cv.wait(exited).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// The pending result of [`Pool::apply_async`] or [`Pool::map_async`], like Python's
/// `AsyncResult`.
pub struct AsyncResult<T> {
    slot: Arc<Slot<T>>,
}

impl<T> AsyncResult<T> {
    /// Waits for the value, at most `timeout` (`None`: as long as it takes), and takes it.
    ///
    /// On [`PoolError::Timeout`] the task goes on and `get` may be called again; after a
    /// value was taken, `get` gives [`PoolError::Taken`].
    pub fn get(&mut self, timeout: Option<Duration>) -> Result<T, PoolError> {
        self.slot.take(timeout)
    }

    /// Whether the task has finished (successfully or not).
    pub fn ready(&self) -> bool {
        self.slot.is_done()
    }

    /// Blocks until the task has finished.
    pub fn wait(&self) {
        let _ = self.slot.wait(None);
    }

    /// Blocks until the task has finished or `timeout` passes; tells which.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.slot.wait(Some(timeout)).1
    }
}

/// Results of [`Pool::imap_unordered`], in completion order; ends after the last one.
pub struct Unordered<T> {
    rx: mpsc::Receiver<Result<T, PoolError>>,
}

impl<T> Iterator for Unordered<T> {
    type Item = Result<T, PoolError>;

    fn next(&mut self) -> Option<Self::Item> {
        // Every job holds a sender; the channel closes when the last job is done.
        self.rx.recv().ok()
    }
}

// ---------------------------------------------------------------------------------------
// Executor: concurrent.futures.ThreadPoolExecutor on std threads.
// ---------------------------------------------------------------------------------------

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
    /// Same rules as [`AsyncResult::get`].
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
        assert!(matches!(Pool::new(0), Err(PoolError::NoWorkers)));
        assert!(matches!(Executor::new(0), Err(PoolError::NoWorkers)));
    }

    #[test]
    fn apply_async_get_times_out_then_still_delivers() {
        let pool = Pool::new(1).unwrap();
        let (open, wait) = gate();
        let mut result = pool.apply_async(move || {
            let _ = wait.lock().unwrap().recv();
            7
        });
        assert!(matches!(result.get(Some(SHORT)), Err(PoolError::Timeout(d)) if d == SHORT));
        assert!(!result.ready());
        open.send(()).unwrap();
        assert_eq!(result.get(None).unwrap(), 7);
        assert!(matches!(result.get(None), Err(PoolError::Taken)));
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
    fn panicking_tasks_return_errors_and_pools_survive() {
        let pool = Pool::new(2).unwrap();
        let err = pool.apply(|| -> u8 { panic!("apply boom") }).unwrap_err();
        assert!(
            matches!(err, PoolError::Panicked(ref m) if m == "apply boom"),
            "{err}"
        );
        let mut r = pool.apply_async(|| -> u8 { panic!("async {}", 1) });
        assert!(matches!(r.get(None), Err(PoolError::Panicked(ref m)) if m == "async 1"));
        let mapped = pool.map(
            |x: u32| if x == 3 { panic!("three") } else { x },
            (0..8).collect(),
        );
        assert!(matches!(mapped, Err(PoolError::Panicked(_))));
        let mut m = pool.map_async(|x: u32| if x == 1 { panic!("one") } else { x }, vec![0, 1]);
        assert!(matches!(m.get(None), Err(PoolError::Panicked(_))));
        // Still usable afterwards, with all its workers.
        assert_eq!(pool.map(|x: u32| x + 1, vec![1, 2]).unwrap(), vec![2, 3]);

        let executor = Executor::new(1).unwrap();
        let mut bad = executor.submit(|| -> u8 { panic!("executor boom") });
        assert!(matches!(bad.result(None), Err(PoolError::Panicked(_))));
        // The single worker survived the panic.
        assert_eq!(executor.submit(|| 5).result(None).unwrap(), 5);
    }

    #[test]
    fn imap_unordered_yields_everything_and_reports_panics() {
        let pool = Pool::new(2).unwrap();
        let mut ok = Vec::new();
        let mut failed = 0;
        for r in pool.imap_unordered(
            |x: u32| if x == 50 { panic!("fifty") } else { x },
            (0..100).collect(),
        ) {
            match r {
                Ok(x) => ok.push(x),
                Err(PoolError::Panicked(_)) => failed += 1,
                Err(e) => panic!("unexpected {e}"),
            }
        }
        ok.sort();
        let expected: Vec<u32> = (0..100).filter(|&x| x != 50).collect();
        assert_eq!(ok, expected);
        assert_eq!(failed, 1);
    }

    #[test]
    fn imap_unordered_yields_in_completion_order() {
        // Item 0 waits for a gate that opens only after item 1 has been received.
        let pool = Pool::new(2).unwrap();
        let (open, wait) = gate();
        let mut it = pool.imap_unordered(
            move |x: u32| {
                if x == 0 {
                    let _ = wait.lock().unwrap().recv();
                }
                x
            },
            vec![0, 1],
        );
        assert_eq!(it.next().unwrap().unwrap(), 1);
        open.send(()).unwrap();
        assert_eq!(it.next().unwrap().unwrap(), 0);
        assert!(it.next().is_none());
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
    fn dropping_pools_waits_for_submitted_work() {
        let ran = Arc::new(AtomicUsize::new(0));
        {
            let pool = Pool::new(2).unwrap();
            for _ in 0..10 {
                let ran = ran.clone();
                let _ = pool.apply_async(move || {
                    thread::sleep(Duration::from_millis(1));
                    ran.fetch_add(1, Ordering::SeqCst);
                });
            }
        }
        assert_eq!(ran.load(Ordering::SeqCst), 10);
        {
            let executor = Executor::new(2).unwrap();
            for _ in 0..10 {
                let ran = ran.clone();
                let _ = executor.submit(move || {
                    ran.fetch_add(1, Ordering::SeqCst);
                });
            }
        }
        assert_eq!(ran.load(Ordering::SeqCst), 20);
    }
}
