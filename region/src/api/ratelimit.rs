//! Throttling of failed authentications per (source address, presented key).
//!
//! Sans-IO: the caller passes the time in, so the rules are tested without
//! sleeping. A pair that failed [`AuthFailureLimiter::limit`] times within
//! the window is refused until the oldest of those failures leaves the window
//! (a sliding window: bursts at a fixed window's edge gain nothing).
//!
//! Counting per pair, not per source, is what keeps a site's NAT usable: ten
//! bad keys from behind it lock out those keys from there, not every valid
//! key behind it. A key is named by its public id (the part before the
//! secret), so guessing one key's secret is what gets refused; requests with
//! no key or an unreadable one share one bucket per source.
//!
//! Memory is bounded: at most `limit` time stamps per pair and at most
//! `capacity` pairs; when full, entries whose failures have all left the
//! window go first, then the pair that failed least recently.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

/// How many (source, key) pairs are tracked at most. The limit and the
/// window come from the configuration (`[api]`, see `crate::config`).
pub const DEFAULT_CAPACITY: usize = 10_000;

/// Counts failed authentications per source and says when to refuse one.
#[derive(Debug)]
pub struct AuthFailureLimiter {
    limit: usize,
    window: Duration,
    capacity: usize,
    failures: HashMap<Attempt, VecDeque<Instant>>,
}

/// What failures are counted against: a source (see [`source_key`]) and the
/// key id it presented (empty for none).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Attempt {
    source: IpAddr,
    key_id: String,
}

/// The public id of a presented API key (`em_<id>_<secret>`), or the whole
/// credential's first bytes for other credentials; empty for none. Bounded,
/// so a huge header cannot inflate the table.
pub fn presented_key_id(credential: Option<&str>) -> &str {
    let Some(credential) = credential else {
        return "";
    };
    let id = credential
        .strip_prefix("em_")
        .and_then(|rest| rest.split_once('_'))
        .map_or("", |(id, _)| id);
    match id.char_indices().nth(64) {
        Some((end, _)) => &id[..end],
        None => id,
    }
}

/// The unit a limit applies to. An IPv6 host usually owns a whole /64, so
/// counting single addresses would let it rotate through 2^64 of them.
fn source_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

impl AuthFailureLimiter {
    /// A limiter allowing `limit` failures per `window`, tracking at most
    /// `capacity` sources. `limit` and `capacity` are at least 1.
    pub fn new(limit: usize, window: Duration, capacity: usize) -> Self {
        AuthFailureLimiter {
            limit: limit.max(1),
            window,
            capacity: capacity.max(1),
            failures: HashMap::new(),
        }
    }

    /// Failures allowed per window.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// How many (source, key) pairs are tracked now.
    pub fn tracked(&self) -> usize {
        self.failures.len()
    }

    /// `Ok` when `ip` may try to authenticate with the key `key_id` (see
    /// [`presented_key_id`]) at `now`, else how long it must wait.
    pub fn check(&mut self, ip: IpAddr, key_id: &str, now: Instant) -> Result<(), Duration> {
        let key = attempt(ip, key_id);
        let Some(times) = self.failures.get_mut(&key) else {
            return Ok(());
        };
        prune(times, now, self.window);
        if times.is_empty() {
            self.failures.remove(&key);
            return Ok(());
        }
        if times.len() < self.limit {
            return Ok(());
        }
        // Blocked until the oldest counted failure leaves the window.
        let oldest = times.front().copied().unwrap_or(now);
        Err((oldest + self.window).saturating_duration_since(now))
    }

    /// Counts a failed authentication by `ip` with `key_id` at `now`; returns
    /// true when this failure is the one that blocks the pair.
    pub fn record_failure(&mut self, ip: IpAddr, key_id: &str, now: Instant) -> bool {
        let key = attempt(ip, key_id);
        if !self.failures.contains_key(&key) && self.failures.len() >= self.capacity {
            self.make_room(now);
        }
        let times = self.failures.entry(key).or_default();
        prune(times, now, self.window);
        let was_blocked = times.len() >= self.limit;
        times.push_back(now);
        // Requests already past `check` when the limit was reached may still
        // fail; only the newest `limit` failures matter.
        while times.len() > self.limit {
            times.pop_front();
        }
        !was_blocked && times.len() >= self.limit
    }

    fn make_room(&mut self, now: Instant) {
        let window = self.window;
        self.failures.retain(|_, times| {
            prune(times, now, window);
            !times.is_empty()
        });
        if self.failures.len() < self.capacity {
            return;
        }
        let stalest = self
            .failures
            .iter()
            .min_by_key(|(_, times)| times.back().copied())
            .map(|(attempt, _)| attempt.clone());
        if let Some(attempt) = stalest {
            self.failures.remove(&attempt);
        }
    }
}

fn attempt(ip: IpAddr, key_id: &str) -> Attempt {
    Attempt {
        source: source_key(ip),
        key_id: key_id.to_string(),
    }
}

/// Drops failures that have left the window.
fn prune(times: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while times
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= window)
    {
        times.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn blocks_after_the_limit_until_the_window_passes() {
        let mut limiter = AuthFailureLimiter::new(3, Duration::from_secs(60), 100);
        let start = Instant::now();
        let a = ip("192.0.2.1");
        assert!(!limiter.record_failure(a, "k1", start));
        assert!(!limiter.record_failure(a, "k1", start + Duration::from_secs(1)));
        assert_eq!(
            limiter.check(a, "k1", start + Duration::from_secs(2)),
            Ok(())
        );
        assert!(limiter.record_failure(a, "k1", start + Duration::from_secs(2)));
        assert_eq!(
            limiter.check(a, "k1", start + Duration::from_secs(10)),
            Err(Duration::from_secs(50)),
            "blocked until the first failure is 60 s old"
        );
        assert_eq!(
            limiter.check(a, "k1", start + Duration::from_secs(60)),
            Ok(())
        );
        // Sliding: two failures are still in the window, one more blocks again.
        assert!(limiter.record_failure(a, "k1", start + Duration::from_secs(60)));
        assert_eq!(
            limiter.check(a, "k1", start + Duration::from_secs(60)),
            Err(Duration::from_secs(1))
        );
        assert_eq!(
            limiter.check(a, "k1", start + Duration::from_secs(200)),
            Ok(())
        );
        assert_eq!(limiter.tracked(), 0, "idle sources are forgotten");
    }

    #[test]
    fn sources_are_counted_apart() {
        let mut limiter = AuthFailureLimiter::new(2, Duration::from_secs(60), 100);
        let now = Instant::now();
        limiter.record_failure(ip("192.0.2.1"), "k1", now);
        limiter.record_failure(ip("192.0.2.1"), "k1", now);
        assert!(limiter.check(ip("192.0.2.1"), "k1", now).is_err());
        assert!(limiter.check(ip("192.0.2.2"), "k1", now).is_ok());
    }

    #[test]
    fn ipv6_is_counted_per_64_and_mapped_ipv4_as_ipv4() {
        let mut limiter = AuthFailureLimiter::new(2, Duration::from_secs(60), 100);
        let now = Instant::now();
        limiter.record_failure(ip("2001:db8:1:2::1"), "k1", now);
        limiter.record_failure(ip("2001:db8:1:2:ffff::9"), "k1", now);
        assert!(limiter.check(ip("2001:db8:1:2::77"), "k1", now).is_err());
        assert!(limiter.check(ip("2001:db8:1:3::1"), "k1", now).is_ok());

        limiter.record_failure(ip("::ffff:192.0.2.7"), "k1", now);
        limiter.record_failure(ip("192.0.2.7"), "k1", now);
        assert!(limiter.check(ip("192.0.2.7"), "k1", now).is_err());
    }

    #[test]
    fn a_locked_pair_leaves_other_keys_from_the_same_source_working() {
        let mut limiter = AuthFailureLimiter::new(2, Duration::from_secs(60), 100);
        let now = Instant::now();
        let nat = ip("203.0.113.9");
        limiter.record_failure(nat, "guessed", now);
        assert!(limiter.record_failure(nat, "guessed", now));
        assert!(limiter.check(nat, "guessed", now).is_err());
        assert!(limiter.check(nat, "valid", now).is_ok());
        assert!(limiter.check(nat, "", now).is_ok());
        assert!(limiter.check(ip("203.0.113.10"), "guessed", now).is_ok());
    }

    #[test]
    fn the_presented_key_id_is_the_public_part_and_bounded() {
        assert_eq!(presented_key_id(Some("em_ab12_secretsecret")), "ab12");
        assert_eq!(presented_key_id(Some("garbage")), "");
        assert_eq!(presented_key_id(None), "");
        let long = format!("em_{}_s", "x".repeat(1000));
        assert_eq!(presented_key_id(Some(&long)).len(), 64);
    }

    #[test]
    fn memory_stays_bounded() {
        let mut limiter = AuthFailureLimiter::new(3, Duration::from_secs(60), 50);
        let start = Instant::now();
        for i in 0..10_000u32 {
            let source = IpAddr::from(i.to_be_bytes());
            for _ in 0..5 {
                limiter.record_failure(source, "k1", start + Duration::from_millis(u64::from(i)));
            }
            assert!(limiter.tracked() <= 50);
        }
        // The most recent offender is still remembered and blocked.
        let last = IpAddr::from(9_999u32.to_be_bytes());
        assert!(limiter
            .check(last, "k1", start + Duration::from_secs(10))
            .is_err());
    }

    #[test]
    fn failures_while_blocked_do_not_extend_memory_or_report_again() {
        let mut limiter = AuthFailureLimiter::new(2, Duration::from_secs(60), 10);
        let now = Instant::now();
        let a = ip("198.51.100.1");
        assert!(!limiter.record_failure(a, "k1", now));
        assert!(limiter.record_failure(a, "k1", now));
        assert!(!limiter.record_failure(a, "k1", now), "already blocked");
        assert_eq!(limiter.failures[&attempt(a, "k1")].len(), 2);
    }
}
