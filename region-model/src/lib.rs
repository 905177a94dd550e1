//! The region's rules, apart from the store that applies them and the
//! services that act on them: everything here is a pure function over plain
//! data (no database, no sockets, no clock reads), tested without a database.

pub mod boot_table;
pub mod dns;
pub mod ipam;
pub mod lifecycle;
pub mod merge_patch;
pub mod rack_events;
pub mod site;
pub mod snapshot;
