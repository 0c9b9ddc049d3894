//! A result store backed by a Kubo (go-ipfs) node, spoken to through its RPC API.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use cid::Cid;
use reqwest::{Client, Url};
use serde::Deserialize;

use crate::store::check_size;
use crate::{DEFAULT_MAX_SIZE, Error, Result, ResultStore, check_cid, cid_of, verify};

/// Kubo's default chunk size; content above it needs an explicit chunker to stay one block.
const KUBO_DEFAULT_CHUNK: usize = 256 * 1024;

/// Largest JSON answer read from the node (add, pin and stat answers are tiny).
const MAX_JSON_ANSWER: usize = 64 * 1024;

/// Largest part of an error body kept in an error message.
const MAX_ERROR_MESSAGE: usize = 512;

/// Configuration of an [`IpfsStore`].
#[derive(Debug, Clone)]
pub struct IpfsConfig {
    /// Base URL of the Kubo RPC API, without `/api/v0` (default `http://127.0.0.1:5001`).
    pub url: String,
    /// Time allowed to establish a connection (default 5 s).
    pub connect_timeout: Duration,
    /// Time allowed for a whole request, body included (default 60 s).
    pub request_timeout: Duration,
    /// Largest result, in bytes, accepted and returned (default [`DEFAULT_MAX_SIZE`]).
    pub max_size: usize,
    /// Whether added content is pinned so Kubo's garbage collector keeps it (default true).
    pub pin: bool,
    /// Whether reads only use the node's local blocks instead of searching the IPFS network
    /// (default false). A host reading its own results can set this to fail fast.
    pub offline: bool,
}

impl Default for IpfsConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:5001".to_owned(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(60),
            max_size: DEFAULT_MAX_SIZE,
            pin: true,
            offline: false,
        }
    }
}

/// A [`ResultStore`] that keeps results in a Kubo node through its RPC API
/// (`/api/v0/add`, `/api/v0/cat`, `/api/v0/pin/add`, `/api/v0/block/stat`).
///
/// Content is added as CIDv1 raw leaves in a single chunk, so the node's CID is the raw
/// sha2-256 CID this crate computes; the CID the node reports is checked against the local
/// one, and everything read back with `cat` is verified. Kubo refuses blocks above 1 MiB, so
/// larger results cannot be stored as one raw block and are rejected by the node.
#[derive(Debug, Clone)]
pub struct IpfsStore {
    client: Client,
    api: Url,
    config: IpfsConfig,
}

/// The part of Kubo's `add` answer we use.
#[derive(Debug, Deserialize)]
struct AddAnswer {
    #[serde(rename = "Hash")]
    hash: String,
}

/// Kubo's error answer.
#[derive(Debug, Deserialize)]
struct ErrorAnswer {
    #[serde(rename = "Message")]
    message: String,
}

impl IpfsStore {
    /// Creates a client for the Kubo node at `config.url`. No request is made until used.
    pub fn new(config: IpfsConfig) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidUrl {
            url: config.url.clone(),
            reason,
        };
        let mut base = Url::parse(&config.url).map_err(|e| invalid(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid(format!(
                "scheme {:?} is not http(s)",
                base.scheme()
            )));
        }
        if base.cannot_be_a_base() {
            return Err(invalid("not a base URL".to_owned()));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let api = base.join("api/v0/").map_err(|e| invalid(e.to_string()))?;
        let mut builder = Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout);
        if is_loopback(&base) {
            // A node on this machine is never reached through an HTTP proxy from the
            // environment.
            builder = builder.no_proxy();
        }
        let client = builder.build().map_err(|source| Error::Http {
            url: config.url.clone(),
            source,
        })?;
        Ok(Self {
            client,
            api,
            config,
        })
    }

    /// The configuration this store was created with.
    pub fn config(&self) -> &IpfsConfig {
        &self.config
    }

    /// Pins `cid` on the node (`/api/v0/pin/add`) so it survives garbage collection.
    pub async fn pin(&self, cid: &Cid) -> Result<()> {
        check_cid(cid)?;
        let arg = cid.to_string();
        let url = self.endpoint("pin/add", &[("arg", &arg)])?;
        let answer = self.post(url.clone(), None).await?;
        read_limited(answer, MAX_JSON_ANSWER, &url).await?;
        Ok(())
    }

    fn endpoint(&self, command: &str, query: &[(&str, &str)]) -> Result<Url> {
        let mut url = self.api.join(command).map_err(|e| Error::InvalidUrl {
            url: self.config.url.clone(),
            reason: e.to_string(),
        })?;
        url.query_pairs_mut().extend_pairs(query);
        Ok(url)
    }

    /// Sends a POST (the only method Kubo's RPC accepts) and turns error statuses into
    /// errors carrying Kubo's message.
    async fn post(
        &self,
        url: Url,
        form: Option<reqwest::multipart::Form>,
    ) -> Result<reqwest::Response> {
        let mut request = self.client.post(url.clone());
        if let Some(form) = form {
            request = request.multipart(form);
        }
        let response = request.send().await.map_err(|source| Error::Http {
            url: url.to_string(),
            source,
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = read_limited(response, MAX_JSON_ANSWER, &url)
            .await
            .unwrap_or_default();
        let message = match serde_json::from_slice::<ErrorAnswer>(&body) {
            Ok(answer) => answer.message,
            Err(_) => String::from_utf8_lossy(&body).into_owned(),
        };
        Err(Error::IpfsStatus {
            url: url.to_string(),
            status: status.as_u16(),
            message: truncate(message),
        })
    }
}

#[async_trait]
impl ResultStore for IpfsStore {
    async fn put(&self, bytes: Bytes) -> Result<Cid> {
        check_size(bytes.len(), self.config.max_size)?;
        let cid = cid_of(&bytes);
        let name = cid.to_string();
        let mut query = vec![
            ("cid-version", "1".to_owned()),
            ("raw-leaves", "true".to_owned()),
            ("hash", "sha2-256".to_owned()),
            ("pin", self.config.pin.to_string()),
        ];
        if bytes.len() > KUBO_DEFAULT_CHUNK {
            // One chunk keeps the content a single raw block, hence a raw CID.
            query.push(("chunker", format!("size-{}", bytes.len())));
        }
        let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let url = self.endpoint("add", &query)?;
        let part = reqwest::multipart::Part::stream_with_length(bytes.clone(), bytes.len() as u64)
            .file_name(name)
            .mime_str("application/octet-stream")
            .map_err(|source| Error::Http {
                url: url.to_string(),
                source,
            })?;
        let form = reqwest::multipart::Form::new().part("file", part);
        let answer = self.post(url.clone(), Some(form)).await?;
        let body = read_limited(answer, MAX_JSON_ANSWER, &url).await?;
        // Kubo answers with one JSON object per line; the last one names the added file.
        let last = body
            .split(|b| *b == b'\n')
            .rfind(|line| !line.iter().all(u8::is_ascii_whitespace))
            .ok_or_else(|| Error::IpfsResponse {
                url: url.to_string(),
                reason: "empty answer to add".to_owned(),
            })?;
        let added: AddAnswer = serde_json::from_slice(last).map_err(|e| Error::IpfsResponse {
            url: url.to_string(),
            reason: format!("bad add answer: {e}"),
        })?;
        let matches = Cid::try_from(added.hash.as_str()).is_ok_and(|returned| returned == cid);
        if !matches {
            return Err(Error::CidMismatch {
                expected: cid,
                returned: truncate(added.hash),
            });
        }
        tracing::debug!(%cid, size = bytes.len(), "added result to IPFS");
        Ok(cid)
    }

    async fn get(&self, cid: &Cid) -> Result<Vec<u8>> {
        check_cid(cid)?;
        let arg = cid.to_string();
        let mut query = vec![("arg", arg.as_str())];
        if self.config.offline {
            // Kubo's global `--offline` flag: only the node's own blocks are read.
            query.push(("offline", "true"));
        }
        let url = self.endpoint("cat", &query)?;
        let answer = match self.post(url.clone(), None).await {
            Err(Error::IpfsStatus { message, .. }) if is_not_found(&message) => {
                return Err(Error::NotFound(*cid));
            }
            other => other?,
        };
        let bytes = read_limited(answer, self.config.max_size, &url).await?;
        verify(cid, &bytes)?;
        Ok(bytes)
    }

    async fn has(&self, cid: &Cid) -> Result<bool> {
        check_cid(cid)?;
        let arg = cid.to_string();
        // Only the node's own blocks count; never search the network for them.
        let url = self.endpoint("block/stat", &[("arg", &arg), ("offline", "true")])?;
        match self.post(url.clone(), None).await {
            Ok(answer) => {
                read_limited(answer, MAX_JSON_ANSWER, &url).await?;
                Ok(true)
            }
            Err(Error::IpfsStatus { message, .. }) if is_not_found(&message) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Whether `url` points at this machine.
fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether a Kubo error message means the block is not available.
fn is_not_found(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    message.contains("not found") || message.contains("could not find")
}

/// Reads a response body, failing with [`Error::TooLarge`] as soon as it exceeds `limit`.
async fn read_limited(mut response: reqwest::Response, limit: usize, url: &Url) -> Result<Vec<u8>> {
    if let Some(length) = response.content_length() {
        check_size(usize::try_from(length).unwrap_or(usize::MAX), limit)?;
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|source| Error::Http {
        url: url.to_string(),
        source,
    })? {
        check_size(body.len().saturating_add(chunk.len()), limit)?;
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Keeps error messages from a remote node to a readable length.
fn truncate(mut message: String) -> String {
    if message.len() > MAX_ERROR_MESSAGE {
        let mut end = MAX_ERROR_MESSAGE;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push_str("...");
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_keep_base_path() -> Result<()> {
        let store = IpfsStore::new(IpfsConfig {
            url: "http://node.example:5001/proxy".to_owned(),
            ..IpfsConfig::default()
        })?;
        let url = store.endpoint("cat", &[("arg", "bafk")])?;
        assert_eq!(
            url.as_str(),
            "http://node.example:5001/proxy/api/v0/cat?arg=bafk"
        );
        Ok(())
    }

    #[test]
    fn bad_urls_are_rejected() {
        for url in [
            "not a url",
            "ftp://127.0.0.1:5001",
            "mailto:ipfs@example.com",
        ] {
            let result = IpfsStore::new(IpfsConfig {
                url: url.to_owned(),
                ..IpfsConfig::default()
            });
            assert!(
                matches!(result, Err(Error::InvalidUrl { .. })),
                "{url}: {result:?}"
            );
        }
    }

    #[test]
    fn messages_are_truncated_on_char_boundaries() {
        let long = "é".repeat(MAX_ERROR_MESSAGE);
        let short = truncate(long);
        assert!(short.len() <= MAX_ERROR_MESSAGE + 3);
        assert!(short.ends_with("..."));
        assert!(is_not_found("block was not found locally (offline)"));
        assert!(!is_not_found("context deadline exceeded"));
    }

    #[test]
    fn loopback_detection() {
        for (url, local) in [
            ("http://127.0.0.1:5001", true),
            ("http://localhost:5001", true),
            ("http://[::1]:5001", true),
            ("http://10.0.0.7:5001", false),
            ("https://ipfs.example.com", false),
        ] {
            let parsed = Url::parse(url).map(|u| is_loopback(&u));
            assert_eq!(parsed, Ok(local), "{url}");
        }
    }
}
