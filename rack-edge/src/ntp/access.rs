//! Who the NTP server answers: machines on subnets with NTP on, and
//! loopback. Everyone else is ignored without a reply (a deny kiss would
//! tell a scanner the port is open).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use edgemetal_protocol::ConfigSnapshot;
use ntp_proto::{FilterAction, FilterList, IpSubnet, NtpVersion, ServerConfig};

/// Clients remembered for rate limiting (a hashed table, collisions forget).
const RATE_LIMIT_CLIENTS: usize = 4096;
/// A client asking again sooner than this is ignored: far below any
/// client's poll interval (iburst is 2 s), so only floods are cut.
const RATE_LIMIT_CUTOFF: Duration = Duration::from_millis(250);

/// The server's policy for `snapshot` (none yet: loopback only).
pub fn server_config(snapshot: Option<&ConfigSnapshot>) -> ServerConfig {
    let mut allowed = vec![
        IpSubnet {
            addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            mask: 8,
        },
        IpSubnet {
            addr: IpAddr::V6(Ipv6Addr::LOCALHOST),
            mask: 128,
        },
    ];
    allowed.extend(
        snapshot
            .into_iter()
            .flat_map(|snapshot| &snapshot.subnets)
            .filter(|subnet| subnet.services.ntp)
            .map(|subnet| IpSubnet {
                addr: IpAddr::V4(subnet.cidr.network()),
                mask: subnet.cidr.prefix_len(),
            }),
    );
    ServerConfig {
        denylist: FilterList {
            filter: Vec::new(),
            action: FilterAction::Ignore,
        },
        allowlist: FilterList {
            filter: allowed,
            action: FilterAction::Ignore,
        },
        rate_limiting_cache_size: RATE_LIMIT_CLIENTS,
        rate_limiting_cutoff: RATE_LIMIT_CUTOFF,
        require_nts: None,
        // NTPv3 clients (old ntpdate, busybox) get v3 answers; no NTPv5 draft.
        accepted_versions: vec![NtpVersion::V3, NtpVersion::V4],
    }
}
