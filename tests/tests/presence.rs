//! Presence that a stolen rack cannot forge, on the default deployment (the
//! region's embedded broker), tried as an attacker holding rack A's
//! credentials would try it against rack B:
//! - A's credentials cannot read B's topics nor publish on them: the
//!   embedded broker enforces the same per-rack ACL as Mosquitto's file;
//! - B's sealed last will, captured from the broker after a real crash and
//!   replayed over and over once B is back, changes nothing: B stays online
//!   and the configuration generation does not move.
//! - A clean stop of the region logs no error.

use std::path::Path;

use edgemetal_tests::metrics::labelled;
use edgemetal_tests::mosquitto::{capture, publish_as, subscribe_for, ClientLogin};
use edgemetal_tests::process::log_dir;
use edgemetal_tests::site::PATIENCE;
use edgemetal_tests::site::{create_site, rack_login, rack_record, wait_in_sync, wait_status};
use edgemetal_tests::{wait_until, ApiClient, RackProcess, RegionOptions, RegionProcess};

const B_STATUS: &str = "edgemetal/v1/rack/rack-b/up/status";

/// Who the broker lets in as the region (an insider's view of the broker).
fn region_login(region_dir: &Path) -> ClientLogin {
    ClientLogin {
        credentials: Some((
            "edgemetal-region".into(),
            std::fs::read_to_string(region_dir.join("broker-region.secret")).unwrap(),
        )),
        cafile: Some(region_dir.join("pki/ca.crt")),
        client_id: Some("edgemetal-region-eavesdropper".into()),
        host: Some("localhost".into()),
    }
}

async fn rejected(api: &ApiClient, reason: &str) -> u64 {
    labelled(
        &api.metrics().await,
        "edgemetal_region_link_rejected_total",
        &format!("reason=\"{reason}\""),
    )
}

async fn generation(api: &ApiClient) -> serde_json::Value {
    rack_record(api, "rack-b").await.unwrap()["config_generation"].clone()
}

#[tokio::test]
async fn a_stolen_racks_credentials_cannot_read_other_racks_nor_forge_their_presence() {
    let logs = log_dir("presence_attacks");
    let data = tempfile::tempdir().unwrap();
    let region_dir = data.path().join("region");
    let options = RegionOptions::embedded(&region_dir, &logs);
    let region = RegionProcess::start(&options).await;
    let api = region.client();
    let broker = options.embedded_broker;
    let (a, b) = (data.path().join("rack-a"), data.path().join("rack-b"));
    region.enrol_rack("rack-a", &a).await;
    region.enrol_rack("rack-b", &b).await;
    let _rack_a = RackProcess::start(&a, &logs.join("rack-a.log")).await;
    let rack_b = RackProcess::start(&b, &logs.join("rack-b.log")).await;
    create_site(&api, "10.91.0").await;
    wait_in_sync(&api, "rack-a").await;
    wait_in_sync(&api, "rack-b").await;

    // 1. A's credentials (as stolen from its disk) against B's subtree: the
    //    broker ends the connection, nothing of B's arrives.
    let (mut stolen, _) = rack_login(&a, &region_dir.join("pki/ca.crt"));
    stolen.host = Some("localhost".into());
    let seen = subscribe_for(broker, &stolen, "edgemetal/v1/rack/rack-b/#", 2).unwrap_or_default();
    assert!(
        seen.is_empty(),
        "A read B's traffic: {}",
        String::from_utf8_lossy(&seen)
    );
    let everything =
        subscribe_for(broker, &stolen, "edgemetal/v1/rack/+/up/#", 2).unwrap_or_default();
    assert!(everything.is_empty(), "A read every rack's upward traffic");
    assert!(
        !publish_as(broker, &stolen, B_STATUS, b"junk"),
        "A published on B's topic"
    );
    // Its own subtree still works (the ACL is not a blanket refusal).
    assert!(publish_as(
        broker,
        &stolen,
        "edgemetal/v1/rack/rack-a/up/status",
        b"junk"
    ));
    // The session takeover above knocked the real A off; it comes back.
    wait_in_sync(&api, "rack-a").await;

    // 2. B crashes: its will is taken, once, and B is offline.
    rack_b.kill();
    wait_status(&api, "rack-b", "offline").await;
    let eavesdropper = region_login(&region_dir);
    let will = capture(broker, &eavesdropper, B_STATUS);
    let rack_b = RackProcess::start(&b, &logs.join("rack-b-again.log")).await;
    // B's return is itself a presence change: let the region's sweep see
    // both racks online (it bumps the generation then) before measuring.
    wait_until(
        "the region to count both racks online",
        PATIENCE,
        || async {
            let metrics = api.metrics().await;
            (edgemetal_tests::metrics::counter(&metrics, "edgemetal_region_racks_online") == 2)
                .then_some(())
        },
    )
    .await;
    wait_in_sync(&api, "rack-b").await;
    let before = generation(&api).await;
    let stale_before = rejected(&api, "stale_will").await;

    // 3. The captured will replayed, again and again, by someone on the
    //    broker (A's credentials cannot even publish it there).
    assert!(!publish_as(broker, &stolen, B_STATUS, &will));
    for _ in 0..5 {
        assert!(publish_as(broker, &eavesdropper, B_STATUS, &will));
    }
    wait_until("the region to drop all five replays", PATIENCE, || async {
        (rejected(&api, "stale_will").await >= stale_before + 5).then_some(())
    })
    .await;
    let record = rack_record(&api, "rack-b").await.unwrap();
    assert_eq!(record["status"], "online", "{record}");
    assert_eq!(generation(&api).await, before, "presence must not flip");

    // A clean stop with racks connected logs no error, the broker's included
    // (the region leaves it with a DISCONNECT), except the embedded broker's
    // own line as the process ends under it: rumqttd has no way to stop.
    let logged = std::fs::read_to_string(&options.log).unwrap().len();
    assert!(region.stop().success());
    let log = std::fs::read_to_string(&options.log).unwrap();
    let errors: Vec<&str> = log[logged..]
        .lines()
        .filter(|line| line.contains("ERROR"))
        .filter(|line| !(line.contains("rumqttd::server::broker: router-drop")))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    assert!(log[logged..].contains("region stopped"));
    drop(rack_b);
    // Logs written to files carry no terminal colour codes.
    for file in [options.log.clone(), logs.join("rack-a.log")] {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            !text.is_empty() && !text.contains('\u{1b}'),
            "{}",
            file.display()
        );
    }
}
