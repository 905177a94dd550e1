//! The region's HTTP API as an operator meets it: auth, CRUD, validation,
//! JSON errors, the OpenAPI document and the metrics endpoint.

use edgemetal_tests::process::log_dir;
use edgemetal_tests::{RegionOptions, RegionProcess};
use reqwest::{Method, StatusCode};
use serde_json::json;

async fn region(test: &str) -> (RegionProcess, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    let options = RegionOptions::embedded(data.path(), &log_dir(test));
    (RegionProcess::start(&options).await, data)
}

#[tokio::test]
async fn every_api_route_needs_a_valid_key_but_healthz_does_not() {
    let (region, _data) = region("api_auth").await;
    let api = region.client();
    let anonymous = api.with_key(None);
    let wrong = api.with_key(Some("em_000000000000_0000"));
    for path in [
        "/api/v1/racks",
        "/api/v1/subnets",
        "/api/v1/machines",
        "/api/v1/openapi.json",
    ] {
        for client in [&anonymous, &wrong] {
            let (status, body) = client.call(Method::GET, path, None).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
            assert_eq!(body["code"], "unauthorized");
        }
    }
    let (status, _) = anonymous
        .call(Method::POST, "/api/v1/subnets", Some(json!({})))
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "writes are checked before the body"
    );
    assert!(anonymous.healthz().await);
}

#[tokio::test]
async fn subnets_ranges_and_machines_round_trip_with_json_errors() {
    let (region, _data) = region("api_crud").await;
    let api = region.client();

    let subnet = api
        .create(
            "/api/v1/subnets",
            json!({"name": "site", "cidr": "10.20.0.0/24", "gateway": "10.20.0.1",
            "dns_servers": ["10.20.0.2"], "domain": "site.internal", "lease_time_secs": 600}),
        )
        .await;
    let id = subnet["id"].as_str().unwrap();
    assert_eq!(subnet["cidr"], "10.20.0.0/24");
    assert_eq!(api.get(&format!("/api/v1/subnets/{id}")).await, subnet);

    let range = api
        .create(
            &format!("/api/v1/subnets/{id}/ranges"),
            json!({"start": "10.20.0.100", "end": "10.20.0.199", "purpose": "dynamic"}),
        )
        .await;
    let range_id = range["id"].as_str().unwrap();
    assert_eq!(
        api.get(&format!("/api/v1/subnets/{id}/ranges"))
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let (status, updated) = api
        .call(Method::PUT, &format!("/api/v1/subnets/{id}/ranges/{range_id}"),
            Some(json!({"start": "10.20.0.100", "end": "10.20.0.150", "purpose": "dynamic", "comment": "smaller"})))
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["end"], "10.20.0.150");

    // Validation: each refusal is a 4xx JSON error with a stable code.
    let cases = [
        (
            Method::POST,
            "/api/v1/subnets".to_string(),
            json!({"name": "x", "cidr": "10.20.0.128/25"}),
            StatusCode::CONFLICT,
            "conflict",
        ),
        (
            Method::POST,
            "/api/v1/subnets".to_string(),
            json!({"name": "x", "cidr": "10.30.0.1/24"}),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            Method::POST,
            "/api/v1/subnets".to_string(),
            json!({"name": "x", "cidr": "10.30.0.0/24", "gateway": "10.31.0.1"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
        ),
        (
            Method::POST,
            "/api/v1/subnets".to_string(),
            json!({"name": "x", "cidr": "10.30.0.0/24", "surprise": 1}),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            Method::POST,
            format!("/api/v1/subnets/{id}/ranges"),
            json!({"start": "10.20.0.120", "end": "10.20.0.130", "purpose": "reserved"}),
            StatusCode::CONFLICT,
            "conflict",
        ),
        (
            Method::POST,
            format!("/api/v1/subnets/{id}/ranges"),
            json!({"start": "10.21.0.1", "end": "10.21.0.9", "purpose": "dynamic"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
        ),
        (
            Method::POST,
            format!("/api/v1/subnets/{id}/ranges"),
            json!({"start": "10.20.0.1", "end": "10.20.0.9", "purpose": "dynamic"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
        ),
        (
            Method::PUT,
            format!("/api/v1/subnets/{id}"),
            json!({"name": "site", "cidr": "10.20.0.0/26"}),
            StatusCode::CONFLICT,
            "conflict",
        ),
        (
            Method::GET,
            "/api/v1/subnets/does-not-exist".to_string(),
            json!(null),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            Method::DELETE,
            "/api/v1/machines/does-not-exist".to_string(),
            json!(null),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            Method::GET,
            "/api/v1/racks/nope".to_string(),
            json!(null),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            Method::GET,
            "/api/v1/no-such-route".to_string(),
            json!(null),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            Method::POST,
            "/api/v1/machines".to_string(),
            json!({"mac": "zz:zz", "architecture": "amd64"}),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            Method::POST,
            "/api/v1/machines".to_string(),
            json!({"mac": "52:54:00:00:00:01", "architecture": "vax"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
        ),
    ];
    for (method, path, body, expected, code) in cases {
        let body = (!body.is_null()).then_some(body);
        let (status, response) = api.call(method.clone(), &path, body.clone()).await;
        assert_eq!(status, expected, "{method} {path} {body:?}: {response}");
        assert_eq!(response["code"], code, "{method} {path}: {response}");
        assert!(response["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    for raw in ["{", "[1,2", "\"just a string\"", "\u{0}"] {
        let (status, response) = api.call_raw(Method::POST, "/api/v1/subnets", raw).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{raw:?}: {response}");
        assert!(response["code"].is_string());
    }

    let machine = api
        .create(
            "/api/v1/machines",
            json!({"mac": "52:54:00:ab:cd:ef", "hostname": "node1", "architecture": "amd64"}),
        )
        .await;
    let machine_id = machine["id"].as_str().unwrap();
    assert_eq!(machine["mac"], "52:54:00:ab:cd:ef");
    let (status, _) = api
        .call(
            Method::POST,
            "/api/v1/machines",
            Some(json!({"mac": "52:54:00:ab:cd:ef", "architecture": "amd64"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        api.get("/api/v1/machines").await.as_array().unwrap().len(),
        1
    );
    assert_eq!(
        api.call(
            Method::DELETE,
            &format!("/api/v1/machines/{machine_id}"),
            None
        )
        .await
        .0,
        StatusCode::NO_CONTENT
    );

    assert_eq!(
        api.call(
            Method::DELETE,
            &format!("/api/v1/subnets/{id}/ranges/{range_id}"),
            None
        )
        .await
        .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.call(Method::DELETE, &format!("/api/v1/subnets/{id}"), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.call(Method::GET, &format!("/api/v1/subnets/{id}"), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );

    let metrics = api.metrics().await;
    assert!(
        metrics.contains("edgemetal_region_http_requests_total{status=\"409\"}"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("status=\"500\""),
        "no request may end in a 500:\n{metrics}"
    );
}

#[tokio::test]
async fn reservations_are_validated_listed_and_deleted() {
    let (region, _data) = region("api_reservations").await;
    let api = region.client();
    let subnet = api
        .create(
            "/api/v1/subnets",
            json!({"name": "site", "cidr": "10.21.0.0/24", "gateway": "10.21.0.1",
                   "dhcp_racks": ["rack-a", "rack-b"]}),
        )
        .await;
    assert_eq!(subnet["dhcp_racks"], json!(["rack-a", "rack-b"]));
    let id = subnet["id"].as_str().unwrap();
    api.create(
        &format!("/api/v1/subnets/{id}/ranges"),
        json!({"start": "10.21.0.100", "end": "10.21.0.199", "purpose": "dynamic"}),
    )
    .await;
    let path = format!("/api/v1/subnets/{id}/reservations");
    let reservation = api
        .create(
            &path,
            json!({"mac": "52:54:00:aa:bb:01", "address": "10.21.0.20", "hostname": "node20"}),
        )
        .await;
    assert_eq!(reservation["address"], "10.21.0.20");
    assert_eq!(reservation["mac"], "52:54:00:aa:bb:01");
    let reservation_id = reservation["id"].as_str().unwrap();
    assert_eq!(
        api.get(&format!("{path}/{reservation_id}")).await,
        reservation
    );
    assert_eq!(api.get(&path).await, json!([reservation]));

    let conflict = StatusCode::CONFLICT;
    let invalid = StatusCode::UNPROCESSABLE_ENTITY;
    for (body, status, code) in [
        // Inside the dynamic range: a rack may have leased it already.
        (
            json!({"mac": "52:54:00:aa:bb:02", "address": "10.21.0.150"}),
            conflict,
            "conflict",
        ),
        // The same MAC or address twice.
        (
            json!({"mac": "52:54:00:aa:bb:01", "address": "10.21.0.21"}),
            conflict,
            "conflict",
        ),
        (
            json!({"mac": "52:54:00:aa:bb:03", "address": "10.21.0.20"}),
            conflict,
            "conflict",
        ),
        (
            json!({"mac": "52:54:00:aa:bb:04", "address": "10.21.0.1"}),
            conflict,
            "conflict",
        ),
        (
            json!({"mac": "52:54:00:aa:bb:05", "address": "10.22.0.5"}),
            invalid,
            "invalid",
        ),
        (
            json!({"mac": "52:54:00:aa:bb:06", "address": "10.21.0.255"}),
            invalid,
            "invalid",
        ),
        (
            json!({"mac": "52:54:00:aa:bb:07", "address": "10.21.0.22", "hostname": "no dots."}),
            invalid,
            "invalid",
        ),
        (
            json!({"mac": "not-a-mac", "address": "10.21.0.23"}),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
    ] {
        api.expect_error(Method::POST, &path, Some(body), status, code)
            .await;
    }
    // A dynamic range may not swallow a reservation either.
    api.expect_error(
        Method::POST,
        &format!("/api/v1/subnets/{id}/ranges"),
        Some(json!({"start": "10.21.0.10", "end": "10.21.0.30", "purpose": "dynamic"})),
        conflict,
        "conflict",
    )
    .await;
    api.expect_error(
        Method::GET,
        "/api/v1/subnets/nope/reservations",
        None,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    api.expect_error(
        Method::POST,
        "/api/v1/subnets",
        Some(json!({"name": "twice", "cidr": "10.23.0.0/24", "dhcp_racks": ["a", "a"]})),
        invalid,
        "invalid",
    )
    .await;

    let (status, _) = api
        .call(Method::DELETE, &format!("{path}/{reservation_id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(api.get(&path).await, json!([]));
}

#[tokio::test]
async fn openapi_document_matches_the_routes() {
    let (region, _data) = region("api_openapi").await;
    let api = region.client();
    let doc = api.get("/api/v1/openapi.json").await;
    assert_eq!(
        doc["openapi"].as_str().map(|v| v.starts_with("3.")),
        Some(true)
    );
    let paths = doc["paths"].as_object().unwrap();
    let expected = [
        ("/api/v1/racks", vec!["get"]),
        ("/api/v1/racks/{id}", vec!["get"]),
        ("/api/v1/subnets", vec!["get", "post"]),
        (
            "/api/v1/subnets/{id}",
            vec!["delete", "get", "patch", "put"],
        ),
        ("/api/v1/subnets/{id}/ranges", vec!["get", "post"]),
        (
            "/api/v1/subnets/{id}/ranges/{range_id}",
            vec!["delete", "get", "put"],
        ),
        ("/api/v1/subnets/{id}/reservations", vec!["get", "post"]),
        (
            "/api/v1/subnets/{id}/reservations/{reservation_id}",
            vec!["delete", "get"],
        ),
        ("/api/v1/machines", vec!["get", "post"]),
        ("/api/v1/machines/{id}", vec!["delete", "get"]),
        ("/api/v1/machines/{id}/power-settings", vec!["put"]),
        ("/api/v1/machines/{id}/power", vec!["get"]),
        ("/api/v1/machines/{id}/power/{action}", vec!["post"]),
        ("/api/v1/machines/{id}/boot-device", vec!["put"]),
        ("/api/v1/machines/{id}/boot-settings", vec!["get", "put"]),
        ("/api/v1/machines/{id}/events", vec!["get"]),
        ("/api/v1/machines/{id}/actions/{action}", vec!["post"]),
        ("/api/v1/machines/{id}/commissioning-results", vec!["get"]),
        ("/api/v1/machines/{id}/deployments", vec!["get"]),
        ("/api/v1/machines/{id}/logs", vec!["get"]),
        ("/api/v1/boot-resources", vec!["get", "post"]),
        ("/api/v1/boot-resources/{id}", vec!["delete", "get"]),
        ("/api/v1/os-images", vec!["get"]),
        ("/api/v1/domains", vec!["get", "post"]),
        ("/api/v1/domains/{id}", vec!["delete", "get"]),
        ("/api/v1/domains/{id}/records", vec!["get", "post"]),
        (
            "/api/v1/domains/{id}/records/{record_id}",
            vec!["delete", "get"],
        ),
        ("/api/v1/api-keys", vec!["get", "post"]),
        ("/api/v1/api-keys/{id}", vec!["delete", "get"]),
        ("/api/v1/audit", vec!["get"]),
        ("/api/v1/enrolment-tokens", vec!["get", "post"]),
        ("/api/v1/rack-identities", vec!["get"]),
        ("/api/v1/racks/{id}/revoke", vec!["post"]),
        ("/api/v1/racks/{id}/rotate-key", vec!["post"]),
        ("/api/v1/leases", vec!["get"]),
    ];
    assert_eq!(
        paths.len(),
        expected.len(),
        "documented paths: {:?}",
        paths.keys().collect::<Vec<_>>()
    );
    for (path, methods) in expected {
        let item = paths
            .get(path)
            .unwrap_or_else(|| panic!("{path} is not documented"));
        let mut documented: Vec<&str> = item
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .filter(|k| ["get", "post", "put", "delete", "patch"].contains(k))
            .collect();
        documented.sort();
        assert_eq!(documented, methods, "{path}");
        // Every documented operation is routed: it never answers "no such route" or 405.
        for method in methods {
            let concrete = path.replace("{id}", "x").replace("{range_id}", "y");
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let body = matches!(method, Method::POST | Method::PUT).then(|| json!({}));
            let (status, response) = api.call(method.clone(), &concrete, body).await;
            assert_ne!(
                status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {concrete}"
            );
            assert!(
                !(status == StatusCode::NOT_FOUND && response["message"] == "no such route"),
                "{method} {concrete} is documented but not routed"
            );
        }
    }
}

#[tokio::test]
async fn patch_changes_only_the_subnet_settings_it_names() {
    let (region, _data) = region("api_patch").await;
    let api = region.client();
    let created = api
        .create(
            "/api/v1/subnets",
            json!({"name": "patched", "cidr": "10.77.0.0/24", "gateway": "10.77.0.1",
                   "dns_servers": ["10.77.0.2"], "services": {"syslog": false, "proxy": true, "ntp": false}}),
        )
        .await;
    let path = format!("/api/v1/subnets/{}", created["id"].as_str().unwrap());

    let (status, patched) = api
        .merge_patch(
            &path,
            &json!({"gateway": "10.77.0.254", "services": {"proxy": false}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["gateway"], "10.77.0.254");
    assert_eq!(
        patched["services"],
        json!({"syslog": false, "proxy": false, "ntp": false}),
        "unnamed services keep their values"
    );
    assert_eq!(patched["dns_servers"], json!(["10.77.0.2"]));
    assert_eq!(patched["name"], "patched");

    // null returns a setting to its default.
    let (status, patched) = api.merge_patch(&path, &json!({"gateway": null})).await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert!(patched["gateway"].is_null(), "{patched}");

    // Bad patches are refused with a JSON error and change nothing.
    let before = api.get(&path).await;
    for bad in [
        json!({"gatway": "10.77.0.9"}),
        json!({"gateway": "10.99.0.1"}),
        json!({"lease_time_secs": "long"}),
        json!({"name": null}),
        json!(["gateway"]),
    ] {
        let (status, error) = api.merge_patch(&path, &bad).await;
        assert!(
            status == StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {status} {error}"
        );
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{error}"
        );
    }
    assert_eq!(
        api.get(&path).await,
        before,
        "a refused patch changed the subnet"
    );
    let (status, error) = api
        .merge_patch("/api/v1/subnets/no-such-subnet", &json!({"gateway": null}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{error}");
}
