//! Region and racks over a real broker: configuration reaches racks, racks
//! survive restarts and outages, presence is tracked, junk is dropped.

use std::path::Path;
use std::time::{Duration, Instant};

use edgemetal_protocol::{Envelope, MessageId, RackStatus, UpMessage};
use edgemetal_tests::mosquitto::publish_raw;
use edgemetal_tests::process::log_dir;
use edgemetal_tests::{
    wait_until, ApiClient, Mosquitto, Postgres, RackProcess, RegionOptions, RegionProcess,
};
use serde_json::{json, Value};

const PATIENCE: Duration = Duration::from_secs(20);

async fn rack_record(api: &ApiClient, rack: &str) -> Option<Value> {
    let (status, body) = api
        .call(reqwest::Method::GET, &format!("/api/v1/racks/{rack}"), None)
        .await;
    status.is_success().then_some(body)
}

/// Waits until the region shows `rack` online and serving the region's current generation.
async fn wait_in_sync(api: &ApiClient, rack: &str) -> Value {
    wait_until(
        &format!("rack {rack} online and in sync"),
        PATIENCE,
        || async {
            rack_record(api, rack)
                .await
                .filter(|r| r["status"] == "online" && r["in_sync"] == true)
        },
    )
    .await
}

async fn wait_status(api: &ApiClient, rack: &str, status: &str) {
    wait_until(&format!("rack {rack} {status}"), PATIENCE, || async {
        rack_record(api, rack)
            .await
            .filter(|r| r["status"] == status)
            .map(|_| ())
    })
    .await
}

async fn create_site(api: &ApiClient, cidr_prefix: &str) -> String {
    let subnet = api
        .create("/api/v1/subnets", json!({"name": format!("site-{}", cidr_prefix.replace('.', "-")), "cidr": format!("{cidr_prefix}.0/24"), "gateway": format!("{cidr_prefix}.1")}))
        .await;
    let id = subnet["id"].as_str().unwrap().to_string();
    api.create(&format!("/api/v1/subnets/{id}/ranges"), json!({"start": format!("{cidr_prefix}.100"), "end": format!("{cidr_prefix}.199"), "purpose": "dynamic"}))
        .await;
    id
}

/// The user story of the skeleton: an API change reaches the rack, which acks it.
async fn config_flows_to_the_rack(
    region: &RegionProcess,
    broker_url: &str,
    state: &Path,
    logs: &Path,
) {
    let api = region.client();
    let rack = RackProcess::start("rack-one", broker_url, state, &logs.join("rack.log")).await;
    wait_in_sync(&api, "rack-one").await;

    let started = Instant::now();
    create_site(&api, "10.50.0").await;
    let record = wait_in_sync(&api, "rack-one").await;
    println!(
        "API change to rack ack seen by the API: {:?}",
        started.elapsed()
    );
    let generation = record["config_generation"].as_u64().unwrap();
    assert_eq!(record["applied_generation"].as_u64(), Some(generation));

    let status = rack.status().await;
    assert_eq!(status["applied_generation"].as_u64(), Some(generation));
    assert_eq!(status["subnets"][0]["cidr"], "10.50.0.0/24");
    assert_eq!(status["subnets"][0]["ranges"], 1);
    assert!(
        !record["interfaces"].as_array().unwrap().is_empty(),
        "the hello carries interfaces"
    );

    // A crash: the broker publishes the rack's last will and the region marks it offline.
    rack.kill();
    wait_status(&api, "rack-one", "offline").await;
}

#[tokio::test]
async fn config_reaches_the_rack_over_the_embedded_broker() {
    let logs = log_dir("link_embedded");
    let data = tempfile::tempdir().unwrap();
    let options = RegionOptions::embedded(&data.path().join("region"), &logs);
    let region = RegionProcess::start(&options).await;
    config_flows_to_the_rack(
        &region,
        &options.broker_url(),
        &data.path().join("rack"),
        &logs,
    )
    .await;
}

#[tokio::test]
async fn config_reaches_the_rack_over_mosquitto_with_postgres() {
    let logs = log_dir("link_mosquitto_postgres");
    let data = tempfile::tempdir().unwrap();
    let postgres = Postgres::start();
    let mosquitto = Mosquitto::start();
    let mut options = RegionOptions::embedded(&data.path().join("region"), &logs);
    options.database_url = Some(postgres.create_database("link"));
    options.broker_url = Some(mosquitto.url());
    let region = RegionProcess::start(&options).await;
    config_flows_to_the_rack(&region, &mosquitto.url(), &data.path().join("rack"), &logs).await;
}

#[tokio::test]
async fn a_rack_started_before_the_region_catches_up() {
    let logs = log_dir("link_rack_first");
    let data = tempfile::tempdir().unwrap();
    let options = RegionOptions::embedded(&data.path().join("region"), &logs);
    let rack = RackProcess::start(
        "early",
        &options.broker_url(),
        &data.path().join("rack"),
        &logs.join("rack.log"),
    )
    .await;
    let status = rack.status().await;
    assert_eq!(status["link_connected"], false);
    assert_eq!(status["applied_generation"], Value::Null);

    let region = RegionProcess::start(&options).await;
    let api = region.client();
    create_site(&api, "10.60.0").await;
    let record = wait_in_sync(&api, "early").await;
    let status = rack.status().await;
    assert_eq!(status["link_connected"], true);
    assert_eq!(status["applied_generation"], record["config_generation"]);
}

#[tokio::test]
async fn a_killed_rack_restarts_from_its_snapshot_while_the_region_is_down() {
    let logs = log_dir("link_restart_offline");
    let data = tempfile::tempdir().unwrap();
    let state = data.path().join("rack");
    let options = RegionOptions::embedded(&data.path().join("region"), &logs);
    let region = RegionProcess::start(&options).await;
    let api = region.client();
    let rack = RackProcess::start(
        "sturdy",
        &options.broker_url(),
        &state,
        &logs.join("rack.log"),
    )
    .await;
    create_site(&api, "10.70.0").await;
    let generation = wait_in_sync(&api, "sturdy").await["config_generation"].clone();

    rack.kill();
    region.kill();
    let rack = RackProcess::start(
        "sturdy",
        &options.broker_url(),
        &state,
        &logs.join("rack-again.log"),
    )
    .await;
    let status = rack.status().await;
    assert_eq!(
        status["link_connected"], false,
        "the region (and its broker) is down"
    );
    assert_eq!(
        status["applied_generation"], generation,
        "serves what it served before the crash"
    );
    assert_eq!(status["subnets"][0]["cidr"], "10.70.0.0/24");

    // And when the region is back, the same rack id picks up where it left off.
    let region = RegionProcess::start(&options).await;
    let api = region.client();
    let record = wait_in_sync(&api, "sturdy").await;
    assert_eq!(record["config_generation"], generation);
}

#[tokio::test]
async fn a_rack_whose_heartbeats_stop_is_marked_offline_then_online_again() {
    let logs = log_dir("link_heartbeat");
    let data = tempfile::tempdir().unwrap();
    let mut options = RegionOptions::embedded(&data.path().join("region"), &logs);
    options.heartbeat_timeout_secs = 3;
    let region = RegionProcess::start(&options).await;
    let api = region.client();
    let rack = RackProcess::start(
        "sleepy",
        &options.broker_url(),
        &data.path().join("rack"),
        &logs.join("rack.log"),
    )
    .await;
    wait_in_sync(&api, "sleepy").await;
    // Freeze the rack: its TCP connection stays open (no last will yet) but heartbeats stop.
    rack.signal(libc::SIGSTOP);
    wait_status(&api, "sleepy", "offline").await;
    rack.signal(libc::SIGCONT);
    wait_status(&api, "sleepy", "online").await;
}

#[tokio::test]
async fn junk_on_any_topic_is_dropped_and_counted_never_a_crash() {
    let logs = log_dir("link_junk");
    let data = tempfile::tempdir().unwrap();
    let mosquitto = Mosquitto::start();
    let mut options = RegionOptions::embedded(&data.path().join("region"), &logs);
    options.broker_url = Some(mosquitto.url());
    let region = RegionProcess::start(&options).await;
    let api = region.client();
    let rack = RackProcess::start(
        "target",
        &mosquitto.url(),
        &data.path().join("rack"),
        &logs.join("rack.log"),
    )
    .await;
    wait_in_sync(&api, "target").await;

    let broker = mosquitto.address();
    let mut future_version =
        Envelope::new(MessageId([5; 16]), 0, UpMessage::Status(RackStatus::Online));
    future_version.version = 99;
    let future_version = future_version.encode().unwrap();
    publish_raw(
        broker,
        "edgemetal/v1/rack/target/up/heartbeat",
        b"\xff\xff\xff\xff",
    );
    publish_raw(broker, "edgemetal/v1/rack/target/up/hello", b"");
    publish_raw(
        broker,
        "edgemetal/v1/rack/target/up/status",
        &future_version,
    );
    publish_raw(broker, "edgemetal/v1/rack/target/up/no-such-channel", b"x");
    publish_raw(
        broker,
        "edgemetal/v1/rack/target/down/snapshot",
        b"\x01\x02garbage",
    );

    let metrics = wait_until("the region to count the junk", PATIENCE, || async {
        let metrics = api.metrics().await;
        (metrics.contains("reason=\"malformed\"")
            && metrics.contains("reason=\"unsupported_version\"")
            && metrics.contains("reason=\"bad_topic\""))
        .then_some(metrics)
    })
    .await;
    assert!(
        metrics.contains("edgemetal_region_link_rejected_total"),
        "{metrics}"
    );
    wait_until("the rack to count the junk", PATIENCE, || async {
        rack.metrics()
            .await
            .contains("edgemetal_rack_link_rejected_total{reason=\"malformed\"} 1")
            .then_some(())
    })
    .await;

    // Both still work: a new change still reaches the rack.
    create_site(&api, "10.80.0").await;
    wait_in_sync(&api, "target").await;
    assert_eq!(rack.status().await["subnets"][0]["cidr"], "10.80.0.0/24");
}
