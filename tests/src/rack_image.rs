//! The rack appliance image (`images/rack/`), built on demand and booted in
//! QEMU: [`image`] builds `rack.img` into `target/rack-image/` with the
//! workspace's `edgemetal-rack` when the output is missing or stale;
//! [`ImageSite`] is the network a rack VM boots into; [`RackVm`] runs one.
//!
//! The site: one namespace holds QEMU's two taps. The WAN tap carries the
//! gateway address the rack reaches the region through (relays to the
//! test's region on the host loopback listen there); the site tap is on a
//! bridge with a client namespace, where DHCP clients run.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::netns::{self, Netns, PortForward};

/// The built image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RackImage {
    /// The raw disk image (`rack.img`); boot a copy, it is shared.
    pub disk: PathBuf,
    /// The kernel, for direct boot.
    pub kernel: PathBuf,
    /// The initramfs, for direct boot.
    pub initrd: PathBuf,
}

/// The directory holding `build.sh` and the image's other inputs.
pub fn source_dir() -> PathBuf {
    crate::build_once::workspace().join("images/rack")
}

/// The rack image in `target/rack-image/`, built with the workspace's
/// (debug) `edgemetal-rack` first when missing or stale. Safe to call from
/// many tests and processes at once (see [`crate::build_once`]). The build
/// installs missing Debian packages (syslinux, mtools, dosfstools, …), which
/// needs root.
pub fn image() -> RackImage {
    let script = source_dir().join("build.sh");
    let rack = crate::process::binary("edgemetal-rack");
    let out = crate::build_once::ImageBuild {
        name: "rack-image",
        script: &script,
        args: &[rack.as_os_str()],
        files: &["rack.img", "vmlinuz", "initrd.gz"],
    }
    .output();
    RackImage {
        disk: out.join("rack.img"),
        kernel: out.join("vmlinuz"),
        initrd: out.join("initrd.gz"),
    }
}

/// The byte range of MBR partition `number` (1–4) of a disk image.
pub fn partition_range(disk: &Path, number: usize) -> (u64, u64) {
    assert!((1..=4).contains(&number));
    let mut mbr = [0u8; 512];
    File::open(disk)
        .and_then(|mut f| f.read_exact(&mut mbr))
        .unwrap_or_else(|e| panic!("read {}: {e}", disk.display()));
    let entry = &mbr[446 + 16 * (number - 1)..][..16];
    let start = u32::from_le_bytes(entry[8..12].try_into().unwrap());
    let sectors = u32::from_le_bytes(entry[12..16].try_into().unwrap());
    (u64::from(start) * 512, u64::from(sectors) * 512)
}

/// A file of the state partition (ext4, partition 4) of a stopped rack's
/// disk, read with `debugfs` from a copy of the partition; `None` if absent.
pub fn state_file(disk: &Path, name: &str) -> Option<Vec<u8>> {
    let (start, len) = partition_range(disk, 4);
    let mut bytes = vec![0u8; len as usize];
    let mut file = File::open(disk).expect("open the disk");
    file.seek(SeekFrom::Start(start)).unwrap();
    file.read_exact(&mut bytes).unwrap();
    let copy = tempfile::NamedTempFile::new().unwrap();
    copy.as_file().write_all(&bytes).unwrap();
    let output = Command::new("debugfs")
        .args(["-R", &format!("cat /{name}")])
        .arg(copy.path())
        .output()
        .expect("debugfs (package e2fsprogs)");
    // debugfs reports a missing file on stderr and still exits 0.
    let missing = String::from_utf8_lossy(&output.stderr).contains("File not found");
    (output.status.success() && !missing).then_some(output.stdout)
}

/// Where a rack VM boots: QEMU's namespace with the WAN and site taps, and
/// a client namespace on the site bridge. Everything is removed on drop.
pub struct ImageSite {
    /// Where QEMU runs (both taps, the site bridge, the relays).
    pub vm_host: Netns,
    /// Where DHCP clients run.
    pub clients: Netns,
    /// The tap of the rack's WAN NIC; it holds the gateway address.
    pub wan_tap: String,
    /// The tap of the rack's site NIC, on the bridge.
    pub site_tap: String,
    /// The site bridge.
    pub bridge: String,
    relays: Vec<PortForward>,
}

impl ImageSite {
    /// Builds the namespaces; `gateway` (CIDR) goes on the WAN tap.
    pub fn create(gateway: &str) -> ImageSite {
        let vm_host = Netns::create();
        let clients = Netns::create();
        let wan_tap = netns::unique("emtw");
        let site_tap = netns::unique("emts");
        for tap in [&wan_tap, &site_tap] {
            vm_host.ip(&["tuntap", "add", "dev", tap, "mode", "tap"]);
        }
        vm_host.ip(&["addr", "add", gateway, "dev", &wan_tap]);
        let bridge = netns::bridge(&vm_host);
        vm_host.ip(&["link", "set", &site_tap, "master", &bridge]);
        for tap in [&wan_tap, &site_tap] {
            vm_host.ip(&["link", "set", tap, "up"]);
        }
        ImageSite {
            vm_host,
            clients,
            wan_tap,
            site_tap,
            bridge,
            relays: Vec::new(),
        }
    }

    /// Relays `address:port` on the WAN side to the host's `127.0.0.1:port`.
    pub fn relay(&mut self, address: std::net::Ipv4Addr, port: u16) {
        self.relays.push(netns::forward_port(
            &self.vm_host,
            (address, port).into(),
            port,
        ));
    }

    /// A client NIC with `mac` on the site bridge; returns its name.
    pub fn add_client(&self, mac: &str) -> String {
        netns::plug(&self.vm_host, &self.bridge, &self.clients, mac, None)
    }
}

/// The rack VM's NIC MAC addresses.
#[derive(Debug, Clone)]
pub struct RackNics {
    /// The WAN NIC (virtio-net).
    pub wan_mac: String,
    /// The site NIC (e1000).
    pub site_mac: String,
}

/// A QEMU machine booting a rack disk (software emulation), killed on drop.
pub struct RackVm {
    child: Child,
    monitor: PathBuf,
    /// The serial console's log.
    pub serial: PathBuf,
    /// When QEMU was started.
    pub started: Instant,
}

impl RackVm {
    /// Boots `disk` in `site` with 512 MB: a virtio WAN NIC on the WAN tap,
    /// an e1000 site NIC on the site tap, the disk on virtio-blk.
    pub fn start(site: &ImageSite, disk: &Path, nics: &RackNics, serial: &Path) -> RackVm {
        crate::packages::ensure("/usr/bin/qemu-system-x86_64", "qemu-system-x86");
        let _ = fs::remove_file(serial);
        let monitor = serial.with_extension("monitor.sock");
        let _ = fs::remove_file(&monitor);
        let started = Instant::now();
        let child = site
            .vm_host
            .command("qemu-system-x86_64")
            .args(["-accel", "tcg", "-machine", "pc", "-m", "512", "-smp", "1"])
            .args(["-display", "none", "-no-reboot"])
            .arg("-monitor")
            .arg(format!("unix:{},server=on,wait=off", monitor.display()))
            .arg("-serial")
            .arg(format!("file:{}", serial.display()))
            .arg("-drive")
            .arg(format!("file={},format=raw,if=virtio", disk.display()))
            .arg("-netdev")
            .arg(format!(
                "tap,id=wan,ifname={},script=no,downscript=no",
                site.wan_tap
            ))
            .arg("-device")
            .arg(format!("virtio-net-pci,netdev=wan,mac={}", nics.wan_mac))
            .arg("-netdev")
            .arg(format!(
                "tap,id=site,ifname={},script=no,downscript=no",
                site.site_tap
            ))
            .arg("-device")
            .arg(format!("e1000,netdev=site,mac={}", nics.site_mac))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("qemu-system-x86_64");
        RackVm {
            child,
            monitor,
            serial: serial.to_path_buf(),
            started,
        }
    }

    /// The serial console so far.
    pub fn console(&self) -> String {
        fs::read_to_string(&self.serial).unwrap_or_default()
    }

    /// Presses the (ACPI) power button, as an operator would for a clean
    /// shutdown.
    pub fn power_button(&self) {
        let mut monitor = std::os::unix::net::UnixStream::connect(&self.monitor)
            .unwrap_or_else(|e| panic!("QEMU monitor {}: {e}", self.monitor.display()));
        monitor
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        // The monitor echoes input a character at a time and drops what it
        // has not read when the socket closes: wait for the prompt after
        // the greeting, then for the prompt after the command.
        read_to_prompt(&mut monitor);
        monitor.write_all(b"system_powerdown\n").unwrap();
        read_to_prompt(&mut monitor);
    }

    /// Waits until QEMU exits (the guest powered off); false on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    }
}

impl Drop for RackVm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_file(&self.monitor);
    }
}

/// Reads from a QEMU monitor until its `(qemu)` prompt (or a timeout).
fn read_to_prompt(monitor: &mut std::os::unix::net::UnixStream) {
    let mut seen = Vec::new();
    let mut buffer = [0u8; 512];
    while !seen.windows(6).any(|w| w == b"(qemu)") {
        match monitor.read(&mut buffer) {
            Ok(n) if n > 0 => seen.extend_from_slice(&buffer[..n]),
            _ => return,
        }
    }
}

/// The seconds after kernel start at which the rack served DHCP, from the
/// console line the image's init prints.
pub fn serving_dhcp_after(console: &str) -> Option<f64> {
    console.lines().find_map(|line| {
        let rest = line.split("edgemetal-init: serving DHCP ").nth(1)?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_serving_time_from_the_console() {
        let console = "[    9.1] edgemetal-init: starting\n\
                       [   12.5] edgemetal-init: serving DHCP 12.47 s after the kernel started\n";
        assert_eq!(serving_dhcp_after(console), Some(12.47));
        assert_eq!(serving_dhcp_after("nothing"), None);
    }

    #[test]
    fn the_init_scripts_parse_under_busybox_sh() {
        let busybox = Path::new("/bin/busybox");
        if !busybox.exists() {
            return;
        }
        for script in ["rack-init.sh", "udhcpc.script"] {
            let output = Command::new(busybox)
                .args(["sh", "-n"])
                .arg(source_dir().join(script))
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "{script}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}
