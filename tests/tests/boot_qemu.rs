//! Whole network boots against real firmware, with the WAN down: a QEMU
//! machine's iPXE ROM gets its DHCP answer from the rack, fetches its boot
//! script (the rack's, or the operator's with a boot file it chains) and
//! then a Linux kernel and initramfs over HTTP from the rack's cache, and
//! boots them. The initramfs prints the kernel command line to the serial
//! console and powers off.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use edgemetal_tests::capture::{time_of, Capture};
use edgemetal_tests::dhcp_site::{start_rack_in, Guard};
use edgemetal_tests::machine_flow::finished_line_containing;
use edgemetal_tests::netns::MachineSite;
use edgemetal_tests::process::log_dir;
use edgemetal_tests::site::{wait_in_sync, PATIENCE};
use edgemetal_tests::vm_qemu::{OVMF_CODE, OVMF_VARS};
use edgemetal_tests::{wait_until, RackProcess, RegionOptions, RegionProcess};
use reqwest::StatusCode;
use serde_json::json;

/// Prints what the kernel was started with, then powers the machine off.
const INIT: &str = "#!/bin/busybox sh
/bin/busybox mkdir -p /proc
/bin/busybox mount -t proc proc /proc
echo \"EDGEMETAL-BOOTED $(/bin/busybox cat /proc/cmdline)\"
/bin/busybox poweroff -f
";

/// The newest Debian kernel on this machine (package linux-image-amd64).
fn kernel() -> PathBuf {
    edgemetal_tests::packages::ensure("/usr/bin/cpio", "cpio");
    let newest = |dir: &Path| {
        let mut kernels: Vec<PathBuf> = std::fs::read_dir(dir)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("vmlinuz-"))
            })
            .collect();
        kernels.sort();
        kernels.pop()
    };
    if let Some(kernel) = newest(Path::new("/boot")) {
        return kernel;
    }
    edgemetal_tests::packages::ensure("/boot/vmlinuz", "linux-image-amd64");
    newest(Path::new("/boot")).expect("a kernel in /boot after installing linux-image-amd64")
}

/// A gzipped newc initramfs holding busybox and [`INIT`].
fn initramfs(work: &Path) -> Vec<u8> {
    edgemetal_tests::packages::ensure("/bin/busybox", "busybox-static");
    let root = work.join("initramfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    std::fs::write(root.join("init"), INIT).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root.join("init"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let output = Command::new("sh")
        .arg("-c")
        .arg("find . | cpio -o -H newc --quiet | gzip -1")
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    output.stdout
}

/// One emulated machine at a time: two would share the two cores.
static ONE_MACHINE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A region with a subnet (`extra` merged into its settings) and the
/// ephemeral image; returns the region and the image's kernel and initrd
/// hashes.
async fn region_with_image(
    data: &Path,
    logs: &Path,
    prefix: &str,
    extra: serde_json::Value,
) -> (RegionProcess, String, String) {
    edgemetal_tests::packages::ensure("/usr/bin/qemu-system-x86_64", "qemu-system-x86");
    edgemetal_tests::packages::ensure("/usr/lib/ipxe/qemu/pxe-e1000.rom", "ipxe-qemu");
    let kernel = std::fs::read(kernel()).unwrap();
    let initrd = initramfs(data);
    let options = RegionOptions::embedded(&data.join("region"), logs);
    let region = RegionProcess::start(&options).await;
    let api = region.client();
    let mut spec = json!({"name": "boot-site", "cidr": format!("{prefix}.0/24"),
                          "gateway": format!("{prefix}.1"), "lease_time_secs": 600});
    spec.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let subnet = api.create("/api/v1/subnets", spec).await;
    let id = subnet["id"].as_str().unwrap();
    api.create(
        &format!("/api/v1/subnets/{id}/ranges"),
        json!({"start": format!("{prefix}.100"), "end": format!("{prefix}.150"),
               "purpose": "dynamic"}),
    )
    .await;
    let mut hashes = Vec::new();
    for (kind, bytes) in [("kernel", &kernel), ("initrd", &initrd)] {
        let (status, body) = api
            .upload(
                &format!("/api/v1/boot-resources?name=ephemeral&architecture=amd64&kind={kind}"),
                bytes.clone(),
                &[],
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        hashes.push(body["sha256"].as_str().unwrap().to_string());
    }
    let initrd = hashes.pop().unwrap();
    (region, hashes.pop().unwrap(), initrd)
}

/// Enrols the rack, waits until it holds `resources` boot resources, then
/// stops rack and region: the site boots with the WAN down.
async fn sync_rack_then_cut_the_wan(
    region: RegionProcess,
    state: &Path,
    logs: &Path,
    resources: usize,
) {
    let api = region.client();
    region.enrol_rack("boot-rack", state).await;
    let rack = RackProcess::start(state, &logs.join("rack-sync.log")).await;
    wait_in_sync(&api, "boot-rack").await;
    wait_until("the rack to cache the boot resources", PATIENCE, || async {
        let status = rack.status().await;
        let cached = status["boot_resources"].as_array()?.clone();
        (cached.len() == resources && cached.iter().all(|r| r["ready"] == true)).then_some(())
    })
    .await;
    rack.kill();
    region.kill();
}

/// A QEMU machine network-booting from `site` with its console in
/// `serial`: SeaBIOS, or OVMF when given where to keep its variables.
fn start_machine(site: &MachineSite, mac: &str, serial: &Path, ovmf_vars: Option<&Path>) -> Guard {
    let _ = std::fs::remove_file(serial);
    let mut command = site.machine.command("qemu-system-x86_64");
    let nic = match ovmf_vars {
        None => {
            command.args(["-boot", "n"]);
            format!("e1000,netdev=n0,mac={mac}")
        }
        Some(vars) => {
            edgemetal_tests::packages::ensure(OVMF_CODE, "ovmf");
            std::fs::copy(OVMF_VARS, vars).unwrap();
            command
                .arg("-drive")
                .arg(format!(
                    "if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"
                ))
                .arg("-drive")
                .arg(format!(
                    "if=pflash,format=raw,unit=1,file={}",
                    vars.display()
                ));
            // OVMF follows bootindex; the e1000's ROM carries iPXE for UEFI too.
            format!("e1000,netdev=n0,mac={mac},bootindex=1")
        }
    };
    Guard(
        command
            .args(["-accel", "tcg", "-machine", "pc", "-m", "256"])
            .args(["-display", "none", "-monitor", "none", "-no-reboot"])
            .arg("-serial")
            .arg(format!("file:{}", serial.display()))
            .arg("-netdev")
            .arg(format!(
                "tap,id=n0,ifname={},script=no,downscript=no",
                site.tap
            ))
            .arg("-device")
            .arg(nic)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("qemu-system-x86_64"),
    )
}

/// The line the initramfs prints, once the machine booted.
async fn booted_line(serial: &Path) -> String {
    wait_until(
        "the machine to boot the rack's kernel and initramfs",
        Duration::from_secs(240),
        || {
            let serial = serial.to_path_buf();
            async move { finished_line_containing(&serial, "EDGEMETAL-BOOTED") }
        },
    )
    .await
}

#[tokio::test]
async fn a_qemu_machine_boots_linux_from_the_rack_with_the_region_down() {
    boot_with_ipv6_off("boot_qemu", "10.87.0", "52:54:00:87:00:01", false).await;
}

#[tokio::test]
async fn an_ovmf_machine_boots_linux_from_the_rack_with_the_region_down() {
    boot_with_ipv6_off("boot_qemu_ovmf", "10.85.0", "52:54:00:85:00:01", true).await;
}

/// A machine unknown to the region boots the enlistment image from a rack
/// whose IPv6 is off, every Router Solicitation answered.
async fn boot_with_ipv6_off(test: &str, prefix: &str, mac: &str, uefi: bool) {
    let _one = ONE_MACHINE.lock().await;
    let logs = log_dir(test);
    let data = tempfile::tempdir().unwrap();
    // The region: a subnet, the ephemeral image; the rack syncs it, then the WAN goes.
    let (region, _, _) = region_with_image(data.path(), &logs, prefix, json!({})).await;
    let state = data.path().join("rack");
    sync_rack_then_cut_the_wan(region, &state, &logs, 2).await;

    // The site: the rack serves DHCP, HTTP and TFTP in its namespace; the
    // machine's NIC is a tap bridged to it.
    let site = MachineSite::create(&format!("{prefix}.1/24"));
    // IPv6 off on the rack's side, as on many IPv4-only sites: iPXE's
    // Router Solicitations must still be answered, or it waits ≈ 13 s for
    // IPv6 autoconfiguration before it fetches its script.
    site.rack.disable_ipv6(&site.rack_if);
    let capture = Capture::start(
        &site.machine,
        &site.machine_if,
        "(icmp6 and (ip6[40] == 133 or ip6[40] == 134)) or udp port 67 \
         or (tcp dst port 5248 and tcp[tcpflags] & tcp-syn != 0)",
        &data.path().join("boot.pcap"),
    );
    let _rack = start_rack_in(
        &site.rack,
        &state,
        &site.rack_if,
        &logs.join("rack-site.log"),
    );

    let serial = logs.join("serial.log");
    let vars = data.path().join("ovmf-vars.fd");
    let _qemu = start_machine(&site, mac, &serial, uefi.then_some(vars.as_path()));
    let booted = booted_line(&serial).await;
    // Unknown to the (unreachable) region: the enlistment image, told where its rack is.
    assert!(booted.contains("edgemetal.purpose=enlist"), "{booted}");
    assert!(
        booted.contains(&format!("edgemetal.rack=http://{prefix}.1:5248")),
        "{booted}"
    );
    let bootif = format!("BOOTIF=01-{}", mac.replace(':', "-"));
    assert!(booted.contains(&bootif), "{booted}");
    assert!(booted.contains("console=ttyS0"), "{booted}");

    // Every Router Solicitation iPXE sent got its advertisement, and the
    // script fetch followed the DHCP answer without the IPv6 wait.
    let packets = capture.finish();
    let count = |what: &str| packets.iter().filter(|l| l.contains(what)).count();
    let solicitations = count("router solicitation");
    assert!(
        solicitations >= 1,
        "iPXE sent no solicitation: {packets:#?}"
    );
    assert_eq!(count("router advertisement"), solicitations, "{packets:#?}");
    let first_fetch = packets
        .iter()
        .position(|l| l.contains(".5248: Flags [S]"))
        .expect("no connection to the rack's HTTP port");
    let last_reply = packets[..first_fetch]
        .iter()
        .rev()
        .find(|l| l.contains("BOOTP/DHCP, Reply"))
        .expect("no DHCP reply before the script fetch");
    println!(
        "{} DHCP reply → script fetch: {:.2} s ({solicitations} Router Solicitation(s), all answered)",
        if uefi { "OVMF:" } else { "BIOS:" },
        time_of(&packets[first_fetch]).unwrap() - time_of(last_reply).unwrap()
    );
}

#[tokio::test]
async fn an_operators_script_chains_a_boot_file_that_boots_a_qemu_machine() {
    let _one = ONE_MACHINE.lock().await;
    let logs = log_dir("boot_qemu_operator");
    let data = tempfile::tempdir().unwrap();
    // The subnet's script is not this machine's: its own overrides it.
    let subnet_script = "#!ipxe\necho the subnet's script\nexit 1\n";
    let (region, kernel, initrd) = region_with_image(
        data.path(),
        &logs,
        "10.86.0",
        json!({"boot": {"ipxe_script": subnet_script}}),
    )
    .await;
    let api = region.client();
    // The operator's tree: a script that boots the cached image its own way.
    let chained = format!(
        "#!ipxe\necho operator chain\n\
         kernel http://${{next-server}}:5248/boot/resources/{kernel} initrd=initrd \
         console=ttyS0 edgemetal.operator=chained\n\
         initrd --name initrd http://${{next-server}}:5248/boot/resources/{initrd}\nboot\n"
    );
    let (status, body) = api
        .upload(
            "/api/v1/boot-resources?name=menus/operator.ipxe&kind=file",
            chained.clone().into_bytes(),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let mac = "52:54:00:86:00:01";
    let machine = api
        .create(
            "/api/v1/machines",
            json!({"mac": mac, "architecture": "amd64"}),
        )
        .await;
    let settings = format!(
        "/api/v1/machines/{}/boot-settings",
        machine["id"].as_str().unwrap()
    );
    let script = "#!ipxe\nchain http://${next-server}:5248/files/menus/operator.ipxe\n";
    let (status, body) = api
        .call(
            reqwest::Method::PUT,
            &settings,
            Some(json!({"ipxe_script": script})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(api.get(&settings).await["ipxe_script"], script);
    let state = data.path().join("rack");
    sync_rack_then_cut_the_wan(region, &state, &logs, 3).await;

    let site = MachineSite::create("10.86.0.1/24");
    let _rack = start_rack_in(
        &site.rack,
        &state,
        &site.rack_if,
        &logs.join("rack-site.log"),
    );
    // The boot file over HTTP and TFTP, as any client would fetch it.
    site.machine
        .ip(&["addr", "add", "10.86.0.9/24", "dev", &site.bridge]);
    let fetch = |url: &str| {
        let output = site
            .machine
            .command("curl")
            .args([
                "-sS",
                "--fail",
                "--retry",
                "20",
                "--retry-connrefused",
                "--retry-delay",
                "1",
            ])
            .arg(url)
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).to_string(),
        )
    };
    assert_eq!(
        fetch("http://10.86.0.1:5248/files/menus/operator.ipxe"),
        (true, chained.clone())
    );
    assert_eq!(
        fetch("tftp://10.86.0.1/files/menus/operator.ipxe"),
        (true, chained)
    );
    assert!(!fetch("http://10.86.0.1:5248/files/menus/other.ipxe").0);

    let serial = logs.join("serial-operator.log");
    let _qemu = start_machine(&site, mac, &serial, None);
    let booted = booted_line(&serial).await;
    // The machine's script ran (not the subnet's, not the rack's own,
    // which would have added the enlistment purpose and the rack URL).
    assert!(booted.contains("edgemetal.operator=chained"), "{booted}");
    assert!(!booted.contains("edgemetal.purpose"), "{booted}");
}
