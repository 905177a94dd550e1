//! One site's LAN as the namespace tests build it: a switch (a bridge in its
//! own namespace), a rack enrolled with the region in a namespace of its own
//! (reaching the region's embedded broker through a forwarded loopback
//! port) and plugged into the switch, and machines plugged in beside it.

use std::path::{Path, PathBuf};

use crate::dhcp_site::{start_rack_in, NamespacedRack};
use crate::netns::{bridge, forward_loopback_port, plug, Netns};
use crate::site::wait_in_sync;
use crate::{RegionOptions, RegionProcess};

/// A site's LAN with its rack enrolled (and not yet started: a test may add
/// interfaces the rack must see first).
pub struct Lan {
    /// The switch's namespace.
    pub switch_ns: Netns,
    /// The bridge in it.
    pub switch: String,
    /// The rack's namespace.
    pub rack_ns: Netns,
    /// The rack's port on the switch.
    pub rack_nic: String,
    /// The rack's state directory (its enrolled identity).
    pub state: PathBuf,
    /// The name it enrolled under.
    pub rack_name: String,
}

impl Lan {
    /// Enrols `rack_name` into `state`, then builds the switch and the
    /// rack's namespace with its port at `rack_mac` / `rack_address` (CIDR).
    pub async fn enrol(
        region: &RegionProcess,
        options: &RegionOptions,
        rack_name: &str,
        state: &Path,
        (rack_mac, rack_address): (&str, &str),
    ) -> Self {
        region.enrol_rack(rack_name, state).await;
        let switch_ns = Netns::create();
        let switch = bridge(&switch_ns);
        let rack_ns = Netns::create();
        let rack_nic = plug(&switch_ns, &switch, &rack_ns, rack_mac, Some(rack_address));
        forward_loopback_port(&rack_ns, options.embedded_broker.port());
        Lan {
            switch_ns,
            switch,
            rack_ns,
            rack_nic,
            state: state.to_path_buf(),
            rack_name: rack_name.to_string(),
        }
    }

    /// Starts the rack serving DHCP on its port, logging to `log`, and waits
    /// until the region shows it online and in sync.
    pub async fn start_rack(&self, region: &RegionProcess, log: &Path) -> NamespacedRack {
        let rack = start_rack_in(&self.rack_ns, &self.state, &self.rack_nic, log);
        wait_in_sync(&region.client(), &self.rack_name).await;
        rack
    }

    /// A machine's namespace plugged into the switch at `mac` (with a static
    /// `address`, or none for a DHCP client); returns it and its interface.
    pub fn plug_machine(&self, mac: &str, address: Option<&str>) -> (Netns, String) {
        let machine = Netns::create();
        let nic = plug(&self.switch_ns, &self.switch, &machine, mac, address);
        (machine, nic)
    }
}
