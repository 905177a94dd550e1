//! The cache across restarts: written to a file in the state dir now and
//! then, read back at start with every TTL reduced by the wall-clock time
//! that passed, expired entries discarded.
//!
//! Format: JSON `{"version":1,"saved_at_unix_secs":N,"entries":[HEX…]}`,
//! each entry one DNS message in wire format (question, rcode, answer and
//! authority sections, TTLs as remaining at save time), so the records
//! round-trip through the same codec the server already trusts.
//! Encoding and decoding are pure; [`save`] and [`load`] do the file I/O
//! (atomically, see `state::atomic_file`).

use std::io;
use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Record};
use serde::{Deserialize, Serialize};

use super::cache::{Cache, CacheKey};
use crate::state::atomic_file;

const VERSION: u32 = 1;
/// A save time further in the future than this means the clock was
/// stepped back: the entries' ages are unknown, so they are dropped.
const CLOCK_SKEW_SECS: u64 = 60;

/// Why a cache file was not restored (the server then starts empty).
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// The file is not a cache file of this version.
    #[error("the DNS cache file is unreadable: {0}")]
    Format(String),
    /// The file was saved in the future: the clock went back.
    #[error("the DNS cache file was saved {0} s in the future; the clock was stepped back, cache dropped")]
    FromTheFuture(u64),
}

#[derive(Serialize, Deserialize)]
struct File {
    version: u32,
    saved_at_unix_secs: u64,
    entries: Vec<String>,
}

fn unix_secs(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// The cache's live entries as a cache file, as of `now` (`wall_now` on
/// the wall clock).
pub fn encode(cache: &Cache, now: Instant, wall_now: SystemTime) -> Vec<u8> {
    let entries = cache
        .live_entries(now)
        .filter_map(|(key, answer)| {
            let mut message = Message::new();
            let mut query = Query::query(key.name.clone(), key.qtype);
            query.set_query_class(DNSClass::IN);
            message
                .set_message_type(MessageType::Response)
                .set_response_code(answer.rcode)
                .add_query(query);
            message.insert_answers(answer.answers);
            message.insert_name_servers(answer.authority);
            message.to_vec().ok().map(hex::encode)
        })
        .collect();
    let file = File {
        version: VERSION,
        saved_at_unix_secs: unix_secs(wall_now),
        entries,
    };
    serde_json::to_vec(&file).unwrap_or_default()
}

/// Puts the entries of a cache file into `cache`, aged by the wall-clock
/// time since it was saved; returns how many are still live.
pub fn restore(
    cache: &mut Cache,
    bytes: &[u8],
    now: Instant,
    wall_now: SystemTime,
) -> Result<usize, PersistError> {
    let file: File =
        serde_json::from_slice(bytes).map_err(|e| PersistError::Format(e.to_string()))?;
    if file.version != VERSION {
        return Err(PersistError::Format(format!(
            "version {} (expected {VERSION})",
            file.version
        )));
    }
    let wall = unix_secs(wall_now);
    if file.saved_at_unix_secs > wall + CLOCK_SKEW_SECS {
        return Err(PersistError::FromTheFuture(file.saved_at_unix_secs - wall));
    }
    let elapsed = wall.saturating_sub(file.saved_at_unix_secs);
    let elapsed = u32::try_from(elapsed).unwrap_or(u32::MAX);
    let mut restored = 0;
    for entry in &file.entries {
        // One bad entry costs only itself.
        let Some(message) = hex::decode(entry)
            .ok()
            .and_then(|bytes| Message::from_vec(&bytes).ok())
        else {
            continue;
        };
        let Some(query) = message.query() else {
            continue;
        };
        let rcode = message.response_code();
        if rcode != ResponseCode::NoError && rcode != ResponseCode::NXDomain {
            continue;
        }
        let key = CacheKey::new(query.name(), query.query_type());
        let age = |records: &[Record]| -> Vec<Record> {
            records
                .iter()
                .map(|r| {
                    let mut r = r.clone();
                    r.set_ttl(r.ttl().saturating_sub(elapsed));
                    r
                })
                .collect()
        };
        let answers = age(message.answers());
        let authority = age(message.name_servers());
        if cache
            .insert(now, key, rcode, &answers, &authority)
            .is_some()
        {
            restored += 1;
        }
    }
    Ok(restored)
}

/// Writes a cache file atomically: a crash leaves the old file or the new.
pub fn save(path: &Path, bytes: &[u8]) -> io::Result<()> {
    atomic_file::write(path, bytes)
}

/// Reads a cache file; `None` if there is none yet.
pub fn load(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use hickory_proto::rr::rdata::{A, SOA};
    use hickory_proto::rr::{Name, RData, RecordType};

    use super::*;
    use crate::dns::cache::CacheLimits;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn filled(t0: Instant) -> Cache {
        let mut cache = Cache::new(CacheLimits::default());
        let a = |ttl| Record::from_rdata(name("www.ex."), ttl, RData::A(A::new(192, 0, 2, 7)));
        let key = CacheKey::new(&name("www.ex."), RecordType::A);
        cache.insert(t0, key, ResponseCode::NoError, &[a(300)], &[]);
        let soa = SOA::new(name("ns.ex."), name("h.ex."), 1, 1, 1, 1, 120);
        let soa = Record::from_rdata(name("ex."), 600, RData::SOA(soa));
        let key = CacheKey::new(&name("gone.ex."), RecordType::A);
        cache.insert(t0, key, ResponseCode::NXDomain, &[], &[soa]);
        let short = Record::from_rdata(name("short.ex."), 20, RData::A(A::new(192, 0, 2, 8)));
        let key = CacheKey::new(&name("short.ex."), RecordType::A);
        cache.insert(t0, key, ResponseCode::NoError, &[short], &[]);
        cache
    }

    #[test]
    fn a_restored_cache_is_aged_by_the_time_the_server_was_down() {
        let t0 = Instant::now();
        let wall0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        // Saved 10 s after caching; restored 50 s after the save.
        let bytes = encode(&filled(t0), t0 + Duration::from_secs(10), wall0);
        let t1 = Instant::now();
        let mut restored = Cache::new(CacheLimits::default());
        let wall1 = wall0 + Duration::from_secs(50);
        assert_eq!(restore(&mut restored, &bytes, t1, wall1).unwrap(), 2);
        let www = restored
            .get(t1, &CacheKey::new(&name("www.ex."), RecordType::A))
            .unwrap();
        assert_eq!(www.answers[0].ttl(), 240);
        let gone = restored
            .get(t1, &CacheKey::new(&name("gone.ex."), RecordType::A))
            .unwrap();
        assert_eq!(
            (gone.rcode, gone.authority[0].ttl()),
            (ResponseCode::NXDomain, 60)
        );
        let short = CacheKey::new(&name("short.ex."), RecordType::A);
        assert!(restored.get(t1, &short).is_none(), "expired while down");
    }

    #[test]
    fn a_file_from_the_future_or_garbage_restores_nothing() {
        let t0 = Instant::now();
        let wall0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let bytes = encode(&filled(t0), t0, wall0);
        let mut cache = Cache::new(CacheLimits::default());
        let past = wall0 - Duration::from_secs(3600);
        assert!(matches!(
            restore(&mut cache, &bytes, t0, past),
            Err(PersistError::FromTheFuture(3600))
        ));
        assert!(restore(&mut cache, b"{not json", t0, wall0).is_err());
        let bad_entry = br#"{"version":1,"saved_at_unix_secs":1,"entries":["zz","00"]}"#;
        assert_eq!(restore(&mut cache, bad_entry, t0, wall0).unwrap(), 0);
        assert!(cache.is_empty());
    }

    #[test]
    fn save_and_load_round_trip_through_the_state_dir() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dns-cache.json");
        assert_eq!(load(&path).unwrap(), None);
        save(&path, b"{}").unwrap();
        assert_eq!(load(&path).unwrap().as_deref(), Some(&b"{}"[..]));
    }
}
