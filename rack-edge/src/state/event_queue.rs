//! Events the region must hear about (leases, discoveries), queued on disk
//! until the region acknowledges them, so that a cut link or a restart loses
//! none and they arrive in order.
//!
//! `events.jsonl` holds the events appended since its last compaction, one
//! JSON line each, fsynced per batch. Memory holds only where each pending
//! event's line is (a few words per event): a rack cut off from its region
//! while DHCP hands out thousands of leases a second queues them on disk,
//! not in RAM. Batches for the link are read back from the file.
//!
//! Ids grow by one per event and survive restarts: `events-next-id` holds
//! one past the last event ever queued, `events-acked` the highest id the
//! region acknowledged. Acks only move the head; the file is rewritten
//! (atomically, by copying its pending tail) once it has grown to twice
//! what is still pending, so trimming costs in proportion to what is
//! written, and emptied once nothing is pending.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use edgemetal_protocol::{RackEvent, RackEventKind};
use tokio::sync::Notify;

use super::atomic_file;

/// Slack before a compaction, so that a small queue is not rewritten on every ack.
const COMPACT_SLACK_BYTES: u64 = 1024 * 1024;

/// Where one pending event's line is in the file.
#[derive(Debug, Clone, Copy)]
struct Entry {
    id: u64,
    offset: u64,
    /// The line's length, newline included.
    len: u32,
    /// Roughly how many bytes the event takes in a link message.
    payload: u32,
}

/// The queue file and the index of its pending events.
pub struct EventQueue {
    path: PathBuf,
    next_id_path: PathBuf,
    acked_path: PathBuf,
    file: File,
    file_bytes: u64,
    pending: VecDeque<Entry>,
    pending_bytes: u64,
    next_id: u64,
    acked: u64,
}

fn read_number(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

impl EventQueue {
    /// Opens the queue in `state_dir`; a torn last line (a crash mid-write)
    /// and acknowledged events are dropped.
    pub fn open(state_dir: &Path) -> io::Result<EventQueue> {
        let path = state_dir.join("events.jsonl");
        let next_id_path = state_dir.join("events-next-id");
        let acked_path = state_dir.join("events-acked");
        let acked = read_number(&acked_path).unwrap_or(0);
        let mut next_id = read_number(&next_id_path).unwrap_or(1).max(acked + 1);
        let mut pending = VecDeque::new();
        let mut kept_bytes = 0u64;
        // Rewritten at once (a torn tail must not run into the next append),
        // a line at a time: a rack that was cut off for long may find a
        // queue far larger than its memory should hold.
        let old = File::open(&path).ok().map(BufReader::new);
        atomic_file::write_streamed(&path, |out| {
            let Some(mut old) = old else { return Ok(()) };
            let mut line = Vec::new();
            loop {
                line.clear();
                if old.read_until(b'\n', &mut line)? == 0 {
                    return Ok(());
                }
                let text = line.strip_suffix(b"\n").unwrap_or(&line);
                if text.is_empty() {
                    continue;
                }
                match serde_json::from_slice::<RackEvent>(text) {
                    Ok(event) if event.id > acked => {
                        next_id = next_id.max(event.id + 1);
                        pending.push_back(Entry {
                            id: event.id,
                            offset: kept_bytes,
                            len: text.len() as u32 + 1,
                            payload: payload_bytes(&event) as u32,
                        });
                        out.write_all(text)?;
                        out.write_all(b"\n")?;
                        kept_bytes += text.len() as u64 + 1;
                    }
                    Ok(_) => {}
                    Err(_) => tracing::warn!("dropping an unreadable queued event line"),
                }
            }
        })?;
        atomic_file::write(&next_id_path, next_id.to_string().as_bytes())?;
        let file = OpenOptions::new().read(true).append(true).open(&path)?;
        Ok(EventQueue {
            path,
            next_id_path,
            acked_path,
            file,
            file_bytes: kept_bytes,
            pending_bytes: kept_bytes,
            pending,
            next_id,
            acked,
        })
    }

    /// Queues events durably (one fsync for the batch).
    pub fn push(&mut self, at_ms: u64, kinds: Vec<RackEventKind>) -> io::Result<()> {
        if kinds.is_empty() {
            return Ok(());
        }
        let mut buffer = Vec::new();
        let mut added = Vec::with_capacity(kinds.len());
        for kind in kinds {
            let event = RackEvent {
                id: self.next_id,
                at_ms,
                kind,
            };
            self.next_id += 1;
            let start = buffer.len();
            serde_json::to_writer(&mut buffer, &event).map_err(io::Error::other)?;
            buffer.push(b'\n');
            added.push(Entry {
                id: event.id,
                offset: self.file_bytes + start as u64,
                len: (buffer.len() - start) as u32,
                payload: payload_bytes(&event) as u32,
            });
        }
        self.file.write_all(&buffer)?;
        self.file.sync_data()?;
        self.file_bytes += buffer.len() as u64;
        self.pending_bytes += buffer.len() as u64;
        self.pending.extend(added);
        Ok(())
    }

    /// The events of `entries` (consecutive in the file), read back.
    fn read(&self, entries: &[Entry]) -> Vec<RackEvent> {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return Vec::new();
        };
        let mut bytes = vec![0u8; (last.offset + u64::from(last.len) - first.offset) as usize];
        if let Err(error) = self.file.read_exact_at(&mut bytes, first.offset) {
            tracing::error!(%error, "cannot read queued events back");
            return Vec::new();
        }
        bytes
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .filter_map(|line| serde_json::from_slice(line).ok())
            .collect()
    }

    /// Pending events with an id above `after`, oldest first, at most `limit`.
    pub fn pending_after(&self, after: u64, limit: usize) -> Vec<RackEvent> {
        self.pending_batch(after, limit, usize::MAX)
    }

    /// Like [`EventQueue::pending_after`], but stops before the batch's
    /// payload would pass `max_bytes` (always at least one event), so that
    /// bulky events (commissioning results) fit in one link message.
    pub fn pending_batch(&self, after: u64, limit: usize, max_bytes: usize) -> Vec<RackEvent> {
        let mut bytes = 0usize;
        let mut batch = Vec::new();
        for entry in self.pending.iter().filter(|e| e.id > after).take(limit) {
            bytes = bytes.saturating_add(entry.payload as usize);
            if !batch.is_empty() && bytes > max_bytes {
                break;
            }
            batch.push(*entry);
        }
        self.read(&batch)
    }

    /// The highest acknowledged id: everything up to it is acknowledged.
    pub fn acked(&self) -> u64 {
        self.pending
            .front()
            .map(|e| e.id - 1)
            .unwrap_or(self.next_id - 1)
            .max(self.acked)
    }

    /// Forgets every event up to and including `up_to`.
    pub fn ack(&mut self, up_to: u64) -> io::Result<()> {
        let up_to = up_to.min(self.next_id - 1);
        if up_to <= self.acked {
            return Ok(());
        }
        self.acked = up_to;
        while self.pending.front().is_some_and(|e| e.id <= up_to) {
            if let Some(entry) = self.pending.pop_front() {
                self.pending_bytes -= u64::from(entry.len);
            }
        }
        atomic_file::write(&self.acked_path, self.acked.to_string().as_bytes())?;
        // Emptied, the file goes (nothing to copy); otherwise once it is
        // mostly acknowledged events.
        if self.pending.is_empty() || self.file_bytes > 2 * self.pending_bytes + COMPACT_SLACK_BYTES
        {
            self.compact()?;
        }
        Ok(())
    }

    /// Rewrites the file with only the pending tail.
    fn compact(&mut self) -> io::Result<()> {
        // The next id must outlive the events that carried it.
        atomic_file::write(&self.next_id_path, self.next_id.to_string().as_bytes())?;
        let base = self.pending.front().map_or(self.file_bytes, |e| e.offset);
        let tail_bytes = self.file_bytes - base;
        let mut old = self.file.try_clone()?;
        old.seek(SeekFrom::Start(base))?;
        atomic_file::write_streamed(&self.path, |out| {
            let copied = io::copy(&mut old.take(tail_bytes), out)?;
            if copied < tail_bytes {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the queue file is shorter than its index",
                ));
            }
            Ok(())
        })?;
        self.file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&self.path)?;
        self.file_bytes = tail_bytes;
        for entry in &mut self.pending {
            entry.offset -= base;
        }
        Ok(())
    }

    /// Number of pending events.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

/// Roughly how many bytes an event takes in a link message.
fn payload_bytes(event: &RackEvent) -> usize {
    match &event.kind {
        RackEventKind::CommissioningResults(results) => {
            results
                .outputs
                .iter()
                .map(|o| o.data.len() + o.name.len())
                .sum::<usize>()
                + 256
        }
        _ => 128,
    }
}

/// The queue shared by the services that produce events and the link that
/// delivers them; `added` wakes the link.
pub struct SharedQueue {
    /// The queue.
    pub queue: Mutex<EventQueue>,
    /// Signalled after every push.
    pub added: Notify,
}

impl SharedQueue {
    /// Wraps a queue.
    pub fn new(queue: EventQueue) -> Arc<SharedQueue> {
        Arc::new(SharedQueue {
            queue: Mutex::new(queue),
            added: Notify::new(),
        })
    }

    /// Queues events durably and wakes the link.
    pub fn push(&self, at_ms: u64, kinds: Vec<RackEventKind>) -> io::Result<()> {
        let result = self
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(at_ms, kinds);
        self.added.notify_one();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgemetal_protocol::Discovery;

    fn discovery(n: u8) -> RackEventKind {
        RackEventKind::Discovery(Discovery {
            mac: edgemetal_protocol::MacAddress([0, 0, 0, 0, 0, n]),
            arch: Some(7),
        })
    }

    #[test]
    fn events_survive_a_restart_in_order_until_acked_and_ids_never_repeat() {
        let dir = tempfile::tempdir().unwrap();
        let mut queue = EventQueue::open(dir.path()).unwrap();
        queue
            .push(1, vec![discovery(1), discovery(2), discovery(3)])
            .unwrap();
        let reopened = EventQueue::open(dir.path()).unwrap();
        let ids: Vec<u64> = reopened.pending_after(0, 10).iter().map(|e| e.id).collect();
        assert_eq!(ids, vec![1, 2, 3]);
        let mut queue = reopened;
        queue.ack(2).unwrap();
        assert_eq!(queue.acked(), 2);
        queue.ack(3).unwrap();
        assert!(queue.is_empty());
        let mut reopened = EventQueue::open(dir.path()).unwrap();
        reopened.push(2, vec![discovery(4)]).unwrap();
        assert_eq!(
            reopened.pending_after(0, 10)[0].id,
            4,
            "ids continue after an ack emptied the queue"
        );
    }

    #[test]
    fn a_torn_last_line_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut queue = EventQueue::open(dir.path()).unwrap();
        queue.push(1, vec![discovery(1)]).unwrap();
        let mut file = OpenOptions::new()
            .append(true)
            .open(dir.path().join("events.jsonl"))
            .unwrap();
        file.write_all(b"{\"id\":2,\"at_ms\":").unwrap();
        let reopened = EventQueue::open(dir.path()).unwrap();
        assert_eq!(reopened.len(), 1);
    }

    #[test]
    fn acks_compact_the_file_and_memory_holds_no_events() {
        let dir = tempfile::tempdir().unwrap();
        let mut queue = EventQueue::open(dir.path()).unwrap();
        for n in 0..200u32 {
            queue
                .push(u64::from(n), (0..100).map(|i| discovery(i as u8)).collect())
                .unwrap();
        }
        assert_eq!(queue.len(), 20_000);
        let batch = queue.pending_batch(19_990, 100, usize::MAX);
        assert_eq!(
            batch.iter().map(|e| e.id).collect::<Vec<_>>(),
            (19_991..=20_000).collect::<Vec<_>>()
        );
        let size = |queue: &EventQueue| std::fs::metadata(&queue.path).unwrap().len();
        let before = size(&queue);
        queue.ack(19_000).unwrap();
        assert!(
            size(&queue) < before / 10,
            "the acknowledged head is gone from the file"
        );
        assert_eq!(
            queue.pending_after(0, 1)[0].id,
            19_001,
            "offsets follow the rewrite"
        );
        queue.push(9, vec![discovery(9)]).unwrap();
        let reopened = EventQueue::open(dir.path()).unwrap();
        assert_eq!(reopened.len(), 1_001);
        assert_eq!(reopened.acked(), 19_000);
        assert_eq!(reopened.pending_after(20_000, 5)[0].id, 20_001);
    }

    #[test]
    fn an_ack_survives_a_restart_without_a_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let mut queue = EventQueue::open(dir.path()).unwrap();
        queue.push(1, vec![discovery(1), discovery(2)]).unwrap();
        queue.ack(1).unwrap();
        let reopened = EventQueue::open(dir.path()).unwrap();
        let ids: Vec<u64> = reopened.pending_after(0, 10).iter().map(|e| e.id).collect();
        assert_eq!(ids, vec![2]);
        let mut queue = reopened;
        queue.ack(2).unwrap();
        let file = dir.path().join("events.jsonl");
        assert_eq!(
            std::fs::metadata(&file).unwrap().len(),
            0,
            "emptied once all is acked"
        );
    }

    #[test]
    fn pushing_after_a_torn_line_keeps_every_event_readable() {
        let dir = tempfile::tempdir().unwrap();
        let mut queue = EventQueue::open(dir.path()).unwrap();
        queue.push(1, vec![discovery(1)]).unwrap();
        drop(queue);
        let mut file = OpenOptions::new()
            .append(true)
            .open(dir.path().join("events.jsonl"))
            .unwrap();
        file.write_all(b"{\"id\":2,\"at_").unwrap();
        let mut queue = EventQueue::open(dir.path()).unwrap();
        queue.push(2, vec![discovery(2)]).unwrap();
        let reopened = EventQueue::open(dir.path()).unwrap();
        let ids: Vec<u64> = reopened.pending_after(0, 10).iter().map(|e| e.id).collect();
        assert_eq!(ids, vec![1, 2]);
    }
}
