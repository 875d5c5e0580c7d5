//! The inference pool: a fixed set of worker threads and a fair queue in front of them.
//! Connection threads hand inference here and wait for the answer. Requests wait by time,
//! not by depth: one that has not started within `queue_timeout` is refused (503) and never
//! run. The queue is per caller: a free worker goes to the callers below their running cap
//! first, round robin, so one caller cannot hold every worker while others wait (alone, a
//! caller may use them all); and a caller may fill at most half of the queue's places, so
//! another always finds room.

use super::ModelError;
use crate::config::Limits;
use std::collections::{HashMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, mpsc};
use std::thread;
use std::time::{Duration, Instant};

/// A queued request: what to run, until when it may still start, and whether it has
/// (`STARTED`) or never will (`ABANDONED`: its caller stopped waiting).
struct Job {
    run: Box<dyn FnOnce() + Send>,
    deadline: Instant,
    state: Arc<AtomicU8>,
}

const QUEUED: u8 = 0;
const STARTED: u8 = 1;
const ABANDONED: u8 = 2;

/// One caller's queued requests and how many of its requests are running.
#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    running: usize,
}

/// The queue of every caller, and the order callers with queued jobs are served in.
#[derive(Default)]
struct Schedule {
    callers: HashMap<u64, Queue>,
    /// Callers with queued jobs, each once, in the order they are to be served.
    ready: VecDeque<u64>,
    queued: usize,
    stopping: bool,
}

impl Schedule {
    /// The next job: from the first ready caller below `cap` running, else (no one else is
    /// waiting below its cap) the first ready caller at all.
    fn next(&mut self, cap: usize) -> Option<(u64, Job)> {
        let at = self
            .ready
            .iter()
            .position(|c| self.callers.get(c).is_some_and(|q| q.running < cap))
            .or((!self.ready.is_empty()).then_some(0))?;
        let caller = self.ready.remove(at)?;
        let queue = self.callers.get_mut(&caller)?;
        let job = queue.jobs.pop_front()?;
        queue.running += 1;
        if !queue.jobs.is_empty() {
            self.ready.push_back(caller);
        }
        self.queued -= 1;
        Some((caller, job))
    }

    /// A job of `caller` has ended.
    fn done(&mut self, caller: u64) {
        if let Some(queue) = self.callers.get_mut(&caller) {
            queue.running -= 1;
            if queue.running == 0 && queue.jobs.is_empty() {
                self.callers.remove(&caller);
            }
        }
    }
}

/// Workers plus their queue. Dropping the pool lets the workers finish what is queued and
/// exit.
pub struct Pool {
    shared: Arc<Shared>,
}

struct Shared {
    schedule: Mutex<Schedule>,
    work: Condvar,
    /// Jobs waiting for a worker (for metrics, without the lock).
    depth: AtomicUsize,
    /// Most jobs queued in all, and per caller.
    queue: usize,
    per_caller_queue: usize,
    /// A caller's running jobs beyond which others with queued jobs go first.
    running_cap: usize,
    wait: Duration,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Schedule> {
        // A poisoned schedule only means a thread panicked while holding it (jobs run
        // outside it); its counts are intact.
        self.schedule.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.work.notify_all();
    }
}

impl Pool {
    /// The pool `[limits]` describes: `inference_threads` workers, `inference_queue`
    /// places (half of them at most for one caller), `max_in_flight_per_caller` running
    /// jobs per caller while others wait, and `queue_timeout`.
    pub fn with_limits(limits: &Limits) -> std::io::Result<Pool> {
        Pool::start(
            limits.inference_threads,
            limits.inference_queue,
            limits.max_in_flight_per_caller,
            limits.queue_timeout,
        )
    }

    /// `workers` threads (normally one per core) and room for `queue` waiting jobs, which
    /// wait at most a minute; no running cap per caller.
    pub fn new(workers: usize, queue: usize) -> std::io::Result<Pool> {
        Pool::start(workers, queue, usize::MAX, Duration::from_secs(60))
    }

    fn start(
        workers: usize,
        queue: usize,
        running_cap: usize,
        wait: Duration,
    ) -> std::io::Result<Pool> {
        let shared = Arc::new(Shared {
            schedule: Mutex::new(Schedule::default()),
            work: Condvar::new(),
            depth: AtomicUsize::new(0),
            queue: queue.max(1),
            per_caller_queue: (queue / 2).max(1),
            running_cap: running_cap.max(1),
            wait,
        });
        for _ in 0..workers.max(1) {
            let shared = shared.clone();
            thread::Builder::new()
                .name("inferd-infer".into())
                .spawn(move || work(&shared))?;
        }
        Ok(Pool { shared })
    }

    /// Jobs waiting for a worker.
    pub fn depth(&self) -> usize {
        self.shared.depth.load(Ordering::Relaxed)
    }

    /// Runs `f` on a worker for `caller` (a key for who asks) and waits for its result.
    /// `Busy` when the queue (or the caller's half of it) is full, or `f` has not started
    /// within the queue timeout (it then never runs); a panic in `f` is contained and
    /// reported as an inference error.
    pub fn run<T: Send + 'static>(
        &self,
        caller: u64,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ModelError> {
        let (done, result) = mpsc::sync_channel(1);
        let deadline = Instant::now() + self.shared.wait;
        let state = Arc::new(AtomicU8::new(QUEUED));
        let job = Job {
            run: Box::new(move || {
                let _ = done.send(catch_unwind(AssertUnwindSafe(f)));
            }),
            deadline,
            state: state.clone(),
        };
        {
            let mut schedule = self.shared.lock();
            let mine = schedule.callers.get(&caller).map_or(0, |q| q.jobs.len());
            if schedule.stopping
                || schedule.queued >= self.shared.queue
                || mine >= self.shared.per_caller_queue
            {
                return Err(ModelError::Busy);
            }
            let queue = schedule.callers.entry(caller).or_default();
            queue.jobs.push_back(job);
            if queue.jobs.len() == 1 {
                schedule.ready.push_back(caller);
            }
            schedule.queued += 1;
            self.shared.depth.store(schedule.queued, Ordering::Relaxed);
        }
        self.shared.work.notify_one();
        let left = deadline.saturating_duration_since(Instant::now());
        let answer = match result.recv_timeout(left) {
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // Not started in time: give it up, unless a worker took it just now (then
                // it runs to the end, and its answer is worth the wait).
                match state.compare_exchange(QUEUED, ABANDONED, Ordering::SeqCst, Ordering::SeqCst)
                {
                    Err(STARTED) => result.recv().ok(),
                    _ => return Err(ModelError::Busy),
                }
            }
            other => other.ok(),
        };
        match answer {
            Some(Ok(value)) => Ok(value),
            Some(Err(_)) => Err(ModelError::Inference("inference panicked".into())),
            None => Err(ModelError::Inference("inference worker ended".into())),
        }
    }
}

/// A worker: takes the next job the schedule gives, runs it unless its caller gave up or
/// its deadline passed, and exits once the pool is dropped and nothing is queued.
fn work(shared: &Shared) {
    loop {
        let (caller, job) = {
            let mut schedule = shared.lock();
            loop {
                if let Some(next) = schedule.next(shared.running_cap) {
                    shared.depth.store(schedule.queued, Ordering::Relaxed);
                    break next;
                }
                if schedule.stopping {
                    return;
                }
                schedule = match shared.work.wait(schedule) {
                    Ok(guard) => guard,
                    Err(p) => p.into_inner(),
                };
            }
        };
        let start = Instant::now() <= job.deadline
            && job
                .state
                .compare_exchange(QUEUED, STARTED, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok();
        if start {
            (job.run)();
        } else {
            job.state.store(ABANDONED, Ordering::SeqCst);
        }
        shared.lock().done(caller);
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

    fn pool(workers: usize, queue: usize, cap: usize, wait: Duration) -> Arc<Pool> {
        Arc::new(Pool::start(workers, queue, cap, wait).unwrap())
    }

    const MINUTE: Duration = Duration::from_secs(60);

    /// Waits (without sleeping) until `n` jobs are queued.
    fn queued(pool: &Pool, n: usize) {
        while pool.depth() != n {
            thread::yield_now();
        }
    }

    #[test]
    fn runs_jobs_and_contains_panics() {
        let pool = pool(2, 4, 4, MINUTE);
        assert_eq!(pool.run(1, || 2 + 2).unwrap(), 4);
        assert!(matches!(
            pool.run(1, || panic!("boom")),
            Err(ModelError::Inference(_))
        ));
        assert_eq!(pool.run(1, || 1).unwrap(), 1);
    }

    #[test]
    fn a_free_worker_goes_to_a_caller_below_its_cap_first() {
        // Alone, caller 1 may hold both workers (its cap is 1). Then caller 1 and caller 2
        // each queue a job, caller 1's first: the first worker freed takes caller 2's.
        let pool = pool(2, 8, 1, MINUTE);
        let (a, release_a) = hold(&pool, 1);
        let (b, release_b) = hold(&pool, 1);
        let order = Arc::new(Mutex::new(Vec::new()));
        let submit = |caller: u64| {
            let (p, order) = (pool.clone(), order.clone());
            thread::spawn(move || p.run(caller, move || order.lock().unwrap().push(caller)))
        };
        let x = submit(1);
        queued(&pool, 1);
        let y = submit(2);
        queued(&pool, 2);
        release_a.wait();
        a.join().unwrap().unwrap();
        y.join().unwrap().unwrap();
        release_b.wait();
        b.join().unwrap().unwrap();
        x.join().unwrap().unwrap();
        assert_eq!(*order.lock().unwrap(), [2, 1]);
    }

    #[test]
    fn a_job_not_started_by_the_queue_timeout_is_busy_and_never_runs() {
        let pool = pool(1, 4, 1, Duration::from_millis(50));
        let (first, release) = hold(&pool, 7);
        let ran = Arc::new(AtomicUsize::new(0));
        let counter = ran.clone();
        let started = Instant::now();
        let late = pool.run(7, move || counter.fetch_add(1, Ordering::SeqCst));
        assert!(matches!(late, Err(ModelError::Busy)));
        assert!(started.elapsed() >= Duration::from_millis(50));
        release.wait();
        first.join().unwrap().unwrap();
        // The worker skips the abandoned job; the next one runs.
        assert_eq!(pool.run(7, || 5).unwrap(), 5);
        assert_eq!(ran.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_caller_fills_at_most_half_the_queue_and_a_full_queue_is_busy() {
        // One worker held, two places: one per caller.
        let pool = pool(1, 2, 1, MINUTE);
        let (first, release) = hold(&pool, 1);
        let p = pool.clone();
        let one = thread::spawn(move || p.run(1, || 1));
        queued(&pool, 1);
        assert!(
            matches!(pool.run(1, || 0), Err(ModelError::Busy)),
            "caller 1's half is full"
        );
        let p = pool.clone();
        let two = thread::spawn(move || p.run(2, || 2));
        queued(&pool, 2);
        assert!(
            matches!(pool.run(3, || 0), Err(ModelError::Busy)),
            "the queue is full"
        );
        release.wait();
        first.join().unwrap().unwrap();
        assert_eq!(one.join().unwrap().unwrap(), 1);
        assert_eq!(two.join().unwrap().unwrap(), 2);
        assert_eq!(pool.depth(), 0);
    }
}
