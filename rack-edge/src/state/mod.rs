//! What the rack keeps on disk across restarts.

pub mod atomic_file;
pub mod identity;
pub mod snapshot_file;

pub use identity::load_or_create_rack_id;
pub use snapshot_file::SnapshotFile;
