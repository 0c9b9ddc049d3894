//! [`DelayProxy`]: a TCP proxy on 127.0.0.1 that delivers every byte a fixed time after it
//! arrived, in each direction, so that a stream over loopback sees a real network's round
//! trip (the machine's kernel has no netem). Bytes keep their order and the bandwidth is not
//! limited: only latency is added.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Chunks in flight in one direction before the reader waits (bounded memory).
const IN_FLIGHT: usize = 1_024;

/// Forwards connections made to [`DelayProxy::addr`] to a target, `delay` late each way.
/// Dropping it stops accepting; connections in progress end when either side closes.
#[derive(Debug)]
pub struct DelayProxy {
    addr: SocketAddr,
    accept: JoinHandle<()>,
}

impl DelayProxy {
    /// Listens on an ephemeral port of 127.0.0.1 and forwards to `target`.
    pub async fn start(target: SocketAddr, delay: Duration) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let accept = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                tokio::spawn(async move {
                    if let Ok(outbound) = TcpStream::connect(target).await {
                        let _ = inbound.set_nodelay(true);
                        let _ = outbound.set_nodelay(true);
                        let (in_read, in_write) = inbound.into_split();
                        let (out_read, out_write) = outbound.into_split();
                        tokio::join!(
                            pipe(in_read, out_write, delay),
                            pipe(out_read, in_write, delay)
                        );
                    }
                });
            }
        });
        Ok(Self { addr, accept })
    }

    /// Where to connect instead of the target.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Copies `from` to `to`, each chunk written `delay` after it was read.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(IN_FLIGHT);
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = from.read(&mut buf).await {
            if n == 0
                || tx
                    .send((Instant::now() + delay, buf[..n].to_vec()))
                    .await
                    .is_err()
            {
                break;
            }
        }
    };
    let writer = async move {
        let mut due: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
        while let Some(chunk) = rx.recv().await {
            due.push_back(chunk);
            // Everything already read is due no earlier than this chunk: write in order.
            while let Some((at, bytes)) = due.pop_front() {
                tokio::time::sleep_until(at).await;
                if to.write_all(&bytes).await.is_err() {
                    return;
                }
                while let Ok(next) = rx.try_recv() {
                    due.push_back(next);
                }
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bytes_arrive_in_order_and_late() {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = echo.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = echo.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            loop {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                s.write_all(&buf[..n]).await.unwrap();
            }
        });
        let delay = Duration::from_millis(30);
        let proxy = DelayProxy::start(target, delay).await.unwrap();
        let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
        let sent = Instant::now();
        c.write_all(b"hello ").await.unwrap();
        c.write_all(b"world").await.unwrap();
        let mut got = vec![0u8; 11];
        c.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello world");
        // Through the proxy and back: two delays at least (a lower bound, not a timing target).
        assert!(sent.elapsed() >= delay * 2);
    }
}
