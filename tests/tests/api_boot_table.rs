//! The operator's boot table through the region's API: subnet and machine
//! settings round-trip, what a rack could not serve is refused with a JSON
//! error and changes nothing, and boot files are stored under their path.

use edgemetal_tests::process::log_dir;
use edgemetal_tests::{RegionOptions, RegionProcess};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A 422 with the API's JSON error whose message mentions `needle`.
fn refused(status: StatusCode, body: &Value, needle: &str) {
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["code"], "invalid", "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains(needle), "{needle:?} not in {body}");
}

#[tokio::test]
async fn boot_settings_are_validated_stored_and_refused_without_side_effects() {
    let data = tempfile::tempdir().unwrap();
    let options = RegionOptions::embedded(data.path(), &log_dir("api_boot_table"));
    let region = RegionProcess::start(&options).await;
    let api = region.client();
    let subnet = |extra: Value| {
        let mut spec = json!({"name": "site", "cidr": "10.21.0.0/24"});
        spec.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        spec
    };

    // Subnets: bad settings are refused and nothing is created.
    for (extra, needle) in [
        (json!({"boot": {"ipxe_script": "echo hi"}}), "#!ipxe"),
        (json!({"boot": {"ipxe_url": "ftp://x/y.ipxe"}}), "http"),
        (
            json!({"boot": {"ipxe_script": "#!ipxe\n", "ipxe_url": "http://x/y"}}),
            "not both",
        ),
        (json!({"boot": {"loaders": {"uefi": "ipxe.efi"}}}), "slot"),
        (
            json!({"boot": {"loaders": {"bios": "../../etc/passwd"}}}),
            "loader",
        ),
    ] {
        let (status, body) = api
            .call(Method::POST, "/api/v1/subnets", Some(subnet(extra)))
            .await;
        refused(status, &body, needle);
    }
    for extra in [
        json!({"boot": {"script": "#!ipxe\n"}}),
        json!({"router_advertisements": "sometimes"}),
    ] {
        let (status, body) = api
            .call(Method::POST, "/api/v1/subnets", Some(subnet(extra)))
            .await;
        assert!(status.is_client_error(), "{status} {body}");
        assert!(body["message"].is_string(), "{body}");
    }
    assert_eq!(api.get("/api/v1/subnets").await, json!([]));

    let boot = json!({"ipxe_url": "https://boot.example/site.ipxe",
                      "loaders": {"uefi-x64": "ipxe.efi"}});
    let created = api
        .create(
            "/api/v1/subnets",
            subnet(json!({"boot": boot, "router_advertisements": "off"})),
        )
        .await;
    assert_eq!(created["boot"], boot);
    assert_eq!(created["router_advertisements"], "off");
    let path = format!("/api/v1/subnets/{}", created["id"].as_str().unwrap());
    let (status, body) = api
        .call(
            Method::PUT,
            &path,
            Some(subnet(json!({"boot": {"loaders": {"bios": "a/b"}}}))),
        )
        .await;
    refused(status, &body, "loader");
    assert_eq!(
        api.get(&path).await,
        created,
        "a refused update changes nothing"
    );
    let plain = api.get("/api/v1/subnets").await;
    assert_eq!(plain.as_array().unwrap().len(), 1);

    // Machines: their own settings, `{}` back to the subnet's.
    let machine = api
        .create(
            "/api/v1/machines",
            json!({"mac": "52:54:00:21:00:01", "architecture": "amd64"}),
        )
        .await;
    let settings = format!(
        "/api/v1/machines/{}/boot-settings",
        machine["id"].as_str().unwrap()
    );
    assert_eq!(api.get(&settings).await, json!({}));
    let (status, body) = api
        .call(
            Method::PUT,
            &settings,
            Some(json!({"ipxe_url": "http://x/a b"})),
        )
        .await;
    refused(status, &body, "spaces");
    assert_eq!(api.get(&settings).await, json!({}));
    let own = json!({"ipxe_script": "#!ipxe\nchain http://${next-server}:5248/files/m.ipxe\n",
                     "loaders": {"uefi-x64": "snponly.efi"}});
    let (status, body) = api.call(Method::PUT, &settings, Some(own.clone())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(api.get(&settings).await, own);
    let (status, _) = api.call(Method::PUT, &settings, Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(api.get(&settings).await, json!({}));
    let (status, body) = api
        .call(Method::GET, "/api/v1/machines/nope/boot-settings", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // Boot files: stored under their path in the tree, which cannot escape.
    for name in ["../x", "a//b", "/abs", ".hidden/x"] {
        let (status, body) = api
            .upload(
                &format!("/api/v1/boot-resources?name={name}&kind=file"),
                b"x".to_vec(),
                &[],
            )
            .await;
        refused(status, &body, "invalid name");
    }
    let (status, file) = api
        .upload(
            "/api/v1/boot-resources?name=menus/site.ipxe&kind=file",
            b"#!ipxe\nshell\n".to_vec(),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{file}");
    assert_eq!(file["kind"], "file");
    assert_eq!(file["architecture"], "all");
    let (status, body) = api
        .upload(
            "/api/v1/boot-resources?name=menus/form.ipxe&kind=file",
            b"--x\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\nx\r\n--x--\r\n".to_vec(),
            &[("content-type", "multipart/form-data; boundary=x")],
        )
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    let resources = api.get("/api/v1/boot-resources").await;
    assert_eq!(resources.as_array().unwrap().len(), 1, "{resources}");
}
