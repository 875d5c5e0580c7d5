//! Per model version statistics in the shape of Triton's statistics extension
//! (`GET /v2/models[/NAME[/versions/N]]/stats`), which `tritonclient`'s
//! `get_inference_statistics` and `perf_analyzer` read. Counters only grow; a version that is
//! loaded again starts from zero, as Triton's do.

use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A count and the nanoseconds it took in all.
#[derive(Default)]
struct Tally {
    count: AtomicU64,
    ns: AtomicU64,
}

impl Tally {
    fn add(&self, took: Duration) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.ns.fetch_add(ns, Ordering::Relaxed);
    }

    fn json(&self) -> Value {
        json!({
            "count": self.count.load(Ordering::Relaxed),
            "ns": self.ns.load(Ordering::Relaxed),
        })
    }
}

/// One model version's statistics.
///
/// - `success` / `fail`: requests to this version that answered 200 / with an error once
///   the version was resolved (a refused input, a full queue), with their time in the
///   server from routing to the encoded answer;
/// - `queue`: time waiting for an inference worker;
/// - `compute_input`: decoding, checking and tokenising the inputs;
/// - `compute_infer`: running the model (one execution per plan run: per tensor request,
///   per text of a text request);
/// - `compute_output`: encoding the answer;
/// - `inference_count`: batch items inferred; `execution_count`: model executions.
#[derive(Default)]
pub struct Stats {
    inference_count: AtomicU64,
    execution_count: AtomicU64,
    /// Milliseconds since the Unix epoch of the last inference (0: none yet).
    last_inference_ms: AtomicU64,
    success: Tally,
    fail: Tally,
    queue: Tally,
    compute_input: Tally,
    compute_infer: Tally,
    compute_output: Tally,
}

impl Stats {
    /// A request ended, well or not, `took` after it reached its handler.
    pub fn request(&self, took: Duration, ok: bool) {
        match ok {
            true => self.success.add(took),
            false => self.fail.add(took),
        }
    }

    pub fn queued(&self, waited: Duration) {
        self.queue.add(waited);
    }

    pub fn input(&self, took: Duration) {
        self.compute_input.add(took);
    }

    pub fn output(&self, took: Duration) {
        self.compute_output.add(took);
    }

    /// One execution of the model over `items` batch items.
    pub fn executed(&self, items: usize, took: Duration) {
        self.compute_infer.add(took);
        self.execution_count.fetch_add(1, Ordering::Relaxed);
        self.inference_count
            .fetch_add(items as u64, Ordering::Relaxed);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.last_inference_ms.store(now, Ordering::Relaxed);
    }

    /// Triton's `model_stats` entry for this version.
    pub fn json(&self, name: &str, version: &str) -> Value {
        let zero = Tally::default().json();
        json!({
            "name": name,
            "version": version,
            "last_inference": self.last_inference_ms.load(Ordering::Relaxed),
            "inference_count": self.inference_count.load(Ordering::Relaxed),
            "execution_count": self.execution_count.load(Ordering::Relaxed),
            "inference_stats": {
                "success": self.success.json(),
                "fail": self.fail.json(),
                "queue": self.queue.json(),
                "compute_input": self.compute_input.json(),
                "compute_infer": self.compute_infer.json(),
                "compute_output": self.compute_output.json(),
                "cache_hit": zero,
                "cache_miss": zero,
            },
            "batch_stats": [],
            "memory_usage": [],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_times_add_up_in_tritons_shape() {
        let s = Stats::default();
        s.executed(3, Duration::from_micros(5));
        s.executed(1, Duration::from_micros(7));
        s.request(Duration::from_micros(20), true);
        s.request(Duration::from_micros(1), false);
        s.queued(Duration::from_nanos(9));
        let j = s.json("m", "2");
        assert_eq!(
            (j["name"].as_str(), j["version"].as_str()),
            (Some("m"), Some("2"))
        );
        assert_eq!(j["inference_count"], 4);
        assert_eq!(j["execution_count"], 2);
        assert!(j["last_inference"].as_u64().unwrap() > 1_700_000_000_000);
        let i = &j["inference_stats"];
        assert_eq!(i["compute_infer"], json!({ "count": 2, "ns": 12_000 }));
        assert_eq!(i["success"], json!({ "count": 1, "ns": 20_000 }));
        assert_eq!(i["fail"], json!({ "count": 1, "ns": 1_000 }));
        assert_eq!(i["queue"], json!({ "count": 1, "ns": 9 }));
        assert_eq!(i["compute_output"], json!({ "count": 0, "ns": 0 }));
    }
}
