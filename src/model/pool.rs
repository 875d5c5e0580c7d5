//! The inference pool: a fixed set of worker threads behind a bounded queue. Connection
//! threads hand inference here and wait; a full queue is refused at once (503), so load
//! beyond the cores queues a little and then sheds, instead of piling up. Each caller may
//! have only so many requests in the pool at once: its next ones wait for one of its own
//! to finish (up to the queue timeout), so one caller cannot hold every worker and every
//! queue place while others wait.

use super::ModelError;
use crate::config::Limits;
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

type Job = Box<dyn FnOnce() + Send>;

/// Workers plus their queue. Dropping the pool lets the workers finish and exit.
pub struct Pool {
    queue: SyncSender<Job>,
    depth: Arc<AtomicUsize>,
    callers: InFlight,
    wait: Duration,
}

/// Requests each caller has in the pool, with a cap.
struct InFlight {
    cap: usize,
    callers: Mutex<HashMap<u64, Caller>>,
}

/// One caller's requests in the pool, and those waiting for one of them to finish (each
/// caller has its own condition variable: a place freed wakes one of that caller's
/// waiters, not every waiting thread).
struct Caller {
    running: usize,
    waiting: usize,
    freed: Arc<Condvar>,
}

/// One of a caller's places in the pool, given back when dropped.
struct Place<'a> {
    in_flight: &'a InFlight,
    caller: u64,
}

impl InFlight {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Caller>> {
        // A poisoned map only means a thread panicked while holding it; counts are intact.
        self.callers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until `caller` has fewer than `cap` requests in the pool, then takes a place;
    /// `None` once `deadline` passes first.
    fn enter(&self, caller: u64, deadline: Instant) -> Option<Place<'_>> {
        let mut callers = self.lock();
        loop {
            let entry = callers.entry(caller).or_insert_with(|| Caller {
                running: 0,
                waiting: 0,
                freed: Arc::new(Condvar::new()),
            });
            if entry.running < self.cap {
                entry.running += 1;
                return Some(Place {
                    in_flight: self,
                    caller,
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            entry.waiting += 1;
            let freed = entry.freed.clone();
            callers = match freed.wait_timeout(callers, left) {
                Ok((guard, _)) => guard,
                Err(p) => p.into_inner().0,
            };
            // The entry stays while it has waiters.
            if let Some(entry) = callers.get_mut(&caller) {
                entry.waiting -= 1;
            }
        }
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        let mut callers = self.in_flight.lock();
        if let Some(entry) = callers.get_mut(&self.caller) {
            entry.running -= 1;
            if entry.waiting > 0 {
                entry.freed.notify_one();
            } else if entry.running == 0 {
                callers.remove(&self.caller);
            }
        }
    }
}

impl Pool {
    /// The pool `[limits]` describes: `inference_threads` workers, `inference_queue`
    /// places, `max_in_flight_per_caller` of them per caller, waited for up to
    /// `queue_timeout`.
    pub fn with_limits(limits: &Limits) -> std::io::Result<Pool> {
        Pool::new(limits.inference_threads, limits.inference_queue)
            .map(|pool| pool.per_caller(limits.max_in_flight_per_caller, limits.queue_timeout))
    }

    /// `workers` threads (normally one per core) and room for `queue` waiting jobs; no cap
    /// per caller.
    pub fn new(workers: usize, queue: usize) -> std::io::Result<Pool> {
        let (tx, rx) = mpsc::sync_channel::<Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        let depth = Arc::new(AtomicUsize::new(0));
        for _ in 0..workers.max(1) {
            let (rx, depth) = (rx.clone(), depth.clone());
            thread::Builder::new()
                .name("inferd-infer".into())
                .spawn(move || work(&rx, &depth))?;
        }
        Ok(Pool {
            queue: tx,
            depth,
            callers: InFlight {
                cap: usize::MAX,
                callers: Mutex::new(HashMap::new()),
            },
            wait: Duration::ZERO,
        })
    }

    /// Caps each caller at `cap` requests in the pool; more wait up to `wait` for one of
    /// their own to finish.
    pub fn per_caller(mut self, cap: usize, wait: Duration) -> Pool {
        self.callers.cap = cap.max(1);
        self.wait = wait;
        self
    }

    /// Jobs waiting for a worker.
    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    /// Runs `f` on a worker for `caller` (a key for who asks) and waits for its result.
    /// `Busy` when the caller's places stay taken past the queue timeout or the queue is
    /// full; a panic in `f` is contained and reported as an inference error.
    pub fn run<T: Send + 'static>(
        &self,
        caller: u64,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ModelError> {
        let _place = self
            .callers
            .enter(caller, Instant::now() + self.wait)
            .ok_or(ModelError::Busy)?;
        let (done, result) = mpsc::sync_channel(1);
        let job: Job = Box::new(move || {
            let _ = done.send(catch_unwind(AssertUnwindSafe(f)));
        });
        self.depth.fetch_add(1, Ordering::Relaxed);
        match self.queue.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.depth.fetch_sub(1, Ordering::Relaxed);
                return Err(ModelError::Busy);
            }
            Err(TrySendError::Disconnected(_)) => {
                self.depth.fetch_sub(1, Ordering::Relaxed);
                return Err(ModelError::Inference("inference workers are gone".into()));
            }
        }
        match result.recv() {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(_)) => Err(ModelError::Inference("inference panicked".into())),
            Err(_) => Err(ModelError::Inference("inference worker ended".into())),
        }
    }
}

fn work(rx: &Mutex<Receiver<Job>>, depth: &AtomicUsize) {
    loop {
        // Hold the lock only to take one job. A poisoned lock cannot happen (jobs run
        // outside it), but recover rather than die if it does.
        let job = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
        match job {
            Ok(job) => {
                depth.fetch_sub(1, Ordering::Relaxed);
                job();
            }
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;

    /// Starts a job for `caller` that holds its worker until the returned barrier is
    /// passed; returns once the job is running.
    fn hold(
        pool: &Arc<Pool>,
        caller: u64,
    ) -> (thread::JoinHandle<Result<(), ModelError>>, Arc<Barrier>) {
        let (held, release) = (Arc::new(Barrier::new(2)), Arc::new(Barrier::new(2)));
        let (p, h, r) = (pool.clone(), held.clone(), release.clone());
        let job = thread::spawn(move || {
            p.run(caller, move || {
                h.wait();
                r.wait();
            })
        });
        held.wait();
        (job, release)
    }

    fn pool(workers: usize, queue: usize, per_caller: usize) -> Pool {
        Pool::new(workers, queue)
            .unwrap()
            .per_caller(per_caller, Duration::from_secs(60))
    }

    #[test]
    fn runs_jobs_and_contains_panics() {
        let pool = pool(2, 4, 4);
        assert_eq!(pool.run(1, || 2 + 2).unwrap(), 4);
        assert!(matches!(
            pool.run(1, || panic!("boom")),
            Err(ModelError::Inference(_))
        ));
        assert_eq!(pool.run(1, || 1).unwrap(), 1);
    }

    #[test]
    fn a_caller_at_its_cap_waits_while_another_caller_goes_ahead() {
        // Two workers, one place per caller: caller 1 holds a worker; its second request
        // waits for its own place, while caller 2 runs on the free worker at once.
        let pool = Arc::new(pool(2, 4, 1));
        let (first, release) = hold(&pool, 1);
        let p = pool.clone();
        let second = thread::spawn(move || p.run(1, || "second of caller 1"));
        assert_eq!(pool.run(2, || "caller 2").unwrap(), "caller 2");
        assert!(!second.is_finished(), "caller 1's second request waits");
        release.wait();
        assert!(first.join().unwrap().is_ok());
        assert_eq!(second.join().unwrap().unwrap(), "second of caller 1");
    }

    #[test]
    fn a_caller_waiting_past_the_queue_timeout_is_busy() {
        let pool = Arc::new(
            Pool::new(2, 4)
                .unwrap()
                .per_caller(1, Duration::from_millis(50)),
        );
        let (first, release) = hold(&pool, 7);
        let started = Instant::now();
        assert!(matches!(pool.run(7, || ()), Err(ModelError::Busy)));
        assert!(started.elapsed() >= Duration::from_millis(50));
        release.wait();
        assert!(first.join().unwrap().is_ok());
        // Its place is free again.
        assert!(pool.run(7, || ()).is_ok());
    }

    #[test]
    fn full_queue_is_busy() {
        // One worker held on a barrier, one queue slot: of two more jobs, exactly one queues
        // and exactly one is refused at once.
        let pool = Arc::new(pool(1, 1, 8));
        let (first, release) = hold(&pool, 1);
        let others: Vec<_> = (0..2)
            .map(|_| {
                let p = pool.clone();
                thread::spawn(move || p.run(1, || ()))
            })
            .collect();
        // Wait until both have tried: one sits in the queue, one was refused.
        while pool.depth() != 1 || others.iter().filter(|t| t.is_finished()).count() != 1 {
            thread::yield_now();
        }
        release.wait();
        assert!(first.join().unwrap().is_ok());
        let results: Vec<_> = others.into_iter().map(|t| t.join().unwrap()).collect();
        let busy = results
            .iter()
            .filter(|r| matches!(r, Err(ModelError::Busy)))
            .count();
        assert_eq!((busy, results.len() - busy), (1, 1));
    }
}
