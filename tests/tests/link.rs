//! Region and racks over a real broker: configuration reaches enrolled racks,
//! racks survive restarts and outages, presence is tracked, junk is dropped.

use std::path::Path;
use std::time::Instant;

use edgemetal_tests::mosquitto::{publish_as, ClientLogin};
use edgemetal_tests::process::log_dir;
use edgemetal_tests::site::{
    create_site, rack_login, secured_site, wait_in_sync, wait_status, PATIENCE,
};
use edgemetal_tests::{wait_until, RackProcess, RegionOptions, RegionProcess};
use serde_json::Value;

/// The user story of the skeleton: an API change reaches the rack, which acks it.
async fn config_flows_to_the_rack(region: &RegionProcess, state: &Path, logs: &Path) {
    let api = region.client();
    region.enrol_rack("rack-one", state).await;
    let rack = RackProcess::start(state, &logs.join("rack.log")).await;
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
async fn config_reaches_the_rack_over_the_embedded_tls_broker() {
    let logs = log_dir("link_embedded");
    let data = tempfile::tempdir().unwrap();
    let options = RegionOptions::embedded(&data.path().join("region"), &logs);
    let region = RegionProcess::start(&options).await;
    config_flows_to_the_rack(&region, &data.path().join("rack"), &logs).await;
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

    // The region first: killed second, it could hear the rack's last will
    // and take the rack's subnets over to other racks (a new generation)
    // before it dies, which is not what this test is about.
    region.kill();
    rack.kill();
    let rack = RackProcess::start(&state, &logs.join("rack-again.log")).await;
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

    // When the region is back, the same identity picks up where it left off:
    // its sequence numbers continue above what the region has seen.
    let region = RegionProcess::start(&options).await;
    let api = region.client();
    let record = wait_in_sync(&api, "sturdy").await;
    assert_eq!(record["config_generation"], generation);
    assert!(
        !api.metrics().await.contains("reason=\"replay\""),
        "a restart is not a replay"
    );
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
        (
            "edgemetal/v1/rack/target/up/heartbeat",
            &b"\xff\xff\xff\xff"[..],
        ),
        ("edgemetal/v1/rack/target/up/hello", b""),
        ("edgemetal/v1/rack/target/up/status", b"\x63\x01"),
        ("edgemetal/v1/rack/target/up/no-such-channel", b"x"),
    ] {
        assert!(
            publish_as(broker, &login, topic, payload),
            "publish to {topic}"
        );
    }
    let region_secret =
        std::fs::read_to_string(data.path().join("region/broker-region.secret")).unwrap();
    let region_login = ClientLogin {
        credentials: Some(("edgemetal-region".into(), region_secret)),
        cafile: Some(ca.clone()),
        client_id: Some("edgemetal-region-junk".into()),
        host: None,
    };
    assert!(publish_as(
        broker,
        &region_login,
        "edgemetal/v1/rack/target/down/snapshot",
        b"\x01\x02garbage"
    ));

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

#[tokio::test]
async fn link_keys_rotate_without_downtime_and_master_keys_rotate_at_rest() {
    let logs = log_dir("link_key_rotation");
    let data = tempfile::tempdir().unwrap();
    let state = data.path().join("rack");
    let options = RegionOptions::embedded(&data.path().join("region"), &logs);
    let region = RegionProcess::start(&options).await;
    let api = region.client();
    region.enrol_rack("turning", &state).await;
    let rack = RackProcess::start(&state, &logs.join("rack.log")).await;
    wait_in_sync(&api, "turning").await;

    let (status, body) = api
        .call(
            reqwest::Method::POST,
            "/api/v1/racks/turning/rotate-key",
            None,
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::ACCEPTED, "{body}");
    let identity = wait_until("the region to promote the new key", PATIENCE, || async {
        let identities = api.get("/api/v1/rack-identities").await;
        identities
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["rack_id"] == "turning" && i["key_epoch"] == 2)
            .cloned()
    })
    .await;
    assert!(identity["key_rotated_ms"].as_i64() > identity["enrolled_ms"].as_i64());
    let on_disk: Value =
        serde_json::from_slice(&std::fs::read(state.join("identity.json")).unwrap()).unwrap();
    assert_eq!(on_disk["key_epoch"], 2);

    // The link keeps working under the new key, across a rack restart too.
    create_site(&api, "10.110.0").await;
    wait_in_sync(&api, "turning").await;
    rack.kill();
    let rack = RackProcess::start(&state, &logs.join("rack-again.log")).await;
    create_site(&api, "10.111.0").await;
    wait_in_sync(&api, "turning").await;
    let metrics = api.metrics().await;
    assert!(!metrics.contains("reason=\"forged\""), "{metrics}");
    assert!(!metrics.contains("reason=\"replay\""), "{metrics}");

    // Master key rotation at rest: stop the region, reseal, start again.
    region.kill();
    let before = std::fs::read_to_string(data.path().join("region/master.key")).unwrap();
    options.admin(&["rotate-master-key"]);
    let after = std::fs::read_to_string(data.path().join("region/master.key")).unwrap();
    assert_ne!(before, after);
    let region = RegionProcess::start(&options).await;
    let api = region.client();
    create_site(&api, "10.112.0").await;
    wait_in_sync(&api, "turning").await;
    assert_eq!(rack.status().await["link_connected"], true);
}

#[tokio::test]
async fn a_rack_enrols_over_https_against_the_region_ca_and_refuses_another() {
    use edgemetal_tests::configured::ConfiguredRegion;
    let logs = log_dir("link_https_enrolment");
    let data = tempfile::tempdir().unwrap();
    let options = RegionOptions::embedded(&data.path().join("region"), &logs);
    let http = edgemetal_tests::ports::free_loopback();
    let region = ConfiguredRegion::spawn(
        &options,
        http,
        &[("EDGEMETAL_API_TLS_GENERATED", "1".to_string())],
    );
    let ca = data.path().join("region/pki/ca.crt");
    let url = format!("https://127.0.0.1:{}", http.port());
    let api = wait_until("the region's HTTPS API", PATIENCE, || {
        let (ca, url, key) = (ca.clone(), url.clone(), region.api_key.clone());
        async move {
            let pem = std::fs::read(&ca).ok()?;
            let client = reqwest::Client::builder()
                .use_rustls_tls()
                .tls_built_in_root_certs(false)
                .add_root_certificate(reqwest::Certificate::from_pem(&pem).ok()?)
                .build()
                .ok()?;
            let api = edgemetal_tests::ApiClient::with_http(&url, client, Some(key));
            api.healthz().await.then_some(api)
        }
    })
    .await;
    let token = api
        .create(
            "/api/v1/enrolment-tokens",
            serde_json::json!({"rack_name": "secure"}),
        )
        .await["token"]
        .as_str()
        .unwrap()
        .to_string();

    // Without the region CA the rack refuses the region's certificate (and the token stays unused).
    let state = data.path().join("rack");
    let untrusting = edgemetal_tests::process::enrol_command(&url, &token, &state)
        .output()
        .unwrap();
    assert!(!untrusting.status.success());
    let trusting = edgemetal_tests::process::enrol_command(&url, &token, &state)
        .arg("--region-ca-file")
        .arg(&ca)
        .output()
        .unwrap();
    assert!(
        trusting.status.success(),
        "{}",
        String::from_utf8_lossy(&trusting.stderr)
    );

    let _rack = RackProcess::start(&state, &logs.join("rack.log")).await;
    create_site(&api, "10.120.0").await;
    wait_in_sync(&api, "secure").await;
}
