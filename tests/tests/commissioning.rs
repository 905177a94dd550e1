//! The seed's commissioning flow, end to end, on a virtual machine whose
//! power is behind a real IPMI BMC: ipmi_sim's chassis control starts and
//! stops a QEMU machine (iPXE NIC ROM, `-boot n` when the boot device is
//! PXE). The region commissions it through the API; the rack in its own
//! namespace powers it on over IPMI, answers its DHCP, serves its boot
//! script, kernel and initrd, and its metadata; the ephemeral image's agent
//! posts the inventory through the rack; the region stores it, marks the
//! machine Ready and powers it off. Then an unknown machine, powered on by
//! hand, is enlisted and (auto-commission) commissioned.
//!
//! The known machine is commissioned with every hardware test (smartctl,
//! memtester, fio, stress-ng, from the image's tools squashfs, fetched from
//! the rack) and LLDP: a real lldpd on the machine's side of the bench plays
//! its switch (`hil-switch`, port `swp7`), and the inventory names it.
//!
//! The rack reaches the region over a WAN of 300 ms RTT that is cut twice
//! for 10 s while the machine boots and reports: commissioning still ends
//! Ready, and no boot-path request on the rack waited on the region.
//!
//! `hil/commission.sh` runs this with its output shown; logs (rack, region,
//! serial consoles, phase timings) are under target/test-logs/commissioning.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use edgemetal_tests::dhcp_site::{rack_metrics_in, start_rack_in_with};
use edgemetal_tests::machine_flow::{self, events, positions};
use edgemetal_tests::metrics::{counter, labelled};
use edgemetal_tests::netns::{forward_loopback_port, MachineSite};
use edgemetal_tests::process::log_dir;
use edgemetal_tests::site::wait_in_sync;
use edgemetal_tests::vm_bmc::{Firmware, VmBmc, VmSpec};
use edgemetal_tests::{ApiClient, RegionOptions, RegionProcess, Wan};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const KNOWN_MAC: &str = "52:54:00:88:00:01";
const UNKNOWN_MAC: &str = "52:54:00:88:00:02";
const MEMORY_MIB: u32 = 512;
const DISK_BYTES: u64 = 1 << 30;
/// A whole commissioning under software emulation takes well under a minute here.
const COMMISSIONING_PATIENCE: Duration = Duration::from_secs(300);

/// Half the WAN's round trip.
const WAN_ONE_WAY: Duration = Duration::from_millis(150);
/// How long each of the two cuts lasts.
const WAN_CUT: Duration = Duration::from_secs(10);

/// Cuts the WAN twice for [`WAN_CUT`]: at once (the machine is powering on
/// and about to boot), and again a little later (while its agent reports).
/// The schedule is the impairment itself, not a wait for readiness.
fn flap(wan: Arc<Wan>) -> std::thread::JoinHandle<u32> {
    std::thread::spawn(move || {
        for pause in [Duration::ZERO, Duration::from_secs(15)] {
            std::thread::sleep(pause);
            wan.cut();
            std::thread::sleep(WAN_CUT);
            wan.restore();
        }
        2
    })
}

/// The boot steps of the seed's flow, as machine event kinds, in order.
const FLOW: [&str; 11] = [
    "status",                // 1-2: the operator's commission
    "power.boot-pxe",        // 3-4: the rack with BMC access sets PXE…
    "power.on",              // … and powers on
    "dhcp.lease",            // 5-6: DORA with next-server / boot file
    "boot.config",           // 7-8: the rendered iPXE script
    "boot.kernel",           // 9: kernel …
    "boot.initrd",           // … and initrd from the rack
    "boot.metadata",         // 10: the ephemeral system reads its metadata
    "commissioning.results", // 11-12: inventory posted and stored
    "status",                // Ready
    "power.off",             // powered off at the end
];

async fn wait_for_status(api: &ApiClient, id: &str, status: &str, serial: &Path) -> Value {
    machine_flow::wait_for_status(api, id, status, serial, COMMISSIONING_PATIENCE).await
}

#[tokio::test]
async fn a_virtual_machine_behind_a_real_bmc_is_commissioned_to_ready_and_an_unknown_one_enlists() {
    let logs = log_dir("commissioning");
    let image = tokio::task::spawn_blocking(edgemetal_tests::ephemeral::image)
        .await
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    let options = RegionOptions::embedded(&data.path().join("region"), &logs);
    let region = RegionProcess::start(&options).await;
    let api = region.client();

    // The region: the site's subnet and the ephemeral image.
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
    for (kind, path) in [
        ("kernel", &image.kernel),
        ("initrd", &image.initrd),
        ("squashfs", &image.tools),
    ] {
        let (status, body) = api
            .upload(
                &format!("/api/v1/boot-resources?name=ephemeral&architecture=amd64&kind={kind}"),
                std::fs::read(path).unwrap(),
                &[],
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    // The site: the rack in its namespace serves the machines' bridge and
    // reaches the region's broker; the BMCs answer on its loopback.
    let state = data.path().join("rack");
    region.enrol_rack("hil-rack", &state).await;
    let site = MachineSite::create("10.88.0.1/24");
    let wan = Arc::new(Wan::start(options.embedded_broker, WAN_ONE_WAY).await);
    forward_loopback_port(&site.rack, wan.address().port());
    let rack_log = logs.join("rack.log");
    let broker_url = format!("mqtts://127.0.0.1:{}", wan.address().port());
    let _rack = start_rack_in_with(
        &site.rack,
        &state,
        &site.rack_if,
        &rack_log,
        &[
            ("EDGEMETAL_LOG", "info,edgemetal_rack::dhcp=debug"),
            ("EDGEMETAL_RACK_BROKER_URL", &broker_url),
        ],
    );
    wait_in_sync(&api, "hil-rack").await;
    wait_for_cached_image(&site, &rack_log).await;

    // The machine's switch: lldpd on its tap, sending every second.
    let _switch = Switch::start(&site, data.path());

    // The machine: registered with its BMC, then commissioned.
    let serial = logs.join("serial-known.log");
    let _ = std::fs::remove_file(&serial);
    let vm = VmBmc::start(
        &site.rack,
        &site.machine,
        VmSpec {
            mac: KNOWN_MAC.into(),
            memory_mib: MEMORY_MIB,
            cpus: 2,
            disk_bytes: DISK_BYTES,
            disk_serial: "EDGEDISK01".into(),
            tap: site.tap.clone(),
            serial_log: serial.clone(),
            firmware: Firmware::Bios,
            reboot: false,
        },
    );
    edgemetal_tests::secrets::remember(edgemetal_tests::bmc::PASSWORD);
    let machine = api
        .create(
            "/api/v1/machines",
            json!({"mac": KNOWN_MAC, "hostname": "hil-node-1", "architecture": "amd64"}),
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

    let started = Instant::now();
    let (status, body) = api
        .call(
            Method::POST,
            &format!("/api/v1/machines/{id}/actions/commission"),
            Some(json!({"reason": "HIL bench", "lldp_secs": 30,
                        "tests": ["smartctl", "memtester", "fio", "stress-ng"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "commissioning");
    // The machine is powered on: the WAN fails twice while it boots and reports.
    let flaps = flap(wan.clone());
    let ready = wait_for_status(&api, &id, "ready", &serial).await;
    let took = started.elapsed();
    let cuts = flaps.join().unwrap();
    eprintln!(
        "commissioned over {} ms RTT through {cuts} cuts of {} s",
        2 * WAN_ONE_WAY.as_millis(),
        WAN_CUT.as_secs()
    );
    let metrics = rack_metrics_in(&site.rack);
    assert_eq!(
        counter(&metrics, "edgemetal_rack_boot_region_waits_total"),
        0,
        "{metrics}"
    );
    assert!(
        labelled(
            &metrics,
            "edgemetal_rack_boot_answers_total",
            "source=\"intent\""
        ) >= 2,
        "the script and the metadata came from the pushed intent: {metrics}"
    );

    // The inventory matches the VM.
    let hardware = &ready["hardware"];
    assert_eq!(hardware["cpu_count"], 2, "{ready}");
    let memory = hardware["memory_mib"].as_i64().unwrap();
    assert!(
        (i64::from(MEMORY_MIB) - 8..=i64::from(MEMORY_MIB)).contains(&memory),
        "memory {memory} MiB for -m {MEMORY_MIB}"
    );
    assert_eq!(hardware["storage_bytes"], DISK_BYTES, "{ready}");
    assert_eq!(hardware["firmware"], "bios", "{ready}");
    let results = api
        .get(&format!("/api/v1/machines/{id}/commissioning-results"))
        .await;
    let inventory = &results["inventory"];
    let disks = inventory["disks"].as_array().unwrap();
    assert!(
        disks
            .iter()
            .any(|d| d["size_bytes"] == DISK_BYTES && d["serial"] == "EDGEDISK01"),
        "{inventory}"
    );
    let nics = inventory["nics"].as_array().unwrap();
    assert!(
        nics.iter()
            .any(|n| n["mac"] == KNOWN_MAC && n["link_up"] == true),
        "{inventory}"
    );
    assert!(
        inventory["cpu_model"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{inventory}"
    );
    for raw in ["cpuinfo", "meminfo", "iomem", "block", "net", "dmesg"] {
        assert!(
            results["outputs"][raw]
                .as_str()
                .is_some_and(|o| !o.is_empty()),
            "raw output {raw} missing: {:?}",
            results["outputs"]
                .as_object()
                .map(|o| o.keys().collect::<Vec<_>>())
        );
    }
    assert_eq!(results["purpose"], "commission");

    // The hardware tests ran: the virtio disk has no SMART (skipped), the
    // rest passed; and the switch was heard over LLDP.
    let tests: Vec<(&str, &str)> = inventory["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["name"].as_str().unwrap(), t["result"].as_str().unwrap()))
        .collect();
    assert_eq!(
        tests,
        [
            ("fio", "passed"),
            ("memtester", "passed"),
            ("smartctl", "skipped"),
            ("stress-ng", "passed")
        ],
        "{inventory}"
    );
    let fio = &inventory["tests"][0]["detail"];
    assert!(
        fio.as_str()
            .is_some_and(|d| d.contains("read ") && d.contains("IOPS")),
        "{fio}"
    );
    for raw in [
        "test-fio.log",
        "test-memtester.log",
        "test-stress-ng.log",
        "tests",
        "lldp",
    ] {
        assert!(results["outputs"][raw].is_string(), "no {raw} output");
    }
    let neighbour = &inventory["lldp"][0];
    assert_eq!(neighbour["system_name"], "hil-switch", "{inventory}");
    assert_eq!(neighbour["port_id"], "swp7", "{inventory}");
    assert_eq!(neighbour["port_description"], "hil bench port 7");
    let boot_nic = nics.iter().find(|n| n["mac"] == KNOWN_MAC).unwrap();
    assert_eq!(neighbour["interface"], boot_nic["name"], "{inventory}");

    // Searchable: Ready machines with at least 2 CPUs and 500 MiB; none with 4 CPUs.
    let found = api
        .get("/api/v1/machines?status=ready&min_cpu_count=2&min_memory_mib=500")
        .await;
    assert_eq!(found.as_array().unwrap().len(), 1, "{found}");
    assert_eq!(found[0]["id"], id.as_str());
    let none = api
        .get("/api/v1/machines?status=ready&min_cpu_count=4&min_memory_mib=8192")
        .await;
    assert_eq!(none, json!([]));

    // The events show every step of the flow, in order.
    let flow = wait_for_flow(&api, &id).await;
    report_phases(&flow, took, &logs);

    // Powered off over IPMI at the end.
    wait_for(
        || vm.power_status() == "Chassis Power is off",
        "the VM to be off",
    )
    .await;
    assert!(!vm.qemu_running());
    assert!(
        vm.chassis_log().iter().any(|l| l == "power 0"),
        "the region powered it off over IPMI: {:?}",
        vm.chassis_log()
    );

    // The rack's log shows the machine's DHCP and boot traffic.
    let log = without_colours(&std::fs::read_to_string(&rack_log).unwrap());
    for needle in [
        "iPXE script served",
        "boot resource served",
        "metadata served",
        "results queued for the region",
    ] {
        assert!(
            log.lines()
                .any(|l| l.contains(needle) && l.contains(KNOWN_MAC)),
            "rack log has no {needle:?} line for {KNOWN_MAC}"
        );
    }
    assert!(
        log.lines()
            .any(|l| l.contains("event=\"new\"") && l.contains(KNOWN_MAC)),
        "rack log has no DHCP lease for {KNOWN_MAC}"
    );

    // The ephemeral system logged through the rack's syslog relay: its
    // lines are the machine's logs in the region.
    let logs_path = format!("/api/v1/machines/{id}/logs?contains=gathered");
    let agent_lines = edgemetal_tests::wait_until(
        "the agent's log lines in the region",
        Duration::from_secs(60),
        || async {
            let logs = api.get(&logs_path).await;
            let lines = logs["lines"].as_array()?.clone();
            (!lines.is_empty()).then_some(lines)
        },
    )
    .await;
    eprintln!("agent log line in the region: {}", agent_lines[0]);

    // An unknown machine powered on by hand: enlisted, then auto-commissioned.
    let serial = logs.join("serial-unknown.log");
    let _ = std::fs::remove_file(&serial);
    let by_hand = VmBmc::start(
        &site.rack,
        &site.machine,
        VmSpec {
            mac: UNKNOWN_MAC.into(),
            memory_mib: MEMORY_MIB,
            cpus: 1,
            disk_bytes: DISK_BYTES / 2,
            disk_serial: "EDGEDISK02".into(),
            tap: site.add_tap(),
            serial_log: serial.clone(),
            firmware: Firmware::Bios,
            reboot: false,
        },
    );
    by_hand.ipmitool(&["chassis", "bootdev", "pxe"]);
    by_hand.ipmitool(&["chassis", "power", "on"]);
    let enlisted = wait_for_machine(&api, UNKNOWN_MAC).await;
    let enlisted_id = enlisted["id"].as_str().unwrap().to_string();
    let ready = wait_for_status(&api, &enlisted_id, "ready", &serial).await;
    assert_eq!(ready["hardware"]["cpu_count"], 1, "{ready}");
    assert_eq!(
        ready["hardware"]["storage_bytes"],
        DISK_BYTES / 2,
        "{ready}"
    );
    let kinds: Vec<String> = events(&api, &enlisted_id)
        .await
        .into_iter()
        .map(|(kind, detail, _)| format!("{kind}: {detail}"))
        .collect();
    let position = |prefix: &str| {
        kinds
            .iter()
            .position(|k| k.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in {kinds:#?}"))
    };
    assert!(position("enlisted") < position("status: New → Commissioning: auto-commission"));
    assert!(position("status: New → Commissioning") < position("commissioning.results"));
    assert!(position("commissioning.results") < position("status: Commissioning → Ready"));
    // No BMC known for it: the agent powers it off itself.
    wait_for(
        || !by_hand.qemu_running(),
        "the enlisted VM to power itself off",
    )
    .await;
}

/// The text of a log without its ANSI colour codes.
fn without_colours(log: &str) -> String {
    let mut plain = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ … m
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

/// Waits until the rack holds the ephemeral image, verified.
async fn wait_for_cached_image(site: &MachineSite, rack_log: &Path) {
    machine_flow::wait_for_cached(site, rack_log, 3, Duration::from_secs(60)).await
}

/// A switch port for the machine: lldpd in the machine's namespace on its
/// tap (frames sent there reach the VM's NIC), with its own control socket,
/// killed on drop.
struct Switch(std::process::Child);

impl Switch {
    fn start(site: &MachineSite, dir: &Path) -> Switch {
        let config = dir.join("lldpd.conf");
        std::fs::write(
            &config,
            format!(
                "configure system hostname hil-switch\nconfigure lldp tx-interval 1\n\
                 configure ports {} lldp portidsubtype local swp7 description \"hil bench port 7\"\n",
                site.tap
            ),
        )
        .unwrap();
        let child = site
            .machine
            .command("lldpd")
            .arg("-d")
            .arg("-u")
            .arg(dir.join("lldpd.socket"))
            .args(["-I", &site.tap])
            .arg("-O")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("lldpd (package lldpd)");
        Switch(child)
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        // SIGTERM: lldpd then stops its privilege-separated child too.
        let _ = std::process::Command::new("kill")
            .arg(self.0.id().to_string())
            .status();
        for _ in 0..40 {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until the region lists a machine with `mac`.
async fn wait_for_machine(api: &ApiClient, mac: &str) -> Value {
    let deadline = Instant::now() + COMMISSIONING_PATIENCE;
    loop {
        let machines = api.get("/api/v1/machines").await;
        if let Some(machine) = machines
            .as_array()
            .and_then(|all| all.iter().find(|m| m["mac"] == mac))
        {
            return machine.clone();
        }
        assert!(Instant::now() < deadline, "{mac} was never enlisted");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits for the whole flow in the events (the power off comes just after Ready).
async fn wait_for_flow(api: &ApiClient, id: &str) -> Vec<(String, String, i64)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let events = events(api, id).await;
        match positions(&events, &FLOW) {
            Ok(positions) => {
                return positions.into_iter().map(|p| events[p].clone()).collect();
            }
            Err(missing) if Instant::now() > deadline => {
                panic!("the flow is incomplete ({missing}): {events:#?}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

async fn wait_for(condition: impl Fn() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Prints (and keeps in the logs) the time from `commission` to Ready by phase.
fn report_phases(flow: &[(String, String, i64)], took: Duration, logs: &Path) {
    let at = |i: usize| flow[i].2;
    let phases = [
        ("power on (PXE boot device, IPMI on)", at(0), at(2)),
        ("firmware to DHCP lease", at(2), at(3)),
        ("boot files (script, kernel, initrd)", at(3), at(6)),
        ("kernel boot to metadata read", at(6), at(7)),
        ("inventory gathered and posted", at(7), at(8)),
        ("results stored, Ready", at(8), at(9)),
        ("powered off", at(9), at(10)),
    ];
    let mut report = format!("commission → Ready: {:.1} s\n", took.as_secs_f64());
    for (phase, from, to) in phases {
        report.push_str(&format!(
            "  {phase:<40} {:>7.2} s\n",
            (to - from) as f64 / 1000.0
        ));
    }
    eprintln!("{report}");
    let _ = std::fs::write(logs.join("phases.txt"), report);
}
