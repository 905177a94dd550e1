//! Commissioning over the link: what a booting machine learns about itself
//! (its metadata, handed to the rack with the boot decision), how far its
//! boot has got (reported by the rack that serves it), and the results its
//! commissioning agent posts through the rack.

use alloc::string::String;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use crate::types::MacAddress;

/// What a machine running the ephemeral image reads from the rack's
/// metadata endpoint. The region issues it with every boot answer, so the
/// rack can serve it while the link is down.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineMetadata {
    /// The region's machine id.
    pub machine_id: String,
    /// The machine's host name.
    pub hostname: String,
    /// Why it boots the ephemeral image: `enlist` or `commission`.
    pub purpose: String,
    /// The per-machine secret the agent presents when it posts results; a
    /// new one is issued each time the machine starts commissioning.
    pub token: String,
}

impl core::fmt::Debug for MachineMetadata {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // The token never reaches logs through Debug.
        f.debug_struct("MachineMetadata")
            .field("machine_id", &self.machine_id)
            .field("hostname", &self.hostname)
            .field("purpose", &self.purpose)
            .finish_non_exhaustive()
    }
}

/// A step of a network boot that the rack saw a machine take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BootStage {
    /// The machine fetched its boot configuration (iPXE script, PXELINUX or GRUB file).
    ConfigServed,
    /// It started loading the kernel.
    KernelServed,
    /// It started loading the initrd.
    InitrdServed,
    /// Its ephemeral system read its metadata: the kernel booted and the network is up.
    MetadataServed,
}

/// A rack's report of a machine's boot progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootProgress {
    /// The machine's boot interface.
    pub mac: MacAddress,
    /// What it did.
    pub stage: BootStage,
}

/// One named output of the commissioning agent (e.g. `cpuinfo`), raw.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScriptOutput {
    /// The output's name.
    pub name: String,
    /// Its bytes, as the machine produced them.
    pub data: Vec<u8>,
}

impl core::fmt::Debug for ScriptOutput {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ScriptOutput")
            .field("name", &self.name)
            .field("len", &self.data.len())
            .finish()
    }
}

/// Results a machine posted to the rack, authenticated there by its token
/// and relayed (queued durably) to the region, which checks the token again.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommissioningResults {
    /// The machine's boot interface (from its lease on the rack).
    pub mac: MacAddress,
    /// The machine id from the metadata the token belongs to.
    pub machine_id: String,
    /// The token the machine presented.
    pub token: String,
    /// Why the machine ran: `enlist` or `commission`.
    pub purpose: String,
    /// The agent's outputs.
    pub outputs: Vec<ScriptOutput>,
}

impl core::fmt::Debug for CommissioningResults {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CommissioningResults")
            .field("mac", &self.mac)
            .field("machine_id", &self.machine_id)
            .field("purpose", &self.purpose)
            .field("outputs", &self.outputs)
            .finish_non_exhaustive()
    }
}

/// A hardware test the commissioning agent can run (protocol v4), from
/// Debian's packages in the ephemeral image's tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum HardwareTest {
    /// `smartctl -H` on every fixed disk; a disk without SMART is skipped.
    Smartctl,
    /// A short `memtester` run over part of the free memory.
    Memtester,
    /// `fio` random read and write on every fixed disk. It writes to the
    /// disks (as MAAS's fio test does): their data is not kept.
    Fio,
    /// `stress-ng` on every CPU with its results verified.
    StressNg,
}

impl HardwareTest {
    /// Every test, in the order the agent runs them.
    pub const ALL: [HardwareTest; 4] = [
        HardwareTest::Smartctl,
        HardwareTest::Memtester,
        HardwareTest::Fio,
        HardwareTest::StressNg,
    ];

    /// The name the API, the agent and the results use.
    pub fn as_str(self) -> &'static str {
        match self {
            HardwareTest::Smartctl => "smartctl",
            HardwareTest::Memtester => "memtester",
            HardwareTest::Fio => "fio",
            HardwareTest::StressNg => "stress-ng",
        }
    }

    /// The test named `name`, if any.
    pub fn parse(name: &str) -> Option<HardwareTest> {
        HardwareTest::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

/// What a commissioning run does besides the inventory (protocol v4): the
/// hardware tests to run and how long to listen for LLDP neighbours.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommissionPlan {
    /// The tests, each at most once.
    pub tests: Vec<HardwareTest>,
    /// Seconds to listen for LLDP on every interface; 0: not at all.
    pub lldp_secs: u16,
}
