//! The machine lifecycle through the API: legal and illegal transitions,
//! the event log, searches by status and hardware, and commissioning that
//! powers a machine on over real IPMI (ipmi_sim) and, when no results come,
//! times out to Failed commissioning and powers it off again.

use edgemetal_tests::bmc::{Bmc, PASSWORD, USER};
use edgemetal_tests::process::log_dir;
use edgemetal_tests::site::{wait_in_sync, PATIENCE};
use edgemetal_tests::{wait_until, ApiClient, RackProcess, RegionOptions, RegionProcess};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn act(api: &ApiClient, id: &str, action: &str) -> (StatusCode, Value) {
    api.call(
        Method::POST,
        &format!("/api/v1/machines/{id}/actions/{action}"),
        Some(json!({"reason": format!("test: {action}")})),
    )
    .await
}

/// Event kinds and details, oldest first.
async fn events(api: &ApiClient, id: &str) -> Vec<(String, String)> {
    let listed = api.get(&format!("/api/v1/machines/{id}/events")).await;
    let mut events: Vec<(String, String)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_string(),
                e["detail"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    events.reverse();
    events
}

#[tokio::test]
async fn transitions_are_checked_recorded_and_searchable() {
    let logs = log_dir("lifecycle_api");
    let data = tempfile::tempdir().unwrap();
    let region = RegionProcess::start(&RegionOptions::embedded(data.path(), &logs)).await;
    let api = region.client();
    let machine = api
        .create(
            "/api/v1/machines",
            json!({"mac": "52:54:00:00:71:01", "architecture": "amd64"}),
        )
        .await;
    assert_eq!(machine["status"], "new", "{machine}");
    let id = machine["id"].as_str().unwrap();

    // New cannot be allocated; the error says what is allowed.
    let (status, error) = act(&api, id, "allocate").await;
    assert_eq!(status, StatusCode::CONFLICT, "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("cannot allocate a machine that is New")
            && message.contains("allowed now: commission"),
        "{message}"
    );

    // Commissioning without a BMC: the operator boots it by hand.
    let (status, commissioning) = act(&api, id, "commission").await;
    assert_eq!(status, StatusCode::OK, "{commissioning}");
    assert_eq!(commissioning["status"], "commissioning");
    assert!(commissioning["status_deadline_ms"].as_i64().is_some());
    let (status, error) = act(&api, id, "commission").await;
    assert_eq!(status, StatusCode::CONFLICT, "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("allowed now: abort"),
        "{error}"
    );
    let (status, aborted) = act(&api, id, "abort").await;
    assert_eq!(
        (status, aborted["status"].as_str()),
        (StatusCode::OK, Some("new"))
    );
    let (status, broken) = act(&api, id, "mark-broken").await;
    assert_eq!(
        (status, broken["status"].as_str()),
        (StatusCode::OK, Some("broken"))
    );
    // Never commissioned: fixed means New again, not Ready.
    let (status, fixed) = act(&api, id, "mark-fixed").await;
    assert_eq!(
        (status, fixed["status"].as_str()),
        (StatusCode::OK, Some("new"))
    );

    let (status, error) = act(&api, id, "deploy").await;
    assert_eq!(status, StatusCode::CONFLICT, "{error}");
    api.expect_error(
        Method::POST,
        &format!("/api/v1/machines/{id}/actions/explode"),
        None,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let (status, error) = api
        .call_raw(
            Method::POST,
            &format!("/api/v1/machines/{id}/actions/abort"),
            "{not json",
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");

    // Every transition is an event with its actor and reason, in order.
    let statuses: Vec<String> = events(&api, id)
        .await
        .into_iter()
        .filter(|(kind, _)| kind == "status")
        .map(|(_, detail)| detail)
        .collect();
    assert_eq!(
        statuses,
        [
            "New → Commissioning: test: commission",
            "Commissioning → New: test: abort",
            "New → Broken: test: mark-broken",
            "Broken → New: test: mark-fixed",
        ],
        "{statuses:?}"
    );
    let listed = api.get(&format!("/api/v1/machines/{id}/events")).await;
    assert_eq!(listed[0]["actor"], "test", "{listed}");

    // Searches: by status, and by hardware (nothing commissioned yet).
    let new = api.get("/api/v1/machines?status=new").await;
    assert_eq!(new.as_array().unwrap().len(), 1, "{new}");
    let ready = api.get("/api/v1/machines?status=ready").await;
    assert_eq!(ready, json!([]));
    let big = api
        .get("/api/v1/machines?min_cpu_count=4&min_memory_mib=8192")
        .await;
    assert_eq!(big, json!([]));
    api.expect_error(
        Method::GET,
        "/api/v1/machines?status=sleeping",
        None,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid",
    )
    .await;
    let (status, _) = api
        .call(Method::GET, "/api/v1/machines?min_cpu_count=many", None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    api.expect_error(
        Method::GET,
        &format!("/api/v1/machines/{id}/commissioning-results"),
        None,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn commissioning_powers_on_over_ipmi_and_times_out_to_failed_and_off() {
    edgemetal_tests::secrets::remember(PASSWORD);
    let logs = log_dir("lifecycle_timeout");
    let data = tempfile::tempdir().unwrap();
    let mut options = RegionOptions::embedded(&data.path().join("region"), &logs);
    options
        .env
        .push(("EDGEMETAL_COMMISSIONING_TIMEOUT_SECS".into(), "3".into()));
    let region = RegionProcess::start(&options).await;
    let api = region.client();
    let state = data.path().join("rack");
    region.enrol_rack("lifecycle-rack", &state).await;
    let _rack = RackProcess::start(&state, &logs.join("rack.log")).await;
    wait_in_sync(&api, "lifecycle-rack").await;

    let bmc = Bmc::start();
    let machine = api
        .create(
            "/api/v1/machines",
            json!({"mac": "52:54:00:00:71:02", "architecture": "amd64"}),
        )
        .await;
    let id = machine["id"].as_str().unwrap();
    let (status, body) = api
        .call(
            Method::PUT,
            &format!("/api/v1/machines/{id}/power-settings"),
            Some(
                json!({"driver": "ipmi", "address": "127.0.0.1", "port": bmc.port,
                        "username": USER, "password": PASSWORD}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, body) = act(&api, id, "commission").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "commissioning");
    // At the BMC: next boot from the network, then power on.
    assert_eq!(bmc.power_status(), "Chassis Power is on");
    let log = bmc.chassis_log();
    let boot = log.iter().position(|l| l.starts_with("boot "));
    let power = log.iter().position(|l| l == "power 1");
    assert!(
        matches!((boot, power), (Some(b), Some(p)) if b < p),
        "boot device before power on: {log:?}"
    );
    assert!(
        log.iter().any(|l| l.contains("pxe")),
        "PXE boot device set: {log:?}"
    );

    // No results come: the region gives up, marks it failed and powers it off.
    wait_until("commissioning to time out", PATIENCE, || async {
        let machine = api.get(&format!("/api/v1/machines/{id}")).await;
        (machine["status"] == "failed_commissioning").then_some(())
    })
    .await;
    wait_until("the machine to be powered off", PATIENCE, || async {
        (bmc.power_status() == "Chassis Power is off").then_some(())
    })
    .await;
    // The BMC is off before the rack's answer reaches the region; the event
    // follows that answer, so wait for it rather than racing it.
    let events = wait_until("the power-off to be recorded", PATIENCE, || async {
        let events = events(&api, id).await;
        events
            .iter()
            .any(|(kind, _)| kind == "power.off")
            .then_some(events)
    })
    .await;
    let kinds: Vec<&str> = events.iter().map(|(kind, _)| kind.as_str()).collect();
    let start = kinds.iter().position(|k| *k == "status").unwrap();
    assert_eq!(
        &kinds[start..],
        [
            "status",
            "power.boot-pxe",
            "power.on",
            "status",
            "power.off"
        ],
        "{events:?}"
    );
    assert!(
        events.iter().any(|(_, detail)| detail
            == "Commissioning → Failed commissioning: commissioning timed out after 3 s"),
        "{events:?}"
    );
    // A failed machine can be commissioned again.
    let (status, body) = act(&api, id, "abort").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
}
