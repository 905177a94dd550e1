//! The DNS engine: takes queries, upstream answers and the time, and
//! returns what to send. No sockets, no clock, no files: the adapter
//! ([`super::server`]) owns those, and tests drive this with a fake clock.
//!
//! Policy, in order, for a well-formed query:
//! 1. A name in one of the zones: answered from the zone (AA), for every
//!    client.
//! 2. A client outside the allowed networks (loopback included, when the
//!    region's list has it): REFUSED.
//! 3. Cached: answered from the cache, TTLs aged.
//! 4. No upstream configured: SERVFAIL.
//! 5. Otherwise forwarded; the answer is cached and passed on, or SERVFAIL
//!    once every upstream failed or timed out.
//!
//! The RD bit is not looked at: recursion is a matter of who asks, not of
//! how (stub resolvers always set it).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edgemetal_protocol::{DnsConfig, Ipv4Cidr};
use hickory_proto::op::ResponseCode;
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::action::{Action, Client, ExchangeId};
use super::authority::Authority;
use super::cache::{Cache, CacheKey, CacheLimits};
use super::counters::{Counters, Outcome};
use super::forward::{ForwardLimits, Forwarder, Settled, Started, Verdict, Waiter};
use super::wire::{encode_reply, parse_request, Rejection, Reply, Request};
use super::zone::ZoneError;

/// How often expired cache entries are swept out.
const PURGE_EVERY: Duration = Duration::from_secs(60);

/// The engine's knobs; the defaults suit a rack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// How long one upstream has to answer before the next is tried.
    pub upstream_timeout: Duration,
    /// How long a failover sticks before the first upstream is tried again.
    pub primary_retry: Duration,
    /// The largest UDP reply the rack sends and the payload size it
    /// advertises (1232: no IP fragmentation on common paths, the DNS
    /// flag day 2020 value).
    pub max_udp_payload: u16,
    /// Cache size and TTL caps.
    pub cache: CacheLimits,
    /// Most questions in flight to upstreams.
    pub max_pending: usize,
    /// Most clients waiting on one question in flight.
    pub max_waiters: usize,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            upstream_timeout: Duration::from_millis(1500),
            primary_retry: Duration::from_secs(60),
            max_udp_payload: 1232,
            cache: CacheLimits::default(),
            max_pending: 4096,
            max_waiters: 64,
        }
    }
}

/// Whether `ip` may use the rack as a resolver: IPv4 clients in `allowed`
/// (IPv4-mapped IPv6 counts as IPv4). Loopback follows the list too (the
/// region puts 127.0.0.0/8 in by default; an operator may take it out), and
/// ::1 goes with 127.0.0.1.
pub fn recursion_allowed(allowed: &[Ipv4Cidr], ip: IpAddr) -> bool {
    let v4 = match ip.to_canonical() {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(v6) if v6.is_loopback() => Ipv4Addr::LOCALHOST,
        IpAddr::V6(_) => return false,
    };
    allowed.iter().any(|network| network.contains(v4))
}

/// The DNS engine.
#[derive(Debug)]
pub struct Resolver {
    tuning: Tuning,
    authority: Authority,
    allowed: Vec<Ipv4Cidr>,
    cache: Cache,
    forwarder: Forwarder,
    /// Bumped by every authoritative answer: the start of each RRset.
    rotation: usize,
    next_purge: Option<Instant>,
    counters: Arc<Counters>,
}

impl Resolver {
    /// An engine with no zones and no upstreams; `rng` draws the upstream
    /// query ids (seed it from the OS outside tests).
    pub fn new(tuning: Tuning, rng: StdRng, counters: Arc<Counters>) -> Resolver {
        let limits = ForwardLimits {
            timeout: tuning.upstream_timeout,
            primary_retry: tuning.primary_retry,
            max_pending: tuning.max_pending,
            max_waiters: tuning.max_waiters,
            payload: tuning.max_udp_payload,
        };
        Resolver {
            tuning,
            authority: Authority::default(),
            allowed: Vec::new(),
            cache: Cache::new(tuning.cache),
            forwarder: Forwarder::new(limits, rng, counters.clone()),
            rotation: 0,
            next_purge: None,
            counters,
        }
    }

    /// [`Resolver::new`] with a seeded generator: for tests and fuzzing,
    /// where the same input must give the same upstream ids.
    pub fn with_seed(tuning: Tuning, seed: u64, counters: Arc<Counters>) -> Resolver {
        Resolver::new(tuning, StdRng::seed_from_u64(seed), counters)
    }

    /// Applies a snapshot's DNS settings; returns what in the zones could
    /// not be served (the rest is). The cache is kept: zones are looked at
    /// first, so a cached answer never hides zone data.
    pub fn reconfigure(&mut self, config: &DnsConfig) -> Vec<ZoneError> {
        let (authority, problems) = Authority::from_zones(&config.zones);
        self.authority = authority;
        self.allowed = config.allowed_networks.clone();
        self.forwarder.set_servers(config.forwarders.clone());
        problems
    }

    /// The counters, live.
    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    /// The cache (for persisting it).
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// The cache (for restoring it at start).
    pub fn cache_mut(&mut self) -> &mut Cache {
        &mut self.cache
    }

    /// A query from `client`; replies and upstream queries go to `out`.
    pub fn handle_query(
        &mut self,
        now: Instant,
        client: Client,
        bytes: &[u8],
        out: &mut Vec<Action>,
    ) {
        self.handle_query_inner(now, client, bytes, out);
        self.update_sizes();
    }

    fn handle_query_inner(
        &mut self,
        now: Instant,
        client: Client,
        bytes: &[u8],
        out: &mut Vec<Action>,
    ) {
        let request = match parse_request(bytes) {
            Ok(request) => request,
            Err(Rejection::Drop) => return self.counters.count(Outcome::Malformed),
            Err(Rejection::Error { reply, rcode }) => {
                self.counters.count(match rcode {
                    ResponseCode::NotImp => Outcome::NotImp,
                    ResponseCode::Refused => Outcome::Refused,
                    _ => Outcome::FormErr,
                });
                out.push(Action::Reply {
                    client,
                    bytes: reply,
                });
                return;
            }
        };
        let allowed = recursion_allowed(&self.allowed, client.addr.ip());
        let (name, qtype) = (request.query.name(), request.query.query_type());
        if let Some(answer) = self.authority.lookup(name, qtype, self.rotation) {
            self.rotation = self.rotation.wrapping_add(1);
            let reply = Reply {
                rcode: answer.rcode,
                authoritative: true,
                recursion_available: allowed,
                answers: answer.answers,
                authority: answer.authority,
            };
            self.counters.count(Outcome::Authoritative);
            return self.reply(client, &request, reply, out);
        }
        if !allowed {
            self.counters.count(Outcome::Refused);
            let reply = Reply::empty(ResponseCode::Refused, false);
            return self.reply(client, &request, reply, out);
        }
        if let Some(hit) = self.cache.get_question(now, name, qtype) {
            self.counters.count(Outcome::Cached);
            let reply = Reply {
                rcode: hit.rcode,
                answers: hit.answers,
                authority: hit.authority,
                ..Reply::empty(hit.rcode, true)
            };
            return self.reply(client, &request, reply, out);
        }
        if !self.forwarder.has_servers() {
            self.counters.count(Outcome::ServFail);
            let reply = Reply::empty(ResponseCode::ServFail, true);
            return self.reply(client, &request, reply, out);
        }
        let key = CacheKey::new(name, qtype);
        let waiter = Waiter { client, request };
        match self.forwarder.start(now, key, waiter, out) {
            Started::Sent | Started::Joined => {}
            Started::Overloaded => self.counters.count(Outcome::Overload),
            Started::Failed(settled) => self.settle(now, *settled, out),
        }
    }

    /// A message from `from` for upstream exchange `exchange`. The verdict
    /// tells the adapter whether to keep listening for that exchange.
    pub fn handle_answer(
        &mut self,
        now: Instant,
        exchange: ExchangeId,
        from: SocketAddr,
        bytes: &[u8],
        out: &mut Vec<Action>,
    ) -> Verdict {
        let (verdict, settled) = self.forwarder.on_answer(now, exchange, from, bytes, out);
        if let Some(settled) = settled {
            self.settle(now, settled, out);
        }
        self.update_sizes();
        verdict
    }

    /// The connection for `exchange` failed (refused, reset, closed early).
    pub fn handle_failure(&mut self, now: Instant, exchange: ExchangeId, out: &mut Vec<Action>) {
        if let Some(settled) = self.forwarder.on_failure(now, exchange, out) {
            self.settle(now, settled, out);
        }
        self.update_sizes();
    }

    /// Time passed: upstreams that did not answer in time are given up on
    /// (the next one is asked), expired cache entries are swept.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut Vec<Action>) {
        for settled in self.forwarder.on_timeout(now, out) {
            self.settle(now, settled, out);
        }
        match self.next_purge {
            Some(at) if at > now => {}
            _ => {
                self.cache.purge_expired(now);
                self.next_purge = Some(now + PURGE_EVERY);
            }
        }
        self.update_sizes();
    }

    /// When [`Resolver::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.forwarder.next_deadline(), self.next_purge) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn settle(&mut self, now: Instant, settled: Settled, out: &mut Vec<Action>) {
        match settled {
            Settled::Answered {
                key,
                message,
                waiters,
            } => {
                let rcode = message.response_code();
                let (answers, authority) = (message.answers(), message.name_servers());
                self.cache.insert(now, key, rcode, answers, authority);
                for waiter in waiters {
                    self.counters.count(Outcome::Forwarded);
                    let reply = Reply {
                        answers: answers.to_vec(),
                        authority: authority.to_vec(),
                        ..Reply::empty(rcode, true)
                    };
                    self.reply(waiter.client, &waiter.request, reply, out);
                }
            }
            Settled::Failed { waiters } => {
                for waiter in waiters {
                    self.counters.count(Outcome::ServFail);
                    let reply = Reply::empty(ResponseCode::ServFail, true);
                    self.reply(waiter.client, &waiter.request, reply, out);
                }
            }
        }
    }

    fn reply(&self, client: Client, request: &Request, reply: Reply, out: &mut Vec<Action>) {
        let payload = self.tuning.max_udp_payload;
        let limit = request.reply_limit(client.transport, payload);
        let recursion_available = reply.recursion_available;
        let encoded = encode_reply(request, reply, limit, payload).or_else(|| {
            // Records that would not encode (should not happen): the
            // client still gets an answer.
            let failure = Reply::empty(ResponseCode::ServFail, recursion_available);
            encode_reply(request, failure, limit, payload)
        });
        let Some(encoded) = encoded else {
            return;
        };
        if encoded.truncated {
            self.counters.count_truncated();
        }
        out.push(Action::Reply {
            client,
            bytes: encoded.bytes,
        });
    }

    fn update_sizes(&self) {
        self.counters
            .set_sizes(self.cache.len(), self.forwarder.len());
    }
}
