//! Group commit: the DHCP server's one writer.
//!
//! The engine loop hands each batch of actions to this writer and goes back
//! to the sockets at once; the writer, on a thread of its own (an fsync
//! blocks), takes every batch that is waiting, makes all their journal
//! records durable with one append and one `fdatasync`, and only then sends
//! their replies and reports their lease events, in order. So:
//!
//! - every ACK still leaves only after its lease is on disk;
//! - the engine never waits for the disk: while one group is being synced,
//!   the next is being computed;
//! - the group grows with the load by itself: the slower the disk, the more
//!   batches wait, the more leases share one fsync.
//!
//! Compaction goes through the same queue (the engine sends the live table
//! when the writer asks for it), so it can never interleave with an append.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use super::{Destination, Journal, JournalRecord, LeaseDirectory, LeaseEvent};
use crate::hub::Hub;
use crate::state::SharedQueue;

/// Batches queued for the writer before the engine loop waits for it.
const QUEUED_BATCHES: usize = 64;

/// One reply: on which served interface, what, to whom.
#[derive(Debug)]
pub struct Reply {
    /// Index into the writer's interfaces.
    pub interface: usize,
    /// The encoded datagram.
    pub bytes: Vec<u8>,
    /// Where it goes.
    pub to: Destination,
}

/// What the engine loop hands the writer.
#[derive(Debug)]
pub enum Work {
    /// Records to make durable, then the replies that promise them and the
    /// events that report them. Without records it is sent at once.
    Batch {
        /// Journal records, in the engine's order.
        records: Vec<JournalRecord>,
        /// Replies, in order.
        replies: Vec<Reply>,
        /// Lease events, in order.
        events: Vec<LeaseEvent>,
    },
    /// Rewrite the journal as these records: the live table, taken after
    /// every batch queued before it.
    Compact(Vec<JournalRecord>),
}

/// An interface replies leave on: a duplicate of its receiving socket (so
/// sends keep its device binding) and its name for ARP entries.
pub struct Outlet {
    /// The interface's name.
    pub name: String,
    /// A send handle on the interface's port-67 socket.
    pub socket: UdpSocket,
}

/// The writer and everything it reports to.
pub struct Committer {
    /// The lease journal it alone appends to.
    pub journal: Journal,
    /// Where replies leave, by interface index.
    pub outlets: Vec<Outlet>,
    /// Metrics and logs.
    pub hub: Arc<Hub>,
    /// Lease events for the region.
    pub events: Arc<SharedQueue>,
    /// Who holds which address, for the other services.
    pub directory: LeaseDirectory,
}

/// The engine loop's side of the writer.
pub struct CommitQueue {
    work: mpsc::Sender<Work>,
    compaction_wanted: Arc<AtomicBool>,
}

impl CommitQueue {
    /// Queues `work`; waits only while the writer is `QUEUED_BATCHES` behind.
    /// Errors if the writer has stopped.
    pub async fn send(&self, work: Work) -> Result<(), WriterGone> {
        self.work.send(work).await.map_err(|_| WriterGone)
    }

    /// Whether the writer asked for a compaction (asked once; reset here).
    pub fn take_compaction_request(&self) -> bool {
        self.compaction_wanted.swap(false, Ordering::AcqRel)
    }
}

/// The writer thread has ended (it only does when the queue closes or the
/// thread panicked).
#[derive(Debug, thiserror::Error)]
#[error("the DHCP journal writer has stopped")]
pub struct WriterGone;

impl Committer {
    /// Starts the writer on its own thread.
    pub fn start(self) -> std::io::Result<CommitQueue> {
        let (work, queue) = mpsc::channel(QUEUED_BATCHES);
        let compaction_wanted = Arc::new(AtomicBool::new(false));
        let wanted = compaction_wanted.clone();
        std::thread::Builder::new()
            .name("dhcp-journal".into())
            .spawn(move || self.run(queue, &wanted))?;
        Ok(CommitQueue {
            work,
            compaction_wanted,
        })
    }

    fn run(mut self, mut queue: mpsc::Receiver<Work>, compaction_wanted: &AtomicBool) {
        let mut asked = false;
        while let Some(first) = queue.blocking_recv() {
            let mut group = vec![first];
            while let Ok(more) = queue.try_recv() {
                group.push(more);
            }
            let mut pending = Vec::new();
            for work in group {
                match work {
                    Work::Batch { .. } => pending.push(work),
                    Work::Compact(records) => {
                        self.commit(std::mem::take(&mut pending));
                        if let Err(error) = self.journal.compact(&records) {
                            tracing::error!(%error, "cannot compact the lease journal");
                        }
                        asked = false;
                    }
                }
            }
            self.commit(pending);
            if !asked && self.journal.needs_compaction() {
                asked = true;
                compaction_wanted.store(true, Ordering::Release);
            }
        }
    }

    /// Makes every record of `batches` durable in one append, then sends
    /// their replies and reports their events. If the records cannot be
    /// made durable nothing is sent or reported: an ACK must never promise
    /// a lease a crash could forget.
    fn commit(&mut self, batches: Vec<Work>) {
        let mut records = Vec::new();
        let mut after = Vec::with_capacity(batches.len());
        for work in batches {
            if let Work::Batch {
                records: mut batch,
                replies,
                events,
            } = work
            {
                records.append(&mut batch);
                after.push((replies, events));
            }
        }
        if after.is_empty() {
            return;
        }
        if let Err(error) = self.journal.append(&records) {
            tracing::error!(
                %error,
                records = records.len(),
                "cannot write the lease journal; replies withheld"
            );
            return;
        }
        let mut reports = Vec::new();
        for (replies, events) in after {
            for reply in replies {
                self.send(reply);
            }
            for event in events {
                self.directory.apply(&event);
                reports.extend(super::server::to_rack_event(&event));
                super::server::report(event, &self.hub);
            }
        }
        // Queued for the region (durably, in order); the link delivers them when it can.
        let at_ms = super::server::now_secs() * 1000;
        if let Err(error) = self.events.push(at_ms, reports) {
            tracing::error!(%error, "cannot queue lease events for the region");
        }
    }

    fn send(&self, reply: Reply) {
        let Some(outlet) = self.outlets.get(reply.interface) else {
            return;
        };
        let target = match reply.to {
            Destination::Broadcast { port } => SocketAddrV4::new(Ipv4Addr::BROADCAST, port),
            Destination::Unicast { ip, port } => SocketAddrV4::new(ip, port),
            Destination::UnicastToHardware { mac, ip } => {
                match super::arp::set_entry(&outlet.socket, &outlet.name, ip, mac) {
                    Ok(()) => SocketAddrV4::new(ip, 68),
                    Err(error) => {
                        // Without the ARP entry the kernel would ARP for an address
                        // nobody holds yet; broadcasting still reaches the client.
                        tracing::debug!(%error, "cannot add ARP entry; broadcasting instead");
                        SocketAddrV4::new(Ipv4Addr::BROADCAST, 68)
                    }
                }
            }
        };
        if let Err(error) = outlet.socket.send_to(&reply.bytes, SocketAddr::V4(target)) {
            tracing::warn!(%error, %target, "cannot send DHCP reply");
        }
    }
}
