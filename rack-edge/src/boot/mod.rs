//! Network boot on the rack: the cache of boot resources fetched from the
//! region over the link ([`cache`], with the requests in flight kept by
//! [`window`]), what each machine boots ([`decisions`],
//! pushed ahead by the region and held on disk), the configurations rendered from it
//! ([`render`]), the operator's scripts and boot files ([`table`]), and the
//! HTTP ([`http`]) and TFTP ([`tftp_files`]) faces machines load them through.

pub mod cache;
pub mod decisions;
pub mod http;
pub mod plans;
pub mod progress;
pub mod render;
pub mod serve;
pub mod small_files;
pub mod table;
pub mod tftp_files;
pub mod window;

pub use cache::{BootCache, ChunkOutcome};
pub use decisions::{BootPathCounters, Decisions};
