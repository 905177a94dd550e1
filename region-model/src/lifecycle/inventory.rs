//! Hardware inventory from a commissioned machine's raw script outputs.
//!
//! Sans-IO: [`parse`] takes what the commissioning agent posted (output name →
//! raw bytes) and returns an [`Inventory`]. The bytes come from the machine and
//! are untrusted, so nothing here panics, every string and list is bounded, and
//! whatever cannot be read becomes a note in [`Inventory::problems`] instead of
//! an error: a partial inventory is more useful than none.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::hardware_tests::{parse_lldp, parse_tests, LldpNeighbour, TestResult};

/// Longest string (in chars) kept from the machine; longer ones are cut.
pub const MAX_STRING_CHARS: usize = 256;
/// Most disks, and most NICs, kept; further lines are ignored.
pub const MAX_DEVICES: usize = 1024;
/// Most problem notes listed, so a garbage upload cannot bloat the inventory.
pub const MAX_PROBLEMS: usize = 64;
/// Bytes of each output that are read; real outputs are far smaller.
const MAX_OUTPUT_BYTES: usize = 4 << 20;
/// How many chars of an offending value a problem note quotes.
const QUOTE_CHARS: usize = 60;
const MIB: u64 = 1 << 20;

/// A machine's hardware, as found by commissioning.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct Inventory {
    /// CPU model name (x86 `model name`; on arm64 derived from implementer/part).
    pub cpu_model: Option<String>,
    /// Number of logical CPUs (`processor` entries in cpuinfo; 0 if unknown).
    pub cpu_count: u32,
    /// Usable RAM in MiB (from iomem's System RAM ranges, else meminfo's `MemTotal`).
    pub memory_mib: u64,
    /// Boot firmware: `bios` or `uefi`.
    pub firmware: Option<String>,
    /// Total size of all disks, in bytes.
    pub storage_bytes: u64,
    /// Disks, sorted by name.
    pub disks: Vec<Disk>,
    /// Network interfaces, sorted by name.
    pub nics: Vec<Nic>,
    /// System identity from DMI.
    pub system: SystemInfo,
    /// Hardware tests run during commissioning (when asked for), by name.
    pub tests: Vec<TestResult>,
    /// LLDP neighbours heard during commissioning (when asked for), by interface.
    pub lldp: Vec<LldpNeighbour>,
    /// Human-readable notes about missing outputs and lines that could not be read.
    pub problems: Vec<String>,
}

/// One block device.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct Disk {
    /// Kernel name, e.g. `vda`.
    pub name: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Serial number, if the device reports one.
    pub serial: Option<String>,
    /// Model, if the device reports one.
    pub model: Option<String>,
    /// Whether it is a spinning disk, if known.
    pub rotational: Option<bool>,
    /// Whether it is removable media, if known.
    pub removable: Option<bool>,
}

/// One network interface.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct Nic {
    /// Kernel name, e.g. `eth0`.
    pub name: String,
    /// MAC address, lowercase `aa:bb:cc:dd:ee:ff`.
    pub mac: Option<String>,
    /// Whether the link is up (carrier present).
    pub link_up: bool,
    /// Link speed in Mbit/s, if known.
    pub speed_mbps: Option<u32>,
    /// Kernel driver, e.g. `e1000`.
    pub driver: Option<String>,
}

/// System identity from DMI/SMBIOS.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct SystemInfo {
    /// System vendor (`sys_vendor`).
    pub vendor: Option<String>,
    /// Product name (`product_name`).
    pub product: Option<String>,
    /// System serial number (`product_serial`).
    pub serial: Option<String>,
    /// System UUID (`product_uuid`).
    pub uuid: Option<String>,
    /// Firmware vendor (`bios_vendor`).
    pub bios_vendor: Option<String>,
    /// Firmware version (`bios_version`).
    pub bios_version: Option<String>,
}

/// Builds an inventory from the agent's outputs (name → raw bytes).
///
/// Reads `cpuinfo`, `meminfo`, `iomem`, `firmware`, `block`, `net` and `dmi`,
/// and `tests` and `lldp` when the run had them;
/// any may be missing or garbage. Never panics.
pub fn parse(outputs: &BTreeMap<String, Vec<u8>>) -> Inventory {
    let mut notes = Notes::default();
    let [cpuinfo, iomem, meminfo, firmware, block, net, dmi] = [
        "cpuinfo", "iomem", "meminfo", "firmware", "block", "net", "dmi",
    ]
    .map(|name| read_output(outputs, name, &mut notes));
    let (cpu_model, cpu_count) = cpuinfo.map_or((None, 0), |t| parse_cpuinfo(&t, &mut notes));
    let memory_mib = memory_mib(iomem.as_deref(), meminfo.as_deref(), &mut notes);
    let firmware = firmware.and_then(|t| parse_firmware(&t, &mut notes));
    let disks = block.map(|t| parse_devices(&t, "block", &mut notes, parse_disk));
    let disks = disks.unwrap_or_default();
    let nics = net.map(|t| parse_devices(&t, "net", &mut notes, parse_nic));
    let nics = nics.unwrap_or_default();
    let system = dmi.map(|t| parse_dmi(&t)).unwrap_or_default();
    // Only runs that asked for them have these.
    let optional = |name: &str, notes: &mut Notes| {
        outputs
            .contains_key(name)
            .then(|| read_output(outputs, name, notes))
            .flatten()
    };
    let tests = optional("tests", &mut notes).map(|t| parse_tests(&t, &mut notes));
    let lldp = optional("lldp", &mut notes).map(|t| parse_lldp(&t, &mut notes));
    let sizes = disks.iter().map(|d| d.size_bytes);
    let storage_bytes = sizes.fold(0, u64::saturating_add);
    Inventory {
        cpu_model,
        cpu_count,
        memory_mib,
        firmware,
        storage_bytes,
        disks,
        nics,
        system,
        tests: tests.unwrap_or_default(),
        lldp: lldp.unwrap_or_default(),
        problems: notes.0,
    }
}

/// Problem notes, capped at [`MAX_PROBLEMS`] and a final "more" marker.
#[derive(Default)]
pub(super) struct Notes(pub(super) Vec<String>);

impl Notes {
    pub(super) fn push(&mut self, note: impl Into<String>) {
        if self.0.len() < MAX_PROBLEMS {
            self.0.push(note.into());
        } else if self.0.len() == MAX_PROBLEMS {
            self.0.push("more problems not listed".to_owned());
        }
    }
}

/// An output as text (lossy: the machine may send anything), cut to a sane
/// size; `None`, with a note, when the agent did not send it.
fn read_output(
    outputs: &BTreeMap<String, Vec<u8>>,
    name: &str,
    notes: &mut Notes,
) -> Option<String> {
    let Some(bytes) = outputs.get(name) else {
        notes.push(format!("no {name} output"));
        return None;
    };
    if bytes.len() > MAX_OUTPUT_BYTES {
        let len = bytes.len();
        notes.push(format!(
            "{name} is {len} bytes; only the first {MAX_OUTPUT_BYTES} were read"
        ));
    }
    let head = bytes.get(..MAX_OUTPUT_BYTES).unwrap_or(bytes);
    Some(String::from_utf8_lossy(head).into_owned())
}

/// A machine-supplied value as a bounded string without control characters;
/// `None` when nothing is left (sysfs reports "unknown" as an empty file).
pub(super) fn clean(raw: &str) -> Option<String> {
    let chars = raw.trim_start().chars().filter(|c| !c.is_control());
    let mut kept: String = chars.take(MAX_STRING_CHARS).collect();
    kept.truncate(kept.trim_end().len());
    (!kept.is_empty()).then_some(kept)
}

/// A short, escaped excerpt of a machine-supplied value for a problem note.
pub(super) fn quote(raw: &str) -> String {
    let excerpt: String = raw.chars().take(QUOTE_CHARS).collect();
    let more = if excerpt.len() < raw.len() { "…" } else { "" };
    format!("{excerpt:?}{more}")
}

/// Fills `slot` from `value` unless an earlier line already did.
fn first(slot: &mut Option<String>, value: &str) {
    if slot.is_none() {
        *slot = clean(value);
    }
}

/// CPU model and count from /proc/cpuinfo.
fn parse_cpuinfo(text: &str, notes: &mut Notes) -> (Option<String>, u32) {
    let mut count: u32 = 0;
    let (mut model, mut implementer, mut part, mut hardware) = (None, None, None, None);
    for (key, value) in text.lines().filter_map(|line| line.split_once(':')) {
        match key.trim() {
            "processor" => count = count.saturating_add(1),
            "model name" => first(&mut model, value),
            "CPU implementer" => first(&mut implementer, value),
            "CPU part" => first(&mut part, value),
            "Hardware" => first(&mut hardware, value),
            _ => {}
        }
    }
    if count == 0 {
        notes.push("cpuinfo lists no processors");
    }
    // Older Intel names pad with runs of spaces: collapse them.
    let model = model.map(|m| m.split_whitespace().collect::<Vec<_>>().join(" "));
    // arm64 has no model name; the implementer/part codes identify the core.
    let arm_model = implementer.map(|imp| arm_cpu_name(&imp, part.as_deref()));
    (model.or(arm_model).or(hardware), count)
}

/// A readable name for an Arm core from its MIDR implementer and part codes;
/// the raw codes when it is not one of the common server/board cores.
fn arm_cpu_name(implementer: &str, part: Option<&str>) -> String {
    let hex = |s: &str| u32::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok();
    let name = match (hex(implementer), part.and_then(hex)) {
        (Some(0x41), Some(0xd03)) => "ARM Cortex-A53",
        (Some(0x41), Some(0xd07)) => "ARM Cortex-A57",
        (Some(0x41), Some(0xd08)) => "ARM Cortex-A72",
        (Some(0x41), Some(0xd0b)) => "ARM Cortex-A76",
        (Some(0x41), Some(0xd0c)) => "ARM Neoverse-N1",
        (Some(0x41), Some(0xd40)) => "ARM Neoverse-V1",
        (Some(0x41), Some(0xd49)) => "ARM Neoverse-N2",
        (Some(0x41), Some(0xd4f)) => "ARM Neoverse-V2",
        (Some(0xc0), Some(0xac3)) => "Ampere-1",
        _ => return format!("implementer {implementer} part {}", part.unwrap_or("?")),
    };
    name.to_owned()
}

/// RAM in MiB. iomem's System RAM ranges are preferred because they are
/// within ~1 MiB of what the machine has, while `MemTotal` excludes memory the
/// kernel reserved for itself.
fn memory_mib(iomem: Option<&str>, meminfo: Option<&str>, notes: &mut Notes) -> u64 {
    if let Some(text) = iomem {
        match iomem_ram_bytes(text).saturating_add(MIB / 2) / MIB {
            0 => notes.push("iomem has no usable System RAM (read as non-root?); using meminfo"),
            mib => return mib,
        }
    }
    let mem_total = meminfo.and_then(|text| text.lines().find_map(|l| l.strip_prefix("MemTotal:")));
    let kib: Option<u64> =
        mem_total.and_then(|v| v.trim_end().strip_suffix(" kB")?.trim().parse().ok());
    if kib.is_none() {
        notes.push("memory size unknown: no usable iomem, and no MemTotal in meminfo");
    }
    kib.map_or(0, |kib| kib.saturating_add(512) / 1024)
}

/// Sum of the top-level `System RAM` ranges of /proc/iomem, in bytes.
/// Indented lines are children of a range (kernel code, ...), already counted.
fn iomem_ram_bytes(text: &str) -> u64 {
    let top_level = text.lines().filter(|line| !line.starts_with([' ', '\t']));
    let sizes = top_level.filter_map(system_ram_bytes);
    sizes.fold(0, u64::saturating_add)
}

/// The size of an iomem line's range if it is `System RAM`. All-zero
/// addresses are what non-root readers see and mean nothing.
fn system_ram_bytes(line: &str) -> Option<u64> {
    let (range, name) = line.split_once(':')?;
    let (start, end) = range.trim().split_once('-')?;
    let start = u64::from_str_radix(start, 16).ok()?;
    let end = u64::from_str_radix(end, 16).ok()?;
    let usable = name.trim() == "System RAM" && end != 0 && end >= start;
    usable.then(|| (end - start).saturating_add(1)) // the end is inclusive
}

/// `bios` or `uefi`.
fn parse_firmware(text: &str, notes: &mut Notes) -> Option<String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "bios" => Some("bios".to_owned()),
        "uefi" | "efi" => Some("uefi".to_owned()),
        _ => {
            notes.push(format!("unrecognised firmware {}", quote(text.trim())));
            None
        }
    }
}

/// The value of `key` in a TAB-separated `key=value` line (first one wins).
pub(super) fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let mut fields = line.split('\t').filter_map(|f| f.split_once('='));
    fields.find(|(k, _)| k.trim() == key).map(|(_, v)| v)
}

/// `1`/`0` as a flag; anything else is unknown.
fn flag(line: &str, key: &str) -> Option<bool> {
    match field(line, key).map(str::trim) {
        Some("1") => Some(true),
        Some("0") => Some(false),
        _ => None,
    }
}

/// One device per non-blank line, deduplicated and sorted by name, at most
/// [`MAX_DEVICES`] of them. Lines without a name are skipped with a note.
pub(super) fn parse_devices<T>(
    text: &str,
    output: &str,
    notes: &mut Notes,
    parse_line: fn(String, &str, &mut Notes) -> Option<T>,
) -> Vec<T> {
    let mut devices = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if devices.len() == MAX_DEVICES {
            notes.push(format!(
                "{output}: over {MAX_DEVICES} devices; the rest were ignored"
            ));
            break;
        }
        match field(line, "name").and_then(clean) {
            None => notes.push(format!("{output} line without a name: {}", quote(line))),
            Some(name) if devices.contains_key(&name) => {
                notes.push(format!("{output}: {name} listed twice; kept the first"));
            }
            Some(name) => {
                if let Some(device) = parse_line(name.clone(), line, notes) {
                    devices.insert(name, device);
                }
            }
        }
    }
    devices.into_values().collect()
}

/// A `block` line; `None` (with a note) without a readable size.
fn parse_disk(name: String, line: &str, notes: &mut Notes) -> Option<Disk> {
    let size = field(line, "size_bytes").unwrap_or("").trim();
    let Ok(size_bytes) = size.parse() else {
        notes.push(format!("disk {name}: unparsable size {}", quote(size)));
        return None;
    };
    Some(Disk {
        name,
        size_bytes,
        serial: field(line, "serial").and_then(clean),
        model: field(line, "model").and_then(clean),
        rotational: flag(line, "rotational"),
        removable: flag(line, "removable"),
    })
}

/// A `net` line.
fn parse_nic(name: String, line: &str, notes: &mut Notes) -> Option<Nic> {
    let raw_mac = field(line, "mac").unwrap_or("").trim();
    let mac = normalise_mac(raw_mac);
    if mac.is_none() && !raw_mac.is_empty() {
        notes.push(format!("nic {name}: invalid MAC {}", quote(raw_mac)));
    }
    // Reading `carrier` fails (empty) while an interface is down; then
    // operstate is the best we have.
    let link_up = match field(line, "carrier").map(str::trim) {
        Some("1") => true,
        None | Some("") => field(line, "operstate").is_some_and(|s| s.trim() == "up"),
        Some(_) => false,
    };
    // The kernel reports an unknown speed as -1, which is no u32.
    let speed = field(line, "speed").and_then(|s| s.trim().parse::<u32>().ok());
    let speed_mbps = speed.filter(|&s| s > 0);
    let driver = field(line, "driver").and_then(clean);
    Some(Nic {
        name,
        mac,
        link_up,
        speed_mbps,
        driver,
    })
}

/// `aa:bb:cc:dd:ee:ff` (lowercase) from a MAC with `:` or `-` separators.
fn normalise_mac(raw: &str) -> Option<String> {
    let parts: Vec<&str> = raw.split([':', '-']).take(7).collect();
    let hex = |p: &&str| (1..=2).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_hexdigit());
    let valid = parts.len() == 6 && parts.iter().all(hex);
    let octet = |p: &&str| format!("{:0>2}", p.to_ascii_lowercase());
    valid.then(|| parts.iter().map(octet).collect::<Vec<_>>().join(":"))
}

/// System identity from `key=value` lines of DMI fields; other lines are ignored.
fn parse_dmi(text: &str) -> SystemInfo {
    let mut system = SystemInfo::default();
    for (key, value) in text.lines().filter_map(|line| line.split_once('=')) {
        let slot = match key.trim() {
            "sys_vendor" => &mut system.vendor,
            "product_name" => &mut system.product,
            "product_serial" => &mut system.serial,
            "product_uuid" => &mut system.uuid,
            "bios_vendor" => &mut system.bios_vendor,
            "bios_version" => &mut system.bios_version,
            _ => continue,
        };
        first(slot, value);
    }
    system
}

#[cfg(test)]
#[path = "inventory_tests.rs"]
mod tests;
