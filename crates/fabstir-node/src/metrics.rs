//! Counters the node exposes in Prometheus' text format on `/metrics`.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The node's counters and gauges.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Jobs claimed on chain.
    pub jobs_claimed: AtomicU64,
    /// Jobs whose result was submitted and settled.
    pub jobs_completed: AtomicU64,
    /// Jobs released back to the client after a failure.
    pub jobs_released: AtomicU64,
    /// Jobs refused (bad client, prompt mismatch, terms).
    pub jobs_refused: AtomicU64,
    /// Jobs running now.
    pub jobs_running: AtomicU64,
    /// Jobs waiting for a slot now.
    pub jobs_waiting: AtomicU64,
    /// Tokens generated and streamed.
    pub tokens_generated: AtomicU64,
    /// Milliseconds spent streaming (for throughput: tokens / seconds).
    pub streaming_millis: AtomicU64,
    /// Errors of any kind.
    pub errors: AtomicU64,
}

impl Metrics {
    /// Adds one to a counter.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The metrics in Prometheus' text exposition format.
    pub fn render(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::new();
        let _ = writeln!(out, "# HELP fabstir_jobs_total Jobs by outcome.");
        let _ = writeln!(out, "# TYPE fabstir_jobs_total counter");
        for (state, counter) in [
            ("claimed", &self.jobs_claimed),
            ("completed", &self.jobs_completed),
            ("released", &self.jobs_released),
            ("refused", &self.jobs_refused),
        ] {
            let _ = writeln!(
                out,
                "fabstir_jobs_total{{state=\"{state}\"}} {}",
                get(counter)
            );
        }
        let _ = writeln!(out, "# HELP fabstir_jobs Jobs in progress by state.");
        let _ = writeln!(out, "# TYPE fabstir_jobs gauge");
        let _ = writeln!(
            out,
            "fabstir_jobs{{state=\"running\"}} {}",
            get(&self.jobs_running)
        );
        let _ = writeln!(
            out,
            "fabstir_jobs{{state=\"waiting\"}} {}",
            get(&self.jobs_waiting)
        );
        let _ = writeln!(
            out,
            "# HELP fabstir_tokens_generated_total Tokens generated and streamed."
        );
        let _ = writeln!(out, "# TYPE fabstir_tokens_generated_total counter");
        let _ = writeln!(
            out,
            "fabstir_tokens_generated_total {}",
            get(&self.tokens_generated)
        );
        let _ = writeln!(
            out,
            "# HELP fabstir_streaming_seconds_total Time spent streaming tokens."
        );
        let _ = writeln!(out, "# TYPE fabstir_streaming_seconds_total counter");
        let millis = get(&self.streaming_millis);
        let _ = writeln!(
            out,
            "fabstir_streaming_seconds_total {}.{:03}",
            millis / 1000,
            millis % 1000
        );
        let _ = writeln!(out, "# HELP fabstir_errors_total Errors of any kind.");
        let _ = writeln!(out, "# TYPE fabstir_errors_total counter");
        let _ = writeln!(out, "fabstir_errors_total {}", get(&self.errors));
        out
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
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let Ok((mut stream, _)) = accepted else {
                continue;
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let n = stream.read(&mut buf).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]);
                let response = if request.starts_with("GET /metrics ") {
                    let body = metrics.render();
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    )
                } else {
                    "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                        .to_owned()
                };
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
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
        Metrics::inc(&metrics.jobs_claimed);
        metrics.tokens_generated.fetch_add(42, Ordering::Relaxed);
        metrics.streaming_millis.fetch_add(1500, Ordering::Relaxed);
        let shutdown = CancellationToken::new();
        let addr = serve("127.0.0.1:0".parse().unwrap(), metrics, shutdown.clone())
            .await
            .unwrap();
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut body = String::new();
        stream.read_to_string(&mut body).await.unwrap();
        assert!(body.starts_with("HTTP/1.1 200 OK"));
        assert!(body.contains("fabstir_jobs_total{state=\"claimed\"} 1"));
        assert!(body.contains("fabstir_tokens_generated_total 42"));
        assert!(body.contains("fabstir_streaming_seconds_total 1.500"));
        let mut other = tokio::net::TcpStream::connect(addr).await.unwrap();
        other.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut reply = String::new();
        other.read_to_string(&mut reply).await.unwrap();
        assert!(reply.starts_with("HTTP/1.1 404"));
        shutdown.cancel();
    }
}
