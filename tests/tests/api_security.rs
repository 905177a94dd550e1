//! Security of the region's API as an operator meets it: key roles,
//! revocation and expiry, throttling of failed authentication and the audit
//! log. How the API is served (HTTPS, plaintext) is in `api_transport.rs`.

use std::time::Duration;

use edgemetal_tests::process::log_dir;
use edgemetal_tests::{wait_until, ApiClient, RegionOptions, RegionProcess};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn region(test: &str) -> (RegionProcess, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    let options = RegionOptions::embedded(data.path(), &log_dir(test));
    (RegionProcess::start(&options).await, data)
}

/// Creates a key through the API; returns (id, token).
async fn create_key(
    admin: &ApiClient,
    name: &str,
    role: &str,
    expires: Option<u64>,
) -> (String, String) {
    let mut body = json!({"name": name, "role": role});
    if let Some(secs) = expires {
        body["expires_in_secs"] = json!(secs);
    }
    let created = admin.create("/api/v1/api-keys", body).await;
    assert_eq!(created["key"]["role"], role);
    assert_eq!(created["key"]["name"], name);
    let id = created["key"]["id"].as_str().unwrap().to_string();
    let token = created["token"].as_str().unwrap().to_string();
    assert!(token.starts_with(&format!("em_{id}_")), "{token}");
    (id, token)
}

/// The id part of an `em_<id>_<secret>` token.
fn key_id(token: &str) -> &str {
    token.split('_').nth(1).unwrap()
}

fn subnet(name: &str, cidr: &str) -> Value {
    json!({"name": name, "cidr": cidr})
}

#[tokio::test]
async fn read_only_keys_read_but_cannot_write() {
    let (region, _data) = region("sec_read_only").await;
    let admin = region.client();
    let (_, token) = create_key(&admin, "viewer", "read_only", None).await;
    let viewer = admin.with_key(Some(&token));

    for path in [
        "/api/v1/racks",
        "/api/v1/subnets",
        "/api/v1/machines",
        "/api/v1/openapi.json",
    ] {
        viewer.get(path).await;
    }
    let forbidden = [
        (
            Method::POST,
            "/api/v1/subnets",
            Some(subnet("ro", "10.40.0.0/24")),
        ),
        (
            Method::POST,
            "/api/v1/machines",
            Some(json!({"mac": "52:54:00:00:00:09", "architecture": "amd64"})),
        ),
        (
            Method::PUT,
            "/api/v1/subnets/x",
            Some(subnet("ro", "10.40.0.0/24")),
        ),
        (Method::DELETE, "/api/v1/subnets/x", None),
        (
            Method::POST,
            "/api/v1/api-keys",
            Some(json!({"name": "escalate", "role": "admin"})),
        ),
        (Method::GET, "/api/v1/api-keys", None),
        (Method::GET, "/api/v1/audit", None),
    ];
    for (method, path, body) in forbidden {
        viewer
            .expect_error(method, path, body, StatusCode::FORBIDDEN, "forbidden")
            .await;
    }
    assert_eq!(
        admin.get("/api/v1/subnets").await,
        json!([]),
        "nothing was written"
    );
}

#[tokio::test]
async fn operators_change_configuration_but_not_keys() {
    let (region, _data) = region("sec_operator").await;
    let admin = region.client();
    let (_, token) = create_key(&admin, "ops", "operator", None).await;
    let ops = admin.with_key(Some(&token));

    let created = ops
        .create("/api/v1/subnets", subnet("ops-net", "10.41.0.0/24"))
        .await;
    let id = created["id"].as_str().unwrap();
    ops.create(
        &format!("/api/v1/subnets/{id}/ranges"),
        json!({"start": "10.41.0.10", "end": "10.41.0.20", "purpose": "dynamic"}),
    )
    .await;
    let machine = ops
        .create(
            "/api/v1/machines",
            json!({"mac": "52:54:00:00:00:0a", "architecture": "amd64"}),
        )
        .await;
    let (status, _) = ops
        .call(
            Method::DELETE,
            &format!("/api/v1/machines/{}", machine["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let admin_id = key_id(&region.api_key);
    for (method, path, body) in [
        (
            Method::POST,
            "/api/v1/api-keys".to_string(),
            Some(json!({"name": "more", "role": "operator"})),
        ),
        (Method::GET, "/api/v1/api-keys".to_string(), None),
        (Method::GET, format!("/api/v1/api-keys/{admin_id}"), None),
        (Method::DELETE, format!("/api/v1/api-keys/{admin_id}"), None),
        (Method::GET, "/api/v1/audit".to_string(), None),
    ] {
        ops.expect_error(method, &path, body, StatusCode::FORBIDDEN, "forbidden")
            .await;
    }
    // The operator's attempt on the admin key changed nothing.
    assert!(admin.get(&format!("/api/v1/api-keys/{admin_id}")).await["revoked_ms"].is_null());
}

#[tokio::test]
async fn revoked_and_expired_keys_are_refused() {
    let (region, _data) = region("sec_revoke_expire").await;
    let admin = region.client();

    let (id, token) = create_key(&admin, "temp", "operator", None).await;
    let temp = admin.with_key(Some(&token));
    temp.get("/api/v1/subnets").await;
    let (status, _) = admin
        .call(Method::DELETE, &format!("/api/v1/api-keys/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    temp.expect_error(
        Method::GET,
        "/api/v1/subnets",
        None,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    let record = admin.get(&format!("/api/v1/api-keys/{id}")).await;
    assert!(record["revoked_ms"].as_i64().is_some(), "{record}");
    let (status, _) = admin
        .call(Method::DELETE, &format!("/api/v1/api-keys/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "revoking twice is harmless");
    admin
        .expect_error(
            Method::DELETE,
            "/api/v1/api-keys/nope",
            None,
            StatusCode::NOT_FOUND,
            "not_found",
        )
        .await;

    // Lists show records, never secrets or hashes.
    let list = admin.get("/api/v1/api-keys").await;
    let text = list.to_string();
    let secret = token.rsplit('_').next().unwrap();
    assert!(!text.contains(secret), "{text}");
    assert!(!text.contains(region.api_key.rsplit('_').next().unwrap()));
    for key in list.as_array().unwrap() {
        let fields: Vec<&str> = key
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert!(
            fields
                .iter()
                .all(|f| !f.contains("secret") && !f.contains("hash") && *f != "token"),
            "{fields:?}"
        );
    }

    // Expiry: a one-second key works, then stops working without anyone acting.
    let (_, token) = create_key(&admin, "brief", "read_only", Some(1)).await;
    let brief = admin.with_key(Some(&token));
    let message = wait_until("the key to expire", Duration::from_secs(10), || {
        let brief = brief.clone();
        async move {
            let (status, body) = brief.call(Method::GET, "/api/v1/subnets", None).await;
            (status == StatusCode::UNAUTHORIZED).then_some(body)
        }
    })
    .await;
    assert_eq!(message["code"], "unauthorized");
    assert!(
        message["message"].as_str().unwrap().contains("expired"),
        "{message}"
    );

    // Bad creation requests are 4xx JSON errors.
    for (body, status, code) in [
        (
            json!({"name": "x", "role": "admin", "expires_in_secs": 0}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
        ),
        (
            json!({"name": "", "role": "admin"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
        ),
        (
            json!({"name": "x", "role": "root"}),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            json!({"name": "x"}),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            json!({"name": "x", "role": "admin", "expires_in_secs": -5}),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            json!({"name": "x", "role": "admin", "secret": "mine"}),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
    ] {
        admin
            .expect_error(Method::POST, "/api/v1/api-keys", Some(body), status, code)
            .await;
    }
}

#[tokio::test]
async fn a_burst_of_bad_keys_is_throttled_while_healthz_answers() {
    let (region, _data) = region("sec_rate_limit").await;
    let (_, viewer) = create_key(&region.client(), "viewer", "read_only", None).await;
    let http = reqwest::Client::new();
    let url = format!("http://{}/api/v1/subnets", region.http);
    let mut statuses = Vec::new();
    let mut last = None;
    for attempt in 0..30u32 {
        let response = http
            .get(&url)
            .bearer_auth(format!("em_{attempt:012x}_{}", "0".repeat(64)))
            .send()
            .await
            .unwrap();
        statuses.push(response.status());
        last = Some(response);
    }
    assert!(
        statuses[..10]
            .iter()
            .all(|s| *s == StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );
    assert!(
        statuses[10..]
            .iter()
            .all(|s| *s == StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    let last = last.unwrap();
    let retry_after: u64 = last.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body: Value = last.json().await.unwrap();
    assert_eq!(body["code"], "rate_limited");

    let api = region.client();
    assert!(api.healthz().await, "health checks are not throttled");
    // Invented key ids share one bucket per source, but a real key has a
    // bucket of its own: behind the same address (a site's NAT) it works.
    let (status, body) = api.call(Method::GET, "/api/v1/subnets", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Guessing that real key's secret locks that key from here, and only it.
    let real_id = key_id(&region.api_key).to_string();
    let mut guesses = Vec::new();
    for _ in 0..12 {
        let response = http
            .get(&url)
            .bearer_auth(format!("em_{real_id}_{}", "1".repeat(64)))
            .send()
            .await
            .unwrap();
        guesses.push(response.status());
    }
    assert!(
        guesses[..10].iter().all(|s| *s == StatusCode::UNAUTHORIZED)
            && guesses[10..]
                .iter()
                .all(|s| *s == StatusCode::TOO_MANY_REQUESTS),
        "{guesses:?}"
    );
    let (status, _) = api.call(Method::GET, "/api/v1/subnets", None).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "the guessed key is locked from here"
    );
    let (status, body) = api
        .with_key(Some(&viewer))
        .call(Method::GET, "/api/v1/subnets", None)
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "another key from the same source: {body}"
    );
    assert!(!api.metrics().await.contains("status=\"500\""));
}

#[tokio::test]
async fn the_audit_log_records_every_write_without_secrets() {
    let (region, _data) = region("sec_audit").await;
    let admin = region.client();
    let admin_id = key_id(&region.api_key).to_string();

    let created = admin
        .create("/api/v1/subnets", subnet("body-marker-net", "10.42.0.0/24"))
        .await;
    let id = created["id"].as_str().unwrap().to_string();
    let (status, _) = admin
        .call(
            Method::POST,
            "/api/v1/subnets",
            Some(json!({"name": "x", "cidr": "10.43.0.0/24", "gateway": "10.44.0.1"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (viewer_id, viewer_token) = create_key(&admin, "viewer", "read_only", None).await;
    let viewer = admin.with_key(Some(&viewer_token));
    let (status, _) = viewer
        .call(
            Method::POST,
            "/api/v1/subnets",
            Some(subnet("v", "10.45.0.0/24")),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = admin
        .with_key(None)
        .call(Method::DELETE, &format!("/api/v1/subnets/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = admin
        .with_key(Some("em_000000000000_guess"))
        .call(
            Method::PUT,
            &format!("/api/v1/subnets/{id}"),
            Some(subnet("g", "10.46.0.0/24")),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = admin
        .call(Method::DELETE, &format!("/api/v1/subnets/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    admin.get("/api/v1/subnets").await; // reads are not audited

    let entries = admin.get("/api/v1/audit").await;
    let entries = entries.as_array().unwrap();
    let subnet_path = format!("/api/v1/subnets/{id}");
    let subnet_path = subnet_path.as_str();
    let (admin_id, viewer_id) = (admin_id.as_str(), viewer_id.as_str());
    let expected: Vec<(&str, &str, u16, Option<&str>, &str)> = vec![
        ("DELETE", subnet_path, 204, Some(admin_id), "subnet.delete"),
        ("PUT", subnet_path, 401, None, "subnet.update"),
        ("DELETE", subnet_path, 401, None, "subnet.delete"),
        (
            "POST",
            "/api/v1/subnets",
            403,
            Some(viewer_id),
            "subnet.create",
        ),
        (
            "POST",
            "/api/v1/api-keys",
            201,
            Some(admin_id),
            "api_key.create",
        ),
        (
            "POST",
            "/api/v1/subnets",
            422,
            Some(admin_id),
            "subnet.create",
        ),
        (
            "POST",
            "/api/v1/subnets",
            201,
            Some(admin_id),
            "subnet.create",
        ),
    ];
    assert_eq!(entries.len(), expected.len(), "only writes: {entries:#?}");
    for (entry, (method, path, status, key, action)) in entries.iter().zip(&expected) {
        assert_eq!(entry["method"], *method, "{entry}");
        assert_eq!(entry["path"], *path, "{entry}");
        assert_eq!(entry["status"], *status, "{entry}");
        assert_eq!(entry["key_id"].as_str(), *key, "{entry}");
        assert_eq!(entry["action"], *action, "{entry}");
        assert_eq!(entry["source_ip"], "127.0.0.1", "{entry}");
    }
    let times: Vec<i64> = entries
        .iter()
        .map(|e| e["time_ms"].as_i64().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] > w[1]),
        "newest first: {times:?}"
    );

    // No secret, token or request body ever reaches the log.
    let text = Value::Array(entries.clone()).to_string();
    for secret in [&region.api_key, &viewer_token] {
        assert!(!text.contains(secret.rsplit('_').next().unwrap()), "{text}");
    }
    assert!(!text.contains("body-marker-net"), "{text}");

    // Paging: before_ms continues exactly where a page ended.
    let page = admin.get("/api/v1/audit?limit=3").await;
    let page = page.as_array().unwrap();
    assert_eq!(page[..], entries[..3]);
    let next = admin
        .get(&format!("/api/v1/audit?limit=3&before_ms={}", times[2]))
        .await;
    assert_eq!(next.as_array().unwrap()[..], entries[3..6]);
    for (query, status, code) in [
        ("limit=0", StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
        ("limit=1001", StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
        ("limit=many", StatusCode::BAD_REQUEST, "invalid_query"),
        (
            "before_ms=yesterday",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        ("bogus=1", StatusCode::BAD_REQUEST, "invalid_query"),
    ] {
        admin
            .expect_error(
                Method::GET,
                &format!("/api/v1/audit?{query}"),
                None,
                status,
                code,
            )
            .await;
    }
}

#[tokio::test]
async fn admin_commands_refuse_to_create_a_database_unless_told_to() {
    let data = tempfile::tempdir().unwrap();
    let options = RegionOptions::embedded(data.path(), &log_dir("admin_init"));
    for args in [
        &["api-key", "list"][..],
        &["enrolment-token", "create"],
        &["rack", "revoke", "rack-a"],
        &["rotate-master-key"],
    ] {
        let output = options.admin_output(args);
        assert!(!output.status.success(), "{args:?} ran without a database");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("no region database at") && stderr.contains("--init"),
            "{args:?}: {stderr}"
        );
        assert!(output.stdout.is_empty(), "{args:?} printed a result");
    }
    assert!(
        !data.path().join("region.db").exists(),
        "a refused command created the database"
    );

    // With --init the first key creates it; later commands find it.
    let key = options.create_api_key();
    let listed = options.admin(&["api-key", "list"]);
    assert!(listed.contains(key_id(&key)), "{listed}");
}
