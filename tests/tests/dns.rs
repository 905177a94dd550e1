//! DNS end to end: zones made in the region API (operator records, machine
//! names from reservations, PTRs, the internal rack names) answered by a
//! rack in a namespace, queried with dig; other names forwarded to a real
//! upstream (dnsmasq) in a third namespace; recursion refused to clients
//! outside the managed networks; the zone and the cache still answered after
//! the rack restarts with the region gone.

use std::process::{Output, Stdio};

use edgemetal_tests::dhcp_site::{start_rack_in, Guard};
use edgemetal_tests::metrics::counter;
use edgemetal_tests::netns::{forward_loopback_port, veth, Netns};
use edgemetal_tests::process::log_dir;
use edgemetal_tests::site::{wait_in_sync, PATIENCE};
use edgemetal_tests::{wait_until, RegionOptions, RegionProcess};
use serde_json::json;

fn dig(ns: &Netns, args: &[&str]) -> String {
    edgemetal_tests::packages::ensure("/usr/bin/dig", "bind9-dnsutils");
    let output: Output = ns
        .command("dig")
        .args(["+time=2", "+tries=2"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("dig");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn a_rack_answers_the_regions_zones_and_forwards_the_rest() {
    edgemetal_tests::packages::ensure("/usr/sbin/dnsmasq", "dnsmasq");
    let logs = log_dir("dns");
    let data = tempfile::tempdir().unwrap();

    // The site: the rack's namespace, a client on the managed subnet, and
    // an "upstream" network (not managed) where dnsmasq plays the internet.
    let server = Netns::create();
    let client = Netns::create();
    let upstream = Netns::create();
    let (server_if, _client_if) = veth(&server, &client, Some("10.88.0.1/24"));
    client.ip(&["addr", "add", "10.88.0.50/24", "dev", &_client_if]);
    let (_wan_if, upstream_if) = veth(&server, &upstream, Some("10.99.0.1/24"));
    upstream.ip(&["addr", "add", "10.99.0.2/24", "dev", &upstream_if]);
    let dnsmasq = Guard(
        upstream
            .command("dnsmasq")
            .args([
                "--no-daemon",
                "--no-resolv",
                "--no-hosts",
                // Not on 53: the forwarder's port travels from the
                // region's setting to the rack.
                "--port=5353",
                "--listen-address=10.99.0.2",
                "--bind-interfaces",
                "--host-record=upstream.test,203.0.113.7",
                "--local-ttl=300",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq"),
    );

    let mut options = RegionOptions::embedded(&data.path().join("region"), &logs);
    options
        .env
        .push(("EDGEMETAL_DNS_FORWARDERS".into(), "10.99.0.2#5353".into()));
    let region = RegionProcess::start(&options).await;
    let api = region.client();
    let subnet = api
        .create(
            "/api/v1/subnets",
            json!({"name": "dns-site", "cidr": "10.88.0.0/24", "gateway": "10.88.0.1",
                   "domain": "site.internal"}),
        )
        .await;
    let id = subnet["id"].as_str().unwrap();
    api.create(
        &format!("/api/v1/subnets/{id}/ranges"),
        json!({"start": "10.88.0.100", "end": "10.88.0.150", "purpose": "dynamic"}),
    )
    .await;
    api.create(
        &format!("/api/v1/subnets/{id}/reservations"),
        json!({"mac": "52:54:00:88:00:20", "address": "10.88.0.20", "hostname": "fixed-node"}),
    )
    .await;
    let domain = api
        .create(
            "/api/v1/domains",
            json!({"name": "lab.example", "ttl": 120}),
        )
        .await;
    let records = format!("/api/v1/domains/{}/records", domain["id"].as_str().unwrap());
    for (name, rtype, data) in [
        ("www", "A", "10.88.0.80".to_string()),
        ("rr", "A", "10.88.0.81".into()),
        ("rr", "A", "10.88.0.82".into()),
        ("rr", "A", "10.88.0.83".into()),
        ("alias", "CNAME", "www.lab.example".into()),
        ("big", "TXT", "x".repeat(3000)),
    ] {
        api.create(&records, json!({"name": name, "type": rtype, "data": data}))
            .await;
    }

    let state = data.path().join("rack");
    region.enrol_rack("dns-rack", &state).await;
    forward_loopback_port(&server, options.embedded_broker.port());
    let rack = start_rack_in(&server, &state, &server_if, &logs.join("rack.log"));
    wait_in_sync(&api, "dns-rack").await;

    let at = "@10.88.0.1";
    // Authoritative answers, with the AA flag.
    let www = dig(&client, &[at, "www.lab.example"]);
    assert!(www.contains("flags: qr aa"), "{www}");
    assert!(www.contains("10.88.0.80"), "{www}");
    assert_eq!(
        dig(&client, &[at, "+short", "alias.lab.example"])
            .lines()
            .last(),
        Some("10.88.0.80")
    );
    // Machine names and their PTRs, from the reservation.
    assert_eq!(
        dig(&client, &[at, "+short", "fixed-node.site.internal"]).trim(),
        "10.88.0.20"
    );
    assert_eq!(
        dig(&client, &[at, "+short", "-x", "10.88.0.20"]).trim(),
        "fixed-node.site.internal."
    );
    // The internal name of the subnet resolves to its rack.
    assert_eq!(
        dig(&client, &[at, "+short", "dns-site.edgemetal-internal"]).trim(),
        "10.88.0.1"
    );
    // Round robin: the order changes from query to query.
    let orders: std::collections::BTreeSet<String> = (0..6)
        .map(|_| dig(&client, &[at, "+short", "rr.lab.example"]))
        .collect();
    assert!(orders.len() > 1, "{orders:?}");
    // NXDOMAIN with the zone's SOA.
    let missing = dig(&client, &[at, "nope.lab.example"]);
    assert!(missing.contains("status: NXDOMAIN"), "{missing}");
    assert!(missing.contains("SOA"), "{missing}");
    // A large answer: truncated over UDP, complete over TCP.
    let big = dig(&client, &[at, "+bufsize=1232", "big.lab.example", "TXT"]);
    assert!(big.contains("Truncated, retrying in TCP mode"), "{big}");
    assert_eq!(big.matches(&"x".repeat(255)).count(), 11, "{big}");
    // Forwarded to the upstream and cached.
    assert_eq!(
        dig(&client, &[at, "+short", "upstream.test"]).trim(),
        "203.0.113.7"
    );
    // Outside the managed networks: the zones yes, recursion no.
    let outsider = dig(&upstream, &["@10.99.0.1", "upstream.test"]);
    assert!(outsider.contains("status: REFUSED"), "{outsider}");
    assert!(dig(&upstream, &["@10.99.0.1", "+short", "www.lab.example"]).contains("10.88.0.80"));

    // Changes to an in-sync rack travel as deltas, not snapshots: a new
    // machine name, a new record, a record removed.
    let metrics = api.metrics().await;
    let snapshots = counter(&metrics, "edgemetal_region_snapshots_published_total");
    let deltas = counter(&metrics, "edgemetal_region_config_deltas_published_total");
    api.create(
        &format!("/api/v1/subnets/{id}/reservations"),
        json!({"mac": "52:54:00:88:00:21", "address": "10.88.0.21", "hostname": "late-node"}),
    )
    .await;
    let temporary = api
        .create(
            &records,
            json!({"name": "temp", "type": "A", "data": "10.88.0.90"}),
        )
        .await;
    wait_in_sync(&api, "dns-rack").await;
    assert_eq!(
        dig(&client, &[at, "+short", "late-node.site.internal"]).trim(),
        "10.88.0.21"
    );
    assert_eq!(
        dig(&client, &[at, "+short", "temp.lab.example"]).trim(),
        "10.88.0.90"
    );
    let (status, body) = api
        .call(
            reqwest::Method::DELETE,
            &format!("{records}/{}", temporary["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert!(status.is_success(), "{status} {body}");
    wait_in_sync(&api, "dns-rack").await;
    let gone = dig(&client, &[at, "temp.lab.example"]);
    assert!(gone.contains("status: NXDOMAIN"), "{gone}");
    // The rest of the zone is still served.
    assert!(dig(&client, &[at, "+short", "www.lab.example"]).contains("10.88.0.80"));
    let metrics = api.metrics().await;
    assert!(
        counter(&metrics, "edgemetal_region_config_deltas_published_total") >= deltas + 3,
        "three changes, three deltas"
    );
    assert_eq!(
        counter(&metrics, "edgemetal_region_snapshots_published_total"),
        snapshots,
        "no full snapshot for an in-sync rack"
    );

    // The WAN goes, the upstream goes, and the rack restarts: it still
    // answers the zone (persisted with the snapshot) and the cached name.
    region.kill();
    drop(dnsmasq);
    // A clean restart (SIGTERM, as a service manager does); the cache is
    // also saved every 30 s, which is what a crash would fall back to.
    let mut rack = rack;
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(rack.0.id() as i32, libc::SIGTERM) };
    let _ = rack.0.wait();
    let _rack = start_rack_in(
        &server,
        &state,
        &server_if,
        &logs.join("rack-restarted.log"),
    );
    wait_until("the restarted rack to answer", PATIENCE, || {
        let answer = dig(&client, &[at, "+short", "www.lab.example"]);
        async move { answer.contains("10.88.0.80").then_some(()) }
    })
    .await;
    assert_eq!(
        dig(&client, &[at, "+short", "upstream.test"]).trim(),
        "203.0.113.7"
    );
}
