//! The inference pool: a fixed set of worker threads and a fair queue in front of them.
//! Connection threads hand inference here and wait for the answer. Requests wait by time,
//! not by depth: one that has not started within `queue_timeout` is refused (503) and never
//! run. The queue is per caller: a free worker goes to the callers below their running cap
//! first, round robin, so one caller cannot hold every worker while others wait (alone, a
//! caller may use them all); and a caller may fill at most half of the queue's places, so
//! another always finds room.
//!
//! A job whose measured cost is tiny may run on the asking thread instead, when a worker's
//! share of the CPU is free and nobody is queued: handing a 20 µs inference to a worker and
//! back costs two thread wake-ups, more than the inference itself. Such jobs count against
//! the same number of workers, so at most `workers` inferences run at once either way.

use super::ModelError;
use crate::config::Limits;
use std::collections::{HashMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
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
    /// Jobs running, on workers or on their caller's thread.
    active: usize,
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
        self.active += 1;
        Some((caller, job))
    }

    /// A job of `caller` has ended.
    fn done(&mut self, caller: u64) {
        self.active -= 1;
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
    /// Jobs that may run at once (the worker threads).
    workers: usize,
    wait: Duration,
    /// Mean time a job ran, in ns (exponentially weighted): what `Retry-After` is
    /// estimated from.
    mean_run_ns: AtomicU64,
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
            workers: workers.max(1),
            wait,
            mean_run_ns: AtomicU64::new(0),
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

    /// Runs `f` for `caller` (a key for who asks) and waits for its result: on this thread
    /// when `how.here` and a worker's share is free with nobody queued, else on a worker.
    /// `Busy` when the queue (or the caller's half of it) is full, or `f` has not started
    /// within the queue timeout or `how.wait`, whichever is shorter (it then never runs); a
    /// panic in `f` is contained and reported as an inference error.
    pub fn run<T: Send + 'static>(
        &self,
        caller: u64,
        how: How,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ModelError> {
        if how.here && self.claim(caller) {
            let started = Instant::now();
            let ran = catch_unwind(AssertUnwindSafe(f));
            self.shared.ran(started.elapsed());
            let queued = {
                let mut schedule = self.shared.lock();
                schedule.done(caller);
                schedule.queued
            };
            if queued > 0 {
                self.shared.work.notify_one();
            }
            return ran.map_err(|_| ModelError::Inference("inference panicked".into()));
        }
        let wait = how
            .wait
            .map_or(self.shared.wait, |w| w.min(self.shared.wait));
        let (done, result) = mpsc::sync_channel(1);
        let deadline = Instant::now() + wait;
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
                return Err(self.shared.busy(schedule.queued));
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
                    _ => return Err(self.shared.busy(self.depth())),
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

/// How a job asks to run: on the asking thread if it may (its cost is tiny), and how long
/// it will wait at most for a worker (never longer than the pool's queue timeout).
#[derive(Debug, Clone, Copy, Default)]
pub struct How {
    pub here: bool,
    pub wait: Option<Duration>,
}

impl Pool {
    /// Takes a worker's share for `caller` on its own thread: only when nobody is queued
    /// (who waits goes first) and fewer than `workers` jobs run.
    fn claim(&self, caller: u64) -> bool {
        let mut schedule = self.shared.lock();
        if schedule.stopping || schedule.queued > 0 || schedule.active >= self.shared.workers {
            return false;
        }
        schedule.active += 1;
        schedule.callers.entry(caller).or_default().running += 1;
        true
    }
}

impl Shared {
    /// Records a job's run time in the running mean (weight 1/8 for the newest).
    fn ran(&self, took: Duration) {
        let took = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let old = self.mean_run_ns.load(Ordering::Relaxed);
        let new = match old {
            0 => took,
            _ => old - old / 8 + took / 8,
        };
        self.mean_run_ns.store(new, Ordering::Relaxed);
    }

    /// `Busy`, with when to retry: the time the `queued` jobs ahead and one round of the
    /// workers would take at the mean run time, in whole seconds, 1 to 60.
    fn busy(&self, queued: usize) -> ModelError {
        let mean = self.mean_run_ns.load(Ordering::Relaxed) as u128;
        let ahead = (queued + self.workers) as u128;
        let ns = mean * ahead / self.workers as u128;
        let secs = ns.div_ceil(1_000_000_000).clamp(1, 60);
        ModelError::Busy {
            retry_after: u32::try_from(secs).unwrap_or(60),
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
                // Jobs running on their callers' threads hold workers' shares too.
                if schedule.active < shared.workers
                    && let Some(next) = schedule.next(shared.running_cap)
                {
                    shared.depth.store(schedule.queued, Ordering::Relaxed);
                    break next;
                }
                if schedule.stopping && schedule.queued == 0 {
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
            let started = Instant::now();
            (job.run)();
            shared.ran(started.elapsed());
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
            p.run(caller, How::default(), move || {
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
        assert_eq!(pool.run(1, How::default(), || 2 + 2).unwrap(), 4);
        assert!(matches!(
            pool.run(1, How::default(), || panic!("boom")),
            Err(ModelError::Inference(_))
        ));
        assert_eq!(pool.run(1, How::default(), || 1).unwrap(), 1);
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
            thread::spawn(move || {
                p.run(caller, How::default(), move || {
                    order.lock().unwrap().push(caller)
                })
            })
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
        let late = pool.run(7, How::default(), move || {
            counter.fetch_add(1, Ordering::SeqCst)
        });
        assert!(matches!(late, Err(ModelError::Busy { .. })));
        assert!(started.elapsed() >= Duration::from_millis(50));
        release.wait();
        first.join().unwrap().unwrap();
        // The worker skips the abandoned job; the next one runs.
        assert_eq!(pool.run(7, How::default(), || 5).unwrap(), 5);
        assert_eq!(ran.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_caller_fills_at_most_half_the_queue_and_a_full_queue_is_busy() {
        // One worker held, two places: one per caller.
        let pool = pool(1, 2, 1, MINUTE);
        let (first, release) = hold(&pool, 1);
        let p = pool.clone();
        let one = thread::spawn(move || p.run(1, How::default(), || 1));
        queued(&pool, 1);
        assert!(
            matches!(
                pool.run(1, How::default(), || 0),
                Err(ModelError::Busy { .. })
            ),
            "caller 1's half is full"
        );
        let p = pool.clone();
        let two = thread::spawn(move || p.run(2, How::default(), || 2));
        queued(&pool, 2);
        assert!(
            matches!(
                pool.run(3, How::default(), || 0),
                Err(ModelError::Busy { .. })
            ),
            "the queue is full"
        );
        release.wait();
        first.join().unwrap().unwrap();
        assert_eq!(one.join().unwrap().unwrap(), 1);
        assert_eq!(two.join().unwrap().unwrap(), 2);
        assert_eq!(pool.depth(), 0);
    }

    const HERE: How = How {
        here: true,
        wait: None,
    };

    #[test]
    fn a_quick_job_runs_on_the_asking_thread_when_a_worker_share_is_free() {
        let pool = pool(1, 4, 1, MINUTE);
        let me = thread::current().id();
        assert_eq!(
            pool.run(1, HERE, move || thread::current().id()).unwrap(),
            me
        );
        assert!(matches!(
            pool.run(1, HERE, || panic!("boom")),
            Err(ModelError::Inference(_))
        ));
        // Its share is given back: the one worker still runs queued jobs.
        assert_ne!(
            pool.run(1, How::default(), move || thread::current().id())
                .unwrap(),
            me
        );
    }

    #[test]
    fn a_quick_job_queues_behind_running_and_waiting_jobs() {
        // The only worker's share is taken: a quick job goes to the queue and runs on the
        // worker once it is free, never on its own thread beside it.
        let pool = pool(1, 4, 1, MINUTE);
        let (first, release) = hold(&pool, 1);
        let p = pool.clone();
        let quick = thread::spawn(move || {
            let me = thread::current().id();
            p.run(2, HERE, move || thread::current().id() != me)
        });
        queued(&pool, 1);
        release.wait();
        first.join().unwrap().unwrap();
        assert!(quick.join().unwrap().unwrap(), "ran on a worker");
    }

    #[test]
    fn a_caller_may_ask_to_wait_less_than_the_queue_timeout() {
        let pool = pool(1, 4, 1, MINUTE);
        let (first, release) = hold(&pool, 1);
        let ran = Arc::new(AtomicUsize::new(0));
        let counter = ran.clone();
        let started = Instant::now();
        let asked = How {
            here: false,
            wait: Some(Duration::from_millis(30)),
        };
        let late = pool.run(2, asked, move || counter.fetch_add(1, Ordering::SeqCst));
        let waited = started.elapsed();
        assert!(matches!(late, Err(ModelError::Busy { retry_after: 1 })));
        assert!(waited >= Duration::from_millis(30) && waited < MINUTE / 2);
        release.wait();
        first.join().unwrap().unwrap();
        assert_eq!(pool.run(2, How::default(), || 5).unwrap(), 5);
        assert_eq!(ran.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn retry_after_is_estimated_from_the_queue_and_the_mean_run_time() {
        let pool = pool(2, 100, 1, MINUTE);
        pool.shared.ran(Duration::from_millis(500));
        // 10 queued + 2 running on 2 workers at 0.5 s each: 3 s.
        assert!(matches!(
            pool.shared.busy(10),
            ModelError::Busy { retry_after: 3 }
        ));
        assert!(matches!(
            pool.shared.busy(10_000),
            ModelError::Busy { retry_after: 60 }
        ));
    }
}
