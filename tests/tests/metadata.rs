//! The rack's metadata service with real clients (busybox udhcpc for the
//! lease, curl as the machine): a machine reads only its own metadata, by
//! the address the rack leased it; posting results needs its token; with
//! the region down, known metadata is still served and results are queued
//! on disk (surviving a rack restart) and delivered when the region is back.

use std::path::Path;

use edgemetal_tests::dhcp_site::{field, start_rack_in, start_rack_in_with, udhcpc, udhcpc_script};
use edgemetal_tests::lan::Lan;
use edgemetal_tests::netns::Netns;
use edgemetal_tests::process::log_dir;
use edgemetal_tests::site::{rack_record, PATIENCE};
use edgemetal_tests::{wait_until, RegionOptions, RegionProcess};
use reqwest::{Method, StatusCode};
use serde_json::json;

const MACHINE_MAC: &str = "02:00:00:00:89:01";
const METADATA: &str = "http://10.89.0.1:5248/metadata/v1/meta-data";
const RESULTS: &str = "http://10.89.0.1:5248/metadata/v1/results";

/// Runs curl in `ns`; returns the HTTP status and the body.
fn curl(ns: &Netns, args: &[&str]) -> (u16, String) {
    let output = ns
        .command("curl")
        .args(["-s", "-m", "10", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// The value of `key=` in the metadata's lines.
fn value<'a>(metadata: &'a str, key: &str) -> &'a str {
    metadata
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{key}=")))
        .unwrap_or("")
}

/// Waits until the rack is back online and announces `version`.
async fn wait_for_rack_version(api: &edgemetal_tests::ApiClient, version: u16) {
    wait_until(
        &format!("the rack to be back, speaking v{version}"),
        PATIENCE,
        || async {
            let rack = rack_record(api, "meta-rack").await?;
            (rack["protocol_version"] == version && rack["status"] == "online").then_some(())
        },
    )
    .await;
}

/// A results archive as the agent makes it, from this host's /proc.
fn results_archive(dir: &Path) -> std::path::PathBuf {
    results_archive_with(dir, &[])
}

/// The same with further outputs (name, content).
fn results_archive_with(dir: &Path, more: &[(&str, &str)]) -> std::path::PathBuf {
    let outputs = dir.join("outputs");
    std::fs::create_dir_all(&outputs).unwrap();
    std::fs::copy("/proc/cpuinfo", outputs.join("cpuinfo")).unwrap();
    std::fs::copy("/proc/meminfo", outputs.join("meminfo")).unwrap();
    std::fs::write(
        outputs.join("block"),
        "name=vda\tsize_bytes=2147483648\tserial=META01\tmodel=\trotational=1\tremovable=0\n",
    )
    .unwrap();
    std::fs::write(
        outputs.join("net"),
        format!(
            "name=eth0\tmac={MACHINE_MAC}\toperstate=up\tcarrier=1\tspeed=1000\tdriver=e1000\n"
        ),
    )
    .unwrap();
    std::fs::write(outputs.join("firmware"), "uefi\n").unwrap();
    for (name, content) in more {
        std::fs::write(outputs.join(name), content).unwrap();
    }
    let archive = dir.join("results.tar");
    let status = std::process::Command::new("tar")
        .arg("-cf")
        .arg(&archive)
        .arg("-C")
        .arg(&outputs)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    archive
}

#[tokio::test]
async fn machines_read_their_own_metadata_and_results_survive_a_cut_link() {
    let logs = log_dir("metadata");
    let data = tempfile::tempdir().unwrap();
    let options = RegionOptions::embedded(&data.path().join("region"), &logs);
    let region = RegionProcess::start(&options).await;
    let api = region.client();
    let subnet = api
        .create(
            "/api/v1/subnets",
            json!({"name": "meta-site", "cidr": "10.89.0.0/24", "gateway": "10.89.0.1",
                   "lease_time_secs": 600}),
        )
        .await;
    api.create(
        &format!("/api/v1/subnets/{}/ranges", subnet["id"].as_str().unwrap()),
        json!({"start": "10.89.0.100", "end": "10.89.0.150", "purpose": "dynamic"}),
    )
    .await;
    let machine = api
        .create(
            "/api/v1/machines",
            json!({"mac": MACHINE_MAC, "hostname": "meta-node", "architecture": "amd64"}),
        )
        .await;
    let id = machine["id"].as_str().unwrap().to_string();
    // No BMC: commissioning waits for the machine to be booted by hand.
    let (status, body) = api
        .call(
            Method::POST,
            &format!("/api/v1/machines/{id}/actions/commission"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The rack, the machine (leased by the rack) and a stranger with a static address.
    let state = data.path().join("rack");
    let lan = Lan::enrol(
        &region,
        &options,
        "meta-rack",
        &state,
        ("02:00:00:00:89:0a", "10.89.0.1/24"),
    )
    .await;
    let rack = lan.start_rack(&region, &logs.join("rack.log")).await;
    let (machine_ns, machine_nic) = lan.plug_machine(MACHINE_MAC, None);
    let (stranger, _) = lan.plug_machine("02:00:00:00:89:0b", Some("10.89.0.50/24"));
    let hooks = tempfile::tempdir().unwrap();
    let (script, events) = udhcpc_script(hooks.path());
    let output = udhcpc(&machine_ns, &machine_nic, &script, &[]);
    assert!(output.status.success(), "{output:?}");
    let bound = std::fs::read_to_string(&events).unwrap();
    let line = bound.lines().find(|l| l.starts_with("bound")).unwrap();
    assert!(field(line, "ip").starts_with("10.89.0."), "{line}");

    // The machine reads its metadata; the stranger is refused.
    let (code, metadata) = curl(&machine_ns, &[METADATA]);
    assert_eq!(code, 200, "{metadata}");
    assert_eq!(value(&metadata, "machine_id"), id);
    assert_eq!(value(&metadata, "hostname"), "meta-node");
    assert_eq!(value(&metadata, "purpose"), "commission");
    assert_eq!(value(&metadata, "results_url"), RESULTS);
    let token = value(&metadata, "token").to_string();
    assert_eq!(token.len(), 64, "{metadata}");
    edgemetal_tests::secrets::remember(&token);
    let (code, json) = curl(&machine_ns, &[&format!("{METADATA}.json")]);
    assert_eq!(code, 200);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["machine_id"], id.as_str());
    let (code, refused) = curl(&stranger, &[METADATA]);
    assert_eq!(code, 403, "{refused}");

    // The region goes away: known metadata is still served.
    region.kill();
    let (code, again) = curl(&machine_ns, &[METADATA]);
    assert_eq!((code, value(&again, "token")), (200, token.as_str()));

    // Results: a wrong token and a broken archive are refused; the real ones are queued.
    let archive = results_archive(hooks.path());
    let upload = format!("@{}", archive.display());
    let post = |token: &str, body: &str| {
        curl(
            &machine_ns,
            &[
                "-X",
                "POST",
                "-H",
                &format!("Authorization: Bearer {token}"),
                "-H",
                "Content-Type: application/x-tar",
                "--data-binary",
                body,
                RESULTS,
            ],
        )
    };
    let (code, body) = post(&"0".repeat(64), &upload);
    assert_eq!(code, 401, "{body}");
    let (code, body) = post(&token, "this is not a tar archive at all");
    assert_eq!(code, 400, "{body}");
    let (code, body) = post(&token, &upload);
    assert_eq!(code, 202, "{body}");

    // The rack restarts before the region is back: the results are on disk.
    drop(rack);
    let _rack = start_rack_in(
        &lan.rack_ns,
        &state,
        &lan.rack_nic,
        &logs.join("rack-restarted.log"),
    );
    let region = RegionProcess::start(&options).await;
    let api = region.client();
    wait_until(
        "the queued results to make the machine Ready",
        PATIENCE,
        || async {
            let machine = api.get(&format!("/api/v1/machines/{id}")).await;
            (machine["status"] == "ready").then_some(machine)
        },
    )
    .await;
    let results = api
        .get(&format!("/api/v1/machines/{id}/commissioning-results"))
        .await;
    assert_eq!(results["rack_id"], "meta-rack", "{results}");
    assert_eq!(results["inventory"]["firmware"], "uefi");
    assert_eq!(results["inventory"]["disks"][0]["serial"], "META01");
    assert_eq!(results["inventory"]["nics"][0]["mac"], MACHINE_MAC);
    let found = api
        .get("/api/v1/machines?status=ready&min_storage_bytes=2147483648")
        .await;
    assert_eq!(found[0]["id"], id.as_str(), "{found}");

    // The token was for that run only: posting again is refused at the region.
    let (code, _) = post(&token, &upload);
    assert_eq!(
        code, 202,
        "the rack still holds the old metadata until the next boot"
    );
    wait_until("the replayed results to be refused", PATIENCE, || async {
        let events = api.get(&format!("/api/v1/machines/{id}/events")).await;
        events
            .as_array()?
            .iter()
            .any(|e| e["kind"] == "commissioning.refused")
            .then_some(())
    })
    .await;
    let machine = api.get(&format!("/api/v1/machines/{id}")).await;
    assert_eq!(machine["status"], "ready");

    // The rack that served its commissioning now speaks protocol v2, which
    // cannot carry a deploy's plan: the deploy is refused up front, with
    // nothing changed, rather than failing later in the installer.
    drop(_rack);
    let _rack = start_rack_in_with(
        &lan.rack_ns,
        &state,
        &lan.rack_nic,
        &logs.join("rack-v2.log"),
        &[("EDGEMETAL_RACK_PROTOCOL_VERSION", "2")],
    );
    wait_for_rack_version(&api, 2).await;
    let (status, body) = api
        .call(
            Method::POST,
            &format!("/api/v1/machines/{id}/actions/allocate"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = api
        .call(
            Method::POST,
            &format!("/api/v1/machines/{id}/actions/deploy"),
            Some(json!({"image": "debian/bookworm"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "rack_too_old", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("meta-rack"),
        "{body}"
    );
    let machine = api.get(&format!("/api/v1/machines/{id}")).await;
    assert_eq!(machine["status"], "allocated", "{machine}");
    assert_eq!(
        api.get(&format!("/api/v1/machines/{id}/deployments")).await,
        json!([])
    );

    // Back on a current rack, commissioning with a hardware test: the rack
    // hands the agent the plan (this region has no tools image, so no
    // tools_url), and a failed test keeps the machine from Ready.
    let action = |verb: &str| format!("/api/v1/machines/{id}/actions/{verb}");
    let (status, body) = api.call(Method::POST, &action("release"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    drop(_rack);
    let _rack = start_rack_in(
        &lan.rack_ns,
        &state,
        &lan.rack_nic,
        &logs.join("rack-current.log"),
    );
    wait_for_rack_version(&api, edgemetal_protocol::PROTOCOL_VERSION).await;
    for (body, what) in [
        (json!({"tests": ["badblocks"]}), "an unknown test"),
        (json!({"lldp_secs": 301}), "a listen over 300 s"),
        (json!({"tests": "fio"}), "tests that are not a list"),
    ] {
        let (status, answer) = api
            .call(Method::POST, &action("commission"), Some(body))
            .await;
        assert!(status.is_client_error(), "{what}: {status} {answer}");
        assert!(answer["message"].is_string(), "{what}: {answer}");
    }
    let machine = api.get(&format!("/api/v1/machines/{id}")).await;
    assert_eq!(
        machine["status"], "ready",
        "refused commissions change nothing"
    );
    let (status, body) = api
        .call(
            Method::POST,
            &action("commission"),
            Some(json!({"tests": ["fio"], "lldp_secs": 5})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let metadata = wait_until("the commissioning plan on the rack", PATIENCE, || async {
        let (code, metadata) = curl(&machine_ns, &[METADATA]);
        (code == 200 && value(&metadata, "tests") == "fio").then_some(metadata)
    })
    .await;
    assert_eq!(value(&metadata, "lldp_secs"), "5", "{metadata}");
    assert_eq!(value(&metadata, "tools_url"), "", "{metadata}");
    let token = value(&metadata, "token").to_string();
    edgemetal_tests::secrets::remember(&token);
    let failing = tempfile::tempdir().unwrap();
    let archive = results_archive_with(
        failing.path(),
        &[(
            "tests",
            "name=fio\tresult=failed\tseconds=2\tdetail=vda: I/O error\n",
        )],
    );
    let (code, body) = post(&token, &format!("@{}", archive.display()));
    assert_eq!(code, 202, "{body}");
    let machine = wait_until(
        "the failed test to fail commissioning",
        PATIENCE,
        || async {
            let machine = api.get(&format!("/api/v1/machines/{id}")).await;
            (machine["status"] == "failed_commissioning").then_some(machine)
        },
    )
    .await;
    let events = api.get(&format!("/api/v1/machines/{id}/events")).await;
    assert!(
        events.as_array().unwrap().iter().any(|e| e["detail"]
            .as_str()
            .is_some_and(|d| d.contains("hardware tests: fio: failed (vda: I/O error)"))),
        "{machine} {events}"
    );
    let results = api
        .get(&format!("/api/v1/machines/{id}/commissioning-results"))
        .await;
    assert_eq!(
        results["inventory"]["tests"][0]["result"], "failed",
        "{results}"
    );
}
