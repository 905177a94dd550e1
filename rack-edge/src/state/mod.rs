//! What the rack keeps on disk across restarts.

pub mod atomic_file;
pub mod counters_file;
pub mod event_queue;
pub mod identity;
pub mod snapshot_file;

pub use counters_file::CountersFile;
pub use event_queue::{EventQueue, SharedQueue};
pub use snapshot_file::SnapshotFile;
