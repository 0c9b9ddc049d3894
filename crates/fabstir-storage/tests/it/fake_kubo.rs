//! A tiny fake of Kubo's RPC API: just enough HTTP/1.1 over a tokio `TcpListener` for
//! `add`, `cat`, `pin/add` and `block/stat`, with ways to misbehave.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use fabstir_storage::{Cid, cid_of};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the fake node behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Like a real node.
    Honest,
    /// `cat` answers with different bytes than were added.
    WrongBytes,
    /// `add` reports a CID that is not the content's.
    WrongCid,
    /// Every request fails with a 500 and a Kubo-style JSON error.
    Broken,
    /// Accepts connections and never answers.
    Silent,
}

/// What the fake node holds and what it was asked.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// Content by CID string.
    pub(crate) blocks: HashMap<String, Vec<u8>>,
    /// Pinned CID strings.
    pub(crate) pins: HashSet<String>,
    /// Request targets (path and query) in arrival order.
    pub(crate) requests: Vec<String>,
}

/// A running fake node; the accept loop ends when the test's runtime shuts down.
pub(crate) struct FakeKubo {
    pub(crate) addr: SocketAddr,
    pub(crate) state: Arc<Mutex<State>>,
}

impl FakeKubo {
    pub(crate) async fn start(mode: Mode) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let state = shared.clone();
                tokio::spawn(async move {
                    // A failed connection only fails the request the client is making.
                    let _ = serve(socket, mode, state).await;
                });
            }
        });
        Ok(Self { addr, state })
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(crate) fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("fake kubo state")
    }
}

/// Pseudo status: never answer, like a node searching the network for a missing block.
const SEARCHING: u16 = 0;

struct Request {
    target: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

async fn serve(mut socket: TcpStream, mode: Mode, state: Arc<Mutex<State>>) -> std::io::Result<()> {
    if mode == Mode::Silent {
        // Hold the connection open without answering until the client gives up.
        let mut sink = [0u8; 1024];
        while socket.read(&mut sink).await? > 0 {}
        return Ok(());
    }
    let request = read_request(&mut socket).await?;
    let (status, body) = respond(&request, mode, &state);
    if status == SEARCHING {
        let mut sink = [0u8; 1024];
        while socket.read(&mut sink).await? > 0 {}
        return Ok(());
    }
    let reason = if status == 200 {
        "OK"
    } else {
        "Internal Server Error"
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).await?;
    socket.write_all(&body).await?;
    socket.shutdown().await
}

fn respond(request: &Request, mode: Mode, state: &Mutex<State>) -> (u16, Vec<u8>) {
    let mut state = state.lock().expect("fake kubo state");
    state.requests.push(request.target.clone());
    if mode == Mode::Broken {
        return error("merkledag: datastore is on fire");
    }
    let (path, query) = request
        .target
        .split_once('?')
        .unwrap_or((&request.target, ""));
    let arg = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("arg="))
        .unwrap_or_default()
        .to_owned();
    match path {
        "/api/v0/add" => {
            let Some(content) = multipart_content(request) else {
                return error("file argument 'path' is required");
            };
            let cid = cid_of(&content).to_string();
            let reported = if mode == Mode::WrongCid {
                cid_of(b"something else").to_string()
            } else {
                cid.clone()
            };
            if query.contains("pin=true") {
                state.pins.insert(cid.clone());
            }
            let size = content.len();
            state.blocks.insert(cid.clone(), content);
            let answer =
                format!("{{\"Name\":\"{cid}\",\"Hash\":\"{reported}\",\"Size\":\"{size}\"}}\n");
            (200, answer.into_bytes())
        }
        "/api/v0/cat" => match state.blocks.get(&arg) {
            Some(content) if mode == Mode::WrongBytes => {
                let mut wrong = content.clone();
                wrong.push(b'!');
                (200, wrong)
            }
            Some(content) => (200, content.clone()),
            None if query.contains("offline=true") => error(&format!(
                "block was not found locally (offline): ipld: could not find {arg}"
            )),
            // Online, a real node searches the network for missing content until the client
            // gives up.
            None => (SEARCHING, Vec::new()),
        },
        "/api/v0/block/stat" => match state.blocks.get(&arg) {
            Some(content) => {
                let answer = format!("{{\"Key\":\"{arg}\",\"Size\":{}}}", content.len());
                (200, answer.into_bytes())
            }
            None => error(&format!(
                "block was not found locally (offline): ipld: could not find {arg}"
            )),
        },
        "/api/v0/pin/add" => {
            if state.blocks.contains_key(&arg) {
                state.pins.insert(arg.clone());
                (200, format!("{{\"Pins\":[\"{arg}\"]}}").into_bytes())
            } else {
                error(&format!("pin: ipld: could not find {arg}"))
            }
        }
        _ => (404, b"404 page not found".to_vec()),
    }
}

fn error(message: &str) -> (u16, Vec<u8>) {
    let body = format!("{{\"Message\":\"{message}\",\"Code\":0,\"Type\":\"error\"}}");
    (500, body.into_bytes())
}

async fn read_request(socket: &mut TcpStream) -> std::io::Result<Request> {
    let mut buffer = Vec::new();
    let head_end = loop {
        if let Some(end) = find(&buffer, b"\r\n\r\n") {
            break end;
        }
        let mut chunk = [0u8; 4096];
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let target = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .unwrap_or("/")
        .to_owned();
    let headers: HashMap<String, String> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut rest = buffer[head_end + 4..].to_vec();
    let chunked = headers
        .get("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        read_chunked(socket, rest).await?
    } else {
        let length: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while rest.len() < length {
            let mut chunk = [0u8; 4096];
            let n = socket.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            rest.extend_from_slice(&chunk[..n]);
        }
        rest.truncate(length);
        rest
    };
    Ok(Request {
        target,
        headers,
        body,
    })
}

async fn read_chunked(socket: &mut TcpStream, mut raw: Vec<u8>) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        // Parse as many complete chunks as the buffer holds.
        while let Some(line_end) = find(&raw, b"\r\n") {
            let size_line = String::from_utf8_lossy(&raw[..line_end]).into_owned();
            let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| std::io::Error::other("bad chunk size"))?;
            if size == 0 {
                return Ok(body);
            }
            let start = line_end + 2;
            if raw.len() < start + size + 2 {
                break;
            }
            body.extend_from_slice(&raw[start..start + size]);
            raw.drain(..start + size + 2);
        }
        let mut chunk = [0u8; 4096];
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        raw.extend_from_slice(&chunk[..n]);
    }
}

/// The content of the first part of a `multipart/form-data` body.
fn multipart_content(request: &Request) -> Option<Vec<u8>> {
    let content_type = request.headers.get("content-type")?;
    let boundary = content_type.split("boundary=").nth(1)?.trim_matches('"');
    let delimiter = format!("--{boundary}");
    let body = &request.body;
    let first = find(body, delimiter.as_bytes())?;
    let part = &body[first + delimiter.len()..];
    let headers_end = find(part, b"\r\n\r\n")?;
    let content = &part[headers_end + 4..];
    let end = find(content, format!("\r\n{delimiter}").as_bytes())?;
    Some(content[..end].to_vec())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// The CID strings the fake node holds, for assertions.
pub(crate) fn stored(kubo: &FakeKubo) -> Vec<Cid> {
    kubo.state()
        .blocks
        .keys()
        .filter_map(|key| Cid::try_from(key.as_str()).ok())
        .collect()
}
