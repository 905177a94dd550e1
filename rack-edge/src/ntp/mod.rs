//! The rack's NTP server: machines on subnets with NTP on (and loopback)
//! get NTPv4 (and NTPv3) answers from the rack's own clock, which is
//! disciplined from the upstream servers in the region's settings
//! (`gateway.ntp.upstreams`).
//!
//! The field's implementation does the work: ntpd-rs's `ntp-proto` parses
//! and writes packets, answers clients (policy, rate limiting), polls the
//! upstreams and runs its Kalman clock controller. The rack adds policy
//! only, and a clock of its own ([`RackClock`]: the host's clock plus a
//! steered correction) because the rack may share its host with other
//! software: it never steps or slews the system clock.
//!
//! Until an upstream is selected, and again when the last one has been
//! gone long enough that the rack's error bound passes RFC 5905's
//! MAXDIST, answers carry leap indicator 3 (alarm) and stratum 16, so
//! clients do not trust the rack.

pub mod access;
pub mod clock;
pub mod discipline;
pub mod metrics;
pub mod serve;
pub mod server;

pub use clock::RackClock;
pub use discipline::{Discipline, SyncState};
pub use metrics::NtpMetrics;
pub use server::NtpServer;
