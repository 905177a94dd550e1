//! The operator's side of booting, read from the snapshot the rack holds:
//! a machine's own iPXE script (its settings over its subnet's) and the
//! boot-files tree (boot resources of kind `file`, by path). The DHCP
//! engine reads the same settings from its own copy of the snapshot.

use std::net::IpAddr;

use edgemetal_protocol::{BootResourceKind, ConfigSnapshot, IpxeScript, MacAddress};
use tokio::sync::watch;

/// A live view of the boot table in the rack's current snapshot.
#[derive(Clone)]
pub struct BootTable {
    snapshots: watch::Receiver<Option<ConfigSnapshot>>,
}

impl BootTable {
    /// Follows `snapshots`.
    pub fn new(snapshots: watch::Receiver<Option<ConfigSnapshot>>) -> Self {
        BootTable { snapshots }
    }

    /// A table that never has settings (benches, tools).
    pub fn empty() -> Self {
        BootTable::new(watch::channel(None).1)
    }

    /// The operator's script for `mac`, connecting from `client` (which
    /// names its subnet), if the machine or its subnet has one.
    pub fn script_for(&self, mac: MacAddress, client: Option<IpAddr>) -> Option<String> {
        let snapshot = self.snapshots.borrow();
        let snapshot = snapshot.as_ref()?;
        let subnet = client
            .and_then(|client| match client.to_canonical() {
                IpAddr::V4(v4) => Some(v4),
                IpAddr::V6(_) => None,
            })
            .and_then(|v4| snapshot.subnets.iter().find(|s| s.cidr.contains(v4)));
        let own = snapshot
            .machine_boot
            .iter()
            .find(|machine| machine.mac == mac)
            .and_then(|machine| machine.settings.ipxe.as_ref());
        match own.or_else(|| subnet.and_then(|s| s.boot.ipxe.as_ref()))? {
            IpxeScript::Contents(script) => Some(script.clone()),
            IpxeScript::Url(_) => None,
        }
    }

    /// The content hash of the boot file at `path` in the tree.
    pub fn file(&self, path: &str) -> Option<[u8; 32]> {
        let snapshot = self.snapshots.borrow();
        snapshot
            .as_ref()?
            .boot_resources
            .iter()
            .find(|r| r.kind == BootResourceKind::File && r.name == path)
            .map(|r| r.sha256)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgemetal_protocol::{BootResource, BootSettings, Generation, MachineBoot};

    const MAC: MacAddress = MacAddress([0x52, 0x54, 0, 0, 0, 1]);

    fn script(text: &str) -> BootSettings {
        BootSettings {
            ipxe: Some(IpxeScript::Contents(text.into())),
            loaders: Vec::new(),
        }
    }

    fn table(subnet: BootSettings, machine: Option<BootSettings>) -> BootTable {
        let mut subnet_config: edgemetal_protocol::SubnetConfig =
            edgemetal_protocol::v4::SubnetConfig {
                id: "s".into(),
                name: "s".into(),
                cidr: "10.0.0.0/24".parse().unwrap(),
                gateway: None,
                dns_servers: Vec::new(),
                domain: None,
                lease_time_secs: 600,
                ranges: Vec::new(),
                reservations: Vec::new(),
                dhcp_racks: Vec::new(),
                held_elsewhere: Vec::new(),
                services: Default::default(),
            }
            .into();
        subnet_config.boot = subnet;
        let snapshot = ConfigSnapshot {
            generation: Generation(1),
            subnets: vec![subnet_config],
            boot_resources: vec![BootResource {
                name: "menus/site.ipxe".into(),
                architecture: "all".into(),
                kind: BootResourceKind::File,
                sha256: [9; 32],
                size: 1,
            }],
            dns: Default::default(),
            gateway: Default::default(),
            machine_boot: machine
                .map(|settings| MachineBoot { mac: MAC, settings })
                .into_iter()
                .collect(),
        };
        BootTable::new(watch::channel(Some(snapshot)).1)
    }

    #[test]
    fn a_machines_script_wins_over_its_subnets_and_the_subnet_is_the_clients() {
        let inside = Some(IpAddr::from([10, 0, 0, 7]));
        let outside = Some(IpAddr::from([10, 9, 0, 7]));
        let t = table(script("#!ipxe\nsubnet"), None);
        assert_eq!(t.script_for(MAC, inside).as_deref(), Some("#!ipxe\nsubnet"));
        assert_eq!(t.script_for(MAC, outside), None);
        let t = table(script("#!ipxe\nsubnet"), Some(script("#!ipxe\nmachine")));
        assert_eq!(
            t.script_for(MAC, outside).as_deref(),
            Some("#!ipxe\nmachine")
        );
        let other = MacAddress([2; 6]);
        assert_eq!(
            t.script_for(other, inside).as_deref(),
            Some("#!ipxe\nsubnet")
        );
        assert_eq!(BootTable::empty().script_for(MAC, inside), None);
    }

    #[test]
    fn boot_files_are_found_by_their_path_only() {
        let t = table(BootSettings::default(), None);
        assert_eq!(t.file("menus/site.ipxe"), Some([9; 32]));
        assert_eq!(t.file("menus/other.ipxe"), None);
        assert_eq!(t.file("site.ipxe"), None);
    }
}
