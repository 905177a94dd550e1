//! The window of blob requests in flight on the link, sans-IO: the link
//! tells it what it asked and what came back, with the time, and asks it how
//! many more pieces it may ask for now and when to look again. The pieces
//! themselves and their bytes on disk are [`super::cache`]'s.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use edgemetal_protocol::BlobRequest;

use super::cache::CHUNK_BYTES;

/// Fewest chunks kept in flight.
pub const MIN_WINDOW: usize = 8;
/// Most chunks kept in flight: 64 MiB, twice the bandwidth-delay product
/// of 100 MB/s at 300 ms RTT. (At 64 the window was about one BDP at that
/// rate, so any queueing delay on the path cost throughput: 73 % of the
/// 0 ms rate in the benchmark.) In-flight chunks are bytes on the path, not
/// memory in the rack: the region reads each when asked, the rack writes each
/// as it comes. They do sit in the embedded broker's queue, inside the
/// region process, which is most of the region's RSS growth during sync.
pub const MAX_WINDOW: usize = 128;
/// The delivery rate estimate is the highest sample of the last one or two
/// periods of this long (or four round trips, if longer).
const RATE_PERIOD: Duration = Duration::from_secs(1);

/// A piece of a blob: its sha256 and offset.
pub type Piece = ([u8; 32], u64);

/// One request sent and not answered yet.
#[derive(Debug, Clone)]
struct Asked {
    sha256: [u8; 32],
    offset: u64,
    at: Instant,
    /// Answers that came for requests asked after this one.
    overtaken: usize,
    /// Bytes delivered when it was asked, and when the last of them came.
    delivered: u64,
    delivered_at: Instant,
}

/// The blob requests in flight on the link: as many as the path's
/// bandwidth × delay needs, at most [`MAX_WINDOW`], paced by an optional
/// [`TokenBucket`]. Sans-IO: the link feeds it times and answers.
///
/// The window is twice the estimated bandwidth-delay product (the highest
/// recent delivery rate × the lowest round trip), so it doubles each round
/// trip until the path is full and then keeps about one round trip queued.
/// A request is lost when [`MAX_WINDOW`] later ones were answered before it
/// (the region answers in order), or when nothing arrived for `retry`
/// since it was asked; it is then asked again.
#[derive(Debug)]
pub struct FetchWindow {
    retry: Duration,
    asked: Vec<Asked>,
    paused: HashMap<[u8; 32], Instant>,
    last_arrival: Option<Instant>,
    min_rtt: Option<Duration>,
    delivered: u64,
    /// Highest delivery rates (bytes/s) of this period and the one before.
    rates: (f64, f64),
    period_start: Instant,
    bucket: Option<TokenBucket>,
}

impl FetchWindow {
    /// A window that re-asks after `retry`, paced to `rate_limit` bytes per second.
    pub fn new(retry: Duration, rate_limit: Option<u64>, now: Instant) -> Self {
        FetchWindow {
            retry,
            asked: Vec::new(),
            paused: HashMap::new(),
            last_arrival: None,
            min_rtt: None,
            delivered: 0,
            rates: (0.0, 0.0),
            period_start: now,
            bucket: rate_limit.map(|rate| TokenBucket::new(rate, now)),
        }
    }

    /// Forgets what is in flight (a new connection: the old one's answers are lost).
    pub fn reset(&mut self) {
        self.asked.clear();
        self.min_rtt = None;
        self.rates = (0.0, 0.0);
    }

    /// How many chunks may be in flight now.
    pub fn window(&self) -> usize {
        let Some(rtt) = self.min_rtt else {
            return MIN_WINDOW;
        };
        let rate = self.rates.0.max(self.rates.1);
        let bdp = rate * rtt.as_secs_f64() / CHUNK_BYTES as f64;
        ((2.0 * bdp).ceil() as usize).clamp(MIN_WINDOW, MAX_WINDOW)
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.asked.len()
    }

    /// The pieces in flight and paused blobs, to leave out of the next requests.
    pub fn skip_list(&self, now: Instant) -> (Vec<Piece>, Vec<[u8; 32]>) {
        let asked = self.asked.iter().map(|a| (a.sha256, a.offset)).collect();
        let paused = self
            .paused
            .iter()
            .filter(|(_, until)| now < **until)
            .map(|(sha, _)| *sha)
            .collect();
        (asked, paused)
    }

    /// Drops the requests deemed lost; then how many may be asked now
    /// (room in the window, and tokens in the bucket).
    pub fn room(&mut self, now: Instant) -> usize {
        let progress = self.last_arrival;
        let retry = self.retry;
        self.asked.retain(|a| {
            let quiet_since = progress.map_or(a.at, |p| p.max(a.at));
            a.overtaken <= MAX_WINDOW && now.saturating_duration_since(quiet_since) < retry
        });
        self.paused.retain(|_, until| now < *until);
        let room = self.window().saturating_sub(self.asked.len());
        match &mut self.bucket {
            Some(bucket) => room.min(bucket.available(now, CHUNK_BYTES as u64)),
            None => room,
        }
    }

    /// Records a request as sent.
    pub fn asked(&mut self, request: &BlobRequest, now: Instant) {
        if let Some(bucket) = &mut self.bucket {
            bucket.take(now, request.len as u64);
        }
        // Idle until now, the delivery rate is measured from now.
        let delivered_at = match (self.asked.is_empty(), self.last_arrival) {
            (false, Some(last)) => last,
            _ => now,
        };
        self.asked.push(Asked {
            sha256: request.sha256,
            offset: request.offset,
            at: now,
            overtaken: 0,
            delivered: self.delivered,
            delivered_at,
        });
    }

    /// Records an answer of `bytes` to the piece at `offset` of `sha256`.
    ///
    /// Each answer is a delivery rate sample: the bytes delivered since the
    /// request was asked over the time since the last delivery before it
    /// (never shorter than its round trip).
    pub fn answered(&mut self, sha256: &[u8; 32], offset: u64, bytes: u64, now: Instant) {
        self.last_arrival = Some(now);
        let Some(index) = self
            .asked
            .iter()
            .position(|a| a.sha256 == *sha256 && a.offset == offset)
        else {
            return;
        };
        let answered = self.asked.remove(index);
        for earlier in &mut self.asked[..index] {
            earlier.overtaken += 1;
        }
        self.delivered += bytes;
        let rtt = now.saturating_duration_since(answered.at);
        let min_rtt = *self.min_rtt.get_or_insert(rtt);
        self.min_rtt = Some(min_rtt.min(rtt));
        let interval = now.saturating_duration_since(answered.delivered_at);
        if !interval.is_zero() {
            let rate = (self.delivered - answered.delivered) as f64 / interval.as_secs_f64();
            if now.saturating_duration_since(self.period_start) >= RATE_PERIOD.max(4 * min_rtt) {
                self.rates = (0.0, self.rates.0);
                self.period_start = now;
            }
            self.rates.0 = self.rates.0.max(rate);
        }
    }

    /// The region lacks `sha256`: its requests are answered, and it is not
    /// asked for again before `retry` has passed.
    pub fn missing(&mut self, sha256: &[u8; 32], now: Instant) {
        self.last_arrival = Some(now);
        self.asked.retain(|a| a.sha256 != *sha256);
        self.paused.insert(*sha256, now + self.retry);
    }

    /// When the link should look again without an answer arriving: when the
    /// bucket has a chunk's tokens (if more is `wanted`), or the oldest
    /// request would be lost.
    pub fn wake_at(&self, wanted: bool, now: Instant) -> Option<Instant> {
        let refill = self
            .bucket
            .as_ref()
            .filter(|_| wanted && self.asked.len() < self.window())
            .map(|b| b.ready_at(now, CHUNK_BYTES as u64));
        let lost = self
            .asked
            .iter()
            .map(|a| self.last_arrival.map_or(a.at, |p| p.max(a.at)) + self.retry)
            .min();
        let paused = self.paused.values().min().copied();
        [refill, lost, paused].into_iter().flatten().min()
    }
}

/// A token bucket of bytes: `rate` per second, holding at most an eighth
/// of a second's worth (and at least one chunk).
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket of `rate` bytes per second.
    pub fn new(rate: u64, now: Instant) -> Self {
        let capacity = (rate as f64 / 8.0).max(CHUNK_BYTES as f64);
        TokenBucket {
            rate: rate.max(1) as f64,
            capacity,
            tokens: capacity,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.at = now;
    }

    /// How many pieces of `cost` bytes may be taken now.
    pub fn available(&mut self, now: Instant, cost: u64) -> usize {
        self.refill(now);
        (self.tokens / cost.max(1) as f64).floor().max(0.0) as usize
    }

    /// Takes `cost` bytes' tokens.
    pub fn take(&mut self, now: Instant, cost: u64) {
        self.refill(now);
        self.tokens -= cost as f64;
    }

    /// When `cost` bytes' tokens will be there.
    pub fn ready_at(&self, now: Instant, cost: u64) -> Instant {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        let tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        let lacking = (cost as f64 - tokens).max(0.0);
        now + Duration::from_secs_f64(lacking / self.rate)
    }
}

#[cfg(test)]
#[path = "window_tests.rs"]
mod tests;
