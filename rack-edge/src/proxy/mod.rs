//! The APT/HTTP caching forward proxy: the site's machines fetch packages
//! (and anything else over HTTP) through their rack, which keeps a copy on
//! disk so the second machine, and every machine while the WAN is down,
//! gets it from the site.
//!
//! Pure parts: [`policy`] (what is cached how long, from the path and
//! headers), [`range`] (ranges and conditionals), [`lru`] (eviction
//! order), [`settings`] (who may use it, from the snapshot). Adapters:
//! [`cache`] (files under the state directory), [`fetch`] (one download
//! per URL, shared by concurrent requests), [`body`], [`tunnel`]
//! (CONNECT), [`handler`] (one request) and the accept loop here.

pub mod body;
pub mod cache;
pub mod counters;
pub mod fetch;
pub mod handler;
pub mod lru;
pub mod policy;
pub mod range;
pub mod settings;
pub mod tunnel;

#[cfg(test)]
mod tests;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use edgemetal_protocol::ConfigSnapshot;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use counters::Counters;
pub use settings::Settings;

/// The cache's directory under the rack's state directory.
pub const CACHE_DIR: &str = "proxy-cache";

/// Why the proxy cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The listen address is taken or not ours.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address.
        address: SocketAddr,
        /// The socket error.
        source: std::io::Error,
    },
    /// The cache directory is unusable.
    #[error("cannot open the proxy cache in {dir}: {source}")]
    Cache {
        /// The directory.
        dir: String,
        /// The file system error.
        source: std::io::Error,
    },
    /// The parent proxy setting is not a URL.
    #[error("invalid parent proxy: {0}")]
    Parent(#[from] reqwest::Error),
}

/// The running proxy: settings, cache and downloads.
pub struct Proxy {
    settings: RwLock<Arc<Settings>>,
    cache: Arc<cache::Cache>,
    fetcher: Arc<fetch::Fetcher>,
    counters: Counters,
}

/// A bound proxy, ready to [`run`](ProxyServer::run).
pub struct ProxyServer {
    listener: TcpListener,
    proxy: Arc<Proxy>,
    snapshots: watch::Receiver<Option<ConfigSnapshot>>,
}

impl Proxy {
    /// Opens the cache in `cache_dir`, binds `address` and takes its
    /// settings from `snapshots` (the current one now, later ones as they
    /// come).
    pub async fn bind(
        address: SocketAddr,
        cache_dir: &Path,
        mut snapshots: watch::Receiver<Option<ConfigSnapshot>>,
        counters: Counters,
    ) -> Result<ProxyServer, ProxyError> {
        let settings = Settings::from_snapshot(snapshots.borrow_and_update().as_ref());
        let cache = cache::Cache::open(cache_dir, settings.cache_bytes, counters.clone()).map_err(
            |source| ProxyError::Cache {
                dir: cache_dir.display().to_string(),
                source,
            },
        )?;
        let cache = Arc::new(cache);
        let upstream = fetch::Upstream::new(settings.parent.as_deref())?;
        let fetcher = Arc::new(fetch::Fetcher::new(
            upstream,
            cache.clone(),
            counters.clone(),
        ));
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| ProxyError::Listen { address, source })?;
        let proxy = Arc::new(Proxy {
            settings: RwLock::new(Arc::new(settings)),
            cache,
            fetcher,
            counters,
        });
        Ok(ProxyServer {
            listener,
            proxy,
            snapshots,
        })
    }

    /// The settings in force.
    pub fn settings(&self) -> Arc<Settings> {
        self.settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Applies a snapshot's settings.
    pub fn apply(&self, settings: Settings) {
        if *self.settings() == settings {
            return;
        }
        if let Err(error) = self
            .fetcher
            .upstream()
            .set_parent(settings.parent.as_deref())
        {
            tracing::error!(%error, "invalid parent proxy; keeping the previous upstream");
        }
        self.cache.set_cap(settings.cache_bytes);
        tracing::info!(
            clients = settings.clients.len(),
            parent = settings.parent.as_deref().unwrap_or("direct"),
            cache_bytes = settings.cache_bytes,
            "proxy settings applied"
        );
        *self.settings.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(settings);
    }

    /// A line for the rack's status: cache use and upstream.
    pub fn describe(&self) -> String {
        let (objects, bytes) = self.cache.usage();
        let settings = self.settings();
        format!(
            "cache {objects} objects, {} of {} MiB; upstream {}",
            bytes / (1024 * 1024),
            settings.cache_bytes / (1024 * 1024),
            self.fetcher
                .upstream()
                .parent()
                .unwrap_or_else(|| "direct".into())
        )
    }
}

impl ProxyServer {
    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The proxy (for its status line).
    pub fn proxy(&self) -> Arc<Proxy> {
        self.proxy.clone()
    }

    /// Serves until the listener fails.
    pub async fn run(self) -> std::io::Result<()> {
        let ProxyServer {
            listener,
            proxy,
            mut snapshots,
        } = self;
        let watcher = proxy.clone();
        tokio::spawn(async move {
            while snapshots.changed().await.is_ok() {
                let settings = Settings::from_snapshot(snapshots.borrow_and_update().as_ref());
                watcher.apply(settings);
            }
        });
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: pass, do not spin.
                    tracing::warn!(%error, "proxy accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let proxy = proxy.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    let proxy = proxy.clone();
                    async move { Ok::<_, Infallible>(proxy.handle(request, peer.ip()).await) }
                });
                let connection = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades();
                if let Err(error) = connection.await {
                    tracing::debug!(%error, %peer, "proxy connection ended");
                }
            });
        }
    }
}
