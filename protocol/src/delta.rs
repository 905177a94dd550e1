//! Configuration deltas: what changed between two of a rack's snapshots,
//! item by item, so that a lease or a reservation costs the link a few
//! records instead of the rack's whole configuration (protocol v2).
//!
//! Both sides share one rule set: the region computes [`diff`] between the
//! snapshot it last sent a rack and the new one; the rack [`apply`]s it to
//! the snapshot it holds. A delta names the generation it applies to, and
//! the rack refuses one whose base it does not hold, or that edits what it
//! does not have: it then asks for the full snapshot (see
//! [`crate::ApplyOutcome::Resync`]), so a lost or reordered delta costs one
//! resync, never a wrong configuration.
//!
//! Snapshots compare equal after a round trip only in [`canonical`] order
//! (every keyed list sorted by its key); the region sends snapshots in that
//! order, and [`apply`] produces it.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::net::{Ipv4Addr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::boot_settings::MachineBoot;
use crate::dns::{DnsRecord, Zone};
use crate::gateway::GatewayConfig;
use crate::message::{ConfigSnapshot, HeldAddress, Reservation, SubnetConfig};
use crate::types::{Generation, Ipv4Cidr, MacAddress};
use crate::BootResource;

/// Changes to one keyed collection: items added or replaced, keys removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edits<K, V> {
    /// Items added, or replacing the item with the same key.
    pub upsert: Vec<V>,
    /// Keys of items removed.
    pub remove: Vec<K>,
}

impl<K, V> Default for Edits<K, V> {
    fn default() -> Self {
        Edits {
            upsert: Vec::new(),
            remove: Vec::new(),
        }
    }
}

impl<K, V> Edits<K, V> {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.upsert.is_empty() && self.remove.is_empty()
    }
}

/// What turns the rack's snapshot at `base` into the one at `generation`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigDelta {
    /// The generation the delta applies to; the rack must hold exactly it.
    pub base: Generation,
    /// The generation the rack holds once it applied the delta.
    pub generation: Generation,
    /// Subnets added or changed, without their reservations and held
    /// addresses (those travel below and are kept on a change); removed
    /// subnets take theirs with them. Keyed by subnet id.
    pub subnets: Edits<String, SubnetConfig>,
    /// Reservations by subnet id and MAC.
    pub reservations: Edits<(String, MacAddress), (String, Reservation)>,
    /// Addresses held by other racks, by subnet id and address.
    pub held_elsewhere: Edits<(String, Ipv4Addr), (String, HeldAddress)>,
    /// The boot resources, when they changed.
    pub boot_resources: Option<Vec<BootResource>>,
    /// Zones added or changed (serial, negative TTL), without their records
    /// (kept on a change); removed zones take theirs with them. By name.
    pub zones: Edits<String, Zone>,
    /// Records by zone name; a record is its own key.
    pub records: Edits<(String, DnsRecord), (String, DnsRecord)>,
    /// The DNS forwarders, when they changed (their order is the failover order).
    pub forwarders: Option<Vec<SocketAddr>>,
    /// The networks allowed to recurse, when they changed.
    pub allowed_networks: Option<Vec<Ipv4Cidr>>,
    /// The gateway services' settings, when they changed.
    pub gateway: Option<GatewayConfig>,
    /// Machines' boot settings by MAC (protocol v5).
    pub machine_boot: Edits<MacAddress, MachineBoot>,
}

/// Why a delta cannot be applied to the snapshot the rack holds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeltaError {
    /// The delta was computed against another generation.
    #[error("the delta applies to generation {base}, the rack holds {held}")]
    BaseMismatch {
        /// The generation the delta applies to.
        base: Generation,
        /// The generation the rack holds.
        held: Generation,
    },
    /// The delta edits something the rack does not hold (the two diverged).
    #[error("the delta edits {0}, which the rack does not hold")]
    Diverged(String),
}

/// `snapshot` in canonical order: subnets by id, their reservations by MAC
/// and held addresses by address, zones by name, records by their encoding;
/// items with the same key appear once (the first).
pub fn canonical(snapshot: ConfigSnapshot) -> ConfigSnapshot {
    let ConfigSnapshot {
        generation,
        subnets,
        boot_resources,
        dns,
        gateway,
        machine_boot,
    } = snapshot;
    let subnets = by_key(subnets, |s| s.id.clone())
        .into_values()
        .map(|mut subnet| {
            subnet.reservations = by_key(core::mem::take(&mut subnet.reservations), |r| r.mac)
                .into_values()
                .collect();
            subnet.held_elsewhere =
                by_key(core::mem::take(&mut subnet.held_elsewhere), |h| h.address)
                    .into_values()
                    .collect();
            subnet
        })
        .collect();
    let zones = by_key(dns.zones, |z| z.name.clone())
        .into_values()
        .map(|mut zone| {
            zone.records = by_key(core::mem::take(&mut zone.records), record_key)
                .into_values()
                .collect();
            zone
        })
        .collect();
    ConfigSnapshot {
        generation,
        subnets,
        boot_resources,
        dns: crate::dns::DnsConfig { zones, ..dns },
        gateway,
        machine_boot: by_key(machine_boot, |m| m.mac).into_values().collect(),
    }
}

/// What turns `old` into `new`.
pub fn diff(old: &ConfigSnapshot, new: &ConfigSnapshot) -> ConfigDelta {
    let mut delta = ConfigDelta {
        base: old.generation,
        generation: new.generation,
        ..ConfigDelta::default()
    };
    let old_subnets = by_ref(&old.subnets, |s| s.id.as_str());
    for (id, subnet) in by_ref(&new.subnets, |s| s.id.as_str()) {
        let before = old_subnets.get(id);
        if before.is_none_or(|b| subnet_header(b) != subnet_header(subnet)) {
            delta.subnets.upsert.push(subnet_header(subnet));
        }
        let (reservations, held) = before.map_or((&[][..], &[][..]), |b| {
            (&b.reservations[..], &b.held_elsewhere[..])
        });
        let (upsert, remove) = changed(reservations, &subnet.reservations, |r| r.mac);
        let id = String::from(id);
        push_edits(&mut delta.reservations, &id, upsert, remove, |r| r.mac);
        let (upsert, remove) = changed(held, &subnet.held_elsewhere, |h| h.address);
        push_edits(&mut delta.held_elsewhere, &id, upsert, remove, |h| {
            h.address
        });
    }
    delta.subnets.remove = gone(&old.subnets, &new.subnets, |s| s.id.as_str());

    let old_zones = by_ref(&old.dns.zones, |z| z.name.as_str());
    for (name, zone) in by_ref(&new.dns.zones, |z| z.name.as_str()) {
        let before = old_zones.get(name);
        if before.is_none_or(|b| zone_header(b) != zone_header(zone)) {
            delta.zones.upsert.push(zone_header(zone));
        }
        let records = before.map_or(&[][..], |b| &b.records[..]);
        let (upsert, remove) = changed(records, &zone.records, record_key);
        // A record is its own key: a removal names the whole record.
        push_edits(&mut delta.records, name, upsert, remove, DnsRecord::clone);
    }
    delta.zones.remove = gone(&old.dns.zones, &new.dns.zones, |z| z.name.as_str());

    delta.boot_resources =
        (old.boot_resources != new.boot_resources).then(|| new.boot_resources.clone());
    delta.forwarders =
        (old.dns.forwarders != new.dns.forwarders).then(|| new.dns.forwarders.clone());
    delta.allowed_networks = (old.dns.allowed_networks != new.dns.allowed_networks)
        .then(|| new.dns.allowed_networks.clone());
    delta.gateway = (old.gateway != new.gateway).then(|| new.gateway.clone());
    let (upsert, remove) = changed(&old.machine_boot, &new.machine_boot, |m| m.mac);
    delta.machine_boot = Edits {
        upsert: upsert.into_iter().cloned().collect(),
        remove: remove.into_iter().map(|m| m.mac).collect(),
    };
    delta
}

/// A subnet being rebuilt by [`apply`]: its header and keyed lists.
struct SubnetParts {
    header: SubnetConfig,
    reservations: BTreeMap<MacAddress, Reservation>,
    held: BTreeMap<Ipv4Addr, HeldAddress>,
}

/// A zone being rebuilt by [`apply`].
struct ZoneParts {
    header: Zone,
    records: BTreeMap<Vec<u8>, DnsRecord>,
}

/// `held` with `delta` applied, in canonical order.
pub fn apply(held: &ConfigSnapshot, delta: &ConfigDelta) -> Result<ConfigSnapshot, DeltaError> {
    if held.generation != delta.base {
        return Err(DeltaError::BaseMismatch {
            base: delta.base,
            held: held.generation,
        });
    }
    let mut subnets: BTreeMap<String, SubnetParts> = held
        .subnets
        .iter()
        .map(|subnet| {
            let parts = SubnetParts {
                header: subnet_header(subnet),
                reservations: by_key(subnet.reservations.iter().cloned(), |r| r.mac),
                held: by_key(subnet.held_elsewhere.iter().cloned(), |h| h.address),
            };
            (subnet.id.clone(), parts)
        })
        .collect();
    for id in &delta.subnets.remove {
        subnets.remove(id).ok_or_else(|| diverged("subnet", id))?;
    }
    for header in &delta.subnets.upsert {
        let header = subnet_header(header);
        match subnets.get_mut(&header.id) {
            Some(parts) => parts.header = header,
            None => {
                let parts = SubnetParts {
                    header,
                    reservations: BTreeMap::new(),
                    held: BTreeMap::new(),
                };
                subnets.insert(parts.header.id.clone(), parts);
            }
        }
    }
    for (id, mac) in &delta.reservations.remove {
        let what = alloc::format!("{mac} in {id}");
        part(&mut subnets, "subnet", id)?
            .reservations
            .remove(mac)
            .ok_or_else(|| diverged("reservation", &what))?;
    }
    for (id, reservation) in &delta.reservations.upsert {
        part(&mut subnets, "subnet", id)?
            .reservations
            .insert(reservation.mac, reservation.clone());
    }
    for (id, address) in &delta.held_elsewhere.remove {
        let what = alloc::format!("{address} in {id}");
        part(&mut subnets, "subnet", id)?
            .held
            .remove(address)
            .ok_or_else(|| diverged("held address", &what))?;
    }
    for (id, address) in &delta.held_elsewhere.upsert {
        part(&mut subnets, "subnet", id)?
            .held
            .insert(address.address, address.clone());
    }

    let mut zones: BTreeMap<String, ZoneParts> = held
        .dns
        .zones
        .iter()
        .map(|zone| {
            let parts = ZoneParts {
                header: zone_header(zone),
                records: by_key(zone.records.iter().cloned(), record_key),
            };
            (zone.name.clone(), parts)
        })
        .collect();
    for name in &delta.zones.remove {
        zones.remove(name).ok_or_else(|| diverged("zone", name))?;
    }
    for header in &delta.zones.upsert {
        let header = zone_header(header);
        match zones.get_mut(&header.name) {
            Some(parts) => parts.header = header,
            None => {
                let parts = ZoneParts {
                    header,
                    records: BTreeMap::new(),
                };
                zones.insert(parts.header.name.clone(), parts);
            }
        }
    }
    for (name, record) in &delta.records.remove {
        part(&mut zones, "zone", name)?
            .records
            .remove(&record_key(record))
            .ok_or_else(|| diverged("record", &record.name))?;
    }
    for (name, record) in &delta.records.upsert {
        part(&mut zones, "zone", name)?
            .records
            .insert(record_key(record), record.clone());
    }

    let subnets = subnets
        .into_values()
        .map(|parts| SubnetConfig {
            reservations: parts.reservations.into_values().collect(),
            held_elsewhere: parts.held.into_values().collect(),
            ..parts.header
        })
        .collect();
    let zones = zones
        .into_values()
        .map(|parts| Zone {
            records: parts.records.into_values().collect(),
            ..parts.header
        })
        .collect();
    let dns = crate::dns::DnsConfig {
        zones,
        forwarders: delta
            .forwarders
            .clone()
            .unwrap_or_else(|| held.dns.forwarders.clone()),
        allowed_networks: delta
            .allowed_networks
            .clone()
            .unwrap_or_else(|| held.dns.allowed_networks.clone()),
    };
    let mut machine_boot = by_key(held.machine_boot.iter().cloned(), |m| m.mac);
    for mac in &delta.machine_boot.remove {
        machine_boot
            .remove(mac)
            .ok_or_else(|| diverged("machine boot settings", &alloc::format!("{mac}")))?;
    }
    for machine in &delta.machine_boot.upsert {
        machine_boot.insert(machine.mac, machine.clone());
    }
    Ok(ConfigSnapshot {
        generation: delta.generation,
        subnets,
        boot_resources: delta
            .boot_resources
            .clone()
            .unwrap_or_else(|| held.boot_resources.clone()),
        dns,
        gateway: delta
            .gateway
            .clone()
            .unwrap_or_else(|| held.gateway.clone()),
        machine_boot: machine_boot.into_values().collect(),
    })
}

/// The part named `name` that an edit applies to.
fn part<'a, T>(
    parts: &'a mut BTreeMap<String, T>,
    what: &str,
    name: &str,
) -> Result<&'a mut T, DeltaError> {
    parts.get_mut(name).ok_or_else(|| diverged(what, name))
}

fn diverged(what: &str, name: &str) -> DeltaError {
    DeltaError::Diverged(alloc::format!("{what} {name}"))
}

/// A record's sort key: its encoding (records have no natural order).
fn record_key(record: &DnsRecord) -> Vec<u8> {
    postcard::to_allocvec(record).unwrap_or_default()
}

/// The subnet without its reservations and held addresses.
fn subnet_header(subnet: &SubnetConfig) -> SubnetConfig {
    SubnetConfig {
        id: subnet.id.clone(),
        name: subnet.name.clone(),
        cidr: subnet.cidr,
        gateway: subnet.gateway,
        dns_servers: subnet.dns_servers.clone(),
        domain: subnet.domain.clone(),
        lease_time_secs: subnet.lease_time_secs,
        ranges: subnet.ranges.clone(),
        reservations: Vec::new(),
        dhcp_racks: subnet.dhcp_racks.clone(),
        held_elsewhere: Vec::new(),
        services: subnet.services,
        boot: subnet.boot.clone(),
        router_advertisements: subnet.router_advertisements,
    }
}

/// The zone without its records.
fn zone_header(zone: &Zone) -> Zone {
    Zone {
        name: zone.name.clone(),
        serial: zone.serial,
        negative_ttl: zone.negative_ttl,
        records: Vec::new(),
    }
}

/// `items` by key; the first of equal keys wins.
fn by_key<K: Ord, V>(items: impl IntoIterator<Item = V>, key: impl Fn(&V) -> K) -> BTreeMap<K, V> {
    let mut map = BTreeMap::new();
    for item in items {
        map.entry(key(&item)).or_insert(item);
    }
    map
}

/// References to `items` by key; the first of equal keys wins.
fn by_ref<'a, K: Ord, V>(items: &'a [V], key: impl Fn(&'a V) -> K) -> BTreeMap<K, &'a V> {
    by_key(items.iter(), |item| key(item))
}

/// The keys of `old`'s items that `new` no longer has.
fn gone<'a, V>(old: &'a [V], new: &'a [V], key: impl Fn(&'a V) -> &'a str) -> Vec<String> {
    let new = by_ref(new, &key);
    old.iter()
        .map(&key)
        .filter(|k| !new.contains_key(k))
        .map(String::from)
        .collect()
}

/// The items of `new` that are not in `old` as they are, and the items of
/// `old` whose key `new` no longer has.
fn changed<'a, K: Ord, V: PartialEq>(
    old: &'a [V],
    new: &'a [V],
    key: impl Fn(&V) -> K,
) -> (Vec<&'a V>, Vec<&'a V>) {
    let old_by_key = by_key(old.iter(), |v| key(v));
    let new_by_key = by_key(new.iter(), |v| key(v));
    let upsert = new_by_key
        .iter()
        .filter(|(k, v)| old_by_key.get(*k) != Some(*v))
        .map(|(_, v)| *v)
        .collect();
    let remove = old_by_key
        .iter()
        .filter(|(k, _)| !new_by_key.contains_key(*k))
        .map(|(_, v)| *v)
        .collect();
    (upsert, remove)
}

/// Adds `upsert` and the keys of `remove` to `edits`, under `parent`.
fn push_edits<K, V: Clone>(
    edits: &mut Edits<(String, K), (String, V)>,
    parent: &str,
    upsert: Vec<&V>,
    remove: Vec<&V>,
    key: impl Fn(&V) -> K,
) {
    let parent = String::from(parent);
    edits
        .upsert
        .extend(upsert.into_iter().map(|v| (parent.clone(), v.clone())));
    edits
        .remove
        .extend(remove.into_iter().map(|v| (parent.clone(), key(v))));
}
