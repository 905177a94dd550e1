//! The answer cache for forwarded names, with an explicit clock.
//!
//! Positive answers live for the smallest TTL of their records; negative
//! answers (NXDOMAIN, and NOERROR without data) for min(SOA TTL, SOA
//! minimum) as RFC 2308 says, and are not cached at all without a SOA.
//! Served records carry their TTL minus the time spent in the cache.
//! Only class IN is ever cached (the engine refuses other classes).

use std::collections::HashMap;
use std::time::Instant;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::name_key::NameKey;

/// What a cache entry is looked up by: the question, name lowercased.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// The name asked, lowercase, fully qualified.
    pub name: Name,
    /// The type asked.
    pub qtype: RecordType,
}

impl CacheKey {
    /// The key for a question.
    pub fn new(name: &Name, qtype: RecordType) -> CacheKey {
        let mut name = name.to_lowercase();
        name.set_fqdn(true);
        CacheKey { name, qtype }
    }
}

/// Limits of the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    /// Most entries kept; the soonest-expiring go first when full.
    pub capacity: usize,
    /// Longest time a positive answer is kept, seconds.
    pub max_ttl: u32,
    /// Longest time a negative answer is kept, seconds (RFC 2308 suggests
    /// at most three hours).
    pub max_negative_ttl: u32,
}

impl Default for CacheLimits {
    fn default() -> Self {
        CacheLimits {
            capacity: 10_000,
            max_ttl: 86_400,
            max_negative_ttl: 10_800,
        }
    }
}

/// A cached answer as served now: TTLs already reduced by its age.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedAnswer {
    /// NOERROR or NXDOMAIN.
    pub rcode: ResponseCode,
    /// The answer section.
    pub answers: Vec<Record>,
    /// The SOA of a negative answer; empty otherwise.
    pub authority: Vec<Record>,
}

/// The map key of a question: the name's [`NameKey`] bytes, then the type.
struct Slot {
    bytes: [u8; 257],
    len: usize,
}

impl Slot {
    fn new(name: &Name, qtype: RecordType) -> Slot {
        let name = NameKey::new(name);
        let name = name.as_bytes();
        let mut bytes = [0; 257];
        bytes[..name.len()].copy_from_slice(name);
        bytes[name.len()..name.len() + 2].copy_from_slice(&u16::from(qtype).to_be_bytes());
        Slot {
            bytes,
            len: name.len() + 2,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

#[derive(Debug, Clone)]
struct Entry {
    key: CacheKey,
    rcode: ResponseCode,
    answers: Vec<Record>,
    authority: Vec<Record>,
    stored: Instant,
    /// Lifetime from `stored`, seconds; never 0.
    ttl: u32,
}

impl Entry {
    fn age(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.stored).as_secs()
    }

    fn remaining(&self, now: Instant) -> u32 {
        u64::from(self.ttl).saturating_sub(self.age(now)) as u32
    }
}

/// The cache.
#[derive(Debug, Clone)]
pub struct Cache {
    /// By [`Slot`] bytes: hashing those is far cheaper than hashing a `Name`.
    entries: HashMap<Box<[u8]>, Entry>,
    limits: CacheLimits,
}

impl Cache {
    /// An empty cache.
    pub fn new(limits: CacheLimits) -> Cache {
        Cache {
            entries: HashMap::new(),
            limits,
        }
    }

    /// Entries held, expired ones not yet purged included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The answer for `key` if cached and not expired.
    pub fn get(&self, now: Instant, key: &CacheKey) -> Option<CachedAnswer> {
        self.get_question(now, &key.name, key.qtype)
    }

    /// The answer for `name` and `qtype` (any case) if cached and not
    /// expired; no allocation on a miss.
    pub fn get_question(
        &self,
        now: Instant,
        name: &Name,
        qtype: RecordType,
    ) -> Option<CachedAnswer> {
        let entry = self.entries.get(Slot::new(name, qtype).as_bytes())?;
        let remaining = entry.remaining(now);
        if remaining == 0 {
            return None;
        }
        Some(serve(entry, now, remaining))
    }

    /// Caches an upstream's answer to `key`; returns the TTL it is kept
    /// for, or `None` if it may not be cached (an error code, a negative
    /// answer without SOA, a zero TTL).
    pub fn insert(
        &mut self,
        now: Instant,
        key: CacheKey,
        rcode: ResponseCode,
        answers: &[Record],
        authority: &[Record],
    ) -> Option<u32> {
        let positive = rcode == ResponseCode::NoError && !answers.is_empty();
        let negative = rcode == ResponseCode::NXDomain
            || (rcode == ResponseCode::NoError && answers.is_empty());
        let (ttl, authority) = if positive {
            let ttl = answers.iter().map(Record::ttl).min()?;
            (ttl.min(self.limits.max_ttl), Vec::new())
        } else if negative {
            let soa = authority
                .iter()
                .find(|r| r.record_type() == RecordType::SOA)?;
            let RData::SOA(data) = soa.data() else {
                return None;
            };
            // A CNAME chain before the negative answer limits it too.
            let chain = answers.iter().map(Record::ttl).min().unwrap_or(u32::MAX);
            let ttl = soa.ttl().min(data.minimum()).min(chain);
            (ttl.min(self.limits.max_negative_ttl), vec![soa.clone()])
        } else {
            return None;
        };
        if ttl == 0 || self.limits.capacity == 0 {
            return None;
        }
        let slot: Box<[u8]> = Slot::new(&key.name, key.qtype).as_bytes().into();
        if self.entries.len() >= self.limits.capacity && !self.entries.contains_key(&slot) {
            self.make_room(now);
        }
        self.entries.insert(
            slot,
            Entry {
                key,
                rcode,
                answers: answers.to_vec(),
                authority,
                stored: now,
                ttl,
            },
        );
        Some(ttl)
    }

    /// Forgets every expired entry.
    pub fn purge_expired(&mut self, now: Instant) {
        self.entries.retain(|_, entry| entry.remaining(now) > 0);
    }

    /// Full: drop the expired entries, then the eighth that expires
    /// soonest (one sort per eighth of the capacity, not one per insert).
    fn make_room(&mut self, now: Instant) {
        self.purge_expired(now);
        if self.entries.len() < self.limits.capacity {
            return;
        }
        let mut by_remaining: Vec<(u32, Box<[u8]>)> = self
            .entries
            .iter()
            .map(|(slot, entry)| (entry.remaining(now), slot.clone()))
            .collect();
        let evict = (self.limits.capacity / 8).max(1).min(by_remaining.len());
        by_remaining.select_nth_unstable_by_key(evict - 1, |(remaining, _)| *remaining);
        for (_, key) in by_remaining.into_iter().take(evict) {
            self.entries.remove(&key);
        }
    }

    /// Every live entry as served now, for persisting.
    pub fn live_entries(&self, now: Instant) -> impl Iterator<Item = (&CacheKey, CachedAnswer)> {
        self.entries.values().filter_map(move |entry| {
            let remaining = entry.remaining(now);
            (remaining > 0).then(|| (&entry.key, serve(entry, now, remaining)))
        })
    }
}

/// The entry with TTLs as of `now`: each record's own TTL less the age,
/// but never past the entry's end; a negative answer's SOA carries the
/// remaining negative TTL (RFC 2308 section 5).
fn serve(entry: &Entry, now: Instant, remaining: u32) -> CachedAnswer {
    let age = entry.age(now).min(u64::from(u32::MAX)) as u32;
    let adjust = |record: &Record| {
        let mut record = record.clone();
        let ttl = record.ttl().saturating_sub(age).clamp(1, remaining.max(1));
        record.set_ttl(ttl);
        record
    };
    let answers = entry.answers.iter().map(adjust).collect();
    let authority = entry
        .authority
        .iter()
        .map(|soa| {
            let mut soa = soa.clone();
            soa.set_ttl(remaining);
            soa
        })
        .collect();
    CachedAnswer {
        rcode: entry.rcode,
        answers,
        authority,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use hickory_proto::rr::rdata::{A, SOA};

    use super::*;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn a(owner: &str, ttl: u32) -> Record {
        Record::from_rdata(name(owner), ttl, RData::A(A::new(192, 0, 2, 1)))
    }

    fn soa(ttl: u32, minimum: u32) -> Record {
        let data = SOA::new(name("ns.ex."), name("h.ex."), 1, 1, 1, 1, minimum);
        Record::from_rdata(name("ex."), ttl, RData::SOA(data))
    }

    fn key(owner: &str) -> CacheKey {
        CacheKey::new(&name(owner), RecordType::A)
    }

    fn cache() -> Cache {
        Cache::new(CacheLimits::default())
    }

    #[test]
    fn positive_answers_age_and_expire_with_their_smallest_ttl() {
        let t0 = Instant::now();
        let mut cache = cache();
        let answers = [a("www.ex.", 300), a("www.ex.", 100)];
        assert_eq!(
            cache.insert(t0, key("www.ex."), ResponseCode::NoError, &answers, &[]),
            Some(100)
        );
        let later = cache
            .get(t0 + Duration::from_secs(40), &key("WWW.EX."))
            .unwrap();
        let ttls: Vec<u32> = later.answers.iter().map(Record::ttl).collect();
        assert_eq!(ttls, [60, 60], "aged by 40 s, none past the entry's end");
        assert!(cache
            .get(t0 + Duration::from_secs(99), &key("www.ex."))
            .is_some());
        assert!(cache
            .get(t0 + Duration::from_secs(100), &key("www.ex."))
            .is_none());
    }

    #[test]
    fn negative_answers_live_for_the_soa_minimum_or_ttl_whichever_is_smaller() {
        let t0 = Instant::now();
        let mut cache = cache();
        let ttl = cache.insert(
            t0,
            key("no.ex."),
            ResponseCode::NXDomain,
            &[],
            &[soa(600, 30)],
        );
        assert_eq!(ttl, Some(30));
        let hit = cache
            .get(t0 + Duration::from_secs(10), &key("no.ex."))
            .unwrap();
        assert_eq!(hit.rcode, ResponseCode::NXDomain);
        assert_eq!(hit.authority[0].ttl(), 20);
        assert!(cache
            .get(t0 + Duration::from_secs(30), &key("no.ex."))
            .is_none());
        let nodata = cache.insert(t0, key("nd.ex."), ResponseCode::NoError, &[], &[soa(5, 30)]);
        assert_eq!(nodata, Some(5));
    }

    #[test]
    fn negative_answers_without_soa_errors_and_zero_ttls_are_not_cached() {
        let t0 = Instant::now();
        let mut cache = cache();
        assert_eq!(
            cache.insert(t0, key("a.ex."), ResponseCode::NXDomain, &[], &[]),
            None
        );
        let answers = [a("b.ex.", 60)];
        assert_eq!(
            cache.insert(t0, key("b.ex."), ResponseCode::ServFail, &answers, &[]),
            None
        );
        let answers = [a("c.ex.", 0)];
        assert_eq!(
            cache.insert(t0, key("c.ex."), ResponseCode::NoError, &answers, &[]),
            None
        );
        assert!(cache.is_empty());
    }

    #[test]
    fn ttls_are_capped() {
        let t0 = Instant::now();
        let mut cache = cache();
        let answers = [a("a.ex.", u32::MAX)];
        assert_eq!(
            cache.insert(t0, key("a.ex."), ResponseCode::NoError, &answers, &[]),
            Some(86_400)
        );
        let negative = cache.insert(
            t0,
            key("n.ex."),
            ResponseCode::NXDomain,
            &[],
            &[soa(99_999, 99_999)],
        );
        assert_eq!(negative, Some(10_800));
    }

    #[test]
    fn a_full_cache_evicts_expired_then_soonest_expiring_entries() {
        let t0 = Instant::now();
        let mut cache = Cache::new(CacheLimits {
            capacity: 16,
            ..CacheLimits::default()
        });
        for n in 0..16u32 {
            let owner = format!("h{n}.ex.");
            cache.insert(
                t0,
                key(&owner),
                ResponseCode::NoError,
                &[a(&owner, 10 + n)],
                &[],
            );
        }
        cache.insert(
            t0,
            key("new.ex."),
            ResponseCode::NoError,
            &[a("new.ex.", 500)],
            &[],
        );
        assert!(cache.len() <= 16);
        assert!(cache.get(t0, &key("new.ex.")).is_some());
        assert!(
            cache.get(t0, &key("h0.ex.")).is_none(),
            "the soonest to expire went first"
        );
        assert!(cache.get(t0, &key("h15.ex.")).is_some());
        // Later, the expired ones make room without evicting live ones.
        let later = t0 + Duration::from_secs(20);
        for owner in ["x.ex.", "y.ex."] {
            cache.insert(
                later,
                key(owner),
                ResponseCode::NoError,
                &[a(owner, 500)],
                &[],
            );
        }
        assert!(cache.get(later, &key("new.ex.")).is_some());
        assert!(cache.get(later, &key("h15.ex.")).is_some());
        assert_eq!(cache.live_entries(later).count(), cache.len());
    }
}
