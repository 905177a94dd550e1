//! What the rack keeps on disk across restarts.

pub mod atomic_file;
pub mod counters_file;
pub mod identity;
pub mod snapshot_file;

pub use counters_file::CountersFile;
pub use snapshot_file::SnapshotFile;
