//! Region and racks over a real broker: configuration reaches enrolled racks,
//! racks survive restarts and outages, presence is tracked, junk is dropped.

use std::path::Path;
use std::time::{Duration, Instant};

use edgemetal_tests::mosquitto::{publish_as, ClientLogin};
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
pub async fn wait_in_sync(api: &ApiClient, rack: &str) -> Value {
    wait_until(&format!("rack {rack} online and in sync"), PATIENCE, || async {
        rack_record(api, rack)
            .await
            .filter(|r| r["status"] == "online" && r["in_sync"] == true)
    })
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

async fn create_site(api: &ApiClient, prefix: &str) -> String {
    let subnet = api
        .create(
            "/api/v1/subnets",
            json!({"name": format!("site-{}", prefix.replace('.', "-")), "cidr": format!("{prefix}.0/24"), "gateway": format!("{prefix}.1")}),
        )
        .await;
    let id = subnet["id"].as_str().unwrap().to_string();
    api.create(
        &format!("/api/v1/subnets/{id}/ranges"),
        json!({"start": format!("{prefix}.100"), "end": format!("{prefix}.199"), "purpose": "dynamic"}),
    )
    .await;
    id
}

/// The user story of the skeleton: an API change reaches the rack, which acks it.
async fn config_flows_to_the_rack(region: &RegionProcess, state: &Path, logs: &Path) {
    let api = region.client();
    region.enrol_rack("rack-one", state).await;
    let rack = RackProcess::start(state, &logs.join("rack.log")).await;
    wait_in_sync(&api, "rack-one").await;

    let started = Instant::now();
    create_site(&api, "10.50.0").await;
    let record = wait_in_sync(&api, "rack-one").await;
    println!("API change to rack ack seen by the API: {:?}", started.elapsed());
    let generation = record["config_generation"].as_u64().unwrap();
    assert_eq!(record["applied_generation"].as_u64(), Some(generation));

    let status = rack.status().await;
    assert_eq!(status["applied_generation"].as_u64(), Some(generation));
    assert_eq!(status["subnets"][0]["cidr"], "10.50.0.0/24");
    assert_eq!(status["subnets"][0]["ranges"], 1);
    assert!(!record["interfaces"].as_array().unwrap().is_empty(), "the hello carries interfaces");

    // A crash: the broker publishes the rack's last will and the region marks it offline.
    rack.kill();
    wait_status(&api, "rack-one", "offline").await;
}

#[tokio::test]
async fn config_reaches_the_rack_over_the_embedded_tls_broker() {
    let logs = log_dir("link_embedded");
    let data = tempfile::tempdir().unwrap();
    let options = RegionOptions::embedded(&data.path().join("region"), &logs);
    let region = RegionProcess::start(&options).await;
    config_flows_to_the_rack(&region, &data.path().join("rack"), &logs).await;
}

/// Region, PostgreSQL and a Mosquitto with TLS, passwords and ACLs the region maintains.
pub struct SecuredSite {
    pub mosquitto: Mosquitto,
    pub region: RegionProcess,
    pub options: RegionOptions,
    pub _postgres: Option<Postgres>,
}

pub async fn secured_site(data: &Path, logs: &Path, postgres: bool) -> SecuredSite {
    let mut options = RegionOptions::embedded(&data.join("region"), logs);
    let pki_ca = options.admin(&["init-pki"]);
    let pki_dir = Path::new(&pki_ca).parent().unwrap().to_path_buf();
    let (mosquitto, files) = Mosquitto::start_secured(&pki_dir);
    let pg = postgres.then(Postgres::start);
    if let Some(pg) = &pg {
        options.database_url = Some(pg.create_database("site"));
    }
    options.broker_url = Some(mosquitto.tls_url());
    options.env = vec![
        ("EDGEMETAL_MOSQUITTO_PASSWORD_FILE".into(), files.password_file.display().to_string()),
        ("EDGEMETAL_MOSQUITTO_ACL_FILE".into(), files.acl_file.display().to_string()),
        ("EDGEMETAL_MOSQUITTO_PID_FILE".into(), files.pid_file.display().to_string()),
    ];
    let region = RegionProcess::start(&options).await;
    SecuredSite {
        mosquitto,
        region,
        options,
        _postgres: pg,
    }
}

#[tokio::test]
async fn config_reaches_the_rack_over_a_secured_mosquitto_with_postgres() {
    let logs = log_dir("link_mosquitto_postgres");
    let data = tempfile::tempdir().unwrap();
    let site = secured_site(data.path(), &logs, true).await;
    config_flows_to_the_rack(&site.region, &data.path().join("rack"), &logs).await;
}

#[tokio::test]
async fn a_rack_started_before_the_region_catches_up() {
    let logs = log_dir("link_rack_first");
    let data = tempfile::tempdir().unwrap();
    let options = RegionOptions::embedded(&data.path().join("region"), &logs);
    let state = data.path().join("rack");
    // Enrol, then take the region (and its embedded broker) down before the rack starts.
    let region = RegionProcess::start(&options).await;
    region.enrol_rack("early", &state).await;
    region.kill();

    let rack = RackProcess::start(&state, &logs.join("rack.log")).await;
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
    region.enrol_rack("sturdy", &state).await;
    let rack = RackProcess::start(&state, &logs.join("rack.log")).await;
    create_site(&api, "10.70.0").await;
    let generation = wait_in_sync(&api, "sturdy").await["config_generation"].clone();

    rack.kill();
    region.kill();
    let rack = RackProcess::start(&state, &logs.join("rack-again.log")).await;
    let status = rack.status().await;
    assert_eq!(status["link_connected"], false, "the region (and its broker) is down");
    assert_eq!(status["applied_generation"], generation, "serves what it served before the crash");
    assert_eq!(status["subnets"][0]["cidr"], "10.70.0.0/24");

    // When the region is back, the same identity picks up where it left off:
    // its sequence numbers continue above what the region has seen.
    let region = RegionProcess::start(&options).await;
    let api = region.client();
    let record = wait_in_sync(&api, "sturdy").await;
    assert_eq!(record["config_generation"], generation);
    assert!(!api.metrics().await.contains("reason=\"replay\""), "a restart is not a replay");
}

#[tokio::test]
async fn a_rack_whose_heartbeats_stop_is_marked_offline_then_online_again() {
    let logs = log_dir("link_heartbeat");
    let data = tempfile::tempdir().unwrap();
    let mut options = RegionOptions::embedded(&data.path().join("region"), &logs);
    options.heartbeat_timeout_secs = 3;
    let region = RegionProcess::start(&options).await;
    let api = region.client();
    region.enrol_rack("sleepy", &data.path().join("rack")).await;
    let rack = RackProcess::start(&data.path().join("rack"), &logs.join("rack.log")).await;
    wait_in_sync(&api, "sleepy").await;
    // Freeze the rack: its TCP connection stays open (no last will yet) but heartbeats stop.
    rack.signal(libc::SIGSTOP);
    wait_status(&api, "sleepy", "offline").await;
    rack.signal(libc::SIGCONT);
    wait_status(&api, "sleepy", "online").await;
}

/// A rack's broker login as enrolment gave it.
pub fn rack_login(state: &Path, ca: &Path) -> (ClientLogin, Value) {
    let identity: Value =
        serde_json::from_slice(&std::fs::read(state.join("identity.json")).unwrap()).unwrap();
    let user = identity["broker_username"].as_str().unwrap().to_string();
    let login = ClientLogin {
        credentials: Some((user.clone(), identity["broker_password"].as_str().unwrap().to_string())),
        cafile: Some(ca.to_path_buf()),
        client_id: Some(format!("edgemetal-rack-{user}")),
    };
    (login, identity)
}

#[tokio::test]
async fn junk_on_any_topic_is_dropped_and_counted_never_a_crash() {
    let logs = log_dir("link_junk");
    let data = tempfile::tempdir().unwrap();
    let site = secured_site(data.path(), &logs, false).await;
    let api = site.region.client();
    let state = data.path().join("rack");
    site.region.enrol_rack("target", &state).await;
    let rack = RackProcess::start(&state, &logs.join("rack.log")).await;
    wait_in_sync(&api, "target").await;

    let ca = data.path().join("region/pki/ca.crt");
    let (mut login, _) = rack_login(&state, &ca);
    login.client_id = Some("junk-sender".into());
    let broker = site.mosquitto.address();
    for (topic, payload) in [
        ("edgemetal/v1/rack/target/up/heartbeat", &b"\xff\xff\xff\xff"[..]),
        ("edgemetal/v1/rack/target/up/hello", b""),
        ("edgemetal/v1/rack/target/up/status", b"\x63\x01"),
        ("edgemetal/v1/rack/target/up/no-such-channel", b"x"),
    ] {
        assert!(publish_as(broker, &login, topic, payload), "publish to {topic}");
    }
    let region_secret = std::fs::read_to_string(data.path().join("region/broker-region.secret")).unwrap();
    let region_login = ClientLogin {
        credentials: Some(("edgemetal-region".into(), region_secret)),
        cafile: Some(ca.clone()),
        client_id: Some("edgemetal-region-junk".into()),
    };
    assert!(publish_as(broker, &region_login, "edgemetal/v1/rack/target/down/snapshot", b"\x01\x02garbage"));

    wait_until("the region to count the junk", PATIENCE, || async {
        let metrics = api.metrics().await;
        (metrics.contains("reason=\"malformed\"") && metrics.contains("reason=\"bad_topic\""))
            .then_some(())
    })
    .await;
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
