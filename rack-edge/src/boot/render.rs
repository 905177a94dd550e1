//! Boot configurations rendered from a boot decision: the iPXE script (the
//! path edgemetal's DHCP answer leads to), and PXELINUX and GRUB files for
//! machines whose firmware loads those instead.

use edgemetal_protocol::{BootDecision, MacAddress};

/// Where the rack serves cached boot resources over HTTP and TFTP.
pub const RESOURCE_PATH: &str = "/boot/resources/";

/// The kernel command line for an ephemeral boot: the region's part, then
/// where the machine reaches this rack, then BOOTIF (which NIC booted).
fn cmdline(base_cmdline: &str, rack_url: &str, mac: MacAddress) -> String {
    let bootif = mac.to_string().replace(':', "-");
    format!("{base_cmdline} edgemetal.rack={rack_url} BOOTIF=01-{bootif}")
}

/// The iPXE script for `mac`; `rack_url` is `http://RACK:PORT`.
pub fn ipxe_script(decision: &BootDecision, rack_url: &str, mac: MacAddress) -> String {
    match decision {
        BootDecision::LocalDisk => {
            // BIOS: `sanboot` boots the first disk through INT 13h whatever
            // the firmware's boot order. UEFI: sanboot cannot boot a local
            // disk, but a failing `exit` makes the firmware try its next
            // boot option (the disk's removable-media loader the installer
            // wrote). Where sanboot fails too, `exit` is the fallback.
            "#!ipxe\necho edgemetal: booting from local disk\n\
             iseq ${platform} efi && goto efi ||\n\
             sanboot --no-describe --drive 0x80 || exit\n\
             :efi\nexit 1\n"
                .to_string()
        }
        BootDecision::Ephemeral(image) => {
            let resource =
                |sha: &[u8; 32]| format!("{rack_url}{RESOURCE_PATH}{}", hex::encode(sha));
            // The squashfs (the tools image with the hardware tests) is not
            // loaded here: the agent fetches it only for a run that needs it
            // (see the metadata's `tools_url`), so other boots stay small.
            format!(
                "#!ipxe\necho edgemetal: {purpose}\nkernel {kernel} initrd=initrd {cmdline}\ninitrd --name initrd {initrd}\nboot\n",
                purpose = image.purpose,
                kernel = resource(&image.kernel),
                cmdline = cmdline(&image.cmdline, rack_url, mac),
                initrd = resource(&image.initrd),
            )
        }
    }
}

/// The PXELINUX configuration (`pxelinux.cfg/01-<mac>`) for `mac`.
pub fn pxelinux_config(decision: &BootDecision, rack_url: &str, mac: MacAddress) -> String {
    match decision {
        BootDecision::LocalDisk => "DEFAULT local\nLABEL local\n  LOCALBOOT 0\n".to_string(),
        BootDecision::Ephemeral(image) => format!(
            "DEFAULT {purpose}\nLABEL {purpose}\n  KERNEL {path}{kernel}\n  INITRD {path}{initrd}\n  APPEND {cmdline}\n",
            purpose = image.purpose,
            path = RESOURCE_PATH.trim_start_matches('/'),
            kernel = hex::encode(image.kernel),
            initrd = hex::encode(image.initrd),
            cmdline = cmdline(&image.cmdline, rack_url, mac),
        ),
    }
}

/// The GRUB configuration (`grub/grub.cfg-<mac>`) for `mac`.
pub fn grub_config(decision: &BootDecision, rack_url: &str, mac: MacAddress) -> String {
    match decision {
        BootDecision::LocalDisk => "set timeout=0\nexit\n".to_string(),
        BootDecision::Ephemeral(image) => format!(
            "set default=0\nset timeout=0\nmenuentry '{purpose}' {{\n  linux {RESOURCE_PATH}{kernel} {cmdline}\n  initrd {RESOURCE_PATH}{initrd}\n}}\n",
            purpose = image.purpose,
            kernel = hex::encode(image.kernel),
            initrd = hex::encode(image.initrd),
            cmdline = cmdline(&image.cmdline, rack_url, mac),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgemetal_protocol::EphemeralBoot;

    const MAC: MacAddress = MacAddress([0x52, 0x54, 0, 0x12, 0x34, 0x56]);

    fn ephemeral() -> BootDecision {
        BootDecision::Ephemeral(EphemeralBoot {
            purpose: "enlist".into(),
            kernel: [1; 32],
            initrd: [2; 32],
            squashfs: None,
            cmdline: "console=ttyS0".into(),
        })
    }

    #[test]
    fn the_ipxe_script_loads_the_cached_kernel_and_initrd_from_this_rack() {
        let script = ipxe_script(&ephemeral(), "http://10.0.0.2:5248", MAC);
        assert!(script.starts_with("#!ipxe\n"));
        let kernel = format!(
            "kernel http://10.0.0.2:5248/boot/resources/{}",
            hex::encode([1u8; 32])
        );
        assert!(script.contains(&kernel), "{script}");
        assert!(script.contains("edgemetal.rack=http://10.0.0.2:5248"));
        assert!(script.contains("BOOTIF=01-52-54-00-12-34-56"));
        assert!(script.contains(&format!(
            "initrd --name initrd http://10.0.0.2:5248/boot/resources/{}",
            hex::encode([2u8; 32])
        )));
        assert!(script.trim_end().ends_with("boot"));
    }

    #[test]
    fn local_disk_hands_back_to_the_firmware() {
        let local = ipxe_script(&BootDecision::LocalDisk, "http://x", MAC);
        assert!(
            local.contains("sanboot --no-describe --drive 0x80"),
            "{local}"
        );
        assert!(local.contains(":efi\nexit 1\n"), "{local}");
        assert!(pxelinux_config(&BootDecision::LocalDisk, "http://x", MAC).contains("LOCALBOOT 0"));
        assert!(grub_config(&BootDecision::LocalDisk, "http://x", MAC).contains("exit"));
    }

    #[test]
    fn pxelinux_and_grub_point_at_the_same_resources() {
        let pxe = pxelinux_config(&ephemeral(), "http://r:1", MAC);
        assert!(
            pxe.contains(&format!("KERNEL boot/resources/{}", hex::encode([1u8; 32]))),
            "{pxe}"
        );
        let grub = grub_config(&ephemeral(), "http://r:1", MAC);
        assert!(
            grub.contains(&format!(
                "initrd /boot/resources/{}",
                hex::encode([2u8; 32])
            )),
            "{grub}"
        );
    }
}
