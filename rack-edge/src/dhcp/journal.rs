//! Crash-safe persistence of the lease table: an append-only log of JSON lines.
//!
//! The engine emits a [`JournalRecord`] for every durable change, ahead of the
//! reply that makes it visible to the client; the adapter appends it here
//! (one `fdatasync` per batch) before sending that reply. A client is thus
//! never told about a lease that a crash could make the rack forget, and
//! hand to another machine.
//!
//! Each record is the lease's full new state, so replay is "last record per
//! address wins" and needs no knowledge of the transitions. A crash mid-append
//! leaves at most one torn last line: replay ignores it and cuts it off, so
//! the next append starts on a clean line. Offers are never journaled: an
//! offer lost in a crash costs the client one more DISCOVER.
//!
//! The log is compacted (the live table rewritten to a new file, then
//! atomically renamed over the old one) once it passes a record count.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::leases::{Lease, LeaseState, LeaseTable};
use crate::state::atomic_file;

/// One durable change to the lease table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", content = "lease", rename_all = "snake_case")]
pub enum JournalRecord {
    /// A lease was granted or renewed (state `Bound`).
    Bind(Lease),
    /// The client gave the address back (state `Released`).
    Release(Lease),
    /// The address was found in use and is quarantined (state `Declined`).
    Decline(Lease),
    /// A binding ran out (state `Expired`).
    Expire(Lease),
}

impl JournalRecord {
    /// The lease as it is after the change.
    pub fn lease(&self) -> &Lease {
        match self {
            JournalRecord::Bind(lease)
            | JournalRecord::Release(lease)
            | JournalRecord::Decline(lease)
            | JournalRecord::Expire(lease) => lease,
        }
    }

    /// The record that recreates `lease` on replay; `None` for offers.
    pub fn for_lease(lease: &Lease) -> Option<Self> {
        let lease = lease.clone();
        Some(match lease.state {
            LeaseState::Offered => return None,
            LeaseState::Bound => JournalRecord::Bind(lease),
            LeaseState::Released => JournalRecord::Release(lease),
            LeaseState::Expired => JournalRecord::Expire(lease),
            LeaseState::Declined => JournalRecord::Decline(lease),
        })
    }

    /// One record per lease of `table` (offers left out): what a compacted
    /// journal holds.
    pub fn live(table: &LeaseTable) -> Vec<JournalRecord> {
        table.iter().filter_map(JournalRecord::for_lease).collect()
    }

    /// Applies the change to `table`.
    pub fn apply(&self, table: &mut LeaseTable) {
        table.insert(self.lease().clone());
    }
}

/// What replay found.
#[derive(Debug, Default)]
pub struct Replayed {
    /// The lease table as of the last durable record.
    pub leases: LeaseTable,
    /// Records applied.
    pub records: usize,
    /// Whether a torn last record was found and cut off.
    pub torn_tail: bool,
    /// Complete lines in the middle of the log that did not decode (disk
    /// corruption, not a crash); skipped so that the rack keeps serving.
    pub corrupt: usize,
}

/// The lease journal file.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    /// Records in the file, replayed or appended since the last compaction.
    records: usize,
    /// Records the last compaction (or the replay at open) left.
    live: usize,
    compact_after: usize,
}

impl Journal {
    /// Opens (or creates) the journal at `path` and replays it. The journal
    /// asks for compaction once it has grown by more than `compact_after`
    /// records and by more than it held after the last compaction.
    pub fn open(path: &Path, compact_after: usize) -> io::Result<(Journal, Replayed)> {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        std::fs::create_dir_all(dir)?;
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)?;
        // A new file's directory entry must be durable too, or the first
        // fsynced records could vanish with it.
        File::open(dir)?.sync_all()?;
        let bytes = std::fs::read(path)?;
        let (replayed, good_len) = replay(&bytes);
        if good_len < bytes.len() {
            // Cut the torn tail, or the next record would be glued onto it.
            file.set_len(good_len as u64)?;
            file.sync_all()?;
        }
        let journal = Journal {
            path: path.to_path_buf(),
            file,
            records: replayed.records + replayed.corrupt,
            live: replayed.leases.len(),
            compact_after,
        };
        Ok((journal, replayed))
    }

    /// Appends `records` and makes them durable with one `fdatasync`. Only
    /// after `Ok` may the replies that follow them be sent.
    pub fn append(&mut self, records: &[JournalRecord]) -> io::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut buffer = Vec::new();
        for record in records {
            serde_json::to_writer(&mut buffer, record).map_err(io::Error::other)?;
            buffer.push(b'\n');
        }
        let before = self.file.metadata()?.len();
        let written = self
            .file
            .write_all(&buffer)
            .and_then(|()| self.file.sync_data());
        if let Err(error) = written {
            // A partial write (disk full) must not leave half a line for the
            // next append to continue; best effort, replay copes otherwise.
            let _ = self.file.set_len(before);
            return Err(error);
        }
        self.records += records.len();
        Ok(())
    }

    /// Whether the log has grown past its compaction threshold. The
    /// threshold grows with the table: a fixed one would have every batch
    /// rewrite the whole table once it holds more leases than the threshold
    /// (that was the DHCP server's ceiling at 50,000 clients). Growing by
    /// the live size keeps the rewriting amortised O(1) per record and the
    /// file under about twice its live size.
    pub fn needs_compaction(&self) -> bool {
        self.records.saturating_sub(self.live) > self.compact_after.max(self.live)
    }

    /// Records in the log.
    pub fn records(&self) -> usize {
        self.records
    }

    /// Rewrites the log as `live` (see [`JournalRecord::live`]), atomically
    /// replacing the old log.
    pub fn compact(&mut self, live: &[JournalRecord]) -> io::Result<()> {
        // Streamed: at 50,000 leases a buffer of the whole file was the
        // rack's largest allocation.
        atomic_file::write_streamed(&self.path, |file| {
            for record in live {
                serde_json::to_writer(&mut *file, record).map_err(io::Error::other)?;
                file.write_all(b"\n")?;
            }
            Ok(())
        })?;
        let records = live.len();
        // The old handle points at the replaced file; appends go to the new one.
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        self.records = records;
        self.live = records;
        Ok(())
    }
}

/// Replays `bytes`; also returns the length of the well-formed prefix.
fn replay(bytes: &[u8]) -> (Replayed, usize) {
    let mut replayed = Replayed::default();
    let mut good_len = 0;
    let mut offset = 0;
    let mut pending_corrupt = 0;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        let Some(newline) = rest.iter().position(|&b| b == b'\n') else {
            // A line without its newline is the one a crash interrupted.
            replayed.torn_tail = true;
            break;
        };
        let line = &rest[..newline];
        offset += newline + 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<JournalRecord>(line) {
            Ok(record) => {
                record.apply(&mut replayed.leases);
                replayed.records += 1;
                replayed.corrupt += pending_corrupt;
                pending_corrupt = 0;
                good_len = offset;
            }
            // Only known to be corruption once a good record follows it.
            Err(_) => pending_corrupt += 1,
        }
    }
    if pending_corrupt > 0 {
        // Garbage at the very end (e.g. zeros after a crash) is a torn tail too.
        replayed.torn_tail = true;
    }
    if !replayed.torn_tail {
        good_len = bytes.len();
    }
    (replayed, good_len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgemetal_protocol::MacAddress;
    use std::net::Ipv4Addr;

    use crate::dhcp::leases::ClientId;

    fn lease(n: u8, state: LeaseState) -> Lease {
        let mac = MacAddress([2, 0, 0, 0, 0, n]);
        Lease {
            client_id: ClientId::from_mac(mac),
            mac,
            address: Ipv4Addr::new(10, 0, 0, n),
            subnet_id: "s1".into(),
            expires_at: 1000 + u64::from(n),
            state,
        }
    }

    fn bind(n: u8) -> JournalRecord {
        JournalRecord::Bind(lease(n, LeaseState::Bound))
    }

    #[test]
    fn appended_records_replay_into_the_same_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leases.jsonl");
        let (mut journal, replayed) = Journal::open(&path, 100).unwrap();
        assert!(replayed.leases.is_empty());
        journal.append(&[bind(1), bind(2)]).unwrap();
        journal
            .append(&[JournalRecord::Release(lease(1, LeaseState::Released))])
            .unwrap();
        journal
            .append(&[JournalRecord::Decline(lease(3, LeaseState::Declined))])
            .unwrap();
        drop(journal);
        let (_, replayed) = Journal::open(&path, 100).unwrap();
        assert_eq!(replayed.records, 4);
        assert!(!replayed.torn_tail);
        let table = replayed.leases;
        assert_eq!(table.len(), 3);
        assert_eq!(
            table.get(Ipv4Addr::new(10, 0, 0, 1)).unwrap().state,
            LeaseState::Released
        );
        assert_eq!(
            table.get(Ipv4Addr::new(10, 0, 0, 2)),
            Some(&lease(2, LeaseState::Bound))
        );
        assert!(table
            .get(Ipv4Addr::new(10, 0, 0, 3))
            .unwrap()
            .is_quarantined(0));
    }

    #[test]
    fn a_torn_last_record_is_ignored_and_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leases.jsonl");
        let (mut journal, _) = Journal::open(&path, 100).unwrap();
        journal.append(&[bind(1), bind(2)]).unwrap();
        drop(journal);
        // Kill-like: the second record lost its last bytes and its newline.
        let full = std::fs::read(&path).unwrap();
        std::fs::write(&path, &full[..full.len() - 7]).unwrap();

        let (mut journal, replayed) = Journal::open(&path, 100).unwrap();
        assert!(replayed.torn_tail);
        assert_eq!(replayed.records, 1);
        assert!(replayed.leases.get(Ipv4Addr::new(10, 0, 0, 2)).is_none());
        journal.append(&[bind(3)]).unwrap();
        drop(journal);
        let (_, replayed) = Journal::open(&path, 100).unwrap();
        assert!(
            !replayed.torn_tail,
            "the tail was cut, the next append is clean"
        );
        assert_eq!(replayed.records, 2);
        assert_eq!(replayed.corrupt, 0);
    }

    #[test]
    fn garbage_at_the_end_is_a_torn_tail_and_in_the_middle_is_skipped() {
        let good = serde_json::to_string(&bind(1)).unwrap();
        let other = serde_json::to_string(&bind(2)).unwrap();
        let (replayed, len) = replay(format!("{good}\n\0\0\0\n").as_bytes());
        assert!(replayed.torn_tail);
        assert_eq!(len, good.len() + 1);
        let text = format!("{good}\n{{\"op\":\n{other}\n");
        let (replayed, len) = replay(text.as_bytes());
        assert_eq!(
            (replayed.records, replayed.corrupt, replayed.torn_tail),
            (2, 1, false)
        );
        assert_eq!(len, text.len());
    }

    #[test]
    fn compaction_keeps_the_live_table_and_resets_the_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leases.jsonl");
        let (mut journal, _) = Journal::open(&path, 3).unwrap();
        for _ in 0..3 {
            journal.append(&[bind(1), bind(2)]).unwrap();
        }
        assert!(journal.needs_compaction());
        let mut live = LeaseTable::new();
        bind(1).apply(&mut live);
        bind(2).apply(&mut live);
        live.insert(lease(9, LeaseState::Offered));
        journal.compact(&JournalRecord::live(&live)).unwrap();
        assert_eq!(journal.records(), 2, "offers are not journaled");
        assert!(!journal.needs_compaction());
        journal
            .append(&[JournalRecord::Expire(lease(2, LeaseState::Expired))])
            .unwrap();
        assert!(
            !journal.needs_compaction(),
            "compacted once, not every batch"
        );
        drop(journal);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
        let (journal, replayed) = Journal::open(&path, 3).unwrap();
        assert_eq!(journal.records(), 3);
        assert_eq!(replayed.leases.len(), 2);
        let expired = replayed.leases.get(Ipv4Addr::new(10, 0, 0, 2)).unwrap();
        assert_eq!(expired.state, LeaseState::Expired);
    }

    #[test]
    fn a_table_larger_than_the_threshold_is_not_rewritten_on_every_append() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leases.jsonl");
        let (mut journal, _) = Journal::open(&path, 2).unwrap();
        let mut live = LeaseTable::new();
        let mut compactions = 0;
        for n in 1..=100u8 {
            journal.append(&[bind(n)]).unwrap();
            bind(n).apply(&mut live);
            if journal.needs_compaction() {
                journal.compact(&JournalRecord::live(&live)).unwrap();
                compactions += 1;
            }
        }
        // Doubling thresholds: 100 distinct leases need a handful, not ~98.
        assert!(compactions <= 7, "{compactions} compactions");
        assert!(journal.records() <= 2 * live.len() + 2);
    }
}
