//! Network boot on the region's side: the content-addressed store of boot
//! resources ([`blobs`]) that racks fetch over the link, and the boot
//! decision for each machine ([`decision`]).

pub mod blobs;
pub mod decision;
pub mod inspect;

/// Largest piece of a blob sent in one link message; racks ask for this much.
pub const CHUNK_BYTES: u32 = 512 * 1024;
