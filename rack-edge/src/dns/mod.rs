//! The rack's DNS server: authoritative for the zones the region pushes,
//! a caching forwarder for everything else, as a sans-IO core with a
//! tokio adapter.
//!
//! The pieces, each one concern:
//!
//! - [`name_key`]: names as cheap lookup keys.
//! - [`zone`]: one zone from the snapshot as wire records, with the
//!   synthesised SOA and NS (`ns.<zone>`; see there).
//! - [`authority`]: lookups over all zones: CNAME chasing, NXDOMAIN and
//!   NODATA with the SOA, round-robin order.
//! - [`wire`]: query parsing (FORMERR, NOTIMP, BADVERS), reply encoding
//!   with EDNS0 and truncation to the client's UDP size.
//! - [`cache`]: positive and negative (RFC 2308) caching, explicit clock.
//! - [`persist`]: the cache file in the state dir, aged on restore.
//! - [`forward`]: questions in flight to upstreams: random ids, answer
//!   checks against spoofing, failover, TCP retry on truncation.
//! - [`engine`]: the policy tying them together ([`Resolver`]), driven
//!   with `(now, bytes)`; its inputs and outputs are in [`action`].
//! - [`counters`]: what happened, for metrics.
//! - [`server`], [`upstream`], [`tcp`]: the tokio adapter ([`DnsServer`]).
//!
//! Wiring: `DnsServer::bind(udp, tcp, status.snapshots.subscribe(),
//! state_dir.join(CACHE_FILE))`, register `server.counters()` with the
//! metrics registry ([`Counters::register`]), then spawn `server.run()`.

pub mod action;
pub mod authority;
pub mod cache;
pub mod counters;
pub mod engine;
pub mod forward;
pub mod name_key;
pub mod persist;
pub mod server;
pub mod tcp;
pub mod upstream;
pub mod wire;
pub mod zone;

#[cfg(test)]
mod engine_tests;
#[cfg(test)]
mod forward_tests;
#[cfg(test)]
mod test_support;

pub use action::{Action, Client, ExchangeId};
pub use authority::{AuthAnswer, Authority};
pub use cache::{Cache, CacheKey, CacheLimits};
pub use counters::{Counters, CountersCollector, Outcome, UpstreamEvent};
pub use engine::{recursion_allowed, Resolver, Tuning};
pub use forward::Verdict;
pub use server::{DnsServer, ServerConfig, ServerError, CACHE_FILE};
pub use wire::Transport;
pub use zone::ZoneError;
