//! How the region's API is served: HTTPS with a configured certificate, and
//! the refusal to serve plain HTTP beyond loopback unless explicitly allowed.

use std::net::SocketAddr;
use std::time::Duration;

use edgemetal_tests::process::log_dir;
use edgemetal_tests::{ports, wait_until, ApiClient, ConfiguredRegion, RegionOptions};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn subnet(name: &str, cidr: &str) -> Value {
    json!({"name": name, "cidr": cidr})
}

fn https_client(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap()
}

#[tokio::test]
async fn https_serves_with_a_configured_certificate_and_refuses_plain_http() {
    let data = tempfile::tempdir().unwrap();
    let options = RegionOptions::embedded(data.path(), &log_dir("sec_https"));
    let generated =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let cert_pem = generated.cert.pem();
    let cert = data.path().join("api-cert.pem");
    let key = data.path().join("api-key.pem");
    std::fs::write(&cert, &cert_pem).unwrap();
    std::fs::write(&key, generated.key_pair.serialize_pem()).unwrap();

    let http = ports::free_loopback();
    let region = ConfiguredRegion::spawn(
        &options,
        http,
        &[
            ("EDGEMETAL_API_TLS_CERT", cert.display().to_string()),
            ("EDGEMETAL_API_TLS_KEY", key.display().to_string()),
        ],
    );
    let api = ApiClient::with_http(
        &format!("https://127.0.0.1:{}", http.port()),
        https_client(&cert_pem),
        Some(region.api_key.clone()),
    );
    wait_until("the region's HTTPS API", Duration::from_secs(20), || {
        let api = api.clone();
        async move { api.healthz().await.then_some(()) }
    })
    .await;
    assert_eq!(api.get("/api/v1/subnets").await, json!([]));
    api.create("/api/v1/subnets", subnet("tls-net", "10.47.0.0/24"))
        .await;
    api.with_key(Some("em_000000000000_nope"))
        .expect_error(
            Method::GET,
            "/api/v1/racks",
            None,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        )
        .await;
    // The audit log sees the client address through TLS as well.
    let audit = api.get("/api/v1/audit?limit=1").await;
    assert_eq!(audit[0]["source_ip"], "127.0.0.1", "{audit}");

    // Plain HTTP to the HTTPS port gets no answer it could take for a success.
    let plain = reqwest::Client::new()
        .get(format!("http://{http}/healthz"))
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    assert!(
        plain.as_ref().map_or(true, |r| !r.status().is_success()),
        "plain HTTP was answered: {plain:?}"
    );
    // A client that does not trust the certificate refuses the connection.
    let untrusting = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .build()
        .unwrap();
    assert!(untrusting
        .get(format!("https://127.0.0.1:{}/healthz", http.port()))
        .send()
        .await
        .is_err());
    // And the server is still serving after those failed handshakes.
    assert!(api.healthz().await, "{}", region.log_text());
}

#[tokio::test]
async fn plain_http_beyond_loopback_is_refused_unless_allowed() {
    let data = tempfile::tempdir().unwrap();
    let options = RegionOptions::embedded(data.path(), &log_dir("sec_plaintext"));
    let port = ports::free_loopback().port();
    let exposed: SocketAddr = format!("0.0.0.0:{port}").parse().unwrap();

    let mut refused = ConfiguredRegion::spawn(&options, exposed, &[]);
    let status = refused
        .wait_exit(Duration::from_secs(20))
        .expect("the region must refuse to start");
    assert!(!status.success());
    assert!(
        refused
            .log_text()
            .contains("refusing to serve the API in plain HTTP"),
        "{}",
        refused.log_text()
    );
    drop(refused);

    // Allowed explicitly (e.g. behind a TLS proxy): it serves, and warns.
    let allowed = ConfiguredRegion::spawn(
        &options,
        exposed,
        &[("EDGEMETAL_API_ALLOW_PLAINTEXT", "1".to_string())],
    );
    let api = ApiClient::new(
        format!("127.0.0.1:{port}").parse().unwrap(),
        Some(allowed.api_key.clone()),
    );
    wait_until(
        "the region's plaintext API",
        Duration::from_secs(20),
        || {
            let api = api.clone();
            async move { api.healthz().await.then_some(()) }
        },
    )
    .await;
    api.get("/api/v1/subnets").await;
    assert!(
        allowed.log_text().contains("INSECURE"),
        "{}",
        allowed.log_text()
    );
}
