//! A small HTTP client for the tests: whole answers, and server-sent events split into their
//! `data` fields.

use serde_json::Value;

/// An HTTP answer, read to its end.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) body: String,
}

impl Answer {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

async fn read(response: reqwest::Response) -> Answer {
    Answer {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.text().await.unwrap(),
    }
}

/// POSTs `body` as JSON, with a bearer `key` if given.
pub(crate) async fn post(url: &str, key: Option<&str>, body: Value) -> Answer {
    post_raw(url, key, &body.to_string()).await
}

/// POSTs `body` as is, labelled JSON.
pub(crate) async fn post_raw(url: &str, key: Option<&str>, body: &str) -> Answer {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    read(request.send().await.unwrap()).await
}

pub(crate) async fn get(url: &str) -> Answer {
    read(reqwest::get(url).await.unwrap()).await
}

/// The `data` of each server-sent event, in order (comments and other fields skipped).
pub(crate) fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
                .collect();
            (!data.is_empty()).then(|| data.join("\n"))
        })
        .collect()
}
