//! Prometheus metrics with the `prometheus-client` crate: one registry built at start, handles
//! cloned to where things happen (router, server, model repository), rendered as OpenMetrics
//! text by `GET /metrics`. Names carry one prefix and their unit.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Duration;

/// The media type of `render` (OpenMetrics 1.0 text, what Prometheus asks for first).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The media type of `render_classic` (the Prometheus text format 0.0.4).
pub const CLASSIC_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InferenceLabels {
    model: String,
    /// Padded sequence length for text models, `-` for tensor models.
    bucket: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabels {
    policy: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CapLabels {
    cap: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FileLabels {
    file: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelInfoLabels {
    model: String,
    version: String,
    task: String,
}

type Timings<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric inferd exports. Cloning shares the same series (handles are `Arc`s).
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    requests: Family<RequestLabels, Counter>,
    request_duration: Timings<RouteLabels>,
    inference_duration: Timings<InferenceLabels>,
    queue_depth: Gauge,
    inference_rejections: Counter,
    open_connections: Gauge,
    tls_handshake_failures: Counter,
    auth_failures: Family<ReasonLabels, Counter>,
    rate_limited: Family<PolicyLabels, Counter>,
    evictions: Family<CapLabels, Counter>,
    log_suppressed: Counter,
    queue_wait: Histogram,
    reload_failing: Family<FileLabels, Gauge>,
    reloads: Family<OutcomeLabels, Counter>,
    models: Family<ModelInfoLabels, Gauge>,
}

fn request_buckets() -> Histogram {
    // 100 µs .. ~3.3 s: cached health checks to a long text on a slow board.
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

fn inference_buckets() -> Histogram {
    // 50 µs .. ~1.6 s.
    Histogram::new(exponential_buckets(0.00005, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("inferd");
        let requests = Family::default();
        registry.register(
            "requests",
            "Requests answered, by route and status (route - : refused by the HTTP layer)",
            requests.clone(),
        );
        let request_duration = Timings::new_with_constructor(request_buckets as fn() -> _);
        registry.register(
            "request_duration_seconds",
            "Time from a complete request head to the answer, by route",
            request_duration.clone(),
        );
        let inference_duration = Timings::new_with_constructor(inference_buckets as fn() -> _);
        registry.register(
            "inference_duration_seconds",
            "Time a worker spent running a model, by model and length bucket",
            inference_duration.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "inference_queue_depth",
            "Inference jobs waiting for a worker",
            queue_depth.clone(),
        );
        let inference_rejections = Counter::default();
        registry.register(
            "inference_rejections",
            "Inference refused because the queue was full (503)",
            inference_rejections.clone(),
        );
        let open_connections = Gauge::default();
        registry.register(
            "open_connections",
            "Client connections open now",
            open_connections.clone(),
        );
        let tls_handshake_failures = Counter::default();
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes that failed or did not finish in time",
            tls_handshake_failures.clone(),
        );
        let auth_failures = Family::default();
        registry.register(
            "auth_failures",
            "Refused authentications and authorisations, by audit reason",
            auth_failures.clone(),
        );
        let rate_limited = Family::default();
        registry.register(
            "rate_limited",
            "Requests refused by a rate limit, by policy and reason (quota, failed_auth, \
             too_many_clients: the limiter tracks its most keys, cost_exceeds_burst)",
            rate_limited.clone(),
        );
        let evictions = Family::default();
        registry.register(
            "connections_evicted",
            "Connections waiting for a request head closed to make room for a new one, by \
             the cap that was reached (address, global)",
            evictions.clone(),
        );
        let log_suppressed = Counter::default();
        registry.register(
            "log_lines_suppressed",
            "Refusal, audit and anonymous access log lines not written: over [log] \
             refusal_lines_per_s",
            log_suppressed.clone(),
        );
        let queue_wait = Histogram::new(exponential_buckets(0.00001, 4.0, 12));
        registry.register(
            "inference_queue_wait_seconds",
            "Time an inference request waited for its caller's turn and a worker",
            queue_wait.clone(),
        );
        let reload_failing = Family::default();
        registry.register(
            "reload_failing",
            "1 while the last reload of this file failed and the previous contents are in \
             force (api_keys, revocations, clients, token_keys)",
            reload_failing.clone(),
        );
        let reloads = Family::default();
        registry.register(
            "reloads",
            "Reloads of configuration, keys, certificates and models, by outcome",
            reloads.clone(),
        );
        let models = Family::default();
        registry.register(
            "model",
            "Models being served (value 1), by name, version and task",
            models.clone(),
        );
        registry.register(
            "build",
            "The running build",
            Info::new(vec![
                ("version", env!("CARGO_PKG_VERSION")),
                ("commit", env!("BUILD_COMMIT")),
            ]),
        );
        Metrics {
            registry: Arc::new(registry),
            requests,
            request_duration,
            inference_duration,
            queue_depth,
            inference_rejections,
            open_connections,
            tls_handshake_failures,
            auth_failures,
            rate_limited,
            evictions,
            log_suppressed,
            queue_wait,
            reload_failing,
            reloads,
            models,
        }
    }

    /// The exposition, with `queue_depth` sampled now.
    pub fn render(&self, queue_depth: usize) -> String {
        self.queue_depth
            .set(i64::try_from(queue_depth).unwrap_or(i64::MAX));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The exposition in the Prometheus text format 0.0.4, for scrapers and parsers that do
    /// not take OpenMetrics: counter families are named with their `_total`, the info
    /// family becomes a gauge `_info`, and there is no `# EOF`.
    pub fn render_classic(&self, queue_depth: usize) -> String {
        classic(&self.render(queue_depth))
    }

    /// One answered request.
    pub fn request(&self, route: &'static str, status: u16, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels { route, status })
            .inc();
        self.request_duration
            .get_or_create(&RouteLabels { route })
            .observe(took.as_secs_f64());
    }

    /// One model run on a worker; `bucket` is the padded length for text models.
    pub fn inference(&self, model: &str, bucket: Option<usize>, took: Duration) {
        let labels = InferenceLabels {
            model: model.to_owned(),
            bucket: bucket.map_or_else(|| "-".to_owned(), |b| b.to_string()),
        };
        self.inference_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    pub fn inference_rejected(&self) {
        self.inference_rejections.inc();
    }

    pub fn connection_opened(&self) {
        self.open_connections.inc();
    }

    pub fn connection_closed(&self) {
        self.open_connections.dec();
    }

    pub fn tls_handshake_failed(&self) {
        self.tls_handshake_failures.inc();
    }

    /// A refused authentication, by its audit reason (`unknown_key`, `expired`, ...).
    pub fn auth_failure(&self, reason: &str) {
        self.auth_failures
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    pub fn rate_limited(&self, policy: &'static str, reason: &'static str) {
        self.rate_limited
            .get_or_create(&PolicyLabels { policy, reason })
            .inc();
    }

    /// A waiting connection closed to make room (`per_address`: at its address's cap).
    pub fn connection_evicted(&self, per_address: bool) {
        let cap = if per_address { "address" } else { "global" };
        self.evictions.get_or_create(&CapLabels { cap }).inc();
    }

    /// A log line over the budget was dropped.
    pub fn log_suppressed(&self) {
        self.log_suppressed.inc();
    }

    /// How long an inference request waited before a worker took it.
    pub fn queue_wait(&self, waited: Duration) {
        self.queue_wait.observe(waited.as_secs_f64());
    }

    /// Whether the last reload of `file` failed (the previous contents stay in force).
    pub fn reload_failing(&self, file: &'static str, failing: bool) {
        self.reload_failing
            .get_or_create(&FileLabels { file })
            .set(i64::from(failing));
    }

    pub fn reload(&self, ok: bool) {
        let outcome = if ok { "success" } else { "failure" };
        self.reloads.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// Replaces the served-models info series.
    pub fn models<'a>(&self, models: impl Iterator<Item = (&'a str, &'a str, &'a str)>) {
        self.models.clear();
        for (model, version, task) in models {
            self.models
                .get_or_create(&ModelInfoLabels {
                    model: model.into(),
                    version: version.into(),
                    task: task.into(),
                })
                .set(1);
        }
    }
}

/// OpenMetrics text from `prometheus-client` to the classic text format.
fn classic(openmetrics: &str) -> String {
    let mut renamed: std::collections::HashMap<&str, (String, &str)> = Default::default();
    for line in openmetrics.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let Some((name, kind)) = rest.split_once(' ') else {
            continue;
        };
        match kind {
            "counter" => renamed.insert(name, (format!("{name}_total"), "counter")),
            "info" => renamed.insert(name, (format!("{name}_info"), "gauge")),
            _ => None,
        };
    }
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta.and_then(|(p, rest)| {
            let (name, tail) = rest.split_once(' ')?;
            let (new_name, new_kind) = renamed.get(name)?;
            let tail = if p == "# TYPE " { *new_kind } else { tail };
            Some(format!("{p}{new_name} {tail}"))
        }) {
            Some(rewritten) => out.push_str(&rewritten),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_format_names_counter_families_with_total() {
        let m = Metrics::new();
        m.request("/predict", 200, Duration::from_millis(3));
        let text = m.render_classic(0);
        assert!(
            text.contains("# TYPE inferd_requests_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("# HELP inferd_requests_total Requests answered"),
            "{text}"
        );
        assert!(text.contains("# TYPE inferd_build_info gauge\n"), "{text}");
        assert!(text.contains("# TYPE inferd_request_duration_seconds histogram\n"));
        assert!(!text.contains("# EOF"));
    }

    #[test]
    fn renders_every_family_with_its_unit_and_eof() {
        let m = Metrics::new();
        m.request("/predict", 200, Duration::from_millis(3));
        m.inference("sentiment", Some(16), Duration::from_millis(30));
        m.auth_failure("unknown_key");
        m.rate_limited("default", "quota");
        m.reload(true);
        m.models([("digits", "1", "tensor")].into_iter());
        let text = m.render(2);
        for line in [
            "inferd_requests_total{route=\"/predict\",status=\"200\"} 1",
            "inferd_request_duration_seconds_count{route=\"/predict\"} 1",
            "inferd_inference_duration_seconds_bucket{le=\"0.0512\",model=\"sentiment\",bucket=\"16\"} 1",
            "inferd_inference_queue_depth 2",
            "inferd_auth_failures_total{reason=\"unknown_key\"} 1",
            "inferd_rate_limited_total{policy=\"default\",reason=\"quota\"} 1",
            "inferd_reloads_total{outcome=\"success\"} 1",
            "inferd_model{model=\"digits\",version=\"1\",task=\"tensor\"} 1",
            "inferd_build_info{version=\"",
            "# EOF",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }
}
