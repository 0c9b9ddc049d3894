//! The gateway's own metrics (`GET /metrics`, Prometheus' text format): requests by endpoint
//! and status, tokens served, what was paid, and the time to the first token.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// The content type of [`Metrics::render`].
pub(crate) const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// The labels of a request: its endpoint and the HTTP status answered.
type RequestLabels = [(&'static str, String); 2];

/// The gateway's counters and histogram, and the registry that exposes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    /// Generated tokens delivered to callers (receipted and paid).
    pub tokens: Counter,
    /// Paid to hosts, plus fees, in the payment token's units.
    pub paid: Counter<f64, AtomicU64>,
    /// Seconds from a request's arrival to its first token.
    pub first_token: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "fabstir_gateway_requests",
            "Requests by endpoint and HTTP status",
            requests.clone(),
        );
        let tokens = Counter::default();
        registry.register(
            "fabstir_gateway_completion_tokens",
            "Generated tokens delivered, receipted and paid",
            tokens.clone(),
        );
        let paid = Counter::default();
        registry.register(
            "fabstir_gateway_paid",
            "Paid to hosts and in fees, in the payment token's units",
            paid.clone(),
        );
        // 1 ms to about 65 s.
        let first_token = Histogram::new(exponential_buckets(0.001, 2.0, 17));
        registry.register_with_unit(
            "fabstir_gateway_time_to_first_token",
            "Time from a request's arrival to its first token",
            Unit::Seconds,
            first_token.clone(),
        );
        Self {
            registry,
            requests,
            tokens,
            paid,
            first_token,
        }
    }
}

impl Metrics {
    /// Counts a request answered on `endpoint` with `status`.
    pub fn request(&self, endpoint: &'static str, status: u16) {
        self.requests
            .get_or_create(&[
                ("endpoint", endpoint.to_owned()),
                ("status", status.to_string()),
            ])
            .inc();
    }

    /// The metrics in Prometheus' text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_text::encode(&mut out, &self.registry).is_err() {
            tracing::warn!("encoding the metrics failed");
        }
        out
    }
}
