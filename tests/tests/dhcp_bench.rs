//! DHCP benchmark: perfdhcp against edgemetal, Kea (memfile, persisted) and
//! dnsmasq (lease file), in the same namespaces and run, printing leases/s
//! at each offered rate and the ratios. Ignored in the test suite: run it
//! with `hil/bench-dhcp.sh`.
//!
//! perfdhcp plays a relay (giaddr set, replies unicast to it), DORA with
//! `BENCH_CLIENTS` (50,000) client MACs, at each rate of `BENCH_RATES`
//! (2000 4000 8000 16000) for `BENCH_SECS` (15) s. Every server starts from
//! an empty lease file at each rate. edgemetal fsyncs every lease before its
//! ACK; Kea's memfile and dnsmasq write theirs without an fsync each.

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
    offered: u32,
    rate: f64,
    drops_percent: f64,
    /// The server's peak resident set, where measured (edgemetal).
    peak_rss_kb: Option<u64>,
}

#[derive(Clone, Copy)]
struct Load {
    rate: u32,
    secs: u32,
    clients: u32,
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// VmHWM of a process, in kB.
fn peak_rss_kb(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
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
    load: Load,
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
    assert!(probe.status.success(), "{server} never answered: {probe:?}");
    client.ip(&["addr", "replace", "10.90.0.2/16", "dev", interface]);
    let output = client
        .command("perfdhcp")
        .args([
            "-4",
            "-r",
            &load.rate.to_string(),
            "-p",
            &load.secs.to_string(),
            "-R",
            &load.clients.to_string(),
            "-W",
            "2000000",
            "-l",
            "10.90.0.2",
            "10.90.0.1",
        ])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout).to_string();
    std::fs::write(
        dir.join(format!("perfdhcp-{server}-{}.txt", load.rate)),
        &report,
    )
    .unwrap();
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
        offered: load.rate,
        rate,
        drops_percent,
        peak_rss_kb: None,
    }
}

#[tokio::test]
#[ignore = "benchmark: run with hil/bench-dhcp.sh"]
async fn dhcp_leases_per_second_against_kea_and_dnsmasq() {
    let rates: Vec<u32> = env_or("BENCH_RATES", "2000 4000 8000 16000")
        .split_whitespace()
        .map(|r| r.parse().expect("BENCH_RATES: numbers"))
        .collect();
    let secs: u32 = env_or("BENCH_SECS", "15").parse().expect("BENCH_SECS");
    let clients: u32 = env_or("BENCH_CLIENTS", "50000")
        .parse()
        .expect("BENCH_CLIENTS");
    let logs = log_dir("dhcp_bench");
    let data = tempfile::tempdir().unwrap();
    let state = enrolled_rack_with(data.path(), &logs, SUBNET, "10.90.0.1", POOL.0, POOL.1).await;
    let mut results = Vec::new();
    for &rate in &rates {
        let load = Load {
            rate,
            secs,
            clients,
        };
        for server in ["edgemetal", "kea", "dnsmasq"] {
            let server_ns = Netns::create();
            let client = Netns::create();
            let (server_if, client_if) = veth(&server_ns, &client, Some("10.90.0.1/16"));
            let dir = data.path().join(format!("{server}-{rate}"));
            std::fs::create_dir_all(&dir).unwrap();
            let mut pid = None;
            let _guard: Box<dyn std::any::Any> = match server {
                "edgemetal" => {
                    let _ = std::fs::remove_file(state.join("dhcp-leases.jsonl"));
                    let rack =
                        start_rack_in(&server_ns, &state, &server_if, &logs.join("rack.log"));
                    pid = Some(rack.0.id());
                    Box::new(rack)
                }
                "kea" => Box::new(kea(&server_ns, &server_if, &dir)),
                _ => Box::new(dnsmasq(&server_ns, &server_if, &dir)),
            };
            let mut result = measure(server, &client, &client_if, &dir, load);
            result.peak_rss_kb = pid.and_then(peak_rss_kb);
            results.push(result);
        }
    }
    println!(
        "\nperfdhcp DORA as a relay, {clients} client MACs, {secs} s per rate, /16 pool; \
         edgemetal fsyncs every lease before its ACK:"
    );
    println!(
        "{:>8} {:<10} {:>10} {:>8} {:>10} {:>11}",
        "offered", "server", "ACK/s", "drops %", "vs Kea", "peak RSS"
    );
    for r in &results {
        let kea = results
            .iter()
            .find(|k| k.server == "kea" && k.offered == r.offered)
            .map_or(f64::NAN, |k| k.rate);
        println!(
            "{:>8} {:<10} {:>10.0} {:>8.2} {:>9.2}x {:>11}",
            r.offered,
            r.server,
            r.rate,
            r.drops_percent,
            if kea > 0.0 { r.rate / kea } else { f64::NAN },
            r.peak_rss_kb
                .map_or_else(String::new, |kb| format!("{:.1} MB", kb as f64 / 1024.0)),
        );
    }
}
