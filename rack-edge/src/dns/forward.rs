//! Questions in flight to the upstream resolvers: random query ids, answers
//! checked against what was asked, failover on timeout or error, a retry
//! over TCP when a UDP answer comes back truncated, and one upstream query
//! for any number of clients asking the same question at once.
//!
//! Which upstream goes first: the configured order, except that after a
//! failover the one that answered stays first (so a dead primary does not
//! cost every query a timeout) until `primary_retry` has passed.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::DNSClass;
use rand::rngs::StdRng;
use rand::Rng;

use super::action::{Action, Client, ExchangeId};
use super::cache::CacheKey;
use super::counters::{Counters, UpstreamEvent};
use super::wire::{Request, Transport};

/// A client waiting for an upstream's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiter {
    /// Where the answer goes.
    pub client: Client,
    /// What it asked, for the reply's header and question.
    pub request: Request,
}

/// Limits and timers of the forwarder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardLimits {
    /// How long one upstream has to answer over UDP (twice that over TCP,
    /// which needs a handshake first).
    pub timeout: Duration,
    /// How long a failover sticks before the first upstream is tried again.
    pub primary_retry: Duration,
    /// Most questions in flight; beyond, new ones are dropped (clients retry).
    pub max_pending: usize,
    /// Most clients waiting on one question.
    pub max_waiters: usize,
    /// The UDP payload size advertised to upstreams.
    pub payload: u16,
}

/// What became of a client's question.
#[derive(Debug)]
pub enum Started {
    /// Sent to an upstream (an [`Action::Query`] was queued).
    Sent,
    /// The same question is already in flight: the client waits with it.
    Joined,
    /// Too much in flight: drop the query.
    Overloaded,
    /// The question could not be put on the wire: answer SERVFAIL.
    Failed(Box<Settled>),
}

/// How an exchange ended, for the engine to answer its clients.
#[derive(Debug)]
pub enum Settled {
    /// An upstream answered: cache it and pass it on.
    Answered {
        /// The question.
        key: CacheKey,
        /// The upstream's answer (checked against the question); boxed,
        /// as it is large and moves through a few hands.
        message: Box<Message>,
        /// Everyone who asked.
        waiters: Vec<Waiter>,
    },
    /// No upstream answered: SERVFAIL.
    Failed {
        /// Everyone who asked.
        waiters: Vec<Waiter>,
    },
}

/// What the engine should make of a message for an exchange.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The exchange is no longer in flight (settled, timed out, or never
    /// existed): stop listening for it.
    Unknown,
    /// Dropped (wrong source, id or question, or unreadable): keep
    /// listening, the real answer may still come.
    Rejected,
    /// The exchange moved on (answered, failed over, or retried over TCP):
    /// stop listening for it.
    Accepted,
}

#[derive(Debug)]
struct Exchange {
    key: CacheKey,
    upstream_id: u16,
    server: SocketAddr,
    transport: Transport,
    deadline: Instant,
    /// The upstreams for this question, in the order to try them.
    order: Arc<[SocketAddr]>,
    /// Index in `order` of `server`.
    position: usize,
    waiters: Vec<Waiter>,
}

/// The questions in flight.
#[derive(Debug)]
pub struct Forwarder {
    limits: ForwardLimits,
    servers: Arc<[SocketAddr]>,
    preferred: usize,
    preferred_since: Option<Instant>,
    exchanges: HashMap<ExchangeId, Exchange>,
    by_key: HashMap<CacheKey, ExchangeId>,
    deadlines: BTreeSet<(Instant, ExchangeId)>,
    next_exchange: u64,
    rng: StdRng,
    counters: Arc<Counters>,
}

impl Forwarder {
    /// A forwarder with no upstreams yet.
    pub fn new(limits: ForwardLimits, rng: StdRng, counters: Arc<Counters>) -> Forwarder {
        Forwarder {
            limits,
            servers: Arc::from(Vec::new()),
            preferred: 0,
            preferred_since: None,
            exchanges: HashMap::new(),
            by_key: HashMap::new(),
            deadlines: BTreeSet::new(),
            next_exchange: 1,
            rng,
            counters,
        }
    }

    /// Replaces the upstreams; questions in flight finish with the old ones.
    pub fn set_servers(&mut self, servers: Vec<SocketAddr>) {
        if *self.servers != *servers {
            self.servers = Arc::from(servers);
            self.preferred = 0;
            self.preferred_since = None;
        }
    }

    /// Whether any upstream is configured.
    pub fn has_servers(&self) -> bool {
        !self.servers.is_empty()
    }

    /// Questions in flight.
    pub fn len(&self) -> usize {
        self.exchanges.len()
    }

    /// Whether nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.exchanges.is_empty()
    }

    /// The earliest deadline of a question in flight.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(deadline, _)| *deadline)
    }

    /// Asks the upstreams `key` for `waiter`, or joins the same question
    /// already in flight.
    pub fn start(
        &mut self,
        now: Instant,
        key: CacheKey,
        waiter: Waiter,
        out: &mut Vec<Action>,
    ) -> Started {
        if let Some(exchange) = self
            .by_key
            .get(&key)
            .and_then(|id| self.exchanges.get_mut(id))
        {
            if exchange.waiters.len() >= self.limits.max_waiters {
                return Started::Overloaded;
            }
            exchange.waiters.push(waiter);
            return Started::Joined;
        }
        if self.exchanges.len() >= self.limits.max_pending || self.servers.is_empty() {
            return Started::Overloaded;
        }
        if self
            .preferred_since
            .is_some_and(|since| now.saturating_duration_since(since) >= self.limits.primary_retry)
        {
            self.preferred = 0;
            self.preferred_since = None;
        }
        let start = self.preferred % self.servers.len();
        let order: Arc<[SocketAddr]> = self.servers[start..]
            .iter()
            .chain(&self.servers[..start])
            .copied()
            .collect();
        let exchange = Exchange {
            key,
            upstream_id: 0,
            server: order[0],
            transport: Transport::Udp,
            deadline: now,
            order,
            position: 0,
            waiters: vec![waiter],
        };
        match self.send(now, exchange, out) {
            None => Started::Sent,
            Some(failed) => Started::Failed(Box::new(failed)),
        }
    }

    /// Sends `exchange` to its current server with a fresh id under a new
    /// exchange id (so a late answer to an earlier attempt is not taken
    /// for this one's). Settles it as failed if it cannot be encoded.
    fn send(
        &mut self,
        now: Instant,
        mut exchange: Exchange,
        out: &mut Vec<Action>,
    ) -> Option<Settled> {
        exchange.upstream_id = self.rng.gen();
        let timeout = match exchange.transport {
            Transport::Udp => self.limits.timeout,
            Transport::Tcp => self.limits.timeout * 2,
        };
        exchange.deadline = now + timeout;
        let id = ExchangeId(self.next_exchange);
        self.next_exchange += 1;
        let mut query = Query::query(exchange.key.name.clone(), exchange.key.qtype);
        query.set_query_class(DNSClass::IN);
        let mut message = Message::new();
        message
            .set_id(exchange.upstream_id)
            .set_message_type(MessageType::Query)
            .set_op_code(OpCode::Query)
            .set_recursion_desired(true)
            .add_query(query);
        let mut edns = Edns::new();
        edns.set_max_payload(self.limits.payload).set_version(0);
        message.set_edns(edns);
        let Ok(bytes) = message.to_vec() else {
            // A name that parsed from a client always encodes; should it
            // not, the clients get SERVFAIL rather than silence.
            return Some(Settled::Failed {
                waiters: exchange.waiters,
            });
        };
        out.push(Action::Query {
            exchange: id,
            server: exchange.server,
            transport: exchange.transport,
            bytes,
        });
        self.counters.count_upstream(UpstreamEvent::Sent);
        self.deadlines.insert((exchange.deadline, id));
        self.by_key.insert(exchange.key.clone(), id);
        self.exchanges.insert(id, exchange);
        None
    }

    fn take(&mut self, id: ExchangeId) -> Option<Exchange> {
        let exchange = self.exchanges.remove(&id)?;
        self.deadlines.remove(&(exchange.deadline, id));
        if self.by_key.get(&exchange.key) == Some(&id) {
            self.by_key.remove(&exchange.key);
        }
        Some(exchange)
    }

    /// Tries the next upstream, or gives up when all were tried.
    fn fail_over(
        &mut self,
        now: Instant,
        mut exchange: Exchange,
        out: &mut Vec<Action>,
    ) -> Option<Settled> {
        exchange.position += 1;
        match exchange.order.get(exchange.position) {
            Some(next) => {
                exchange.server = *next;
                exchange.transport = Transport::Udp;
                self.send(now, exchange, out)
            }
            None => Some(Settled::Failed {
                waiters: exchange.waiters,
            }),
        }
    }

    /// A datagram or TCP message from `from` for exchange `id`.
    pub fn on_answer(
        &mut self,
        now: Instant,
        id: ExchangeId,
        from: SocketAddr,
        bytes: &[u8],
        out: &mut Vec<Action>,
    ) -> (Verdict, Option<Settled>) {
        let Some(exchange) = self.exchanges.get(&id) else {
            return (Verdict::Unknown, None);
        };
        if from != exchange.server {
            self.counters.count_upstream(UpstreamEvent::SpoofedDropped);
            return (Verdict::Rejected, None);
        }
        let Ok(message) = Message::from_vec(bytes) else {
            self.counters
                .count_upstream(UpstreamEvent::MalformedDropped);
            return (Verdict::Rejected, None);
        };
        let header_ok = message.message_type() == MessageType::Response
            && message.id() == exchange.upstream_id
            && message.op_code() == OpCode::Query;
        let question_ok = match message.queries() {
            [query] => {
                query.name() == &exchange.key.name
                    && query.query_type() == exchange.key.qtype
                    && query.query_class() == DNSClass::IN
            }
            // Some servers leave the question out of an error reply.
            [] => message.response_code() != ResponseCode::NoError,
            _ => false,
        };
        if !header_ok || !question_ok {
            self.counters.count_upstream(UpstreamEvent::SpoofedDropped);
            return (Verdict::Rejected, None);
        }
        let Some(mut exchange) = self.take(id) else {
            return (Verdict::Unknown, None);
        };
        if message.truncated() && exchange.transport == Transport::Udp {
            self.counters.count_upstream(UpstreamEvent::TcpRetry);
            exchange.transport = Transport::Tcp;
            return (Verdict::Accepted, self.send(now, exchange, out));
        }
        match message.response_code() {
            ResponseCode::ServFail
            | ResponseCode::Refused
            | ResponseCode::NotImp
            | ResponseCode::FormErr => {
                self.counters.count_upstream(UpstreamEvent::Failed);
                let settled = self.fail_over(now, exchange, out);
                (Verdict::Accepted, settled)
            }
            _ if message.truncated() => {
                // Truncated even over TCP: nothing better will come.
                self.counters.count_upstream(UpstreamEvent::Failed);
                let settled = self.fail_over(now, exchange, out);
                (Verdict::Accepted, settled)
            }
            _ => {
                self.remember_good(now, exchange.server);
                let settled = Settled::Answered {
                    key: exchange.key,
                    message: Box::new(message),
                    waiters: exchange.waiters,
                };
                (Verdict::Accepted, Some(settled))
            }
        }
    }

    fn remember_good(&mut self, now: Instant, server: SocketAddr) {
        let Some(index) = self.servers.iter().position(|s| *s == server) else {
            return;
        };
        if index != self.preferred {
            self.preferred = index;
            self.preferred_since = (index != 0).then_some(now);
        }
    }

    /// The exchange's connection failed (refused, reset): next upstream.
    pub fn on_failure(
        &mut self,
        now: Instant,
        id: ExchangeId,
        out: &mut Vec<Action>,
    ) -> Option<Settled> {
        let exchange = self.take(id)?;
        self.counters.count_upstream(UpstreamEvent::Failed);
        self.fail_over(now, exchange, out)
    }

    /// Fails over every exchange whose deadline passed.
    pub fn on_timeout(&mut self, now: Instant, out: &mut Vec<Action>) -> Vec<Settled> {
        let mut settled = Vec::new();
        while let Some(&(deadline, id)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            let Some(exchange) = self.take(id) else {
                self.deadlines.pop_first();
                continue;
            };
            self.counters.count_upstream(UpstreamEvent::Timeout);
            settled.extend(self.fail_over(now, exchange, out));
        }
        settled
    }
}
