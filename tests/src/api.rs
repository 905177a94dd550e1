//! A small client for the region's HTTP API.

use std::net::SocketAddr;

use reqwest::{Method, StatusCode};
use serde_json::Value;

/// Talks to one region's API with an optional bearer key.
#[derive(Clone)]
pub struct ApiClient {
    base: String,
    key: Option<String>,
    http: reqwest::Client,
}

impl ApiClient {
    /// A client for the API at `address`.
    pub fn new(address: SocketAddr, key: Option<String>) -> Self {
        ApiClient {
            base: format!("http://{address}"),
            key,
            http: reqwest::Client::new(),
        }
    }

    /// A client for the API at `base` (e.g. `https://127.0.0.1:5240`) through
    /// a ready-made `http` client (e.g. one that trusts a test CA).
    pub fn with_http(base: &str, http: reqwest::Client, key: Option<String>) -> Self {
        ApiClient {
            base: base.trim_end_matches('/').to_string(),
            key,
            http,
        }
    }

    /// The same API with another key (or none).
    pub fn with_key(&self, key: Option<&str>) -> Self {
        ApiClient {
            key: key.map(str::to_string),
            ..self.clone()
        }
    }

    /// Whether `/healthz` answers 200.
    pub async fn healthz(&self) -> bool {
        self.http
            .get(format!("{}/healthz", self.base))
            .send()
            .await
            .map(|r| r.status().is_success())
            .unwrap_or(false)
    }

    /// Sends a request with an optional JSON body; returns status and body (JSON or text).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(key) = &self.key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        Self::send(request).await
    }

    /// Sends `request`; returns status and body (JSON or text).
    async fn send(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = request.send().await.expect("API request");
        let status = response.status();
        let text = response.text().await.expect("API body");
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    /// PATCHes `patch` as `application/merge-patch+json` (RFC 7396).
    pub async fn merge_patch(&self, path: &str, patch: &Value) -> (StatusCode, Value) {
        let mut request = self
            .http
            .patch(format!("{}{path}", self.base))
            .header("content-type", "application/merge-patch+json")
            .body(patch.to_string());
        if let Some(key) = &self.key {
            request = request.bearer_auth(key);
        }
        Self::send(request).await
    }

    /// Sends raw bytes as a JSON body.
    pub async fn call_raw(
        &self,
        method: Method,
        path: &str,
        body: &'static str,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body);
        if let Some(key) = &self.key {
            request = request.bearer_auth(key);
        }
        Self::send(request).await
    }

    /// POSTs `bytes` as `application/octet-stream` with extra headers.
    pub async fn upload(
        &self,
        path: &str,
        bytes: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let mut request = self.http.post(format!("{}{path}", self.base)).body(bytes);
        if !headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        {
            request = request.header("content-type", "application/octet-stream");
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(key) = &self.key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.expect("API request");
        let status = response.status();
        let text = response.text().await.expect("API body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// GET that must succeed; returns the JSON body.
    pub async fn get(&self, path: &str) -> Value {
        let (status, body) = self.call(Method::GET, path, None).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        body
    }

    /// POST that must answer 201; returns the JSON body.
    pub async fn create(&self, path: &str, body: Value) -> Value {
        let (status, response) = self.call(Method::POST, path, Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "POST {path}: {response}");
        response
    }

    /// The region's `/metrics` text.
    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// Sends a request that must fail with `status` and the JSON error `code`.
    pub async fn expect_error(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        status: StatusCode,
        code: &str,
    ) {
        let (got, response) = self.call(method.clone(), path, body).await;
        assert_eq!(got, status, "{method} {path}: {response}");
        assert_eq!(response["code"], code, "{method} {path}: {response}");
        assert!(
            response["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{response}"
        );
    }
}
