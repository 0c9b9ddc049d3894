//! The node's counters and gauges, registered with `prometheus-client` and served over HTTP
//! (hyper) on `/metrics` in Prometheus' text format (version 0.0.4).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A gauge of things counted (jobs), never negative.
pub type CountGauge = Gauge<u64, AtomicU64>;

/// The `state` label of the job metrics.
type State = [(&'static str, &'static str); 1];

/// The node's counters and gauges, and the registry that exposes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Jobs claimed on chain.
    pub jobs_claimed: Counter,
    /// Jobs whose result was submitted and settled.
    pub jobs_completed: Counter,
    /// Jobs released back to the client after a failure.
    pub jobs_released: Counter,
    /// Jobs refused (bad client, prompt mismatch, terms).
    pub jobs_refused: Counter,
    /// Jobs running now.
    pub jobs_running: CountGauge,
    /// Jobs waiting for a slot now.
    pub jobs_waiting: CountGauge,
    /// Tokens generated and streamed.
    pub tokens_generated: Counter,
    /// Seconds spent streaming (for throughput: tokens / seconds).
    pub streaming_seconds: Counter<f64, AtomicU64>,
    /// Errors of any kind.
    pub errors: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        // `fabstir_jobs_total{state=..}`: one series per outcome, each there from the start.
        let outcomes = Family::<State, Counter>::default();
        let outcome = |state| outcomes.get_or_create_owned(&[("state", state)]);
        let (jobs_claimed, jobs_completed, jobs_released, jobs_refused) = (
            outcome("claimed"),
            outcome("completed"),
            outcome("released"),
            outcome("refused"),
        );
        registry.register("fabstir_jobs", "Jobs by outcome", outcomes);
        let states = Family::<State, CountGauge>::default();
        let state = |state| states.get_or_create_owned(&[("state", state)]);
        let (jobs_running, jobs_waiting) = (state("running"), state("waiting"));
        registry.register("fabstir_jobs", "Jobs in progress by state", states);
        let tokens_generated = Counter::default();
        registry.register(
            "fabstir_tokens_generated",
            "Tokens generated and streamed",
            tokens_generated.clone(),
        );
        let streaming_seconds = Counter::default();
        registry.register_with_unit(
            "fabstir_streaming",
            "Time spent streaming tokens",
            Unit::Seconds,
            streaming_seconds.clone(),
        );
        let errors = Counter::default();
        registry.register("fabstir_errors", "Errors of any kind", errors.clone());
        Self {
            registry,
            jobs_claimed,
            jobs_completed,
            jobs_released,
            jobs_refused,
            jobs_running,
            jobs_waiting,
            tokens_generated,
            streaming_seconds,
            errors,
        }
    }
}

impl Metrics {
    /// The metrics in Prometheus' text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_text::encode(&mut out, &self.registry).is_err() {
            tracing::warn!("encoding the metrics failed");
        }
        out
    }

    /// The HTTP answer to `request`: the metrics for `GET /metrics`, 404 for anything else.
    fn respond(&self, request: &Request<Incoming>) -> Response<Full<Bytes>> {
        if request.method() != Method::GET || request.uri().path() != "/metrics" {
            let mut response = Response::new(Full::default());
            *response.status_mut() = StatusCode::NOT_FOUND;
            return response;
        }
        let mut response = Response::new(Full::from(self.render()));
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static(prometheus_text::CONTENT_TYPE),
        );
        response
    }
}

/// Serves `GET /metrics` on `addr` until `shutdown`; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let mut http = http1::Builder::new();
    // One request per connection, as a scraper makes: the answer says `connection: close`.
    http.keep_alive(false);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let Ok((stream, _)) = accepted else {
                continue;
            };
            let metrics = metrics.clone();
            let service = service_fn(move |request| {
                std::future::ready(Ok::<_, Infallible>(metrics.respond(&request)))
            });
            let connection = http.serve_connection(TokioIo::new(stream), service);
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "metrics connection");
                }
            });
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_prometheus_text() {
        let metrics = Arc::new(Metrics::default());
        metrics.jobs_claimed.inc();
        metrics.tokens_generated.inc_by(42);
        metrics.streaming_seconds.inc_by(1.5);
        let shutdown = CancellationToken::new();
        let addr = serve("127.0.0.1:0".parse().unwrap(), metrics, shutdown.clone())
            .await
            .unwrap();
        let scraped = reqwest::get(format!("http://{addr}/metrics"))
            .await
            .unwrap();
        assert_eq!(scraped.status(), reqwest::StatusCode::OK);
        assert_eq!(
            scraped.headers()[reqwest::header::CONNECTION],
            "close",
            "one request per connection"
        );
        let body = scraped.text().await.unwrap();
        assert!(
            body.contains("# TYPE fabstir_jobs_total counter\n"),
            "{body}"
        );
        assert!(body.contains("fabstir_jobs_total{state=\"claimed\"} 1\n"));
        assert!(body.contains("fabstir_jobs_total{state=\"refused\"} 0\n"));
        assert!(body.contains("fabstir_jobs{state=\"running\"} 0\n"));
        assert!(body.contains("fabstir_tokens_generated_total 42\n"));
        assert!(body.contains("fabstir_streaming_seconds_total 1.5\n"));
        let other = reqwest::get(format!("http://{addr}/")).await.unwrap();
        assert_eq!(other.status(), reqwest::StatusCode::NOT_FOUND);
        shutdown.cancel();
    }
}
