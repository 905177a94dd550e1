//! Power control end to end: the region API → the link → a rack → IPMI 2.0
//! LAN → OpenIPMI's `ipmi_sim`, with `ipmitool` as the independent check of
//! what happened at the BMC.

use edgemetal_tests::bmc::{Bmc, PASSWORD, USER};
use edgemetal_tests::process::log_dir;
use edgemetal_tests::site::{wait_in_sync, PATIENCE};
use edgemetal_tests::{wait_until, ApiClient, RackProcess, RegionOptions, RegionProcess};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const WRONG_PASSWORD: &str = "Not-the-pw-91c2-ab";

async fn machine(api: &ApiClient, n: u8, port: u16, password: &str) -> String {
    let machine = api
        .create(
            "/api/v1/machines",
            json!({"mac": format!("52:54:00:00:70:{n:02x}"), "architecture": "amd64"}),
        )
        .await;
    let id = machine["id"].as_str().unwrap().to_string();
    let (status, settings) = api
        .call(
            Method::PUT,
            &format!("/api/v1/machines/{id}/power-settings"),
            Some(
                json!({"driver": "ipmi", "address": "127.0.0.1", "port": port,
                        "username": USER, "password": password}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{settings}");
    assert!(settings.get("password").is_none(), "{settings}");
    id
}

async fn power(api: &ApiClient, id: &str, action: &str) -> (StatusCode, Value) {
    api.call(
        Method::POST,
        &format!("/api/v1/machines/{id}/power/{action}"),
        None,
    )
    .await
}

#[tokio::test]
async fn the_region_powers_machines_through_a_rack_and_their_bmcs() {
    edgemetal_tests::secrets::remember(PASSWORD);
    edgemetal_tests::secrets::remember(WRONG_PASSWORD);
    let logs = log_dir("power");
    let data = tempfile::tempdir().unwrap();
    let mut options = RegionOptions::embedded(&data.path().join("region"), &logs);
    options
        .env
        .push(("EDGEMETAL_POWER_POLL_INTERVAL_SECS".into(), "1".into()));
    let region = RegionProcess::start(&options).await;
    let api = region.client();

    // A machine whose BMC no rack reaches is refused before anything is sent.
    let lonely = api
        .create(
            "/api/v1/machines",
            json!({"mac": "52:54:00:00:70:ff", "architecture": "amd64"}),
        )
        .await;
    let lonely = lonely["id"].as_str().unwrap();
    let (status, _) = api
        .call(
            Method::PUT,
            &format!("/api/v1/machines/{lonely}/power-settings"),
            Some(
                json!({"driver": "ipmi", "address": "192.0.2.10", "username": USER,
                        "password": PASSWORD}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, error) = power(&api, lonely, "on").await;
    assert_eq!(
        (status, error["code"].as_str()),
        (StatusCode::CONFLICT, Some("no_rack"))
    );

    let state = data.path().join("rack");
    region.enrol_rack("power-rack", &state).await;
    let _rack = RackProcess::start(&state, &logs.join("rack.log")).await;
    wait_in_sync(&api, "power-rack").await;

    let first = Bmc::start();
    let second = Bmc::start();
    let one = machine(&api, 1, first.port, PASSWORD).await;
    let two = machine(&api, 2, second.port, PASSWORD).await;

    let started = std::time::Instant::now();
    let (status, body) = power(&api, &one, "on").await;
    // Printed for the record (`-- --nocapture`), not asserted.
    eprintln!(
        "power on through API, link, rack and BMC: {:?}",
        started.elapsed()
    );
    assert_eq!((status, &body), (StatusCode::OK, &json!({"state": "on"})));
    assert_eq!(first.power_status(), "Chassis Power is on");

    let (status, body) = api
        .call(
            Method::PUT,
            &format!("/api/v1/machines/{one}/boot-device"),
            Some(json!({"device": "pxe"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let boot = first.ipmitool(&["chassis", "bootparam", "get", "5"]);
    assert!(boot.contains("Force PXE"), "{boot}");

    let (status, body) = power(&api, &one, "off").await;
    assert_eq!((status, &body), (StatusCode::OK, &json!({"state": "off"})));
    assert_eq!(first.power_status(), "Chassis Power is off");

    // Two BMCs driven at once.
    let (a, b) = tokio::join!(power(&api, &one, "on"), power(&api, &two, "on"));
    assert_eq!(a.0, StatusCode::OK, "{}", a.1);
    assert_eq!(b.0, StatusCode::OK, "{}", b.1);
    assert_eq!(first.power_status(), "Chassis Power is on");
    assert_eq!(second.power_status(), "Chassis Power is on");

    // The periodic check notices a change made behind the region's back.
    first.ipmitool(&["chassis", "power", "off"]);
    wait_until("the poll to see the BMC off", PATIENCE, || {
        let api = api.clone();
        let one = one.clone();
        async move {
            let power = api.get(&format!("/api/v1/machines/{one}/power")).await;
            (power["state"] == "off" && power["checked_ms"].as_i64().is_some()).then_some(())
        }
    })
    .await;
    let power_doc = api.get(&format!("/api/v1/machines/{one}/power")).await;
    assert_eq!(power_doc["settings"]["username"], USER);
    assert!(!power_doc.to_string().contains(PASSWORD), "{power_doc}");

    // Wrong password: a clear error, no password in it.
    let bad = machine(&api, 3, first.port, WRONG_PASSWORD).await;
    let (status, error) = power(&api, &bad, "query").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{error}");
    assert_eq!(error["code"], "bmc_authentication", "{error}");
    assert!(!error.to_string().contains(WRONG_PASSWORD), "{error}");

    // Nothing listening: a timeout error within the rack's bound.
    let dead_port = {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.local_addr().unwrap().port()
    };
    let dead = machine(&api, 4, dead_port, PASSWORD).await;
    let (status, error) = power(&api, &dead, "query").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{error}");
    assert!(
        matches!(
            error["code"].as_str(),
            Some("bmc_timeout" | "bmc_unreachable")
        ),
        "{error}"
    );

    // Every action is in the machine's event log, newest first.
    let events = api.get(&format!("/api/v1/machines/{one}/events")).await;
    let kinds: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "power.on",
            "power.off",
            "power.boot-pxe",
            "power.on",
            "power.settings"
        ],
        "{events}"
    );
    assert!(events[0]["detail"]
        .as_str()
        .unwrap()
        .contains("via rack power-rack"));
    api.expect_error(
        Method::POST,
        &format!("/api/v1/machines/{one}/power/explode"),
        None,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    api.expect_error(
        Method::PUT,
        &format!("/api/v1/machines/{one}/power-settings"),
        Some(
            json!({"driver": "redfish", "address": "127.0.0.1", "username": USER,
                    "password": PASSWORD}),
        ),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid",
    )
    .await;
}
