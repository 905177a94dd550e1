//! Log lines on disk until the region acknowledges them, bounded in bytes.
//!
//! `syslog-queue.jsonl` holds the lines appended since its last compaction
//! (one JSON line each, fsynced per batch); `syslog-queue.state` holds the
//! acknowledged id and the next id, so that a restart resends exactly the
//! unacknowledged lines and never reuses an id. Beyond the bound the oldest
//! lines are dropped (and counted by the caller): a rack cut off for days
//! keeps the newest logs, which are the ones an operator looks for.
//!
//! Acks and drops only move the in-memory head; the file is rewritten
//! (atomically) once it has grown to twice what is still pending, so the
//! cost of trimming stays proportional to what is written.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use edgemetal_protocol::LogLine;
use tokio::sync::Notify;

use crate::state::atomic_file;

/// Slack before a compaction, so that a small queue is not rewritten on every ack.
const COMPACT_SLACK_BYTES: u64 = 1024 * 1024;

/// What pushing a batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pushed {
    /// Lines queued.
    pub queued: usize,
    /// Older lines dropped to stay within the bound.
    pub dropped: usize,
}

/// The queue file and its pending lines.
pub struct LogQueue {
    path: PathBuf,
    state_path: PathBuf,
    file: Option<File>,
    pending: VecDeque<(LogLine, u64)>,
    pending_bytes: u64,
    file_bytes: u64,
    next_id: u64,
    acked: u64,
}

impl LogQueue {
    /// Opens the queue in `state_dir`; lines beyond `max_bytes` (oldest
    /// first) and a torn last line (a crash mid-write) are dropped.
    pub fn open(state_dir: &Path, max_bytes: u64) -> io::Result<LogQueue> {
        let path = state_dir.join("syslog-queue.jsonl");
        let state_path = state_dir.join("syslog-queue.state");
        let (acked, stored_next) = std::fs::read_to_string(&state_path)
            .ok()
            .and_then(|text| {
                let mut numbers = text.split_whitespace().map(|n| n.parse::<u64>().ok());
                Some((numbers.next()??, numbers.next()??))
            })
            .unwrap_or((0, 1));
        let mut queue = LogQueue {
            path,
            state_path,
            file: None,
            pending: VecDeque::new(),
            pending_bytes: 0,
            file_bytes: 0,
            next_id: stored_next.max(acked + 1),
            acked,
        };
        if let Ok(text) = std::fs::read_to_string(&queue.path) {
            queue.file_bytes = text.len() as u64;
            for line in text.lines() {
                match serde_json::from_str::<LogLine>(line) {
                    Ok(log) if log.id > queue.acked => {
                        queue.next_id = queue.next_id.max(log.id + 1);
                        queue.pending_bytes += line.len() as u64 + 1;
                        queue.pending.push_back((log, line.len() as u64 + 1));
                    }
                    Ok(_) => {}
                    Err(_) => tracing::warn!("dropping an unreadable queued log line"),
                }
            }
        }
        queue.drop_oldest(max_bytes);
        queue.compact()?;
        Ok(queue)
    }

    /// Queues `lines` durably (one fsync for the batch), giving them ids,
    /// then drops the oldest lines beyond `max_bytes`.
    pub fn push(&mut self, lines: Vec<LogLine>, max_bytes: u64) -> io::Result<Pushed> {
        if lines.is_empty() {
            return Ok(Pushed::default());
        }
        let mut buffer = Vec::new();
        let mut added = Vec::with_capacity(lines.len());
        for mut line in lines {
            line.id = self.next_id;
            self.next_id += 1;
            let start = buffer.len();
            serde_json::to_writer(&mut buffer, &line).map_err(io::Error::other)?;
            buffer.push(b'\n');
            added.push((line, (buffer.len() - start) as u64));
        }
        let file = match &mut self.file {
            Some(file) => file,
            None => self.file.insert(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?,
            ),
        };
        file.write_all(&buffer)?;
        file.sync_data()?;
        self.file_bytes += buffer.len() as u64;
        let queued = added.len();
        for (line, bytes) in added {
            self.pending_bytes += bytes;
            self.pending.push_back((line, bytes));
        }
        let dropped = self.drop_oldest(max_bytes);
        self.maybe_compact()?;
        Ok(Pushed { queued, dropped })
    }

    /// Pending lines with an id above `after`, oldest first: at most `limit`
    /// lines and about `max_bytes` (always at least one line).
    pub fn batch(&self, after: u64, limit: usize, max_bytes: u64) -> Vec<LogLine> {
        let mut bytes = 0;
        let mut batch = Vec::new();
        for (line, size) in self.pending.iter().filter(|(l, _)| l.id > after) {
            bytes += size;
            if batch.len() >= limit || (!batch.is_empty() && bytes > max_bytes) {
                break;
            }
            batch.push(line.clone());
        }
        batch
    }

    /// The highest acknowledged id (or dropped: everything at or below it is gone).
    pub fn acked(&self) -> u64 {
        self.pending
            .front()
            .map(|(l, _)| l.id - 1)
            .unwrap_or(self.next_id - 1)
            .max(self.acked)
    }

    /// Forgets every line up to and including `up_to`.
    pub fn ack(&mut self, up_to: u64) -> io::Result<()> {
        if up_to <= self.acked {
            return Ok(());
        }
        self.acked = up_to.min(self.next_id - 1);
        while self.pending.front().is_some_and(|(l, _)| l.id <= up_to) {
            if let Some((_, bytes)) = self.pending.pop_front() {
                self.pending_bytes -= bytes;
            }
        }
        self.write_state()?;
        self.maybe_compact()
    }

    /// Number of pending lines.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Bytes of pending lines.
    pub fn pending_bytes(&self) -> u64 {
        self.pending_bytes
    }

    fn drop_oldest(&mut self, max_bytes: u64) -> usize {
        let mut dropped = 0;
        while self.pending_bytes > max_bytes {
            let Some((_, bytes)) = self.pending.pop_front() else {
                break;
            };
            self.pending_bytes -= bytes;
            dropped += 1;
        }
        dropped
    }

    fn write_state(&self) -> io::Result<()> {
        let state = format!("{} {}\n", self.acked, self.next_id);
        atomic_file::write(&self.state_path, state.as_bytes())
    }

    fn maybe_compact(&mut self) -> io::Result<()> {
        if self.file_bytes > 2 * self.pending_bytes + COMPACT_SLACK_BYTES {
            self.compact()?;
        }
        Ok(())
    }

    /// Rewrites the file with only the pending lines.
    fn compact(&mut self) -> io::Result<()> {
        // The next id must outlive the lines that carried it.
        self.write_state()?;
        let mut buffer = Vec::with_capacity(self.pending_bytes as usize);
        for (line, _) in &self.pending {
            serde_json::to_writer(&mut buffer, line).map_err(io::Error::other)?;
            buffer.push(b'\n');
        }
        self.file = None;
        atomic_file::write(&self.path, &buffer)?;
        self.file_bytes = buffer.len() as u64;
        Ok(())
    }
}

/// The queue shared by the relay that fills it and the link that drains
/// it; `added` wakes the link.
pub struct SharedLogQueue {
    /// The queue.
    pub queue: Mutex<LogQueue>,
    /// Signalled after every push.
    pub added: Notify,
}

impl SharedLogQueue {
    /// Wraps a queue.
    pub fn new(queue: LogQueue) -> Arc<SharedLogQueue> {
        Arc::new(SharedLogQueue {
            queue: Mutex::new(queue),
            added: Notify::new(),
        })
    }

    /// Locks the queue (a panic elsewhere does not poison it for good).
    pub fn lock(&self) -> std::sync::MutexGuard<'_, LogQueue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str) -> LogLine {
        LogLine {
            id: 0,
            received_ms: 1,
            timestamp_ms: None,
            source: "10.0.0.1".parse().unwrap(),
            mac: None,
            facility: Some(1),
            severity: Some(6),
            hostname: None,
            app_name: None,
            text: text.into(),
            malformed: false,
            truncated: false,
        }
    }

    fn texts(queue: &LogQueue) -> Vec<String> {
        queue
            .batch(0, 1000, u64::MAX)
            .into_iter()
            .map(|l| l.text)
            .collect()
    }

    #[test]
    fn lines_survive_a_restart_until_acked_and_ids_never_repeat() {
        let dir = tempfile::tempdir().unwrap();
        let mut queue = LogQueue::open(dir.path(), u64::MAX).unwrap();
        queue
            .push(vec![line("a"), line("b"), line("c")], u64::MAX)
            .unwrap();
        drop(queue);
        let mut queue = LogQueue::open(dir.path(), u64::MAX).unwrap();
        assert_eq!(texts(&queue), ["a", "b", "c"]);
        queue.ack(2).unwrap();
        drop(queue);
        let mut queue = LogQueue::open(dir.path(), u64::MAX).unwrap();
        assert_eq!(texts(&queue), ["c"]);
        queue.ack(3).unwrap();
        drop(queue);
        let mut queue = LogQueue::open(dir.path(), u64::MAX).unwrap();
        assert!(queue.is_empty());
        queue.push(vec![line("d")], u64::MAX).unwrap();
        assert_eq!(queue.batch(0, 10, u64::MAX)[0].id, 4);
    }

    #[test]
    fn the_oldest_lines_go_first_when_full() {
        let dir = tempfile::tempdir().unwrap();
        let mut queue = LogQueue::open(dir.path(), u64::MAX).unwrap();
        let one = queue.push(vec![line("line1")], u64::MAX).unwrap();
        assert_eq!(
            one,
            Pushed {
                queued: 1,
                dropped: 0
            }
        );
        let bound = queue.pending_bytes() * 3;
        let pushed = queue
            .push(vec![line("line2"), line("line3"), line("line4")], bound)
            .unwrap();
        assert_eq!(pushed.dropped, 1);
        assert_eq!(texts(&queue), ["line2", "line3", "line4"]);
        assert_eq!(queue.acked(), 1, "a dropped line counts as gone");
        drop(queue);
        let queue = LogQueue::open(dir.path(), bound).unwrap();
        assert_eq!(texts(&queue), ["line2", "line3", "line4"]);
    }

    #[test]
    fn batches_respect_count_and_size() {
        let dir = tempfile::tempdir().unwrap();
        let mut queue = LogQueue::open(dir.path(), u64::MAX).unwrap();
        queue
            .push((0..10).map(|i| line(&i.to_string())).collect(), u64::MAX)
            .unwrap();
        assert_eq!(queue.batch(0, 4, u64::MAX).len(), 4);
        assert_eq!(queue.batch(8, 4, u64::MAX).len(), 2);
        assert_eq!(queue.batch(0, 100, 1).len(), 1, "at least one line");
    }

    #[test]
    fn compaction_keeps_only_pending_lines() {
        let dir = tempfile::tempdir().unwrap();
        let mut queue = LogQueue::open(dir.path(), u64::MAX).unwrap();
        let big = "x".repeat(4096);
        for _ in 0..600 {
            queue.push(vec![line(&big)], u64::MAX).unwrap();
            let last = queue.batch(0, 1000, u64::MAX).last().unwrap().id;
            queue.ack(last).unwrap();
        }
        let size = std::fs::metadata(dir.path().join("syslog-queue.jsonl"))
            .unwrap()
            .len();
        assert!(size < 2 * COMPACT_SLACK_BYTES, "file is {size} bytes");
        queue.push(vec![line("tail")], u64::MAX).unwrap();
        drop(queue);
        let queue = LogQueue::open(dir.path(), u64::MAX).unwrap();
        assert_eq!(texts(&queue), ["tail"]);
    }

    #[test]
    fn a_torn_last_line_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut queue = LogQueue::open(dir.path(), u64::MAX).unwrap();
        queue.push(vec![line("whole")], u64::MAX).unwrap();
        drop(queue);
        let mut file = OpenOptions::new()
            .append(true)
            .open(dir.path().join("syslog-queue.jsonl"))
            .unwrap();
        file.write_all(b"{\"id\":2,\"rece").unwrap();
        let queue = LogQueue::open(dir.path(), u64::MAX).unwrap();
        assert_eq!(texts(&queue), ["whole"]);
    }
}
