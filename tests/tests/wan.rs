//! The boot path over a long, flapping WAN: racks reach the broker through
//! a 300 ms RTT impairment proxy that is cut mid-test. A v2 rack answers
//! every boot-path request from the intents the region pushed ahead, so
//! none waits on the region, cut or not (asserted with its counters, never
//! with timings). A rack speaking protocol v1 against the same region
//! still serves, the old way: it asks the region per script, and its
//! counter shows those waits, which proves the counter counts. And a
//! burst of DHCP clients served across two cuts reaches the region with
//! every lease event applied exactly once.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use edgemetal_tests::boot_files::{content, ipxe_script, upload, BootRack};
use edgemetal_tests::dhcp_site::{
    enrolled_rack_keeping_region, rack_metrics_in, start_rack_in_with,
};
use edgemetal_tests::metrics::{counter, labelled};
use edgemetal_tests::netns::{forward_loopback_port, veth, Netns};
use edgemetal_tests::process::log_dir;
use edgemetal_tests::site::{rack_record, wait_in_sync, PATIENCE};
use edgemetal_tests::{wait_until, RegionOptions, RegionProcess, Wan};
use reqwest::StatusCode;
use serde_json::json;

const WAITS: &str = "edgemetal_rack_boot_region_waits_total";
const ANSWERS: &str = "edgemetal_rack_boot_answers_total";

fn tftp_get(server: std::net::SocketAddr, remote: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new("tftp")
        .current_dir(dir.path())
        .args(["-m", "binary", "127.0.0.1", &server.port().to_string()])
        .args(["-c", "get", remote, "file"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(std::fs::read(dir.path().join("file")).unwrap()).unwrap()
}

#[tokio::test]
async fn boot_path_answers_never_wait_on_a_long_or_cut_link_and_a_v1_rack_still_serves() {
    let logs = log_dir("wan_boot_path");
    let data = tempfile::tempdir().unwrap();
    let options = RegionOptions::embedded(&data.path().join("region"), &logs);
    let region = RegionProcess::start(&options).await;
    let api = region.client();
    let kernel = upload(&api, "kernel", &content(300_000, 1)).await;
    upload(&api, "initrd", &content(200_000, 2)).await;
    let wan = Wan::start(options.embedded_broker, Duration::from_millis(150)).await;

    let broker = format!("mqtts://127.0.0.1:{}", wan.address().port());
    let v2 = BootRack::start(&region, "rack-v2", data.path(), &logs, &broker, "2").await;
    let v1 = BootRack::start(&region, "rack-v1", data.path(), &logs, &broker, "1").await;
    for rack in ["rack-v2", "rack-v1"] {
        wait_in_sync(&api, rack).await;
    }
    // The region speaks each rack's version.
    assert_eq!(
        rack_record(&api, "rack-v1").await.unwrap()["protocol_version"],
        1
    );
    assert_eq!(
        rack_record(&api, "rack-v2").await.unwrap()["protocol_version"],
        2
    );

    // A known machine starts commissioning (no BMC: booted by hand).
    let machine = api
        .create(
            "/api/v1/machines",
            json!({"mac": "52:54:00:bb:00:01", "architecture": "amd64"}),
        )
        .await;
    let (status, body) = api
        .call(
            reqwest::Method::POST,
            &format!(
                "/api/v1/machines/{}/actions/commission",
                machine["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    wait_until(
        "the v2 rack to hold the commissioning intent",
        PATIENCE,
        || async {
            ipxe_script(v2.http, "52:54:00:bb:00:01")
                .contains("edgemetal.purpose=commission")
                .then_some(())
        },
    )
    .await;
    // The v1 rack asks the region over the long link, and gets the same answer.
    let asked = ipxe_script(v1.http, "52:54:00:bb:00:01");
    assert!(asked.contains("edgemetal.purpose=commission"), "{asked}");
    let v1_waits = counter(&v1.process.metrics().await, WAITS);
    assert!(v1_waits >= 1, "the v1 rack's script waited on the region");

    // The WAN dies upstream: bytes vanish, nobody is told. Both racks still
    // believe the link up (until their MQTT keep-alive fails); the v2 rack
    // answers everything at once anyway, the v1 rack waits for the region.
    wan.blackhole();
    let known = ipxe_script(v2.http, "52:54:00:bb:00:01");
    assert!(known.contains("edgemetal.purpose=commission"), "{known}");
    let sha = kernel["sha256"].as_str().unwrap();
    assert!(known.contains(sha), "{known}");
    let unknown = ipxe_script(v2.http, "52:54:00:bb:00:99");
    assert!(unknown.contains("edgemetal.purpose=enlist"), "{unknown}");
    let pxelinux = tftp_get(v2.tftp, "pxelinux.cfg/01-52-54-00-bb-00-01");
    assert!(
        pxelinux.contains("edgemetal.purpose=commission"),
        "{pxelinux}"
    );
    // The v1 rack still serves, from what it remembers, after waiting.
    let remembered = ipxe_script(v1.http, "52:54:00:bb:00:01");
    assert!(
        remembered.contains("edgemetal.purpose=commission"),
        "{remembered}"
    );
    assert!(counter(&v1.process.metrics().await, WAITS) > v1_waits);

    let metrics = v2.process.metrics().await;
    assert_eq!(counter(&metrics, WAITS), 0, "{metrics}");
    assert!(
        labelled(&metrics, ANSWERS, "source=\"intent\"") >= 3,
        "{metrics}"
    );
    assert!(
        labelled(&metrics, ANSWERS, "source=\"enlistment\"") >= 1,
        "{metrics}"
    );

    // Cut outright: the racks see their connections drop, reconnects are
    // refused; the v2 rack still answers from what it holds.
    wan.restore();
    wan.cut();
    wait_until("the v2 rack to notice the cut", PATIENCE, || async {
        (v2.process.status().await["link_connected"] == false).then_some(())
    })
    .await;
    let during = ipxe_script(v2.http, "52:54:00:bb:00:01");
    assert!(during.contains("edgemetal.purpose=commission"), "{during}");
    wait_until("a reconnect to be refused", PATIENCE, || async {
        (wan.connections().0 > 0).then_some(())
    })
    .await;

    // Restored: both racks reconnect and resync; still no v2 wait.
    wan.restore();
    wait_until("both racks back", Duration::from_secs(60), || async {
        let mut back = true;
        for rack in ["rack-v2", "rack-v1"] {
            let record = rack_record(&api, rack).await?;
            back &= record["status"] == "online" && record["in_sync"] == true;
        }
        back.then_some(())
    })
    .await;
    assert_eq!(counter(&v2.process.metrics().await, WAITS), 0);
}

/// The sum of a labelled counter family, e.g. every `event` of DHCP events.
fn family_total(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn a_dhcp_burst_across_two_cuts_reaches_the_region_exactly_once() {
    let logs = log_dir("wan_dhcp");
    let data = tempfile::tempdir().unwrap();
    let (state, options) = enrolled_rack_keeping_region(
        data.path(),
        &logs,
        "10.86.0.0/24",
        "10.86.0.1",
        "10.86.0.100",
        "10.86.0.250",
    )
    .await;
    let region = RegionProcess::start(&options).await;
    let api = region.client();
    let wan = Arc::new(Wan::start(options.embedded_broker, Duration::from_millis(150)).await);
    let server = Netns::create();
    let client = Netns::create();
    let (server_if, client_if) = veth(&server, &client, Some("10.86.0.1/24"));
    // perfdhcp relays from its own address on the subnet (giaddr).
    client.ip(&["addr", "add", "10.86.0.2/24", "dev", &client_if]);
    forward_loopback_port(&server, wan.address().port());
    let broker_url = format!("mqtts://127.0.0.1:{}", wan.address().port());
    let _rack = start_rack_in_with(
        &server,
        &state,
        &server_if,
        &logs.join("rack.log"),
        &[("EDGEMETAL_RACK_BROKER_URL", &broker_url)],
    );
    wait_in_sync(&api, "dhcp-rack").await;

    // 300 exchanges among 150 clients at 50/s, while the WAN fails twice.
    let schedule = {
        let wan = wan.clone();
        std::thread::spawn(move || {
            for _ in 0..2 {
                std::thread::sleep(Duration::from_secs(1));
                wan.cut();
                std::thread::sleep(Duration::from_secs(2));
                wan.restore();
            }
        })
    };
    let output = client
        .command("perfdhcp")
        .args([
            "-4", "-r", "50", "-n", "300", "-R", "150", "-W", "2000000", "-l", &client_if,
        ])
        .output()
        .expect("perfdhcp (package kea-admin)");
    std::fs::write(logs.join("perfdhcp.txt"), &output.stdout).unwrap();
    schedule.join().unwrap();
    assert!(
        wan.connections().1 >= 2,
        "the rack reconnected after the cuts"
    );

    // Every event the rack queued reaches the region, once.
    let queued = || {
        family_total(
            &rack_metrics_in(&server),
            "edgemetal_rack_dhcp_events_total",
        )
    };
    let new_leases = labelled(
        &rack_metrics_in(&server),
        "edgemetal_rack_dhcp_events_total",
        "event=\"new\"",
    );
    assert!(new_leases >= 100, "perfdhcp got {new_leases} leases");
    let applied = || async {
        counter(
            &api.metrics().await,
            "edgemetal_region_rack_events_applied_total",
        )
    };
    wait_until(
        "every queued lease event applied in the region",
        Duration::from_secs(60),
        || async { (applied().await >= queued()).then_some(()) },
    )
    .await;
    assert_eq!(applied().await, queued(), "applied more often than queued");
    let leases = api.get("/api/v1/leases").await;
    let bound = leases
        .as_array()
        .unwrap()
        .iter()
        .filter(|lease| lease["state"] == "bound" && lease["rack_id"] == "dhcp-rack")
        .count() as u64;
    assert_eq!(bound, new_leases, "{leases}");
}
