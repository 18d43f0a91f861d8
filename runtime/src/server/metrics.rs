//! Prometheus metrics of one server, in their own registry (several servers can live in one
//! process, e.g. in tests).

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
];

#[derive(Clone)]
pub(crate) struct Metrics {
    registry: Registry,
    /// Inference requests by model (`unknown` for names not served, to bound cardinality)
    /// and HTTP status.
    pub requests: IntCounterVec,
    /// Requests admitted and waiting for a worker.
    pub queue_depth: IntGauge,
    /// Workers running a request.
    pub busy_workers: IntGauge,
    /// Decode + preprocess + network time per request, by model.
    pub inference: HistogramVec,
    /// Time from admission to a worker picking the request up.
    pub queue_wait: Histogram,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "triage_serve_requests_total",
                "Inference requests by model and HTTP status.",
            ),
            &["model", "status"],
        )?;
        let queue_depth = IntGauge::new(
            "triage_serve_queue_depth",
            "Inference requests admitted and waiting for a worker.",
        )?;
        let busy_workers = IntGauge::new(
            "triage_serve_busy_workers",
            "Inference workers currently running a request.",
        )?;
        let inference = HistogramVec::new(
            HistogramOpts::new(
                "triage_serve_inference_seconds",
                "Decode, preprocessing and network time of one inference request.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["model"],
        )?;
        let queue_wait = Histogram::with_opts(
            HistogramOpts::new(
                "triage_serve_queue_wait_seconds",
                "Time an admitted request waited for a worker.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(queue_depth.clone()))?;
        registry.register(Box::new(busy_workers.clone()))?;
        registry.register(Box::new(inference.clone()))?;
        registry.register(Box::new(queue_wait.clone()))?;
        Ok(Metrics {
            registry,
            requests,
            queue_depth,
            busy_workers,
            inference,
            queue_wait,
        })
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }
}
