//! The inference pool: a fixed set of worker threads behind a bounded queue. Connection
//! threads hand inference here and wait; a full queue is refused at once (503), so load
//! beyond the cores queues a little and then sheds, instead of piling up.

use super::ModelError;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread;

type Job = Box<dyn FnOnce() + Send>;

/// Workers plus their queue. Dropping the pool lets the workers finish and exit.
pub struct Pool {
    queue: SyncSender<Job>,
    depth: Arc<AtomicUsize>,
}

impl Pool {
    /// `workers` threads (normally one per core) and room for `queue` waiting jobs.
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
        Ok(Pool { queue: tx, depth })
    }

    /// Jobs waiting for a worker.
    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    /// Runs `f` on a worker and waits for its result. `Busy` when the queue is full; a panic
    /// in `f` is contained and reported as an inference error.
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ModelError> {
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

    #[test]
    fn runs_jobs_and_contains_panics() {
        let pool = Pool::new(2, 4).unwrap();
        assert_eq!(pool.run(|| 2 + 2).unwrap(), 4);
        assert!(matches!(
            pool.run(|| panic!("boom")),
            Err(ModelError::Inference(_))
        ));
        assert_eq!(pool.run(|| 1).unwrap(), 1);
    }

    #[test]
    fn full_queue_is_busy() {
        // One worker held on a barrier, one queue slot: of two more jobs, exactly one queues
        // and exactly one is refused at once.
        let pool = Arc::new(Pool::new(1, 1).unwrap());
        let held = Arc::new(Barrier::new(2));
        let release = Arc::new(Barrier::new(2));
        let (p, h, r) = (pool.clone(), held.clone(), release.clone());
        let first = thread::spawn(move || {
            p.run(move || {
                h.wait();
                r.wait();
            })
        });
        held.wait();
        let others: Vec<_> = (0..2)
            .map(|_| {
                let p = pool.clone();
                thread::spawn(move || p.run(|| ()))
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
