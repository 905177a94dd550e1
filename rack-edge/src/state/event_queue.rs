//! Events the region must hear about (leases, discoveries), queued on disk
//! until the region acknowledges them, so that a cut link or a restart loses
//! none and they arrive in order.
//!
//! The queue is a JSON-lines file of pending events; an ack rewrites it
//! (atomically) without the acknowledged ones. Ids grow by one per event and
//! survive restarts (the next id is one past the last event ever queued,
//! kept in `events-next-id`).

use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use edgemetal_protocol::{RackEvent, RackEventKind};
use tokio::sync::Notify;

use super::atomic_file;

/// The queue file and its pending events.
pub struct EventQueue {
    path: PathBuf,
    next_id_path: PathBuf,
    pending: VecDeque<RackEvent>,
    next_id: u64,
}

impl EventQueue {
    /// Opens the queue in `state_dir`; a torn last line (a crash mid-write) is dropped.
    pub fn open(state_dir: &Path) -> io::Result<EventQueue> {
        let path = state_dir.join("events.jsonl");
        let next_id_path = state_dir.join("events-next-id");
        let mut pending = VecDeque::new();
        if let Ok(text) = std::fs::read_to_string(&path) {
            for line in text.lines() {
                match serde_json::from_str::<RackEvent>(line) {
                    Ok(event) => pending.push_back(event),
                    Err(_) => tracing::warn!("dropping an unreadable queued event line"),
                }
            }
        }
        let stored_next = std::fs::read_to_string(&next_id_path)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(1);
        let after_pending = pending.back().map(|e: &RackEvent| e.id + 1).unwrap_or(1);
        Ok(EventQueue {
            path,
            next_id_path,
            pending,
            next_id: stored_next.max(after_pending),
        })
    }

    /// Queues events durably (one fsync for the batch) and returns their ids.
    pub fn push(&mut self, at_ms: u64, kinds: Vec<RackEventKind>) -> io::Result<()> {
        if kinds.is_empty() {
            return Ok(());
        }
        let mut buffer = Vec::new();
        let mut events = Vec::new();
        for kind in kinds {
            let event = RackEvent {
                id: self.next_id,
                at_ms,
                kind,
            };
            self.next_id += 1;
            serde_json::to_writer(&mut buffer, &event).map_err(io::Error::other)?;
            buffer.push(b'\n');
            events.push(event);
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        file.write_all(&buffer)?;
        file.sync_data()?;
        self.pending.extend(events);
        Ok(())
    }

    /// Pending events with an id above `after`, oldest first, at most `limit`.
    pub fn pending_after(&self, after: u64, limit: usize) -> Vec<RackEvent> {
        self.pending
            .iter()
            .filter(|e| e.id > after)
            .take(limit)
            .cloned()
            .collect()
    }

    /// Like [`EventQueue::pending_after`], but stops before the batch's
    /// payload would pass `max_bytes` (always at least one event), so that
    /// bulky events (commissioning results) fit in one link message.
    pub fn pending_batch(&self, after: u64, limit: usize, max_bytes: usize) -> Vec<RackEvent> {
        let mut bytes = 0;
        let mut batch = Vec::new();
        for event in self.pending.iter().filter(|e| e.id > after).take(limit) {
            bytes += payload_bytes(event);
            if !batch.is_empty() && bytes > max_bytes {
                break;
            }
            batch.push(event.clone());
        }
        batch
    }

    /// Id of the oldest pending event minus one: everything up to it is acknowledged.
    pub fn acked(&self) -> u64 {
        self.pending
            .front()
            .map(|e| e.id - 1)
            .unwrap_or(self.next_id - 1)
    }

    /// Forgets every event up to and including `up_to`.
    pub fn ack(&mut self, up_to: u64) -> io::Result<()> {
        let before = self.pending.len();
        while self.pending.front().is_some_and(|e| e.id <= up_to) {
            self.pending.pop_front();
        }
        if self.pending.len() == before {
            return Ok(());
        }
        // The next id must outlive the events that carried it.
        atomic_file::write(&self.next_id_path, self.next_id.to_string().as_bytes())?;
        let mut buffer = Vec::new();
        for event in &self.pending {
            serde_json::to_writer(&mut buffer, event).map_err(io::Error::other)?;
            buffer.push(b'\n');
        }
        atomic_file::write(&self.path, &buffer)
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
}
