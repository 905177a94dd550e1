//! Reads the site's data from the store and builds the snapshot racks serve
//! from with the model's rules ([`edgemetal_region_model::snapshot`]).

use edgemetal_protocol::{BootResource, ConfigSnapshot, GatewayConfig, RackId};
use edgemetal_region_model::dns::{parse_record_data, DnsSettings};
use edgemetal_region_model::site::{OperatorRecord, SiteData};
pub use edgemetal_region_model::snapshot::per_rack;

use crate::store::{now_ms, parse_kind, Store, StoreError};

/// The region-wide snapshot, from the store's current data.
pub async fn build(
    store: &Store,
    dns: &DnsSettings,
    gateway: &GatewayConfig,
) -> Result<ConfigSnapshot, StoreError> {
    let site = read_site(store).await?;
    Ok(edgemetal_region_model::snapshot::build(&site, dns, gateway))
}

/// Everything a snapshot derives from, read once.
async fn read_site(store: &Store) -> Result<SiteData, StoreError> {
    // The generation first: see [`SiteData::generation`].
    let generation = store.generation().await?;
    let mut enrolled: Vec<RackId> = store
        .list_identities()
        .await?
        .into_iter()
        .filter(|identity| identity.revoked_ms.is_none())
        .filter_map(|identity| RackId::new(&identity.rack_id).ok())
        .collect();
    enrolled.sort();
    let boot_resources = store
        .list_boot_resources()
        .await?
        .into_iter()
        .filter_map(|record| {
            let mut sha256 = [0u8; 32];
            hex::decode_to_slice(&record.sha256, &mut sha256).ok()?;
            Some(BootResource {
                kind: parse_kind(&record.kind)?,
                name: record.name,
                architecture: record.architecture,
                sha256,
                size: record.size,
            })
        })
        .collect();
    let dns_records = store
        .list_dns_records(None)
        .await?
        .into_iter()
        .filter_map(|record| match parse_record_data(&record.rtype, &record.data) {
            Ok(data) => Some(OperatorRecord {
                domain_id: record.domain_id,
                name: record.name,
                ttl: record.ttl,
                data,
            }),
            Err(_) => {
                tracing::warn!(record = %record.id, "stored DNS record does not parse; skipped");
                None
            }
        })
        .collect();
    Ok(SiteData {
        generation,
        now_ms: now_ms(),
        subnets: store.list_subnets().await?,
        reservations: store.list_reservations(None).await?,
        leases: store.list_leases(None, None).await?,
        racks: store.list_racks().await?,
        enrolled,
        boot_resources,
        domains: store.list_domains().await?,
        dns_records,
        machine_hostnames: store
            .list_machines()
            .await?
            .into_iter()
            .map(|m| (m.mac.to_string(), m.hostname))
            .collect(),
        machine_boot: store.list_machine_boot().await?,
    })
}
