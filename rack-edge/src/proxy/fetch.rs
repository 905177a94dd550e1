//! Downloads from upstream (directly or through the parent proxy), one at a
//! time per URL: the first request for an uncached or stale object starts
//! a download into `tmp/`, and every request for the same URL meanwhile
//! streams from that file as it grows. Only a complete download of a
//! storable response is committed to the cache.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use hyper::header::{HeaderMap, HeaderName, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use hyper::StatusCode;
use tokio::sync::watch;

use super::cache::{Cache, Meta};
use super::counters::Counters;
use super::policy::{self, Class, Freshness};

/// How long establishing a connection upstream may take: with the WAN
/// down, an uncached request fails after this, not after TCP's minutes.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long upstream may take to send the response head.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long upstream may go silent in the middle of a body.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Response headers passed on to clients (hop-by-hop and framing headers
/// are the proxy's own business).
pub const KEPT_HEADERS: &[HeaderName] = &[
    hyper::header::CONTENT_TYPE,
    hyper::header::CONTENT_ENCODING,
    hyper::header::CONTENT_LANGUAGE,
    hyper::header::CONTENT_DISPOSITION,
    hyper::header::CACHE_CONTROL,
    hyper::header::EXPIRES,
    ETAG,
    LAST_MODIFIED,
    hyper::header::LOCATION,
    hyper::header::RETRY_AFTER,
    hyper::header::WWW_AUTHENTICATE,
    hyper::header::VARY,
];

/// Where a download for one URL stands; every request for the URL watches it.
#[derive(Debug, Clone)]
pub enum State {
    /// Waiting for upstream's response head.
    Waiting,
    /// Upstream says the cached copy is current (a 304 to a revalidation).
    NotModified,
    /// No response from upstream.
    Failed(Failure),
    /// A response whose body is being written to (or was written to) a file.
    Body(Arc<Download>, Progress),
}

/// Why upstream gave no response.
#[derive(Debug, Clone)]
pub enum Failure {
    /// Unreachable: refused, no route, DNS failure, parent proxy down.
    Unreachable(String),
    /// No answer in time.
    Timeout,
    /// The rack could not write the download.
    Local(String),
}

/// A response from upstream being downloaded.
#[derive(Debug)]
pub struct Download {
    /// Upstream's status.
    pub status: StatusCode,
    /// Upstream's headers that are passed on ([`KEPT_HEADERS`]).
    pub headers: HeaderMap,
    /// The body length upstream announced.
    pub length: Option<u64>,
    /// The download file, open for reading (also after it was renamed
    /// into the cache or deleted).
    pub file: Arc<std::fs::File>,
}

/// How far a download got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Bytes written to the file so far.
    pub written: u64,
    /// `Some(true)` once complete, `Some(false)` if it broke off.
    pub done: Option<bool>,
}

/// The HTTP client for upstream, rebuilt when the parent proxy changes.
pub struct Upstream {
    client: RwLock<(Option<String>, reqwest::Client)>,
}

impl Upstream {
    /// A client going direct, or through `parent`.
    pub fn new(parent: Option<&str>) -> Result<Upstream, reqwest::Error> {
        Ok(Upstream {
            client: RwLock::new((parent.map(str::to_string), build(parent)?)),
        })
    }

    /// Switches to `parent` (or direct) if that changed.
    pub fn set_parent(&self, parent: Option<&str>) -> Result<(), reqwest::Error> {
        let mut client = self.client.write().unwrap_or_else(|e| e.into_inner());
        if client.0.as_deref() != parent {
            *client = (parent.map(str::to_string), build(parent)?);
        }
        Ok(())
    }

    /// The current client (cheap: a handle on a shared pool).
    pub fn client(&self) -> reqwest::Client {
        self.client
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clone()
    }

    /// The parent proxy, if any.
    pub fn parent(&self) -> Option<String> {
        self.client
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }
}

fn build(parent: Option<&str>) -> Result<reqwest::Client, reqwest::Error> {
    // No proxy from the environment: only the region's setting counts.
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        // Redirects are the client's to follow (APT does), each cached by its own URL.
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(concat!("edgemetal-rack/", env!("CARGO_PKG_VERSION")));
    if let Some(parent) = parent {
        builder = builder.proxy(reqwest::Proxy::all(parent)?);
    }
    builder.build()
}

/// Runs downloads, one per URL at a time.
pub struct Fetcher {
    upstream: Upstream,
    cache: Arc<Cache>,
    counters: Counters,
    inflight: Mutex<HashMap<String, watch::Receiver<State>>>,
}

impl Fetcher {
    /// A fetcher filling `cache` from `upstream`.
    pub fn new(upstream: Upstream, cache: Arc<Cache>, counters: Counters) -> Fetcher {
        Fetcher {
            upstream,
            cache,
            counters,
            inflight: Mutex::new(HashMap::new()),
        }
    }

    /// The upstream client.
    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// Watches the download of `url` (cache key `key`), starting one unless
    /// one is running; with `cached`, the download is conditional on it.
    pub fn fetch(
        self: &Arc<Self>,
        key: &str,
        url: &str,
        class: Class,
        cached: Option<Arc<Meta>>,
    ) -> watch::Receiver<State> {
        let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(running) = inflight.get(key) {
            return running.clone();
        }
        let (tx, rx) = watch::channel(State::Waiting);
        inflight.insert(key.to_string(), rx.clone());
        let (fetcher, key, url) = (self.clone(), key.to_string(), url.to_string());
        tokio::spawn(async move {
            let last = fetcher
                .download(&key, &url, class, cached.as_deref(), &tx)
                .await;
            // Out of the map first: whoever comes next finds the cache.
            fetcher
                .inflight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key);
            tx.send_replace(last);
        });
        rx
    }

    async fn download(
        &self,
        key: &str,
        url: &str,
        class: Class,
        cached: Option<&Meta>,
        tx: &watch::Sender<State>,
    ) -> State {
        let mut request = self.upstream.client().get(url);
        if let Some(meta) = cached {
            if let Some(etag) = &meta.etag {
                request = request.header(IF_NONE_MATCH, etag);
            }
            if let Some(modified) = &meta.last_modified {
                request = request.header(IF_MODIFIED_SINCE, modified);
            }
        }
        let mut response = match tokio::time::timeout(RESPONSE_TIMEOUT, request.send()).await {
            Err(_) => return State::Failed(Failure::Timeout),
            Ok(Err(error)) if error.is_timeout() => return State::Failed(Failure::Timeout),
            Ok(Err(error)) => return State::Failed(Failure::Unreachable(describe(&error))),
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        let header = |name: &HeaderName| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        if cached.is_some() {
            if status == StatusCode::NOT_MODIFIED {
                let freshness = match class {
                    Class::Immutable => Freshness::Forever,
                    Class::Index => Freshness::Revalidate,
                    Class::Other => {
                        policy::storable(class, response.headers(), true, SystemTime::now())
                            .unwrap_or(Freshness::Revalidate)
                    }
                };
                self.cache
                    .refresh(key, freshness, header(&ETAG), header(&LAST_MODIFIED));
                self.counters.revalidated("not_modified");
                return State::NotModified;
            }
            self.counters.revalidated("modified");
        }

        let length = response.content_length();
        let temp = self.cache.temp_path();
        let files = std::fs::File::create(&temp)
            .and_then(|writer| Ok((writer, std::fs::File::open(&temp)?)));
        let (mut writer, reader) = match files {
            Ok(files) => files,
            Err(error) => {
                let _ = std::fs::remove_file(&temp);
                return State::Failed(Failure::Local(error.to_string()));
            }
        };
        let mut headers = HeaderMap::new();
        for name in KEPT_HEADERS {
            for value in response.headers().get_all(name) {
                headers.append(name.clone(), value.clone());
            }
        }
        let download = Arc::new(Download {
            status,
            headers,
            length,
            file: Arc::new(reader),
        });
        let mut progress = Progress::default();
        tx.send_replace(State::Body(download.clone(), progress));
        let complete = loop {
            match tokio::time::timeout(READ_TIMEOUT, response.chunk()).await {
                Ok(Ok(Some(chunk))) => {
                    // Appends go to the page cache: short enough to do inline.
                    if let Err(error) = writer.write_all(&chunk) {
                        tracing::warn!(%error, %url, "cannot write a download");
                        break false;
                    }
                    progress.written += chunk.len() as u64;
                    self.counters.bytes_from_upstream.inc_by(chunk.len() as u64);
                    tx.send_replace(State::Body(download.clone(), progress));
                }
                Ok(Ok(None)) => break length.is_none_or(|length| length == progress.written),
                Ok(Err(error)) => {
                    tracing::info!(error = %describe(&error), %url, "download broke off");
                    break false;
                }
                Err(_) => {
                    tracing::info!(%url, "upstream went silent mid-download");
                    break false;
                }
            }
        };
        progress.done = Some(complete);
        drop(writer);
        let stored = complete
            && status == StatusCode::OK
            && self.cache.fits(progress.written)
            && self.store(key, url, class, &download, progress.written, &temp);
        if !stored {
            // Readers keep their open file; the name goes.
            let _ = std::fs::remove_file(&temp);
        }
        State::Body(download, progress)
    }

    /// Commits a complete 200 download if its policy allows; whether it did.
    fn store(
        &self,
        key: &str,
        url: &str,
        class: Class,
        download: &Download,
        length: u64,
        temp: &std::path::Path,
    ) -> bool {
        let header = |name: &HeaderName| {
            download
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let (etag, last_modified) = (header(&ETAG), header(&LAST_MODIFIED));
        let validators = etag.is_some() || last_modified.is_some();
        let Some(freshness) =
            policy::storable(class, &download.headers, validators, SystemTime::now())
        else {
            return false;
        };
        let meta = Meta {
            url: url.to_string(),
            body: String::new(),
            length,
            content_type: header(&hyper::header::CONTENT_TYPE),
            etag,
            last_modified,
            freshness,
        };
        match self.cache.commit(key, meta, temp) {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, %url, "cannot store a download in the cache");
                false
            }
        }
    }
}

/// An error with its causes, for a client or a log line.
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
