//! DHCP benchmark: perfdhcp against edgemetal, Kea (memfile, persisted) and
//! dnsmasq (lease file), in the same namespaces and run, printing leases/s
//! and the ratios. Ignored in the test suite: run it with `hil/bench-dhcp.sh`.

use std::path::Path;
use std::process::Stdio;

use edgemetal_tests::dhcp_site::{enrolled_rack_with, start_rack_in, udhcpc_script, Guard};
use edgemetal_tests::netns::{veth, Netns};
use edgemetal_tests::packages;
use edgemetal_tests::process::log_dir;

const SUBNET: &str = "10.90.0.0/16";
const POOL: (&str, &str) = ("10.90.1.0", "10.90.255.254");

struct Result {
    server: &'static str,
    rate: f64,
    drops_percent: f64,
}

fn kea(ns: &Netns, interface: &str, dir: &Path) -> Guard {
    packages::ensure("/usr/sbin/kea-dhcp4", "kea-dhcp4-server");
    let config = dir.join("kea.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"Dhcp4": {{
  "interfaces-config": {{"interfaces": ["{interface}"], "dhcp-socket-type": "raw"}},
  "lease-database": {{"type": "memfile", "persist": true, "name": "{dir}/kea-leases.csv", "lfc-interval": 0}},
  "multi-threading": {{"enable-multi-threading": true, "thread-pool-size": 2, "packet-queue-size": 64}},
  "valid-lifetime": 600,
  "subnet4": [{{"id": 1, "subnet": "{SUBNET}", "pools": [{{"pool": "{} - {}"}}],
               "option-data": [{{"name": "routers", "data": "10.90.0.1"}}]}}]
}}}}"#,
            POOL.0,
            POOL.1,
            dir = dir.display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("kea.log")).unwrap();
    Guard(
        ns.command("kea-dhcp4")
            .arg("-c")
            .arg(&config)
            .env("KEA_LOCKFILE_DIR", dir)
            .env("KEA_PIDFILE_DIR", dir)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

fn dnsmasq(ns: &Netns, interface: &str, dir: &Path) -> Guard {
    packages::ensure("/usr/sbin/dnsmasq", "dnsmasq");
    let log = std::fs::File::create(dir.join("dnsmasq.log")).unwrap();
    Guard(
        ns.command("dnsmasq")
            .args([
                "-d",
                "-C",
                "/dev/null",
                "--port=0",
                "--bind-interfaces",
                "--no-ping",
            ])
            .arg(format!("--interface={interface}"))
            .arg(format!(
                "--dhcp-range={},{},255.255.0.0,10m",
                POOL.0, POOL.1
            ))
            .arg(format!("--dhcp-leasefile={}/dnsmasq.leases", dir.display()))
            .arg(format!("--pid-file={}/dnsmasq.pid", dir.display()))
            .arg("--dhcp-lease-max=1000000")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

/// Waits until the server answers a real client, then runs perfdhcp.
fn measure(
    server: &'static str,
    client: &Netns,
    interface: &str,
    dir: &Path,
    rate: u32,
    secs: u32,
) -> Result {
    let (script, _) = udhcpc_script(dir);
    let probe = client
        .command("udhcpc")
        .args([
            "-f", "-q", "-n", "-t", "30", "-T", "1", "-i", interface, "-s",
        ])
        .arg(&script)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(probe.status.success(), "{server} never answered");
    client.ip(&["addr", "replace", "10.90.0.2/16", "dev", interface]);
    let output = client
        .command("perfdhcp")
        .args([
            "-4",
            "-r",
            &rate.to_string(),
            "-p",
            &secs.to_string(),
            "-R",
            "1000000",
            "-W",
            "2000000",
            "-l",
            interface,
        ])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout).to_string();
    std::fs::write(dir.join(format!("perfdhcp-{server}.txt")), &report).unwrap();
    let rate = report
        .lines()
        .find_map(|l| l.strip_prefix("Rate: "))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|r| r.parse().ok())
        .unwrap_or(0.0);
    let drops_percent = report
        .lines()
        .filter_map(|l| l.strip_prefix("drops ratio: "))
        .filter_map(|r| r.split_whitespace().next())
        .filter_map(|r| r.parse::<f64>().ok())
        .fold(0.0, f64::max);
    Result {
        server,
        rate,
        drops_percent,
    }
}

#[tokio::test]
#[ignore = "benchmark: run with hil/bench-dhcp.sh"]
async fn dhcp_leases_per_second_against_kea_and_dnsmasq() {
    let rate: u32 = std::env::var("BENCH_RATE")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5000);
    let secs: u32 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(10);
    let logs = log_dir("dhcp_bench");
    let data = tempfile::tempdir().unwrap();
    let state = enrolled_rack_with(data.path(), &logs, SUBNET, "10.90.0.1", POOL.0, POOL.1).await;
    let mut results = Vec::new();
    for server in ["edgemetal", "kea", "dnsmasq"] {
        let server_ns = Netns::create();
        let client = Netns::create();
        let (server_if, client_if) = veth(&server_ns, &client, Some("10.90.0.1/16"));
        let dir = data.path().join(server);
        std::fs::create_dir_all(&dir).unwrap();
        let _guard: Box<dyn std::any::Any> = match server {
            "edgemetal" => {
                let _ = std::fs::remove_file(state.join("dhcp-leases.jsonl"));
                Box::new(start_rack_in(
                    &server_ns,
                    &state,
                    &server_if,
                    &logs.join("rack.log"),
                ))
            }
            "kea" => Box::new(kea(&server_ns, &server_if, &dir)),
            _ => Box::new(dnsmasq(&server_ns, &server_if, &dir)),
        };
        results.push(measure(server, &client, &client_if, &dir, rate, secs));
    }
    println!("\nperfdhcp -r {rate} -p {secs}, /16 pool, durable leases on every server:");
    println!("{:<10} {:>12} {:>10}", "server", "leases/s", "drops %");
    for r in &results {
        println!(
            "{:<10} {:>12.0} {:>10.2}",
            r.server, r.rate, r.drops_percent
        );
    }
    let ours = results[0].rate;
    for r in &results[1..] {
        println!(
            "edgemetal / {:<8} = {:.2}",
            r.server,
            if r.rate > 0.0 {
                ours / r.rate
            } else {
                f64::NAN
            }
        );
    }
}
