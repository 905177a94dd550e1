//! Deploy and release, end to end, on QEMU machines behind real IPMI BMCs
//! (ipmi_sim), once on SeaBIOS and once on OVMF (UEFI): commission, allocate,
//! the refusals that change nothing, then deploy Debian 12 (built by
//! `images/os/build.sh` with mmdebstrap) with user data and an SSH key. The
//! ephemeral image installs it from the rack (partitions, image, GRUB for
//! both firmwares, static network, cloud-init seed on the rack), reboots
//! into it, and its cloud-init calls home through the rack: Deployed. Then
//! `ssh` from the site's namespace with the operator's key reads the user
//! data's marker and the host name, the serial console shows GRUB and the
//! installed system's login prompt, the BMC's boot device is the disk, and
//! release with erase leaves a disk with no partition table, the machine
//! Ready and off.
//!
//! The BIOS run deploys `flat` and releases with `quick` erase; the region
//! is stopped right after its power-on and started again once the rack
//! holds the phone-home: the install never waits on it, and the queued
//! phone-home lands when it is back. The UEFI run deploys onto `lvm` (root
//! on /dev/mapper/vg0-root, seen over ssh) and releases with `full` erase
//! (every byte of the disk reads back zero).
//!
//! `hil/deploy.sh` runs both with their output (phase timings) shown; logs
//! (rack, region, serial consoles) are under target/test-logs/deploy-*.

use std::process::Command;
use std::time::{Duration, Instant};

use edgemetal_tests::deploy_flow;
use edgemetal_tests::dhcp_site::{rack_metrics_in, start_rack_in_with};
use edgemetal_tests::machine_flow::{
    self, events, positions, read_lossy, tail, wait_for_log, wait_for_off,
};
use edgemetal_tests::metrics::{counter, labelled};
use edgemetal_tests::netns::{forward_loopback_port, MachineSite};
use edgemetal_tests::process::log_dir;
use edgemetal_tests::site::wait_in_sync;
use edgemetal_tests::vm_bmc::{Firmware, VmBmc, VmSpec};
use edgemetal_tests::{RegionOptions, RegionProcess};
use reqwest::{Method, StatusCode};
use serde_json::json;

const MEMORY_MIB: u32 = 1024;
const DISK_BYTES: u64 = 4 << 30;
const DISK_SERIAL: &str = "EDGEDISK01";
const IMAGE: &str = "debian/bookworm";
/// Commissioning under emulation takes well under a minute; deploying
/// (a ≈ 1 GB image through emulated zstd, tar and ext4, then a first boot
/// with cloud-init) several.
const PATIENCE: Duration = Duration::from_secs(1200);

/// The deploy's steps as machine event kinds, in order.
const DEPLOY_FLOW: [&str; 10] = [
    "status", // Allocated → Deploying
    "power.on",
    "boot.metadata", // the installer reads its metadata
    "deploy.disk",
    "deploy.partitioning",
    "deploy.image",
    "deploy.bootloader",
    "deploy.installed", // results posted: the rack boots it from disk now
    "deploy.phone-home",
    "status", // Deployed
];

struct Bench {
    logs: std::path::PathBuf,
    data: tempfile::TempDir,
    options: RegionOptions,
    region: Option<RegionProcess>,
    site: MachineSite,
    rack_log: std::path::PathBuf,
    _rack: edgemetal_tests::dhcp_site::NamespacedRack,
}

async fn bench(name: &str) -> (Bench, edgemetal_tests::os_image::OsImage) {
    let logs = log_dir(name);
    let (image, os) = tokio::task::spawn_blocking(|| {
        (
            edgemetal_tests::ephemeral::image(),
            edgemetal_tests::os_image::image(),
        )
    })
    .await
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let options = RegionOptions::embedded(&data.path().join("region"), &logs);
    let region = RegionProcess::start(&options).await;
    let api = region.client();
    let subnet = api
        .create(
            "/api/v1/subnets",
            json!({"name": "hil-site", "cidr": "10.88.0.0/24", "gateway": "10.88.0.1",
                   "lease_time_secs": 600}),
        )
        .await;
    let subnet_id = subnet["id"].as_str().unwrap();
    api.create(
        &format!("/api/v1/subnets/{subnet_id}/ranges"),
        json!({"start": "10.88.0.100", "end": "10.88.0.150", "purpose": "dynamic"}),
    )
    .await;
    for (kind, path) in [("kernel", &image.kernel), ("initrd", &image.initrd)] {
        let (status, body) = api
            .upload(
                &format!("/api/v1/boot-resources?name=ephemeral&architecture=amd64&kind={kind}"),
                std::fs::read(path).unwrap(),
                &[],
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, body) = api
        .upload(
            &format!("/api/v1/boot-resources?name={IMAGE}&architecture=amd64&kind=rootfs"),
            std::fs::read(&os.rootfs).unwrap(),
            &[("x-content-sha256", &os.sha256)],
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["sha256"], os.sha256.as_str());

    let state = data.path().join("rack");
    region.enrol_rack("hil-rack", &state).await;
    let site = MachineSite::create("10.88.0.1/24");
    forward_loopback_port(&site.rack, options.embedded_broker.port());
    let rack_log = logs.join("rack.log");
    let broker_url = format!("mqtts://127.0.0.1:{}", options.embedded_broker.port());
    let rack = start_rack_in_with(
        &site.rack,
        &state,
        &site.rack_if,
        &rack_log,
        &[
            ("EDGEMETAL_LOG", "info"),
            ("EDGEMETAL_RACK_BROKER_URL", &broker_url),
        ],
    );
    wait_in_sync(&api, "hil-rack").await;
    machine_flow::wait_for_cached(&site, &rack_log, 3, Duration::from_secs(300)).await;
    (
        Bench {
            logs,
            data,
            options,
            region: Some(region),
            site,
            rack_log,
            _rack: rack,
        },
        os,
    )
}

/// One machine's run: its firmware, addresses, the storage layout it is
/// deployed with and the erase it is released with.
struct Run {
    firmware: Firmware,
    mac: &'static str,
    address: &'static str,
    layout: &'static str,
    erase: &'static str,
    /// Stop the region right after the deploy's power-on.
    stop_region: bool,
}

/// The whole life of one machine: commission, refusals, deploy, login, release.
async fn deploy_and_release(run: Run) {
    let Run {
        firmware,
        mac,
        address,
        layout,
        erase,
        stop_region,
    } = run;
    let name = match firmware {
        Firmware::Bios => "deploy-bios",
        Firmware::Uefi => "deploy-uefi",
    };
    let (mut bench, _os) = bench(name).await;
    let api = bench.region.as_ref().unwrap().client();
    let serial = bench.logs.join("serial.log");
    let _ = std::fs::remove_file(&serial);
    let vm = VmBmc::start(
        &bench.site.rack,
        &bench.site.machine,
        VmSpec {
            mac: mac.into(),
            memory_mib: MEMORY_MIB,
            cpus: 1,
            disk_bytes: DISK_BYTES,
            disk_serial: DISK_SERIAL.into(),
            tap: bench.site.tap.clone(),
            serial_log: serial.clone(),
            firmware,
            reboot: true,
        },
    );
    edgemetal_tests::secrets::remember(edgemetal_tests::bmc::PASSWORD);
    let machine = api
        .create(
            "/api/v1/machines",
            json!({"mac": mac, "hostname": "hil-node-1", "architecture": "amd64"}),
        )
        .await;
    let id = machine["id"].as_str().unwrap().to_string();
    let (status, body) = api
        .call(
            Method::PUT,
            &format!("/api/v1/machines/{id}/power-settings"),
            Some(
                json!({"driver": "ipmi", "address": "127.0.0.1", "port": vm.port,
                        "username": edgemetal_tests::bmc::USER,
                        "password": edgemetal_tests::bmc::PASSWORD}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The installed system gets a fixed address: the machine's reservation.
    let subnets = api.get("/api/v1/subnets").await;
    let subnet_id = subnets[0]["id"].as_str().unwrap();
    api.create(
        &format!("/api/v1/subnets/{subnet_id}/reservations"),
        json!({"mac": mac, "address": address}),
    )
    .await;

    let action = |verb: &str| format!("/api/v1/machines/{id}/actions/{verb}");
    let (status, body) = api.call(Method::POST, &action("commission"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ready = machine_flow::wait_for_status(&api, &id, "ready", &serial, PATIENCE).await;
    let expected_firmware = match firmware {
        Firmware::Bios => "bios",
        Firmware::Uefi => "uefi",
    };
    assert_eq!(ready["hardware"]["firmware"], expected_firmware, "{ready}");
    wait_for_off(&vm, PATIENCE).await;

    // Refusals, each a 4xx with a JSON error that leaves the machine as it was.
    let (key, public_key) = deploy_flow::ssh_key(bench.data.path());
    let marker = format!("edgemetal-marker-{}", std::process::id());
    let user_data = format!(
        "#cloud-config\nwrite_files:\n  - path: /var/lib/edgemetal-test/marker\n    content: {marker}\n"
    );
    let good = json!({"image": IMAGE, "user_data": user_data, "ssh_keys": [public_key],
                      "hostname": "hil-node-1", "storage_layout": layout, "disk": DISK_SERIAL});
    let deploy = action("deploy");
    api.expect_error(
        Method::POST,
        &deploy,
        Some(good.clone()),
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    let (status, body) = api.call(Method::POST, &action("allocate"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let refusals = [
        (
            json!({"image": "nope/none"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_image",
        ),
        (
            json!({"image": IMAGE, "user_data": "x".repeat(64 * 1024 + 1)}),
            StatusCode::PAYLOAD_TOO_LARGE,
            "user_data_too_large",
        ),
        (
            json!({"image": IMAGE, "disk": "NOSUCHDISK"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_disk",
        ),
        (
            json!({"image": IMAGE, "ssh_keys": ["ssh-ed25519 not-a-key"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
        ),
        (
            json!({"image": IMAGE, "storage_layout": "zfs"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
        ),
        (
            json!({"image": IMAGE, "colour": "blue"}),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
    ];
    for (body, status, code) in refusals {
        api.expect_error(Method::POST, &deploy, Some(body), status, code)
            .await;
    }
    let still = api.get(&format!("/api/v1/machines/{id}")).await;
    assert_eq!(still["status"], "allocated", "{still}");
    assert_eq!(
        api.get(&format!("/api/v1/machines/{id}/deployments")).await,
        json!([]),
        "a refused deploy starts no run"
    );
    assert!(!vm.qemu_running(), "a refused deploy powers nothing on");

    // Deploy.
    let started = Instant::now();
    let (status, body) = api.call(Method::POST, &deploy, Some(good)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "deploying");
    if stop_region {
        // The region goes away as soon as the machine is powered on; the
        // rack carries the install and holds the phone-home for it.
        let region = bench.region.take().unwrap();
        assert!(region.stop().success());
        wait_for_log(&bench.rack_log, "installed system called home", PATIENCE).await;
        let region = RegionProcess::start(&bench.options).await;
        bench.region = Some(region);
    }
    let api = bench.region.as_ref().unwrap().client();
    let deployed = machine_flow::wait_for_status(&api, &id, "deployed", &serial, PATIENCE).await;
    let took = started.elapsed();
    eprintln!("{name}: deployed in {:.0} s", took.as_secs_f64());
    assert_eq!(deployed["status"], "deployed");

    // The events tell the whole story, in order.
    let log = events(&api, &id).await;
    let from = log
        .iter()
        .rposition(|(kind, detail, _)| kind == "status" && detail.contains("→ Deploying"))
        .expect("the deploy's status change");
    if let Err(error) = positions(&log[from..], &DEPLOY_FLOW) {
        panic!("{error}: {:#?}", &log[from..]);
    }
    deploy_flow::report_phases(&api, &id, name, &bench.logs, stop_region).await;
    let runs = api.get(&format!("/api/v1/machines/{id}/deployments")).await;
    assert_eq!(runs[0]["state"], "done", "{runs}");
    let host_key = runs[0]["host_key"].as_str().unwrap().to_string();
    assert!(host_key.starts_with("ssh-ed25519 "), "{runs}");
    assert_eq!(runs[0]["layout"], layout, "{runs}");

    // After the install the BMC boots the machine from its disk (read with
    // ipmitool, as an operator would); the region sets it when the
    // installer's results land, so it may trail them by a BMC round trip.
    edgemetal_tests::wait_until(
        "the BMC's boot device to be the disk",
        Duration::from_secs(60),
        || async {
            vm.ipmitool(&["chassis", "bootparam", "get", "5"])
                .contains("Force Boot from default Hard-Drive")
                .then_some(())
        },
    )
    .await;

    // The catalogue shows the image and the rack that holds it.
    let catalogue = api.get("/api/v1/os-images").await;
    let entry = &catalogue[0];
    assert_eq!(entry["name"], IMAGE, "{catalogue}");
    assert_eq!(entry["format"], "tar.zst", "{catalogue}");
    assert_eq!(entry["racks"][0]["ready"], true, "{catalogue}");
    assert_eq!(entry["racks"][0]["cached"], entry["size"], "{catalogue}");

    // The rack booted the machine from its disk after the install, itself.
    let metrics = rack_metrics_in(&bench.site.rack);
    assert_eq!(
        counter(&metrics, "edgemetal_rack_boot_region_waits_total"),
        0,
        "{metrics}"
    );
    assert!(
        labelled(
            &metrics,
            "edgemetal_rack_boot_answers_total",
            "source=\"finished\""
        ) >= 1,
        "{metrics}"
    );

    // The owner logs in with their key; the user data ran; the host key is
    // the one the installed system reported.
    let known_hosts = bench.data.path().join("known_hosts");
    let output = bench
        .site
        .rack
        .command("ssh")
        .arg("-i")
        .arg(&key)
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=accept-new",
        ])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args(["-o", "ConnectTimeout=10"])
        .arg(format!("debian@{address}"))
        .arg("cat /var/lib/edgemetal-test/marker; echo; hostname; findmnt -no SOURCE /")
        .output()
        .expect("ssh (openssh-client)");
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "ssh failed: {}\nserial:\n{}",
        String::from_utf8_lossy(&output.stderr),
        tail(&serial, 40)
    );
    let lines: Vec<&str> = said.lines().collect();
    assert_eq!(lines[..2], [marker.as_str(), "hil-node-1"], "{said}");
    // The root filesystem is where the layout puts it.
    let root = lines.get(2).copied().unwrap_or_default();
    match layout {
        "lvm" => assert_eq!(root, "/dev/mapper/vg0-root", "{said}"),
        _ => assert!(
            root.starts_with("/dev/") && !root.contains("mapper"),
            "{said}"
        ),
    }
    let recorded = std::fs::read_to_string(&known_hosts).unwrap();
    let key_body = host_key.split_whitespace().nth(1).unwrap();
    assert!(recorded.contains(key_body), "{recorded} vs {host_key}");
    let console = read_lossy(&serial);
    // GRUB (installed by the installer, for this firmware) started the
    // installed kernel: it sets BOOT_IMAGE and names the root (by UUID, or
    // the logical volume).
    let root_arg = if layout == "lvm" {
        "root=/dev/mapper/vg0-root"
    } else {
        "root=UUID="
    };
    assert!(
        console.contains("BOOT_IMAGE=/boot/vmlinuz") && console.contains(root_arg),
        "the installed system was not booted by its GRUB:\n{}",
        tail(&serial, 40)
    );
    assert!(
        console.contains("Debian GNU/Linux 12 hil-node-1 ttyS0"),
        "no login prompt of the installed system:\n{}",
        tail(&serial, 40)
    );

    // Release with erase: Ready, off, and no partition table left.
    let (status, body) = api
        .call(
            Method::POST,
            &action("release"),
            Some(json!({ "erase": erase })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "releasing");
    machine_flow::wait_for_status(&api, &id, "ready", &serial, PATIENCE).await;
    wait_for_off(&vm, PATIENCE).await;
    let log = events(&api, &id).await;
    assert!(
        log.iter().any(|(kind, _, _)| kind == "release.erased"),
        "{log:#?}"
    );
    assert!(
        log.iter().any(|(kind, detail, _)| kind == "release.erase"
            && detail.starts_with("done:")
            && detail.contains(&format!(" {erase}: "))),
        "no erase step done with {erase}: {log:#?}"
    );
    let disk = vm.disk_path();
    let sfdisk = Command::new("sfdisk")
        .arg("-d")
        .arg(&disk)
        .output()
        .unwrap();
    assert!(
        !sfdisk.status.success(),
        "a partition table survived: {}",
        String::from_utf8_lossy(&sfdisk.stdout)
    );
    let wipefs = Command::new("wipefs").arg(&disk).output().unwrap();
    assert!(wipefs.status.success());
    assert_eq!(
        String::from_utf8_lossy(&wipefs.stdout).trim(),
        "",
        "signatures survived"
    );
    if erase == "full" {
        // Every byte of the disk reads back as zero.
        let cmp = Command::new("cmp")
            .arg("-n")
            .arg(DISK_BYTES.to_string())
            .arg(&disk)
            .arg("/dev/zero")
            .output()
            .unwrap();
        assert!(
            cmp.status.success(),
            "the full erase left data: {}",
            String::from_utf8_lossy(&cmp.stdout)
        );
    }
    eprintln!("{name}: released with {erase} erase; the disk has no partition table");
}

#[tokio::test]
async fn a_bios_machine_is_deployed_logged_into_and_released_with_the_region_away_meanwhile() {
    deploy_and_release(Run {
        firmware: Firmware::Bios,
        mac: "52:54:00:89:00:01",
        address: "10.88.0.20",
        layout: "flat",
        erase: "quick",
        stop_region: true,
    })
    .await;
}

#[tokio::test]
async fn a_uefi_machine_is_deployed_on_lvm_logged_into_and_released_with_full_erase() {
    deploy_and_release(Run {
        firmware: Firmware::Uefi,
        mac: "52:54:00:89:00:02",
        address: "10.88.0.21",
        layout: "lvm",
        erase: "full",
        stop_region: false,
    })
    .await;
}
