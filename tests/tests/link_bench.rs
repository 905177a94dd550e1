//! Benchmarks of the link (not part of CI's pass/fail; run with
//! `cargo test -p edgemetal-tests --release --test link_bench -- --ignored --nocapture --test-threads 1`
//! after `cargo build --release --workspace`, with `EDGEMETAL_BIN_DIR=target/release`):
//!
//! 1. Each boot-path step a machine takes from its rack, at 0 and 300 ms
//!    RTT between rack and broker, for a v2 rack (answers from pushed
//!    intents) and a v1-mode rack (asks the region per script).
//! 2. Link bytes per lease event and each rack's snapshot size, at 1, 10
//!    and 50 racks × 1,000 machines, one subnet per rack, against what the
//!    v1 design sent (the whole region's snapshot to every rack on every
//!    change).

use std::process::Command;
use std::time::{Duration, Instant};

use edgemetal_tests::boot_files::{content, curl, upload, BootRack};
use edgemetal_tests::dhcp_site::{start_rack_in_with, NamespacedRack};
use edgemetal_tests::metrics::counter;
use edgemetal_tests::netns::{forward_loopback_port, veth, Netns};
use edgemetal_tests::process::log_dir;
use edgemetal_tests::site::{wait_in_sync, PATIENCE};
use edgemetal_tests::{wait_until, ApiClient, RackProcess, RegionOptions, RegionProcess, Wan};
use serde_json::json;

const RUNS: usize = 20;

/// One boot-path step, run as a machine would.
type Step = Box<dyn Fn()>;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn timed(step: impl Fn()) -> Duration {
    median(
        (0..RUNS)
            .map(|_| {
                let started = Instant::now();
                step();
                started.elapsed()
            })
            .collect(),
    )
}

fn tftp_get(server: std::net::SocketAddr, remote: &str) {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new("tftp")
        .current_dir(dir.path())
        .args(["-m", "binary", "127.0.0.1", &server.port().to_string()])
        .args(["-c", "get", remote, "file"])
        .status()
        .unwrap();
    assert!(status.success());
}

async fn commission_by_hand(api: &ApiClient, mac: &str) {
    let machine = api
        .create(
            "/api/v1/machines",
            json!({"mac": mac, "architecture": "amd64"}),
        )
        .await;
    let path = format!(
        "/api/v1/machines/{}/actions/commission",
        machine["id"].as_str().unwrap()
    );
    let (status, body) = api.call(reqwest::Method::POST, &path, None).await;
    assert!(status.is_success(), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark"]
async fn boot_path_steps_at_0_and_300_ms_rtt() {
    let logs = log_dir("bench_boot_path");
    let data = tempfile::tempdir().unwrap();
    let options = RegionOptions::embedded(&data.path().join("region"), &logs);
    let region = RegionProcess::start(&options).await;
    let api = region.client();
    let kernel = upload(&api, "kernel", &content(8 << 20, 1)).await;
    upload(&api, "initrd", &content(1 << 20, 2)).await;
    let wan = Wan::start(options.embedded_broker, Duration::ZERO).await;
    let broker = format!("mqtts://127.0.0.1:{}", wan.address().port());
    let mut racks = Vec::new();
    for (name, protocol) in [("bench-v2", "2"), ("bench-v1", "1")] {
        let BootRack {
            process,
            http,
            tftp,
        } = BootRack::start(&region, name, data.path(), &logs, &broker, protocol).await;
        wait_in_sync(&api, name).await;
        wait_until(
            "the boot resources cached",
            Duration::from_secs(60),
            || async {
                let status = process.status().await;
                let resources = status["boot_resources"].as_array()?.clone();
                (resources.len() == 2 && resources.iter().all(|r| r["ready"] == true)).then_some(())
            },
        )
        .await;
        racks.push((name, protocol, http, tftp, process));
    }
    commission_by_hand(&api, "52:54:00:cc:00:01").await;
    let sha = kernel["sha256"].as_str().unwrap().to_string();

    println!("\n| step | rack | 0 ms RTT | 300 ms RTT | ratio |");
    println!("|---|---|---|---|---|");
    let mut rows: Vec<(String, Duration)> = Vec::new();
    for one_way in [Duration::ZERO, Duration::from_millis(150)] {
        wan.set_delay(one_way);
        // New delay, new connections: the racks reconnect through it.
        wan.restore();
        for (name, ..) in &racks {
            wait_in_sync(&api, name).await;
        }
        for (name, protocol, http, tftp, _) in &racks {
            let (http, tftp) = (*http, *tftp);
            let sha = sha.clone();
            let steps: Vec<(&str, Step)> = vec![
                (
                    "iPXE script, known machine",
                    Box::new(move || {
                        curl(&[&format!("http://{http}/boot/ipxe/52:54:00:cc:00:01.ipxe")]);
                    }),
                ),
                (
                    "iPXE script, unknown machine",
                    Box::new(move || {
                        curl(&[&format!("http://{http}/boot/ipxe/52:54:00:cc:00:99.ipxe")]);
                    }),
                ),
                (
                    "PXELINUX config (TFTP)",
                    Box::new(move || {
                        tftp_get(tftp, "pxelinux.cfg/01-52-54-00-cc-00-01");
                    }),
                ),
                (
                    "kernel 8 MiB (HTTP)",
                    Box::new(move || {
                        curl(&[
                            "-o",
                            "/dev/null",
                            &format!("http://{http}/boot/resources/{sha}"),
                        ]);
                    }),
                ),
            ];
            for (step, run) in steps {
                let took = tokio::task::block_in_place(|| timed(run));
                rows.push((format!("{step} | v{protocol} ({name})"), took));
            }
        }
    }
    let half = rows.len() / 2;
    for index in 0..half {
        let (label, at_zero) = &rows[index];
        let at_300 = rows[index + half].1;
        println!(
            "| {label} | {:.1} ms | {:.1} ms | {:.2}× |",
            at_zero.as_secs_f64() * 1e3,
            at_300.as_secs_f64() * 1e3,
            at_300.as_secs_f64() / at_zero.as_secs_f64()
        );
    }
}

async fn link_bytes(api: &ApiClient) -> u64 {
    counter(
        &api.metrics().await,
        "edgemetal_region_link_bytes_sent_total",
    )
}

async fn snapshot_bytes(api: &ApiClient) -> u64 {
    counter(
        &api.metrics().await,
        "edgemetal_region_snapshot_bytes_sent_total",
    )
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark"]
async fn link_bytes_per_lease_event_and_snapshot_size_by_rack_count() {
    const MACHINES: usize = 1000;
    println!("\n| racks | machines | one rack's full snapshot | reservation added | lease, reserved machine | lease, machine's name moves | v1 (≈ every rack gets the region's snapshot) | v1 / v2 |");
    println!("|---|---|---|---|---|---|---|---|");
    for racks in [1usize, 10, 50] {
        let logs = log_dir(&format!("bench_link_bytes_{racks}"));
        let data = tempfile::tempdir().unwrap();
        let options = RegionOptions::embedded(&data.path().join("region"), &logs);
        let region = RegionProcess::start(&options).await;
        let api = region.client();
        let mut processes = Vec::new();
        let mut subnets = Vec::new();
        let mut site0 = None;
        for index in 0..racks {
            let name = format!("site-{index}");
            let state = data.path().join(&name);
            region.enrol_rack(&name, &state).await;
            if index == 0 {
                // Site 0's rack serves DHCP to a real client in a namespace.
                site0 = Some(Site0::start(&state, &logs, options.embedded_broker));
            } else {
                processes.push(RackProcess::start(&state, &logs.join(format!("{name}.log"))).await);
            }
            let subnet = api
                .create(
                    "/api/v1/subnets",
                    json!({"name": name, "cidr": format!("10.{}.{}.0/22", 100 + index / 50, (index % 50) * 4),
                           "domain": format!("{name}.example"), "dhcp_racks": [name]}),
                )
                .await;
            subnets.push((name, subnet["id"].as_str().unwrap().to_string(), index));
        }
        // 1,000 machines spread over the sites, each with a reservation.
        for machine in 0..MACHINES {
            let (_, subnet_id, index) = &subnets[machine % racks];
            let slot = machine / racks;
            let mac = format!(
                "52:54:01:{:02x}:{:02x}:{:02x}",
                index,
                slot / 256,
                slot % 256
            );
            let address = format!(
                "10.{}.{}.{}",
                100 + index / 50,
                (index % 50) * 4 + slot / 250,
                slot % 250 + 2
            );
            api.create(
                "/api/v1/machines",
                json!({"mac": mac, "architecture": "amd64",
                                                   "hostname": format!("m{machine}")}),
            )
            .await;
            api.create(
                &format!("/api/v1/subnets/{subnet_id}/reservations"),
                json!({"mac": mac, "address": address}),
            )
            .await;
        }
        // A dynamic range on site 0 and a machine without a reservation.
        api.create(
            &format!("/api/v1/subnets/{}/ranges", subnets[0].1),
            json!({"start": "10.100.0.252", "end": "10.100.0.254", "purpose": "dynamic"}),
        )
        .await;
        api.create(
            "/api/v1/machines",
            json!({"mac": "52:54:03:00:00:01", "architecture": "amd64", "hostname": "roamer"}),
        )
        .await;
        for (name, ..) in &subnets {
            wait_in_sync(&api, name).await;
        }
        let site0 = site0.unwrap();
        // One rack's whole snapshot, as a resync sends it: a key rotation
        // re-seals the retained snapshot in full.
        let before = snapshot_bytes(&api).await;
        let (status, body) = api
            .call(
                reqwest::Method::POST,
                "/api/v1/racks/site-0/rotate-key",
                None,
            )
            .await;
        assert_eq!(status, reqwest::StatusCode::ACCEPTED, "{body}");
        let snapshot = wait_until("the re-sealed snapshot", PATIENCE, || async {
            let sent = snapshot_bytes(&api).await - before;
            (sent > 0).then_some(sent)
        })
        .await;
        // A change on its site: one reservation more, as a delta.
        let before = link_bytes(&api).await;
        api.create(
            &format!("/api/v1/subnets/{}/reservations", subnets[0].1),
            json!({"mac": "52:54:02:00:00:01", "address": "10.100.3.253"}),
        )
        .await;
        wait_in_sync(&api, "site-0").await;
        let reservation = link_bytes(&api).await - before;

        // Known machines take leases on site 0 from a real DHCP client on the
        // site's network: one with a reservation (its DNS name stays), then
        // one without (its name appears in site 0's zone, nowhere else).
        let per_event = |mac: &'static str, events: u64| {
            let api = &api;
            let site0 = &site0;
            async move {
                site0
                    .client
                    .ip(&["link", "set", "dev", &site0.client_if, "address", mac]);
                let before = link_bytes(api).await;
                let output = site0
                    .client
                    .command("udhcpc")
                    .args([
                        "-f",
                        "-q",
                        "-n",
                        "-t",
                        "20",
                        "-T",
                        "1",
                        "-i",
                        &site0.client_if,
                    ])
                    .args(["-s", "/bin/true"])
                    .output()
                    .expect("udhcpc");
                assert!(output.status.success(), "{output:?}");
                wait_until("the lease event applied", PATIENCE, || async {
                    (counter(
                        &api.metrics().await,
                        "edgemetal_region_rack_events_applied_total",
                    ) >= events)
                        .then_some(())
                })
                .await;
                wait_in_sync(api, "site-0").await;
                // The event's changes are published after it is applied: wait
                // until the link is quiet (a benchmark may wait; a test may not).
                let mut last = link_bytes(api).await;
                let mut quiet = 0;
                for _ in 0..40 {
                    if quiet == 4 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    let now = link_bytes(api).await;
                    quiet = if now == last { quiet + 1 } else { 0 };
                    last = now;
                }
                last - before
            }
        };
        let reserved = per_event("52:54:01:00:00:0a", 1).await;
        let roaming = per_event("52:54:03:00:00:01", 2).await;
        // v1: the region-wide snapshot (≈ every site's cut) to every rack.
        let whole = snapshot as f64 * racks as f64;
        let v1 = whole * racks as f64;
        println!(
            "| {racks} | {MACHINES} | {:.1} KiB | {:.2} KiB | {:.2} KiB | {:.2} KiB | {:.1} KiB | {:.0}× |",
            snapshot as f64 / 1024.0,
            reservation as f64 / 1024.0,
            reserved as f64 / 1024.0,
            roaming as f64 / 1024.0,
            v1 / 1024.0,
            v1 / roaming as f64
        );
        drop(processes);
        drop(site0);
    }
}

/// Site 0: its rack in a namespace with a DHCP client on a veth whose MAC
/// is the reserved machine `52:54:01:00:00:0a`'s.
struct Site0 {
    _rack: NamespacedRack,
    client: Netns,
    client_if: String,
    _server: Netns,
}

impl Site0 {
    fn start(
        state: &std::path::Path,
        logs: &std::path::Path,
        broker: std::net::SocketAddr,
    ) -> Site0 {
        let server = Netns::create();
        let client = Netns::create();
        let (server_if, client_if) = veth(&server, &client, Some("10.100.0.1/22"));
        client.ip(&[
            "link",
            "set",
            "dev",
            &client_if,
            "address",
            "52:54:01:00:00:0a",
        ]);
        forward_loopback_port(&server, broker.port());
        let url = format!("mqtts://127.0.0.1:{}", broker.port());
        let rack = start_rack_in_with(
            &server,
            state,
            &server_if,
            &logs.join("site-0.log"),
            &[("EDGEMETAL_RACK_BROKER_URL", &url)],
        );
        Site0 {
            _rack: rack,
            client,
            client_if,
            _server: server,
        }
    }
}
