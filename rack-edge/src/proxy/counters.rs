//! The proxy's Prometheus counters (`edgemetal_rack_proxy_*`).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, &'static str)>;

/// Live counters; clones share the values.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// Requests answered from the cache (fresh, or revalidated unchanged).
    pub hits: Counter,
    /// Requests that needed a download from upstream.
    pub misses: Counter,
    /// Conditional requests upstream, by outcome (`not_modified`,
    /// `modified`, `failed`: served stale with a Warning).
    pub revalidations: Family<Labels, Counter>,
    /// Body bytes sent to clients from cached objects.
    pub bytes_from_cache: Counter,
    /// Body bytes received from upstream.
    pub bytes_from_upstream: Counter,
    /// Objects evicted to keep the cache under its size cap.
    pub evictions: Counter,
    /// Requests refused, by reason (`client`, `method`, `port`, `request`).
    pub refused: Family<Labels, Counter>,
    /// Requests that failed upstream, by reason (`unreachable`, `timeout`).
    pub upstream_errors: Family<Labels, Counter>,
}

impl Counters {
    /// Registers every counter under `proxy_`.
    pub fn register(&self, registry: &mut Registry) {
        let proxy = registry.sub_registry_with_prefix("proxy");
        proxy.register(
            "hits",
            "Requests answered from the cache",
            self.hits.clone(),
        );
        proxy.register(
            "misses",
            "Requests that needed a download from upstream",
            self.misses.clone(),
        );
        proxy.register(
            "revalidations",
            "Conditional requests upstream for cached objects, by outcome",
            self.revalidations.clone(),
        );
        proxy.register(
            "bytes_from_cache",
            "Body bytes sent to clients from cached objects",
            self.bytes_from_cache.clone(),
        );
        proxy.register(
            "bytes_from_upstream",
            "Body bytes received from upstream",
            self.bytes_from_upstream.clone(),
        );
        proxy.register(
            "evictions",
            "Objects evicted to keep the cache under its size cap",
            self.evictions.clone(),
        );
        proxy.register(
            "refused",
            "Requests refused, by reason",
            self.refused.clone(),
        );
        proxy.register(
            "upstream_errors",
            "Requests that failed upstream, by reason",
            self.upstream_errors.clone(),
        );
    }

    /// Counts a revalidation outcome.
    pub fn revalidated(&self, outcome: &'static str) {
        self.revalidations
            .get_or_create(&vec![("outcome", outcome)])
            .inc();
    }

    /// Counts a refused request.
    pub fn refuse(&self, reason: &'static str) {
        self.refused.get_or_create(&vec![("reason", reason)]).inc();
    }

    /// Counts an upstream failure.
    pub fn upstream_error(&self, reason: &'static str) {
        self.upstream_errors
            .get_or_create(&vec![("reason", reason)])
            .inc();
    }
}
