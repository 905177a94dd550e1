//! Attacks on the link, each asserting the refusal: stolen or misused rack
//! credentials, revoked racks, replays, tampering, token reuse, wrong CAs and
//! plaintext, and a subscriber to everything.

use std::path::{Path, PathBuf};
use std::process::Command;

use edgemetal_protocol::seal::{self, FrameHeader, LinkSecret};
use edgemetal_protocol::{
    Direction, Envelope, MessageId, RackId, RackStatus, UpMessage, PROTOCOL_VERSION,
};
use edgemetal_tests::mosquitto::{capture, publish_as, subscribe_for, ClientLogin};
use edgemetal_tests::process::{enrol_command, log_dir};
use edgemetal_tests::site::{
    create_site, rack_login, secured_site, wait_in_sync, wait_status, SecuredSite, PATIENCE,
};
use edgemetal_tests::{wait_until, ApiClient, RackProcess, RegionOptions, RegionProcess};
use serde_json::json;

fn region_login(data: &Path, client_id: &str) -> ClientLogin {
    ClientLogin {
        credentials: Some((
            "edgemetal-region".into(),
            std::fs::read_to_string(data.join("region/broker-region.secret")).unwrap(),
        )),
        cafile: Some(data.join("region/pki/ca.crt")),
        client_id: Some(client_id.into()),
        host: None,
    }
}

/// Counter value of `edgemetal_region_link_rejected_total{reason=...}`.
async fn rejected(api: &ApiClient, reason: &str) -> u64 {
    let needle = format!("edgemetal_region_link_rejected_total{{reason=\"{reason}\"}} ");
    api.metrics()
        .await
        .lines()
        .find_map(|line| line.strip_prefix(&needle).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

async fn wait_rejected(api: &ApiClient, reason: &str, above: u64) {
    wait_until(
        &format!("the region to count a {reason}"),
        PATIENCE,
        || async { (rejected(api, reason).await > above).then_some(()) },
    )
    .await
}

/// Two enrolled racks, `rack-a` and `rack-b`, online on a secured site.
async fn two_racks(
    data: &Path,
    logs: &Path,
) -> (SecuredSite, RackProcess, RackProcess, PathBuf, PathBuf) {
    let site = secured_site(data, logs, false).await;
    let (a, b) = (data.join("rack-a"), data.join("rack-b"));
    site.region.enrol_rack("rack-a", &a).await;
    site.region.enrol_rack("rack-b", &b).await;
    let rack_a = RackProcess::start(&a, &logs.join("rack-a.log")).await;
    let rack_b = RackProcess::start(&b, &logs.join("rack-b.log")).await;
    let api = site.region.client();
    create_site(&api, "10.90.0").await;
    wait_in_sync(&api, "rack-a").await;
    wait_in_sync(&api, "rack-b").await;
    (site, rack_a, rack_b, a, b)
}

fn link_secret(identity: &serde_json::Value) -> LinkSecret {
    let bytes = hex::decode(identity["link_secret_hex"].as_str().unwrap()).unwrap();
    LinkSecret(bytes.try_into().unwrap())
}

fn sealed_status(secret: &LinkSecret, claimed_rack: &str, sequence: u64) -> Vec<u8> {
    let plain = Envelope::new(MessageId([9; 16]), 0, UpMessage::Status(RackStatus::Online))
        .encode()
        .unwrap();
    let header = FrameHeader {
        version: PROTOCOL_VERSION,
        rack_id: RackId::new(claimed_rack).unwrap(),
        direction: Direction::Up,
        key_epoch: 1,
        sequence,
    };
    seal::seal(secret, header, [7; 16], &plain).unwrap()
}

#[tokio::test]
async fn a_rack_cannot_speak_for_another_rack() {
    let logs = log_dir("attack_impersonation");
    let data = tempfile::tempdir().unwrap();
    let (site, _a, _b, a_state, _) = two_racks(data.path(), &logs).await;
    let api = site.region.client();
    let broker = site.mosquitto.address();
    let ca = data.path().join("region/pki/ca.crt");
    let (mut login_a, identity_a) = rack_login(&a_state, &ca);
    // Mosquitto's ACL keys on the user name; another client id keeps the real rack connected.
    login_a.client_id = Some("rack-a-attacker".into());
    let secret_a = link_secret(&identity_a);

    // 1. Rack A's key, claiming to be B, on A's own topic: the region's rack check refuses it.
    let before = rejected(&api, "rack_mismatch").await;
    let forged = sealed_status(&secret_a, "rack-b", 1 << 40);
    assert!(publish_as(
        broker,
        &login_a,
        "edgemetal/v1/rack/rack-a/up/status",
        &forged
    ));
    wait_rejected(&api, "rack_mismatch", before).await;

    // 2. The same onto B's topic: Mosquitto's ACL drops it before the region sees it.
    //    A marker sent right after (junk on A's own topic) proves the region has
    //    processed everything A sent, so a missing count is a real refusal.
    let mismatches = rejected(&api, "rack_mismatch").await;
    let forged_b = rejected(&api, "forged").await;
    let malformed = rejected(&api, "malformed").await;
    assert!(publish_as(
        broker,
        &login_a,
        "edgemetal/v1/rack/rack-b/up/status",
        &forged
    ));
    assert!(publish_as(
        broker,
        &login_a,
        "edgemetal/v1/rack/rack-a/up/status",
        b"marker"
    ));
    wait_rejected(&api, "malformed", malformed).await;
    assert_eq!(
        rejected(&api, "rack_mismatch").await,
        mismatches,
        "the ACL must drop A's publish on B's topic"
    );
    assert_eq!(rejected(&api, "forged").await, forged_b);

    // 3. Rack A's credentials cannot read B's down topic either (nothing arrives, not even sealed).
    let seen =
        subscribe_for(broker, &login_a, "edgemetal/v1/rack/rack-b/#", 2).expect("A may log in");
    assert!(
        seen.is_empty(),
        "rack A read rack B's traffic: {}",
        String::from_utf8_lossy(&seen)
    );

    // 4. On the embedded broker (no ACLs), A's credentials with B's client id are refused at login.
    let logs2 = log_dir("attack_impersonation_embedded");
    let data2 = tempfile::tempdir().unwrap();
    let options = RegionOptions::embedded(&data2.path().join("region"), &logs2);
    let region = RegionProcess::start(&options).await;
    let state = data2.path().join("rack-a");
    region.enrol_rack("rack-a", &state).await;
    let (mut login, _) = rack_login(&state, &data2.path().join("region/pki/ca.crt"));
    login.host = Some("localhost".into());
    assert!(
        publish_as(
            options.embedded_broker,
            &login,
            "edgemetal/v1/rack/rack-a/up/status",
            b"x"
        ),
        "own id works"
    );
    login.client_id = Some("edgemetal-rack-rack-b".into());
    assert!(!publish_as(
        options.embedded_broker,
        &login,
        "edgemetal/v1/rack/rack-b/up/status",
        b"x"
    ));
}

#[tokio::test]
async fn a_revoked_rack_is_refused_by_the_broker_and_the_region() {
    let logs = log_dir("attack_revoked");
    let data = tempfile::tempdir().unwrap();
    let (site, rack_a, _b, a_state, _) = two_racks(data.path(), &logs).await;
    let api = site.region.client();
    let ca = data.path().join("region/pki/ca.crt");
    let (mut login_a, _) = rack_login(&a_state, &ca);
    login_a.client_id = Some("rack-a-probe".into());
    let broker = site.mosquitto.address();
    assert!(publish_as(
        broker,
        &login_a,
        "edgemetal/v1/rack/rack-a/up/status",
        b"x"
    ));

    let (status, _) = api
        .call(reqwest::Method::POST, "/api/v1/racks/rack-a/revoke", None)
        .await;
    assert_eq!(status, reqwest::StatusCode::NO_CONTENT);
    // Mosquitto reloads the regenerated password file: A's login stops working.
    wait_until("Mosquitto to refuse rack A", PATIENCE, || async {
        (!publish_as(broker, &login_a, "edgemetal/v1/rack/rack-a/up/status", b"x")).then_some(())
    })
    .await;
    // A reconnecting rack A gets nowhere, and the region marks it offline.
    rack_a.kill();
    let _again = RackProcess::start(&a_state, &logs.join("rack-a-again.log")).await;
    wait_status(&api, "rack-a", "offline").await;
    let identities = api.get("/api/v1/rack-identities").await;
    let a = identities
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["rack_id"] == "rack-a")
        .unwrap();
    assert!(a["revoked_ms"].is_i64());
    // B is unaffected.
    create_site(&api, "10.91.0").await;
    wait_in_sync(&api, "rack-b").await;
}

/// Captures one frame on `topic` (hex payload), as the broker carries it.
#[tokio::test]
async fn replays_and_tampered_frames_are_rejected_in_both_directions() {
    let logs = log_dir("attack_replay");
    let data = tempfile::tempdir().unwrap();
    let (site, rack_a, _b, a_state, _) = two_racks(data.path(), &logs).await;
    let api = site.region.client();
    let broker = site.mosquitto.address();
    let ca = data.path().join("region/pki/ca.crt");
    let (mut login_a, _) = rack_login(&a_state, &ca);
    login_a.client_id = Some("rack-a-replayer".into());
    let eavesdropper = region_login(data.path(), "edgemetal-region-eavesdropper");

    // Upward: capture a heartbeat, replay it as A would, then flip one bit.
    let heartbeat = capture(
        broker,
        &eavesdropper,
        "edgemetal/v1/rack/rack-a/up/heartbeat",
    );
    let replays = rejected(&api, "replay").await;
    assert!(publish_as(
        broker,
        &login_a,
        "edgemetal/v1/rack/rack-a/up/heartbeat",
        &heartbeat
    ));
    wait_rejected(&api, "replay", replays).await;
    let mut flipped = heartbeat.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x10;
    let forged = rejected(&api, "forged").await;
    assert!(publish_as(
        broker,
        &login_a,
        "edgemetal/v1/rack/rack-a/up/heartbeat",
        &flipped
    ));
    wait_rejected(&api, "forged", forged).await;

    // Downward: the retained snapshot, replayed live to the rack, is refused.
    let snapshot = capture(
        broker,
        &eavesdropper,
        "edgemetal/v1/rack/rack-a/down/snapshot",
    );
    assert!(publish_as(
        broker,
        &eavesdropper,
        "edgemetal/v1/rack/rack-a/down/snapshot",
        &snapshot
    ));
    wait_until(
        "the rack to refuse the replayed snapshot",
        PATIENCE,
        || async {
            rack_a
                .metrics()
                .await
                .contains("edgemetal_rack_link_rejected_total{reason=\"replay\"} 1")
                .then_some(())
        },
    )
    .await;
    // A tampered snapshot is refused too, and the rack keeps serving what it had.
    let generation = rack_a.status().await["applied_generation"].clone();
    let mut tampered = snapshot.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0x01;
    assert!(publish_as(
        broker,
        &eavesdropper,
        "edgemetal/v1/rack/rack-a/down/snapshot",
        &tampered
    ));
    wait_until(
        "the rack to refuse the tampered snapshot",
        PATIENCE,
        || async {
            let metrics = rack_a.metrics().await;
            (metrics.contains("reason=\"forged\"") || metrics.contains("reason=\"malformed\""))
                .then_some(())
        },
    )
    .await;
    assert_eq!(rack_a.status().await["applied_generation"], generation);
}

#[tokio::test]
async fn a_subscriber_to_everything_learns_no_plaintext() {
    let logs = log_dir("attack_eavesdrop");
    let data = tempfile::tempdir().unwrap();
    let (site, _a, _b, a_state, _) = two_racks(data.path(), &logs).await;
    let api = site.region.client();
    let broker = site.mosquitto.address();
    let ca = data.path().join("region/pki/ca.crt");
    // A distinctive name to look for in everything the broker carries.
    let subnet = api
        .create("/api/v1/subnets", json!({"name": "plaintext-canary-site", "cidr": "10.99.0.0/24", "domain": "canary.internal"}))
        .await;
    assert!(subnet["id"].is_string());
    wait_in_sync(&api, "rack-a").await;

    let (login_a, _) = rack_login(&a_state, &ca);
    let mut sub_a = login_a.clone();
    sub_a.client_id = Some("rack-a-listener".into());
    let seen_by_rack = subscribe_for(broker, &sub_a, "#", 3).expect("rack A may subscribe");
    let seen_by_broker_admin = subscribe_for(
        broker,
        &region_login(data.path(), "edgemetal-region-listener"),
        "#",
        3,
    )
    .expect("region credentials may subscribe");
    assert!(
        !seen_by_broker_admin.is_empty(),
        "the retained snapshots must be on the broker"
    );
    for (who, seen) in [
        ("rack A", &seen_by_rack),
        ("the region's broker user", &seen_by_broker_admin),
    ] {
        // (Rack ids and topics are in clear by design: the broker routes on them.)
        for canary in [
            &b"plaintext-canary-site"[..],
            b"canary.internal",
            b"10.99.0.0",
        ] {
            assert!(
                !seen.windows(canary.len()).any(|w| w == canary),
                "{who} saw plaintext {:?}",
                String::from_utf8_lossy(canary)
            );
        }
    }
    // Rack A's listener saw only its own subtree.
    let text = String::from_utf8_lossy(&seen_by_rack);
    assert!(!text.contains("rack/rack-b/"), "rack A saw rack B's topics");
}

#[tokio::test]
async fn used_expired_and_unknown_enrolment_tokens_are_refused_and_create_nothing() {
    let logs = log_dir("attack_tokens");
    let data = tempfile::tempdir().unwrap();
    let options = RegionOptions::embedded(&data.path().join("region"), &logs);
    let region = RegionProcess::start(&options).await;
    let api = region.client();
    let token = region.enrolment_token("once").await;
    let ok = enrol_command(&region.url(), &token, &data.path().join("first"))
        .output()
        .unwrap();
    assert!(ok.status.success());
    let reused = enrol_command(&region.url(), &token, &data.path().join("second"))
        .output()
        .unwrap();
    assert!(!reused.status.success());
    assert!(
        String::from_utf8_lossy(&reused.stderr).contains("already used"),
        "{}",
        String::from_utf8_lossy(&reused.stderr)
    );

    let created = api
        .create(
            "/api/v1/enrolment-tokens",
            json!({"rack_name": "late", "expires_in_secs": 1}),
        )
        .await;
    let expired = created["token"].as_str().unwrap().to_string();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let late = enrol_command(&region.url(), &expired, &data.path().join("late"))
        .output()
        .unwrap();
    assert!(!late.status.success());
    assert!(
        String::from_utf8_lossy(&late.stderr).contains("expired"),
        "{}",
        String::from_utf8_lossy(&late.stderr)
    );

    let unknown = enrol_command(&region.url(), "emt_000000000000_00", &data.path().join("x"))
        .output()
        .unwrap();
    assert!(!unknown.status.success());

    let identities = api.get("/api/v1/rack-identities").await;
    assert_eq!(
        identities.as_array().unwrap().len(),
        1,
        "nothing half-created: {identities}"
    );
    assert!(!data.path().join("second/identity.json").exists());
    assert!(!data.path().join("late/identity.json").exists());
}

#[tokio::test]
async fn a_wrong_ca_and_plaintext_are_refused_by_the_tls_brokers() {
    let logs = log_dir("attack_tls");
    let data = tempfile::tempdir().unwrap();
    let options = RegionOptions::embedded(&data.path().join("region"), &logs);
    let region = RegionProcess::start(&options).await;
    let state = data.path().join("rack");
    region.enrol_rack("tls", &state).await;
    let right_ca = data.path().join("region/pki/ca.crt");
    // Another region's CA: a well-formed certificate the broker's does not chain to.
    let other = RegionOptions::embedded(&data.path().join("other"), &logs);
    let wrong_ca = PathBuf::from(other.admin(&["init-pki"]));
    let (mut login, _) = rack_login(&state, &right_ca);
    login.host = Some("localhost".into());
    let broker = options.embedded_broker;
    assert!(
        publish_as(broker, &login, "edgemetal/v1/rack/tls/up/status", b"x"),
        "the right CA works"
    );
    let mut wrong = login.clone();
    wrong.cafile = Some(wrong_ca);
    assert!(
        !publish_as(broker, &wrong, "edgemetal/v1/rack/tls/up/status", b"x"),
        "a wrong CA must fail"
    );
    let mut plain = login.clone();
    plain.cafile = None;
    assert!(
        !publish_as(broker, &plain, "edgemetal/v1/rack/tls/up/status", b"x"),
        "plaintext must fail"
    );

    // The rack itself refuses a broker it cannot verify, and a plaintext URL.
    let mut identity: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("identity.json")).unwrap()).unwrap();
    identity["broker_url"] = json!(format!("mqtt://{broker}"));
    std::fs::write(
        state.join("identity.json"),
        serde_json::to_vec(&identity).unwrap(),
    )
    .unwrap();
    let refused = Command::new(edgemetal_tests::process::binary("edgemetal-rack"))
        .arg("run")
        .arg("--state-dir")
        .arg(&state)
        .args(["--status-listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("plaintext"));
}

#[tokio::test]
async fn no_secret_appears_in_any_log() {
    let logs = log_dir("attack_secrets_in_logs");
    let data = tempfile::tempdir().unwrap();
    let (site, rack_a, _b, a_state, b_state) = two_racks(data.path(), &logs).await;
    let api = site.region.client();
    let token = site.region.enrolment_token("unused").await;
    // Exercise the error paths too: a refused enrolment and a revocation.
    let _ = enrol_command(
        &site.region.url(),
        &format!("{token}x"),
        &data.path().join("bad"),
    )
    .output();
    let _ = api
        .call(reqwest::Method::POST, "/api/v1/racks/rack-b/revoke", None)
        .await;
    drop(rack_a);
    let mut secrets = vec![site.region.api_key.clone(), token.clone()];
    for state in [&a_state, &b_state] {
        let identity: serde_json::Value =
            serde_json::from_slice(&std::fs::read(state.join("identity.json")).unwrap()).unwrap();
        secrets.push(identity["broker_password"].as_str().unwrap().to_string());
        secrets.push(identity["link_secret_hex"].as_str().unwrap().to_string());
    }
    secrets.push(std::fs::read_to_string(data.path().join("region/broker-region.secret")).unwrap());
    secrets.push(std::fs::read_to_string(data.path().join("region/master.key")).unwrap());
    let token_secret = token.rsplit('_').next().unwrap().to_string();
    secrets.push(token_secret);
    let metrics = api.metrics().await;
    for entry in std::fs::read_dir(&logs).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        for secret in &secrets {
            assert!(
                !text.contains(secret.trim()),
                "a secret appears in {}",
                path.display()
            );
            assert!(
                !metrics.contains(secret.trim()),
                "a secret appears in the metrics"
            );
        }
    }
}
