//! [`Pool`], Python's `multiprocessing.Pool` on a rayon thread pool, with its pending
//! results: [`AsyncResult`] (`apply_async`, `map_async`) and [`Unordered`] (`imap_unordered`).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rayon::prelude::*;

use crate::error::{panic_error, PoolError};
use crate::slot::{slot_pair, Slot};

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::thread;

    const SHORT: Duration = Duration::from_millis(20);

    /// A gate that holds tasks until the test opens it: ordering without timing.
    fn gate() -> (mpsc::Sender<()>, Arc<Mutex<mpsc::Receiver<()>>>) {
        let (tx, rx) = mpsc::channel();
        (tx, Arc::new(Mutex::new(rx)))
    }

    #[test]
    fn zero_workers_is_an_error() {
        assert!(matches!(Pool::new(0), Err(PoolError::NoWorkers)));
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
    fn panicking_tasks_return_errors_and_the_pool_survives() {
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
    fn dropping_the_pool_waits_for_submitted_work() {
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
    }
}
