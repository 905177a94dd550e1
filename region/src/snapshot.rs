//! Builds the configuration snapshot a rack serves from.

use edgemetal_protocol::{ConfigSnapshot, Generation, IpRange, SubnetConfig};

use crate::store::{Store, StoreError};

/// The current snapshot. Every rack receives every subnet for now; per-rack
/// subnet assignment arrives with the DHCP work.
///
/// The generation is read *before* the data: if a change lands in between,
/// the snapshot carries newer data under an older generation (and the newer
/// generation follows), never stale data labelled as current.
pub async fn build(store: &Store) -> Result<ConfigSnapshot, StoreError> {
    let generation = store.generation().await?;
    let subnets = store.list_subnets().await?;
    Ok(ConfigSnapshot {
        generation: Generation(generation),
        subnets: subnets
            .into_iter()
            .map(|subnet| SubnetConfig {
                id: subnet.id,
                name: subnet.spec.name,
                cidr: subnet.spec.cidr,
                gateway: subnet.spec.gateway,
                dns_servers: subnet.spec.dns_servers,
                domain: subnet.spec.domain,
                lease_time_secs: subnet.spec.lease_time_secs,
                ranges: subnet
                    .ranges
                    .into_iter()
                    .map(|range| IpRange {
                        start: range.spec.start,
                        end: range.spec.end,
                        purpose: range.spec.purpose.into(),
                    })
                    .collect(),
                reservations: Vec::new(),
            })
            .collect(),
    })
}
