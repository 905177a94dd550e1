//! Shared set-ups for end-to-end tests: a secured site (region, Mosquitto
//! with TLS and region-maintained ACLs, optionally PostgreSQL), waiting for a
//! rack to be in sync, and reading a rack's credentials as an attacker would.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::mosquitto::ClientLogin;
use crate::{wait_until, ApiClient, Mosquitto, Postgres, RegionOptions, RegionProcess};

/// How long a wait may take before a test fails.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// The region's record of a rack, if any.
pub async fn rack_record(api: &ApiClient, rack: &str) -> Option<Value> {
    let (status, body) = api
        .call(reqwest::Method::GET, &format!("/api/v1/racks/{rack}"), None)
        .await;
    status.is_success().then_some(body)
}

/// Waits until the region shows `rack` online and serving the region's current generation.
pub async fn wait_in_sync(api: &ApiClient, rack: &str) -> Value {
    wait_until(
        &format!("rack {rack} online and in sync"),
        PATIENCE,
        || async {
            rack_record(api, rack)
                .await
                .filter(|r| r["status"] == "online" && r["in_sync"] == true)
        },
    )
    .await
}

/// Waits until a rack shows `status`.
pub async fn wait_status(api: &ApiClient, rack: &str, status: &str) {
    wait_until(&format!("rack {rack} {status}"), PATIENCE, || async {
        rack_record(api, rack)
            .await
            .filter(|r| r["status"] == status)
            .map(|_| ())
    })
    .await
}

/// Creates a /24 subnet with a dynamic range; returns its id.
pub async fn create_site(api: &ApiClient, prefix: &str) -> String {
    let subnet = api
        .create(
            "/api/v1/subnets",
            json!({"name": format!("site-{}", prefix.replace('.', "-")), "cidr": format!("{prefix}.0/24"), "gateway": format!("{prefix}.1")}),
        )
        .await;
    let id = subnet["id"].as_str().unwrap().to_string();
    api.create(
        &format!("/api/v1/subnets/{id}/ranges"),
        json!({"start": format!("{prefix}.100"), "end": format!("{prefix}.199"), "purpose": "dynamic"}),
    )
    .await;
    id
}

/// Region, PostgreSQL and a Mosquitto with TLS, passwords and ACLs the region maintains.
/// A site whose broker is a secured Mosquitto.
pub struct SecuredSite {
    /// The broker.
    pub mosquitto: Mosquitto,
    /// The region.
    pub region: RegionProcess,
    /// How the region was started.
    pub options: RegionOptions,
    /// The database, when PostgreSQL.
    pub _postgres: Option<Postgres>,
}

/// Starts a secured site with data under `data`.
pub async fn secured_site(data: &Path, logs: &Path, postgres: bool) -> SecuredSite {
    let mut options = RegionOptions::embedded(&data.join("region"), logs);
    let pki_ca = options.admin(&["init-pki"]);
    let pki_dir = Path::new(&pki_ca).parent().unwrap().to_path_buf();
    let (mosquitto, files) = Mosquitto::start_secured(&pki_dir);
    let pg = postgres.then(Postgres::start);
    if let Some(pg) = &pg {
        options.database_url = Some(pg.create_database("site"));
    }
    options.broker_url = Some(mosquitto.tls_url());
    options.env = vec![
        (
            "EDGEMETAL_MOSQUITTO_PASSWORD_FILE".into(),
            files.password_file.display().to_string(),
        ),
        (
            "EDGEMETAL_MOSQUITTO_ACL_FILE".into(),
            files.acl_file.display().to_string(),
        ),
        (
            "EDGEMETAL_MOSQUITTO_PID_FILE".into(),
            files.pid_file.display().to_string(),
        ),
    ];
    let region = RegionProcess::start(&options).await;
    SecuredSite {
        mosquitto,
        region,
        options,
        _postgres: pg,
    }
}

/// A rack's broker login as enrolment gave it.
pub fn rack_login(state: &Path, ca: &Path) -> (ClientLogin, Value) {
    let identity: Value =
        serde_json::from_slice(&std::fs::read(state.join("identity.json")).unwrap()).unwrap();
    let user = identity["broker_username"].as_str().unwrap().to_string();
    let login = ClientLogin {
        credentials: Some((
            user.clone(),
            identity["broker_password"].as_str().unwrap().to_string(),
        )),
        cafile: Some(ca.to_path_buf()),
        client_id: Some(format!("edgemetal-rack-{user}")),
        host: None,
    };
    (login, identity)
}

/// Waits until the region lists a lease of `address` whose `field` is
/// `value` (e.g. `state` = `bound`, `rack_id` = `rack-a`); returns it.
pub async fn wait_for_lease(api: &ApiClient, address: &str, field: &str, value: &str) -> Value {
    wait_until(
        &format!("a lease of {address} with {field} {value} in the region"),
        PATIENCE,
        || async {
            let leases = api.get("/api/v1/leases").await;
            leases
                .as_array()?
                .iter()
                .find(|l| l["address"] == address && l[field] == value)
                .cloned()
        },
    )
    .await
}
