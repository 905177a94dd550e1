//! One request to the proxy: who may ask, what is answered from the cache,
//! what waits for (or streams from) a download, what is tunnelled.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, ACCEPT_RANGES, ALLOW, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG,
    LAST_MODIFIED, VIA, WARNING,
};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use super::body::{self, ProxyBody};
use super::cache::{self, Meta};
use super::fetch::{Download, Failure, State, CONNECT_TIMEOUT, KEPT_HEADERS};
use super::policy;
use super::range::{self, Selection};
use super::settings::Settings;
use super::tunnel::{self, TunnelError};
use super::Proxy;

/// `Via` on every proxied response.
const VIA_VALUE: &str = concat!("1.1 edgemetal-rack/", env!("CARGO_PKG_VERSION"));
/// `X-Cache`: whether the body came from the cache.
const X_CACHE: &str = "x-cache";

impl Proxy {
    /// Answers one request from `client`.
    pub async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
        client: IpAddr,
    ) -> Response<ProxyBody> {
        let settings = self.settings();
        if !settings.allows(client) {
            self.counters.refuse("client");
            tracing::debug!(%client, "proxy request from an address not allowed");
            return error(
                StatusCode::FORBIDDEN,
                "this proxy serves the site's machines only (subnets with the proxy on, and the allowed networks)",
            );
        }
        match *request.method() {
            Method::CONNECT => self.connect(request, &settings).await,
            Method::GET | Method::HEAD => self.get(request).await,
            _ => {
                self.counters.refuse("method");
                let mut response = error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "this proxy forwards GET and HEAD, and CONNECT for HTTPS",
                );
                response
                    .headers_mut()
                    .insert(ALLOW, HeaderValue::from_static("GET, HEAD, CONNECT"));
                response
            }
        }
    }

    async fn get(&self, request: Request<Incoming>) -> Response<ProxyBody> {
        let uri = request.uri();
        if uri.scheme_str() != Some("http") || uri.authority().is_none() {
            self.counters.refuse("request");
            return error(
                StatusCode::BAD_REQUEST,
                "send absolute http:// URLs (a forward proxy); HTTPS goes through CONNECT",
            );
        }
        // Normalised (dot segments, default port, case of the host) as
        // upstream will be asked: one cache entry per resource. APT asks for
        // `/./Packages` in flat repositories.
        let url = match reqwest::Url::parse(&uri.to_string()) {
            Ok(url) => url,
            Err(_) => {
                self.counters.refuse("request");
                return error(StatusCode::BAD_REQUEST, "not a valid URL");
            }
        };
        let (path, url) = (url.path().to_string(), String::from(url));
        let head = request.method() == Method::HEAD;
        let key = cache::key(&url);
        let class = policy::classify(&path);
        let cached = self.cache.lookup(&key);
        if let Some(meta) = &cached {
            if meta.freshness.is_fresh(SystemTime::now()) {
                return self.serve_cached(&request, meta, None);
            }
        } else if head {
            // Not worth a download: ask upstream for the head only.
            return self.head_upstream(&url).await;
        }
        let mut state = self.fetcher.fetch(&key, &url, class, cached.clone());
        let current = match state.wait_for(|s| !matches!(s, State::Waiting)).await {
            Ok(current) => current.clone(),
            Err(_) => State::Failed(Failure::Local("the download task stopped".into())),
        };
        match current {
            State::NotModified => match self.cache.lookup(&key).or(cached) {
                Some(meta) => self.serve_cached(&request, &meta, None),
                None => error(StatusCode::BAD_GATEWAY, "the cached copy vanished; retry"),
            },
            State::Body(download, _) if download.status.is_server_error() && cached.is_some() => {
                self.stale(
                    &request,
                    cached.as_deref(),
                    &format!("upstream answered {}", download.status),
                )
            }
            State::Body(download, _) => {
                self.counters.misses.inc();
                serve_download(&request, &download, state)
            }
            State::Failed(failure) if cached.is_some() => {
                let reason = match &failure {
                    Failure::Timeout => "upstream timed out".to_string(),
                    Failure::Unreachable(detail) | Failure::Local(detail) => detail.clone(),
                };
                self.stale(&request, cached.as_deref(), &reason)
            }
            State::Failed(failure) => self.failed(&url, failure),
            State::Waiting => error(StatusCode::BAD_GATEWAY, "no answer from upstream"),
        }
    }

    /// The cached copy, because upstream could not say whether it is current.
    fn stale(
        &self,
        request: &Request<Incoming>,
        cached: Option<&Meta>,
        reason: &str,
    ) -> Response<ProxyBody> {
        let Some(meta) = cached else {
            return error(StatusCode::BAD_GATEWAY, reason);
        };
        self.counters.revalidated("failed");
        tracing::info!(url = %meta.url, %reason, "serving a cached copy that could not be revalidated");
        self.serve_cached(
            request,
            meta,
            Some("111 edgemetal-rack \"Revalidation Failed\""),
        )
    }

    fn failed(&self, url: &str, failure: Failure) -> Response<ProxyBody> {
        let (status, reason, text) = match failure {
            Failure::Timeout => (
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                "upstream did not answer in time (is the WAN down?)".to_string(),
            ),
            Failure::Unreachable(detail) => (
                StatusCode::BAD_GATEWAY,
                "unreachable",
                format!("upstream unreachable (is the WAN down?): {detail}"),
            ),
            Failure::Local(detail) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "local",
                format!("the rack cannot store the download: {detail}"),
            ),
        };
        self.counters.upstream_error(reason);
        tracing::info!(%url, %text, "proxy request failed");
        error(status, &format!("{url}: {text}"))
    }

    /// Answers from a cached object: a 304 to a satisfied conditional, a
    /// range, or all of it.
    fn serve_cached(
        &self,
        request: &Request<Incoming>,
        meta: &Meta,
        warning: Option<&'static str>,
    ) -> Response<ProxyBody> {
        self.counters.hits.inc();
        let (etag, modified) = (meta.etag.as_deref(), meta.last_modified.as_deref());
        let mut builder = Response::builder()
            .header(VIA, VIA_VALUE)
            .header(X_CACHE, "HIT");
        if let Some(warning) = warning {
            builder = builder.header(WARNING, warning);
        }
        for (name, value) in [(ETAG, etag), (LAST_MODIFIED, modified)] {
            if let Some(value) = value.and_then(|v| HeaderValue::from_str(v).ok()) {
                builder = builder.header(name, value);
            }
        }
        if range::not_modified(request.headers(), etag, modified) {
            return builder
                .status(StatusCode::NOT_MODIFIED)
                .body(body::empty())
                .unwrap_or_else(|_| internal());
        }
        if let Some(content_type) = meta
            .content_type
            .as_deref()
            .and_then(|v| HeaderValue::from_str(v).ok())
        {
            builder = builder.header(CONTENT_TYPE, content_type);
        }
        builder = builder.header(ACCEPT_RANGES, "bytes");
        let (status, start, end) =
            match range::select(request.headers(), meta.length, etag, modified) {
                Selection::Full => (StatusCode::OK, 0, meta.length),
                Selection::Partial { start, end } => {
                    builder = builder.header(
                        CONTENT_RANGE,
                        format!("bytes {start}-{end}/{}", meta.length),
                    );
                    (StatusCode::PARTIAL_CONTENT, start, end + 1)
                }
                Selection::Unsatisfiable => {
                    return builder
                        .status(StatusCode::RANGE_NOT_SATISFIABLE)
                        .header(CONTENT_RANGE, format!("bytes */{}", meta.length))
                        .body(body::empty())
                        .unwrap_or_else(|_| internal());
                }
            };
        builder = builder.status(status).header(CONTENT_LENGTH, end - start);
        if request.method() == Method::HEAD {
            return builder.body(body::empty()).unwrap_or_else(|_| internal());
        }
        let file = match std::fs::File::open(self.cache.body_path(meta)) {
            Ok(file) => Arc::new(file),
            Err(gone) => {
                // Evicted between the lookup and now.
                tracing::debug!(error = %gone, url = %meta.url, "cached body gone");
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the cached copy was just evicted; retry",
                );
            }
        };
        let sent = Some(self.counters.bytes_from_cache.clone());
        builder
            .body(body::file_range(file, start, end, None, sent))
            .unwrap_or_else(|_| internal())
    }

    /// A HEAD for an uncached URL, passed on.
    async fn head_upstream(&self, url: &str) -> Response<ProxyBody> {
        let request = self.fetcher.upstream().client().head(url).send();
        let response = match tokio::time::timeout(CONNECT_TIMEOUT * 6, request).await {
            Err(_) => return self.failed(url, Failure::Timeout),
            Ok(Err(error)) if error.is_timeout() => return self.failed(url, Failure::Timeout),
            Ok(Err(error)) => return self.failed(url, Failure::Unreachable(error.to_string())),
            Ok(Ok(response)) => response,
        };
        let mut builder = Response::builder()
            .status(response.status())
            .header(VIA, VIA_VALUE)
            .header(X_CACHE, "MISS");
        for name in KEPT_HEADERS.iter().chain([&CONTENT_LENGTH]) {
            for value in response.headers().get_all(name) {
                builder = builder.header(name, value);
            }
        }
        builder.body(body::empty()).unwrap_or_else(|_| internal())
    }

    /// Opens a tunnel to an allowed port and hands the connection over to it.
    async fn connect(
        &self,
        request: Request<Incoming>,
        settings: &Settings,
    ) -> Response<ProxyBody> {
        let Some(authority) = request.uri().authority().cloned() else {
            self.counters.refuse("request");
            return error(StatusCode::BAD_REQUEST, "CONNECT needs host:port");
        };
        let port = authority.port_u16().unwrap_or(0);
        if !settings.connect_ports.contains(&port) {
            self.counters.refuse("port");
            return error(
                StatusCode::FORBIDDEN,
                &format!(
                    "CONNECT is allowed to ports {:?} only",
                    settings.connect_ports
                ),
            );
        }
        let target = authority.to_string();
        let mut upstream =
            match tunnel::open(&target, settings.parent.as_deref(), CONNECT_TIMEOUT).await {
                Ok(stream) => stream,
                Err(TunnelError::Timeout(hop)) => {
                    self.counters.upstream_error("timeout");
                    return error(
                        StatusCode::GATEWAY_TIMEOUT,
                        &format!("no connection to {hop} in time"),
                    );
                }
                Err(failure) => {
                    self.counters.upstream_error("unreachable");
                    return error(StatusCode::BAD_GATEWAY, &failure.to_string());
                }
            };
        tokio::spawn(async move {
            match hyper::upgrade::on(request).await {
                Ok(upgraded) => {
                    let mut client = TokioIo::new(upgraded);
                    if let Err(error) =
                        tokio::io::copy_bidirectional(&mut client, &mut upstream).await
                    {
                        tracing::debug!(%error, %target, "tunnel closed");
                    }
                }
                Err(error) => tracing::debug!(%error, %target, "CONNECT upgrade failed"),
            }
        });
        Response::builder()
            .status(StatusCode::OK)
            .body(body::empty())
            .unwrap_or_else(|_| internal())
    }
}

/// Answers from a download (running or just finished): the status and
/// headers upstream sent, the body streamed from the download file.
fn serve_download(
    request: &Request<Incoming>,
    download: &Arc<Download>,
    state: tokio::sync::watch::Receiver<State>,
) -> Response<ProxyBody> {
    let mut builder = Response::builder()
        .status(download.status)
        .header(VIA, VIA_VALUE)
        .header(X_CACHE, "MISS");
    for (name, value) in &download.headers {
        builder = builder.header(name, value);
    }
    let (mut start, mut end) = (0, download.length.unwrap_or(u64::MAX));
    if let (StatusCode::OK, Some(length)) = (download.status, download.length) {
        let header = |name| {
            download
                .headers
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
        };
        builder = builder.header(ACCEPT_RANGES, "bytes");
        match range::select(
            request.headers(),
            length,
            header(ETAG),
            header(LAST_MODIFIED),
        ) {
            Selection::Full => {}
            Selection::Partial {
                start: first,
                end: last,
            } => {
                builder = builder
                    .status(StatusCode::PARTIAL_CONTENT)
                    .header(CONTENT_RANGE, format!("bytes {first}-{last}/{length}"));
                (start, end) = (first, last + 1);
            }
            Selection::Unsatisfiable => {
                return builder
                    .status(StatusCode::RANGE_NOT_SATISFIABLE)
                    .header(CONTENT_RANGE, format!("bytes */{length}"))
                    .body(body::empty())
                    .unwrap_or_else(|_| internal());
            }
        }
    }
    if end != u64::MAX {
        builder = builder.header(CONTENT_LENGTH, end - start);
    }
    let no_body = request.method() == Method::HEAD
        || download.status == StatusCode::NO_CONTENT
        || download.status == StatusCode::NOT_MODIFIED;
    if no_body {
        return builder.body(body::empty()).unwrap_or_else(|_| internal());
    }
    builder
        .body(body::file_range(
            download.file.clone(),
            start,
            end,
            Some(state),
            None,
        ))
        .unwrap_or_else(|_| internal())
}

/// A plain-text error answer.
fn error(status: StatusCode, text: &str) -> Response<ProxyBody> {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(VIA, VIA_VALUE)
        .body(body::full(format!("{text}\n")))
        .unwrap_or_else(|_| internal())
}

/// The answer when a response cannot even be built (a header that does
/// not encode): never expected, never a panic.
fn internal() -> Response<ProxyBody> {
    let mut response = Response::new(body::empty());
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response
}
