//! The QEMU side of a [`crate::vm_bmc::VmBmc`] machine: what it emulates
//! ([`VmSpec`], [`Firmware`]) and the script that execs its QEMU in the
//! machine's namespace, with the boot order ipmi_sim's boot device asks for.

use std::path::{Path, PathBuf};

use crate::netns::Netns;

/// The machine QEMU emulates.
#[derive(Clone, Debug)]
pub struct VmSpec {
    /// Its NIC's MAC address (an e1000, whose iPXE ROM PXE-boots).
    pub mac: String,
    /// RAM in MiB.
    pub memory_mib: u32,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Size of its (sparse, initially empty) virtio disk.
    pub disk_bytes: u64,
    /// The disk's serial number, as the guest reads it (virtio keeps 20 bytes).
    pub disk_serial: String,
    /// The tap, in the machine's namespace, that its NIC attaches to.
    pub tap: String,
    /// Where its serial console goes; appended to across power cycles.
    pub serial_log: PathBuf,
    /// Its firmware: SeaBIOS, or OVMF (UEFI).
    pub firmware: Firmware,
    /// Whether a reboot from inside the guest restarts it (as a real
    /// machine does) instead of reading as a power off.
    pub reboot: bool,
}

/// A machine's boot firmware.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Firmware {
    /// SeaBIOS with the e1000's iPXE ROM; `-boot n`/`c` picks the device.
    Bios,
    /// OVMF (Debian's `ovmf`, 4 MiB build, no Secure Boot) with the e1000's
    /// UEFI iPXE ROM; its variables survive power cycles, and `bootindex`
    /// puts the NIC or the disk first.
    Uefi,
}

/// OVMF's code and its variable-store template.
pub(crate) const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub(crate) const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// The bash script that execs this VM's QEMU in the machine's namespace;
/// `$1` is QEMU's boot order, `n` (network) or `c` (disk).
pub(crate) fn start_qemu_script(
    machine_ns: &Netns,
    vm: &VmSpec,
    token: &str,
    dir: &Path,
) -> String {
    let disk = dir.join("disk.img");
    // TCG everywhere by default (CI has no KVM); benches may ask for
    // `kvm` (where /dev/kvm works) to time the flow as on hardware.
    let accel = std::env::var("EDGEMETAL_QEMU_ACCEL").unwrap_or_else(|_| "tcg".into());
    let mut args: Vec<String> = [
        "ip",
        "netns",
        "exec",
        &machine_ns.name,
        "setsid",
        "qemu-system-x86_64",
        "-name",
        token,
        "-accel",
        &accel,
        "-machine",
        "pc",
        "-m",
        &vm.memory_mib.to_string(),
        "-smp",
        &vm.cpus.to_string(),
        "-display",
        "none",
        "-monitor",
        "none",
        // A file chardev can append; `-serial file:` truncates on each start.
        "-chardev",
        &format!(
            "file,id=serial0,path={},append=on",
            qemu_value(&vm.serial_log.to_string_lossy())
        ),
        "-serial",
        "chardev:serial0",
        "-netdev",
        &format!(
            "tap,id=n0,ifname={},script=no,downscript=no",
            qemu_value(&vm.tap)
        ),
        // QEMU 7.2 refuses `serial=` on `-drive`: it belongs to the device.
        // Discards and zero writes unmap: an erased disk is sparse again.
        "-drive",
        &format!(
            "file={},if=none,id=disk0,format=raw,discard=unmap,detect-zeroes=unmap",
            qemu_value(&disk.to_string_lossy())
        ),
    ]
    .iter()
    .map(|arg| shell_quote(arg))
    .collect();
    if !vm.reboot {
        args.push(shell_quote("-no-reboot"));
    }
    let nic = format!("e1000,netdev=n0,mac={}", qemu_value(&vm.mac));
    let disk_device = format!(
        "virtio-blk-pci,drive=disk0,serial={}",
        qemu_value(&vm.disk_serial)
    );
    let (devices, boot) = match vm.firmware {
        // SeaBIOS: `-boot n` or `-boot c`, as ipmi_sim's boot device says.
        Firmware::Bios => (
            format!(
                "-device {} -device {}",
                shell_quote(&nic),
                shell_quote(&disk_device)
            ),
            r#"-boot "$1""#.to_string(),
        ),
        // OVMF follows bootindex, not -boot: the script puts the wanted
        // device first.
        Firmware::Uefi => {
            let code = format!("if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}");
            let vars = format!(
                "if=pflash,format=raw,unit=1,file={}",
                qemu_value(&dir.join("ovmf-vars.fd").to_string_lossy())
            );
            (
                format!(
                    "-drive {} -drive {} -device {}\"$nic_index\" -device {}\"$disk_index\"",
                    shell_quote(&code),
                    shell_quote(&vars),
                    shell_quote(&format!("{nic},bootindex=")),
                    shell_quote(&format!("{disk_device},bootindex=")),
                ),
                String::new(),
            )
        }
    };
    format!(
        r#"#!/bin/bash
# Starts this machine's QEMU, detached. Generated by edgemetal_tests::vm_bmc.
# ipmi_sim's descriptors (its UDP socket, epoll, pipes) are inherited without
# close-on-exec: close all but stdio, or QEMU would keep the BMC's port bound.
for fd in /proc/$$/fd/*; do
    fd=${{fd##*/}}
    if [ "$fd" -gt 2 ] 2>/dev/null; then eval "exec $fd>&-" 2>/dev/null; fi
done
if [ "$1" = n ]; then nic_index=1 disk_index=2; else nic_index=2 disk_index=1; fi
exec {} {devices} {boot}
"#,
        args.join(" ")
    )
}

/// `value` as a QEMU option value: commas doubled.
fn qemu_value(value: &str) -> String {
    value.replace(',', ",,")
}

/// `word` single-quoted for sh.
fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}
