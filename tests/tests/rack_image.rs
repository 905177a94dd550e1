//! The rack appliance image, end to end under QEMU (software emulation):
//! built from `images/rack`, configured with `edgemetal-rack image
//! configure` like an operator would before flashing, booted with a WAN NIC
//! towards the region and a site NIC on a bridge with DHCP clients. The rack
//! enrols, comes online, serves a lease; after a clean power-off and a fresh
//! boot of the same disk it is the same rack (no second enrolment) and still
//! knows its leases.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use edgemetal_tests::dhcp_site::{field, udhcpc_script};
use edgemetal_tests::process::{binary, log_dir};
use edgemetal_tests::rack_image::{self, ImageSite, RackNics, RackVm};
use edgemetal_tests::site::{rack_record, wait_for_lease};
use edgemetal_tests::{wait_until, ApiClient, RegionOptions, RegionProcess};
use serde_json::{json, Value};

const RACK: &str = "image-rack";
/// The WAN: the vm host's tap is the gateway (and where the relays listen).
const WAN_GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 230, 0, 1);
const WAN_RACK: &str = "10.230.0.2/24";
/// The site network the rack serves.
const SITE_RACK: &str = "10.231.0.1/24";
const WAN_MAC: &str = "52:54:00:e6:00:01";
const SITE_MAC: &str = "52:54:00:e7:00:01";
/// Booting under TCG is slow; the first boot also enrols.
const BOOT_PATIENCE: Duration = Duration::from_secs(240);

/// Runs busybox udhcpc in the namespace `ns` until a lease or `tries`
/// discovers (1 s apart); returns the hook's `bound` line, if any.
fn lease(ns: &str, nic: &str, dir: &Path, tries: u32, extra: &[&str]) -> Option<String> {
    let (script, events) = udhcpc_script(dir);
    let _ = std::fs::remove_file(&events);
    let output = Command::new("ip")
        .args(["netns", "exec", ns, "udhcpc"])
        .args(["-f", "-q", "-n", "-T", "1", "-t", &tries.to_string()])
        .args(["-i", nic, "-s"])
        .arg(&script)
        .args(extra)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("udhcpc (package udhcpc)");
    let text = std::fs::read_to_string(&events).unwrap_or_default();
    let bound = text
        .lines()
        .find(|l| l.starts_with("bound"))
        .map(str::to_string);
    if bound.is_none() {
        eprintln!(
            "udhcpc on {nic}: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    bound
}

async fn racks(api: &ApiClient) -> Vec<Value> {
    api.get("/api/v1/racks")
        .await
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn wait_online(api: &ApiClient, vm: &RackVm, what: &str) -> Value {
    let found = tokio::time::timeout(
        BOOT_PATIENCE,
        wait_until(what, BOOT_PATIENCE, || async {
            rack_record(api, RACK)
                .await
                .filter(|r| r["status"] == "online" && r["in_sync"] == true)
        }),
    )
    .await;
    match found {
        Ok(record) => record,
        Err(_) => panic!("{what}: not online; console:\n{}", vm.console()),
    }
}

/// Presses the power button and waits for the VM to power itself off.
fn power_off(vm: &mut RackVm) {
    vm.power_button();
    assert!(
        vm.wait_exit(Duration::from_secs(90)),
        "the rack did not power off; console:\n{}",
        vm.console()
    );
    let console = vm.console();
    assert!(
        console.contains("edgemetal-init: state partition clean"),
        "no clean unmount of the state partition:\n{console}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rack_image_enrols_serves_dhcp_and_keeps_identity_and_leases_across_a_reboot() {
    edgemetal_tests::packages::ensure("/usr/bin/qemu-system-x86_64", "qemu-system-x86");
    edgemetal_tests::packages::ensure("udhcpc", "udhcpc");
    edgemetal_tests::packages::ensure("/usr/sbin/debugfs", "e2fsprogs");
    let test_started = Instant::now();
    let logs = log_dir("rack_image");
    let data = tempfile::tempdir().unwrap();

    let built = Instant::now();
    let image = tokio::task::spawn_blocking(rack_image::image)
        .await
        .unwrap();
    let build_time = built.elapsed();

    // The region, with a short heartbeat timeout so that a powered-off rack
    // shows offline soon; a subnet for the rack's site NIC.
    let mut options = RegionOptions::embedded(&data.path().join("region"), &logs);
    options.heartbeat_timeout_secs = 10;
    // The broker's certificate must name the address the rack dials.
    options.env.push((
        "EDGEMETAL_BROKER_TLS_NAMES".into(),
        format!("localhost,127.0.0.1,{WAN_GATEWAY}"),
    ));
    let region = RegionProcess::start(&options).await;
    let api = region.client();
    let subnet = api
        .create(
            "/api/v1/subnets",
            json!({"name": "image-site", "cidr": "10.231.0.0/24", "gateway": "10.231.0.1",
                   "dns_servers": ["10.231.0.1"], "lease_time_secs": 600}),
        )
        .await;
    let subnet_id = subnet["id"].as_str().unwrap();
    api.create(
        &format!("/api/v1/subnets/{subnet_id}/ranges"),
        json!({"start": "10.231.0.100", "end": "10.231.0.150", "purpose": "dynamic"}),
    )
    .await;
    let token = region.enrolment_token(RACK).await;

    let mut site = ImageSite::create(&format!("{WAN_GATEWAY}/24"));
    site.relay(WAN_GATEWAY, region.http.port());
    site.relay(WAN_GATEWAY, options.embedded_broker.port());
    let first_client = site.add_client("02:e7:00:00:00:01");
    let second_client = site.add_client("02:e7:00:00:00:02");

    // The operator's step: a copy of the image, configured before "flashing".
    let disk = data.path().join("rack.img");
    std::fs::copy(&image.disk, &disk).unwrap();
    let configured = Command::new(binary("edgemetal-rack"))
        .args(["image", "configure"])
        .arg(&disk)
        .args([
            "--region-url",
            &format!("http://{WAN_GATEWAY}:{}", region.http.port()),
            "--broker-url",
            &format!("mqtts://{WAN_GATEWAY}:{}", options.embedded_broker.port()),
            // For the plain-HTTP region API of the tests; the broker link is TLS.
            "--insecure-plaintext",
            "--wan-interface",
            WAN_MAC,
            "--wan-address",
            WAN_RACK,
            "--wan-gateway",
            &WAN_GATEWAY.to_string(),
            "--dhcp-interface",
            SITE_MAC,
            "--site-address",
            &format!("{SITE_MAC}={SITE_RACK}"),
            "--hostname",
            "image-rack-host",
        ])
        // Through the environment: the token stays off command lines and logs.
        .env("EDGEMETAL_RACK_ENROLMENT_TOKEN", &token)
        .output()
        .unwrap();
    assert!(
        configured.status.success(),
        "image configure: {}",
        String::from_utf8_lossy(&configured.stderr)
    );
    let summary = String::from_utf8_lossy(&configured.stdout);
    assert!(
        !summary.contains(&token),
        "the token was printed: {summary}"
    );

    let nics = RackNics {
        wan_mac: WAN_MAC.into(),
        site_mac: SITE_MAC.into(),
    };

    // First boot: enrolment, snapshot, DHCP.
    let mut vm = RackVm::start(&site, &disk, &nics, &logs.join("serial-boot1.log"));
    let record = wait_online(&api, &vm, "the rack to enrol and come online").await;
    let online_after = vm.started.elapsed();
    assert_eq!(record["hostname"], "image-rack-host", "{record}");
    let first_seen = record["first_seen_ms"].clone();

    let (clients, nic, dir) = (
        site.clients.name.clone(),
        first_client.clone(),
        data.path().to_path_buf(),
    );
    let bound = tokio::task::spawn_blocking(move || lease(&clients, &nic, &dir, 30, &[]))
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no lease from the rack; console:\n{}", vm.console()));
    let first_address = field(&bound, "ip").to_string();
    assert_eq!(field(&bound, "serverid"), "10.231.0.1", "{bound}");
    assert!(first_address.starts_with("10.231.0."), "{bound}");
    wait_for_lease(&api, &first_address, "state", "bound").await;
    // The image's own start-up measure (its watcher polls the rack's status).
    let serving1 = wait_until(
        "the image to report DHCP serving",
        Duration::from_secs(30),
        || async { rack_image::serving_dhcp_after(&vm.console()) },
    )
    .await;

    power_off(&mut vm);
    drop(vm);
    let console1 = std::fs::read_to_string(logs.join("serial-boot1.log")).unwrap();
    assert!(console1.contains("enrolled with the region"), "{console1}");
    // The lease journal is on the state partition.
    let journal = rack_image::state_file(&disk, "dhcp-leases.jsonl")
        .expect("dhcp-leases.jsonl on the state partition");
    let journal = String::from_utf8_lossy(&journal);
    assert!(journal.contains(&first_address), "{journal}");
    let identity = rack_image::state_file(&disk, "identity.json")
        .expect("identity.json on the state partition");
    // Its secrets join those the suite checks every log for (consoles included).
    let identity_copy = data.path().join("identity.json");
    std::fs::write(&identity_copy, identity).unwrap();
    edgemetal_tests::secrets::remember_identity(&identity_copy);
    wait_until(
        "the rack to show offline",
        Duration::from_secs(60),
        || async {
            rack_record(&api, RACK)
                .await
                .filter(|r| r["status"] == "offline")
        },
    )
    .await;

    // Second boot of the same disk: same identity, persisted snapshot and leases.
    let mut vm = RackVm::start(&site, &disk, &nics, &logs.join("serial-boot2.log"));
    let (clients, nic, dir) = (
        site.clients.name.clone(),
        second_client.clone(),
        data.path().to_path_buf(),
    );
    // A new client asks from the moment QEMU starts: the time to the first
    // lease, from power-on, with the region reachable but not needed.
    let started = vm.started;
    let second = tokio::task::spawn_blocking(move || {
        lease(&clients, &nic, &dir, 240, &[]).map(|b| (b, started.elapsed()))
    })
    .await
    .unwrap();
    let (second_bound, lease_after) =
        second.unwrap_or_else(|| panic!("no lease after the reboot; console:\n{}", vm.console()));
    // The journal survived: the first client's address is still taken.
    let second_address = field(&second_bound, "ip").to_string();
    assert_ne!(second_address, first_address, "{second_bound}");

    let record = wait_online(&api, &vm, "the rack to come back online").await;
    assert_eq!(record["first_seen_ms"], first_seen, "{record}");
    let all = racks(&api).await;
    assert_eq!(all.len(), 1, "one rack, no second enrolment: {all:?}");
    assert_eq!(all[0]["id"], RACK);

    // The first client gets its own address back.
    let (clients, nic, dir, wanted) = (
        site.clients.name.clone(),
        first_client.clone(),
        data.path().to_path_buf(),
        first_address.clone(),
    );
    let again =
        tokio::task::spawn_blocking(move || lease(&clients, &nic, &dir, 30, &["-r", &wanted]))
            .await
            .unwrap()
            .expect("the first client's lease after the reboot");
    assert_eq!(field(&again, "ip"), first_address, "{again}");

    let console2 = vm.console();
    assert!(
        console2.contains("serving from the persisted snapshot"),
        "{console2}"
    );
    assert!(
        !console2.contains("enrolled with the region"),
        "enrolled again:\n{console2}"
    );
    let serving2 = wait_until(
        "the image to report DHCP serving",
        Duration::from_secs(30),
        || async { rack_image::serving_dhcp_after(&vm.console()) },
    )
    .await;
    power_off(&mut vm);

    let report = format!(
        "rack image: build/check {build_time:.1?}; boot 1: online {online_after:.1?} after QEMU start, \
         DHCP served {serving1} s after kernel start; boot 2: DHCP served {serving2} s after kernel start, \
         first lease {lease_after:.1?} after QEMU start; test {:.1?}\n",
        test_started.elapsed()
    );
    eprint!("{report}");
    std::fs::write(logs.join("timings.txt"), report).unwrap();
}
