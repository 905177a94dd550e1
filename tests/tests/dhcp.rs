//! The rack's DHCP server against real clients in network namespaces, served
//! from the persisted snapshot while the region is down (the WAN-cut case).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use edgemetal_tests::dhcp_site::{
    enrolled_rack_keeping_region, enrolled_rack_with_subnet, field, start_rack_in, udhcpc,
    udhcpc_script, Guard,
};
use edgemetal_tests::netns::{veth, Netns};
use edgemetal_tests::process::log_dir;
use edgemetal_tests::site::{wait_for_lease, PATIENCE};
use edgemetal_tests::{wait_until, RackProcess, RegionProcess};

#[tokio::test]
async fn udhcpc_gets_renews_and_releases_a_lease_while_the_region_is_down() {
    let logs = log_dir("dhcp_udhcpc");
    let data = tempfile::tempdir().unwrap();
    let state = enrolled_rack_with_subnet(data.path(), &logs, "10.77.0").await;

    let server = Netns::create();
    let client = Netns::create();
    let (server_if, client_if) = veth(&server, &client, Some("10.77.0.1/24"));
    let _rack = start_rack_in(&server, &state, &server_if, &logs.join("rack-dhcp.log"));

    let (script, events) = udhcpc_script(data.path());
    // Without the broadcast flag: the rack must unicast to the client's hardware address.
    // udhcpc retries (1 s apart) until the rack answers: that is the readiness check.
    let run = |extra: &[&str]| {
        let output = client
            .command("udhcpc")
            .args([
                "-f", "-q", "-n", "-t", "20", "-T", "1", "-i", &client_if, "-s",
            ])
            .arg(&script)
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "udhcpc {extra:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    };
    run(&[]);
    let text = std::fs::read_to_string(&events).unwrap();
    let bound = text
        .lines()
        .find(|l| l.starts_with("bound"))
        .expect("a bound event");
    let address: std::net::Ipv4Addr = field(bound, "ip").parse().unwrap();
    let last = address.octets()[3];
    assert!((100..=150).contains(&last), "{bound}");
    assert_eq!(field(bound, "router"), "10.77.0.1");
    assert_eq!(field(bound, "dns"), "10.77.0.1");
    assert_eq!(field(bound, "domain"), "site.internal");
    assert_eq!(field(bound, "lease"), "600");
    assert_eq!(field(bound, "mask"), "24");
    assert_eq!(field(bound, "serverid"), "10.77.0.1");

    // Again, asking for the same address with the broadcast flag, then releasing it on exit.
    std::fs::remove_file(&events).unwrap();
    run(&["-B", "-r", &address.to_string()]);
    let text = std::fs::read_to_string(&events).unwrap();
    let bound = text
        .lines()
        .find(|l| l.starts_with("bound"))
        .expect("a bound event");
    assert_eq!(
        field(bound, "ip"),
        address.to_string(),
        "the same client gets its address back"
    );

    let rack_leases = Command::new("ip")
        .args([
            "netns",
            "exec",
            &server.name,
            "curl",
            "-fsS",
            "http://127.0.0.1:5250/status",
        ])
        .output()
        .unwrap();
    assert!(rack_leases.status.success());
    let status: serde_json::Value = serde_json::from_slice(&rack_leases.stdout).unwrap();
    assert_eq!(
        status["link_connected"], false,
        "served with the region down"
    );
}

/// A dhclient hook: records what the client was given, and configures the
/// interface itself (the stock dhclient-script would rewrite the host's
/// /etc/resolv.conf, which the namespace shares).
fn dhclient_script(dir: &Path) -> (PathBuf, PathBuf) {
    let out = dir.join("dhclient-events.txt");
    let script = dir.join("dhclient-hook.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             echo \"$reason ip=$new_ip_address router=$new_routers dns=$new_domain_name_servers lease=$new_dhcp_lease_time\" >> {}\n\
             case $reason in\n\
               BOUND|RENEW|REBIND|REBOOT) ip addr flush dev $interface; ip addr add $new_ip_address/24 dev $interface ;;\n\
               RELEASE|EXPIRE|FAIL|STOP) ip addr flush dev $interface ;;\n\
             esac\n",
            out.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (script, out)
}

#[tokio::test]
async fn dhclient_gets_reboots_into_and_releases_its_lease() {
    let logs = log_dir("dhcp_dhclient");
    let data = tempfile::tempdir().unwrap();
    let state = enrolled_rack_with_subnet(data.path(), &logs, "10.78.0").await;
    let server = Netns::create();
    let client = Netns::create();
    let (server_if, client_if) = veth(&server, &client, Some("10.78.0.1/24"));
    let _rack = start_rack_in(&server, &state, &server_if, &logs.join("rack-dhcp.log"));
    let (script, events) = dhclient_script(data.path());
    let (leases, pid) = (
        data.path().join("dhclient.leases"),
        data.path().join("dhclient.pid"),
    );
    let dhclient = |extra: &[&str]| {
        let output = client
            .command("dhclient")
            .args(extra)
            .arg("-lf")
            .arg(&leases)
            .arg("-pf")
            .arg(&pid)
            .arg("-sf")
            .arg(&script)
            .arg(&client_if)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "dhclient {extra:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    // -1: one attempt (dhclient retries DISCOVER itself until the rack answers, ~60 s cap).
    dhclient(&["-1"]);
    let text = std::fs::read_to_string(&events).unwrap();
    let bound = text
        .lines()
        .find(|l| l.starts_with("BOUND"))
        .expect("BOUND");
    let address = field(bound, "ip").to_string();
    assert!(address.starts_with("10.78.0.1"), "{bound}");
    assert_eq!(field(bound, "router"), "10.78.0.1");
    assert_eq!(field(bound, "lease"), "600");

    // Release (this also stops the dhclient daemon); the rack journals it durably.
    dhclient(&["-r"]);
    let journal_path = state.join("dhcp-leases.jsonl");
    let journal = wait_until("the release in the lease journal", PATIENCE, || {
        let path = journal_path.clone();
        async move {
            std::fs::read_to_string(&path)
                .ok()
                .filter(|j| j.contains("\"op\":\"release\""))
        }
    })
    .await;
    assert!(
        journal.contains(&format!("\"address\":\"{address}\"")),
        "{journal}"
    );

    // Coming back (INIT-REBOOT with the remembered lease) gets the same address.
    std::fs::remove_file(&events).unwrap();
    dhclient(&["-1"]);
    let text = std::fs::read_to_string(&events).unwrap();
    let again = text
        .lines()
        .find(|l| l.starts_with("BOUND") || l.starts_with("REBOOT"))
        .expect("bound again");
    assert_eq!(field(again, "ip"), address);
    dhclient(&["-r"]);
}

#[tokio::test]
async fn a_client_behind_dhcrelay_gets_an_address_from_the_relayed_subnet() {
    let logs = log_dir("dhcp_relay");
    let data = tempfile::tempdir().unwrap();
    // The client's subnet is one the rack has no address on: it is reached through the relay.
    let state = enrolled_rack_with_subnet(data.path(), &logs, "10.81.0").await;
    let server = Netns::create();
    let relay = Netns::create();
    let client = Netns::create();
    let (server_if, relay_up) = veth(&server, &relay, Some("10.82.0.1/24"));
    relay.ip(&["addr", "add", "10.82.0.2/24", "dev", &relay_up]);
    let (relay_down, client_if) = veth(&relay, &client, Some("10.81.0.1/24"));
    // Replies go to the relay's address on the client subnet (giaddr).
    server.ip(&["route", "add", "10.81.0.0/24", "via", "10.82.0.2"]);

    let _rack = start_rack_in(&server, &state, &server_if, &logs.join("rack-dhcp.log"));
    let relay_log = std::fs::File::create(logs.join("dhcrelay.log")).unwrap();
    let _relay = Guard(
        relay
            .command("dhcrelay")
            // -a: add option 82 (circuit id), which the rack must echo back unchanged.
            .args([
                "-4",
                "-d",
                "-a",
                "-id",
                &relay_down,
                "-iu",
                &relay_up,
                "10.82.0.1",
            ])
            .stdout(relay_log.try_clone().unwrap())
            .stderr(relay_log)
            .spawn()
            .expect("dhcrelay (package isc-dhcp-relay)"),
    );

    let (script, events) = udhcpc_script(data.path());
    let output = udhcpc(&client, &client_if, &script, &[]);
    assert!(
        output.status.success(),
        "udhcpc behind the relay failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(&events).unwrap();
    let bound = text
        .lines()
        .find(|l| l.starts_with("bound"))
        .expect("a bound event");
    let address: std::net::Ipv4Addr = field(bound, "ip").parse().unwrap();
    assert_eq!(&address.octets()[..3], &[10, 81, 0], "{bound}");
    assert!((100..=150).contains(&address.octets()[3]), "{bound}");
    assert_eq!(field(bound, "router"), "10.81.0.1");
    // The rack names itself by the address the relay reached it on.
    assert_eq!(field(bound, "serverid"), "10.82.0.1");
}

#[tokio::test]
async fn perfdhcp_completes_hundreds_of_exchanges_without_drops() {
    let logs = log_dir("dhcp_perfdhcp");
    let data = tempfile::tempdir().unwrap();
    let state = enrolled_rack_with_subnet(data.path(), &logs, "10.83.0").await;
    let server = Netns::create();
    let client = Netns::create();
    let (server_if, client_if) = veth(&server, &client, Some("10.83.0.1/24"));
    // perfdhcp acts as a relay from its own address (giaddr) on the subnet.
    client.ip(&["addr", "add", "10.83.0.2/24", "dev", &client_if]);
    let _rack = start_rack_in(&server, &state, &server_if, &logs.join("rack-dhcp.log"));
    // Readiness: one client gets a lease (udhcpc retries until the rack answers).
    let (script, _) = udhcpc_script(data.path());
    let probe = udhcpc(&client, &client_if, &script, &[]);
    assert!(probe.status.success());
    client.ip(&["addr", "replace", "10.83.0.2/24", "dev", &client_if]);

    // 300 DORA exchanges among 40 clients (the pool holds 51 addresses).
    let output = client
        .command("perfdhcp")
        .args([
            "-4", "-r", "100", "-n", "300", "-R", "40", "-p", "20", "-W", "2000000", "-l",
            &client_if,
        ])
        .output()
        .expect("perfdhcp (package kea-admin)");
    let report = String::from_utf8_lossy(&output.stdout).to_string();
    std::fs::write(logs.join("perfdhcp.txt"), &report).unwrap();
    let drops: Vec<&str> = report.lines().filter(|l| l.contains("drops:")).collect();
    assert!(
        drops.len() >= 2,
        "perfdhcp printed no exchange statistics:\n{report}"
    );
    for line in drops {
        assert!(line.contains("drops: 0"), "{line}\n{report}");
    }
    let sent: u64 = report
        .lines()
        .find(|l| l.contains("sent packets:"))
        .and_then(|l| l.split("sent packets: ").nth(1))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(sent >= 300, "only {sent} exchanges:\n{report}");
}

/// Addresses and the clients their bind records name, from the lease journal.
fn binds(journal: &str) -> Vec<(String, String)> {
    journal
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|record| record["op"] == "bind")
        .map(|record| {
            (
                record["lease"]["address"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                record["lease"]["client_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

fn acks(report: &str) -> u64 {
    // The REQUEST-ACK section's "received packets" line.
    report
        .split("***Statistics for: REQUEST-ACK***")
        .nth(1)
        .and_then(|section| {
            section
                .lines()
                .find_map(|l| l.strip_prefix("received packets: "))
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_rack_killed_under_load_keeps_every_acknowledged_lease_and_never_doubles_one() {
    let logs = log_dir("dhcp_crash");
    let data = tempfile::tempdir().unwrap();
    let state = enrolled_rack_with_subnet(data.path(), &logs, "10.84.0").await;
    let server = Netns::create();
    let client = Netns::create();
    let (server_if, client_if) = veth(&server, &client, Some("10.84.0.1/24"));
    client.ip(&["addr", "add", "10.84.0.2/24", "dev", &client_if]);
    let journal_path = state.join("dhcp-leases.jsonl");
    let perfdhcp = |clients: &str| {
        client
            .command("perfdhcp")
            .args([
                "-4", "-r", "50", "-n", "100", "-R", clients, "-W", "1000000", "-l", &client_if,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("perfdhcp")
    };

    // Load, and kill -9 the rack once some leases are on disk.
    let rack = start_rack_in(&server, &state, &server_if, &logs.join("rack-1.log"));
    let load = perfdhcp("20");
    wait_until("some leases in the journal", PATIENCE, || {
        let path = journal_path.clone();
        async move {
            (binds(&std::fs::read_to_string(&path).unwrap_or_default()).len() >= 10).then_some(())
        }
    })
    .await;
    drop(rack); // SIGKILL
    let report = String::from_utf8_lossy(&load.wait_with_output().unwrap().stdout).to_string();
    std::fs::write(logs.join("perfdhcp-1.txt"), &report).unwrap();
    let acked = acks(&report);
    let journaled = binds(&std::fs::read_to_string(&journal_path).unwrap());
    assert!(acked > 0, "{report}");
    assert!(
        journaled.len() as u64 >= acked,
        "{acked} ACKs were sent but only {} binds are durable",
        journaled.len()
    );

    // Restart from the journal and serve other clients: no address may go
    // to a second client while its first lease runs (600 s, longer than the test).
    let _rack = start_rack_in(&server, &state, &server_if, &logs.join("rack-2.log"));
    let (script, _) = udhcpc_script(data.path());
    let probe = udhcpc(&client, &client_if, &script, &[]);
    assert!(probe.status.success(), "the restarted rack serves");
    client.ip(&["addr", "replace", "10.84.0.2/24", "dev", &client_if]);
    let report =
        String::from_utf8_lossy(&perfdhcp("20").wait_with_output().unwrap().stdout).to_string();
    std::fs::write(logs.join("perfdhcp-2.txt"), &report).unwrap();
    assert!(acks(&report) > 0, "{report}");
    let mut owner = std::collections::HashMap::new();
    for (address, client_id) in binds(&std::fs::read_to_string(&journal_path).unwrap()) {
        let first = owner
            .entry(address.clone())
            .or_insert_with(|| client_id.clone());
        assert_eq!(*first, client_id, "{address} was given to two clients");
    }
}

#[tokio::test]
async fn leases_and_discoveries_made_while_the_region_is_down_reach_it_when_it_returns() {
    let logs = log_dir("dhcp_events");
    let data = tempfile::tempdir().unwrap();
    let (state, options) = enrolled_rack_keeping_region(
        data.path(),
        &logs,
        "10.85.0.0/24",
        "10.85.0.1",
        "10.85.0.100",
        "10.85.0.150",
    )
    .await;
    let server = Netns::create();
    let client = Netns::create();
    let (server_if, client_if) = veth(&server, &client, Some("10.85.0.1/24"));
    let rack = start_rack_in(&server, &state, &server_if, &logs.join("rack-dhcp.log"));
    // A PXE client (vendor class PXEClient, option 93 = x64 UEFI) the region has never seen.
    let (script, events) = udhcpc_script(data.path());
    let output = client
        .command("udhcpc")
        .args([
            "-f",
            "-q",
            "-n",
            "-t",
            "20",
            "-T",
            "1",
            "-V",
            "PXEClient",
            "-x",
            "0x5d:0007",
        ])
        .args(["-i", &client_if, "-s"])
        .arg(&script)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(&events).unwrap();
    let bound = text
        .lines()
        .find(|l| l.starts_with("bound"))
        .expect("bound");
    let address = field(bound, "ip").to_string();
    drop(rack);
    let queued = std::fs::read_to_string(state.join("events.jsonl")).unwrap();
    assert!(
        queued.contains("Discovery") && queued.contains("Lease"),
        "{queued}"
    );

    // The region comes back; the rack (now reachable) delivers its queue in order.
    let region = RegionProcess::start(&options).await;
    let api = region.client();
    let _rack = RackProcess::start(&state, &logs.join("rack-link.log")).await;
    let lease = wait_for_lease(&api, &address, "state", "bound").await;
    let mac = lease["mac"].as_str().unwrap().to_string();
    let machines = api.get("/api/v1/machines").await;
    let machine = machines
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mac"] == mac.as_str())
        .unwrap_or_else(|| panic!("the PXE client {mac} was not enlisted: {machines}"));
    assert_eq!(machine["architecture"], "amd64");
    // Acknowledged events leave the rack's queue.
    wait_until("the rack's queue to drain", PATIENCE, || {
        let path = state.join("events.jsonl");
        async move {
            std::fs::read_to_string(&path)
                .map(|t| t.trim().is_empty())
                .unwrap_or(true)
                .then_some(())
        }
    })
    .await;
    let filtered = api.get(&format!("/api/v1/leases?mac={mac}")).await;
    assert_eq!(filtered.as_array().unwrap().len(), 1);
}
