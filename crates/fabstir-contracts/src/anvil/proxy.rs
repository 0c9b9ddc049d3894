//! A counting JSON-RPC proxy on 127.0.0.1: forwards each HTTP request to a chain (anvil) and
//! records its JSON-RPC method, so tests and benchmarks can count the calls a component
//! makes. It must be started inside a tokio runtime and stops when dropped.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A running proxy.
#[derive(Debug)]
pub struct RpcProxy {
    /// The proxy's URL, to use as the RPC URL of the component under test.
    pub url: String,
    available: Arc<std::sync::atomic::AtomicBool>,
    methods: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RpcProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RpcProxy {
    /// Starts a proxy to `upstream` (an `http://127.0.0.1:port` URL).
    pub async fn start(upstream: String) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let methods = Arc::new(Mutex::new(Vec::new()));
        let log = methods.clone();
        let available = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let up = available.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if up.load(std::sync::atomic::Ordering::SeqCst) {
                    tokio::spawn(serve(client, upstream.clone(), log.clone()));
                } else {
                    // An endpoint that is down: the connection closes with no answer.
                    drop(client);
                }
            }
        });
        Ok(Self {
            url,
            available,
            methods,
            task,
        })
    }

    /// Makes the endpoint unavailable (connections close unanswered) or available again.
    pub fn set_available(&self, available: bool) {
        self.available
            .store(available, std::sync::atomic::Ordering::SeqCst);
    }

    /// How many calls of `method` went through so far.
    pub fn count(&self, method: &str) -> usize {
        self.methods
            .lock()
            .map(|m| m.iter().filter(|m| *m == method).count())
            .unwrap_or_default()
    }

    /// How many calls of any method went through so far.
    pub fn total(&self) -> usize {
        self.methods.lock().map(|m| m.len()).unwrap_or_default()
    }
}

/// Serves one client connection: one request, forwarded with `connection: close`, answered,
/// then the connection closes (the HTTP client reconnects for the next request).
async fn serve(mut client: TcpStream, upstream: String, log: Arc<Mutex<Vec<String>>>) {
    let Some((head, body)) = read_request(&mut client).await else {
        return;
    };
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(&body) {
        let calls = match json {
            serde_json::Value::Array(items) => items,
            one => vec![one],
        };
        let Ok(mut log) = log.lock() else { return };
        for call in calls {
            if let Some(method) = call["method"].as_str() {
                log.push(method.to_owned());
            }
        }
    }
    let head: String = head
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    let upstream_addr = upstream.trim_start_matches("http://").to_owned();
    let Ok(mut server) = TcpStream::connect(upstream_addr).await else {
        return;
    };
    let request = [head.as_bytes(), b"connection: close\r\n\r\n", &body].concat();
    if server.write_all(&request).await.is_err() {
        return;
    }
    let mut response = Vec::new();
    let _ = server.read_to_end(&mut response).await;
    let _ = client.write_all(&response).await;
    let _ = client.shutdown().await;
}

async fn read_request(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = buf[end + 4..].to_vec();
    while body.len() < len {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((head, body))
}
