//! What the events a rack reports mean for the region: the order they are
//! applied in, a lease's state, which boot steps become machine events, and
//! the enlistment policy for a machine that network-boots unknown. The store
//! applies these decisions inside one transaction per batch.

use edgemetal_protocol::{Architecture, BootStage, LeaseChange, MacAddress};

/// What to do with one event of a batch, given the highest id applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventStep {
    /// Applied before (a redelivery): skip it.
    Seen,
    /// The next one: apply it.
    Apply,
    /// An earlier event is missing (a batch lost on the way): stop here; the
    /// rack resends from the region's ack, so order is kept.
    Gap,
}

/// Where event `id` stands after `applied`: each event is applied exactly
/// once, and in order.
pub fn event_step(applied: u64, id: u64) -> EventStep {
    if id <= applied {
        EventStep::Seen
    } else if id == applied + 1 {
        EventStep::Apply
    } else {
        EventStep::Gap
    }
}

/// The stored state of a lease after `change`.
pub fn lease_state(change: LeaseChange) -> &'static str {
    match change {
        LeaseChange::New | LeaseChange::Renewed => "bound",
        LeaseChange::Released => "released",
        LeaseChange::Expired => "expired",
        LeaseChange::Declined => "declined",
    }
}

/// Whether a lease change of a known machine is news: it becomes a machine
/// event and moves its DNS names (a renewal keeps the address: neither).
pub fn lease_moves_machine(change: LeaseChange) -> bool {
    change != LeaseChange::Renewed
}

/// The event kind and text for a boot step a rack saw.
pub fn boot_stage_event(stage: BootStage) -> (&'static str, &'static str) {
    match stage {
        BootStage::ConfigServed => ("boot.config", "fetched its boot configuration"),
        BootStage::KernelServed => ("boot.kernel", "started loading the kernel"),
        BootStage::InitrdServed => ("boot.initrd", "started loading the initrd"),
        BootStage::MetadataServed => (
            "boot.metadata",
            "the ephemeral system is up and read its metadata",
        ),
    }
}

/// A machine the region creates because it network-booted unknown (MAAS's
/// enlistment): status New, named after its MAC, with the architecture its
/// firmware announced (DHCP option 93).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enlistment {
    /// Host name: `machine-<mac without colons>`.
    pub hostname: String,
    /// MAAS-style architecture.
    pub architecture: &'static str,
    /// The `enlisted` event's text.
    pub detail: String,
}

impl Enlistment {
    /// The enlistment of `mac`, which booted announcing `arch`.
    pub fn of(mac: MacAddress, arch: Option<u16>) -> Self {
        let mac = mac.to_string();
        let architecture = Architecture::from_option93(arch).as_str();
        Enlistment {
            hostname: format!("machine-{}", mac.replace(':', "")),
            architecture,
            detail: format!("enlisted: {mac} network-booted ({architecture}), status New"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_apply_once_and_in_order() {
        assert_eq!(event_step(5, 3), EventStep::Seen);
        assert_eq!(event_step(5, 5), EventStep::Seen);
        assert_eq!(event_step(5, 6), EventStep::Apply);
        assert_eq!(event_step(5, 8), EventStep::Gap);
        assert_eq!(event_step(0, 1), EventStep::Apply);
    }

    #[test]
    fn renewals_are_not_news_the_rest_are() {
        assert_eq!(lease_state(LeaseChange::Renewed), "bound");
        assert_eq!(lease_state(LeaseChange::Declined), "declined");
        assert!(!lease_moves_machine(LeaseChange::Renewed));
        for change in [
            LeaseChange::New,
            LeaseChange::Released,
            LeaseChange::Expired,
            LeaseChange::Declined,
        ] {
            assert!(lease_moves_machine(change));
        }
    }

    #[test]
    fn an_unknown_machine_enlists_by_its_mac_and_announced_architecture() {
        let mac: MacAddress = "52:54:00:ab:cd:ef".parse().unwrap();
        let arm = Enlistment::of(mac, Some(11));
        assert_eq!(arm.hostname, "machine-525400abcdef");
        assert_eq!(arm.architecture, "arm64");
        assert!(arm.detail.contains("52:54:00:ab:cd:ef") && arm.detail.contains("arm64"));
        assert_eq!(Enlistment::of(mac, None).architecture, "amd64");
    }
}
